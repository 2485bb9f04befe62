//! Simulator → ingress → broker → enricher → enriched topic, all real, in one process.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use voicehub_simulator::{AnalysisTrouble, SendOptions, Trouble, simulate};
use voicehub_testkit::TestBroker;
use voicehub_testkit::metrics::scrape;

use crate::harness::{Bridge, SECRET, ce_ids, expected_enriched_ids, per_call};

const CALLS: usize = 300;

#[tokio::test(flavor = "multi_thread")]
async fn every_acknowledged_call_event_lands_in_order_and_every_analysis_is_enriched() {
    let broker = TestBroker::start().await.unwrap();
    // Slow-ish and failing once per analysis: the enricher retries.
    let bridge = Bridge::start(
        &broker,
        AnalysisTrouble {
            delay: Duration::from_millis(5),
            fail_first: 1,
        },
    )
    .await;
    let (webhook_url, topics, api) = (
        bridge.webhook_url.clone(),
        bridge.topics.clone(),
        &bridge.api,
    );

    // Act
    let report = simulate(SendOptions {
        webhook_url: webhook_url.clone(),
        secret: SECRET.into(),
        calls: CALLS,
        concurrency: 16,
        calls_per_second: None,
        retries: 3,
        retry_delay: Duration::from_millis(100),
        timeout: Duration::from_secs(10),
        analysis_base: api.base_url(),
        run: "e2e".into(),
        trouble: Trouble {
            duplicate_every: Some(9),
            out_of_order_every: Some(7),
            malformed_every: Some(25),
        },
    })
    .await;

    // Assert: what the simulator was told, then what the topics hold.
    let malformed = CALLS.div_ceil(25);
    assert_eq!(report.refused, malformed, "{report:?}");
    assert_eq!(report.acknowledged, report.webhooks - malformed);
    assert!(report.duplicates_sent > 0);

    let mut acked_by_type: HashMap<&str, Vec<&voicehub_simulator::Acknowledged>> = HashMap::new();
    for ack in &report.acked {
        acked_by_type.entry(ack.event_type).or_default().push(ack);
    }
    for (event_type, topic) in [
        ("CallStatusChanged", &topics.call_status_changed),
        ("RecordingsAvailable", &topics.recordings_available),
        ("AnalysisResultReady", &topics.analysis_result_ready),
    ] {
        let acked = &acked_by_type[event_type];
        let records = broker.read_all(topic).await.unwrap();
        assert_eq!(
            records.len(),
            acked.len(),
            "{topic}: one record per acknowledged event"
        );
        assert_eq!(
            per_call(&records),
            per_call_acked(acked),
            "{topic}: per-call order"
        );
    }

    // Every malformed attempt (first try and 3 retries) is a dead letter of the ingress.
    let dead = broker
        .wait_for_records(&topics.dead_letter, malformed * 4, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(dead.len(), malformed * 4);

    // Every analysis is enriched; a redelivery would carry the same id.
    let expected = expected_enriched_ids(&report);
    let enriched = broker
        .wait_for_records(
            &topics.analysis_enriched,
            expected.len(),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(ce_ids(&enriched), expected);

    // The alert rules and the dashboard only name metrics the services export. Families appear once used, so
    // first a wrong secret and an analysis URL off the allow-list (dead-lettered by the enricher).
    let http = reqwest::Client::new();
    let post = |secret: &'static str, body: serde_json::Value| {
        http.post(&webhook_url)
            .header("x-webhook-secret", secret)
            .body(body.to_string())
            .send()
    };
    assert_eq!(
        post("wrong", serde_json::json!({})).await.unwrap().status(),
        401
    );
    let forged = serde_json::json!({
        "eventType": "AnalysisResultReady", "eventId": "forged-1", "callId": "forged",
        "analysisId": "anl_forged", "timestamp": "2026-11-26T10:00:00Z",
        "analysisResultUrl": "https://attacker.example/steal",
    });
    assert_eq!(post(SECRET, forged).await.unwrap().status(), 200);
    broker
        .wait_for_records(
            &topics.dead_letter,
            malformed * 4 + 1,
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    // The consumer-lag gauge comes with librdkafka's statistics (every 5 s): scrape until
    // everything named is there, or the deadline says what never came.
    let deadline = Instant::now() + Duration::from_secs(20);
    for file in ["prometheus/alerts.yml", "grafana/voicehub-bridge.json"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy")
            .join(file);
        let named = metric_names(&std::fs::read_to_string(path).unwrap());
        assert!(named.len() >= 8, "{file}: {named:?}");
        let missing = loop {
            let mut exported = HashSet::new();
            for port in [bridge.ingress_admin, bridge.enricher_admin] {
                let scrape = scrape(&format!("http://127.0.0.1:{port}/metrics")).await;
                exported.extend(scrape.samples.into_iter().map(|s| s.metric));
            }
            let missing: Vec<&String> = named.iter().filter(|n| !exported.contains(*n)).collect();
            if missing.is_empty() || Instant::now() > deadline {
                break missing;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        assert!(
            missing.is_empty(),
            "{file} names unexported metrics: {missing:?}"
        );
    }

    bridge.stop().await;
}

/// Event ids per call, in acknowledgement order.
fn per_call_acked(acked: &[&voicehub_simulator::Acknowledged]) -> HashMap<String, Vec<String>> {
    let mut calls: HashMap<String, Vec<String>> = HashMap::new();
    for ack in acked {
        calls
            .entry(ack.call_id.clone())
            .or_default()
            .push(ack.event_id.clone().unwrap_or_default());
    }
    calls
}

/// The `voicehub_*` metric names in Prometheus rules, histogram suffixes removed.
fn metric_names(rules: &str) -> HashSet<String> {
    let mut names = HashSet::new();
    for (start, _) in rules.match_indices("voicehub_") {
        let name: String = rules[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(&name);
        names.insert(base.to_owned());
    }
    names
}
