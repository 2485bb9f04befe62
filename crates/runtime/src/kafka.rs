//! Kafka clients with the record contract's settings.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, ProducerContext};
use tracing::info;
use voicehub_model::record::Record;

use crate::settings::KafkaSettings;

/// Producer properties fixed by the record contract (see `docs/records.md`).
pub const CONTRACT_PRODUCER_PROPERTIES: &[&str] = &[
    "acks",
    "enable.idempotence",
    "partitioner",
    "compression.type",
    "message.timeout.ms",
    "bootstrap.servers",
];

/// Connection properties shared by every client: brokers, client id, extra properties.
pub fn client_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (name, value) in &settings.properties {
        config.set(name, value);
    }
    config
        .set("bootstrap.servers", &settings.bootstrap_servers)
        .set("client.id", &settings.client_id);
    config
}

/// The producer configuration of the contract: idempotent, `acks=all`, Java-compatible
/// partitioning (so a key lands on the same partition as from a Java producer), compressed,
/// every delivery bounded by `message.timeout.ms`.
pub fn producer_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = client_config(settings);
    config
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("compression.type", settings.compression.as_str())
        .set("linger.ms", settings.linger_ms.to_string())
        .set(
            "message.timeout.ms",
            settings.message_timeout_ms.to_string(),
        );
    config
}

/// Creates a producer with the contract's settings and the given context (for statistics
/// and delivery callbacks).
pub fn create_producer<C: ProducerContext + 'static>(
    settings: &KafkaSettings,
    context: C,
) -> Result<FutureProducer<C>, KafkaError> {
    producer_config(settings).create_with_context(context)
}

/// Why a record was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    /// No acknowledgement within the deadline. The record may still be delivered later.
    #[error("no acknowledgement within {0:?}")]
    Deadline(Duration),
    /// The producer's local queue is full: back off.
    #[error("producer queue is full")]
    QueueFull,
    /// The record is larger than the producer or broker accepts: retrying will not help.
    #[error("record too large: {0}")]
    TooLarge(#[source] KafkaError),
    /// Any other delivery failure (broker unreachable, not enough replicas, ...).
    #[error("delivery failed: {0}")]
    Failed(#[source] KafkaError),
}

impl ProduceError {
    /// A closed set of reason codes, for metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Deadline(_) => "deadline",
            Self::QueueFull => "queue_full",
            Self::TooLarge(_) => "too_large",
            Self::Failed(_) => "failed",
        }
    }

    /// Whether the same record may succeed later.
    pub fn is_transient(&self) -> bool {
        !matches!(self, Self::TooLarge(_))
    }

    fn from_kafka(error: KafkaError) -> Self {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::QueueFull) => Self::QueueFull,
            Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize) => {
                Self::TooLarge(error)
            }
            _ => Self::Failed(error),
        }
    }
}

/// Where an acknowledged record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// Produces `record` to `topic` and waits for the broker's acknowledgement, at most
/// `deadline` in all (queueing included).
pub async fn produce<C: ProducerContext + 'static>(
    producer: &FutureProducer<C>,
    topic: &str,
    record: &Record,
    deadline: Duration,
) -> Result<Delivered, ProduceError> {
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
    for (key, value) in &record.headers {
        headers = headers.insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
    let mut future_record = FutureRecord::to(topic)
        .payload(record.value.as_slice())
        .headers(headers);
    if let Some(key) = &record.key {
        future_record = future_record.key(key.as_str());
    }
    // Queue wait and delivery share one deadline: `send` waits for queue space at most
    // `deadline`, and the whole call is bounded by it too.
    let delivery = producer.send(future_record, deadline);
    match tokio::time::timeout(deadline, delivery).await {
        Err(_) => Err(ProduceError::Deadline(deadline)),
        Ok(Err((error, _))) => Err(match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::MessageTimedOut) => ProduceError::Deadline(deadline),
            _ => ProduceError::from_kafka(error),
        }),
        Ok(Ok(delivery)) => Ok(Delivered {
            partition: delivery.partition,
            offset: delivery.offset,
        }),
    }
}

/// Why topic provisioning failed.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The admin client could not be created or the request failed as a whole.
    #[error("creating topics: {0}")]
    Client(#[from] KafkaError),
    /// The broker refused a topic.
    #[error("creating topic {topic}: {code}")]
    Topic {
        /// The topic.
        topic: String,
        /// The broker's error code.
        code: RDKafkaErrorCode,
    },
}

/// Creates the topics that do not exist yet, with the configured partitions and replication.
pub async fn ensure_topics(
    settings: &KafkaSettings,
    topics: &[&str],
    timeout: Duration,
) -> Result<(), ProvisionError> {
    let admin: AdminClient<DefaultClientContext> = client_config(settings).create()?;
    let provision = &settings.provision;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|name| {
            NewTopic::new(
                name,
                provision.partitions,
                TopicReplication::Fixed(provision.replication_factor),
            )
        })
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    for result in admin.create_topics(&new_topics, &options).await? {
        match result {
            Ok(topic) => info!(topic, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(ProvisionError::Topic { topic, code }),
        }
    }
    Ok(())
}
