//! Client and producer configuration: the record contract's producer properties, what each
//! property came from, and creating a producer without a secret in its error.

use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;

use crate::settings::{CONTRACT_PRODUCER_PROPERTIES, KafkaSettings, PropertyOrigin, shown_value};

/// Connection properties shared by every client: brokers, client id, extra properties.
///
/// Reconnection backs off to at most 1 s (librdkafka's default is 10 s): after a broker
/// returns, waiting records must be sent well within `message.timeout.ms` and within
/// VoiceHub's retries. Overridable through `kafka.properties`.
pub fn client_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("reconnect.backoff.max.ms", "1000");
    for (name, value) in &settings.properties {
        config.set(name, value);
    }
    config
        .set("bootstrap.servers", &settings.bootstrap_servers)
        .set("client.id", &settings.client_id);
    config
}

/// Records a producer holds before it refuses more (`QueueFull`: a 503, or a retry), in KiB,
/// unless `kafka.properties` sets `queue.buffering.max.kbytes`. librdkafka's default, 1 GiB,
/// is four times the pods' memory limit. This bound is part of the ingress's worst case
/// (docs/operations.md, "Memory"); the enricher holds each record's fetch reservation until
/// the record is delivered, so its fetch budget bounds what its producer holds.
pub const PRODUCER_QUEUE_KBYTES: u32 = 32 * 1024;

/// The producer configuration of the contract: idempotent, `acks=all`, Java-compatible
/// partitioning (so a key lands on the same partition as from a Java producer), compressed,
/// every delivery bounded by `message.timeout.ms`; records held bounded in bytes.
pub fn producer_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = client_config(settings);
    if !settings
        .properties
        .contains_key("queue.buffering.max.kbytes")
    {
        config.set(
            "queue.buffering.max.kbytes",
            PRODUCER_QUEUE_KBYTES.to_string(),
        );
    }
    config
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("compression.type", settings.compression.as_str())
        .set("linger.ms", settings.linger_ms.to_string())
        .set(
            "message.max.bytes",
            settings.message_max_bytes().to_string(),
        )
        .set(
            "statistics.interval.ms",
            settings.statistics_interval_ms.to_string(),
        )
        .set(
            "message.timeout.ms",
            settings.message_timeout_ms.to_string(),
        );
    config
}

/// The librdkafka properties of the service's producer (every client shares the connection
/// ones), one per line with where each comes from, for `--check-config`. The value of a
/// property that may hold a secret is never shown.
pub fn describe_properties(
    settings: &KafkaSettings,
    origins: &std::collections::BTreeMap<String, PropertyOrigin>,
) -> String {
    let config = producer_config(settings);
    let properties: std::collections::BTreeMap<_, _> = config.config_map().iter().collect();
    let width = properties.keys().map(|name| name.len()).max().unwrap_or(0);
    let mut text = String::new();
    for (name, value) in properties {
        let origin = match origins.get(name.as_str()) {
            Some(PropertyOrigin::File) => "file (kafka.properties)".to_owned(),
            Some(PropertyOrigin::Environment(variable)) => format!("environment ({variable})"),
            None => match SETTING_PROPERTIES.iter().find(|(p, _)| p == name) {
                Some((_, setting)) => (*setting).to_owned(),
                None if CONTRACT_PRODUCER_PROPERTIES.contains(&name.as_str()) => {
                    "record contract".to_owned()
                }
                None => "default".to_owned(),
            },
        };
        let value = shown_value(name, value);
        text.push_str(&format!("  {name:width$}  {value}  <- {origin}\n"));
    }
    text
}

/// What `--check-config` prints for a valid configuration: the librdkafka properties and
/// where each comes from (`file` is the configuration file, if any).
pub fn check_config_report(
    service: &str,
    file: Option<&std::path::Path>,
    settings: &KafkaSettings,
) -> Result<String, crate::settings::SettingsError> {
    let origins = crate::settings::kafka_property_origins(file, std::env::vars())?;
    Ok(format!(
        "{service}: configuration is valid\nlibrdkafka properties (value <- where it is set):\n{}",
        describe_properties(settings, &origins)
    ))
}

/// librdkafka properties the bridge sets from one of its own settings.
const SETTING_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "kafka.bootstrap_servers"),
    ("client.id", "kafka.client_id"),
    ("message.timeout.ms", "kafka.message_timeout_ms"),
    ("linger.ms", "kafka.linger_ms"),
    ("compression.type", "kafka.compression"),
    ("statistics.interval.ms", "kafka.statistics_interval_ms"),
];

/// Creates a producer with the contract's settings and the given context (for statistics).
pub fn create_producer<C: ClientContext + 'static>(
    settings: &KafkaSettings,
    context: C,
) -> Result<FutureProducer<C>, KafkaError> {
    producer_config(settings)
        .create_with_context(context)
        .map_err(redacted)
}

/// `error` without the property value a configuration error quotes (librdkafka's message
/// names the key; the value may be a password given under a misspelled key).
pub fn redacted(error: KafkaError) -> KafkaError {
    match error {
        KafkaError::ClientConfig(code, description, key, _) => {
            KafkaError::ClientConfig(code, description, key, "(value not shown)".into())
        }
        other => other,
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    #[test]
    fn the_property_report_names_each_origin_and_hides_secrets() {
        let mut settings = KafkaSettings::default();
        for (name, value) in [
            ("security.protocol", "SASL_SSL"),
            ("sasl.password", "hunter2-secret"),
            ("ssl.key.pem", "-----BEGIN PRIVATE KEY-----"),
        ] {
            settings.properties.insert(name.into(), value.into());
        }
        let origins = std::collections::BTreeMap::from([
            ("security.protocol".to_owned(), PropertyOrigin::File),
            (
                "sasl.password".to_owned(),
                PropertyOrigin::Environment(
                    "VOICEHUB_BRIDGE__KAFKA__PROPERTIES__SASL__PASSWORD".into(),
                ),
            ),
            ("ssl.key.pem".to_owned(), PropertyOrigin::File),
        ]);
        let report = describe_properties(&settings, &origins);
        let line = |name: &str| {
            report
                .lines()
                .find(|line| line.trim_start().starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("no {name} in {report}"))
                .to_owned()
        };
        assert!(line("security.protocol").ends_with("SASL_SSL  <- file (kafka.properties)"));
        assert!(line("sasl.password").ends_with(
            "(secret, not shown)  <- environment (VOICEHUB_BRIDGE__KAFKA__PROPERTIES__SASL__PASSWORD)"
        ));
        assert!(line("acks").ends_with("all  <- record contract"));
        assert!(line("linger.ms").ends_with("5  <- kafka.linger_ms"));
        assert!(line("reconnect.backoff.max.ms").ends_with("1000  <- default"));
        assert!(
            !report.contains("hunter2") && !report.contains("PRIVATE"),
            "{report}"
        );
    }

    #[test]
    fn a_refused_property_is_named_without_its_value() {
        let mut settings = KafkaSettings::default();
        settings
            .properties
            .insert("sasl.pasword".into(), "hunter2-secret".into());
        let error = create_producer(&settings, rdkafka::client::DefaultClientContext)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("sasl.pasword"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }
}
