//! The writer thread: it owns appending to the active segment. It takes every append waiting
//! in its channel, buffers them under the lock, writes and syncs them outside it (one `fsync`
//! for the batch: group commit), then answers them all.

use std::sync::{Mutex, PoisonError, mpsc};

use tokio::sync::oneshot;
use tracing::warn;

use crate::state::State;
use crate::{Observer, Seq, SpoolError};

/// One append waiting for the writer.
#[derive(Debug)]
pub(crate) struct Append {
    pub(crate) payload: Vec<u8>,
    pub(crate) done: oneshot::Sender<Result<Seq, SpoolError>>,
}

/// Batches whatever is waiting, writes, syncs once, answers. Ends when every [`crate::Spool`]
/// handle is dropped.
pub(crate) fn write_forever(
    state: &Mutex<State>,
    receiver: &mpsc::Receiver<Append>,
    observer: &dyn Observer,
) {
    const MAX_BATCH: usize = 4096;
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let results = write_batch(state, &batch);
        observer.synced(batch.len(), started.elapsed());
        for (append, result) in batch.into_iter().zip(results) {
            let _ = append.done.send(result);
        }
    }
}

/// Writes a batch: the records are encoded and indexed under the lock, written and synced
/// outside it (so that appends, reads and acknowledgements never wait for an fsync), then made
/// readable. Every append of the batch gets the same outcome.
fn write_batch(state: &Mutex<State>, batch: &[Append]) -> Vec<Result<Seq, SpoolError>> {
    let lock = || state.lock().unwrap_or_else(PoisonError::into_inner);
    let mut flushes = Vec::new();
    let mut seqs = Vec::with_capacity(batch.len());
    let mut outcome = Ok(());
    {
        let mut state = lock();
        for append in batch {
            match state.write(&append.payload, &mut flushes) {
                Ok(seq) => seqs.push(seq),
                Err(error) => {
                    outcome = Err(error);
                    break;
                }
            }
        }
        if let Some(active) = state.segments.values_mut().next_back() {
            match active.take_pending() {
                Ok(flush) => flushes.extend(flush),
                Err(error) => outcome = outcome.and(Err(error)),
            }
        }
    }
    if outcome.is_ok() {
        for flush in &mut flushes {
            if let Err(error) = flush.run() {
                outcome = Err(error);
                break;
            }
        }
    }
    let mut state = lock();
    state.syncs.0 += 1;
    match outcome {
        Ok(()) => {
            for flush in &flushes {
                if let Some(segment) = state.segments.get_mut(&flush.first_seq) {
                    segment.mark_written(flush.bytes.len() as u64);
                }
            }
            state.syncs.1 += seqs.len() as u64;
            seqs.into_iter().map(Ok).collect()
        }
        Err(error) => {
            // Nothing of this batch is known durable: forget it, and write on in a new segment.
            for flush in &flushes {
                if let Some(segment) = state.segments.get_mut(&flush.first_seq) {
                    let (records, bytes) = segment.abandon_unwritten();
                    state.records -= records;
                    state.bytes -= bytes;
                }
            }
            warn!(
                error = &error as &dyn std::error::Error,
                "spool write failed"
            );
            batch.iter().map(|_| Err(error.duplicate())).collect()
        }
    }
}

impl SpoolError {
    /// The same error again, for each append of a failed batch.
    fn duplicate(&self) -> Self {
        match self {
            Self::Full { bytes, max_bytes } => Self::Full {
                bytes: *bytes,
                max_bytes: *max_bytes,
            },
            Self::Io { path, source } => Self::Io {
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            Self::Stale { oldest, max_age } => Self::Stale {
                oldest: *oldest,
                max_age: *max_age,
            },
            Self::Locked(dir) => Self::Locked(dir.clone()),
            Self::Closed => Self::Closed,
        }
    }
}
