use std::time::{Duration, Instant};

use crate::helpers::{Reply, StandIn, spawn_enricher};

#[tokio::test(flavor = "multi_thread")]
async fn a_server_error_twice_then_success_is_enriched_after_retries() {
    let enricher = spawn_enricher().await;
    enricher.api.script(
        "/r/flaky",
        vec![Reply::status(500), Reply::status(503), Reply::analysis()],
    );

    enricher
        .send_event("e1", "c1", &enricher.api.url("/r/flaky"))
        .await;

    assert_eq!(enricher.enriched(1).await.len(), 1);
    assert_eq!(enricher.api.seen("/r/flaky").len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn not_found_until_ready_is_enriched_once_ready() {
    let enricher = spawn_enricher().await;
    let mut replies = vec![Reply::status(404); 4];
    replies.push(Reply::analysis());
    enricher.api.script("/r/later", replies);

    enricher
        .send_event("e1", "c1", &enricher.api.url("/r/later"))
        .await;

    assert_eq!(enricher.enriched(1).await.len(), 1);
    assert_eq!(enricher.api.seen("/r/later").len(), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_with_retry_after_is_waited_out() {
    let enricher = spawn_enricher().await;
    let limited = Reply {
        retry_after: Some(1),
        ..Reply::status(429)
    };
    enricher
        .api
        .script("/r/limited", vec![limited, Reply::analysis()]);

    enricher
        .send_event("e1", "c1", &enricher.api.url("/r/limited"))
        .await;

    assert_eq!(enricher.enriched(1).await.len(), 1);
    let seen = enricher.api.seen("/r/limited");
    assert_eq!(seen.len(), 2);
    assert!(seen[1].at.duration_since(seen[0].at) >= Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_is_retried() {
    let enricher = spawn_enricher().await;
    let slow = Reply {
        delay: Duration::from_secs(3),
        ..Reply::analysis()
    };
    enricher
        .api
        .script("/r/slow", vec![slow, Reply::analysis()]);

    enricher
        .send_event("e1", "c1", &enricher.api.url("/r/slow"))
        .await;

    assert_eq!(enricher.enriched(1).await.len(), 1);
    assert_eq!(enricher.api.seen("/r/slow").len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn unauthorized_is_dead_lettered_at_once() {
    let enricher = spawn_enricher().await;
    enricher.api.script("/r/denied", vec![Reply::status(401)]);

    enricher
        .send_event("e1", "c1", &enricher.api.url("/r/denied"))
        .await;

    let dead = enricher.dead_letters(1).await;
    assert_eq!(dead[0].header("ce_deadletterreason"), Some("unauthorized"));
    assert_eq!(dead[0].header("ce_deadletterstage"), Some("enricher"));
    assert_eq!(dead[0].key.as_deref(), Some("c1"));
    assert_eq!(
        dead[0].json()["eventId"],
        "e1",
        "the original record is kept"
    );
    assert_eq!(enricher.api.seen("/r/denied").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_off_the_allow_list_is_dead_lettered_and_never_sees_the_key() {
    let enricher = spawn_enricher().await;
    // Same server, other spelling: not on the allow-list (which names 127.0.0.1:port).
    let forged = format!("http://localhost:{}/r/forged", enricher.api.port);

    enricher.send_event("e1", "c1", &forged).await;

    let dead = enricher.dead_letters(1).await;
    assert_eq!(
        dead[0].header("ce_deadletterreason"),
        Some("disallowed_url")
    );
    assert!(
        enricher.api.all_seen().is_empty(),
        "the key left the process"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_to_another_host_is_not_followed_and_that_host_never_sees_the_key() {
    let enricher = spawn_enricher().await;
    let elsewhere = StandIn::start();
    let redirect = Reply {
        location: Some(elsewhere.url("/steal")),
        ..Reply::status(302)
    };
    enricher.api.script("/r/moved", vec![redirect]);

    enricher
        .send_event("e1", "c1", &enricher.api.url("/r/moved"))
        .await;

    let dead = enricher.dead_letters(1).await;
    assert_eq!(dead[0].header("ce_deadletterreason"), Some("redirected"));
    assert_eq!(enricher.api.seen("/r/moved").len(), 1);
    assert!(elsewhere.all_seen().is_empty(), "the redirect was followed");
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_json_and_an_oversized_body_are_dead_lettered_with_distinct_reasons() {
    let enricher = spawn_enricher().await;
    let garbage = Reply {
        body: b"<html>oops</html>".to_vec(),
        ..Reply::status(200)
    };
    let huge = Reply {
        body: vec![b' '; 65 * 1024],
        ..Reply::status(200)
    };
    enricher.api.script("/r/garbage", vec![garbage]);
    enricher.api.script("/r/huge", vec![huge]);

    enricher
        .send_event("e1", "c1", &enricher.api.url("/r/garbage"))
        .await;
    enricher
        .send_event("e2", "c2", &enricher.api.url("/r/huge"))
        .await;

    let dead = enricher.dead_letters(2).await;
    let mut reasons: Vec<&str> = dead
        .iter()
        .filter_map(|r| r.header("ce_deadletterreason"))
        .collect();
    reasons.sort_unstable();
    assert_eq!(reasons, ["invalid_analysis", "too_large"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_fetch_does_not_delay_the_others_in_its_partition() {
    // A fetch times out after 4 s, so the hanging record's second request comes after 4 s;
    // the records behind it must be fetched before that, while its first request still hangs.
    // Taken one at a time, they would wait until it is dead-lettered (10 s of budget).
    let enricher = crate::helpers::spawn_enricher_with(|s| {
        s.fetch.timeout_ms = 4_000;
        s.retry.max_elapsed_ms = 10_000;
    })
    .await;
    enricher.api.script("/r/hang", vec![Reply::hanging()]);
    let urls: Vec<String> = ["/r/hang", "/r/0", "/r/1", "/r/2"]
        .iter()
        .map(|path| enricher.api.url(path))
        .collect();

    // Same call id: same partition, the hanging record first.
    enricher
        .send_events(&[
            ("hang", "c1", &urls[0]),
            ("e0", "c1", &urls[1]),
            ("e1", "c1", &urls[2]),
            ("e2", "c1", &urls[3]),
        ])
        .await;

    assert_eq!(enricher.enriched(3).await.len(), 3);
    let deadline = Instant::now() + Duration::from_secs(30);
    while enricher.api.seen("/r/hang").len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the hanging fetch was not retried"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let retried = enricher.api.seen("/r/hang")[1].at;
    for path in ["/r/0", "/r/1", "/r/2"] {
        let fetched = enricher.api.seen(path)[0].at;
        assert!(
            fetched < retried,
            "{path} was fetched only after the record ahead of it had timed out"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_enriched_record_too_large_for_kafka_is_dead_lettered_with_its_size() {
    // The producer's own limit stands in for the broker's (tansu enforces none).
    let enricher = crate::helpers::spawn_enricher_with(|s| {
        s.kafka
            .properties
            .insert("message.max.bytes".into(), "3000".into());
    })
    .await;

    enricher
        .send_event("e1", "c1", &enricher.api.url("/r/big"))
        .await;

    let dead = enricher.dead_letters(1).await;
    assert_eq!(
        dead[0].header("ce_deadletterreason"),
        Some("enriched_too_large")
    );
    let error = dead[0].header("ce_deadlettererror").unwrap();
    assert!(error.contains("bytes"), "{error}");
    assert!(
        enricher
            .broker
            .read_all(&enricher.topics.analysis_enriched)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_after_beyond_the_retry_budget_is_dead_lettered_not_waited_for() {
    // A budget of 60 s, and the server asks for a day: the dead letter must come at once, well
    // within the 30 s `dead_letters` waits, not when the budget runs out.
    let enricher = crate::helpers::spawn_enricher_with(|s| s.retry.max_elapsed_ms = 60_000).await;
    let limited = Reply {
        retry_after: Some(86_400),
        ..Reply::status(429)
    };
    enricher.api.script("/r/day", vec![limited]);

    enricher
        .send_event("e1", "c1", &enricher.api.url("/r/day"))
        .await;

    let dead = enricher.dead_letters(1).await;
    assert_eq!(
        dead[0].header("ce_deadletterreason"),
        Some("retries_exhausted")
    );
    let error = dead[0].header("ce_deadlettererror").unwrap();
    assert!(error.contains("429"), "{error}");
    assert!(error.contains("after 1 attempts"), "{error}");
    assert_eq!(enricher.api.seen("/r/day").len(), 1, "not asked again");
}

#[tokio::test(flavor = "multi_thread")]
async fn backoff_is_cut_to_the_retry_budget_with_a_last_attempt_at_its_end() {
    let enricher = crate::helpers::spawn_enricher_with(|s| {
        s.retry.initial_backoff_ms = 10_000;
        s.retry.max_backoff_ms = 10_000;
        s.retry.max_elapsed_ms = 1_500;
    })
    .await;
    enricher.api.script("/r/down", vec![Reply::status(503)]);

    enricher
        .send_event("e1", "c1", &enricher.api.url("/r/down"))
        .await;

    let dead = enricher.dead_letters(1).await;
    assert_eq!(
        dead[0].header("ce_deadletterreason"),
        Some("retries_exhausted")
    );
    let seen = enricher.api.seen("/r/down");
    assert_eq!(seen.len(), 2, "one attempt, one at the end of the budget");
    let gap = seen[1].at.duration_since(seen[0].at);
    assert!(
        gap >= Duration::from_millis(1_300) && gap < Duration::from_secs(5),
        "{gap:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panic_on_the_record_path_dead_letters_the_record_and_its_offset_completes() {
    let fault = voicehub_runtime::FaultHook::new(|event| {
        assert!(event.event_id() != "e-boom", "injected fault");
    });
    let enricher = crate::helpers::spawn_enricher_faulty(|_| {}, Some(fault)).await;
    let url = enricher.api.url("/r/any");

    enricher
        .send_events(&[("e-boom", "c1", &url), ("e-fine", "c1", &url)])
        .await;

    let dead = enricher.dead_letters(1).await;
    assert_eq!(
        dead[0].header("ce_deadletterreason"),
        Some("internal_error")
    );
    assert!(
        dead[0]
            .header("ce_deadlettererror")
            .is_some_and(|e| e.contains("injected fault"))
    );
    let enriched = enricher.enriched(1).await;
    assert_eq!(enriched.len(), 1);
    let scrape = enricher.metrics().await;
    assert_eq!(
        voicehub_testkit::metrics::metric_value(
            &scrape,
            "voicehub_enricher_dead_letters_total",
            &[("reason", "internal_error")]
        ),
        1.0
    );
    // Both offsets complete: the group's committed offsets reach the end of the input.
    enricher.wait_committed(2).await;
}
