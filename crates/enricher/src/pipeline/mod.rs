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
//!
//! One file per role: [`consumer`] (the consumer's context and ownership), [`dispatch`] (the
//! loop: intake, backlog, flow control, offsets), [`worker`] (one record's trip) and [`input`]
//! (the record as held).

use std::time::Duration;

use tokio::sync::watch;

mod consumer;
mod dispatch;
mod input;
mod worker;

pub use consumer::{InputConsumer, InputContext, OwnedConsumer};
pub use dispatch::{Ended, GROUP_CHECK, Pipeline};
pub use worker::Worker;

/// What happened to one input record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Enriched,
    DeadLettered,
    /// Shutdown came first: not committed, processed again by the next owner.
    Abandoned,
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
