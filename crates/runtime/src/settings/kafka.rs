//! `[kafka]`: the broker connection, the topics and librdkafka's extra properties, with the
//! producer properties the record contract fixes.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use voicehub_model::Topics;

use super::SettingsError;

/// Producer properties fixed by the record contract (see `docs/records.md`).
pub const CONTRACT_PRODUCER_PROPERTIES: &[&str] = &[
    "acks",
    "enable.idempotence",
    "partitioner",
    "compression.type",
    "message.timeout.ms",
    "bootstrap.servers",
];

/// The producers' `message.max.bytes` unless `kafka.properties` sets it. librdkafka checks it
/// against a record before compressing; the broker's limit (`message.max.bytes` of the broker,
/// `max.message.bytes` of the topic) applies to the compressed batch and is the one that
/// matters. librdkafka's own default (1,000,000) refused webhooks the ingress had accepted
/// under `http.max_body_bytes`.
pub const PRODUCER_MESSAGE_MAX_BYTES: usize = 100_000_000;

/// `[kafka]`: the broker connection and the topics. Its `Debug` shows no property value that
/// may be a secret.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSettings {
    /// Comma-separated `host:port` list of brokers.
    pub bootstrap_servers: String,
    /// `client.id` reported to the brokers.
    pub client_id: String,
    /// Upper bound on delivering one record, retries included (`message.timeout.ms`). A
    /// record not acknowledged by then fails. Longer than the ingress's produce deadline on
    /// purpose: a webhook answered 503 keeps being delivered through a short broker outage.
    pub message_timeout_ms: u64,
    /// Time the producer waits to batch records (`linger.ms`).
    pub linger_ms: u64,
    /// Compression codec of produced batches.
    pub compression: Compression,
    /// How often librdkafka reports statistics (queue depth metrics); 0 turns them off.
    pub statistics_interval_ms: u64,
    /// Topic names.
    pub topics: Topics,
    /// Topic creation at startup.
    pub provision: ProvisionSettings,
    /// Extra librdkafka properties, e.g. `security.protocol`, `sasl.mechanism`. Either
    /// `"security.protocol" = "SASL_SSL"` or nested tables. Values are never logged. The
    /// contract's producer settings cannot be overridden here.
    #[serde(deserialize_with = "dotted_properties")]
    pub properties: BTreeMap<String, String>,
}

impl fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            bootstrap_servers,
            client_id,
            message_timeout_ms,
            linger_ms,
            compression,
            statistics_interval_ms,
            topics,
            provision,
            properties,
        } = self;
        let properties: BTreeMap<&str, &str> = properties
            .iter()
            .map(|(name, value)| (name.as_str(), shown_value(name, value)))
            .collect();
        f.debug_struct("KafkaSettings")
            .field("bootstrap_servers", bootstrap_servers)
            .field("client_id", client_id)
            .field("message_timeout_ms", message_timeout_ms)
            .field("linger_ms", linger_ms)
            .field("compression", compression)
            .field("statistics_interval_ms", statistics_interval_ms)
            .field("topics", topics)
            .field("provision", provision)
            .field("properties", &properties)
            .finish()
    }
}

/// A librdkafka property's value as it may be shown (in `Debug` or the startup report): not at
/// all when the property may hold a secret (passwords, private keys, OAuth client secrets and
/// configurations).
pub(crate) fn shown_value<'a>(name: &str, value: &'a str) -> &'a str {
    let secret = ["password", "secret", ".pem", "oauthbearer.config", "jaas"]
        .iter()
        .any(|part| name.contains(part));
    if secret { "(secret, not shown)" } else { value }
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".into(),
            client_id: "voicehub-bridge".into(),
            message_timeout_ms: 30_000,
            linger_ms: 5,
            compression: Compression::Lz4,
            statistics_interval_ms: 5_000,
            topics: Topics::default(),
            provision: ProvisionSettings::default(),
            properties: BTreeMap::new(),
        }
    }
}

impl KafkaSettings {
    /// The producers' `message.max.bytes`: from `kafka.properties`, else
    /// [`PRODUCER_MESSAGE_MAX_BYTES`].
    pub fn message_max_bytes(&self) -> usize {
        self.properties
            .get("message.max.bytes")
            .and_then(|value| value.parse().ok())
            .unwrap_or(PRODUCER_MESSAGE_MAX_BYTES)
    }

    /// `message_timeout_ms` as a duration.
    pub fn message_timeout(&self) -> Duration {
        Duration::from_millis(self.message_timeout_ms)
    }

    /// Checks what serde cannot: names, ranges, and that no extra property overrides the
    /// contract.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err(SettingsError::invalid(
                "kafka.bootstrap_servers",
                "must name at least one broker",
            ));
        }
        if self.message_timeout_ms == 0 {
            return Err(SettingsError::invalid(
                "kafka.message_timeout_ms",
                "must be above 0 (0 would mean retry forever)",
            ));
        }
        self.topics
            .validate()
            .map_err(|e| SettingsError::invalid(format!("kafka.topics.{}", e.key), &e))?;
        if self.provision.partitions < 1 {
            return Err(SettingsError::invalid(
                "kafka.provision.partitions",
                "must be at least 1",
            ));
        }
        if self.provision.replication_factor < 1 {
            return Err(SettingsError::invalid(
                "kafka.provision.replication_factor",
                "must be at least 1",
            ));
        }
        for name in self.properties.keys() {
            if CONTRACT_PRODUCER_PROPERTIES.contains(&name.as_str()) {
                return Err(SettingsError::invalid(
                    format!("kafka.properties.{name}"),
                    "is fixed by the record contract and cannot be overridden",
                ));
            }
        }
        Ok(())
    }
}

/// Compression codec of produced batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// No compression.
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4 (default: cheap on CPU, good on JSON).
    Lz4,
}

impl Compression {
    /// The `compression.type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
        }
    }
}

/// `[kafka.provision]`: topic creation at startup.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvisionSettings {
    /// Create the topics the service writes to (and reads from) if they do not exist.
    pub create_topics: bool,
    /// Partitions of created topics.
    pub partitions: i32,
    /// Replication factor of created topics.
    pub replication_factor: i32,
}

impl Default for ProvisionSettings {
    fn default() -> Self {
        Self {
            create_topics: false,
            partitions: 6,
            replication_factor: 3,
        }
    }
}

/// Reads `kafka.properties`: flat librdkafka names (both sources make them so, see
/// [`FileWithFlatProperties`]) to values written as strings, booleans or integers.
fn dotted_properties<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Bool(bool),
        Int(i64),
    }
    let table = BTreeMap::<String, Scalar>::deserialize(deserializer)?;
    Ok(table
        .into_iter()
        .map(|(name, value)| {
            let value = match value {
                Scalar::Text(text) => text,
                Scalar::Bool(value) => value.to_string(),
                Scalar::Int(value) => value.to_string(),
            };
            (name, value)
        })
        .collect())
}
