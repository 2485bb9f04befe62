//! Where the routes hand an accepted record: it is durable when this says so, and only then
//! does VoiceHub get its 2xx. How depends on `spool.mode`:
//!
//! - `off`: produced to Kafka, durable once the broker acknowledges it (within
//!   `http.produce_deadline_ms`).
//! - `always`: appended to the local spool, durable after the fsync; the
//!   [`crate::forwarder`] produces it later, oldest first.
//! - `fallback`: produced to Kafka; without an acknowledgement within `spool.fallback_after_ms`
//!   it is spooled instead, and from then on every record goes through the spool until the
//!   forwarder has emptied it, so that a call's events stay in order. The direct delivery
//!   that was given up on may still land: the spooled copy then arrives as a duplicate with
//!   the same `ce_id`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tracing::{info, warn};
use voicehub_model::record::Record;
use voicehub_model::record_codec;
use voicehub_runtime::kafka::ProduceError;
use voicehub_spool::{Spool, SpoolError};

use crate::metrics::SpoolMetrics;
use crate::publisher::Publisher;

/// Why a record is not durable.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Kafka did not acknowledge it (and there is no spool to fall back on).
    #[error(transparent)]
    Produce(#[from] ProduceError),
    /// The spool refused or failed it.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// Larger than the producer's `message.max.bytes`: Kafka would never take it.
    #[error("the record ({bytes} bytes) exceeds message.max.bytes ({limit})")]
    TooLarge {
        /// The record's size.
        bytes: usize,
        limit: usize,
    },
}

impl StoreError {
    /// Whether retrying the same record cannot help.
    pub fn is_too_large(&self) -> bool {
        matches!(
            self,
            Self::TooLarge { .. } | Self::Produce(ProduceError::TooLarge(_))
        )
    }

    /// Whether the spool is full or not draining (so 503 and `Retry-After`).
    pub fn is_spool_full(&self) -> bool {
        matches!(
            self,
            Self::Spool(SpoolError::Full { .. } | SpoolError::Stale { .. })
        )
    }
}

/// The spool and what the outbox and the forwarder share about it.
#[derive(Debug)]
pub struct SpoolState {
    /// The storage.
    pub spool: Spool,
    /// Woken after every append, so the forwarder need not poll.
    pub appended: Notify,
    /// `fallback` mode: records go through the spool until it is empty.
    engaged: AtomicBool,
    /// Appends started and not finished (so the forwarder does not disengage under one).
    appending: AtomicUsize,
    /// Size of the last append refused as full or stale (0: none since it had room again).
    refused_bytes: AtomicUsize,
    pub metrics: SpoolMetrics,
}

impl SpoolState {
    /// Wraps an opened spool. One that still holds records (from before a restart) starts
    /// engaged, so that `fallback` mode does not produce new events ahead of them.
    pub fn new(spool: Spool, metrics: SpoolMetrics) -> Self {
        let holding = spool.depth().records > 0;
        Self {
            spool,
            appended: Notify::new(),
            engaged: AtomicBool::new(holding),
            appending: AtomicUsize::new(0),
            refused_bytes: AtomicUsize::new(0),
            metrics,
        }
    }

    /// Called by the forwarder when it found nothing to send: `fallback` mode goes back to
    /// producing directly, unless an append is under way.
    pub fn disengage_if_empty(&self) {
        if !self.engaged.load(Ordering::Acquire) {
            return;
        }
        self.engaged.store(false, Ordering::Release);
        if self.appending.load(Ordering::Acquire) > 0 || self.spool.depth().records > 0 {
            self.engaged.store(true, Ordering::Release);
        } else {
            info!("spool drained: producing directly again");
        }
    }

    /// Whether appends are taken: false once one was refused (full or stale) until one of
    /// that size would be taken again. Readiness follows it.
    pub fn accepting(&self) -> bool {
        let refused = self.refused_bytes.load(Ordering::Acquire);
        let accepting = self.spool.accepts(refused);
        if accepting && refused > 0 {
            self.refused_bytes.store(0, Ordering::Release);
        }
        accepting
    }

    async fn append(&self, payload: Vec<u8>) -> Result<(), SpoolError> {
        let bytes = payload.len();
        self.appending.fetch_add(1, Ordering::AcqRel);
        let result = self.spool.append(payload).await;
        self.appending.fetch_sub(1, Ordering::AcqRel);
        if let Err(SpoolError::Full { .. } | SpoolError::Stale { .. }) = &result {
            self.refused_bytes.store(bytes.max(1), Ordering::Release);
        }
        result?;
        self.metrics.appended.inc();
        self.appended.notify_one();
        Ok(())
    }
}

/// The routes' one way to make a record durable.
#[derive(Debug, Clone)]
pub struct Outbox {
    publisher: Publisher,
    /// `None` with `spool.mode = off`.
    spooling: Option<Spooling>,
}

/// How the outbox spools (`fallback` or `always`).
#[derive(Debug, Clone)]
pub struct Spooling {
    pub state: Arc<SpoolState>,
    /// `fallback` mode: how long Kafka gets before a record is spooled; `None` in `always`.
    pub fallback_after: Option<Duration>,
    /// Records over this (the producer's `message.max.bytes`) are refused before they are
    /// spooled: Kafka would never take them.
    pub max_record_bytes: usize,
}

impl Outbox {
    /// Produces directly (`spool.mode = off`), or spools as `spooling` says.
    pub fn new(publisher: Publisher, spooling: Option<Spooling>) -> Self {
        Self {
            publisher,
            spooling,
        }
    }

    /// The producer behind it.
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// The spool, if the mode has one.
    pub fn spool(&self) -> Option<&Arc<SpoolState>> {
        self.spooling.as_ref().map(|spooling| &spooling.state)
    }

    /// The longest a request waits for [`Outbox::store`].
    pub fn deadline(&self) -> Duration {
        self.publisher.deadline()
    }

    /// Makes `record` durable for `topic`: acknowledged by Kafka, or on the local disk for
    /// the forwarder. `on_durable(true)` runs once it is (now or, for a direct delivery that
    /// outlives the wait, later); if it never is, `on_durable` is dropped uncalled or called
    /// with `false`.
    pub async fn store(
        &self,
        topic: &str,
        record: &Record,
        on_durable: impl FnOnce(bool) + Send + 'static,
    ) -> Result<(), StoreError> {
        let Some(spooling) = &self.spooling else {
            self.publisher.publish(topic, record, on_durable).await?;
            return Ok(());
        };
        let spool = &spooling.state;
        let Some(fallback_after) = spooling
            .fallback_after
            .filter(|_| !spool.engaged.load(Ordering::Acquire))
        else {
            spooling.append(topic, record).await?;
            on_durable(true);
            return Ok(());
        };
        // Whichever path makes it durable first reports it.
        let once = Arc::new(Mutex::new(Some(on_durable)));
        let direct = once.clone();
        let result = self
            .publisher
            .publish_within(topic, record, fallback_after, move |delivered| {
                if delivered {
                    fire(&direct);
                }
            })
            .await;
        match result {
            Ok(_) => return Ok(()),
            Err(error @ ProduceError::TooLarge(_)) => return Err(error.into()),
            Err(error) => {
                spool.metrics.fallbacks.inc();
                if !spool.engaged.swap(true, Ordering::AcqRel) {
                    warn!(
                        error = &error as &dyn std::error::Error,
                        "no acknowledgement from Kafka in time: spooling"
                    );
                }
            }
        }
        spooling.append(topic, record).await?;
        fire(&once);
        Ok(())
    }
}

impl Spooling {
    async fn append(&self, topic: &str, record: &Record) -> Result<(), StoreError> {
        let too_large = |bytes| StoreError::TooLarge {
            bytes,
            limit: self.max_record_bytes,
        };
        let size = record_size(record);
        if size > self.max_record_bytes {
            return Err(too_large(size));
        }
        let payload = record_codec::encode(topic, record).ok_or_else(|| too_large(size))?;
        self.state.append(payload).await?;
        Ok(())
    }
}

/// What librdkafka counts against `message.max.bytes`: key, value and headers.
fn record_size(record: &Record) -> usize {
    let headers: usize = record
        .headers
        .iter()
        .map(|(name, value)| name.len() + value.len())
        .sum();
    record.key.as_ref().map_or(0, String::len) + record.value.len() + headers
}

fn fire<F: FnOnce(bool)>(once: &Mutex<Option<F>>) {
    let callback = once.lock().unwrap_or_else(PoisonError::into_inner).take();
    if let Some(callback) = callback {
        callback(true);
    }
}
