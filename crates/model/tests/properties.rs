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
        let normalised = parse_webhook(event.to_string().as_bytes()).unwrap().to_value();
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
