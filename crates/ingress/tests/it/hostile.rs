//! Hostile input: each gets its documented answer, never a panic, and nothing reaches Kafka
//! that should not.

use serde_json::Value;
use voicehub_testkit::metrics::metric_value;

use crate::helpers::{SECRET, spawn_app, status_event};

#[tokio::test(flavor = "multi_thread")]
async fn path_tricks_in_the_source_name_find_no_source_and_write_nothing() {
    let app = spawn_app().await;
    let body = status_event("e1", "c1").to_string().into_bytes();

    for path in [
        "/webhooks/voicehub/..%2Fdefault",
        "/webhooks/voicehub/%2e%2e",
        "/webhooks/voicehub/default%00",
        "/webhooks/voicehub/DEFAULT",
        "/webhooks/voicehub/default/extra",
    ] {
        let status = app.post(path, Some(SECRET), body.clone()).await.status();
        assert!(status == 404 || status == 405, "{path}: {status}");
    }

    assert!(app.all_records().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn deep_nesting_invalid_utf8_and_huge_strings_are_400_and_dead_lettered() {
    let app = spawn_app().await;
    let deep = format!(
        r#"{{"eventType":"CallStatusChanged","eventId":"deep","x":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let mut invalid_utf8 = br#"{"eventType":"CallStatusChanged","eventId":"e","callId":""#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe, b'"', b'}']);
    let huge = serde_json::json!({
        "eventType": "CallStatusChanged",
        "eventId": "huge",
        "timestamp": "2025-10-14T09:21:07Z",
        "callId": 7,
        "status": "x".repeat(500_000),
    })
    .to_string();
    let cases = [deep.into_bytes(), invalid_utf8, huge.into_bytes()];

    for body in &cases {
        let response = app
            .post("/webhooks/voicehub", Some(SECRET), body.clone())
            .await;
        assert_eq!(response.status(), 400);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"], "invalid_payload");
    }

    let dead = app.broker.read_all(&app.topics.dead_letter).await.unwrap();
    assert_eq!(dead.len(), cases.len());
    assert!(app.status_ids().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn any_content_type_is_accepted_as_voicehub_does_not_document_one() {
    let app = spawn_app().await;
    for (i, content_type) in ["text/plain", "application/x-www-form-urlencoded", ""]
        .into_iter()
        .enumerate()
    {
        let response = app
            .client
            .post(format!("{}/webhooks/voicehub", app.base))
            .header("x-webhook-secret", SECRET)
            .header("content-type", content_type)
            .body(status_event(&format!("ct{i}"), "c1").to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{content_type}");
    }
    assert_eq!(app.status_ids().await.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn thousands_of_wrong_secrets_are_all_refused_and_counted() {
    let app = spawn_app().await;
    let body = status_event("e1", "c1").to_string();
    let attempts = 2_000;

    let mut statuses = Vec::with_capacity(attempts);
    for chunk in 0..attempts / 100 {
        let requests = (0..100).map(|i| {
            app.client
                .post(format!("{}/webhooks/voicehub", app.base))
                .header("x-webhook-secret", format!("guess-{chunk}-{i}"))
                .body(body.clone())
                .send()
        });
        for response in futures_util::future::join_all(requests).await {
            statuses.push(response.unwrap().status().as_u16());
        }
    }

    assert!(statuses.iter().all(|s| *s == 401));
    let failures = metric_value(
        &app.metrics().await,
        "voicehub_ingress_auth_failures_total",
        &[("reason", "mismatch")],
    );
    assert_eq!(failures, attempts as f64);
    assert!(app.all_records().await.is_empty());
}
