//! An input record as the pipeline holds it, and the backlog of those waiting for a slot.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;

use rdkafka::message::{Headers, Message};
use voicehub_model::Timestamp;
use voicehub_model::record::header;

const SOURCE_PREFIX: &str = "/voicehub/sources/";

/// An input record, owned.
#[derive(Debug)]
pub(super) struct Input {
    /// Revocations seen when it was received (see [`InputContext::revocations`]).
    pub(super) generation: u64,
    pub(super) partition: i32,
    pub(super) offset: i64,
    pub(super) key: Option<String>,
    pub(super) headers: Vec<(String, String)>,
    pub(super) payload: Vec<u8>,
}

impl Input {
    pub(super) fn from_message<M: Message>(message: &M, generation: u64) -> Self {
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
    pub(super) fn size(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
        self.payload.len() + self.key.as_ref().map_or(0, String::len) + headers
    }

    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Received records waiting for a slot, per partition in the order received, with their
/// total size. Partitions take turns, and one whose record may not start yet (see
/// [`Backlog::pop`]) waits without holding up the others.
#[derive(Debug, Default)]
pub(super) struct Backlog {
    partitions: BTreeMap<i32, VecDeque<Input>>,
    /// The partition taken from last: the next turn starts after it.
    last: Option<i32>,
    pub(super) bytes: usize,
}

impl Backlog {
    pub(super) fn push(&mut self, input: Input) {
        self.bytes += input.size();
        self.partitions
            .entry(input.partition)
            .or_default()
            .push_back(input);
    }

    /// The oldest record of the next partition in turn for which `may_start` holds.
    pub(super) fn pop(&mut self, may_start: impl Fn(i32) -> bool) -> Option<Input> {
        let after = self.last.map_or(Bound::Unbounded, Bound::Excluded);
        let from_the_start = self
            .last
            .into_iter()
            .flat_map(|last| self.partitions.range(..=last));
        let partition = self
            .partitions
            .range((after, Bound::Unbounded))
            .chain(from_the_start)
            .map(|(partition, _)| *partition)
            .find(|partition| may_start(*partition))?;
        let queue = self.partitions.get_mut(&partition)?;
        let input = queue.pop_front()?;
        if queue.is_empty() {
            self.partitions.remove(&partition);
        }
        self.last = Some(partition);
        self.bytes -= input.size();
        Some(input)
    }

    /// Drops the records a revoked partition had before revocation `revocation`: its next
    /// owner processes them.
    pub(super) fn forget(&mut self, partition: i32, revocation: u64) {
        if let Some(queue) = self.partitions.get_mut(&partition) {
            queue.retain(|input| input.generation >= revocation);
            if queue.is_empty() {
                self.partitions.remove(&partition);
            }
        }
        self.bytes = self.partitions.values().flatten().map(Input::size).sum();
    }
}

/// The source named by the record's `ce_source` header.
pub(super) fn source_name(input: &Input) -> &str {
    input
        .header(header::SOURCE)
        .and_then(|s| s.strip_prefix(SOURCE_PREFIX))
        .unwrap_or("unknown")
}

pub(super) fn received_at(input: &Input) -> Timestamp {
    input
        .header(header::RECEIVED_AT)
        .and_then(|text| Timestamp::parse(text).ok())
        .unwrap_or_else(Timestamp::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(partition: i32, offset: i64) -> Input {
        Input {
            generation: 0,
            partition,
            offset,
            key: None,
            headers: Vec::new(),
            payload: vec![0; 10],
        }
    }

    fn popped(backlog: &mut Backlog, may_start: impl Fn(i32) -> bool) -> Option<(i32, i64)> {
        backlog
            .pop(may_start)
            .map(|input| (input.partition, input.offset))
    }

    #[test]
    fn partitions_take_turns_each_in_the_order_received() {
        let mut backlog = Backlog::default();
        for (partition, offset) in [(0, 1), (0, 2), (0, 3), (1, 7), (1, 8), (2, 4)] {
            backlog.push(input(partition, offset));
        }
        assert_eq!(backlog.bytes, 60);
        let order: Vec<_> = std::iter::from_fn(|| popped(&mut backlog, |_| true)).collect();
        assert_eq!(order, [(0, 1), (1, 7), (2, 4), (0, 2), (1, 8), (0, 3)]);
        assert_eq!(backlog.bytes, 0);
    }

    #[test]
    fn a_partition_that_may_not_start_holds_up_no_other() {
        let mut backlog = Backlog::default();
        for (partition, offset) in [(0, 1), (0, 2), (1, 7), (1, 8)] {
            backlog.push(input(partition, offset));
        }
        assert_eq!(popped(&mut backlog, |p| p != 0), Some((1, 7)));
        assert_eq!(popped(&mut backlog, |p| p != 0), Some((1, 8)));
        assert_eq!(popped(&mut backlog, |p| p != 0), None);
        assert_eq!(popped(&mut backlog, |_| true), Some((0, 1)));
        assert_eq!(backlog.bytes, 10);
    }

    #[test]
    fn forgetting_a_partition_keeps_what_it_received_after_the_revocation() {
        let mut backlog = Backlog::default();
        backlog.push(input(0, 1));
        backlog.push(Input {
            generation: 2,
            ..input(0, 1)
        });
        backlog.push(input(1, 5));
        backlog.forget(0, 2);
        assert_eq!(backlog.bytes, 20);
        let order: Vec<_> = std::iter::from_fn(|| popped(&mut backlog, |_| true)).collect();
        assert_eq!(order, [(0, 1), (1, 5)]);
    }
}
