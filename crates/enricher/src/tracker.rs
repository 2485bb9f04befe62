//! Which offsets may be committed: per partition, only the contiguous prefix of finished
//! records, so a slow record holds back the commit but not the processing of later ones.

use std::collections::{BTreeMap, HashMap};

/// In-flight and finished offsets per partition.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<i32, BTreeMap<i64, bool>>,
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
        last
    }

    /// Forgets a partition (revoked, or its records abandoned).
    pub fn forget(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }

    /// Records started and not finished.
    pub fn in_flight(&self) -> usize {
        self.partitions
            .values()
            .map(|offsets| offsets.values().filter(|done| !**done).count())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_contiguous_finished_prefix_is_committable() {
        let mut tracker = OffsetTracker::default();
        for offset in 10..14 {
            tracker.started(0, offset);
        }
        assert_eq!(tracker.finished(0, 11), None, "10 is still running");
        assert_eq!(tracker.finished(0, 12), None);
        assert_eq!(tracker.finished(0, 10), Some(12));
        assert_eq!(tracker.in_flight(), 1);
        assert_eq!(tracker.finished(0, 13), Some(13));
        assert_eq!(tracker.in_flight(), 0);
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
