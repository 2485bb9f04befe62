use std::time::Duration;

use voicehub_testkit::metrics::metric_value;

use crate::helpers::{Reply, TestEnricher, spawn_enricher};

const BACKLOG_BYTES: f64 = 64.0 * 1024.0;

async fn gauges(enricher: &TestEnricher) -> (f64, f64, f64) {
    let scrape = enricher.metrics().await;
    (
        metric_value(&scrape, "voicehub_enricher_in_flight_records", &[]),
        metric_value(&scrape, "voicehub_enricher_backlog_bytes", &[]),
        metric_value(&scrape, "voicehub_enricher_fetching_paused", &[]),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_backlog_pauses_fetching_and_everything_is_enriched_once_it_drains() {
    let enricher = spawn_enricher().await;
    let slow = Reply {
        delay: Duration::from_millis(1_500),
        ..Reply::analysis()
    };
    enricher.api.script("/r/slow", vec![slow]);
    // About 100 records fill the 64 KiB backlog of the test settings; 4 are in flight.
    let total = 300;
    let ids: Vec<(String, String)> = (0..total)
        .map(|i| (format!("e{i}"), format!("c{}", i % 7)))
        .collect();
    let url = enricher.api.url("/r/slow");
    let events: Vec<(&str, &str, &str)> = ids
        .iter()
        .map(|(event, call)| (event.as_str(), call.as_str(), url.as_str()))
        .collect();
    enricher.send_events(&events).await;

    // Assert: the backlog fills to its bound, fetching pauses, nothing more is taken in.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (in_flight, backlog) = loop {
        let (in_flight, backlog, paused) = gauges(&enricher).await;
        if paused == 1.0 {
            break (in_flight, backlog);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never paused: backlog {backlog} bytes, {in_flight} in flight"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(in_flight, 4.0);
    // At most the bound plus the one record that crossed it; while paused, above half of it
    // (the resume point). Not exactly the bound: on a loaded machine the first scrape that
    // sees the pause can come after a slow record finished and a backlog record took its slot.
    assert!(
        (BACKLOG_BYTES / 2.0..BACKLOG_BYTES + 2048.0).contains(&backlog),
        "{backlog}"
    );

    // Act: the API speeds up.
    enricher.api.script("/r/slow", vec![Reply::analysis()]);

    // Assert: all enriched, fetching resumed, backlog empty.
    assert_eq!(enricher.enriched(total).await.len(), total);
    let (in_flight, backlog, paused) = gauges(&enricher).await;
    assert_eq!((in_flight, backlog, paused), (0.0, 0.0, 0.0));
}
