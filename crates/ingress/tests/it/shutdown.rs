use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::helpers::{SECRET, spawn_app, status_event};

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
