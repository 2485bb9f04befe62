//! Where accepted records go: the Kafka producer, with its health feeding readiness.
//!
//! The routes do not call it directly: they hand records to the [`crate::outbox`], which
//! produces through this or spools first, depending on `spool.mode`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::statistics::Statistics;
use tracing::{info, warn};
use voicehub_model::record::Record;
use voicehub_runtime::failure_log::FailureLog;
use voicehub_runtime::kafka::{self, Delivered, ProduceError, RecoveringProducer};
use voicehub_runtime::readiness::Readiness;
use voicehub_runtime::settings::KafkaSettings;

use crate::metrics::IngressMetrics;

/// The readiness check fed by broker health.
pub const BROKER_CHECK: &str = "broker";

/// How long deliveries (and probes) must have failed, with none succeeding, before the broker
/// counts as unhealthy. A success makes it healthy at once. Against one broker of a cluster
/// failing, some deliveries fail while others (partitions led elsewhere) succeed: without
/// this, readiness followed each answer and changed state dozens of times a second.
pub const UNHEALTHY_AFTER: Duration = Duration::from_secs(5);

/// Feeds librdkafka's statistics into the metrics.
#[derive(Debug)]
pub struct ProducerStats {
    metrics: IngressMetrics,
}

impl ClientContext for ProducerStats {
    fn stats(&self, statistics: Statistics) {
        self.metrics
            .producer_queue
            .set(i64::try_from(statistics.msg_cnt).unwrap_or(i64::MAX));
    }
}

/// Produces records and tracks broker health. Clones share one producer.
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

struct Inner {
    producer: Arc<RecoveringProducer<ProducerStats>>,
    deadline: Duration,
    /// Broker health gates readiness only without a spool (with one, the spool does).
    readiness: Option<Readiness>,
    healthy: AtomicBool,
    /// Held while `healthy` and what follows it change.
    transition: std::sync::Mutex<()>,
    /// When the last delivery or probe succeeded, in milliseconds since `epoch`.
    last_success_ms: AtomicU64,
    epoch: Instant,
    metrics: IngressMetrics,
    failures: FailureLog,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("deadline", &self.inner.deadline)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Creates the producer (no connection is made yet). With `readiness`, broker health is
    /// one of its checks.
    pub fn new(
        settings: &KafkaSettings,
        deadline: Duration,
        readiness: Option<Readiness>,
        metrics: IngressMetrics,
    ) -> Result<Self, rdkafka::error::KafkaError> {
        if let Some(readiness) = &readiness {
            readiness.register(BROKER_CHECK);
        }
        let stats_metrics = metrics.clone();
        let producer = RecoveringProducer::new(settings, move || ProducerStats {
            metrics: stats_metrics.clone(),
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                producer: Arc::new(producer),
                deadline,
                readiness,
                healthy: AtomicBool::new(false),
                transition: std::sync::Mutex::new(()),
                last_success_ms: AtomicU64::new(0),
                epoch: Instant::now(),
                metrics,
                failures: FailureLog::default(),
            }),
        })
    }

    /// Starts delivering `record` and waits for the acknowledgement at most the produce
    /// deadline. The delivery goes on past the deadline (until `message.timeout.ms`), and
    /// `on_outcome(delivered)` runs when it ends either way.
    pub async fn publish(
        &self,
        topic: &str,
        record: &Record,
        on_outcome: impl FnOnce(bool) + Send + 'static,
    ) -> Result<Delivered, ProduceError> {
        self.publish_within(topic, record, self.inner.deadline, on_outcome)
            .await
    }

    /// [`Publisher::publish`] with another deadline.
    pub async fn publish_within(
        &self,
        topic: &str,
        record: &Record,
        deadline: Duration,
        on_outcome: impl FnOnce(bool) + Send + 'static,
    ) -> Result<Delivered, ProduceError> {
        let delivery = self.deliver(topic, record);
        let delivery = async move {
            let result = delivery.await;
            on_outcome(result.is_ok());
            result
        };
        match kafka::within_deadline(delivery, deadline).await {
            Err(error @ ProduceError::Deadline(_)) => {
                self.inner
                    .metrics
                    .produce_errors
                    .with_label_values(&[error.reason()])
                    .inc();
                self.failed();
                Err(error)
            }
            result => result,
        }
    }

    /// Starts delivering `record` now; the future resolves with the broker's answer (or
    /// `message.timeout.ms` later), counting it in the metrics and in broker health.
    pub fn deliver(
        &self,
        topic: &str,
        record: &Record,
    ) -> impl Future<Output = Result<Delivered, ProduceError>> + Send + 'static {
        let started = Instant::now();
        let delivery = self.inner.producer.send(topic, record);
        let this = self.clone();
        let topic = topic.to_owned();
        async move {
            let generation = this.inner.producer.generation();
            let result = delivery.await;
            let replaced = this.inner.producer.generation().saturating_sub(generation);
            this.inner.metrics.producer_replacements.inc_by(replaced);
            match &result {
                Ok(_) => {
                    this.inner
                        .metrics
                        .produce_duration
                        .observe(started.elapsed().as_secs_f64());
                    this.succeeded();
                }
                Err(error) => {
                    this.inner
                        .metrics
                        .produce_errors
                        .with_label_values(&[error.reason()])
                        .inc();
                    this.inner.failures.produce_failed(&topic, error);
                    // A refused principal reached the broker: its cause is in the log line
                    // above, and it is no outage.
                    if error.is_transient() && !matches!(error, ProduceError::Unauthorized(_)) {
                        this.failed();
                    }
                }
            }
            result
        }
    }

    /// The produce deadline.
    pub fn deadline(&self) -> Duration {
        self.inner.deadline
    }

    /// Asks the broker for metadata; healthy if it answers within `timeout`.
    pub async fn probe(&self, timeout: Duration) {
        if self.inner.producer.reachable(timeout).await {
            self.succeeded();
        } else {
            self.failed();
        }
    }

    /// Sends what is queued, waiting at most `timeout`.
    pub async fn flush(&self, timeout: Duration) -> Result<(), rdkafka::error::KafkaError> {
        let producer = self.inner.producer.producer();
        tokio::task::spawn_blocking(move || {
            use rdkafka::producer::Producer;
            producer.flush(timeout)
        })
        .await
        .unwrap_or(Err(rdkafka::error::KafkaError::Canceled))
    }

    fn succeeded(&self) {
        let now = u64::try_from(self.inner.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.inner.last_success_ms.fetch_max(now, Ordering::AcqRel);
        // The flag is only read here (a delivery's hot path); changes go through the lock.
        if !self.inner.healthy.load(Ordering::Acquire) {
            self.change_broker_health(true);
        }
    }

    /// A failure: unhealthy once nothing has succeeded for [`UNHEALTHY_AFTER`].
    fn failed(&self) {
        if self.inner.healthy.load(Ordering::Acquire) && self.no_success_for_limit() {
            self.change_broker_health(false);
        }
    }

    fn no_success_for_limit(&self) -> bool {
        let last = Duration::from_millis(self.inner.last_success_ms.load(Ordering::Acquire));
        self.inner.epoch.elapsed().saturating_sub(last) >= UNHEALTHY_AFTER
    }

    /// Flips broker health, its metric and its readiness check together, under one lock, so
    /// that concurrent deliveries cannot leave the flag and readiness disagreeing (a later
    /// success would then never set readiness again). Checked again under the lock: a success
    /// that came meanwhile wins over a failure.
    fn change_broker_health(&self, healthy: bool) {
        let _transition = self
            .inner
            .transition
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.inner.healthy.load(Ordering::Acquire) == healthy
            || (!healthy && !self.no_success_for_limit())
        {
            return;
        }
        self.inner.metrics.broker_reachable.set(i64::from(healthy));
        if let Some(readiness) = &self.inner.readiness {
            readiness.set(BROKER_CHECK, healthy);
        }
        self.inner.healthy.store(healthy, Ordering::Release);
        if healthy {
            info!(check = BROKER_CHECK, "broker reachable");
        } else {
            warn!(check = BROKER_CHECK, "broker unreachable");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publisher(readiness: &Readiness) -> Publisher {
        let registry = prometheus::Registry::new();
        let metrics = IngressMetrics::register(&registry).unwrap();
        // No connection is made: health is fed by hand below.
        Publisher::new(
            &KafkaSettings::default(),
            Duration::from_secs(1),
            Some(readiness.clone()),
            metrics,
        )
        .unwrap()
    }

    #[test]
    fn failures_between_successes_leave_readiness_alone() {
        let readiness = Readiness::new();
        let publisher = publisher(&readiness);
        assert_eq!(
            readiness.failing(),
            [BROKER_CHECK],
            "unready before any success"
        );
        publisher.succeeded();
        assert!(readiness.is_ready());
        // One broker of three gone: its partitions' deliveries fail, the others' succeed.
        for _ in 0..50 {
            publisher.failed();
            assert!(readiness.is_ready());
            publisher.succeeded();
        }
        assert!(readiness.is_ready());
    }

    #[test]
    fn failures_with_no_success_for_the_limit_make_it_unready_and_one_success_ready() {
        let readiness = Readiness::new();
        let publisher = publisher(&readiness);
        publisher.succeeded();
        // The last success at the start: wait until that is UNHEALTHY_AFTER ago.
        publisher.inner.last_success_ms.store(0, Ordering::Release);
        std::thread::sleep(UNHEALTHY_AFTER.saturating_sub(publisher.inner.epoch.elapsed()));
        publisher.failed();
        assert_eq!(readiness.failing(), [BROKER_CHECK]);
        publisher.succeeded();
        assert!(readiness.is_ready());
    }
}
