use serde_json::Value;

use voicehub_testkit::metrics::metric_value;

use crate::helpers::{NEXT_SECRET, SECRET, spawn_app, status_event};

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_or_wrong_secret_is_401_and_writes_nothing() {
    let app = spawn_app().await;
    let body = status_event("e-1", "c-1").to_string().into_bytes();

    let missing = app
        .post("/webhooks/voicehub/acme", None, body.clone())
        .await;
    let wrong = app
        .post("/webhooks/voicehub/acme", Some("guess"), body.clone())
        .await;
    let prefix = app
        .post("/webhooks/voicehub/acme", Some("current-secre"), body)
        .await;

    for response in [missing, wrong, prefix] {
        assert_eq!(response.status(), 401);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"], "unauthorized");
        assert!(!error["detail"].as_str().unwrap().contains(SECRET));
    }
    assert!(app.all_records().await.is_empty());
    let scrape = app.metrics().await;
    let failures = |reason| {
        metric_value(
            &scrape,
            "voicehub_ingress_auth_failures_total",
            &[("source", "acme"), ("reason", reason)],
        )
    };
    assert_eq!(failures("missing"), 1.0);
    assert_eq!(failures("mismatch"), 2.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_second_active_secret_also_works_and_is_counted_by_slot() {
    let app = spawn_app().await;

    let response = app
        .post(
            "/webhooks/voicehub/acme",
            Some(NEXT_SECRET),
            status_event("e-2", "c-1").to_string().into_bytes(),
        )
        .await;

    assert_eq!(response.status(), 200);
    assert_eq!(
        app.broker
            .read_all(&app.topics.call_status_changed)
            .await
            .unwrap()
            .len(),
        1
    );
    let scrape = app.metrics().await;
    assert_eq!(
        metric_value(
            &scrape,
            "voicehub_ingress_auth_accepted_total",
            &[("source", "acme"), ("slot", "1")]
        ),
        1.0
    );
}
