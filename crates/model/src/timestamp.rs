//! Event times: parsed leniently, emitted in one canonical form.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// An instant, emitted as RFC 3339 UTC with exactly three fractional digits
/// (`2025-10-14T09:21:07.512Z`).
///
/// Accepted on input: any RFC 3339 date-time (any offset, any precision), and an ISO-8601
/// date-time without an offset, which is read as UTC (VoiceHub documents "ISO string" only).
/// A leap second (23:59:60 in UTC on the last day of a month, where they are inserted) is the
/// last millisecond of its minute; any other `:60` is refused.
/// The instant must fall within the years 0000 to 9999 once in UTC, the range RFC 3339 can
/// write: `9999-12-31T23:30:00-01:00` (year 10000 in UTC) is refused, not wrapped or
/// truncated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// The current instant (to the millisecond).
    pub fn now() -> Self {
        Self(OffsetDateTime::now_utc().truncate_to_millisecond())
    }

    /// The instant `at`, in UTC, to the millisecond (what is written is what is held);
    /// `None` outside the years 0000 to 9999 (UTC).
    pub fn new(at: OffsetDateTime) -> Option<Self> {
        at.checked_to_offset(UtcOffset::UTC)
            .filter(|utc| (0..=9999).contains(&utc.year()))
            .map(|utc| Self(utc.truncate_to_millisecond()))
    }

    /// Parses the accepted input forms.
    pub fn parse(text: &str) -> Result<Self, InvalidTimestamp> {
        let invalid = |why| InvalidTimestamp {
            text: text.chars().take(64).collect(),
            why,
        };
        // Without an offset, read as UTC: RFC 3339 with `Z` (which takes a leap second as
        // with an offset). Only with the `T` separator: RFC 3339 parsing takes any byte there.
        let at = OffsetDateTime::parse(text, &Rfc3339)
            .or_else(|error| match text.as_bytes().get(10) {
                Some(b'T') => OffsetDateTime::parse(&format!("{text}Z"), &Rfc3339),
                _ => Err(error),
            })
            .map_err(|_| invalid("is not an ISO-8601 / RFC 3339 date-time"))?;
        Self::new(at).ok_or_else(|| invalid("is outside the years 0000 to 9999 in UTC"))
    }

    pub fn instant(&self) -> OffsetDateTime {
        self.0
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_millis(&self) -> i128 {
        self.0.unix_timestamp_nanos() / 1_000_000
    }
}

/// Text that is not a date-time the bridge can write (the first 64 characters of it, and why).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` {why}")]
pub struct InvalidTimestamp {
    text: String,
    why: &'static str,
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(UtcText::millis(self.0).as_str())
    }
}

/// The RFC 3339 text of a UTC instant, built on the stack without the formatting machinery
/// (the ingress writes three per webhook, and one per log line). Years are written with four
/// digits, modulo 10,000: [`Timestamp`] holds only 0000 to 9999.
#[derive(Debug, Clone, Copy)]
pub struct UtcText {
    bytes: [u8; 27],
    len: usize,
}

impl UtcText {
    /// `2025-10-14T09:21:07.512Z`
    pub fn millis(at: OffsetDateTime) -> Self {
        Self::new(at, at.millisecond().into(), 3)
    }

    /// Now, with microseconds.
    pub fn now_micros() -> Self {
        Self::micros(OffsetDateTime::now_utc())
    }

    /// `2025-10-14T09:21:07.512345Z`
    pub fn micros(at: OffsetDateTime) -> Self {
        Self::new(at, at.microsecond(), 6)
    }

    fn new(at: OffsetDateTime, fraction: u32, digits: usize) -> Self {
        // An instant whose UTC date the calendar cannot hold keeps its own offset's date.
        let at = at.checked_to_offset(UtcOffset::UTC).unwrap_or(at);
        let (year, month, day) = at.to_calendar_date();
        let (hour, minute, second) = at.to_hms();
        let mut bytes = *b"0000-00-00T00:00:00.000000Z";
        put_digits(&mut bytes[0..4], year.rem_euclid(10_000).unsigned_abs());
        put_digits(&mut bytes[5..7], u8::from(month).into());
        put_digits(&mut bytes[8..10], day.into());
        put_digits(&mut bytes[11..13], hour.into());
        put_digits(&mut bytes[14..16], minute.into());
        put_digits(&mut bytes[17..19], second.into());
        put_digits(&mut bytes[20..20 + digits], fraction);
        bytes[20 + digits] = b'Z';
        Self {
            bytes,
            len: 21 + digits,
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

/// Writes `value`'s last `slot.len()` decimal digits into `slot`, zero-padded.
fn put_digits(slot: &mut [u8], mut value: u32) {
    for byte in slot.iter_mut().rev() {
        // `value % 10` is a single digit.
        *byte = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(UtcText::millis(self.0).as_str())
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
    fn instants_outside_years_0000_to_9999_in_utc_are_refused_not_panicked_on() {
        for text in [
            "9999-12-31T23:30:00-01:00",
            "0000-01-01T00:30:00+01:00",
            "-0001-06-01T00:00:00",
            "+10000-01-01T00:00:00",
        ] {
            assert!(Timestamp::parse(text).is_err(), "{text} was accepted");
        }
        let last = Timestamp::parse("9999-12-31T22:59:59.999-01:00").unwrap();
        assert_eq!(last.to_string(), "9999-12-31T23:59:59.999Z");
        let first = Timestamp::parse("0000-01-01T01:00:00+01:00").unwrap();
        assert_eq!(first.to_string(), "0000-01-01T00:00:00.000Z");
    }

    #[test]
    fn microsecond_text_keeps_six_digits_and_converts_to_utc() {
        let at = OffsetDateTime::parse("2025-10-14T12:21:07.000042+03:00", &Rfc3339).unwrap();
        assert_eq!(UtcText::micros(at).as_str(), "2025-10-14T09:21:07.000042Z");
        assert_eq!(UtcText::millis(at).as_str(), "2025-10-14T09:21:07.000Z");
    }

    #[test]
    fn garbage_is_rejected_with_the_value_in_the_message() {
        let err = Timestamp::parse("yesterday").unwrap_err();
        assert!(err.to_string().contains("`yesterday`"), "{err}");
    }
}
