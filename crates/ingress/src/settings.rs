//! `voicehub-ingress` configuration (see the README's configuration reference).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use voicehub_runtime::settings::{AdminSettings, KafkaSettings, LogSettings, SettingsError};

/// VoiceHub's documented request timeout: an answer later than this is a lost answer.
pub const VOICEHUB_TIMEOUT: Duration = Duration::from_secs(10);

pub use voicehub_model::record::RECORD_HEADROOM_BYTES;

/// Everything the ingress reads at startup.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngressSettings {
    /// The webhook HTTP server.
    #[serde(default)]
    pub http: HttpSettings,
    /// Duplicate suppression.
    #[serde(default)]
    pub dedupe: DedupeSettings,
    /// The durable local spool (write-ahead on the instance's disk).
    #[serde(default)]
    pub spool: SpoolSettings,
    /// Webhook sources by name (the `{source}` path segment; `default` serves
    /// `/webhooks/voicehub`). At least one.
    pub sources: BTreeMap<String, SourceSettings>,
    /// Broker and topics.
    #[serde(default)]
    pub kafka: KafkaSettings,
    /// Admin server (`/metrics`, `/livez`, `/readyz`).
    #[serde(default = "default_admin")]
    pub admin: AdminSettings,
    /// Logging.
    #[serde(default)]
    pub log: LogSettings,
}

fn default_admin() -> AdminSettings {
    AdminSettings {
        listen: "0.0.0.0:9090".into(),
    }
}

/// `[http]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Address of the webhook server, `host:port`.
    pub listen: String,
    /// Largest accepted body; larger ones get 413.
    pub max_body_bytes: usize,
    /// Longest wait for the broker's acknowledgement before answering 503. Must stay below
    /// VoiceHub's 10 s timeout. The record keeps being delivered after a 503, up to
    /// `kafka.message_timeout_ms`; a retry meanwhile waits for it (deduplication).
    pub produce_deadline_ms: u64,
    /// Longest time to receive a whole body once the headers are in; slower ones get 408.
    pub body_timeout_ms: u64,
    /// Requests being processed at once; beyond it, 503 at once (load shedding).
    pub max_in_flight: usize,
    /// Bytes of request bodies held at once, by all requests together: each reserves its
    /// `Content-Length` (or `max_body_bytes` without one) before its body is read, until it
    /// is answered. Bounds memory under a burst of large bodies.
    pub max_in_flight_body_bytes: usize,
    /// Longest wait for room in `max_in_flight_body_bytes`; then 503 `overloaded`.
    pub body_budget_wait_ms: u64,
    /// `Retry-After` seconds on 503 answers.
    pub retry_after_s: u64,
    /// On SIGTERM, how long in-flight requests and the producer flush may take in all.
    pub drain_timeout_ms: u64,
    /// HTTP worker threads (0: one per core).
    pub workers: usize,
    /// Connections open at once, all workers together (each worker takes its share, rounded
    /// up); further connections wait in the listen backlog until one closes. Bounds memory:
    /// a connection holds up to about 168 KiB while its request is buffered.
    pub max_connections: usize,
    /// Connections the kernel holds for the server beyond `max_connections` (the listen
    /// backlog; the kernel caps it at `net.core.somaxconn`). Further connection attempts are
    /// dropped and the client's TCP retries them a second or more later.
    pub listen_backlog: usize,
    /// How long an idle keep-alive connection stays open (0: closed after each answer).
    pub keep_alive_s: u64,
    /// Longest wait for a request's head (request line and headers) on a new or kept-alive
    /// connection; then 408 and the connection is closed.
    pub head_timeout_ms: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8080".into(),
            max_body_bytes: 1024 * 1024,
            produce_deadline_ms: 5_000,
            body_timeout_ms: 5_000,
            max_in_flight: 1_024,
            max_in_flight_body_bytes: 32 * 1024 * 1024,
            body_budget_wait_ms: 1_000,
            retry_after_s: 1,
            drain_timeout_ms: 10_000,
            workers: 0,
            max_connections: 256,
            listen_backlog: 1_024,
            keep_alive_s: 5,
            head_timeout_ms: 5_000,
        }
    }
}

impl HttpSettings {
    /// `produce_deadline_ms` as a duration.
    pub fn produce_deadline(&self) -> Duration {
        Duration::from_millis(self.produce_deadline_ms)
    }

    /// `body_budget_wait_ms` as a duration.
    pub fn body_budget_wait(&self) -> Duration {
        Duration::from_millis(self.body_budget_wait_ms)
    }

    /// `body_timeout_ms` as a duration.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }

    /// `drain_timeout_ms` as a duration.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }

    /// `head_timeout_ms` as a duration.
    pub fn head_timeout(&self) -> Duration {
        Duration::from_millis(self.head_timeout_ms)
    }
}

/// `[dedupe]`: event ids recently accepted, per source.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DedupeSettings {
    /// How long an accepted `eventId` is remembered.
    pub window_s: u64,
    /// Most ids remembered at once (the oldest are forgotten first); bounds memory.
    pub max_entries: usize,
}

impl Default for DedupeSettings {
    fn default() -> Self {
        Self {
            window_s: 600,
            max_entries: 100_000,
        }
    }
}

/// `spool.mode`: when an event is acknowledged to VoiceHub.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpoolMode {
    /// 2xx only after the Kafka acknowledgement; no local state.
    #[default]
    Off,
    /// Kafka first; an event not acknowledged within `spool.fallback_after_ms` is spooled
    /// instead, and while the spool holds anything every event goes through it.
    Fallback,
    /// Every event is spooled; 2xx after the fsync; a forwarder drains the spool to Kafka.
    Always,
}

impl SpoolMode {
    /// The config value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Fallback => "fallback",
            Self::Always => "always",
        }
    }
}

/// `[spool]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpoolSettings {
    /// `off`, `fallback` or `always`.
    pub mode: SpoolMode,
    /// Directory of the segment files; one instance per directory (a lock file enforces it).
    pub dir: PathBuf,
    /// Appends are refused (503) while the spool holds this many bytes.
    pub max_bytes: u64,
    /// Appends are refused (503) while its oldest record is older than this.
    pub max_age_s: u64,
    /// Size at which a segment file is closed and a new one started.
    pub segment_bytes: u64,
    /// `fallback` mode: how long to wait for Kafka's acknowledgement before spooling.
    pub fallback_after_ms: u64,
    /// Records the forwarder keeps in flight to Kafka at once.
    pub forward_window: usize,
    /// Bytes of those records (as spooled) at most; one record is sent whatever its size.
    /// Bounds memory when the spool holds large webhooks.
    pub forward_window_bytes: u64,
    /// Files in `undeliverable/` (webhook bodies Kafka refused, damaged bytes: personal data)
    /// are deleted this long after they were written; 0 keeps them until an operator acts.
    pub undeliverable_retention_s: u64,
}

impl Default for SpoolSettings {
    fn default() -> Self {
        Self {
            mode: SpoolMode::Off,
            dir: PathBuf::from("/var/lib/voicehub/spool"),
            max_bytes: 1024 * 1024 * 1024,
            max_age_s: 6 * 3600,
            segment_bytes: 16 * 1024 * 1024,
            fallback_after_ms: 1_000,
            forward_window: 512,
            forward_window_bytes: 8 * 1024 * 1024,
            undeliverable_retention_s: 7 * 24 * 3600,
        }
    }
}

impl SpoolSettings {
    /// `fallback_after_ms` as a duration.
    pub fn fallback_after(&self) -> Duration {
        Duration::from_millis(self.fallback_after_ms)
    }

    /// `undeliverable_retention_s`, `None` for 0 (kept until an operator acts).
    pub fn undeliverable_retention(&self) -> Option<Duration> {
        (self.undeliverable_retention_s > 0)
            .then(|| Duration::from_secs(self.undeliverable_retention_s))
    }
}

/// `[sources.<name>]`: one VoiceHub agent or Call Studio workspace webhook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSettings {
    /// Names of environment variables that each hold one active secret.
    #[serde(default)]
    pub secret_envs: Vec<String>,
    /// Files that each hold one active secret (trailing newline ignored), re-read every
    /// `secret_reload_ms` so a rotated Kubernetes Secret applies without a restart.
    #[serde(default)]
    pub secret_files: Vec<PathBuf>,
    /// How often secret files are re-read.
    #[serde(default = "default_reload_ms")]
    pub secret_reload_ms: u64,
}

/// The largest `http.listen_backlog` accepted; Linux caps it at `net.core.somaxconn` anyway.
pub const MAX_LISTEN_BACKLOG: usize = 65_535;

fn default_reload_ms() -> u64 {
    5_000
}

impl IngressSettings {
    /// Cross-field checks that serde cannot express. Every error names its key.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.kafka.validate()?;
        let http = &self.http;
        if http.produce_deadline() >= VOICEHUB_TIMEOUT {
            return Err(SettingsError::invalid(
                "http.produce_deadline_ms",
                "must stay below VoiceHub's 10000 ms request timeout",
            ));
        }
        for (key, value) in [
            ("http.max_body_bytes", http.max_body_bytes),
            ("http.max_in_flight", http.max_in_flight),
            ("http.max_connections", http.max_connections),
            ("http.listen_backlog", http.listen_backlog),
            ("dedupe.max_entries", self.dedupe.max_entries),
            ("spool.forward_window", self.spool.forward_window),
        ] {
            if value == 0 {
                return Err(SettingsError::invalid(key, "must be above 0"));
            }
        }
        if http.head_timeout_ms == 0 {
            return Err(SettingsError::invalid(
                "http.head_timeout_ms",
                "must be above 0 (a connection that never sends a request would stay open)",
            ));
        }
        if http.listen_backlog > MAX_LISTEN_BACKLOG {
            return Err(SettingsError::invalid(
                "http.listen_backlog",
                format_args!("must be at most {MAX_LISTEN_BACKLOG}"),
            ));
        }
        if http.max_in_flight_body_bytes < http.max_body_bytes {
            return Err(SettingsError::invalid(
                "http.max_in_flight_body_bytes",
                format_args!(
                    "must be at least http.max_body_bytes ({}): a body that large could never \
                     be taken",
                    http.max_body_bytes
                ),
            ));
        }
        let carried = self.kafka.message_max_bytes();
        if carried < http.max_body_bytes.saturating_add(RECORD_HEADROOM_BYTES) {
            return Err(SettingsError::invalid(
                "kafka.properties.message.max.bytes",
                format_args!(
                    "{carried} cannot carry a body of http.max_body_bytes ({}) with its headers: \
                     it must be at least {} more",
                    http.max_body_bytes, RECORD_HEADROOM_BYTES
                ),
            ));
        }
        let spool = &self.spool;
        if spool.mode != SpoolMode::Off {
            if spool.dir.as_os_str().is_empty() {
                return Err(SettingsError::invalid(
                    "spool.dir",
                    "must be set when the spool is on",
                ));
            }
            if spool.segment_bytes == 0 || spool.max_bytes < spool.segment_bytes {
                return Err(SettingsError::invalid(
                    "spool.max_bytes",
                    "must be at least spool.segment_bytes (and both above 0)",
                ));
            }
            if spool.max_age_s == 0 {
                return Err(SettingsError::invalid("spool.max_age_s", "must be above 0"));
            }
        }
        if spool.mode == SpoolMode::Fallback
            && (spool.fallback_after_ms == 0 || spool.fallback_after() >= http.produce_deadline())
        {
            return Err(SettingsError::invalid(
                "spool.fallback_after_ms",
                "must be above 0 and below http.produce_deadline_ms",
            ));
        }
        if self.sources.is_empty() {
            return Err(SettingsError::invalid(
                "sources",
                "at least one source must be configured",
            ));
        }
        for (name, source) in &self.sources {
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(SettingsError::invalid(
                    format!("sources.{name}"),
                    "source names are ASCII letters, digits, `-` and `_`",
                ));
            }
            if source.secret_envs.is_empty() && source.secret_files.is_empty() {
                return Err(SettingsError::invalid(
                    format!("sources.{name}"),
                    "needs at least one secret (secret_envs or secret_files)",
                ));
            }
            if source.secret_reload_ms == 0 {
                return Err(SettingsError::invalid(
                    format!("sources.{name}.secret_reload_ms"),
                    "must be above 0",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use voicehub_runtime::settings::load_with_env;

    use super::*;

    fn shipped() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/config/ingress.toml")
    }

    #[test]
    fn the_shipped_config_parses_validates_and_states_the_defaults() {
        let settings: IngressSettings = load_with_env(Some(&shipped()), Vec::new()).unwrap();
        settings.validate().unwrap();
        let defaults = HttpSettings::default();
        assert_eq!(
            settings.http.produce_deadline_ms,
            defaults.produce_deadline_ms
        );
        assert_eq!(settings.http.max_body_bytes, defaults.max_body_bytes);
        assert_eq!(
            settings.kafka.message_timeout_ms,
            KafkaSettings::default().message_timeout_ms
        );
        assert_eq!(settings.kafka.topics, voicehub_model::Topics::default());
        // Every topic spelled out, so that a new event type's topic is in the reference.
        let text = std::fs::read_to_string(shipped()).unwrap();
        for (key, name) in settings.kafka.topics.all() {
            assert!(
                text.contains(&format!("\n{key} = \"{name}\"\n")),
                "topics.{key}"
            );
        }
        assert_eq!(settings.sources["default"].secret_files.len(), 2);
        let spool = SpoolSettings::default();
        assert_eq!(settings.spool.mode, spool.mode);
        assert_eq!(settings.spool.dir, spool.dir);
        assert_eq!(
            (settings.spool.max_bytes, settings.spool.max_age_s),
            (spool.max_bytes, spool.max_age_s)
        );
        assert_eq!(settings.spool.segment_bytes, spool.segment_bytes);
        assert_eq!(settings.spool.fallback_after_ms, spool.fallback_after_ms);
        assert_eq!(settings.spool.forward_window, spool.forward_window);
    }

    #[test]
    fn a_fallback_budget_not_below_the_produce_deadline_is_refused_by_key() {
        let mut settings: IngressSettings = load_with_env(Some(&shipped()), Vec::new()).unwrap();
        settings.spool.mode = SpoolMode::Fallback;
        settings.spool.fallback_after_ms = settings.http.produce_deadline_ms;
        let text = settings.validate().unwrap_err().to_string();
        assert!(
            text.starts_with("configuration key `spool.fallback_after_ms`"),
            "{text}"
        );
        settings.spool.fallback_after_ms = 1_000;
        settings.validate().unwrap();
    }

    #[test]
    fn a_produce_deadline_at_voicehubs_timeout_is_refused_by_key() {
        let mut settings: IngressSettings = load_with_env(Some(&shipped()), Vec::new()).unwrap();
        settings.http.produce_deadline_ms = 10_000;
        let text = settings.validate().unwrap_err().to_string();
        assert!(
            text.starts_with("configuration key `http.produce_deadline_ms`"),
            "{text}"
        );
    }

    #[test]
    fn a_producer_that_cannot_carry_the_body_limit_is_refused_by_key() {
        let mut settings: IngressSettings = load_with_env(Some(&shipped()), Vec::new()).unwrap();
        settings.validate().unwrap();
        settings
            .kafka
            .properties
            .insert("message.max.bytes".into(), "1000000".into());
        let text = settings.validate().unwrap_err().to_string();
        assert!(
            text.starts_with("configuration key `kafka.properties.message.max.bytes`"),
            "{text}"
        );
        settings.http.max_body_bytes = 1_000_000 - RECORD_HEADROOM_BYTES;
        settings.validate().unwrap();
    }

    #[test]
    fn a_listen_backlog_out_of_range_is_refused_by_key() {
        let mut settings: IngressSettings = load_with_env(Some(&shipped()), Vec::new()).unwrap();
        for backlog in [0, MAX_LISTEN_BACKLOG + 1] {
            settings.http.listen_backlog = backlog;
            let text = settings.validate().unwrap_err().to_string();
            assert!(
                text.starts_with("configuration key `http.listen_backlog`"),
                "{backlog}: {text}"
            );
        }
        settings.http.listen_backlog = MAX_LISTEN_BACKLOG;
        settings.validate().unwrap();
    }

    #[test]
    fn a_source_without_secrets_is_refused_by_key() {
        let env = vec![(
            "VOICEHUB_BRIDGE__SOURCES__BARE__SECRET_RELOAD_MS".to_owned(),
            "1000".to_owned(),
        )];
        let settings: IngressSettings = load_with_env(Some(&shipped()), env).unwrap();
        let text = settings.validate().unwrap_err().to_string();
        assert!(
            text.starts_with("configuration key `sources.bare`"),
            "{text}"
        );
    }
}
