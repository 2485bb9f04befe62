//! Drains the spool to Kafka: oldest first, with the producer, key, headers and value the
//! direct path would have used (the spooled bytes are the record), acknowledging each record
//! in the spool once Kafka has acknowledged it.
//!
//! Up to `spool.forward_window` records (and `spool.forward_window_bytes`) are in flight at
//! once. After a failure the forwarder goes back to the oldest unacknowledged record and
//! sends one record at a time until Kafka takes one again: while the broker is away nothing
//! overtakes the record that failed, so a call's events reach the topic in the order they
//! were spooled. A record that had been delivered before its failure was seen is sent
//! again: a duplicate with the same `ce_id`.
//!
//! A record Kafka can never take (too large for the broker, or unreadable) is moved to the
//! spool's `undeliverable/` directory, logged and counted, so it neither blocks the queue nor
//! disappears; so is a record whose bytes on disk were damaged (the spool sets it aside when
//! it reads it).

use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info, warn};
use voicehub_model::record_codec;
use voicehub_runtime::kafka::ProduceError;
use voicehub_spool::{Entry, Seq};

use crate::outbox::SpoolState;
use crate::publisher::Publisher;

/// First pause after a failure; doubled up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long an idle forwarder sleeps when no append wakes it.
const IDLE_POLL: Duration = Duration::from_millis(500);

/// The forwarder's settings.
#[derive(Debug, Clone)]
pub struct Forwarder {
    pub spool: Arc<SpoolState>,
    /// The producer.
    pub publisher: Publisher,
    /// Records in flight at once.
    pub window: usize,
    /// Bytes of records (as spooled) in flight at once; one record whatever its size.
    pub window_bytes: u64,
}

impl Forwarder {
    /// Runs until aborted. Aborting loses nothing: what Kafka has not acknowledged stays in
    /// the spool.
    pub async fn run(self) {
        let mut next: Seq = 0;
        let mut failing = false;
        let mut backoff = MIN_BACKOFF;
        loop {
            let window = if failing { 1 } else { self.window };
            let spool = self.spool.spool.clone();
            let window_bytes = self.window_bytes;
            let read =
                tokio::task::spawn_blocking(move || spool.read_bounded(next, window, window_bytes))
                    .await;
            let entries = match read.unwrap_or(Err(voicehub_spool::SpoolError::Closed)) {
                Ok(entries) => entries,
                Err(error) => {
                    error!(
                        error = &error as &dyn std::error::Error,
                        "spool read failed; retrying"
                    );
                    tokio::time::sleep(MAX_BACKOFF).await;
                    continue;
                }
            };
            let Some(last) = entries.last().map(|entry| entry.seq) else {
                self.spool.disengage_if_empty();
                let _ = tokio::time::timeout(IDLE_POLL, self.spool.appended.notified()).await;
                continue;
            };
            match self.forward(entries).await {
                None => {
                    next = last + 1;
                    if failing {
                        info!("Kafka takes spooled records again");
                    }
                    failing = false;
                    backoff = MIN_BACKOFF;
                }
                Some(failed) => {
                    if !failing {
                        warn!("Kafka did not take a spooled record; retrying one at a time");
                    }
                    failing = true;
                    next = failed;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Sends `entries` (all in flight at once) and acknowledges those Kafka took; returns the
    /// oldest that failed.
    async fn forward(&self, entries: Vec<Entry>) -> Option<Seq> {
        let mut sends = Vec::with_capacity(entries.len());
        for entry in entries {
            match record_codec::decode(&entry.payload) {
                Ok((topic, record)) => {
                    sends.push((entry, Some(self.publisher.deliver(&topic, &record))));
                }
                Err(error) => {
                    warn!(
                        seq = entry.seq,
                        error = &error as &dyn std::error::Error,
                        "spooled record unreadable"
                    );
                    sends.push((entry, None));
                }
            }
        }
        let mut first_failed = None;
        for (entry, send) in sends {
            let outcome = match send {
                Some(send) => send.await,
                None => {
                    if !self.set_aside(&entry, "unreadable") {
                        first_failed.get_or_insert(entry.seq);
                    }
                    continue;
                }
            };
            match outcome {
                Ok(_) => {
                    self.acknowledge(entry.seq);
                    self.spool.metrics.forwarded.inc();
                }
                Err(ProduceError::TooLarge(error)) => {
                    warn!(seq = entry.seq, %error, "spooled record too large for Kafka");
                    if !self.set_aside(&entry, "too_large") {
                        first_failed.get_or_insert(entry.seq);
                    }
                }
                Err(_) => {
                    first_failed.get_or_insert(entry.seq);
                }
            }
        }
        first_failed
    }

    fn acknowledge(&self, seq: Seq) {
        if let Err(error) = self.spool.spool.acknowledge(seq) {
            // The record stays and is forwarded again after a restart (same ce_id).
            warn!(
                seq,
                error = &error as &dyn std::error::Error,
                "spool acknowledgement failed"
            );
        }
    }

    /// Moves a record Kafka will never take out of the queue, onto disk next to it; `false`
    /// if that failed (it stays in the queue).
    fn set_aside(&self, entry: &Entry, reason: &'static str) -> bool {
        match self.spool.spool.set_aside(entry, reason) {
            Ok(_) => {
                self.spool
                    .metrics
                    .undeliverable
                    .with_label_values(&[reason])
                    .inc();
                true
            }
            Err(error) => {
                error!(
                    seq = entry.seq,
                    error = &error as &dyn std::error::Error,
                    "could not set an undeliverable record aside; it stays in the spool"
                );
                false
            }
        }
    }
}
