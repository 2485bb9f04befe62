//! What the CLI reads from the services' configuration: the `[kafka]` section (brokers,
//! TLS/SASL properties, topic names), from the same file and `VOICEHUB_BRIDGE__*` environment.

use serde::Deserialize;
use voicehub_runtime::settings::{KafkaSettings, SettingsError};

/// The CLI's settings: the `[kafka]` section of an ingress or enricher configuration file (the
/// other sections are ignored).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct OperatorSettings {
    /// Brokers, client properties and topic names, as the services use them.
    pub kafka: KafkaSettings,
}

impl OperatorSettings {
    /// Loads and validates the settings (`file`, then the environment).
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, SettingsError> {
        let settings: Self = voicehub_runtime::settings::load(file)?;
        settings.kafka.validate()?;
        Ok(settings)
    }
}
