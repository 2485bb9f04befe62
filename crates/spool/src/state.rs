//! The spool's index in memory, shared by the writer thread and the API under one lock: the
//! segments, the next sequence number, and what is unacknowledged. No file is read, written or
//! synced under this lock except creating a new segment file (rare: once per segment).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::segment::{Flush, Segment};
use crate::{Seq, SpoolError};

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) dir: PathBuf,
    pub(crate) segment_bytes: u64,
    /// Every segment with an unacknowledged record, and the active one, by first seq.
    pub(crate) segments: BTreeMap<Seq, Segment>,
    pub(crate) next_seq: Seq,
    /// Unacknowledged bytes.
    pub(crate) bytes: u64,
    pub(crate) records: u64,
    /// Appends per sync, for the group-commit metric: (syncs, records).
    pub(crate) syncs: (u64, u64),
}

impl State {
    /// Age of the oldest unacknowledged record.
    pub(crate) fn oldest(&self) -> Option<Duration> {
        let now = now_ms();
        self.segments
            .values()
            .find_map(Segment::oldest_unacknowledged_ms)
            .map(|at| Duration::from_millis(now.saturating_sub(at)))
    }

    /// Every record below this is acknowledged.
    pub(crate) fn watermark(&self) -> Seq {
        self.segments
            .values()
            .find_map(Segment::first_unacknowledged)
            .unwrap_or(self.next_seq)
    }

    /// Marks `seq` acknowledged; the file of a segment this leaves without a record to
    /// forward (and that is not being written), to be deleted outside the lock.
    pub(crate) fn acknowledge(&mut self, seq: Seq) -> Option<PathBuf> {
        let (&first, segment) = self.segments.range_mut(..=seq).next_back()?;
        let bytes = segment.acknowledge(seq)?; // not in it, or acknowledged before
        let done = segment.all_acknowledged() && segment.is_sealed();
        let path = segment.path().to_owned();
        self.bytes -= bytes;
        self.records -= 1;
        done.then(|| {
            self.segments.remove(&first);
            path
        })
    }

    /// Buffers one record in the active segment, sealing it and opening a new one when it is
    /// full (the sealed one's buffer goes to `flushes`).
    pub(crate) fn write(
        &mut self,
        payload: &[u8],
        flushes: &mut Vec<Flush>,
    ) -> Result<Seq, SpoolError> {
        let seq = self.next_seq;
        let needs_new = match self.segments.values().next_back() {
            Some(active) => active.is_sealed() || active.bytes_on_disk() >= self.segment_bytes,
            None => true,
        };
        if needs_new {
            if let Some((&first, active)) = self.segments.iter_mut().next_back() {
                flushes.extend(active.take_pending()?);
                active.seal();
                if active.all_acknowledged() {
                    let path = active.path().to_owned();
                    self.segments.remove(&first);
                    std::fs::remove_file(&path).map_err(SpoolError::io(&path))?;
                }
            }
            let segment = Segment::create(&self.dir, seq)?;
            self.segments.insert(seq, segment);
        }
        let Some(active) = self.segments.values_mut().next_back() else {
            return Err(SpoolError::Closed);
        };
        let bytes = active.append(seq, now_ms(), payload)?;
        self.next_seq += 1;
        self.bytes += bytes;
        self.records += 1;
        Ok(seq)
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}
