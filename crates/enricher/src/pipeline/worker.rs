//! One record's trip: parse, fetch the analysis (with retries), produce the enriched record
//! or a dead letter, and report the outcome to the loop.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use time::OffsetDateTime;
use tokio::sync::watch;
use tracing::{debug, error, warn};
use voicehub_model::analysis::AnalysisResult;
use voicehub_model::enriched::AnalysisEnriched;
use voicehub_model::event::{AnalysisResultReady, Event};
use voicehub_model::record::{DeadLetter, Provenance, Record, Stage, header};
use voicehub_model::{Timestamp, Topics, WebhookEvent, parse_webhook};
use voicehub_runtime::kafka::{ProduceError, RecoveringProducer};
use voicehub_runtime::{BRIDGE_VERSION, FaultHook};

use super::input::{Input, received_at, source_name};
use super::{Outcome, cancelled_within};
use crate::dead_letter::DeadLetterReason;
use crate::fetch::{self, Access, BodyBudget, Reservation};
use crate::metrics::EnricherMetrics;
use crate::settings::{FetchSettings, RetrySettings};

/// Processes one record at a time, many at once: fetch, then produce.
#[derive(Debug)]
pub struct Worker {
    /// Output producer.
    pub producer: Arc<RecoveringProducer<rdkafka::client::DefaultClientContext>>,
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
    pub metrics: EnricherMetrics,
    /// Produce failures logged once per cause and topic a minute.
    pub failures: voicehub_runtime::failure_log::FailureLog,
    /// Called with every parsed input before its fetch (fault-injection tests only).
    pub fault_hook: std::sync::OnceLock<FaultHook>,
}

enum Delivery {
    Done,
    TooLarge,
    Abandoned,
}

impl Worker {
    pub(super) async fn process(
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
                self.dead_letter(
                    &input,
                    source,
                    DeadLetterReason::InternalError,
                    &text,
                    &mut stop,
                )
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
                .dead_letter(
                    input,
                    source_name,
                    DeadLetterReason::UnknownSource,
                    &error,
                    stop,
                )
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
                    .dead_letter(
                        input,
                        source,
                        DeadLetterReason::UnexpectedRecord,
                        &error,
                        stop,
                    )
                    .await;
            }
            Err(error) => {
                return self
                    .dead_letter(
                        input,
                        source,
                        DeadLetterReason::InvalidRecord,
                        &error.to_string(),
                        stop,
                    )
                    .await;
            }
        };

        // The body's reservation is held until the enriched record is produced (end of scope).
        let (analysis, _reservation) = match self
            .fetch_with_retries(input, source, access, &event, stop)
            .await
        {
            Ok(fetched) => fetched,
            Err(outcome) => return outcome,
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
                self.dead_letter(
                    input,
                    source,
                    DeadLetterReason::EnrichedTooLarge,
                    &error,
                    stop,
                )
                .await
            }
        }
    }

    /// Fetches the event's analysis, retrying within the retry budget. `Err` is the record's
    /// final outcome: dead-lettered, or abandoned at shutdown.
    async fn fetch_with_retries(
        &self,
        input: &Input,
        source: &str,
        access: &Access,
        event: &Event<AnalysisResultReady>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(AnalysisResult, Reservation), Outcome> {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let attempt_started = Instant::now();
            let result = fetch::fetch(
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
                Ok(fetched) => return Ok(fetched),
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
                        return Err(Outcome::Abandoned);
                    }
                }
                Err(error) if error.is_retryable() => {
                    let text = format!(
                        "gave up after {attempt} attempts over {:?} (retry budget {:?}); last: \
                         {error}",
                        started.elapsed(),
                        self.retry.budget()
                    );
                    return Err(self
                        .dead_letter(
                            input,
                            source,
                            DeadLetterReason::RetriesExhausted,
                            &text,
                            stop,
                        )
                        .await);
                }
                Err(error) => {
                    return Err(self
                        .dead_letter(input, source, (&error).into(), &error.to_string(), stop)
                        .await);
                }
            }
        }
    }

    async fn dead_letter(
        &self,
        input: &Input,
        source: &str,
        reason: DeadLetterReason,
        error: &str,
        stop: &mut watch::Receiver<bool>,
    ) -> Outcome {
        let reason = reason.as_str();
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
                    .with_label_values(&[DeadLetterReason::DeadLetterTooLarge.as_str()])
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

/// Half the backoff plus a random share of the other half ("equal jitter"): retries of many
/// records spread out, and none comes sooner than half the backoff.
fn jittered(backoff: Duration) -> Duration {
    let random = RandomState::new().hash_one(Instant::now()) % 1_000;
    backoff / 2 + backoff.mul_f64(random as f64 / 2_000.0)
}
