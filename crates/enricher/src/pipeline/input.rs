//! An input record as the pipeline holds it, and the backlog of those waiting for a slot.

use std::collections::VecDeque;

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

/// Received records waiting for a slot, oldest first, with their total size.
#[derive(Debug, Default)]
pub(super) struct Backlog {
    pub(super) records: VecDeque<Input>,
    pub(super) bytes: usize,
}

impl Backlog {
    pub(super) fn push(&mut self, input: Input) {
        self.bytes += input.size();
        self.records.push_back(input);
    }

    pub(super) fn pop(&mut self) -> Option<Input> {
        let input = self.records.pop_front()?;
        self.bytes -= input.size();
        Some(input)
    }

    /// Drops the records a revoked partition had before revocation `revocation`: its next
    /// owner processes them.
    pub(super) fn forget(&mut self, partition: i32, revocation: u64) {
        self.records
            .retain(|input| input.partition != partition || input.generation >= revocation);
        self.bytes = self.records.iter().map(Input::size).sum();
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
