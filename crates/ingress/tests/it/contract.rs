use serde_json::Value;
use voicehub_model::parse_webhook;

use crate::helpers::{SECRET, fixture, spawn_app, status_event};

const EXAMPLES: &[&str] = &[
    "call-status-changed.json",
    "call-status-changed-string-wrapped.json",
    "call-status-changed-arabic-capitalised.json",
    "recordings-available.json",
    "recordings-available-single-string.json",
    "analysis-result-ready.json",
    "call-studio-job-status-changed.json",
    "call-studio-job-analysis-result-ready.json",
];

#[tokio::test(flavor = "multi_thread")]
async fn each_example_lands_on_its_topic_with_key_headers_and_normalised_value() {
    let app = spawn_app().await;

    for name in EXAMPLES {
        // Act
        let response = app
            .post("/webhooks/voicehub/acme", Some(SECRET), fixture(name))
            .await;

        // Assert
        assert_eq!(response.status(), 200, "{name}");
        assert_eq!(
            response.json::<Value>().await.unwrap(),
            serde_json::json!({"status": "accepted"})
        );
        let expected = parse_webhook(&fixture(name)).unwrap();
        let topic = app.topics.for_kind(expected.kind());
        let records = app.broker.read_all(topic).await.unwrap();
        let record = records
            .iter()
            .find(|r| r.header("ce_id") == Some(expected.event_id()))
            .unwrap_or_else(|| panic!("{name} not on {topic}"));
        assert_eq!(record.key.as_deref(), Some(expected.key()), "{name}");
        assert_eq!(record.header("ce_specversion"), Some("1.0"));
        assert_eq!(
            record.header("ce_type"),
            Some(format!("ai.dataqueue.voicehub.{}", expected.event_type()).as_str())
        );
        assert_eq!(record.header("ce_source"), Some("/voicehub/sources/acme"));
        assert_eq!(record.header("ce_subject"), expected.subject());
        assert_eq!(record.header("content-type"), Some("application/json"));
        assert!(record.header("ce_bridgereceivedat").is_some());
        assert_eq!(record.json(), expected.to_value(), "{name}");
    }

    // Unknown fields survived the trip.
    let arabic = app
        .broker
        .read_all(&app.topics.call_status_changed)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.key.as_deref() == Some("Zx4pQ9rT2mW8"))
        .unwrap();
    assert_eq!(
        arabic.json()["customerNote"],
        "العميل يفضل التواصل باللغة العربية"
    );
    assert_eq!(arabic.json()["campaign"]["id"], 17);
    assert_eq!(arabic.json()["status"], "queued");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_event_id_twice_yields_one_record() {
    let app = spawn_app().await;
    let event = status_event("evt-dup", "call-1");

    let first = app.post_json(&event).await;
    let second = app.post_json(&event).await;

    assert_eq!(first.status(), 200);
    assert_eq!(second.status(), 200);
    assert_eq!(
        second.json::<Value>().await.unwrap(),
        serde_json::json!({"status": "duplicate"})
    );
    assert_eq!(app.status_ids().await, ["evt-dup"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_retries_of_one_event_yield_one_record() {
    let app = spawn_app().await;
    let event = status_event("evt-race", "call-1");

    let responses = futures_util::future::join_all((0..8).map(|_| app.post_json(&event))).await;

    assert!(responses.iter().all(|r| r.status() == 200));
    assert_eq!(app.status_ids().await, ["evt-race"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_event_type_goes_to_the_unrouted_topic_untouched() {
    let app = spawn_app().await;
    let event = serde_json::json!({"eventType": "CallTransferred", "eventId": "e-1",
        "callId": "c-9", "to": "+966500000000"});

    let response = app.post_json(&event).await;

    assert_eq!(response.status(), 200);
    let records = app.broker.read_all(&app.topics.unrouted).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].json(), event);
    assert_eq!(records[0].key.as_deref(), Some("c-9"));
    assert_eq!(
        records[0].header("ce_type"),
        Some("ai.dataqueue.voicehub.CallTransferred")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_source_is_404_and_writes_nothing() {
    let app = spawn_app().await;

    let response = app
        .post(
            "/webhooks/voicehub/..%2F..%2Fetc",
            Some(SECRET),
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "unknown_source");
    let other = app
        .post("/webhooks/voicehub/nope", Some(SECRET), b"{}".to_vec())
        .await;
    assert_eq!(other.status(), 404);

    assert!(app.all_records().await.is_empty());
}
