//! The producer that replaces itself when librdkafka leaves it wedged.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, Producer};
use voicehub_model::record::Record;

use super::config::create_producer;
use super::delivery::{Delivered, ProduceError, delivered, enqueue, within_deadline};
use crate::settings::KafkaSettings;

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
