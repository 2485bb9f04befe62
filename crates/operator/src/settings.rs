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
