//! The loop: takes records in from the consumer (pausing it while the backlog is full),
//! starts a worker task per record within the in-flight bound, and stores the offsets of
//! the finished prefix of each partition for commit.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use super::consumer::{CLOSE_TIMEOUT, OwnedConsumer};
use super::input::{Backlog, Input};
use super::worker::Worker;
use super::{Outcome, stopped};
use crate::consumer_watch::WEDGE_LIMIT;
use crate::tracker::{Continuity, OffsetTracker, Received};

/// Why [`Pipeline::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Shutdown: drained and closed.
    Stopped,
    /// The consumer knew no broker for [`WEDGE_LIMIT`]: drained and closed (as far as a
    /// consumer without brokers can be); give the pipeline a new one
    /// ([`Pipeline::replace_consumer`]) and run it again.
    Wedged,
}

/// The loop.
pub struct Pipeline {
    /// Subscribed consumer.
    pub consumer: OwnedConsumer,
    /// The input topic.
    pub topic: String,
    /// Shared by the tasks.
    pub worker: Arc<Worker>,
    /// Records in flight at most.
    pub max_in_flight: usize,
    /// Received records waiting for a slot, in bytes, before fetching pauses.
    pub max_backlog_bytes: usize,
    /// Records of one partition started and not yet committable (in flight, or finished
    /// behind one in flight) at most: what a rebalance makes the next owner redo.
    pub max_uncommitted_per_partition: usize,
    /// Bound on finishing in-flight records at shutdown.
    pub drain_timeout: Duration,
    /// Partitions revoked by rebalances (from [`InputContext`]).
    pub revoked: tokio::sync::mpsc::UnboundedReceiver<(i32, u64)>,
    /// The consumer group (for what is logged).
    pub group: String,
    /// Fails [`GROUP_CHECK`] while the cluster refuses the consumer.
    pub readiness: voicehub_runtime::readiness::Readiness,
    /// Set while the cluster refuses the consumer: the consumer's assignment count then.
    pub refused_at_assignment: Option<u64>,
}

/// The readiness check that fails while the cluster refuses the consumer its group or topic.
pub const GROUP_CHECK: &str = "consumer_authorized";

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("topic", &self.topic)
            .field("max_in_flight", &self.max_in_flight)
            .field("max_backlog_bytes", &self.max_backlog_bytes)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Runs until `stop` turns true, then finishes or abandons in-flight records within the
    /// drain timeout and commits what finished.
    ///
    /// # Flow control
    ///
    /// The loop always polls, so rebalances are served and the consumer stays within
    /// `max.poll.interval.ms` however long records take. Received records wait in a local
    /// backlog until one of the `max_in_flight` slots is free. When the backlog holds
    /// `max_backlog_bytes`, the partitions are paused; they resume once it has drained to half.
    /// The hysteresis matters: a pause discards librdkafka's prefetched records (they are
    /// fetched again on resume), and pausing at every crossing of a single bound refetched the
    /// same records over and over; against a broker slow to answer fetches, consumption
    /// stopped altogether.
    ///
    /// A partition with `max_uncommitted_per_partition` records started and not committable
    /// (a slow record holds back its partition's commit) starts no more until its oldest
    /// finishes; the other partitions go on (until its waiting records fill the backlog to the
    /// pause). That bounds what a rebalance redoes.
    pub async fn run(&mut self, mut stop: watch::Receiver<bool>) -> Ended {
        let mut ended = Ended::Stopped;
        // A new consumer (after a wedge) starts unpaused.
        self.worker.metrics.fetching_paused.set(0);
        let mut wedge_check = tokio::time::interval(Duration::from_secs(1));
        wedge_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tracker = OffsetTracker::default();
        let mut positions = Received::default();
        let mut tasks = tokio::task::JoinSet::new();
        let mut backlog = Backlog::default();
        let task_stop = stop.clone();
        let mut paused = false;
        loop {
            // Records start only below this point, so the tracker holds none received after
            // a revocation it has not yet seen.
            forget_revoked(
                &mut self.revoked,
                &mut tracker,
                &mut positions,
                &mut backlog,
            );
            while tasks.len() < self.max_in_flight {
                let limit = self.max_uncommitted_per_partition;
                let Some(input) = backlog.pop(|partition| tracker.uncommitted(partition) < limit)
                else {
                    break;
                };
                tracker.started(input.partition, input.offset);
                if tracker.uncommitted(input.partition) == limit {
                    self.worker.metrics.uncommitted_limit_reached.inc();
                }
                self.worker.metrics.in_flight.inc();
                // Boxed here: the record's future is large, and the task would move it by value
                // at spawn, completion and join.
                tasks.spawn(Box::pin(
                    self.worker.clone().process(input, task_stop.clone()),
                ));
            }
            self.worker
                .metrics
                .backlog_bytes
                .set(i64::try_from(backlog.bytes).unwrap_or(i64::MAX));
            if !paused && backlog.bytes >= self.max_backlog_bytes {
                self.set_paused(&mut paused, true);
            } else if paused && backlog.bytes <= self.max_backlog_bytes / 2 {
                self.set_paused(&mut paused, false);
            }
            let mut received_a_record = false;
            tokio::select! {
                biased;
                () = stopped(&mut stop) => break,
                _ = wedge_check.tick() => {
                    // librdkafka reports a refusal once, not at every retry: only a sign of
                    // success (an assignment since, or a record) ends it.
                    if self.refused_at_assignment.is_some_and(|at| {
                        self.consumer.context().assignments.load(Ordering::SeqCst) > at
                    }) {
                        self.allowed_again();
                    }
                    if self.consumer.context().brokers.is_wedged() {
                        error!(
                            after = ?WEDGE_LIMIT,
                            "the input consumer knows no broker any more (librdkafka lost its \
                             broker list): replacing it and the producer"
                        );
                        // In-flight records finish through a new producer while this one drains.
                        self.worker.producer.renew("the consumer beside it lost every broker");
                        ended = Ended::Wedged;
                        break;
                    }
                }
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    self.finish(joined, &mut tracker);
                }
                received = self.consumer.recv() => {
                    match received {
                        Ok(message) => {
                            // Rebalance callbacks run inside `recv`, so the count already
                            // includes any revocation that preceded this record.
                            let generation =
                                self.consumer.context().revocations.load(Ordering::SeqCst);
                            // A partition revoked and assigned again inside this `recv` starts
                            // afresh before its first record is looked at.
                            forget_revoked(&mut self.revoked, &mut tracker, &mut positions, &mut backlog);
                            let (partition, offset) = (message.partition(), message.offset());
                            match positions.observe(partition, offset) {
                                Continuity::Next => {}
                                Continuity::Gap(skipped) => {
                                    self.worker.metrics.input_offset_gaps.inc_by(skipped);
                                    warn!(
                                        partition,
                                        offset,
                                        skipped,
                                        "input offsets skipped: the records between were \
                                         never received (normal only on a compacted or \
                                         transactional topic)"
                                    );
                                }
                                Continuity::Again => {
                                    // Processed again, not dropped: a duplicate with the same
                                    // ce_id costs less than a record wrongly taken for one.
                                    self.worker.metrics.redelivered.inc();
                                    warn!(partition, offset, "input received again");
                                }
                            }
                            received_a_record = true;
                            backlog.push(Input::from_message(&message, generation));
                            if paused {
                                // From a partition assigned since the pause.
                                paused = false;
                                self.set_paused(&mut paused, true);
                            }
                        }
                        Err(error) => {
                            self.consume_failed(&error);
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            }
            if received_a_record {
                self.allowed_again();
            }
        }

        info!(in_flight = tasks.len(), drain_timeout = ?self.drain_timeout, "draining");
        let deadline = tokio::time::Instant::now() + self.drain_timeout;
        while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, tasks.join_next()).await {
            self.finish(joined, &mut tracker);
        }
        if !tasks.is_empty() {
            warn!(
                abandoned = tasks.len(),
                "abandoning in-flight records (not committed)"
            );
            self.worker
                .metrics
                .in_flight
                .sub(i64::try_from(tasks.len()).unwrap_or(i64::MAX));
            tasks.abort_all();
        }
        // Closing commits the offsets stored so far (auto commit is on), on a thread of its
        // own and within a bound: with the broker unreachable it would wait indefinitely.
        if !self.consumer.close(CLOSE_TIMEOUT).await {
            warn!(
                timeout = ?CLOSE_TIMEOUT,
                "consumer did not close in time (broker unreachable?): the last offsets may be \
                 uncommitted and its partitions move after the session timeout"
            );
        }
        ended
    }

    /// Logs a consume error (once a minute per cause); a refused group or topic also fails
    /// readiness until the consumer is assigned partitions or receives a record.
    fn consume_failed(&mut self, error: &KafkaError) {
        let code = error.rdkafka_error_code();
        let cause = voicehub_runtime::failure_log::error_code(Some(error));
        let denied = code.is_some_and(voicehub_runtime::kafka::is_unauthorized);
        if denied && self.refused_at_assignment.is_none() {
            self.refused_at_assignment =
                Some(self.consumer.context().assignments.load(Ordering::SeqCst));
            self.readiness.set(GROUP_CHECK, false);
            self.worker.metrics.consumer_refused.set(1);
        }
        let Some(unlogged) = self
            .worker
            .failures
            .admit(&self.topic, cause.as_deref().unwrap_or("consume"))
        else {
            return;
        };
        let error_code = cause.as_deref().unwrap_or("none");
        if denied {
            error!(
                group = %self.group,
                topic = %self.topic,
                error_code,
                unlogged,
                error = error as &dyn std::error::Error,
                "the consumer is refused: grant this principal Read on the group and the topic \
                 (docs/operations.md, Kafka permissions); not ready"
            );
        } else {
            warn!(
                topic = %self.topic,
                error_code,
                unlogged,
                error = error as &dyn std::error::Error,
                "consume failed"
            );
        }
    }

    /// Ends a refusal: the consumer was assigned partitions or received a record since.
    fn allowed_again(&mut self) {
        if self.refused_at_assignment.take().is_some() {
            self.readiness.set(GROUP_CHECK, true);
            self.worker.metrics.consumer_refused.set(0);
            info!(group = %self.group, check = GROUP_CHECK, "the consumer is allowed again");
        }
    }

    /// A new consumer after [`Ended::Wedged`], with the receiver of its revocations.
    pub fn replace_consumer(
        &mut self,
        consumer: OwnedConsumer,
        revoked: tokio::sync::mpsc::UnboundedReceiver<(i32, u64)>,
    ) {
        self.consumer = consumer;
        self.revoked = revoked;
        // A refusal goes on until the new consumer, counting from 0, is assigned something.
        if self.refused_at_assignment.is_some() {
            self.refused_at_assignment = Some(0);
        }
    }

    /// Pauses (or resumes) fetching on the current assignment.
    fn set_paused(&self, paused: &mut bool, want: bool) {
        if *paused == want {
            return;
        }
        *paused = want;
        self.worker.metrics.fetching_paused.set(i64::from(want));
        if want {
            self.worker.metrics.fetch_pauses.inc();
        }
        let result = self.consumer.assignment().and_then(|assignment| {
            if want {
                self.consumer.pause(&assignment)
            } else {
                self.consumer.resume(&assignment)
            }
        });
        if let Err(error) = result {
            debug!(paused = want, %error, "pause/resume failed");
        }
    }

    fn finish(
        &self,
        joined: Result<(i32, i64, Outcome), tokio::task::JoinError>,
        tracker: &mut OffsetTracker,
    ) {
        self.worker.metrics.in_flight.dec();
        let (partition, offset, outcome) = match joined {
            Ok(done) => done,
            Err(error) => {
                // Its offset never completes: the partition's commits stop here and the lag
                // metric shows it; the record is processed again after a restart.
                error!(
                    error = &error as &dyn std::error::Error,
                    "record task failed"
                );
                return;
            }
        };
        if outcome == Outcome::Abandoned {
            return;
        }
        if let Some(last) = tracker.finished(partition, offset) {
            // Fails when the partition was revoked meanwhile; its new owner reprocesses.
            if let Err(error) = self.consumer.store_offset(&self.topic, partition, last) {
                debug!(partition, offset = last, %error, "offset not stored");
            }
        }
    }
}

/// Forgets what the partitions revoked since the last call had received and not started.
fn forget_revoked(
    revoked: &mut tokio::sync::mpsc::UnboundedReceiver<(i32, u64)>,
    tracker: &mut OffsetTracker,
    positions: &mut Received,
    backlog: &mut Backlog,
) {
    while let Ok((partition, revocation)) = revoked.try_recv() {
        tracker.forget(partition);
        positions.forget(partition);
        backlog.forget(partition, revocation);
    }
}
