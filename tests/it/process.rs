//! The services as the real binaries, in child processes: configured by a file and the
//! environment, as in a pod.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use voicehub_model::Topics;
use voicehub_simulator::AnalysisApi;
use voicehub_testkit::TestBroker;

use crate::harness::{SecretFiles, until_ready};

/// The ingress's configuration file: its ports and the webhook secret's file, then `rest`
/// (the other sections: spool, kafka, log).
pub fn ingress_toml(http_port: u16, admin_port: u16, secrets: &SecretFiles, rest: &str) -> String {
    format!(
        "[http]\nlisten = \"127.0.0.1:{http_port}\"\n[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n\
         [sources.default]\nsecret_files = [\"{}\"]\n{rest}",
        secrets.secret.display()
    )
}

/// The enricher's configuration file: its port, `group` (6 s sessions, 50 ms first backoff),
/// the API key's file and `api` as the allowed host, then `rest` (kafka, log).
pub fn enricher_toml(
    admin_port: u16,
    group: &str,
    secrets: &SecretFiles,
    api: &AnalysisApi,
    rest: &str,
) -> String {
    format!(
        "[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n[consumer]\ngroup_id = \"{group}\"\n\
         session_timeout_ms = 6000\n[retry]\ninitial_backoff_ms = 50\n\
         [sources.default]\napi_key_file = \"{}\"\nallowed_hosts = [{{ host = \"{}\", allow_private_addresses = true }}]\nallow_http = true\n{rest}",
        secrets.api_key.display(),
        api.host(),
    )
}

/// The lines of a `[kafka.topics]` table naming every topic of `topics`.
pub fn topic_lines(topics: &Topics) -> String {
    topics
        .all()
        .iter()
        .map(|(key, name)| format!("{key} = \"{name}\"\n"))
        .collect()
}

/// The `[kafka]` section for `broker` (topics created by the services, 3 partitions) and an
/// info-level `[log]`.
pub fn kafka_toml(broker: &TestBroker) -> String {
    let topics = topic_lines(&broker.topics());
    format!(
        "[kafka]\nbootstrap_servers = \"{}\"\n[kafka.provision]\ncreate_topics = true\n\
         partitions = 3\nreplication_factor = 1\n[kafka.topics]\n{topics}[log]\nlevel = \"info\"\n",
        broker.bootstrap_servers()
    )
}

/// A binary of this workspace, built next to the test binaries (cargo builds a package's
/// binaries for its integration tests, so `cargo nextest run --workspace` has them).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built (cargo build --bins)",
        path.display()
    );
    path
}

/// One service as a child process, with its configuration file, its environment (nothing
/// but [`Service::env`]: the way a pod gets its secrets) and its log.
pub struct Service {
    name: &'static str,
    config: PathBuf,
    pub log: PathBuf,
    pub admin_port: u16,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Service {
    pub fn new(dir: &Path, name: &'static str, admin_port: u16, toml: String) -> Self {
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(&config, toml).unwrap();
        Self {
            name,
            config,
            log: dir.join(format!("{name}.log")),
            admin_port,
            env: Vec::new(),
            child: None,
        }
    }

    /// Sets an environment variable for every start.
    pub fn env(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Starts it (appending to its log) without waiting.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        self.child = Some(
            Command::new(binary(&format!("voicehub-{}", self.name)))
                .arg("--config")
                .arg(&self.config)
                .env_clear()
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .stdout(Stdio::from(log.try_clone().unwrap()))
                .stderr(Stdio::from(log))
                .spawn()
                .unwrap(),
        );
    }

    /// What it has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until a line of its log satisfies `wanted` (lines are written in batches, a
    /// little after what they report); panics with the log after `within`.
    pub async fn until_logged(&self, wanted: impl Fn(&str) -> bool, within: Duration) {
        let start = Instant::now();
        loop {
            let log = self.log_text();
            if log.lines().any(&wanted) {
                return;
            }
            assert!(
                start.elapsed() < within,
                "{}: no such line within {within:?}; log:\n{log}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `/readyz`: the status and the failing checks.
    pub async fn readyz(&self) -> (u16, Vec<String>) {
        let url = format!("http://127.0.0.1:{}/readyz", self.admin_port);
        match reqwest::get(url).await {
            Ok(response) => {
                let status = response.status().as_u16();
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                let failing = body["failing"]
                    .as_array()
                    .map(|checks| {
                        checks
                            .iter()
                            .filter_map(|c| c.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                (status, failing)
            }
            Err(_) => (0, Vec::new()),
        }
    }

    /// Waits until `/readyz` answers `status` with `check` among the failing ones (or, for
    /// 200, none); panics after `within`.
    pub async fn until_readyz(&self, status: u16, check: Option<&str>, within: Duration) {
        let start = Instant::now();
        loop {
            let (now, failing) = self.readyz().await;
            if now == status && check.is_none_or(|c| failing.iter().any(|f| f == c)) {
                return;
            }
            assert!(
                start.elapsed() < within,
                "{} /readyz still {now} {failing:?} after {within:?}; log:\n{}",
                self.name,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Starts it (appending to its log) and waits until it is ready; the time that took.
    pub async fn start(&mut self) -> Duration {
        let started = Instant::now();
        self.spawn();
        until_ready(self.admin_port, Duration::from_secs(60)).await;
        started.elapsed()
    }

    /// SIGKILL: no drain, no flush, no commit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}
