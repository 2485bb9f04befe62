//! Property tests of the parsers: no input panics them, normalisation is stable, and fields the
//! bridge does not know survive.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use voicehub_model::analysis::AnalysisResult;
use voicehub_model::record::Provenance;
use voicehub_model::{Timestamp, parse_webhook};

/// Arbitrary JSON, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e9f64..1e9).prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-zA-Z]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A valid event of a documented type, with documented fields chosen at random.
fn known_event() -> impl Strategy<Value = Value> {
    let status = prop_oneof![
        Just("queued"),
        Just("IN-PROGRESS"),
        Just("Completed"),
        Just("ringing")
    ];
    prop_oneof![
        ("[a-zA-Z0-9]{1,22}", status).prop_map(|(call, status)| json!({
            "eventType": "CallStatusChanged", "callId": call, "status": status})),
        (
            "[a-zA-Z0-9]{1,22}",
            prop::collection::vec("[a-z/.]{1,20}", 0..3)
        )
            .prop_map(
                |(call, recs)| json!({"eventType": "RecordingsAvailable", "callId": call,
                "recordings": recs})
            ),
        "[a-zA-Z0-9]{1,22}".prop_map(|call| json!({"eventType": "AnalysisResultReady",
            "callId": call, "analysisId": "a1",
            "analysisResultUrl": "https://voicehub.dataqueue.ai/api/v1/r/a1"})),
        "job_[0-9]{1,8}".prop_map(|job| json!({"eventType": "CallStudioJobStatusChanged",
            "jobId": job, "status": "Pending"})),
    ]
    .prop_map(|mut event| {
        event["eventId"] = json!("3f7b2c1e-8d4a-4b6f-9e21-7c5a0d9e4b13");
        event["timestamp"] = json!("2025-10-14T09:21:07.512Z");
        event
    })
}

fn provenance() -> Provenance<'static> {
    Provenance {
        source: "default",
        received_at: Timestamp::parse("2025-10-14T09:30:00Z").unwrap(),
        bridge_version: "test",
    }
}

const KNOWN_FIELDS: &[&str] = &[
    "eventType",
    "eventId",
    "timestamp",
    "callId",
    "status",
    "agentId",
    "userNumber",
    "agentNumber",
    "recordings",
    "analysisId",
    "analysisResultUrl",
    "jobId",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_webhook(&bytes);
        let _ = AnalysisResult::parse(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics_and_anything_accepted_makes_a_record(
        mut object in prop::collection::btree_map("[a-zA-Z]{1,10}", json_value(), 0..6),
        event_type in prop_oneof![
            Just("CallStatusChanged"), Just("RecordingsAvailable"), Just("AnalysisResultReady"),
            Just("CallStudioJobStatusChanged"), Just("CallStudioJobAnalysisResultReady"),
            Just("Other"),
        ],
        event_id in json_value(),
    ) {
        object.insert("eventType".into(), json!(event_type));
        object.insert("eventId".into(), event_id);
        let body = Value::Object(object.into_iter().collect()).to_string();
        for body in [body.clone(), Value::String(body).to_string()] {
            if let Ok(event) = parse_webhook(body.as_bytes()) {
                let record = event.to_record(&provenance());
                prop_assert!(!record.value.is_empty());
                prop_assert_eq!(record.key.as_deref(), Some(event.key()));
                // The value is written straight from the typed event: the same bytes, in the
                // same order, as the normalised JSON value.
                prop_assert_eq!(&record.value, &serde_json::to_vec(&event.to_value()).unwrap());
            }
        }
    }

    #[test]
    fn normalisation_is_idempotent(event in known_event()) {
        let once = parse_webhook(event.to_string().as_bytes()).unwrap().to_value();
        let twice = parse_webhook(once.to_string().as_bytes()).unwrap().to_value();
        prop_assert_eq!(once, twice);
    }

    #[test]
    fn unknown_fields_survive_unchanged(
        event in known_event(),
        extra in prop::collection::btree_map("[a-zA-Z_]{1,12}", json_value(), 1..5),
    ) {
        let mut event = event;
        let mut added = Map::new();
        for (name, value) in extra {
            if !KNOWN_FIELDS.contains(&name.as_str()) {
                event[&name] = value.clone();
                added.insert(name, value);
            }
        }
        let parsed = parse_webhook(event.to_string().as_bytes()).unwrap();
        let normalised = parsed.to_value();
        prop_assert_eq!(
            parsed.to_record(&provenance()).value,
            serde_json::to_vec(&normalised).unwrap()
        );
        for (name, value) in &added {
            prop_assert_eq!(&normalised[name], value);
        }
    }

    #[test]
    fn analysis_unknown_fields_survive(
        extra in prop::collection::btree_map("x[a-zA-Z]{1,12}", json_value(), 1..5),
    ) {
        let mut body = json!({"summary": "s", "sentiment": {"score": 1}});
        for (name, value) in &extra {
            body[name] = value.clone();
            body["sentiment"][name] = value.clone();
        }
        let parsed = AnalysisResult::parse(body.to_string().as_bytes()).unwrap();
        prop_assert_eq!(serde_json::to_value(&parsed).unwrap(), body);
    }
}

/// Days from 0000-03-01-based civil date to 1970-01-01 (H. Hinnant's `days_from_civil`), for
/// an independent reckoning of instants in the timestamp property.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse: (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A date-time as VoiceHub could write it: any year 0000 to 9999, any valid day, seconds up
/// to 60 (leap second), 0 to 9 fractional digits, `Z`, an offset up to ±23:59, or none.
#[derive(Debug, Clone)]
struct WrittenTime {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    fraction: String,
    /// Minutes east of UTC; `None` for no offset at all (read as UTC), `Some(0)` written `Z`.
    offset: Option<i64>,
}

impl WrittenTime {
    fn text(&self) -> String {
        let mut text = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        );
        if !self.fraction.is_empty() {
            text.push('.');
            text.push_str(&self.fraction);
        }
        match self.offset {
            None => {}
            Some(0) => text.push('Z'),
            Some(minutes) => {
                let sign = if minutes < 0 { '-' } else { '+' };
                let abs = minutes.abs();
                text.push_str(&format!("{sign}{:02}:{:02}", abs / 60, abs % 60));
            }
        }
        text
    }

    /// Milliseconds since the Unix epoch (fraction truncated), leap second as :59.999.
    fn unix_millis(&self) -> i64 {
        let millis: i64 = format!("{:0<3}", self.fraction)[..3].parse().unwrap_or(0);
        let (second, millis) = if self.second == 60 {
            (59, 999)
        } else {
            (self.second, millis)
        };
        let local = days_from_civil(self.year, self.month, self.day) * 86_400_000
            + ((self.hour * 60 + self.minute) * 60 + second) * 1_000
            + millis;
        local - self.offset.unwrap_or(0) * 60_000
    }
}

fn written_time() -> impl Strategy<Value = WrittenTime> {
    // The edges of the range are drawn often: an offset across midnight of 0000-01-01 or
    // 9999-12-31 leaves it.
    let year = prop_oneof![4 => 0i64..=9999, 1 => Just(0), 1 => Just(9999)];
    let month = prop_oneof![2 => 1i64..=12, 1 => Just(1), 1 => Just(12)];
    let day = prop_oneof![2 => 1i64..=31, 1 => Just(1), 1 => Just(31)];
    (year, month, day, 0i64..=23, 0i64..=59, 0i64..=60)
        .prop_flat_map(|(year, month, day, hour, minute, second)| {
            let day = day.min(days_in_month(year, month));
            (
                Just((year, month, day, hour, minute, second)),
                "[0-9]{0,9}",
                prop_oneof![
                    Just(None),
                    Just(Some(0)),
                    (-(23 * 60 + 59i64)..=(23 * 60 + 59)).prop_map(Some),
                ],
            )
        })
        .prop_map(
            |((year, month, day, hour, minute, second), fraction, offset)| WrittenTime {
                year,
                month,
                day,
                hour,
                minute,
                second,
                fraction,
                offset,
            },
        )
}

/// The canonical form of an instant, reckoned without the `time` crate.
fn canonical(unix_millis: i64) -> (i64, String) {
    let days = unix_millis.div_euclid(86_400_000);
    let of_day = unix_millis.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    let text = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3_600_000,
        of_day / 60_000 % 60,
        of_day / 1_000 % 60,
        of_day % 1_000
    );
    (year, text)
}

/// Without an offset, only the `T` form is read (RFC 3339's parser would take any byte there).
#[test]
fn a_time_without_an_offset_needs_its_t() {
    assert!(Timestamp::parse("2025-10-14T09:21:07.512").is_ok());
    for text in [
        "2025-10-14 09:21:07.512",
        "2025-10-14x09:21:07",
        "2025-10-14t09:21:07",
    ] {
        assert!(Timestamp::parse(text).is_err(), "{text} accepted");
    }
}

/// Leap seconds are too rare among drawn times (1 in 88,000) to be met: written out.
#[test]
fn a_leap_second_at_23_59_60_utc_is_the_last_millisecond_of_its_minute() {
    for (text, at) in [
        ("2016-12-31T23:59:60Z", "2016-12-31T23:59:59.999Z"),
        ("2016-12-31T23:59:60.5Z", "2016-12-31T23:59:59.999Z"),
        ("2016-12-31T23:59:60", "2016-12-31T23:59:59.999Z"),
        ("2017-01-01T08:59:60+09:00", "2016-12-31T23:59:59.999Z"),
        ("2016-12-31T18:29:60-05:30", "2016-12-31T23:59:59.999Z"),
        ("2015-06-30T23:59:60Z", "2015-06-30T23:59:59.999Z"),
    ] {
        let parsed = Timestamp::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(parsed.to_string(), at, "{text}");
    }
    for text in [
        "2016-12-31T12:00:60Z",
        "2016-12-31T23:59:60+01:00",
        "2016-12-31T23:58:60",
        "2016-06-15T23:59:60Z",
    ] {
        assert!(Timestamp::parse(text).is_err(), "{text} is no leap second");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// Over the whole range: never a panic; inside years 0000 to 9999 (UTC) the canonical
    /// RFC 3339 UTC form with milliseconds, the same instant; outside it, a refusal the
    /// normaliser reports as an invalid field (dead-lettered), never a wrapped year.
    #[test]
    fn every_written_time_is_normalised_exactly_or_refused(written in written_time()) {
        let text = written.text();
        let parsed = Timestamp::parse(&text);
        let event = json!({"eventType": "CallStatusChanged", "eventId": "e", "callId": "c",
            "status": "queued", "timestamp": text});
        let normalised = parse_webhook(event.to_string().as_bytes());
        let (utc_year, expected) = canonical(written.unix_millis());
        if !(0..=9999).contains(&utc_year) {
            prop_assert!(parsed.is_err(), "{} accepted as {:?}", text, parsed);
            prop_assert!(
                matches!(&normalised, Err(e) if e.reason() == "invalid_field"),
                "{} normalised as {:?}", text, normalised
            );
        } else if written.second == 60 {
            // A leap second (23:59:60 in UTC on the last day of a month, where they are
            // inserted) is the last millisecond of its minute; any other :60 is refused as an
            // invalid field.
            let utc_minute =
                (written.hour * 60 + written.minute - written.offset.unwrap_or(0)).rem_euclid(1440);
            let field = |range: std::ops::Range<usize>| expected[range].parse::<i64>().unwrap();
            let month_end = field(8..10) == days_in_month(field(0..4), field(5..7));
            if utc_minute == 23 * 60 + 59 && month_end {
                prop_assert_eq!(parsed.map(|at| at.to_string()).ok(), Some(expected));
            } else {
                prop_assert!(parsed.is_err(), "{} accepted as {:?}", text, parsed);
                prop_assert!(
                    matches!(&normalised, Err(e) if e.reason() == "invalid_field"),
                    "{} normalised as {:?}", text, normalised
                );
            }
        } else {
            let at = parsed.map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
            prop_assert_eq!(at.to_string(), expected.clone());
            prop_assert_eq!(Timestamp::parse(&at.to_string()).unwrap(), at);
            let value = normalised.unwrap().to_value();
            prop_assert_eq!(&value["timestamp"], &json!(expected));
        }
    }
}
