use serde_json::Value;

use voicehub_runtime::FaultHook;
use voicehub_testkit::metrics::metric_value;

use crate::helpers::{SECRET, spawn_app, spawn_app_prepared, spawn_app_with, status_event};

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
    assert_eq!(
        dead.len(),
        cases.len(),
        "dead letters of the unusable bodies"
    );
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

#[tokio::test(flavor = "multi_thread")]
async fn a_timestamp_beyond_year_9999_in_utc_is_400_and_dead_lettered_not_a_dropped_connection() {
    let app = spawn_app().await;
    let mut late = status_event("e-late", "c1");
    late["timestamp"] = "9999-12-31T23:30:00-01:00".into();
    let mut early = status_event("e-early", "c1");
    early["timestamp"] = "0000-01-01T00:30:00+01:00".into();

    for event in [&late, &early] {
        let response = app.post_json(event).await;
        assert_eq!(response.status(), 400, "{event}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"], "invalid_payload");
        assert!(
            error["detail"].as_str().unwrap().contains("0000 to 9999"),
            "{error}"
        );
    }

    let dead = app.broker.read_all(&app.topics.dead_letter).await.unwrap();
    assert_eq!(dead.len(), 2);
    assert!(
        dead.iter()
            .all(|r| r.header("ce_deadletterreason") == Some("invalid_field"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_valid_event_of_exactly_the_body_limit_is_accepted_and_on_its_topic() {
    let app = spawn_app().await;
    let limit = voicehub_ingress::settings::HttpSettings::default().max_body_bytes;
    let mut event = status_event("e-at-limit", "c1");
    event["padding"] = "".into();
    let padding = limit - event.to_string().len();
    event["padding"] = "x".repeat(padding).into();
    let body = event.to_string().into_bytes();
    assert_eq!(body.len(), limit);

    let response = app.post("/webhooks/voicehub", Some(SECRET), body).await;

    assert_eq!(response.status(), 200);
    let records = app
        .broker
        .read_all(&app.topics.call_status_changed)
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    assert!(
        records[0].value.len() >= limit - 100,
        "{}",
        records[0].value.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panic_on_the_request_path_is_a_json_500_and_a_dead_letter() {
    let app = spawn_app_prepared(
        |_| {},
        |app| {
            app.inject_fault(FaultHook::new(|event| {
                assert!(event.event_id() != "e-boom", "injected fault");
            }))
        },
    )
    .await;

    let boom = app.post_json(&status_event("e-boom", "c1")).await;
    let fine = app.post_json(&status_event("e-fine", "c1")).await;

    assert_eq!(boom.status(), 500);
    let error: Value = boom.json().await.unwrap();
    assert_eq!(error["error"], "internal_error");
    assert_eq!(fine.status(), 200, "the ingress serves on");
    let dead = app.broker.read_all(&app.topics.dead_letter).await.unwrap();
    assert_eq!(dead.len(), 1, "dead letters of the panicking body");
    assert_eq!(
        dead[0].header("ce_deadletterreason"),
        Some("internal_error")
    );
    assert!(
        dead[0]
            .header("ce_deadlettererror")
            .is_some_and(|e| e.contains("injected fault")),
        "{:?}",
        dead[0].header("ce_deadlettererror")
    );
    let body: Value = serde_json::from_slice(&dead[0].value).unwrap();
    assert_eq!(body["eventId"], "e-boom", "the original body is kept");
    let metrics = app.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "voicehub_ingress_dead_letters_total",
            &[("reason", "internal_error")]
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &metrics,
            "voicehub_ingress_requests_total",
            &[("outcome", "internal_error")]
        ),
        1.0
    );
    assert_eq!(app.status_ids().await.len(), 1);
}
