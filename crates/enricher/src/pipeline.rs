//! The consume → fetch → produce → commit loop.
//!
//! # Delivery semantics
//!
//! At least once. An input record's offset is stored for commit only after its output (the
//! enriched record, or a dead letter) is acknowledged by the broker, and only as part of the
//! contiguous finished prefix of its partition: a slow record holds back the commit, not the
//! processing of the records after it. Offsets are committed every
//! `consumer.commit_interval_ms`, before partitions are revoked, and at shutdown. A record in
//! flight when the process dies or its partition moves is processed again by the next owner;
//! its enriched record carries the same `ce_id` (derived from the source and the input
//! `eventId`), so consumers can deduplicate.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Headers, Message};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, TopicPartitionList};
use time::OffsetDateTime;
use tokio::sync::watch;
use tracing::{debug, error, info, warn};
use voicehub_model::enriched::AnalysisEnriched;
use voicehub_model::record::{DeadLetter, Provenance, Record, Stage, header};
use voicehub_model::{Timestamp, Topics, WebhookEvent, parse_webhook};
use voicehub_runtime::kafka::{ProduceError, RecoveringProducer};
use voicehub_runtime::{BRIDGE_VERSION, FaultHook};

use crate::consumer_watch::{BrokerWatch, WEDGE_LIMIT};
use crate::fetch::{self, Access, BodyBudget};
use crate::metrics::EnricherMetrics;
use crate::settings::{FetchSettings, RetrySettings};
use crate::tracker::{Continuity, OffsetTracker, Received};

const SOURCE_PREFIX: &str = "/voicehub/sources/";

/// The consumer's callbacks: statistics and commit failures into the metrics, and a note to
/// the loop when partitions are revoked.
#[derive(Debug)]
pub struct ConsumerStats {
    /// Metrics.
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

impl ClientContext for ConsumerStats {
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

impl ConsumerContext for ConsumerStats {
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
pub type InputConsumer = StreamConsumer<ConsumerStats>;

/// How long a clean shutdown waits for the consumer to leave its group.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

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
    async fn close(&mut self, within: Duration) -> bool {
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

/// What happened to one input record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Enriched,
    DeadLettered,
    /// Shutdown came first: not committed, processed again by the next owner.
    Abandoned,
}

/// An input record, owned.
#[derive(Debug)]
struct Input {
    /// Revocations seen when it was received (see [`ConsumerStats::revocations`]).
    generation: u64,
    partition: i32,
    offset: i64,
    key: Option<String>,
    headers: Vec<(String, String)>,
    payload: Vec<u8>,
}

impl Input {
    fn from_message<M: Message>(message: &M, generation: u64) -> Self {
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| {
                        let value = h.value.unwrap_or_default();
                        (
                            h.key.to_owned(),
                            String::from_utf8_lossy(value).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            generation,
            partition: message.partition(),
            offset: message.offset(),
            key: message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            headers,
            payload: message.payload().unwrap_or_default().to_vec(),
        }
    }

    /// Bytes held, roughly: payload, key and headers.
    fn size(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
        self.payload.len() + self.key.as_ref().map_or(0, String::len) + headers
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Received records waiting for a slot, oldest first, with their total size.
#[derive(Debug, Default)]
struct Backlog {
    records: VecDeque<Input>,
    bytes: usize,
}

impl Backlog {
    fn push(&mut self, input: Input) {
        self.bytes += input.size();
        self.records.push_back(input);
    }

    fn pop(&mut self) -> Option<Input> {
        let input = self.records.pop_front()?;
        self.bytes -= input.size();
        Some(input)
    }

    /// Drops the records a revoked partition had before revocation `revocation`: its next
    /// owner processes them.
    fn forget(&mut self, partition: i32, revocation: u64) {
        self.records
            .retain(|input| input.partition != partition || input.generation >= revocation);
        self.bytes = self.records.iter().map(Input::size).sum();
    }
}

/// Processes one record at a time, many at once: fetch, then produce.
#[derive(Debug)]
pub struct Worker {
    /// Output producer.
    pub producer: Arc<RecoveringProducer<rdkafka::client::DefaultClientContext>>,
    /// HTTP client for fetches.
    pub http: reqwest::Client,
    /// Allow-lists and keys by source name.
    pub sources: HashMap<String, Access>,
    /// Topic names.
    pub topics: Topics,
    /// Fetch bounds.
    pub fetch: FetchSettings,
    /// The analysis bodies all fetches may hold at once.
    pub body_budget: BodyBudget,
    /// Retry policy.
    pub retry: RetrySettings,
    /// How long one produce may wait for its acknowledgement before it is retried.
    pub produce_deadline: Duration,
    /// Metrics.
    pub metrics: EnricherMetrics,
    /// Produce failures logged once per cause and topic a minute.
    pub failures: voicehub_runtime::failure_log::FailureLog,
    /// Called with every parsed input before its fetch (fault-injection tests only).
    pub fault_hook: std::sync::OnceLock<FaultHook>,
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
    /// Bound on finishing in-flight records at shutdown.
    pub drain_timeout: Duration,
    /// Partitions revoked by rebalances (from [`ConsumerStats`]).
    pub revoked: tokio::sync::mpsc::UnboundedReceiver<(i32, u64)>,
    /// The consumer group (for what is logged).
    pub group: String,
    /// Fails [`GROUP_CHECK`] while the cluster refuses the consumer.
    pub readiness: voicehub_runtime::admin::Readiness,
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
                let Some(input) = backlog.pop() else {
                    break;
                };
                tracker.started(input.partition, input.offset);
                self.worker.metrics.in_flight.inc();
                tasks.spawn(self.worker.clone().process(input, task_stop.clone()));
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

enum Delivery {
    Done,
    TooLarge,
    Abandoned,
}

impl Worker {
    async fn process(
        self: Arc<Self>,
        input: Input,
        mut stop: watch::Receiver<bool>,
    ) -> (i32, i64, Outcome) {
        // A panic (a bug) must not leave the offset unfinished, which would stop the
        // partition's commits for good: the record is dead-lettered and its offset completes.
        let handled = AssertUnwindSafe(self.handle(&input, &mut stop))
            .catch_unwind()
            .await;
        let outcome = match handled {
            Ok(outcome) => outcome,
            Err(panic) => {
                let text = format!(
                    "the enricher failed on this record: {}",
                    voicehub_runtime::panic_message(&*panic)
                );
                error!(
                    partition = input.partition,
                    offset = input.offset,
                    error = %text,
                    "record task panicked; dead-lettering the record"
                );
                let source = source_name(&input);
                self.dead_letter(&input, source, "internal_error", &text, &mut stop)
                    .await
            }
        };
        match outcome {
            Outcome::Enriched => self.metrics.records.with_label_values(&["enriched"]).inc(),
            Outcome::DeadLettered => self
                .metrics
                .records
                .with_label_values(&["dead_lettered"])
                .inc(),
            Outcome::Abandoned => {}
        }
        (input.partition, input.offset, outcome)
    }

    async fn handle(&self, input: &Input, stop: &mut watch::Receiver<bool>) -> Outcome {
        let source_name = source_name(input);
        let Some((source, access)) = self.sources.get_key_value(source_name) else {
            let error = format!("no source `{source_name}` is configured in the enricher");
            return self
                .dead_letter(input, source_name, "unknown_source", &error, stop)
                .await;
        };
        let parsed = parse_webhook(&input.payload);
        if let Ok(event) = &parsed {
            FaultHook::call(&self.fault_hook, event);
        }
        let event = match parsed {
            Ok(WebhookEvent::AnalysisResultReady(event)) => event,
            Ok(other) => {
                let error = format!("expected AnalysisResultReady, got {}", other.event_type());
                return self
                    .dead_letter(input, source, "unexpected_record", &error, stop)
                    .await;
            }
            Err(error) => {
                return self
                    .dead_letter(input, source, "invalid_record", &error.to_string(), stop)
                    .await;
            }
        };

        let started = Instant::now();
        let mut attempt = 0;
        // The body's reservation is held until the enriched record is produced (end of scope).
        let (analysis, _reservation) = loop {
            attempt += 1;
            let attempt_started = Instant::now();
            let result = fetch::fetch(
                &self.http,
                &event.payload.analysis_result_url,
                access,
                self.fetch.max_body_bytes,
                &self.body_budget,
                Duration::from_millis(self.fetch.timeout_ms),
            )
            .await;
            let class = result.as_ref().map_or_else(|e| e.reason(), |_| "ok");
            self.metrics
                .fetch_duration
                .with_label_values(&[class])
                .observe(attempt_started.elapsed().as_secs_f64());
            self.metrics
                .fetch_attempts
                .with_label_values(&[class])
                .inc();
            let remaining = self.retry.budget().saturating_sub(started.elapsed());
            match result {
                Ok(fetched) => break fetched,
                // The backoff is cut to what is left of the budget (one last attempt at its
                // end); a server that asks for more than is left is not asked again.
                Err(error)
                    if error.is_retryable()
                        && !remaining.is_zero()
                        && error.retry_after().is_none_or(|after| after <= remaining) =>
                {
                    let wait = jittered(self.retry.backoff(attempt))
                        .max(error.retry_after().unwrap_or_default())
                        .min(remaining);
                    debug!(event_id = %event.event_id, attempt, ?wait, %error, "fetch failed; retrying");
                    if cancelled_within(stop, wait).await {
                        return Outcome::Abandoned;
                    }
                }
                Err(error) if error.is_retryable() => {
                    let text = format!(
                        "gave up after {attempt} attempts over {:?} (retry budget {:?}); last: \
                         {error}",
                        started.elapsed(),
                        self.retry.budget()
                    );
                    return self
                        .dead_letter(input, source, "retries_exhausted", &text, stop)
                        .await;
                }
                Err(error) => {
                    return self
                        .dead_letter(input, source, error.reason(), &error.to_string(), stop)
                        .await;
                }
            }
        };

        let received_at = received_at(input);
        let provenance = Provenance {
            source,
            received_at,
            bridge_version: BRIDGE_VERSION,
        };
        let enriched =
            AnalysisEnriched::new(&event, analysis, Timestamp::now()).to_record(&provenance);
        match self
            .deliver(&self.topics.analysis_enriched, &enriched, stop)
            .await
        {
            Delivery::Done => {
                let latency = OffsetDateTime::now_utc() - received_at.instant();
                self.metrics
                    .enrichment_latency
                    .observe(latency.as_seconds_f64().max(0.0));
                Outcome::Enriched
            }
            Delivery::Abandoned => Outcome::Abandoned,
            Delivery::TooLarge => {
                let error = format!(
                    "enriched record of {} bytes (before compression) exceeds the broker's \
                     message size limit even compressed",
                    enriched.value.len()
                );
                self.dead_letter(input, source, "enriched_too_large", &error, stop)
                    .await
            }
        }
    }

    async fn dead_letter(
        &self,
        input: &Input,
        source: &str,
        reason: &'static str,
        error: &str,
        stop: &mut watch::Receiver<bool>,
    ) -> Outcome {
        let record = DeadLetter {
            stage: Stage::Enricher,
            reason,
            error,
            original: &input.payload,
            original_content_type: input
                .header(header::CONTENT_TYPE)
                .unwrap_or("application/json"),
            subject: input.key.as_deref(),
        }
        .to_record(&Provenance {
            source,
            // When the webhook was received (its re-drive keeps it), not when it failed.
            received_at: received_at(input),
            bridge_version: BRIDGE_VERSION,
        });
        warn!(
            partition = input.partition,
            offset = input.offset,
            reason,
            error,
            "dead-lettering"
        );
        match self.deliver(&self.topics.dead_letter, &record, stop).await {
            Delivery::Done => {
                self.metrics.dead_letters.with_label_values(&[reason]).inc();
                Outcome::DeadLettered
            }
            Delivery::Abandoned => Outcome::Abandoned,
            Delivery::TooLarge => {
                // The input itself fit; only headers were added. Never loop on it.
                error!(
                    reason,
                    "dead letter too large for the broker; input skipped"
                );
                self.metrics
                    .dead_letters
                    .with_label_values(&["dead_letter_too_large"])
                    .inc();
                Outcome::DeadLettered
            }
        }
    }

    /// Produces until acknowledged (retrying transient failures with backoff), the record is
    /// refused as too large, or shutdown comes.
    async fn deliver(
        &self,
        topic: &str,
        record: &Record,
        stop: &mut watch::Receiver<bool>,
    ) -> Delivery {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .producer
                .produce(topic, record, self.produce_deadline)
                .await
            {
                Ok(_) => return Delivery::Done,
                Err(ProduceError::TooLarge(_)) => {
                    self.metrics
                        .produce_errors
                        .with_label_values(&["too_large"])
                        .inc();
                    return Delivery::TooLarge;
                }
                Err(error) => {
                    self.metrics
                        .produce_errors
                        .with_label_values(&[error.reason()])
                        .inc();
                    self.failures.produce_failed(topic, &error);
                    if cancelled_within(stop, jittered(self.retry.backoff(attempt))).await {
                        return Delivery::Abandoned;
                    }
                }
            }
        }
    }
}

/// The source named by the record's `ce_source` header.
fn source_name(input: &Input) -> &str {
    input
        .header(header::SOURCE)
        .and_then(|s| s.strip_prefix(SOURCE_PREFIX))
        .unwrap_or("unknown")
}

fn received_at(input: &Input) -> Timestamp {
    input
        .header(header::RECEIVED_AT)
        .and_then(|text| Timestamp::parse(text).ok())
        .unwrap_or_else(Timestamp::now)
}

/// Half the backoff plus a random share of the other half ("equal jitter"): retries of many
/// records spread out, and none comes sooner than half the backoff.
fn jittered(backoff: Duration) -> Duration {
    let random = RandomState::new().hash_one(Instant::now()) % 1_000;
    backoff / 2 + backoff.mul_f64(random as f64 / 2_000.0)
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

/// Resolves once shutdown is requested (or the trigger is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Sleeps `wait`; true if shutdown came first.
async fn cancelled_within(stop: &mut watch::Receiver<bool>, wait: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => false,
        () = stopped(stop) => true,
    }
}
