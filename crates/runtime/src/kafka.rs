//! Kafka clients with the record contract's settings.

use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use tracing::info;
use voicehub_model::record::Record;

use crate::settings::{CONTRACT_PRODUCER_PROPERTIES, KafkaSettings, PropertyOrigin};

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
        let value = if may_be_secret(name) {
            "(secret, not shown)"
        } else {
            value
        };
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

/// Whether a librdkafka property may hold a secret (passwords, private keys, OAuth client
/// secrets and configurations).
fn may_be_secret(name: &str) -> bool {
    ["password", "secret", ".pem", "oauthbearer.config", "jaas"]
        .iter()
        .any(|part| name.contains(part))
}

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

/// Why a record was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    /// No acknowledgement within the caller's deadline. The record may still be delivered
    /// later.
    #[error("no acknowledgement within {0:?}")]
    Deadline(Duration),
    /// The producer gave up on the record after `message.timeout.ms`.
    #[error("not delivered within message.timeout.ms")]
    TimedOut,
    /// The producer's local queue is full: back off.
    #[error("producer queue is full")]
    QueueFull,
    /// The record is larger than the producer or broker accepts: retrying will not help.
    #[error("record too large: {0}")]
    TooLarge(#[source] KafkaError),
    /// The cluster refused this client's principal: a missing ACL (authorization) or a
    /// refused credential (authentication). Not an outage: it lasts until someone grants or
    /// fixes it, and then the same record may succeed.
    #[error("not authorized: {0}")]
    Unauthorized(#[source] KafkaError),
    /// Any other delivery failure (broker unreachable, not enough replicas, ...).
    #[error("delivery failed: {0}")]
    Failed(#[source] KafkaError),
}

impl ProduceError {
    /// Every value of [`Self::reason`], for metrics to start at zero.
    pub const REASONS: [&'static str; 6] = [
        "deadline",
        "timed_out",
        "queue_full",
        "too_large",
        "unauthorized",
        "failed",
    ];

    /// A closed set of reason codes, for metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Deadline(_) => "deadline",
            Self::TimedOut => "timed_out",
            Self::QueueFull => "queue_full",
            Self::TooLarge(_) => "too_large",
            Self::Unauthorized(_) => "unauthorized",
            Self::Failed(_) => "failed",
        }
    }

    /// librdkafka's error, where there is one.
    pub fn kafka_error(&self) -> Option<&KafkaError> {
        match self {
            Self::TooLarge(error) | Self::Unauthorized(error) | Self::Failed(error) => Some(error),
            Self::Deadline(_) | Self::TimedOut | Self::QueueFull => None,
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
            Some(code) if is_unauthorized(code) => Self::Unauthorized(error),
            _ => Self::Failed(error),
        }
    }
}

/// Whether `code` says the cluster refused the principal (authorization or authentication).
pub fn is_unauthorized(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::Authentication
    )
}

/// Where an acknowledged record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// Hands `record` to the producer's queue without waiting. The returned future resolves with
/// the broker's answer, or `message.timeout.ms` after a broker that never answers.
pub fn enqueue<C: ClientContext + 'static>(
    producer: &FutureProducer<C>,
    topic: &str,
    record: &Record,
) -> Result<DeliveryFuture, ProduceError> {
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
    producer
        .send_result(future_record)
        .map_err(|(error, _)| ProduceError::from_kafka(error))
}

/// Waits for a delivery started by [`enqueue`].
pub async fn delivered(delivery: DeliveryFuture) -> Result<Delivered, ProduceError> {
    match delivery.await {
        Ok(Ok(delivery)) => Ok(Delivered {
            partition: delivery.partition,
            offset: delivery.offset,
        }),
        Ok(Err((error, _))) => Err(match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::MessageTimedOut) => ProduceError::TimedOut,
            _ => ProduceError::from_kafka(error),
        }),
        // The producer was dropped (shutdown, or replaced) with the record still queued.
        Err(_) => Err(ProduceError::Failed(KafkaError::Canceled)),
    }
}

/// Produces `record` to `topic` and waits for the broker's acknowledgement at most
/// `deadline`. Past the deadline the delivery still goes on in the producer.
pub async fn produce<C: ClientContext + 'static>(
    producer: &FutureProducer<C>,
    topic: &str,
    record: &Record,
    deadline: Duration,
) -> Result<Delivered, ProduceError> {
    let delivery = enqueue(producer, topic, record)?;
    within_deadline(delivered(delivery), deadline).await
}

/// Waits for `delivery` at most `deadline`, in the caller's task (no task or channel of its
/// own). If the deadline passes, or the returned future is dropped first (polled or not),
/// the delivery is spawned on the current runtime to finish alone, so that what it does at
/// its end (metrics, callbacks, replacing a wedged producer) still happens. The exception is
/// a runtime that is itself shutting down: there nothing can run any more, and the
/// producer's flush at shutdown is what still sends the record. A panic while the caller
/// polls it ends the delivery as `Failed(Canceled)` (as a panicked spawned task did), instead
/// of unwinding into the caller, which may already have been told nothing.
///
/// The one deadline every produce path of the bridge goes through.
pub fn within_deadline<F>(
    delivery: F,
    deadline: Duration,
) -> impl Future<Output = Result<Delivered, ProduceError>> + Send
where
    F: Future<Output = Result<Delivered, ProduceError>> + Send + 'static,
{
    // Built now, not at the first poll: dropped unpolled, it still spawns the delivery.
    FinishAlone(Some(Box::pin(delivery))).within(deadline)
}

/// A delivery nobody waits for any more: dropped unfinished, it is spawned to finish.
struct FinishAlone<F: Future<Output = Result<Delivered, ProduceError>> + Send + 'static>(
    Option<std::pin::Pin<Box<F>>>,
);

impl<F: Future<Output = Result<Delivered, ProduceError>> + Send + 'static> FinishAlone<F> {
    async fn within(mut self, deadline: Duration) -> Result<Delivered, ProduceError> {
        let Some(delivery) = self.0.as_mut() else {
            // Built with the delivery in it; only this takes it out.
            return Err(ProduceError::Failed(KafkaError::Canceled));
        };
        let contained = std::future::poll_fn(|cx| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| delivery.as_mut().poll(cx)))
                .unwrap_or_else(|panic| {
                    tracing::error!(
                        error = crate::panic_message(&*panic),
                        "a delivery panicked: reported as failed"
                    );
                    std::task::Poll::Ready(Err(ProduceError::Failed(KafkaError::Canceled)))
                })
        });
        let result = tokio::time::timeout(deadline, contained).await;
        match result {
            Ok(result) => {
                self.0 = None; // finished (or panicked): nothing to spawn
                result
            }
            Err(_) => Err(ProduceError::Deadline(deadline)),
        }
    }
}

impl<F: Future<Output = Result<Delivered, ProduceError>> + Send + 'static> Drop for FinishAlone<F> {
    fn drop(&mut self) {
        if let Some(delivery) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(delivery);
        }
    }
}

/// A producer that replaces itself when it is wedged.
///
/// After a record times out inside librdkafka (a broker outage longer than
/// `message.timeout.ms`), an idempotent producer must bump its epoch before it can send again.
/// If that fails it stays stuck: fenced (a fatal error), or waiting forever for a producer id.
/// Only a new producer instance cures that, so one is made when the current one:
/// - reports a fatal error or a producer-state error, or
/// - has delivered nothing for [`RecoveringProducer::stall_limit`] (twice
///   `message.timeout.ms`) while records kept failing.
///
/// Replacing is safe for at-least-once delivery: records still queued in the old instance fail,
/// and their requests were (or will be) answered 503. Replacements are at least
/// [`MIN_REPLACEMENT_INTERVAL`] apart. Without this, recovering from a long outage could need
/// a process restart (observed against tansu 0.6, whose epoch bump is not implemented).
pub struct RecoveringProducer<C: ClientContext + 'static> {
    settings: KafkaSettings,
    make_context: Box<dyn Fn() -> C + Send + Sync>,
    current: RwLock<(u64, FutureProducer<C>)>,
    last_success: std::sync::Mutex<std::time::Instant>,
    last_replacement: std::sync::Mutex<Option<std::time::Instant>>,
}

/// Shortest time between two producer replacements.
pub const MIN_REPLACEMENT_INTERVAL: Duration = Duration::from_secs(1);

impl<C: ClientContext + 'static> std::fmt::Debug for RecoveringProducer<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecoveringProducer")
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl<C: ClientContext + 'static> RecoveringProducer<C> {
    /// Creates the first producer; `make_context` makes the context of each instance.
    pub fn new(
        settings: &KafkaSettings,
        make_context: impl Fn() -> C + Send + Sync + 'static,
    ) -> Result<Self, KafkaError> {
        let producer = create_producer(settings, make_context())?;
        Ok(Self {
            settings: settings.clone(),
            make_context: Box::new(make_context),
            current: RwLock::new((0, producer)),
            last_success: std::sync::Mutex::new(std::time::Instant::now()),
            last_replacement: std::sync::Mutex::new(None),
        })
    }

    /// How long a producer may fail every record before it is replaced.
    pub fn stall_limit(&self) -> Duration {
        (self.settings.message_timeout() * 2).max(MIN_REPLACEMENT_INTERVAL)
    }

    /// How many times the producer was replaced.
    pub fn generation(&self) -> u64 {
        self.read().0
    }

    /// The current producer instance.
    pub fn producer(&self) -> FutureProducer<C> {
        self.read().1.clone()
    }

    /// Whether the cluster answers a metadata request within `timeout` (readiness probes).
    /// The request blocks, so it runs off the async runtime.
    pub async fn reachable(&self, timeout: Duration) -> bool {
        let producer = self.producer();
        tokio::task::spawn_blocking(move || {
            use rdkafka::producer::Producer;
            producer.client().fetch_metadata(None, timeout).is_ok()
        })
        .await
        .unwrap_or(false)
    }

    /// Starts delivering `record` through the current instance. The returned future owns
    /// everything it needs (spawn it to let the delivery outlive the caller); when it ends in
    /// failure and the instance looks wedged, the instance is replaced.
    pub fn send(
        self: &Arc<Self>,
        topic: &str,
        record: &Record,
    ) -> impl Future<Output = Result<Delivered, ProduceError>> + Send + 'static {
        let (generation, producer) = self.read().clone();
        let enqueued = enqueue(&producer, topic, record);
        let this = Arc::clone(self);
        async move {
            let result = match enqueued {
                Ok(delivery) => delivered(delivery).await,
                Err(error) => Err(error),
            };
            this.observe(generation, &producer, &result);
            result
        }
    }

    /// [`RecoveringProducer::send`], waiting at most `deadline` (the delivery goes on).
    pub async fn produce(
        self: &Arc<Self>,
        topic: &str,
        record: &Record,
        deadline: Duration,
    ) -> Result<Delivered, ProduceError> {
        within_deadline(self.send(topic, record), deadline).await
    }

    fn observe(
        &self,
        generation: u64,
        producer: &FutureProducer<C>,
        result: &Result<Delivered, ProduceError>,
    ) {
        let Err(error) = result else {
            *lock(&self.last_success) = std::time::Instant::now();
            return;
        };
        let fatal = producer
            .client()
            .fatal_error()
            .map(|(code, _)| code)
            .or(match error {
                ProduceError::Failed(e) => e.rdkafka_error_code().filter(|code| {
                    matches!(
                        code,
                        RDKafkaErrorCode::ProducerFenced
                            | RDKafkaErrorCode::InvalidProducerEpoch
                            | RDKafkaErrorCode::UnknownProducerId
                            | RDKafkaErrorCode::OutOfOrderSequenceNumber
                            | RDKafkaErrorCode::Fatal
                            // The broker lost track of this producer's state (seen after
                            // an epoch bump against tansu); a new producer id is the reset.
                            | RDKafkaErrorCode::Unknown
                    )
                }),
                _ => None,
            });
        if let Some(code) = fatal {
            self.replace(generation, &code.to_string());
        } else if lock(&self.last_success).elapsed() > self.stall_limit() {
            self.replace(generation, "no delivery within the stall limit");
        }
    }

    /// Replaces the current instance now (at most once per [`MIN_REPLACEMENT_INTERVAL`]),
    /// for a caller that knows it is wedged though no delivery has failed yet.
    pub fn renew(&self, reason: &str) {
        self.replace(self.generation(), reason);
    }

    fn replace(&self, generation: u64, reason: &str) {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if current.0 != generation {
            return; // another caller already replaced it
        }
        let mut last = lock(&self.last_replacement);
        if last.is_some_and(|at| at.elapsed() < MIN_REPLACEMENT_INTERVAL) {
            return;
        }
        *last = Some(std::time::Instant::now());
        // The new instance gets a full stall limit to prove itself.
        *lock(&self.last_success) = std::time::Instant::now();
        match create_producer(&self.settings, (self.make_context)()) {
            Ok(producer) => {
                *current = (generation + 1, producer);
                tracing::error!(
                    reason,
                    generation = generation + 1,
                    "producer wedged: replaced"
                );
            }
            Err(error) => tracing::error!(
                reason,
                error = &error as &dyn std::error::Error,
                "producer wedged and a new one could not be created"
            ),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, (u64, FutureProducer<C>)> {
        self.current.read().unwrap_or_else(PoisonError::into_inner)
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded values are plain timestamps: a panic cannot leave them half-written.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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
/// The broker's metadata says which exist, so topics already there need no create permission
/// (and brokers that log a refused duplicate create as an error are not asked).
pub async fn ensure_topics(
    settings: &KafkaSettings,
    topics: &[&str],
    timeout: Duration,
) -> Result<(), ProvisionError> {
    let admin: Arc<AdminClient<DefaultClientContext>> =
        Arc::new(client_config(settings).create().map_err(redacted)?);
    let existing: std::collections::HashSet<String> = {
        let admin = admin.clone();
        tokio::task::spawn_blocking(move || {
            admin.inner().fetch_metadata(None, timeout).map(|metadata| {
                metadata
                    .topics()
                    .iter()
                    .filter(|topic| topic.error().is_none())
                    .map(|topic| topic.name().to_owned())
                    .collect()
            })
        })
        .await
        .map_err(|_| KafkaError::Canceled)??
    };
    let provision = &settings.provision;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .filter(|name| !existing.contains(**name))
        .map(|name| {
            NewTopic::new(
                name,
                provision.partitions,
                TopicReplication::Fixed(provision.replication_factor),
            )
        })
        .collect();
    if new_topics.is_empty() {
        return Ok(());
    }
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

#[cfg(test)]
mod reason_tests {
    use std::time::Duration;

    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaErrorCode;

    use super::ProduceError;

    #[test]
    fn every_reason_is_listed() {
        let error = || KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        let all = [
            ProduceError::Deadline(Duration::ZERO),
            ProduceError::TimedOut,
            ProduceError::QueueFull,
            ProduceError::TooLarge(error()),
            ProduceError::Unauthorized(error()),
            ProduceError::Failed(error()),
        ];
        let reasons: Vec<&str> = all.iter().map(ProduceError::reason).collect();
        assert_eq!(reasons, ProduceError::REASONS);
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
