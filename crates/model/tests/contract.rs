//! Every VoiceHub example parses into the record the contract (`docs/records.md`) describes:
//! key, every header, and value.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::path::PathBuf;

use serde_json::{Value, json};
use voicehub_model::analysis::AnalysisResult;
use voicehub_model::enriched::AnalysisEnriched;
use voicehub_model::record::{Provenance, header};
use voicehub_model::{EventKind, Timestamp, Topics, WebhookEvent, parse_webhook};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/voicehub")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn provenance() -> Provenance<'static> {
    Provenance {
        source: "acme",
        received_at: Timestamp::parse("2025-10-14T09:30:00.000Z").unwrap(),
        bridge_version: "9.9.9",
    }
}

struct Expected {
    file: &'static str,
    topic: &'static str,
    key: &'static str,
    ce_type: &'static str,
    time: &'static str,
    /// The fixture with these fields replaced (normalised).
    changes: Value,
}

fn expected() -> Vec<Expected> {
    vec![
        Expected {
            file: "call-status-changed.json",
            topic: "voicehub.call-status-changed.v1",
            key: "Kq8ZtR3vNw2XpL7mYc4HbD",
            ce_type: "ai.dataqueue.voicehub.CallStatusChanged",
            time: "2025-10-14T09:21:07.512Z",
            changes: json!({}),
        },
        Expected {
            file: "call-status-changed-string-wrapped.json",
            topic: "voicehub.call-status-changed.v1",
            key: "Kq8ZtR3vNw2XpL7mYc4HbD",
            ce_type: "ai.dataqueue.voicehub.CallStatusChanged",
            time: "2025-10-14T09:21:07.512Z",
            changes: json!({}),
        },
        Expected {
            file: "call-status-changed-arabic-capitalised.json",
            topic: "voicehub.call-status-changed.v1",
            key: "Zx4pQ9rT2mW8",
            ce_type: "ai.dataqueue.voicehub.CallStatusChanged",
            time: "2025-10-14T09:20:59.900Z",
            changes: json!({"status": "queued", "timestamp": "2025-10-14T09:20:59.900Z"}),
        },
        Expected {
            file: "recordings-available.json",
            topic: "voicehub.recordings-available.v1",
            key: "Kq8ZtR3vNw2XpL7mYc4HbD",
            ce_type: "ai.dataqueue.voicehub.RecordingsAvailable",
            time: "2025-10-14T09:26:41.090Z",
            changes: json!({}),
        },
        Expected {
            file: "recordings-available-single-string.json",
            topic: "voicehub.recordings-available.v1",
            key: "Zx4pQ9rT2mW8",
            ce_type: "ai.dataqueue.voicehub.RecordingsAvailable",
            time: "2025-10-14T09:26:41.000Z",
            changes: json!({
                "timestamp": "2025-10-14T09:26:41.000Z",
                "recordings": ["recordings/agt_5e19c0a7/Zx4pQ9rT2mW8/mixed.wav"],
            }),
        },
        Expected {
            file: "analysis-result-ready.json",
            topic: "voicehub.analysis-result-ready.v1",
            key: "Kq8ZtR3vNw2XpL7mYc4HbD",
            ce_type: "ai.dataqueue.voicehub.AnalysisResultReady",
            time: "2025-10-14T09:27:58.377Z",
            changes: json!({}),
        },
        Expected {
            file: "call-studio-job-status-changed.json",
            topic: "voicehub.call-studio-job-status-changed.v1",
            key: "job_884213",
            ce_type: "ai.dataqueue.voicehub.CallStudioJobStatusChanged",
            time: "2025-10-14T11:02:15.004Z",
            changes: json!({}),
        },
        Expected {
            file: "call-studio-job-analysis-result-ready.json",
            topic: "voicehub.call-studio-analysis-result-ready.v1",
            key: "job_884213",
            ce_type: "ai.dataqueue.voicehub.CallStudioJobAnalysisResultReady",
            time: "2025-10-14T11:09:40.250Z",
            changes: json!({}),
        },
    ]
}

fn unwrapped_fixture(file: &str) -> Value {
    let value: Value = serde_json::from_slice(&fixture(file)).unwrap();
    match value {
        Value::String(inner) => serde_json::from_str(&inner).unwrap(),
        other => other,
    }
}

#[test]
fn every_example_yields_the_contract_record() {
    let topics = Topics::default();
    for case in expected() {
        let event =
            parse_webhook(&fixture(case.file)).unwrap_or_else(|e| panic!("{}: {e}", case.file));
        let record = event.to_record(&provenance());

        assert_eq!(topics.for_kind(event.kind()), case.topic, "{}", case.file);
        assert_eq!(record.key.as_deref(), Some(case.key), "{}", case.file);
        let input = unwrapped_fixture(case.file);
        let headers: Vec<(&str, &str)> = record
            .headers
            .iter()
            .map(|(n, v)| (*n, v.as_str()))
            .collect();
        assert_eq!(
            headers,
            vec![
                (header::SPEC_VERSION, "1.0"),
                (header::ID, input["eventId"].as_str().unwrap()),
                (header::TYPE, case.ce_type),
                (header::SOURCE, "/voicehub/sources/acme"),
                (header::TIME, case.time),
                (header::SUBJECT, case.key),
                (header::CONTENT_TYPE, "application/json"),
                (header::RECEIVED_AT, "2025-10-14T09:30:00.000Z"),
                (header::BRIDGE_VERSION, "9.9.9"),
            ],
            "{}",
            case.file
        );

        let mut expected_value = input;
        for (field, value) in case.changes.as_object().unwrap() {
            expected_value[field] = value.clone();
        }
        let value: Value = serde_json::from_slice(&record.value).unwrap();
        assert_eq!(value, expected_value, "{}", case.file);
    }
}

#[test]
fn normalising_twice_changes_nothing() {
    for case in expected() {
        let once = parse_webhook(&fixture(case.file)).unwrap().to_value();
        let twice = parse_webhook(once.to_string().as_bytes())
            .unwrap()
            .to_value();
        assert_eq!(once, twice, "{}", case.file);
    }
}

#[test]
fn the_example_analysis_round_trips_and_enriches() {
    let body = fixture("analysis-result.json");
    let analysis = AnalysisResult::parse(&body).unwrap();
    let original: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(serde_json::to_value(&analysis).unwrap(), original);

    let WebhookEvent::AnalysisResultReady(event) =
        parse_webhook(&fixture("analysis-result-ready.json")).unwrap()
    else {
        panic!("analysis-result-ready.json is not an AnalysisResultReady");
    };
    let fetched_at = Timestamp::parse("2025-10-14T09:28:00.123Z").unwrap();
    let enriched = AnalysisEnriched::new(&event, analysis, fetched_at);
    let record = enriched.to_record(&provenance());
    assert_eq!(record.key.as_deref(), Some("Kq8ZtR3vNw2XpL7mYc4HbD"));
    assert_eq!(
        record.header(header::TYPE),
        Some("ai.dataqueue.voicehub.AnalysisEnriched")
    );
    assert_eq!(
        record.header(header::ID).unwrap(),
        AnalysisEnriched::ce_id("acme", "c9e1f5a3-6b2d-4c80-b7e4-5a1d3f8c2e60")
    );
    let value: Value = serde_json::from_slice(&record.value).unwrap();
    assert_eq!(value["analysisId"], "anl_7d31f2b9c4");
    assert_eq!(value["eventId"], "c9e1f5a3-6b2d-4c80-b7e4-5a1d3f8c2e60");
    assert_eq!(value["fetchedAt"], "2025-10-14T09:28:00.123Z");
    assert_eq!(value["analysis"], original);
}

#[test]
fn a_redelivered_analysis_event_gets_the_same_enriched_id() {
    let first = AnalysisEnriched::ce_id("acme", "evt-1");
    assert_eq!(first, AnalysisEnriched::ce_id("acme", "evt-1"));
    assert_ne!(first, AnalysisEnriched::ce_id("other", "evt-1"));
    assert_ne!(first, AnalysisEnriched::ce_id("acme", "evt-2"));
}

#[test]
fn every_documented_kind_has_an_example() {
    let covered: Vec<EventKind> = expected()
        .iter()
        .map(|case| parse_webhook(&fixture(case.file)).unwrap().kind())
        .collect();
    for kind in EventKind::ALL {
        assert!(
            kind == EventKind::Unrouted || covered.contains(&kind),
            "no example of {kind:?}"
        );
    }
}
