//! The payload of each documented event type: its fields, and how they are read from a body
//! ([`Payload`]). A new event type's payload goes here, beside its line in
//! `with_event_types!` (crate root).

use std::borrow::Cow;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Extra;
use crate::error::{FieldPath, ParseError};
use crate::serde_helpers::{absolute_url, id, one_or_many, optional_id};
use crate::status::{CallStatus, JobStatus};

/// `CallStatusChanged`: a call moved to a new status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallStatusChanged {
    /// The call (not a UUID: often a short base-57 id).
    #[serde(deserialize_with = "id")]
    pub call_id: String,
    /// The new status.
    pub status: CallStatus,
    /// The agent handling the call (newer revisions only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// The caller's phone number (phone calls only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_number: Option<String>,
    /// The agent's phone number (phone calls only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_number: Option<String>,
    /// Unknown fields, preserved.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `RecordingsAvailable`: a call's recordings can be downloaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordingsAvailable {
    /// The call.
    #[serde(deserialize_with = "id")]
    pub call_id: String,
    /// Recording paths. Always an array when emitted (a single string is wrapped, absent is
    /// empty).
    #[serde(default, deserialize_with = "one_or_many")]
    pub recordings: Vec<String>,
    /// Unknown fields, preserved.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `AnalysisResultReady`: a call's analysis can be fetched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisResultReady {
    /// The analysis (not part of the fetched result; carried over into the enriched record).
    #[serde(deserialize_with = "id")]
    pub analysis_id: String,
    /// The call.
    #[serde(deserialize_with = "id")]
    pub call_id: String,
    /// Absolute http(s) URL to `GET` with the account API key, exactly as delivered.
    #[serde(deserialize_with = "absolute_url")]
    #[schemars(url)]
    pub analysis_result_url: String,
    /// Unknown fields, preserved.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `CallStudioJobStatusChanged`: an offline analysis job moved to a new status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallStudioJobStatusChanged {
    /// The job, e.g. `job_884213`.
    #[serde(deserialize_with = "id")]
    pub job_id: String,
    /// The Call Studio **workspace** id (VoiceHub reuses the field name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// The new status.
    pub status: JobStatus,
    /// Unknown fields, preserved.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `CallStudioJobAnalysisResultReady`: undocumented payload, passed through untouched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallStudioJobAnalysisResultReady {
    /// The job, when present (expected, not documented).
    #[serde(
        default,
        deserialize_with = "optional_id",
        skip_serializing_if = "Option::is_none"
    )]
    pub job_id: Option<String>,
    /// Everything else, preserved.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A payload read in one pass over the body's other fields, moving each value into place:
/// the documented fields by name (through the same rules as their `Deserialize`), every other
/// field into `extra`, in the body's order. The same result and the same first error as
/// `serde` reading the fields through the derived `Deserialize` (a unit test holds the two
/// together), without `flatten`, which buffers every field and copies the unknown ones again.
pub(super) trait Payload: Sized {
    fn read<'a>(fields: impl Iterator<Item = (Cow<'a, str>, Value)>) -> Result<Self, ParseError>;

    /// The call or job the event is about (its Kafka key and CloudEvents `subject`).
    fn subject(&self) -> Option<&str>;
}

/// Walks `fields` in order: each is offered to `documented`, which reads it (`None`) or hands
/// it back (`Some`) to be kept in the returned unknown fields.
fn documented_or_extra<'a>(
    fields: impl Iterator<Item = (Cow<'a, str>, Value)>,
    mut documented: impl FnMut(&str, Value) -> Result<Option<Value>, ParseError>,
) -> Result<Extra, ParseError> {
    let mut extra = Extra::new();
    for (name, value) in fields {
        if let Some(value) = documented(&name, value)? {
            extra.insert(name.into_owned(), value);
        }
    }
    Ok(extra)
}

/// A documented field's value read by `rule`; an error names the field.
fn field<T>(
    name: &str,
    value: Value,
    rule: impl FnOnce(Value) -> serde_json::Result<T>,
) -> Result<T, ParseError> {
    rule(value).map_err(|e| ParseError::invalid(name, e.to_string()))
}

/// A required field, or the error serde gives when it is absent.
fn required<T>(value: Option<T>, name: &str) -> Result<T, ParseError> {
    value.ok_or_else(|| ParseError::MissingField(FieldPath(name.into())))
}

impl Payload for CallStatusChanged {
    fn read<'a>(fields: impl Iterator<Item = (Cow<'a, str>, Value)>) -> Result<Self, ParseError> {
        let (mut call_id, mut status) = (None, None);
        let (mut agent_id, mut user_number, mut agent_number) = (None, None, None);
        let extra = documented_or_extra(fields, |name, value| {
            match name {
                "callId" => call_id = Some(field(name, value, id)?),
                "status" => status = Some(field(name, value, CallStatus::deserialize)?),
                "agentId" => agent_id = field(name, value, Option::deserialize)?,
                "userNumber" => user_number = field(name, value, Option::deserialize)?,
                "agentNumber" => agent_number = field(name, value, Option::deserialize)?,
                _ => return Ok(Some(value)),
            }
            Ok(None)
        })?;
        Ok(Self {
            call_id: required(call_id, "callId")?,
            status: required(status, "status")?,
            agent_id,
            user_number,
            agent_number,
            extra,
        })
    }

    fn subject(&self) -> Option<&str> {
        Some(&self.call_id)
    }
}

impl Payload for RecordingsAvailable {
    fn read<'a>(fields: impl Iterator<Item = (Cow<'a, str>, Value)>) -> Result<Self, ParseError> {
        let (mut call_id, mut recordings) = (None, Vec::new());
        let extra = documented_or_extra(fields, |name, value| {
            match name {
                "callId" => call_id = Some(field(name, value, id)?),
                "recordings" => recordings = field(name, value, one_or_many)?,
                _ => return Ok(Some(value)),
            }
            Ok(None)
        })?;
        Ok(Self {
            call_id: required(call_id, "callId")?,
            recordings,
            extra,
        })
    }

    fn subject(&self) -> Option<&str> {
        Some(&self.call_id)
    }
}

impl Payload for AnalysisResultReady {
    fn read<'a>(fields: impl Iterator<Item = (Cow<'a, str>, Value)>) -> Result<Self, ParseError> {
        let (mut analysis_id, mut call_id, mut url) = (None, None, None);
        let extra = documented_or_extra(fields, |name, value| {
            match name {
                "analysisId" => analysis_id = Some(field(name, value, id)?),
                "callId" => call_id = Some(field(name, value, id)?),
                "analysisResultUrl" => url = Some(field(name, value, absolute_url)?),
                _ => return Ok(Some(value)),
            }
            Ok(None)
        })?;
        Ok(Self {
            analysis_id: required(analysis_id, "analysisId")?,
            call_id: required(call_id, "callId")?,
            analysis_result_url: required(url, "analysisResultUrl")?,
            extra,
        })
    }

    fn subject(&self) -> Option<&str> {
        Some(&self.call_id)
    }
}

impl Payload for CallStudioJobStatusChanged {
    fn read<'a>(fields: impl Iterator<Item = (Cow<'a, str>, Value)>) -> Result<Self, ParseError> {
        let (mut job_id, mut agent_id, mut status) = (None, None, None);
        let extra = documented_or_extra(fields, |name, value| {
            match name {
                "jobId" => job_id = Some(field(name, value, id)?),
                "agentId" => agent_id = field(name, value, Option::deserialize)?,
                "status" => status = Some(field(name, value, JobStatus::deserialize)?),
                _ => return Ok(Some(value)),
            }
            Ok(None)
        })?;
        Ok(Self {
            job_id: required(job_id, "jobId")?,
            agent_id,
            status: required(status, "status")?,
            extra,
        })
    }

    fn subject(&self) -> Option<&str> {
        Some(&self.job_id)
    }
}

impl Payload for CallStudioJobAnalysisResultReady {
    fn read<'a>(fields: impl Iterator<Item = (Cow<'a, str>, Value)>) -> Result<Self, ParseError> {
        let mut job_id = None;
        let extra = documented_or_extra(fields, |name, value| {
            match name {
                "jobId" => job_id = field(name, value, optional_id)?,
                _ => return Ok(Some(value)),
            }
            Ok(None)
        })?;
        Ok(Self { job_id, extra })
    }

    fn subject(&self) -> Option<&str> {
        self.job_id.as_deref()
    }
}
