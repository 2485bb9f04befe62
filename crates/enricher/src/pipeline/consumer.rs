//! The input consumer: its context (statistics into the metrics, revocations to the loop,
//! commit failures counted) and its ownership (closed on a thread of its own).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, TopicPartitionList};
use tracing::{debug, info, warn};

use crate::consumer_watch::BrokerWatch;
use crate::metrics::EnricherMetrics;

/// The consumer's callbacks: statistics and commit failures into the metrics, and a note to
/// the loop when partitions are revoked.
#[derive(Debug)]
pub struct InputContext {
    pub metrics: EnricherMetrics,
    /// The input topic.
    pub topic: String,
    /// Revoked partitions, for the loop to forget, each with the number of its revocation.
    pub revoked: tokio::sync::mpsc::UnboundedSender<(i32, u64)>,
    /// Revocations so far. A record received after revocation `n` carries `n`: the loop
    /// forgets only the records of a revoked partition received before its revocation, not
    /// those of the same partition assigned again since.
    pub revocations: AtomicU64,
    /// Whether the consumer still knows a broker.
    pub brokers: Arc<BrokerWatch>,
    /// Assignments with partitions of the input topic so far (a sign the cluster lets the
    /// consumer use its group and topic).
    pub assignments: AtomicU64,
}

impl ClientContext for InputContext {
    fn stats(&self, statistics: Statistics) {
        self.brokers.observe(&statistics);
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        // librdkafka lists every partition of the topic; only those being fetched are ours
        // (fetch_state "none", "stopping" or "stopped": not assigned here, or no longer).
        self.metrics
            .set_consumer_lag(topic.partitions.iter().filter(|(id, _)| **id >= 0).map(
                |(id, partition)| {
                    let fetched = !matches!(
                        partition.fetch_state.as_str(),
                        "none" | "stopping" | "stopped"
                    );
                    // librdkafka reports -1 until the group has committed on the partition (a
                    // new group, new partitions, expired offsets): then all of it is waiting.
                    let lag = if partition.consumer_lag < 0
                        && partition.committed_offset < 0
                        && partition.hi_offset >= 0
                    {
                        partition.hi_offset - partition.lo_offset.max(0)
                    } else {
                        partition.consumer_lag
                    };
                    (*id, fetched, lag)
                },
            ));
    }
}

impl ConsumerContext for InputContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            // librdkafka commits the offsets stored so far (what finished) as part of the
            // unassignment (auto commit is on); records in flight are processed again by the
            // next owner. No commit here: a synchronous one blocks for as long as the
            // coordinator is unreachable.
            let revocation = self.revocations.fetch_add(1, Ordering::SeqCst) + 1;
            for element in partitions.elements_for_topic(&self.topic) {
                let _ = self.revoked.send((element.partition(), revocation));
                self.metrics.forget_partition(element.partition());
                self.metrics
                    .partition_revocations
                    .with_label_values(&[&element.partition().to_string()])
                    .inc();
            }
            info!(partitions = partitions.count(), "partitions revoked");
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            if !partitions.elements_for_topic(&self.topic).is_empty() {
                self.assignments.fetch_add(1, Ordering::SeqCst);
            }
            // librdkafka keeps a partition's pause flag across a revoke and re-assign; a loop
            // that is still paused pauses again on the first record it receives.
            if let Err(error) = consumer.resume(partitions) {
                debug!(%error, "resume after assignment failed");
            }
            info!(partitions = partitions.count(), "partitions assigned");
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        match result {
            Ok(()) => {}
            // Nothing new to commit.
            Err(e)
                if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::NoOffset) => {}
            Err(error) => {
                self.metrics.commit_errors.inc();
                warn!(
                    error = &error as &dyn std::error::Error,
                    "offset commit failed"
                );
            }
        }
    }
}

/// The consumer, type-named once.
pub type InputConsumer = StreamConsumer<InputContext>;

/// How long a clean shutdown waits for the consumer to leave its group.
pub(super) const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The input consumer, closed on a thread of its own. Closing leaves the group and waits for
/// the broker, which can take long (or, with the broker gone, not end), so it never runs on
/// the async runtime's threads: [`Self::close`] waits for it within a bound, and a plain drop
/// (the task aborted) leaves it to finish in the background.
pub struct OwnedConsumer(Option<InputConsumer>);

impl OwnedConsumer {
    /// Wraps a subscribed consumer.
    pub fn new(consumer: InputConsumer) -> Self {
        Self(Some(consumer))
    }

    /// Closes the consumer; false if that did not finish within `within`.
    pub(super) async fn close(&mut self, within: Duration) -> bool {
        let (done, closed) = tokio::sync::oneshot::channel();
        if let Some(consumer) = self.0.take() {
            std::thread::spawn(move || {
                drop(consumer);
                let _ = done.send(());
            });
        }
        matches!(tokio::time::timeout(within, closed).await, Ok(Ok(())))
    }
}

impl std::fmt::Debug for OwnedConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedConsumer")
            .field("open", &self.0.is_some())
            .finish()
    }
}

impl std::ops::Deref for OwnedConsumer {
    type Target = InputConsumer;

    fn deref(&self) -> &InputConsumer {
        // Only `close` and `drop` take it; after `close` the pipeline runs again only once
        // `replace_consumer` has given it a new one.
        self.0
            .as_ref()
            .unwrap_or_else(|| unreachable!("consumer used after close"))
    }
}

impl Drop for OwnedConsumer {
    fn drop(&mut self) {
        if let Some(consumer) = self.0.take() {
            std::thread::spawn(move || drop(consumer));
        }
    }
}
