use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use voicehub_testkit::metrics::metric_value;

use crate::helpers::{SECRET, spawn_app, spawn_app_stoppable, status_event};

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_with_requests_in_flight_loses_nothing_acknowledged() {
    let mut app = spawn_app().await;
    let acknowledged = Arc::new(AtomicUsize::new(0));

    // Act: eight senders post continuously; the drain starts once traffic is flowing.
    let senders: Vec<_> = (0..8)
        .map(|sender| {
            let client = app.client.clone();
            let url = format!("{}/webhooks/voicehub", app.base);
            let acknowledged = acknowledged.clone();
            tokio::spawn(async move {
                let mut results = Vec::new();
                for i in 0.. {
                    let id = format!("e-{sender}-{i}");
                    let response = client
                        .post(&url)
                        .header("x-webhook-secret", SECRET)
                        .body(status_event(&id, &format!("c-{sender}")).to_string())
                        .send()
                        .await
                        .map(|r| r.status().as_u16());
                    let stop = !matches!(response, Ok(200));
                    if !stop {
                        acknowledged.fetch_add(1, Ordering::Relaxed);
                    }
                    results.push((id, response.ok()));
                    if stop {
                        return results;
                    }
                }
                results
            })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while acknowledged.load(Ordering::Relaxed) < 40 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "traffic never flowed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    app.trigger.trigger();
    let mut results = Vec::new();
    for sender in senders {
        results.extend(sender.await.unwrap());
    }
    let stopped = app.task.take().unwrap().await.unwrap();

    // Assert: a clean stop; every 200 is on the topic; the rest got 503 or no answer (both
    // make VoiceHub retry).
    assert!(stopped.is_ok(), "{stopped:?}");
    let on_topic: HashSet<String> = app.status_ids().await.into_iter().collect();
    for (id, status) in &results {
        match status {
            Some(200) => assert!(
                on_topic.contains(id),
                "{id} got 200 but is not on the topic"
            ),
            Some(503) | None => {}
            Some(other) => panic!("{id}: unexpected {other}"),
        }
    }
    assert!(results.iter().filter(|(_, s)| *s == Some(200)).count() >= 40);
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_answers_every_webhook_held_in_flight() {
    // With the broker stopped, each webhook waits out the produce deadline (2 s) for a 503;
    // the drain (5 s) must let all of them have it rather than drop their connections.
    let mut app = spawn_app_stoppable(|_| {}).await;
    assert_eq!(
        app.post_json(&status_event("before", "c")).await.status(),
        200
    );
    app.broker.stop().await;

    let requests: Vec<_> = (0..8)
        .map(|i| {
            let request = app
                .client
                .post(format!("{}/webhooks/voicehub", app.base))
                .header("x-webhook-secret", SECRET)
                .body(status_event(&format!("held-{i}"), "c").to_string());
            tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let held = metric_value(
            &app.metrics().await,
            "voicehub_ingress_in_flight_requests",
            &[],
        );
        if held == 8.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{held} of 8 in flight"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.trigger.trigger();

    for (i, request) in requests.into_iter().enumerate() {
        match request.await.unwrap() {
            Ok(503) => {}
            other => panic!("held-{i}, in flight at the shutdown: {other:?}, not a 503"),
        }
    }
    let stopped = app.task.take().unwrap().await.unwrap();
    assert!(stopped.is_ok(), "{stopped:?}");
}
