use std::collections::HashSet;
use std::time::Duration;

use voicehub_model::enriched::AnalysisEnriched;
use voicehub_testkit::metrics::metric_value;

use voicehub_enricher::consumer_watch::WEDGE_LIMIT;

use crate::helpers::{Reply, spawn_enricher, spawn_enricher_stoppable, spawn_enricher_with};

#[tokio::test(flavor = "multi_thread")]
async fn a_clean_stop_commits_so_a_successor_does_not_redo_the_work() {
    let mut enricher = spawn_enricher().await;
    for i in 0..4 {
        enricher
            .send_event(
                &format!("e{i}"),
                &format!("c{i}"),
                &enricher.api.url("/r/x"),
            )
            .await;
    }
    enricher.enriched(4).await;

    // Act
    assert!(enricher.stop().await.is_ok());
    enricher.restart().await;
    enricher
        .send_event("e4", "c4", &enricher.api.url("/r/x"))
        .await;

    // Assert: the successor processed only the new record.
    enricher.enriched(5).await;
    // Proving that nothing more happens needs a window: a redo would come within it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(enricher.enriched(5).await.len(), 5);
    assert_eq!(enricher.api.seen("/r/x").len(), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn aborted_mid_stream_a_successor_redoes_the_unfinished_with_the_same_ids() {
    // The first record's fetch hangs (one attempt: a 30 s fetch timeout): it is in flight when
    // the instance is aborted, so its offset was never committed and the successor must fetch
    // it again.
    let mut enricher = spawn_enricher_with(|s| {
        s.fetch.timeout_ms = 30_000;
        s.retry.max_elapsed_ms = 60_000;
    })
    .await;
    enricher.api.script("/r/hang", vec![Reply::hanging()]);
    let slow = Reply {
        delay: Duration::from_millis(700),
        ..Reply::analysis()
    };
    enricher.api.script("/r/slow", vec![slow]);
    let total = 12;
    enricher
        .send_event("e0", "c0", &enricher.api.url("/r/hang"))
        .await;
    for i in 1..total {
        enricher
            .send_event(
                &format!("e{i}"),
                &format!("c{}", i % 3),
                &enricher.api.url("/r/slow"),
            )
            .await;
    }
    enricher.enriched(1).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while enricher.api.seen("/r/hang").is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the hanging fetch never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(enricher.api.seen("/r/hang").len(), 1);

    // Act: no drain, no final commit; then a new instance in the same group, the API healed.
    enricher.abort().await;
    enricher.api.script("/r/hang", vec![Reply::analysis()]);
    enricher.restart().await;

    // Assert: every input has its enriched record, the unfinished one redone with its ce_id.
    let expected: HashSet<String> = (0..total)
        .map(|i| AnalysisEnriched::ce_id("acme", &format!("e{i}")))
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let records = loop {
        let records = enricher.enriched(1).await;
        let ids: HashSet<String> = records
            .iter()
            .filter_map(|r| r.header("ce_id").map(str::to_owned))
            .collect();
        assert!(ids.is_subset(&expected), "unexpected ids");
        if ids == expected {
            break records;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {total} enriched",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        enricher.api.seen("/r/hang").len(),
        2,
        "the unfinished fetch was not redone"
    );
    // Redone beyond it: the records that finished behind it on its partition (their offsets
    // could not be committed past the stuck one) and any other in flight: with 4 in flight and
    // 12 records on 2 partitions, 8 allowed.
    let extra = records.len() - total;
    assert!(extra <= 8, "{extra} records enriched twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rebalance_to_a_second_instance_loses_nothing() {
    let enricher = spawn_enricher().await;
    let slow = Reply {
        delay: Duration::from_millis(300),
        ..Reply::analysis()
    };
    enricher.api.script("/r/slow", vec![slow]);
    let url = enricher.api.url("/r/slow");
    let send = async |i: usize| {
        enricher
            .send_event(&format!("e{i}"), &format!("c{i}"), &url)
            .await;
    };
    for i in 0..8 {
        send(i).await;
    }
    enricher.enriched(1).await;

    // Act: a second instance joins (partitions move once the first learns of it, at its next
    // heartbeat); records keep arriving until the second has enriched some.
    let second = enricher.add_instance().await;
    let enriched_by_second = async || {
        let scrape = voicehub_testkit::metrics::scrape(&format!(
            "http://127.0.0.1:{}/metrics",
            second.admin_port
        ))
        .await;
        metric_value(
            &scrape,
            "voicehub_enricher_records_total",
            &[("outcome", "enriched")],
        )
    };
    let mut total = 8;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while enriched_by_second().await < 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second instance enriched nothing"
        );
        send(total).await;
        total += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Assert: everything enriched; the two shared the work (each record about once) rather
    // than both doing all of it.
    let expected: HashSet<String> = (0..total)
        .map(|i| AnalysisEnriched::ce_id("acme", &format!("e{i}")))
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let records = loop {
        let records = enricher.enriched(1).await;
        let ids: HashSet<String> = records
            .iter()
            .filter_map(|r| r.header("ce_id").map(str::to_owned))
            .collect();
        if ids == expected {
            break records;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {total} enriched",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Redone at the move: what was in flight on the old owner (4) and what finished behind it.
    let extra = records.len() - total;
    assert!(extra <= 8, "{extra} records enriched twice");
    second.trigger.trigger();
    assert!(second.task.await.unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stop_with_the_broker_gone_still_exits_in_bounded_time() {
    let mut enricher = spawn_enricher_stoppable().await;
    enricher
        .send_event("e0", "c0", &enricher.api.url("/r/x"))
        .await;
    enricher.enriched(1).await;

    // Act
    enricher.broker.stop().await;
    let stopped = tokio::time::timeout(Duration::from_secs(30), enricher.stop()).await;

    // Assert: drain (3 s), close (5 s) and flush (3 s) are each bounded.
    assert!(matches!(stopped, Ok(Ok(()))), "{stopped:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_follows_the_broker() {
    let mut enricher = spawn_enricher_stoppable().await;
    enricher.wait_readyz(200, Duration::from_secs(10)).await;

    // Act: the broker goes away, then comes back.
    enricher.broker.stop().await;
    // Three unanswered probes, 2 s apart, each waiting up to 2 s.
    let body = enricher.wait_readyz(503, Duration::from_secs(30)).await;

    // Assert
    assert_eq!(body["failing"], serde_json::json!(["broker"]), "{body}");
    let scrape = enricher.metrics().await;
    assert_eq!(
        metric_value(&scrape, "voicehub_enricher_broker_reachable", &[]),
        0.0
    );
    enricher.broker.resume().await.unwrap();
    enricher.wait_readyz(200, Duration::from_secs(30)).await;
    enricher
        .send_event("e0", "c0", &enricher.api.url("/r/x"))
        .await;
    enricher.enriched(1).await;
    assert!(enricher.stop().await.is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_that_knows_no_broker_is_replaced_and_nothing_is_lost() {
    // No statistics: none comes to end the pretended wedge before the loop sees it.
    let enricher = spawn_enricher_with(|s| s.kafka.statistics_interval_ms = 0).await;
    let url = enricher.api.url("/r/x");
    for i in 0..4 {
        enricher
            .send_event(&format!("e{i}"), &format!("c{i}"), &url)
            .await;
    }
    enricher.enriched(4).await;

    // Act: the consumer's statistics as in the wedge (librdkafka#5301): no broker it was
    // configured with or learned, for the wedge limit.
    enricher.broker_watch.pretend_brokerless_for(WEDGE_LIMIT);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while metric_value(
        &enricher.metrics().await,
        "voicehub_enricher_consumer_rebuilds_total",
        &[],
    ) < 1.0
    {
        assert!(tokio::time::Instant::now() < deadline, "never rebuilt");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 4..8 {
        enricher
            .send_event(&format!("e{i}"), &format!("c{i}"), &url)
            .await;
    }

    // Assert: the new consumer goes on where the old one committed: everything enriched,
    // nothing twice (the old one drained and committed as at shutdown), ready again.
    let records = enricher.enriched(8).await;
    let ids: HashSet<String> = records
        .iter()
        .filter_map(|r| r.header("ce_id").map(str::to_owned))
        .collect();
    assert_eq!(ids.len(), 8, "{ids:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(enricher.enriched(8).await.len(), 8);
    enricher.wait_readyz(200, Duration::from_secs(10)).await;
    let rebuilds = metric_value(
        &enricher.metrics().await,
        "voicehub_enricher_consumer_rebuilds_total",
        &[],
    );
    assert_eq!(
        rebuilds, 1.0,
        "a new consumer is rebuilt only once wedged itself"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partition_held_back_starts_no_more_than_its_bound_and_its_successor_redoes_only_those() {
    // One call: one partition. Its first record hangs; 30 quick ones follow. With at most 8
    // records started and not committable, 7 behind the hanging one are done, then the
    // partition waits. Stopped, the hanging one is abandoned (a short drain): a successor
    // redoes it and those 7, no more.
    const BOUND: usize = 8;
    let mut enricher = spawn_enricher_with(|s| {
        s.consumer.max_in_flight = 64;
        s.consumer.max_uncommitted_per_partition = BOUND;
        s.consumer.drain_timeout_ms = 500;
        s.fetch.timeout_ms = 30_000;
        s.retry.max_elapsed_ms = 60_000;
    })
    .await;
    enricher.api.script("/r/hang", vec![Reply::hanging()]);
    let (hang_url, quick_url) = (enricher.api.url("/r/hang"), enricher.api.url("/r/x"));
    let ids: Vec<String> = (1..=30).map(|i| format!("e{i}")).collect();
    let mut events = vec![("e0", "c1", hang_url.as_str())];
    events.extend(ids.iter().map(|id| (id.as_str(), "c1", quick_url.as_str())));
    enricher.send_events(&events).await;

    enricher.enriched(BOUND - 1).await;
    // The rest would follow within this window if the bound did not hold.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = enricher.api.seen("/r/x").len();
    assert_eq!(
        started,
        BOUND - 1,
        "{started} records started behind a hanging one: the partition's bound is {BOUND}"
    );
    let scrape = enricher.metrics().await;
    assert_eq!(
        metric_value(
            &scrape,
            "voicehub_enricher_uncommitted_limit_reached_total",
            &[]
        ),
        1.0
    );

    enricher.api.script("/r/hang", vec![Reply::analysis()]);
    assert!(enricher.stop().await.is_ok());
    enricher.restart().await;

    // Each of the 31 once, and a second copy (same ce_id) of the 7 done behind the hanging one.
    enricher.enriched(31 + BOUND - 1).await;
    // A further redo would come within this window.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let records = enricher.enriched(31 + BOUND - 1).await;
    let mut copies: std::collections::BTreeMap<String, usize> = Default::default();
    for record in &records {
        *copies
            .entry(
                record.json()["eventId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
            .or_default() += 1;
    }
    let twice: HashSet<&str> = copies
        .iter()
        .filter(|(_, n)| **n == 2)
        .map(|(id, _)| id.as_str())
        .collect();
    let expected: HashSet<&str> = ids[..BOUND - 1].iter().map(String::as_str).collect();
    assert_eq!(copies.len(), 31, "{copies:?}");
    assert_eq!(twice, expected, "{copies:?}");
    assert_eq!(records.len(), 31 + BOUND - 1, "{copies:?}");
}
