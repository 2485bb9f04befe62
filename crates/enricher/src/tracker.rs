//! Which offsets may be committed: per partition, only the contiguous prefix of finished
//! records, so a slow record holds back the commit but not the processing of later ones.

use std::collections::{BTreeMap, HashMap};

/// In-flight and finished offsets per partition.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<i32, BTreeMap<i64, bool>>,
    /// The last offset handed out for commit, per partition: never handed out lower again
    /// (a record received twice must not move the commit back).
    stored: HashMap<i32, i64>,
}

impl OffsetTracker {
    /// A record at `offset` started.
    pub fn started(&mut self, partition: i32, offset: i64) {
        self.partitions
            .entry(partition)
            .or_default()
            .insert(offset, false);
    }

    /// The record at `offset` finished (its output is durable). Returns the last offset of
    /// the finished prefix if it advanced: everything up to it may be committed.
    pub fn finished(&mut self, partition: i32, offset: i64) -> Option<i64> {
        let offsets = self.partitions.get_mut(&partition)?;
        if let Some(done) = offsets.get_mut(&offset) {
            *done = true;
        }
        let mut last = None;
        while let Some(entry) = offsets.first_entry() {
            if !*entry.get() {
                break;
            }
            last = Some(*entry.key());
            entry.remove();
        }
        let stored = self.stored.entry(partition).or_insert(i64::MIN);
        let last = last.filter(|last| last > stored)?;
        *stored = last;
        Some(last)
    }

    /// Forgets a partition (revoked, or its records abandoned).
    pub fn forget(&mut self, partition: i32) {
        self.partitions.remove(&partition);
        self.stored.remove(&partition);
    }

    /// Records of `partition` started and not yet committable: in flight, or finished after
    /// one still in flight. A rebalance makes the partition's next owner process them again.
    pub fn uncommitted(&self, partition: i32) -> usize {
        self.partitions.get(&partition).map_or(0, BTreeMap::len)
    }

    /// Records started and not finished.
    pub fn in_flight(&self) -> usize {
        self.partitions
            .values()
            .map(|offsets| offsets.values().filter(|done| !**done).count())
            .sum()
    }
}

/// How a received record's offset follows the one received before it from its partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Continuity {
    /// The next offset (or the first since the partition was assigned).
    Next,
    /// Offsets were skipped: this many records between were never received. Normal only on a
    /// compacted or transactional topic (control records take offsets); otherwise the broker
    /// lost them (seen with tansu's memory engine after a pause).
    Gap(u64),
    /// At or below an offset already received since the partition was assigned: received
    /// again (processed again, a duplicate with the same `ce_id`). Never seen against Apache
    /// Kafka; possible after a log truncation.
    Again,
}

/// The last offset received per partition, since the partition was (last) assigned.
#[derive(Debug, Default)]
pub struct Received {
    last: HashMap<i32, i64>,
}

impl Received {
    /// Records that `offset` of `partition` was received and says how it follows.
    pub fn observe(&mut self, partition: i32, offset: i64) -> Continuity {
        let Some(last) = self.last.get_mut(&partition) else {
            self.last.insert(partition, offset);
            return Continuity::Next;
        };
        if offset <= *last {
            return Continuity::Again;
        }
        let skipped = offset - *last - 1;
        *last = offset;
        if skipped == 0 {
            Continuity::Next
        } else {
            Continuity::Gap(skipped.unsigned_abs())
        }
    }

    /// Forgets a revoked partition: its next owner (maybe this one again) starts afresh.
    pub fn forget(&mut self, partition: i32) {
        self.last.remove(&partition);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_offsets_are_next_skipped_or_again() {
        let mut received = Received::default();
        assert_eq!(
            received.observe(0, 40),
            Continuity::Next,
            "first since assignment"
        );
        assert_eq!(received.observe(0, 41), Continuity::Next);
        assert_eq!(received.observe(0, 45), Continuity::Gap(3));
        assert_eq!(received.observe(0, 44), Continuity::Again);
        assert_eq!(received.observe(0, 45), Continuity::Again);
        assert_eq!(
            received.observe(1, 7),
            Continuity::Next,
            "partitions are independent"
        );
        received.forget(0);
        assert_eq!(received.observe(0, 30), Continuity::Next, "assigned again");
    }

    #[test]
    fn only_the_contiguous_finished_prefix_is_committable() {
        let mut tracker = OffsetTracker::default();
        for offset in 10..14 {
            tracker.started(0, offset);
        }
        assert_eq!(tracker.finished(0, 11), None, "10 is still running");
        assert_eq!(tracker.finished(0, 12), None);
        assert_eq!(
            tracker.uncommitted(0),
            4,
            "two in flight, two finished behind 10"
        );
        assert_eq!(tracker.finished(0, 10), Some(12));
        assert_eq!(tracker.in_flight(), 1);
        assert_eq!(tracker.uncommitted(0), 1);
        assert_eq!(tracker.finished(0, 13), Some(13));
        assert_eq!(tracker.in_flight(), 0);
    }

    #[test]
    fn a_record_received_again_never_moves_the_commit_back() {
        let mut tracker = OffsetTracker::default();
        tracker.started(0, 10);
        tracker.started(0, 11);
        assert_eq!(tracker.finished(0, 10), Some(10));
        assert_eq!(tracker.finished(0, 11), Some(11));
        tracker.started(0, 10); // received again
        assert_eq!(tracker.finished(0, 10), None);
    }

    #[test]
    fn partitions_are_independent() {
        let mut tracker = OffsetTracker::default();
        tracker.started(0, 5);
        tracker.started(1, 7);
        assert_eq!(tracker.finished(1, 7), Some(7));
        assert_eq!(tracker.in_flight(), 1);
        tracker.forget(0);
        assert_eq!(tracker.in_flight(), 0);
        assert_eq!(tracker.finished(0, 5), None);
    }
}
