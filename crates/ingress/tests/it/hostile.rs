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
        // 401 as for a wrong secret (a source name that is not one), or no such route.
        assert!(
            [401, 404, 405].contains(&status.as_u16()),
            "{path}: {status}"
        );
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

/// Sends raw bytes on a fresh connection, then `trickle` one byte per `pause`, and returns
/// whatever the server answered before closing (or within 15 s).
async fn raw_exchange(
    app: &crate::helpers::TestApp,
    head: &[u8],
    trickle: &[u8],
    pause: std::time::Duration,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(head).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let trickle = trickle.to_vec();
    let writer_task = tokio::spawn(async move {
        for byte in trickle {
            tokio::time::sleep(pause).await;
            if writer.write_all(&[byte]).await.is_err() {
                break; // the server closed the connection: what we are testing for
            }
        }
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        reader.read_to_end(&mut answer),
    )
    .await;
    writer_task.abort();
    String::from_utf8_lossy(&answer).into_owned()
}

fn post_head(secret: &str, extra: &str) -> String {
    format!(
        "POST /webhooks/voicehub HTTP/1.1\r\nhost: x\r\nx-webhook-secret: {secret}\r\n{extra}\r\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_trickled_byte_by_byte_is_cut_off_with_408_and_writes_nothing() {
    let app = crate::helpers::spawn_app_with(|s| s.http.body_timeout_ms = 1_000).await;
    let body = status_event("slow", "c1").to_string();
    let head = post_head(SECRET, &format!("content-length: {}\r\n", body.len()));
    let started = std::time::Instant::now();

    let answer = raw_exchange(
        &app,
        head.as_bytes(),
        body.as_bytes(),
        std::time::Duration::from_millis(200),
    )
    .await;

    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "not a 408 within the body timeout: {answer:?}"
    );
    assert!(answer.contains("\"error\":\"request_timeout\""), "{answer}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(app.all_records().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn headers_that_never_end_are_cut_off_by_the_http_layer() {
    let app = spawn_app().await;
    // Slowloris proper: the header section is never finished.
    let answer = raw_exchange(
        &app,
        b"POST /webhooks/voicehub HTTP/1.1\r\nhost: x\r\n",
        b"x-a: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        std::time::Duration::from_millis(200),
    )
    .await;
    // actix-web's client request timeout (5 s): 408 and the connection closed.
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(app.all_records().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn header_floods_are_refused_by_the_http_layer_and_write_nothing() {
    let app = spawn_app().await;
    let body = status_event("flood", "c1").to_string();
    // actix-web's limits: at most 96 headers, a header section of at most 128 KiB.
    let many: String = (0..100).map(|i| format!("x-h{i}: v\r\n")).collect();
    let huge = format!("x-big: {}\r\n", "a".repeat(200 * 1024));

    for extra in [many, huge] {
        let head = post_head(
            SECRET,
            &format!(
                "{extra}content-length: {}\r\nconnection: close\r\n",
                body.len()
            ),
        );
        let request = [head.as_bytes(), body.as_bytes()].concat();
        let answer = raw_exchange(&app, &request, b"", std::time::Duration::ZERO).await;
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    }
    assert!(app.all_records().await.is_empty());
    // The service is unharmed.
    assert_eq!(
        app.post_json(&status_event("after", "c1")).await.status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chunked_body_without_length_within_the_limit_is_accepted() {
    let app = spawn_app().await;
    let body = status_event("chunked", "c1").to_string();
    let (first, rest) = body.split_at(body.len() / 2);
    let chunk = |part: &str| format!("{:x}\r\n{part}\r\n", part.len());
    let request = format!(
        "{}{}{}0\r\n\r\n",
        post_head(
            SECRET,
            "transfer-encoding: chunked\r\nconnection: close\r\n"
        ),
        chunk(first),
        chunk(rest)
    );

    let answer = raw_exchange(&app, request.as_bytes(), b"", std::time::Duration::ZERO).await;

    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(app.status_ids().await, vec!["chunked".to_owned()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_keys_are_refused_as_an_invalid_payload_and_dead_lettered() {
    let app = spawn_app().await;
    // Which of two values is "the" eventType is undecidable: refuse rather than guess.
    let body = br#"{"eventType":"CallStatusChanged","eventId":"d1","eventId":"d2","timestamp":"2026-11-26T10:00:00Z","callId":"c1","status":"started"}"#;

    let response = app
        .post("/webhooks/voicehub", Some(SECRET), body.to_vec())
        .await;

    assert_eq!(response.status(), 400);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"], "invalid_payload", "{answer}");
    assert!(app.status_ids().await.is_empty());
    let dead = app
        .broker
        .wait_for_records(
            &app.topics.dead_letter,
            1,
            std::time::Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(dead[0].value, body.to_vec());
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_beyond_the_in_flight_byte_budget_get_503_before_they_are_read() {
    // Arrange: room for one 1.5 MB body, not two (bodies larger than the sockets' buffers, so
    // that a body left unread would show as a reset).
    let app = crate::helpers::spawn_app_with(|s| {
        s.http.max_body_bytes = 1_600_000;
        s.http.max_in_flight_body_bytes = 2 * 1024 * 1024;
        s.http.body_budget_wait_ms = 300;
        // The first body waits while the second is sent (about 7 s).
        s.http.body_timeout_ms = 30_000;
    })
    .await;
    let size = 1_500_000;
    let padded = |id: &str| {
        let mut body = status_event(id, "c1").to_string();
        body.push_str(&" ".repeat(size - body.len()));
        body
    };
    // A slow sender holds its reservation: headers sent, the body not yet.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app.base.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = post_head(SECRET, &format!("content-length: {size}\r\n"));
    slow.write_all(head.as_bytes()).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while reserved(&app).await < 1_500_000.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow body never reserved"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // Act: a second body that does not fit beside it, sent in pieces (as a slow sender would:
    // the answer must still reach it, not a connection reset), then one sent at once.
    let mut second = tokio::net::TcpStream::connect(&address).await.unwrap();
    let closing = post_head(
        SECRET,
        &format!("content-length: {size}\r\nconnection: close\r\n"),
    );
    second.write_all(closing.as_bytes()).await.unwrap();
    for piece in padded("refused-slowly").as_bytes().chunks(64 * 1024) {
        second.write_all(piece).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let mut answer = String::new();
    second.read_to_string(&mut answer).await.unwrap();
    let refused = app
        .post(
            "/webhooks/voicehub",
            Some(SECRET),
            padded("refused").into_bytes(),
        )
        .await;

    // Assert: 503 overloaded with Retry-After, nothing written; once the slow body is in,
    // the budget is free again.
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("\"error\":\"overloaded\""), "{answer}");
    crate::helpers::assert_retry_later(refused, "overloaded").await;
    slow.write_all(padded("slow").as_bytes()).await.unwrap();
    let mut answer = [0u8; 12];
    slow.read_exact(&mut answer).await.unwrap();
    assert_eq!(
        &answer,
        b"HTTP/1.1 200",
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(
        app.post(
            "/webhooks/voicehub",
            Some(SECRET),
            padded("after").into_bytes()
        )
        .await
        .status(),
        200
    );
    assert_eq!(app.status_ids().await, ["slow", "after"]);
    assert_eq!(reserved(&app).await, 0.0);
}

async fn reserved(app: &crate::helpers::TestApp) -> f64 {
    voicehub_testkit::metrics::metric_value(
        &app.metrics().await,
        "voicehub_ingress_body_bytes_reserved",
        &[],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_beyond_the_in_flight_limit_gets_503_and_the_held_ones_are_answered() {
    // Arrange: two requests at most; two slow senders hold both (headers sent, body not yet).
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = crate::helpers::spawn_app_with(|s| {
        s.http.max_in_flight = 2;
        s.http.body_timeout_ms = 30_000;
    })
    .await;
    let address = app.base.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for i in 0..2 {
        let body = status_event(&format!("held-{i}"), "c1").to_string();
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        let head = post_head(SECRET, &format!("content-length: {}\r\n", body.len()));
        stream.write_all(head.as_bytes()).await.unwrap();
        held.push((stream, body));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let scrape = app.metrics().await;
        let in_flight = metric_value(&scrape, "voicehub_ingress_in_flight_requests", &[]);
        if in_flight == 2.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the slow senders never held their slots ({in_flight} in flight)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // Act
    let refused = app
        .post(
            "/webhooks/voicehub",
            Some(SECRET),
            status_event("refused", "c2").to_string().into_bytes(),
        )
        .await;

    // Assert: 503 overloaded with Retry-After; the held ones are answered 200 once their bodies
    // arrive, and a request after them is taken again; only the three accepted are written.
    assert_eq!(
        refused.status(),
        503,
        "a request beyond http.max_in_flight was taken in"
    );
    crate::helpers::assert_retry_later(refused, "overloaded").await;
    for (mut stream, body) in held {
        stream.write_all(body.as_bytes()).await.unwrap();
        let mut answer = [0u8; 12];
        stream.read_exact(&mut answer).await.unwrap();
        assert_eq!(
            &answer,
            b"HTTP/1.1 200",
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
    let after = app
        .post(
            "/webhooks/voicehub",
            Some(SECRET),
            status_event("after", "c2").to_string().into_bytes(),
        )
        .await;
    assert_eq!(after.status(), 200);
    let records = app
        .broker
        .wait_for_records(
            &app.topics.call_status_changed,
            3,
            std::time::Duration::from_secs(10),
        )
        .await
        .unwrap();
    let mut ids: Vec<String> = records
        .iter()
        .filter_map(|r| r.json()["eventId"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    assert_eq!(ids, ["after", "held-0", "held-1"]);
}
