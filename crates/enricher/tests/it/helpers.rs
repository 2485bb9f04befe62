use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use tokio::task::JoinHandle;
use voicehub_enricher::allow_list::AllowedHost;
use voicehub_enricher::consumer_watch::BrokerWatch;
use voicehub_enricher::settings::{ConsumerSettings, FetchSettings, RetrySettings, SourceSettings};
use voicehub_enricher::{Application, EnricherSettings, ShutdownTrigger};
use voicehub_model::record::Provenance;
use voicehub_model::{Timestamp, Topics, parse_webhook};
use voicehub_runtime::settings::{AdminSettings, KafkaSettings, LogSettings};
use voicehub_runtime::{FaultHook, kafka};
use voicehub_testkit::metrics::{Scrape, scrape};
use voicehub_testkit::{ConsumedRecord, TestBroker};

pub const API_KEY: &str = "test-api-key";

/// One scripted answer of the stand-in API.
#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub retry_after: Option<u64>,
    pub location: Option<String>,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            body: Vec::new(),
            retry_after: None,
            location: None,
            delay: Duration::ZERO,
        }
    }

    pub fn analysis() -> Self {
        static BODY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        Self {
            body: BODY.get_or_init(|| fixture("analysis-result.json")).clone(),
            ..Self::status(200)
        }
    }

    /// The analysis, a minute late: longer than any test waits.
    pub fn hanging() -> Self {
        Self {
            delay: Duration::from_secs(60),
            ..Self::analysis()
        }
    }
}

/// A request the stand-in saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub api_key: Option<String>,
    pub at: Instant,
}

#[derive(Default)]
struct Script {
    replies: HashMap<String, VecDeque<Reply>>,
    seen: Vec<Seen>,
    /// While set, every path answers this (an API outage).
    outage: Option<Reply>,
}

/// VoiceHub's analysis API, played by a real HTTP server: each path answers its scripted
/// replies in turn, repeating the last; unscripted paths answer the example analysis.
#[derive(Clone)]
pub struct StandIn {
    pub port: u16,
    script: Arc<Mutex<Script>>,
}

impl StandIn {
    pub fn start() -> Self {
        let script = Arc::new(Mutex::new(Script::default()));
        let state = script.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(state.clone()))
                .default_service(web::to(answer))
        })
        .workers(2)
        .bind("127.0.0.1:0")
        .unwrap();
        let port = server.addrs()[0].port();
        tokio::spawn(server.run());
        Self { port, script }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn script(&self, path: &str, replies: Vec<Reply>) {
        self.script
            .lock()
            .unwrap()
            .replies
            .insert(path.to_owned(), replies.into());
    }

    /// From now on every path answers `reply` (`None`: back to the script).
    pub fn outage(&self, reply: Option<Reply>) {
        self.script.lock().unwrap().outage = reply;
    }

    pub fn seen(&self, path: &str) -> Vec<Seen> {
        let script = self.script.lock().unwrap();
        script
            .seen
            .iter()
            .filter(|s| s.path == path)
            .cloned()
            .collect()
    }

    pub fn all_seen(&self) -> Vec<Seen> {
        self.script.lock().unwrap().seen.clone()
    }
}

async fn answer(request: HttpRequest, script: web::Data<Arc<Mutex<Script>>>) -> HttpResponse {
    let path = request.path().to_owned();
    let reply = {
        let mut script = script.lock().unwrap();
        script.seen.push(Seen {
            path: path.clone(),
            api_key: request
                .headers()
                .get("x-dq-api-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            at: Instant::now(),
        });
        let script = &mut *script;
        match (&script.outage, script.replies.get_mut(&path)) {
            (Some(outage), _) => Some(outage.clone()),
            (None, Some(queue)) if queue.len() > 1 => queue.pop_front(),
            (None, Some(queue)) => queue.front().cloned(),
            (None, None) => None,
        }
        .unwrap_or_else(Reply::analysis)
    };
    tokio::time::sleep(reply.delay).await;
    let mut response =
        HttpResponse::build(actix_web::http::StatusCode::from_u16(reply.status).unwrap());
    if let Some(seconds) = reply.retry_after {
        response.insert_header(("retry-after", seconds.to_string()));
    }
    if let Some(location) = reply.location {
        response.insert_header(("location", location));
    }
    response.body(reply.body)
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/voicehub")
        .join(name);
    std::fs::read(path).unwrap()
}

pub struct TestEnricher {
    pub broker: TestBroker,
    pub api: StandIn,
    pub topics: Topics,
    pub kafka: KafkaSettings,
    pub trigger: ShutdownTrigger,
    pub task: Option<JoinHandle<std::io::Result<()>>>,
    pub admin_port: u16,
    pub settings: EnricherSettings,
    pub key_file: tempfile::NamedTempFile,
    /// The running instance's first consumer's broker watch (a wedge is pretended there).
    pub broker_watch: Arc<BrokerWatch>,
}

pub async fn spawn_enricher() -> TestEnricher {
    spawn_enricher_with(|_| {}).await
}

pub async fn spawn_enricher_with(customise: impl FnOnce(&mut EnricherSettings)) -> TestEnricher {
    spawn_enricher_faulty(customise, None).await
}

/// Like [`spawn_enricher_with`], with `fault` injected into the first instance.
pub async fn spawn_enricher_faulty(
    customise: impl FnOnce(&mut EnricherSettings),
    fault: Option<FaultHook>,
) -> TestEnricher {
    let broker = TestBroker::start().await.unwrap();
    spawn_enricher_against(broker, customise, fault).await
}

/// Like [`spawn_enricher`], against a broker this test may stop.
pub async fn spawn_enricher_stoppable() -> TestEnricher {
    let broker = TestBroker::start_stoppable().await.unwrap();
    spawn_enricher_against(broker, |_| {}, None).await
}

/// Like [`spawn_enricher_faulty`], against `broker`.
pub async fn spawn_enricher_against(
    broker: TestBroker,
    customise: impl FnOnce(&mut EnricherSettings),
    fault: Option<FaultHook>,
) -> TestEnricher {
    let api = StandIn::start();
    let key = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key.path(), format!("{API_KEY}\n")).unwrap();
    let mut kafka = KafkaSettings {
        bootstrap_servers: broker.bootstrap_servers(),
        message_timeout_ms: 10_000,
        topics: broker.topics(),
        ..KafkaSettings::default()
    };
    kafka.provision.create_topics = true;
    kafka.provision.partitions = 2;
    kafka.provision.replication_factor = 1;
    let mut settings = EnricherSettings {
        consumer: ConsumerSettings {
            group_id: broker.name("enricher-test"),
            max_in_flight: 4,
            max_backlog_bytes: 64 * 1024,
            max_uncommitted_per_partition: 1_000,
            session_timeout_ms: 6_000,
            max_poll_interval_ms: 7_000,
            commit_interval_ms: 200,
            drain_timeout_ms: 3_000,
        },
        fetch: FetchSettings {
            connect_timeout_ms: 1_000,
            timeout_ms: 2_000,
            max_body_bytes: 64 * 1024,
            max_in_flight_body_bytes: 256 * 1024,
        },
        retry: RetrySettings {
            initial_backoff_ms: 50,
            max_backoff_ms: 200,
            max_elapsed_ms: 5_000,
        },
        sources: BTreeMap::from([(
            "acme".to_owned(),
            SourceSettings {
                api_key_env: None,
                api_key_file: Some(key.path().to_owned()),
                allowed_hosts: vec![
                    AllowedHost::parse(&format!("127.0.0.1:{}", api.port), true).unwrap(),
                ],
                allow_http: true,
                api_key_reload_ms: 100,
            },
        )]),
        kafka: kafka.clone(),
        admin: AdminSettings {
            listen: "127.0.0.1:0".into(),
        },
        log: LogSettings::default(),
    };
    customise(&mut settings);
    let topics = settings.kafka.topics.clone();
    let instance = start(&settings, fault).await;
    TestEnricher {
        broker,
        api,
        topics,
        kafka,
        trigger: instance.trigger,
        task: Some(instance.task),
        admin_port: instance.admin_port,
        settings,
        key_file: key,
        broker_watch: instance.broker_watch,
    }
}

pub struct Instance {
    pub trigger: ShutdownTrigger,
    pub task: JoinHandle<std::io::Result<()>>,
    pub admin_port: u16,
    pub broker_watch: Arc<BrokerWatch>,
}

async fn start(settings: &EnricherSettings, fault: Option<FaultHook>) -> Instance {
    let app = Application::build(settings.clone()).await.unwrap();
    if let Some(fault) = fault {
        app.inject_fault(fault);
    }
    Instance {
        trigger: app.shutdown_trigger(),
        admin_port: app.admin_port(),
        broker_watch: app.consumer_broker_watch(),
        task: tokio::spawn(app.run_until_stopped()),
    }
}

impl TestEnricher {
    /// A scrape of the admin server, parsed as Prometheus text.
    pub async fn metrics(&self) -> Scrape {
        scrape(&format!("http://127.0.0.1:{}/metrics", self.admin_port)).await
    }

    /// `/readyz`: the status and the failing checks.
    pub async fn readyz(&self) -> (u16, serde_json::Value) {
        let response = reqwest::get(format!("http://127.0.0.1:{}/readyz", self.admin_port))
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// Waits (at most `within`) until `/readyz` answers `status`; the last body.
    pub async fn wait_readyz(&self, status: u16, within: Duration) -> serde_json::Value {
        let deadline = std::time::Instant::now() + within;
        loop {
            let (now, body) = self.readyz().await;
            if now == status {
                return body;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "/readyz still {now} {body} after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops the running instance as SIGTERM does and waits for it.
    pub async fn stop(&mut self) -> std::io::Result<()> {
        self.trigger.trigger();
        self.task.take().unwrap().await.unwrap()
    }

    /// Aborts the running instance's task: no drain, no final commit. Not a kill -9: the
    /// consumer is dropped, which may still commit offsets already stored (finished records);
    /// the process-level kill -9 is in `tests/it/process_crash.rs`.
    pub async fn abort(&mut self) {
        let task = self.task.take().unwrap();
        task.abort();
        let _ = task.await;
    }

    /// Starts another instance in the same consumer group, beside the running one.
    pub async fn add_instance(&self) -> Instance {
        start(&self.settings, None).await
    }

    /// Starts a new instance in the same consumer group.
    pub async fn restart(&mut self) {
        let instance = start(&self.settings, None).await;
        self.trigger = instance.trigger;
        self.task = Some(instance.task);
        self.admin_port = instance.admin_port;
        self.broker_watch = instance.broker_watch;
    }

    /// Produces an `AnalysisResultReady` record (as the ingress would) whose URL is `url`.
    pub async fn send_event(&self, event_id: &str, call_id: &str, url: &str) {
        self.send_events(&[(event_id, call_id, url)]).await;
    }

    /// Produces `AnalysisResultReady` records (event id, call id, URL) through one producer.
    pub async fn send_events(&self, events: &[(&str, &str, &str)]) {
        let producer =
            kafka::create_producer(&self.kafka, rdkafka::client::DefaultClientContext).unwrap();
        for &(event_id, call_id, url) in events {
            self.produce_event(&producer, event_id, call_id, url).await;
        }
    }

    /// Produces many `AnalysisResultReady` records, `(event id, call id, analysis URL)`, at
    /// once (all enqueued, then every acknowledgement awaited): for volume. Returns where each
    /// landed.
    pub async fn send_many(&self, events: &[(String, String, String)]) -> Vec<kafka::Delivered> {
        // tansu takes a few thousand records a second: give deliveries time.
        let settings = KafkaSettings {
            message_timeout_ms: 300_000,
            ..self.kafka.clone()
        };
        let producer =
            kafka::create_producer(&settings, rdkafka::client::DefaultClientContext).unwrap();
        let mut landed = Vec::with_capacity(events.len());
        for chunk in events.chunks(2_000) {
            let deliveries: Vec<_> = chunk
                .iter()
                .map(|(event_id, call_id, url)| {
                    let record = analysis_ready(event_id, call_id, url);
                    kafka::enqueue(&producer, &self.topics.analysis_result_ready, &record).unwrap()
                })
                .collect();
            for delivery in deliveries {
                landed.push(kafka::delivered(delivery).await.unwrap());
            }
        }
        landed
    }

    async fn produce_event(
        &self,
        producer: &rdkafka::producer::FutureProducer,
        event_id: &str,
        call_id: &str,
        url: &str,
    ) {
        let record = analysis_ready(event_id, call_id, url);
        kafka::produce(
            producer,
            &self.topics.analysis_result_ready,
            &record,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    }

    pub async fn enriched(&self, expected: usize) -> Vec<ConsumedRecord> {
        self.broker
            .wait_for_records(
                &self.topics.analysis_enriched,
                expected,
                Duration::from_secs(30),
            )
            .await
            .unwrap()
    }

    /// Waits until the group has committed `expected` input records in all (30 s at most).
    pub async fn wait_committed(&self, expected: i64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let committed = self
                .broker
                .committed(
                    &self.settings.consumer.group_id,
                    &self.topics.analysis_result_ready,
                )
                .await
                .unwrap();
            if committed == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "committed {committed} of {expected} input records"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn dead_letters(&self, expected: usize) -> Vec<ConsumedRecord> {
        self.broker
            .wait_for_records(&self.topics.dead_letter, expected, Duration::from_secs(30))
            .await
            .unwrap()
    }
}

/// An `AnalysisResultReady` record as the ingress writes it.
fn analysis_ready(event_id: &str, call_id: &str, url: &str) -> voicehub_model::record::Record {
    let body = serde_json::json!({
        "eventType": "AnalysisResultReady",
        "eventId": event_id,
        "timestamp": "2025-10-14T09:27:58.377Z",
        "callId": call_id,
        "analysisId": format!("anl-{event_id}"),
        "analysisResultUrl": url,
    });
    let event = parse_webhook(body.to_string().as_bytes()).unwrap();
    event.to_record(&Provenance {
        source: "acme",
        received_at: Timestamp::parse("2025-10-14T09:28:00Z").unwrap(),
        bridge_version: "test",
    })
}
