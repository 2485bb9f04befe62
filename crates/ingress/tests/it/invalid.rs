use serde_json::Value;

use voicehub_testkit::metrics::metric_value;

use crate::helpers::{SECRET, spawn_app, spawn_app_with};

#[tokio::test(flavor = "multi_thread")]
async fn unusable_bodies_are_400_and_dead_lettered_with_their_reason() {
    let app = spawn_app().await;
    let cases: [(&[u8], &str); 4] = [
        (b"this is not json", "invalid_json"),
        (br#"{"eventType": "CallStatusChanged", "timestamp": "2025-10-14T09:21:07Z"}"#, "missing_field"),
        (br#"{"eventType": "RecordingsAvailable", "eventId": "e", "timestamp": "2025-10-14T09:21:07Z", "callId": 42}"#, "invalid_field"),
        (b"[1, 2, 3]", "not_an_object"),
    ];

    for (body, reason) in cases {
        let response = app
            .post("/webhooks/voicehub", Some(SECRET), body.to_vec())
            .await;
        assert_eq!(response.status(), 400, "{reason}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"], "invalid_payload");
        assert!(error["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }

    let dead = app.broker.read_all(&app.topics.dead_letter).await.unwrap();
    assert_eq!(dead.len(), cases.len());
    for (body, reason) in cases {
        let record = dead
            .iter()
            .find(|r| r.value == body)
            .unwrap_or_else(|| panic!("no dead letter for {reason}"));
        assert_eq!(record.header("ce_deadletterreason"), Some(reason));
        assert_eq!(record.header("ce_deadletterstage"), Some("ingress"));
        assert_eq!(
            record.header("ce_source"),
            Some("/voicehub/sources/default")
        );
    }
    let error_text = dead.iter().find_map(|r| {
        r.header("ce_deadlettererror")
            .filter(|e| e.contains("callId"))
    });
    assert!(error_text.is_some(), "the error names the field");
    assert_eq!(
        metric_value(
            &app.metrics().await,
            "voicehub_ingress_dead_letters_total",
            &[("reason", "invalid_json")]
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_body_is_413_whether_declared_or_streamed() {
    let app = spawn_app_with(|s| s.http.max_body_bytes = 1_000).await;
    let big = vec![b' '; 1_001];

    let declared = app
        .post("/webhooks/voicehub", Some(SECRET), big.clone())
        .await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(100).map(|c| Ok(c.to_vec())).collect();
    let streamed = app
        .client
        .post(format!("{}/webhooks/voicehub", app.base))
        .header("x-webhook-secret", SECRET)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    let at_limit = app
        .post("/webhooks/voicehub", Some(SECRET), vec![b' '; 1_000])
        .await;

    assert_eq!(declared.status(), 413);
    assert_eq!(streamed.status(), 413);
    assert_eq!(
        at_limit.status(),
        400,
        "at the limit it is read (and is not JSON)"
    );
    let dead = app.broker.read_all(&app.topics.dead_letter).await.unwrap();
    assert_eq!(
        dead.len(),
        1,
        "only the body within the limit is dead-lettered"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unauthenticated_oversized_body_is_401_not_413() {
    let app = spawn_app_with(|s| s.http.max_body_bytes = 10).await;

    let response = app
        .post("/webhooks/voicehub", Some("wrong"), vec![b'x'; 100])
        .await;

    assert_eq!(response.status(), 401);
}
