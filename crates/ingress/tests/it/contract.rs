use serde_json::Value;
use voicehub_model::parse_webhook;

use voicehub_testkit::metrics::metric_value;

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
async fn an_unknown_source_is_answered_as_a_wrong_secret_and_writes_nothing() {
    let app = spawn_app().await;
    // Its series is there, at 0, before any request (an alert can rate it).
    let scrape = app.metrics().await;
    let present = scrape.samples.iter().any(|sample| {
        sample.metric == "voicehub_ingress_requests_total"
            && sample.labels.get("source") == Some("unknown")
            && sample.labels.get("outcome") == Some("unknown_source")
    });
    assert!(present, "no unknown-source series before the first request");
    // What a wrong and a missing secret get on the configured source.
    let answer = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        let headers: Vec<String> = response
            .headers()
            .keys()
            .map(|name| name.to_string())
            .filter(|name| name != "date")
            .collect();
        (status, headers, response.text().await.unwrap())
    };
    let wrong = answer(
        app.post("/webhooks/voicehub", Some("not-the-secret"), b"{}".to_vec())
            .await,
    )
    .await;
    let missing = answer(app.post("/webhooks/voicehub", None, b"{}".to_vec()).await).await;
    assert_eq!(wrong.0, 401);
    assert_ne!(wrong.2, missing.2);

    // An unknown source cannot be told from them, whatever secret it is sent.
    for path in [
        "/webhooks/voicehub/..%2F..%2Fetc",
        "/webhooks/voicehub/nope",
    ] {
        for secret in [Some(SECRET), Some("not-the-secret")] {
            let response = answer(app.post(path, secret, b"{}".to_vec()).await).await;
            assert_eq!(response, wrong, "{path} with a secret");
        }
        let response = answer(app.post(path, None, b"{}".to_vec()).await).await;
        assert_eq!(response, missing, "{path} without one");
    }

    // The metric tells them apart, under the source label `unknown`.
    let scrape = app.metrics().await;
    let unknown = metric_value(
        &scrape,
        "voicehub_ingress_requests_total",
        &[("source", "unknown"), ("outcome", "unknown_source")],
    );
    assert_eq!(unknown, 6.0);
    assert!(app.all_records().await.is_empty());
}
