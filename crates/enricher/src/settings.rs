//! `voicehub-enricher` configuration.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use voicehub_runtime::settings::{AdminSettings, KafkaSettings, LogSettings, SettingsError};

use crate::allow_list::AllowedHost;

/// Everything the enricher reads at startup.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnricherSettings {
    /// The consumer group.
    #[serde(default)]
    pub consumer: ConsumerSettings,
    /// Fetching analysis results.
    #[serde(default)]
    pub fetch: FetchSettings,
    /// Retrying failed fetches.
    #[serde(default)]
    pub retry: RetrySettings,
    /// Sources by name (as in the records' `ce_source`): API key and allowed hosts.
    pub sources: BTreeMap<String, SourceSettings>,
    /// Broker and topics.
    #[serde(default)]
    pub kafka: KafkaSettings,
    /// Admin server.
    #[serde(default = "default_admin")]
    pub admin: AdminSettings,
    /// Logging.
    #[serde(default)]
    pub log: LogSettings,
}

fn default_admin() -> AdminSettings {
    AdminSettings {
        listen: "0.0.0.0:9091".into(),
    }
}

/// `[consumer]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsumerSettings {
    /// Consumer group id.
    pub group_id: String,
    /// Records processed at once.
    pub max_in_flight: usize,
    /// Received records waiting for a free slot, in bytes; at this bound fetching pauses until
    /// half of it has been taken. librdkafka's own prefetch queue is bounded to half of it too.
    pub max_backlog_bytes: usize,
    /// Records of one partition started and not yet committable (in flight, or finished
    /// behind a slower one) at most; at the bound that partition waits for its oldest. What
    /// a rebalance makes the next owner process again, per partition revoked.
    pub max_uncommitted_per_partition: usize,
    /// `session.timeout.ms`.
    pub session_timeout_ms: u64,
    /// `max.poll.interval.ms`.
    pub max_poll_interval_ms: u64,
    /// How often finished offsets are committed (`auto.commit.interval.ms`).
    pub commit_interval_ms: u64,
    /// On SIGTERM, how long in-flight records may take to finish before they are abandoned
    /// (not committed: the next owner processes them again).
    pub drain_timeout_ms: u64,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            group_id: "voicehub-enricher".into(),
            max_in_flight: 96,
            max_backlog_bytes: 8 * 1024 * 1024,
            max_uncommitted_per_partition: 1_000,
            session_timeout_ms: 10_000,
            max_poll_interval_ms: 300_000,
            commit_interval_ms: 1_000,
            drain_timeout_ms: 10_000,
        }
    }
}

/// `[fetch]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FetchSettings {
    /// Bound on establishing the connection.
    pub connect_timeout_ms: u64,
    /// Bound on one whole request, body included.
    pub timeout_ms: u64,
    /// Largest analysis accepted; larger ones are dead-lettered (`too_large`).
    pub max_body_bytes: usize,
    /// The analysis bodies all fetches may hold at once. A fetch reserves its body's
    /// Content-Length (or `max_body_bytes` when the server sends none) before reading it, and
    /// keeps it until its enriched record is acknowledged: memory stays bounded whatever
    /// `consumer.max_in_flight` is.
    pub max_in_flight_body_bytes: usize,
}

impl Default for FetchSettings {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 2_000,
            timeout_ms: 10_000,
            max_body_bytes: 16 * 1024 * 1024,
            max_in_flight_body_bytes: 16 * 1024 * 1024,
        }
    }
}

/// `[retry]`: exponential backoff with full jitter.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrySettings {
    /// First backoff.
    pub initial_backoff_ms: u64,
    /// Largest backoff.
    pub max_backoff_ms: u64,
    /// Budget: a record still failing this long after its first attempt is dead-lettered
    /// (`retries_exhausted`). Covers "404 until the analysis is ready".
    pub max_elapsed_ms: u64,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            initial_backoff_ms: 500,
            max_backoff_ms: 30_000,
            max_elapsed_ms: 600_000,
        }
    }
}

impl RetrySettings {
    /// The backoff before attempt `attempt + 1` (attempt counts from 1), before jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(20);
        let millis = self
            .initial_backoff_ms
            .saturating_mul(1 << exponent)
            .min(self.max_backoff_ms);
        Duration::from_millis(millis)
    }

    /// `max_elapsed_ms` as a duration.
    pub fn budget(&self) -> Duration {
        Duration::from_millis(self.max_elapsed_ms)
    }
}

/// `[sources.<name>]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSettings {
    /// Environment variable holding the account API key (`x-dq-api-key`).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// File holding the API key (trailing newline ignored), read at startup and re-read every
    /// `api_key_reload_ms`: a rotated key takes effect without a restart.
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// How often `api_key_file` is re-read. An unreadable or empty file keeps the previous key
    /// (logged, counted in `voicehub_enricher_api_key_reload_errors_total`).
    #[serde(default = "default_reload_ms")]
    pub api_key_reload_ms: u64,
    /// Where the key may be sent: `host`, `host:port`, optionally with a path prefix
    /// (`host/api/v1/`); a host on a loopback, private or link-local address only as
    /// `{ host = "...", allow_private_addresses = true }`. See [`AllowedHost`].
    #[serde(default = "default_hosts")]
    pub allowed_hosts: Vec<AllowedHost>,
    /// Allow plain `http` URLs (local development only).
    #[serde(default)]
    pub allow_http: bool,
}

fn default_reload_ms() -> u64 {
    5_000
}

fn default_hosts() -> Vec<AllowedHost> {
    AllowedHost::parse("voicehub.dataqueue.ai", false)
        .into_iter()
        .collect()
}

impl EnricherSettings {
    /// Cross-field checks. Every error names its key.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.kafka.validate()?;
        if self.consumer.max_in_flight == 0 {
            return Err(SettingsError::invalid(
                "consumer.max_in_flight",
                "must be above 0",
            ));
        }
        if self.consumer.max_uncommitted_per_partition == 0 {
            return Err(SettingsError::invalid(
                "consumer.max_uncommitted_per_partition",
                "must be above 0",
            ));
        }
        if self.consumer.max_backlog_bytes < 64 * 1024 {
            return Err(SettingsError::invalid(
                "consumer.max_backlog_bytes",
                "must be at least 65536",
            ));
        }
        if self.fetch.max_body_bytes == 0 || self.fetch.timeout_ms == 0 {
            return Err(SettingsError::invalid(
                "fetch",
                "max_body_bytes and timeout_ms must be above 0",
            ));
        }
        if self.fetch.max_in_flight_body_bytes < self.fetch.max_body_bytes {
            return Err(SettingsError::invalid(
                "fetch.max_in_flight_body_bytes",
                "must be at least fetch.max_body_bytes (one largest body must fit)",
            ));
        }
        let retry = &self.retry;
        if retry.initial_backoff_ms == 0 || retry.max_backoff_ms < retry.initial_backoff_ms {
            return Err(SettingsError::invalid(
                "retry.initial_backoff_ms",
                "must be above 0 and at most retry.max_backoff_ms (0 would retry in a hot loop)",
            ));
        }
        if retry.max_elapsed_ms == 0 {
            return Err(SettingsError::invalid(
                "retry.max_elapsed_ms",
                "must be above 0",
            ));
        }
        if self.consumer.commit_interval_ms == 0 {
            return Err(SettingsError::invalid(
                "consumer.commit_interval_ms",
                "must be above 0",
            ));
        }
        if self.sources.is_empty() {
            return Err(SettingsError::invalid(
                "sources",
                "at least one source must be configured",
            ));
        }
        for (name, source) in &self.sources {
            if source.api_key_reload_ms == 0 {
                return Err(SettingsError::invalid(
                    format!("sources.{name}.api_key_reload_ms"),
                    "must be above 0",
                ));
            }
            if source.api_key_env.is_some() == source.api_key_file.is_some() {
                return Err(SettingsError::invalid(
                    format!("sources.{name}"),
                    "needs exactly one of api_key_env and api_key_file",
                ));
            }
            if let Some(host) = crate::allow_list::conflicting_private_flag(&source.allowed_hosts) {
                return Err(SettingsError::invalid(
                    format!("sources.{name}.allowed_hosts"),
                    format_args!(
                        "`{host}` is named by entries that disagree on allow_private_addresses: \
                         its resolved addresses are checked once per name, so give every entry \
                         of it the same"
                    ),
                ));
            }
            if source.allowed_hosts.is_empty() {
                return Err(SettingsError::invalid(
                    format!("sources.{name}.allowed_hosts"),
                    "must name at least one host",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let retry = RetrySettings {
            initial_backoff_ms: 100,
            max_backoff_ms: 1_000,
            max_elapsed_ms: 10_000,
        };
        let backoffs: Vec<u64> = (1..=6)
            .map(|a| retry.backoff(a).as_millis() as u64)
            .collect();
        assert_eq!(backoffs, [100, 200, 400, 800, 1_000, 1_000]);
        assert_eq!(retry.backoff(u32::MAX).as_millis(), 1_000);
    }
}

#[cfg(test)]
mod shipped {
    use std::path::PathBuf;

    use voicehub_runtime::settings::load_with_env;

    use super::*;

    fn path() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/config/enricher.toml")
    }

    #[test]
    fn the_shipped_config_parses_validates_and_states_the_defaults() {
        let settings: EnricherSettings = load_with_env(Some(&path()), Vec::new()).unwrap();
        settings.validate().unwrap();
        assert_eq!(
            settings.consumer.max_in_flight,
            ConsumerSettings::default().max_in_flight
        );
        assert_eq!(
            settings.fetch.max_body_bytes,
            FetchSettings::default().max_body_bytes
        );
        assert_eq!(
            settings.retry.max_elapsed_ms,
            RetrySettings::default().max_elapsed_ms
        );
        assert_eq!(settings.sources["default"].allowed_hosts, default_hosts());
        assert_eq!(settings.admin.listen, default_admin().listen);
    }

    #[test]
    fn settings_that_would_fail_at_run_time_are_refused_by_key() {
        type Change = fn(&mut EnricherSettings);
        let cases: [(Change, &str); 4] = [
            (
                |s| s.sources.get_mut("default").unwrap().api_key_reload_ms = 0,
                "sources.default.api_key_reload_ms",
            ),
            (
                |s| s.retry.initial_backoff_ms = 0,
                "retry.initial_backoff_ms",
            ),
            (|s| s.retry.max_backoff_ms = 10, "retry.initial_backoff_ms"),
            (
                |s| s.kafka.topics.dead_letter = s.kafka.topics.analysis_result_ready.clone(),
                "kafka.topics.dead_letter",
            ),
        ];
        for (change, key) in cases {
            let mut settings: EnricherSettings = load_with_env(Some(&path()), Vec::new()).unwrap();
            settings.validate().unwrap();
            change(&mut settings);
            let text = settings.validate().unwrap_err().to_string();
            assert!(
                text.starts_with(&format!("configuration key `{key}`")),
                "{key}: {text}"
            );
        }
    }

    #[test]
    fn an_allowed_host_is_read_as_a_string_or_a_table_and_refused_by_key() {
        let load = |entry: &str| {
            let mut file = tempfile::NamedTempFile::new().unwrap();
            let text =
                format!("[sources.default]\napi_key_env = \"K\"\nallowed_hosts = [{entry}]\n");
            std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
            load_with_env::<EnricherSettings>(Some(file.path()), Vec::new())
        };
        let taken = load(
            r#""api.example/v1/", { host = "localhost:8090", allow_private_addresses = true }"#,
        )
        .unwrap();
        let expected = [
            AllowedHost::parse("api.example/v1/", false).unwrap(),
            AllowedHost::parse("localhost:8090", true).unwrap(),
        ];
        assert_eq!(taken.sources["default"].allowed_hosts, expected);
        taken.validate().unwrap();
        let conflicting = load(
            r#""api.example/v1/", { host = "api.example:8443", allow_private_addresses = true }"#,
        )
        .unwrap();
        let text = conflicting.validate().unwrap_err().to_string();
        assert!(
            text.contains("`sources.default.allowed_hosts`")
                && text.contains("disagree on allow_private_addresses"),
            "{text}"
        );
        for (entry, says) in [
            (r#""https://voicehub.dataqueue.ai""#, "is a URL"),
            (r#""127.0.0.1:8090""#, "allow_private_addresses = true"),
            (r#""[::1]:8090""#, "a loopback address"),
            (r#""host/a/../b""#, "dot segments"),
            (
                r#"{ host = "localhost", private = true }"#,
                "not a host entry",
            ),
        ] {
            let text = load(entry).unwrap_err().to_string();
            assert!(
                text.contains("`sources.default.allowed_hosts[0]`") && text.contains(says),
                "{entry}: {text}"
            );
        }
    }

    #[test]
    fn a_source_with_two_keys_is_refused_by_key() {
        let env = vec![(
            "VOICEHUB_BRIDGE__SOURCES__DEFAULT__API_KEY_ENV".to_owned(),
            "KEY".to_owned(),
        )];
        let settings: EnricherSettings = load_with_env(Some(&path()), env).unwrap();
        let text = settings.validate().unwrap_err().to_string();
        assert!(
            text.starts_with("configuration key `sources.default`"),
            "{text}"
        );
    }
}
