//! Event times: parsed leniently, emitted in one canonical form.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// An instant, emitted as RFC 3339 UTC with exactly three fractional digits
/// (`2025-10-14T09:21:07.512Z`).
///
/// Accepted on input: any RFC 3339 date-time (any offset, any precision), and an ISO-8601
/// date-time without an offset, which is read as UTC (VoiceHub documents "ISO string" only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// Wraps an instant.
    pub fn new(at: OffsetDateTime) -> Self {
        Self(at.to_offset(UtcOffset::UTC))
    }

    /// Parses the accepted input forms.
    pub fn parse(text: &str) -> Result<Self, InvalidTimestamp> {
        if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
            return Ok(Self::new(at));
        }
        let local = format_description!(
            version = 2,
            "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
        );
        PrimitiveDateTime::parse(text, &local)
            .map(|at| Self::new(at.assume_utc()))
            .map_err(|_| InvalidTimestamp(text.chars().take(64).collect()))
    }

    /// The instant.
    pub fn instant(&self) -> OffsetDateTime {
        self.0
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_millis(&self) -> i128 {
        self.0.unix_timestamp_nanos() / 1_000_000
    }
}

/// Text that is not a date-time (the first 64 characters of it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an ISO-8601 / RFC 3339 date-time")]
pub struct InvalidTimestamp(String);

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<'de, str>::deserialize(deserializer)?;
        Self::parse(&text).map_err(de::Error::custom)
    }
}

impl JsonSchema for Timestamp {
    fn schema_name() -> Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "format": "date-time",
            "description": "RFC 3339 UTC with milliseconds, e.g. 2025-10-14T09:21:07.512Z",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_with_millis_round_trips_unchanged() {
        let ts = Timestamp::parse("2025-10-14T09:21:07.512Z").unwrap();
        assert_eq!(ts.to_string(), "2025-10-14T09:21:07.512Z");
    }

    #[test]
    fn offsets_are_converted_to_utc_and_precision_to_millis() {
        let ts = Timestamp::parse("2025-10-14T12:21:07.512987+03:00").unwrap();
        assert_eq!(ts.to_string(), "2025-10-14T09:21:07.512Z");
        let ts = Timestamp::parse("2025-10-14T09:21:07Z").unwrap();
        assert_eq!(ts.to_string(), "2025-10-14T09:21:07.000Z");
    }

    #[test]
    fn missing_offset_is_read_as_utc() {
        let ts = Timestamp::parse("2025-10-14T09:21:07.5").unwrap();
        assert_eq!(ts.to_string(), "2025-10-14T09:21:07.500Z");
    }

    #[test]
    fn garbage_is_rejected_with_the_value_in_the_message() {
        let err = Timestamp::parse("yesterday").unwrap_err();
        assert!(err.to_string().contains("`yesterday`"), "{err}");
    }
}
