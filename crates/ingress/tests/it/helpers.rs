use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio::task::JoinHandle;
use voicehub_ingress::settings::{HttpSettings, SourceSettings};
use voicehub_ingress::{Application, IngressSettings, ShutdownTrigger};
use voicehub_model::Topics;
use voicehub_runtime::settings::{AdminSettings, KafkaSettings, LogSettings};
use voicehub_testkit::metrics::{Scrape, scrape};
use voicehub_testkit::{ConsumedRecord, TestBroker};

pub const SECRET: &str = "current-webhook-secret";
pub const NEXT_SECRET: &str = "next-webhook-secret";

pub struct TestApp {
    pub base: String,
    pub admin: String,
    pub broker: TestBroker,
    pub topics: Topics,
    pub client: reqwest::Client,
    pub trigger: ShutdownTrigger,
    pub task: Option<JoinHandle<std::io::Result<()>>>,
    _secrets: tempfile::TempDir,
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/voicehub")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A VoiceHub-like event with the given type and id.
pub fn status_event(event_id: &str, call_id: &str) -> serde_json::Value {
    serde_json::json!({
        "eventType": "CallStatusChanged",
        "timestamp": "2025-10-14T09:21:07.512Z",
        "eventId": event_id,
        "callId": call_id,
        "status": "started",
    })
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customise: impl FnOnce(&mut IngressSettings)) -> TestApp {
    spawn_app_prepared(customise, |_| {}).await
}

/// Like [`spawn_app_with`], with `prepare` called on the built application before it runs.
pub async fn spawn_app_prepared(
    customise: impl FnOnce(&mut IngressSettings),
    prepare: impl FnOnce(&Application),
) -> TestApp {
    let broker = TestBroker::start().await.expect("broker");
    spawn_app_against(broker, customise, prepare).await
}

/// Like [`spawn_app_with`], against a broker this test may stop.
pub async fn spawn_app_stoppable(customise: impl FnOnce(&mut IngressSettings)) -> TestApp {
    let broker = TestBroker::start_stoppable().await.expect("broker");
    spawn_app_against(broker, customise, |_| {}).await
}

/// Like [`spawn_app_prepared`], against `broker`.
pub async fn spawn_app_against(
    broker: TestBroker,
    customise: impl FnOnce(&mut IngressSettings),
    prepare: impl FnOnce(&Application),
) -> TestApp {
    let secrets = tempfile::tempdir().unwrap();
    let current = secrets.path().join("current");
    let next = secrets.path().join("next");
    std::fs::write(&current, format!("{SECRET}\n")).unwrap();
    std::fs::write(&next, NEXT_SECRET).unwrap();
    let source = |files: Vec<PathBuf>| SourceSettings {
        secret_envs: Vec::new(),
        secret_files: files,
        secret_reload_ms: 200,
    };
    let mut kafka = KafkaSettings {
        bootstrap_servers: broker.bootstrap_servers(),
        message_timeout_ms: 10_000,
        topics: broker.topics(),
        ..KafkaSettings::default()
    };
    kafka.provision.create_topics = true;
    kafka.provision.partitions = 2;
    kafka.provision.replication_factor = 1;
    let mut settings = IngressSettings {
        http: HttpSettings {
            listen: "127.0.0.1:0".into(),
            produce_deadline_ms: 2_000,
            drain_timeout_ms: 5_000,
            workers: 2,
            ..HttpSettings::default()
        },
        dedupe: Default::default(),
        spool: Default::default(),
        sources: BTreeMap::from([
            ("default".to_owned(), source(vec![current.clone()])),
            ("acme".to_owned(), source(vec![current, next])),
        ]),
        kafka,
        admin: AdminSettings {
            listen: "127.0.0.1:0".into(),
        },
        log: LogSettings::default(),
    };
    customise(&mut settings);
    let topics = settings.kafka.topics.clone();
    // With the spool on the ingress creates its topics in the background; a test that stops
    // the broker at once would cut that request (and can break tansu's storage): have them.
    let names: Vec<&str> = topics.all().into_iter().map(|(_, name)| name).collect();
    broker.create_topics(&names, 2).await.expect("topics");
    let app = Application::build(settings).await.expect("build");
    prepare(&app);
    let base = format!("http://127.0.0.1:{}", app.port());
    let admin = format!("http://127.0.0.1:{}", app.admin_port());
    let trigger = app.shutdown_trigger();
    let task = tokio::spawn(app.run_until_stopped());
    let test_app = TestApp {
        base,
        admin,
        broker,
        topics,
        client: reqwest::Client::new(),
        trigger,
        task: Some(task),
        _secrets: secrets,
    };
    test_app.wait_ready().await;
    test_app
}

impl TestApp {
    pub async fn post(&self, path: &str, secret: Option<&str>, body: Vec<u8>) -> reqwest::Response {
        let mut request = self.client.post(format!("{}{path}", self.base)).body(body);
        if let Some(secret) = secret {
            request = request.header("x-webhook-secret", secret);
        }
        request.send().await.expect("request")
    }

    pub async fn post_json(&self, body: &serde_json::Value) -> reqwest::Response {
        self.post(
            "/webhooks/voicehub",
            Some(SECRET),
            body.to_string().into_bytes(),
        )
        .await
    }

    pub async fn readyz(&self) -> u16 {
        self.client
            .get(format!("{}/readyz", self.admin))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }

    pub async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while self.readyz().await != 200 {
            assert!(tokio::time::Instant::now() < deadline, "never ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn metrics(&self) -> Scrape {
        scrape(&format!("{}/metrics", self.admin)).await
    }

    /// The `ce_id`s on the call-status topic, in partition then offset order.
    pub async fn status_ids(&self) -> Vec<String> {
        self.broker
            .read_all(&self.topics.call_status_changed)
            .await
            .unwrap()
            .iter()
            .filter_map(|r| r.header("ce_id").map(str::to_owned))
            .collect()
    }

    /// Every record on every topic the ingress writes.
    pub async fn all_records(&self) -> Vec<ConsumedRecord> {
        let mut all = Vec::new();
        for (key, topic) in self.topics.all() {
            if key != "analysis_enriched" {
                all.extend(self.broker.read_all(topic).await.unwrap());
            }
        }
        all
    }
}

/// Asserts an answer asking VoiceHub to retry: 503, `Retry-After: 1`, error code `error`.
pub async fn assert_retry_later(response: reqwest::Response, error: &str) {
    assert_eq!(response.status(), 503);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], error, "{body}");
}
