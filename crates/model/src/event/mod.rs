//! Webhook events: parsed once from the raw body, then only ever handled as typed values.

use std::borrow::Cow;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{FieldPath, ParseError};
use crate::record::{self, Provenance, Record};
use crate::routing::EventKind;
use crate::serde_helpers::{check_id, json_kind};
use crate::strict_json::{self, TopLevel};
use crate::timestamp::Timestamp;

mod payloads;

// Every payload type, and the `Payload` trait for this module.
pub use payloads::*;

/// Fields nobody has documented yet, kept verbatim and re-emitted.
pub type Extra = Map<String, Value>;

/// A VoiceHub event: the fields every event shares, then its type-specific ones.
//
// Built only by `parse_webhook`, which reads the envelope, then the payload (see `Payload`).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Event<P> {
    /// The plain event type name, e.g. `CallStatusChanged` (a `WebhookEventType.` prefix, as
    /// the docs print it, is removed).
    pub event_type: String,
    /// Opaque unique id of the event; the CloudEvents `id` and the deduplication key.
    #[schemars(length(min = 1, max = 512))]
    pub event_id: String,
    /// When it happened.
    pub timestamp: Timestamp,
    /// The type-specific fields, and any unknown ones.
    #[serde(flatten)]
    pub payload: P,
}

/// An event whose type the bridge does not know: routed to the unrouted topic unchanged.
#[derive(Debug, Clone, PartialEq)]
pub struct UnroutedEvent {
    /// Its `eventType`.
    pub event_type: String,
    /// Its `eventId`.
    pub event_id: String,
    /// The whole body, untouched.
    pub body: Extra,
}

/// The value of an unrouted record (for its JSON Schema): any object with a string
/// `eventType` and `eventId`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnroutedValue {
    /// The unknown type, as sent.
    pub event_type: String,
    /// As sent.
    #[schemars(length(min = 1, max = 512))]
    pub event_id: String,
    /// Every other field, as sent.
    #[serde(flatten)]
    pub rest: Extra,
}

macro_rules! define_webhook_event {
    ($(($kind:ident, $topic:ident, $stem:literal)),* $(,)?) => {
        /// A parsed webhook, one variant per documented event type plus the unknown ones.
        #[derive(Debug, Clone, PartialEq)]
        pub enum WebhookEvent {
            $(#[doc = concat!("See [`", stringify!($kind), "`].")] $kind(Event<$kind>),)*
            /// Any other `eventType`.
            Unrouted(UnroutedEvent),
        }

        /// The event of `kind`, its envelope read already.
        fn typed_event(
            kind: EventKind,
            members: Members<'_>,
            event_type: String,
            event_id: String,
        ) -> Result<WebhookEvent, ParseError> {
            Ok(match kind {
                $(EventKind::$kind => WebhookEvent::$kind(typed(members, event_type, event_id)?),)*
                EventKind::Unrouted => {
                    WebhookEvent::Unrouted(UnroutedEvent::new(members, event_type, event_id))
                }
            })
        }

        impl WebhookEvent {
            /// Which documented type this is (or [`EventKind::Unrouted`]).
            pub fn kind(&self) -> EventKind {
                match self {
                    $(Self::$kind(_) => EventKind::$kind,)*
                    Self::Unrouted(_) => EventKind::Unrouted,
                }
            }

            /// The plain `eventType`.
            pub fn event_type(&self) -> &str {
                match self {
                    $(Self::$kind(e) => &e.event_type,)*
                    Self::Unrouted(e) => &e.event_type,
                }
            }

            pub fn event_id(&self) -> &str {
                match self {
                    $(Self::$kind(e) => &e.event_id,)*
                    Self::Unrouted(e) => &e.event_id,
                }
            }

            /// When the event happened; for an unrouted event, its `timestamp` if it parses.
            pub fn time(&self) -> Option<Timestamp> {
                match self {
                    $(Self::$kind(e) => Some(e.timestamp),)*
                    Self::Unrouted(e) => e.time(),
                }
            }

            /// The call or job the event is about (CloudEvents `subject`), when there is one.
            pub fn subject(&self) -> Option<&str> {
                match self {
                    $(Self::$kind(e) => e.payload.subject(),)*
                    Self::Unrouted(e) => e.subject(),
                }
            }
        }

        /// Serialises as the normalised JSON value: a known event's fields, or an unrouted
        /// event's body as it came. One dispatch for [`WebhookEvent::to_value`] and the
        /// record's bytes.
        impl Serialize for WebhookEvent {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                match self {
                    $(Self::$kind(e) => e.serialize(serializer),)*
                    Self::Unrouted(e) => e.body.serialize(serializer),
                }
            }
        }
    };
}

with_event_types!(define_webhook_event);

impl UnroutedEvent {
    fn new(members: Members<'_>, event_type: String, event_id: String) -> Self {
        let mut body: Extra = members
            .into_iter()
            .map(|(name, value)| (name.into_owned(), value))
            .collect();
        // Kept whole, with the plain type name.
        body.insert("eventType".into(), Value::String(event_type.clone()));
        Self {
            event_type,
            event_id,
            body,
        }
    }

    fn time(&self) -> Option<Timestamp> {
        self.body
            .get("timestamp")
            .and_then(Value::as_str)
            .and_then(|text| Timestamp::parse(text).ok())
    }

    fn subject(&self) -> Option<&str> {
        ["callId", "jobId"]
            .iter()
            .find_map(|field| self.body.get(*field).and_then(Value::as_str))
            .filter(|id| check_id(id).is_ok())
    }
}

/// The prefix VoiceHub's docs print before event type names (TypeScript notation).
const TYPE_NAME_PREFIX: &str = "WebhookEventType.";

/// Parses a webhook body.
///
/// Accepts a JSON object, or a JSON string holding one (the docs call the body a "jsonized
/// string"). Requires a string `eventType` and `eventId`; the documented fields of a known
/// type must have their documented types. Unknown fields and unknown event types are kept. An
/// object with the same key twice is refused (`invalid_json`).
pub fn parse_webhook(body: &[u8]) -> Result<WebhookEvent, ParseError> {
    let invalid = |e: serde_json::Error| ParseError::InvalidJson(e.to_string());
    match strict_json::top_level(body).map_err(invalid)? {
        TopLevel::Object(members) => from_members(members),
        TopLevel::Other(Value::String(inner)) => {
            match strict_json::top_level(inner.as_bytes())
                .map_err(|e| ParseError::InvalidJson(format!("string-wrapped body: {e}")))?
            {
                TopLevel::Object(members) => from_members(members),
                TopLevel::Other(value) => Err(ParseError::NotAnObject(json_kind(&value))),
            }
        }
        TopLevel::Other(value) => Err(ParseError::NotAnObject(json_kind(&value))),
    }
}

/// A body's top-level members, in order, no key twice.
type Members<'a> = Vec<(Cow<'a, str>, Value)>;

fn from_members(members: Members<'_>) -> Result<WebhookEvent, ParseError> {
    let mut event_type = required_string(&members, "eventType")?;
    // Every leading prefix: once one is left, the normalised record would parse as another
    // type than it was routed as (not idempotent; found by the fuzzer).
    while let Some(rest) = event_type.strip_prefix(TYPE_NAME_PREFIX) {
        event_type = rest;
    }
    let event_type = event_type.to_owned();
    if event_type.is_empty() {
        return Err(ParseError::invalid("eventType", "must not be empty"));
    }
    let event_id = required_string(&members, "eventId")?;
    check_id(event_id).map_err(|detail| ParseError::invalid("eventId", detail))?;
    let event_id = event_id.to_owned();

    typed_event(
        EventKind::from_event_type(&event_type),
        members,
        event_type,
        event_id,
    )
}

fn required_string<'a>(members: &'a Members<'_>, field: &str) -> Result<&'a str, ParseError> {
    let value = members
        .iter()
        .find(|(name, _)| name == field)
        .map(|(_, value)| value);
    match value {
        None | Some(Value::Null) => Err(ParseError::MissingField(FieldPath(field.into()))),
        Some(Value::String(text)) => Ok(text),
        Some(other) => Err(ParseError::invalid(
            field,
            format!("expected a string, found {}", json_kind(other)),
        )),
    }
}

/// The envelope fields, read by [`parse_webhook`] itself: not part of any payload.
const ENVELOPE: [&str; 3] = ["eventType", "eventId", "timestamp"];

fn typed<P: Payload>(
    members: Members<'_>,
    event_type: String,
    event_id: String,
) -> Result<Event<P>, ParseError> {
    let timestamp = required_string(&members, "timestamp")?;
    let timestamp =
        Timestamp::parse(timestamp).map_err(|e| ParseError::invalid("timestamp", e.to_string()))?;
    let fields = members
        .into_iter()
        .filter(|(name, _)| !ENVELOPE.contains(&name.as_ref()));
    Ok(Event {
        event_type,
        event_id,
        timestamp,
        payload: P::read(fields)?,
    })
}

impl WebhookEvent {
    /// The Kafka key: the call or job id, so that one call's events stay in one partition in
    /// order; the event id when the event names neither.
    pub fn key(&self) -> &str {
        self.subject().unwrap_or_else(|| self.event_id())
    }

    /// The normalised JSON value (see `docs/records.md`).
    pub fn to_value(&self) -> Value {
        // Serialising these types cannot fail: string keys, no non-finite floats (serde_json
        // never parses those), no custom serialiser that errors.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The CloudEvents Kafka record (binary content mode) for this event.
    pub fn to_record(&self, provenance: &Provenance<'_>) -> Record {
        record::cloud_event(
            record::CloudEvent {
                id: self.event_id(),
                event_type: self.event_type(),
                time: self.time(),
                subject: self.subject(),
                key: Some(self.key()),
            },
            provenance,
            self.value_bytes(),
        )
    }

    /// [`Self::to_value`] as JSON text, serialised straight from the typed event rather than
    /// through a [`Value`]: the same bytes (keys keep their order, and a payload never holds
    /// a key twice: the unknown fields exclude the known ones), a fraction of the work.
    fn value_bytes(&self) -> Vec<u8> {
        // As in `to_value`: this cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<WebhookEvent, ParseError> {
        parse_webhook(value.to_string().as_bytes())
    }

    #[test]
    fn call_status_is_normalised_and_unknown_fields_survive() {
        let event = parse(json!({
            "eventType": "CallStatusChanged", "eventId": "e1",
            "timestamp": "2025-10-14T12:21:07.5+03:00",
            "callId": "c1", "status": "Queued", "futureField": {"a": [1, 2]}
        }))
        .unwrap();
        assert_eq!(event.kind(), EventKind::CallStatusChanged);
        assert_eq!(
            event.to_value(),
            json!({
                "eventType": "CallStatusChanged", "eventId": "e1",
                "timestamp": "2025-10-14T09:21:07.500Z",
                "callId": "c1", "status": "queued", "futureField": {"a": [1, 2]}
            })
        );
    }

    #[test]
    fn a_repeated_type_prefix_is_removed_whole_so_normalising_again_changes_nothing() {
        let event = parse(json!({
            "eventType": "WebhookEventType.WebhookEventType.CallStatusChanged", "eventId": "e1",
            "timestamp": "2025-10-14T09:21:07.512Z", "callId": "c1", "status": "Queued"
        }))
        .unwrap();
        assert_eq!(event.kind(), EventKind::CallStatusChanged);
        let again = parse(event.to_value()).unwrap();
        assert_eq!(again.to_value(), event.to_value());
        assert!(
            parse(json!({"eventType": "WebhookEventType.WebhookEventType.", "eventId": "e"}))
                .is_err()
        );
    }

    #[test]
    fn a_string_wrapped_body_is_unwrapped() {
        let inner = json!({"eventType": "RecordingsAvailable", "eventId": "e2",
            "timestamp": "2025-10-14T09:26:41.090Z", "callId": "c1", "recordings": "a.wav"});
        let event = parse(Value::String(inner.to_string())).unwrap();
        assert_eq!(event.to_value()["recordings"], json!(["a.wav"]));
    }

    #[test]
    fn absent_recordings_are_emitted_as_an_empty_array() {
        let event = parse(json!({"eventType": "RecordingsAvailable", "eventId": "e",
            "timestamp": "2025-10-14T09:26:41.090Z", "callId": "c1"}))
        .unwrap();
        assert_eq!(event.to_value()["recordings"], json!([]));
    }

    #[test]
    fn the_typescript_prefix_on_event_types_is_removed() {
        let event = parse(json!({"eventType": "WebhookEventType.CallStatusChanged",
            "eventId": "e", "timestamp": "2025-10-14T09:26:41.090Z",
            "callId": "c1", "status": "busy"}))
        .unwrap();
        assert_eq!(event.event_type(), "CallStatusChanged");
        assert_eq!(event.to_value()["eventType"], "CallStatusChanged");
    }

    #[test]
    fn unknown_types_are_kept_whole_and_keyed_by_call_when_they_name_one() {
        let body = json!({"eventType": "CallTransferred", "eventId": "e9", "callId": "c7",
            "timestamp": "not a time", "x": 1});
        let event = parse(body.clone()).unwrap();
        assert_eq!(event.kind(), EventKind::Unrouted);
        assert_eq!(event.key(), "c7");
        assert_eq!(event.time(), None);
        assert_eq!(event.to_value(), body);
    }

    #[test]
    fn errors_name_the_field() {
        let base = json!({"eventType": "RecordingsAvailable", "eventId": "e",
            "timestamp": "2025-10-14T09:26:41.090Z", "callId": "c"});
        let with = |field: &str, value: Value| {
            let mut body = base.clone();
            body[field] = value;
            parse(body).unwrap_err()
        };
        assert_eq!(
            with("recordings", json!(["a", 5])).to_string(),
            "invalid field `recordings`: item 1 is a number, expected a string"
        );
        assert_eq!(
            with("callId", json!(42)).to_string(),
            "invalid field `callId`: invalid type: integer `42`, expected a string"
        );
        assert!(matches!(
            with("timestamp", json!("soon")),
            ParseError::InvalidField { .. }
        ));
        assert_eq!(
            with("eventId", Value::Null),
            ParseError::MissingField(FieldPath("eventId".into()))
        );
        let mut body = base.clone();
        body.as_object_mut().unwrap().remove("callId");
        assert_eq!(
            parse(body).unwrap_err(),
            ParseError::MissingField(FieldPath("callId".into()))
        );
    }

    /// Reads `fields` the way `typed` did before `Payload`: serde through the derived
    /// `Deserialize`, with `flatten`.
    fn read_by_serde<P: serde::de::DeserializeOwned>(fields: &Extra) -> Result<P, ParseError> {
        Ok(serde_path_to_error::deserialize(Value::Object(
            fields.clone(),
        ))?)
    }

    fn agrees<P>(fields: &Extra) -> Result<(), proptest::test_runner::TestCaseError>
    where
        P: Payload + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let one_pass = P::read(
            fields
                .iter()
                .map(|(name, value)| (Cow::Borrowed(name.as_str()), value.clone())),
        );
        proptest::prop_assert_eq!(one_pass, read_by_serde::<P>(fields), "{:?}", fields);
        Ok(())
    }

    fn field_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let text = prop_oneof![
            Just(String::new()),
            Just("c1".to_owned()),
            Just("Queued".to_owned()),
            Just("in-progress".to_owned()),
            Just("https://voicehub.example/api/v1/a".to_owned()),
            Just("ftp://voicehub.example/a".to_owned()),
            Just("x".repeat(513)),
            "[a-z/:.]{0,8}",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i32>().prop_map(Value::from),
            Just(Value::from(1.5)),
            text.prop_map(Value::from),
        ];
        leaf.prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
                proptest::collection::vec(("[a-z]{1,3}", inner), 0..2)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// The one-pass reading gives what serde's derived reading gives, first error included,
        /// for any mix of documented fields (of every type) with any values, and unknown ones.
        #[test]
        fn reading_a_payload_in_one_pass_agrees_with_serde(
            fields in proptest::collection::vec(
                (
                    proptest::sample::select(vec![
                        "callId", "status", "agentId", "userNumber", "agentNumber",
                        "recordings", "analysisId", "analysisResultUrl", "jobId", "other",
                        "zeta",
                    ]),
                    field_value(),
                ),
                0..8,
            )
        ) {
            let fields: Extra = fields
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect();
            agrees::<CallStatusChanged>(&fields)?;
            agrees::<RecordingsAvailable>(&fields)?;
            agrees::<AnalysisResultReady>(&fields)?;
            agrees::<CallStudioJobStatusChanged>(&fields)?;
            agrees::<CallStudioJobAnalysisResultReady>(&fields)?;
        }
    }

    #[test]
    fn non_objects_and_non_json_are_told_apart() {
        assert_eq!(parse_webhook(b"{").unwrap_err().reason(), "invalid_json");
        assert_eq!(parse_webhook(b"[1]").unwrap_err().reason(), "not_an_object");
        assert_eq!(
            parse_webhook(b"\"\\\"x\\\"\"").unwrap_err().reason(),
            "not_an_object"
        );
        assert_eq!(
            parse_webhook(&[0xff, 0xfe]).unwrap_err().reason(),
            "invalid_json"
        );
    }

    #[test]
    fn analysis_url_must_be_absolute_http() {
        let body = |url: &str| {
            json!({"eventType": "AnalysisResultReady", "eventId": "e", "analysisId": "a",
                "timestamp": "2025-10-14T09:26:41.090Z", "callId": "c", "analysisResultUrl": url})
        };
        assert!(parse(body("https://voicehub.dataqueue.ai/api/v1/x")).is_ok());
        assert!(parse(body("/api/v1/x")).is_err());
        assert!(parse(body("file:///etc/passwd")).is_err());
    }

    #[test]
    fn oversized_ids_are_rejected() {
        let long = "x".repeat(513);
        let err = parse(json!({"eventType": "X", "eventId": long})).unwrap_err();
        assert_eq!(err.reason(), "invalid_field");
    }
}
