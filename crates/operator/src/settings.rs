//! What the CLI reads from the services' configuration: the `[kafka]` section (brokers,
//! TLS/SASL properties, topic names) and the names of the `[sources]`, from the same file and
//! `VOICEHUB_BRIDGE__*` environment.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde::de::IgnoredAny;
use voicehub_runtime::settings::{KafkaSettings, SettingsError};

/// The CLI's settings: the `[kafka]` section of an ingress or enricher configuration file (the
/// other sections are ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct OperatorSettings {
    /// Brokers, client properties and topic names, as the services use them.
    pub kafka: KafkaSettings,
    /// The configured sources (only their names are read).
    pub sources: BTreeMap<String, IgnoredAny>,
}

impl OperatorSettings {
    /// Loads and validates the settings (`file`, then the environment).
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, SettingsError> {
        let settings: Self = voicehub_runtime::settings::load(file)?;
        settings.kafka.validate()?;
        Ok(settings)
    }

    /// The configured source names; `None` when the configuration names none.
    pub fn source_names(&self) -> Option<BTreeSet<String>> {
        (!self.sources.is_empty()).then(|| self.sources.keys().cloned().collect())
    }
}

/// The services' producer settings for a producer that sends one record and waits for it: no
/// linger (there is nothing to batch with), everything else as the services produce.
pub fn one_at_a_time(settings: &KafkaSettings) -> KafkaSettings {
    KafkaSettings {
        linger_ms: 0,
        ..settings.clone()
    }
}

/// What `voicehub check --service ingress` reads of the ingress's file: `[kafka]` and
/// `http.max_body_bytes` (the rest is the ingress's own to validate: `voicehub-ingress
/// --check-config`). The CLI does not depend on the ingress crate (its HTTP stack).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct IngressView {
    /// Brokers, client properties and topic names.
    pub kafka: KafkaSettings,
    /// `[http]`.
    pub http: HttpView,
}

/// `[http]` of the ingress's file, as far as the check needs it.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct HttpView {
    /// `http.max_body_bytes`.
    pub max_body_bytes: usize,
}

/// The ingress's default `http.max_body_bytes` (the operator's tests tie the two).
pub const INGRESS_DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

impl Default for HttpView {
    fn default() -> Self {
        Self {
            max_body_bytes: INGRESS_DEFAULT_MAX_BODY_BYTES,
        }
    }
}
