use std::time::Duration;

use rdkafka::producer::FutureProducer;
use voicehub_model::record::{DeadLetter, Provenance, Record, Stage};
use voicehub_model::{Timestamp, parse_webhook};
use voicehub_runtime::BRIDGE_VERSION;
use voicehub_runtime::kafka;
use voicehub_runtime::settings::KafkaSettings;
use voicehub_testkit::TestBroker;

pub const SOURCE: &str = "acme";

/// Kafka settings for `broker`, with the test's own topic names.
pub fn kafka_settings(broker: &TestBroker) -> KafkaSettings {
    let mut kafka = KafkaSettings {
        bootstrap_servers: broker.bootstrap_servers(),
        message_timeout_ms: 10_000,
        topics: broker.topics(),
        ..KafkaSettings::default()
    };
    kafka.provision.create_topics = true;
    kafka.provision.partitions = 2;
    kafka.provision.replication_factor = 1;
    kafka
}

pub fn producer(kafka: &KafkaSettings) -> FutureProducer {
    kafka::create_producer(kafka, rdkafka::client::DefaultClientContext).unwrap()
}

pub async fn produce(producer: &FutureProducer, topic: &str, record: &Record) {
    kafka::produce(producer, topic, record, Duration::from_secs(10))
        .await
        .unwrap();
}

/// The record the ingress writes for `body`.
pub fn event_record(body: &[u8]) -> Record {
    parse_webhook(body).unwrap().to_record(&provenance())
}

pub fn provenance() -> Provenance<'static> {
    Provenance {
        source: SOURCE,
        received_at: Timestamp::parse("2026-11-30T10:00:00.000Z").unwrap(),
        bridge_version: BRIDGE_VERSION,
    }
}

/// The dead letter the ingress writes for a body its parser refused.
pub fn ingress_dead_letter(body: &[u8], reason: &str) -> Record {
    DeadLetter {
        stage: Stage::Ingress,
        reason,
        error: "refused by the parser",
        original: body,
        original_content_type: "application/octet-stream",
        subject: None,
    }
    .to_record(&provenance())
}

/// A `CallStatusChanged` body.
pub fn status_body(event_id: &str, call_id: &str, status: &str) -> Vec<u8> {
    format!(
        r#"{{"eventType":"CallStatusChanged","eventId":"{event_id}","callId":"{call_id}","status":{status},"timestamp":"2026-11-30T10:00:00Z"}}"#
    )
    .into_bytes()
}

/// A runtime for the blocking CLI functions (they block on it), run off the test's own.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce(&tokio::runtime::Runtime) -> T + Send + 'static,
) -> T {
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        f(&runtime)
    })
    .await
    .unwrap()
}
