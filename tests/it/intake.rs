//! Flow control judged from outside the enricher: the real binary, configured the way the
//! chart configures it (a file, limits from the environment), stalled by an analysis API that
//! does not answer while fifty times its backlog bound waits on the input topic. Its memory,
//! read from the kernel, shows how much of that input it took in.

use std::time::Duration;

use voicehub_model::event::parse_webhook;
use voicehub_model::record::Provenance;
use voicehub_model::{Timestamp, Topics};
use voicehub_runtime::kafka;
use voicehub_runtime::settings::KafkaSettings;
use voicehub_simulator::{AnalysisApi, AnalysisTrouble};
use voicehub_testkit::metrics::{metric_value, scrape};
use voicehub_testkit::{TestBroker, free_port};

use crate::harness::{API_KEY, SecretFiles};
use crate::process::{Service, enricher_toml, kafka_toml};

const BACKLOG_BYTES: u64 = 256 * 1024;
/// Inputs of `PADDING` bytes each waiting on the topic: about 50 MiB, 200 times the bound.
const INPUTS: usize = 800;
const PADDING: usize = 64 * 1024;

/// A process's resident memory now and at its peak (`VmRSS`, `VmHWM`), in bytes.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kib| kib * 1024)
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn paused(admin_port: u16) -> bool {
    let scrape = scrape(&format!("http://127.0.0.1:{admin_port}/metrics")).await;
    metric_value(&scrape, "voicehub_enricher_fetching_paused", &[]) == 1.0
}

/// `INPUTS` analysis-ready records of `PADDING` bytes each (an undocumented field VoiceHub
/// might add, kept as it came), every analysis at `api`.
async fn produce_inputs(broker: &TestBroker, topics: &Topics, api: &AnalysisApi) {
    let settings = KafkaSettings {
        bootstrap_servers: broker.bootstrap_servers(),
        ..KafkaSettings::default()
    };
    let producer =
        kafka::create_producer(&settings, rdkafka::client::DefaultClientContext).unwrap();
    let padding = "x".repeat(PADDING);
    let provenance = Provenance {
        source: "default",
        received_at: Timestamp::now(),
        bridge_version: "test",
    };
    let mut deliveries = Vec::with_capacity(INPUTS);
    for i in 0..INPUTS {
        let body = serde_json::json!({
            "eventType": "AnalysisResultReady",
            "eventId": format!("intake-{i}"),
            "timestamp": "2025-10-14T09:27:58.377Z",
            "callId": format!("call-{}", i % 13),
            "analysisId": format!("anl-{i}"),
            "analysisResultUrl": format!("{}/anl-{i}", api.base_url()),
            "padding": padding,
        });
        let record = parse_webhook(body.to_string().as_bytes())
            .unwrap()
            .to_record(&provenance);
        deliveries.push(kafka::enqueue(&producer, &topics.analysis_result_ready, &record).unwrap());
    }
    for delivery in deliveries {
        kafka::delivered(delivery).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_enricher_takes_in_no_more_than_its_backlog_bound() {
    let broker = TestBroker::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secrets = SecretFiles::write();
    // Every analysis answers after two minutes: the two records in flight never finish here.
    let trouble = AnalysisTrouble {
        delay: Duration::from_secs(120),
        ..AnalysisTrouble::default()
    };
    let api = AnalysisApi::start("127.0.0.1:0", API_KEY, trouble).unwrap();
    let admin_port = free_port().unwrap();
    let rest = format!("[fetch]\ntimeout_ms = 300000\n{}", kafka_toml(&broker));
    let mut enricher = Service::new(
        dir.path(),
        "enricher",
        admin_port,
        enricher_toml(admin_port, &broker.name("intake"), &secrets, &api, &rest),
    );
    enricher
        .env("VOICEHUB_BRIDGE__CONSUMER__MAX_IN_FLIGHT", "2")
        .env(
            "VOICEHUB_BRIDGE__CONSUMER__MAX_BACKLOG_BYTES",
            BACKLOG_BYTES.to_string(),
        );
    enricher.start().await;
    let pid = enricher.pid().unwrap();
    let (idle, _) = memory(pid);

    produce_inputs(&broker, &broker.topics(), &api).await;
    // An enricher without the bound takes all of it in well within this (a local broker
    // serves 50 MiB in a second); one with the bound stays paused however long it is stalled.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (now, peak) = memory(pid);
    let paused = paused(admin_port).await;
    assert!(enricher.is_running(), "log:\n{}", enricher.log_text());
    let input_bytes = (INPUTS * PADDING) as u64;
    let grown = peak.saturating_sub(idle);
    eprintln!(
        "intake: {} KiB of input waiting, backlog bound {} KiB; resident memory idle {} KiB, \
         now {} KiB, peak {} KiB (+{} KiB); fetching paused: {paused}",
        input_bytes / 1024,
        BACKLOG_BYTES / 1024,
        idle / 1024,
        now / 1024,
        peak / 1024,
        grown / 1024
    );
    // What it may hold: the backlog, librdkafka's prefetch queue (half the backlog), one
    // fetch response per partition beyond that (1 MiB each: `fetch.message.max.bytes`), the
    // two records in flight, and the allocator's slack: well under 16 MiB, a third of the
    // input it did not take.
    assert!(
        grown < 16 * 1024 * 1024,
        "resident memory grew by {} KiB while stalled: it took in more than its backlog bound \
         ({} KiB of {} KiB waiting)",
        grown / 1024,
        BACKLOG_BYTES / 1024,
        input_bytes / 1024
    );
    assert!(paused, "not paused, yet within its bound?");
    enricher.kill();
    // Not stopped: it would wait for the answers it holds back.
    drop(api);
}
