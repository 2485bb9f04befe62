//! What the whole-system tests share: the bridge started against a test broker, VoiceHub's
//! traffic, and the accounting of what reached the topics.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use voicehub_devstack::stack;
use voicehub_enricher::allow_list::AllowedHost;
use voicehub_model::Topics;
use voicehub_model::enriched::AnalysisEnriched;
use voicehub_runtime::settings::KafkaSettings;
use voicehub_runtime::shutdown::ShutdownTrigger;
use voicehub_simulator::{AnalysisApi, AnalysisTrouble, Report, SendOptions, Trouble};
use voicehub_testkit::{ConsumedRecord, TestBroker};

pub const SECRET: &str = "e2e-webhook-secret";
pub const API_KEY: &str = "e2e-api-key";

/// Kafka settings for a test broker: topics created by the services, 3 partitions.
pub fn kafka_settings(broker: &TestBroker) -> KafkaSettings {
    let mut kafka = KafkaSettings {
        bootstrap_servers: broker.bootstrap_servers(),
        topics: broker.topics(),
        ..KafkaSettings::default()
    };
    kafka.provision.create_topics = true;
    kafka.provision.partitions = 3;
    kafka.provision.replication_factor = 1;
    kafka
}

/// The webhook secret and the API key, as files.
pub struct SecretFiles {
    _dir: tempfile::TempDir,
    pub secret: PathBuf,
    pub api_key: PathBuf,
}

impl SecretFiles {
    pub fn write() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (secret, api_key) = (dir.path().join("secret"), dir.path().join("key"));
        std::fs::write(&secret, SECRET).unwrap();
        std::fs::write(&api_key, API_KEY).unwrap();
        Self {
            _dir: dir,
            secret,
            api_key,
        }
    }
}

/// Ingress and enricher in this process, and the analysis API they fetch from.
pub struct Bridge {
    pub webhook_url: String,
    pub ingress_admin: u16,
    pub enricher_admin: u16,
    pub api: AnalysisApi,
    pub topics: Topics,
    stops: Vec<ShutdownTrigger>,
    tasks: Vec<JoinHandle<std::io::Result<()>>>,
    _secrets: SecretFiles,
}

impl Bridge {
    pub async fn start(broker: &TestBroker, trouble: AnalysisTrouble) -> Self {
        let kafka = kafka_settings(broker);
        let secrets = SecretFiles::write();
        let ingress = voicehub_ingress::Application::build(stack::ingress_settings(
            &kafka,
            0,
            0,
            secrets.secret.clone(),
        ))
        .await
        .unwrap();
        let webhook_url = format!("http://127.0.0.1:{}/webhooks/voicehub", ingress.port());
        let ingress_admin = ingress.admin_port();
        let api = AnalysisApi::start("127.0.0.1:0", API_KEY, trouble).unwrap();
        let api_host = AllowedHost::parse(&api.host(), true).unwrap();
        let mut enricher_settings =
            stack::enricher_settings(&kafka, 0, secrets.api_key.clone(), vec![api_host]);
        enricher_settings.consumer.group_id = broker.name("e2e");
        enricher_settings.consumer.session_timeout_ms = 6_000;
        enricher_settings.retry.initial_backoff_ms = 50;
        let enricher = voicehub_enricher::Application::build(enricher_settings)
            .await
            .unwrap();
        let enricher_admin = enricher.admin_port();
        let stops = vec![ingress.shutdown_trigger(), enricher.shutdown_trigger()];
        let tasks = vec![
            tokio::spawn(ingress.run_until_stopped()),
            tokio::spawn(enricher.run_until_stopped()),
        ];
        Self {
            webhook_url,
            ingress_admin,
            enricher_admin,
            api,
            topics: kafka.topics,
            stops,
            tasks,
            _secrets: secrets,
        }
    }

    /// Whether both services are still the ones started (none exited).
    pub fn still_running(&self) -> bool {
        self.tasks.iter().all(|task| !task.is_finished())
    }

    /// Stops both; each must exit cleanly.
    pub async fn stop(self) {
        for stop in &self.stops {
            stop.trigger();
        }
        for task in self.tasks {
            assert!(task.await.unwrap().is_ok());
        }
        self.api.stop().await;
    }
}

/// VoiceHub's delivery: 3 retries 1 s apart, 10 s timeout; `calls` at `rate` per second.
pub fn voicehub_traffic(
    webhook_url: &str,
    api: &AnalysisApi,
    calls: usize,
    rate: f64,
) -> SendOptions {
    SendOptions {
        webhook_url: webhook_url.to_owned(),
        secret: SECRET.into(),
        calls,
        concurrency: 32,
        calls_per_second: Some(rate),
        retries: 3,
        retry_delay: Duration::from_secs(1),
        timeout: Duration::from_secs(10),
        analysis_base: api.base_url(),
        run: "chaos".into(),
        trouble: Trouble::default(),
    }
}

/// Polls `/readyz` on an admin port until it answers 200; the time it took.
pub async fn until_ready(admin_port: u16, within: Duration) -> Duration {
    let start = Instant::now();
    let url = format!("http://127.0.0.1:{admin_port}/readyz");
    let http = reqwest::Client::new();
    while start.elapsed() < within {
        if let Ok(response) = http.get(&url).timeout(Duration::from_secs(1)).send().await
            && response.status() == 200
        {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} not ready within {within:?}");
}

/// What the topics hold against what VoiceHub was told.
#[derive(Debug)]
pub struct Accounting {
    /// Webhooks answered 2xx.
    pub acknowledged: usize,
    /// Acknowledged events missing from their topic (must be none).
    pub lost: Vec<String>,
    /// Records beyond the first with the same `ce_id` (allowed: same id).
    pub duplicates: usize,
    /// Acknowledged analysis-ready events.
    pub analyses: usize,
    /// Of those, how many have no enriched record (must be none).
    pub not_enriched: usize,
    /// Extra enriched records with an already seen `ce_id`.
    pub enriched_duplicates: usize,
    /// For each enriched `ce_id` written more than once, its copies' timestamps (ms, oldest
    /// first): when each was done, to attribute the redo to its cause.
    pub enriched_copies: Vec<(String, Vec<i64>)>,
}

impl Accounting {
    /// Reads the topics back. Waits (up to `enrichment_deadline`) for one enriched record per
    /// acknowledged analysis-ready event.
    pub async fn of(
        broker: &TestBroker,
        topics: &Topics,
        report: &Report,
        enrichment_deadline: Duration,
    ) -> Self {
        let mut lost = Vec::new();
        let mut duplicates = 0;
        for (event_type, topic) in [
            ("CallStatusChanged", &topics.call_status_changed),
            ("RecordingsAvailable", &topics.recordings_available),
            ("AnalysisResultReady", &topics.analysis_result_ready),
        ] {
            let records = broker.read_all(topic).await.unwrap();
            let ids = ce_ids(&records);
            duplicates += records.len() - ids.len();
            lost.extend(
                report
                    .acked
                    .iter()
                    .filter(|ack| ack.event_type == event_type)
                    .filter_map(|ack| ack.event_id.clone())
                    .filter(|id| !ids.contains(id)),
            );
        }
        let expected = expected_enriched_ids(report);
        // Every expected id, not just as many records: duplicates would make the count early.
        let deadline = Instant::now() + enrichment_deadline;
        let (enriched, enriched_ids) = loop {
            let enriched = broker.read_all(&topics.analysis_enriched).await.unwrap();
            let ids = ce_ids(&enriched);
            if expected.is_subset(&ids) || Instant::now() > deadline {
                break (enriched, ids);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let mut copies: HashMap<String, Vec<i64>> = HashMap::new();
        for record in &enriched {
            if let Some(id) = record.header("ce_id") {
                copies
                    .entry(id.to_owned())
                    .or_default()
                    .push(record.timestamp_ms.unwrap_or_default());
            }
        }
        let mut enriched_copies: Vec<(String, Vec<i64>)> = copies
            .into_iter()
            .filter(|(_, times)| times.len() > 1)
            .map(|(id, mut times)| {
                times.sort_unstable();
                (id, times)
            })
            .collect();
        enriched_copies.sort();
        Self {
            acknowledged: report.acked.len(),
            lost,
            duplicates,
            analyses: expected.len(),
            not_enriched: expected.difference(&enriched_ids).count(),
            enriched_duplicates: enriched.len() - enriched_ids.len(),
            enriched_copies,
        }
    }
}

impl std::fmt::Display for Accounting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} acknowledged, {} lost, {} duplicate records (same ce_id), {} analyses of which \
             {} not enriched, {} duplicate enriched records (same ce_id)",
            self.acknowledged,
            self.lost.len(),
            self.duplicates,
            self.analyses,
            self.not_enriched,
            self.enriched_duplicates
        )
    }
}

/// The `ce_id` of the enriched record each acknowledged analysis-ready event must get.
pub fn expected_enriched_ids(report: &Report) -> HashSet<String> {
    report
        .acked
        .iter()
        .filter(|ack| ack.event_type == "AnalysisResultReady")
        .filter_map(|ack| ack.event_id.as_deref())
        .map(|id| AnalysisEnriched::ce_id("default", id))
        .collect()
}

/// The distinct `ce_id`s of `records`.
pub fn ce_ids(records: &[ConsumedRecord]) -> HashSet<String> {
    records
        .iter()
        .filter_map(|r| r.header("ce_id").map(str::to_owned))
        .collect()
}

/// Event ids per call (the key), in topic order.
pub fn per_call(records: &[ConsumedRecord]) -> HashMap<String, Vec<String>> {
    let mut sorted: Vec<&ConsumedRecord> = records.iter().collect();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    let mut calls: HashMap<String, Vec<String>> = HashMap::new();
    for record in sorted {
        let key = record.key.clone().unwrap_or_default();
        let id = record.header("ce_id").unwrap_or_default().to_owned();
        calls.entry(key).or_default().push(id);
    }
    calls
}

/// Lines of `files` that contain `needle` (secrets must never be logged). A file that cannot be
/// read fails the test: a missing log must not pass for a clean one.
pub fn lines_containing(files: &[&Path], needle: &str) -> Vec<String> {
    files
        .iter()
        .flat_map(|file| {
            std::fs::read_to_string(file)
                .unwrap_or_else(|error| panic!("{}: {error}", file.display()))
                .lines()
                .filter(|line| line.contains(needle))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}
