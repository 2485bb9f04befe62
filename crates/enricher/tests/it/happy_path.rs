use std::collections::HashSet;

use voicehub_model::enriched::AnalysisEnriched;
use voicehub_testkit::metrics::metric_value;

use crate::helpers::{API_KEY, fixture, spawn_enricher};

#[tokio::test(flavor = "multi_thread")]
async fn every_analysis_ready_record_yields_one_enriched_record_with_the_analysis() {
    let enricher = spawn_enricher().await;
    let analysis: serde_json::Value =
        serde_json::from_slice(&fixture("analysis-result.json")).unwrap();

    for i in 0..6 {
        let url = enricher.api.url(&format!("/api/v1/analysis-results/a{i}"));
        enricher
            .send_event(&format!("e{i}"), &format!("call-{}", i % 3), &url)
            .await;
    }

    let records = enricher.enriched(6).await;
    assert_eq!(records.len(), 6);
    let ids: HashSet<&str> = records.iter().filter_map(|r| r.header("ce_id")).collect();
    for i in 0..6 {
        assert!(ids.contains(AnalysisEnriched::ce_id("acme", &format!("e{i}")).as_str()));
    }
    for record in &records {
        let value = record.json();
        assert_eq!(value["analysis"], analysis);
        assert_eq!(record.key.as_deref(), value["callId"].as_str());
        assert_eq!(
            record.header("ce_type"),
            Some("ai.dataqueue.voicehub.AnalysisEnriched")
        );
    }
    assert!(
        enricher
            .api
            .all_seen()
            .iter()
            .all(|s| s.api_key.as_deref() == Some(API_KEY))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_parse_and_count_outcomes_and_fetches() {
    let enricher = spawn_enricher().await;
    enricher
        .api
        .script("/r/denied", vec![crate::helpers::Reply::status(403)]);
    enricher
        .send_event("e1", "c1", &enricher.api.url("/r/ok"))
        .await;
    enricher
        .send_event("e2", "c2", &enricher.api.url("/r/denied"))
        .await;
    enricher.enriched(1).await;
    enricher.dead_letters(1).await;

    let scrape = enricher.metrics().await;
    let value = |name: &str, labels: &[(&str, &str)]| metric_value(&scrape, name, labels);
    assert_eq!(
        value(
            "voicehub_enricher_records_total",
            &[("outcome", "enriched")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "voicehub_enricher_records_total",
            &[("outcome", "dead_lettered")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "voicehub_enricher_dead_letters_total",
            &[("reason", "unauthorized")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "voicehub_enricher_fetch_attempts_total",
            &[("result", "ok")]
        ),
        1.0
    );
    assert_eq!(value("voicehub_enricher_in_flight_records", &[]), 0.0);
    assert_eq!(
        value("voicehub_build_info", &[("service", "enricher")]),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_api_key_file_is_used_without_a_restart_and_a_broken_one_is_ignored() {
    let enricher = spawn_enricher().await;
    let deadline = || tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    // The key the stand-in saw on the one fetch of `path` (waiting for it).
    let key_seen_for = async |path: &str| {
        let until = deadline();
        loop {
            let seen = enricher.api.seen(path);
            if let [only] = seen.as_slice() {
                return only.api_key.clone();
            }
            assert!(seen.is_empty(), "{path}: {seen:?}");
            assert!(tokio::time::Instant::now() < until, "{path} never fetched");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };

    enricher
        .send_event("e1", "c1", &enricher.api.url("/r/before"))
        .await;
    assert_eq!(key_seen_for("/r/before").await.as_deref(), Some(API_KEY));

    // Rotated: probes (each on its own path) until one carries the new key; the file is
    // re-read every 100 ms in the test settings.
    std::fs::write(enricher.key_file.path(), "rotated-key\n").unwrap();
    let until = deadline();
    for probe in 0.. {
        let path = format!("/r/probe-{probe}");
        enricher
            .send_event(&format!("probe-{probe}"), "c0", &enricher.api.url(&path))
            .await;
        if key_seen_for(&path).await.as_deref() == Some("rotated-key") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "the rotated key never used"
        );
    }
    enricher
        .send_event("e2", "c2", &enricher.api.url("/r/after"))
        .await;
    assert_eq!(
        key_seen_for("/r/after").await.as_deref(),
        Some("rotated-key")
    );

    // An empty file (a half-written rotation) keeps the previous key, counted. (Writing the
    // rotation above may itself have been read half-written: count from here.)
    let reload_errors = async || {
        let scrape = enricher.metrics().await;
        metric_value(
            &scrape,
            "voicehub_enricher_api_key_reload_errors_total",
            &[("source", "acme")],
        )
    };
    let before = reload_errors().await;
    std::fs::write(enricher.key_file.path(), "").unwrap();
    let until = deadline();
    while reload_errors().await <= before {
        assert!(
            tokio::time::Instant::now() < until,
            "the empty file was never read"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    enricher
        .send_event("e3", "c3", &enricher.api.url("/r/broken"))
        .await;
    assert_eq!(
        key_seen_for("/r/broken").await.as_deref(),
        Some("rotated-key")
    );
}
