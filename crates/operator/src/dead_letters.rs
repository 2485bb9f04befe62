//! The dead-letter topic, read as it stands: every partition from a start offset up to its end
//! when reading began (records written meanwhile wait for the next run, so a re-drive that
//! dead-letters again never loops). Partitions are assigned, never subscribed: reading joins no
//! consumer group's membership, the services' or anyone's.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use voicehub_model::Timestamp;
use voicehub_model::record::header;
use voicehub_runtime::settings::KafkaSettings;

/// The prefix of `ce_source`; the rest is the source name.
pub const SOURCE_PREFIX: &str = "/voicehub/sources/";

/// Why the topic could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A Kafka client call failed.
    #[error("{what}: {error}")]
    Kafka {
        /// What was being done.
        what: String,
        /// The client's error.
        #[source]
        error: rdkafka::error::KafkaError,
    },
    /// The topic does not exist (or has no partitions).
    #[error("topic {0} does not exist")]
    NoTopic(String),
    /// No record came for a partition that has not reached its end.
    #[error(
        "partition {partition} stalled at offset {position} (its end was {end}): no record came \
         within the timeout (--timeout)"
    )]
    Stalled {
        partition: i32,
        /// Where reading stands.
        position: i64,
        /// The end when reading began.
        end: i64,
    },
}

fn kafka(what: impl Into<String>) -> impl FnOnce(rdkafka::error::KafkaError) -> ReadError {
    let what = what.into();
    move |error| ReadError::Kafka { what, error }
}

/// One record of the dead-letter topic.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// The record's timestamp (milliseconds since the epoch), if it has one.
    pub timestamp_ms: Option<i64>,
    /// Its key (the call or job id when known).
    pub key: Option<String>,
    /// Its headers; values that are not UTF-8 are shown lossily.
    pub headers: BTreeMap<String, String>,
    /// The original bytes.
    #[serde(skip)]
    pub value: Vec<u8>,
}

impl DeadLetter {
    /// Header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// `ce_deadletterstage`: `ingress` or `enricher`.
    pub fn stage(&self) -> Option<&str> {
        self.header(header::DEAD_LETTER_STAGE)
    }

    /// `ce_deadletterreason`.
    pub fn reason(&self) -> Option<&str> {
        self.header(header::DEAD_LETTER_REASON)
    }

    /// The source name from `ce_source`.
    pub fn source(&self) -> Option<&str> {
        self.header(header::SOURCE)?.strip_prefix(SOURCE_PREFIX)
    }

    /// Where it is, as `ce_redrivenfrom` names it: `<topic>/<partition>/<offset>`.
    pub fn location(&self, topic: &str) -> String {
        format!("{topic}/{}/{}", self.partition, self.offset)
    }

    /// The value as text if it is UTF-8.
    pub fn value_text(&self) -> Option<&str> {
        std::str::from_utf8(&self.value).ok()
    }
}

/// Which dead letters a command works on; every given criterion must hold.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Stages (any of).
    pub stages: Vec<String>,
    /// Reasons (any of).
    pub reasons: Vec<String>,
    /// Sources (any of).
    pub sources: Vec<String>,
    /// Written at or after.
    pub since: Option<Timestamp>,
    /// Written before.
    pub until: Option<Timestamp>,
}

impl Filter {
    /// Whether `letter` matches.
    pub fn matches(&self, letter: &DeadLetter) -> bool {
        let any = |wanted: &[String], value: Option<&str>| {
            wanted.is_empty() || value.is_some_and(|v| wanted.iter().any(|w| w == v))
        };
        let time = letter.timestamp_ms.map(i128::from);
        any(&self.stages, letter.stage())
            && any(&self.reasons, letter.reason())
            && any(&self.sources, letter.source())
            && self
                .since
                .is_none_or(|since| time.is_some_and(|t| t >= since.unix_millis()))
            && self
                .until
                .is_none_or(|until| time.is_some_and(|t| t < until.unix_millis()))
    }

    /// A stable text of the criteria (names a re-drive's consumer group).
    pub fn fingerprint(&self) -> String {
        let stamp = |t: &Option<Timestamp>| t.map(|t| t.unix_millis().to_string());
        format!(
            "stage={:?};reason={:?};source={:?};since={:?};until={:?}",
            sorted(&self.stages),
            sorted(&self.reasons),
            sorted(&self.sources),
            stamp(&self.since),
            stamp(&self.until),
        )
    }
}

fn sorted(values: &[String]) -> Vec<&str> {
    let mut values: Vec<&str> = values.iter().map(String::as_str).collect();
    values.sort_unstable();
    values.dedup();
    values
}

/// Where each partition starts.
#[derive(Debug, Clone, Copy)]
pub enum Start<'a> {
    /// Its first record (no group: nothing can be committed).
    Beginning,
    /// The offset `group` committed (its first record if none).
    Committed(&'a str),
    /// Its first record, committing progress to `group` (whatever it had committed before).
    Over(&'a str),
}

/// A reader of a topic from a start to its end at the time of opening.
///
/// With a group, each commit also writes down (as the offset's metadata, `left=<n>`) how many
/// records below it were left behind, so a later run can say so.
pub struct Reader {
    consumer: BaseConsumer,
    topic: String,
    /// Per partition: the next offset to read, and the end.
    positions: HashMap<i32, (i64, i64)>,
    /// Per partition: records left behind below the committed offset (as committed, plus
    /// those left since).
    left_behind: HashMap<i32, u64>,
    /// Of those, what earlier runs had left (read at opening).
    left_before: u64,
    idle: Duration,
    warnings: Vec<String>,
}

/// The commit metadata's prefix before the count of records left behind.
const LEFT_METADATA: &str = "left=";

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("topic", &self.topic)
            .field("positions", &self.positions)
            .finish_non_exhaustive()
    }
}

impl Reader {
    /// Opens `topic`: finds its partitions, their ends, and where to start; each request to
    /// the brokers waits at most `timeout`, and so does reading for a record it expects.
    pub fn open(
        settings: &KafkaSettings,
        topic: &str,
        start: Start<'_>,
        timeout: Duration,
    ) -> Result<Self, ReadError> {
        let mut config = voicehub_runtime::kafka::client_config(settings);
        let group = match start {
            Start::Beginning => "voicehub-operator-read".to_owned(),
            Start::Committed(group) | Start::Over(group) => group.to_owned(),
        };
        config
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "earliest");
        let consumer: BaseConsumer = config
            .create()
            .map_err(|e| kafka("creating a consumer")(voicehub_runtime::kafka::redacted(e)))?;
        let metadata = consumer
            .fetch_metadata(Some(topic), timeout)
            .map_err(kafka(format!("metadata of {topic}")))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(ReadError::NoTopic(topic.to_owned()));
        }
        let mut committed = HashMap::new();
        let mut left_behind = HashMap::new();
        if let Start::Committed(_) = start {
            let mut list = TopicPartitionList::new();
            for &partition in &partitions {
                list.add_partition(topic, partition);
            }
            let offsets = consumer
                .committed_offsets(list, timeout)
                .map_err(kafka(format!("offsets committed by group {group}")))?;
            for element in offsets.elements_for_topic(topic) {
                if let Offset::Offset(offset) = element.offset() {
                    committed.insert(element.partition(), offset);
                }
                if let Some(left) = element
                    .metadata()
                    .strip_prefix(LEFT_METADATA)
                    .and_then(|n| n.parse::<u64>().ok())
                {
                    left_behind.insert(element.partition(), left);
                }
            }
        }
        let mut positions = HashMap::new();
        let mut warnings = Vec::new();
        let mut assignment = TopicPartitionList::new();
        for &partition in &partitions {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, timeout)
                .map_err(kafka(format!("watermarks of {topic}/{partition}")))?;
            let from = match committed.get(&partition).copied() {
                None => low,
                Some(at) if at > high => {
                    warnings.push(format!(
                        "{topic}/{partition}: group {group} had reached offset {at}, beyond the \
                         partition's end {high} (the topic was recreated?): reading it from its \
                         first record {low}"
                    ));
                    // What it left behind went with the old topic.
                    left_behind.remove(&partition);
                    low
                }
                Some(at) if at < low => {
                    // What it left behind was below `at`: expired with the rest.
                    left_behind.remove(&partition);
                    warnings.push(format!(
                        "{topic}/{partition}: offsets {at} to {} expired (retention) before group \
                         {group} read them",
                        low - 1
                    ));
                    low
                }
                Some(at) => at,
            };
            positions.insert(partition, (from, high));
            if from < high {
                assignment
                    .add_partition_offset(topic, partition, Offset::Offset(from))
                    .map_err(kafka("assigning"))?;
            }
        }
        consumer.assign(&assignment).map_err(kafka("assigning"))?;
        Ok(Self {
            consumer,
            topic: topic.to_owned(),
            positions,
            left_before: left_behind.values().sum(),
            left_behind,
            idle: timeout,
            warnings,
        })
    }

    /// Records earlier runs of the group left behind (read from its committed offsets).
    pub fn left_before(&self) -> u64 {
        self.left_before
    }

    /// Notes that `letter` is left behind: the next commit of its partition says so.
    pub fn leave(&mut self, letter: &DeadLetter) {
        *self.left_behind.entry(letter.partition).or_default() += 1;
    }

    /// What opening found worth telling (progress that no longer matches the topic).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Records left to read (ends minus starts).
    pub fn remaining(&self) -> u64 {
        self.positions
            .values()
            .map(|(next, end)| u64::try_from(end - next).unwrap_or(0))
            .sum()
    }

    /// The next record, or `None` once every partition reached its end. Blocks.
    pub fn next_letter(&mut self) -> Result<Option<DeadLetter>, ReadError> {
        let mut idle_since = Instant::now();
        loop {
            if self.positions.values().all(|(next, end)| next >= end) {
                return Ok(None);
            }
            match self.consumer.poll(Duration::from_millis(500)) {
                Some(Ok(message)) => {
                    idle_since = Instant::now();
                    let partition = message.partition();
                    let Some((next, end)) = self.positions.get_mut(&partition) else {
                        continue;
                    };
                    if message.offset() >= *end {
                        // Written after opening: left for the next run.
                        *next = *end;
                        continue;
                    }
                    *next = message.offset() + 1;
                    return Ok(Some(letter(&message)));
                }
                Some(Err(error)) => return Err(kafka(format!("reading {}", self.topic))(error)),
                None => {
                    // Offsets can end in gaps (transaction markers, compaction): a partition
                    // whose position passed its end is done.
                    self.catch_up_positions();
                    if idle_since.elapsed() > self.idle
                        && let Some((&partition, &(position, end))) =
                            self.positions.iter().find(|(_, (next, end))| next < end)
                    {
                        return Err(ReadError::Stalled {
                            partition,
                            position,
                            end,
                        });
                    }
                }
            }
        }
    }

    fn catch_up_positions(&mut self) {
        let Ok(positions) = self.consumer.position() else {
            return;
        };
        for element in positions.elements_for_topic(&self.topic) {
            if let (Offset::Offset(position), Some((next, _))) = (
                element.offset(),
                self.positions.get_mut(&element.partition()),
            ) {
                *next = (*next).max(position);
            }
        }
    }

    /// Commits every `(partition, offset)` as done for the reader's group (the next run starts
    /// after each).
    pub fn commit(&self, done: impl IntoIterator<Item = (i32, i64)>) -> Result<(), ReadError> {
        let mut list = TopicPartitionList::new();
        for (partition, offset) in done {
            let mut element = list.add_partition(&self.topic, partition);
            element
                .set_offset(Offset::Offset(offset + 1))
                .map_err(kafka("committing"))?;
            if let Some(left) = self.left_behind.get(&partition) {
                element.set_metadata(format!("{LEFT_METADATA}{left}"));
            }
        }
        if list.count() == 0 {
            return Ok(());
        }
        self.consumer
            .commit(&list, rdkafka::consumer::CommitMode::Sync)
            .map_err(kafka("committing"))
    }
}

fn letter(message: &rdkafka::message::BorrowedMessage<'_>) -> DeadLetter {
    let mut headers = BTreeMap::new();
    if let Some(list) = message.headers() {
        for entry in list.iter() {
            let value = entry
                .value
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            headers.insert(entry.key.to_owned(), value);
        }
    }
    DeadLetter {
        partition: message.partition(),
        offset: message.offset(),
        timestamp_ms: message.timestamp().to_millis(),
        key: message
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned()),
        headers,
        value: message.payload().unwrap_or_default().to_vec(),
    }
}

/// Counts by stage, reason and source, with the oldest and newest timestamps.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    /// Dead letters read (matching the filter or not).
    pub read: u64,
    /// Of those, matching the filter.
    pub total: u64,
    /// Per `stage/reason/source` (`?` where a header is missing).
    pub by_kind: BTreeMap<String, u64>,
    /// The oldest record's timestamp (RFC 3339).
    pub oldest: Option<String>,
    /// The newest record's timestamp (RFC 3339).
    pub newest: Option<String>,
    #[serde(skip)]
    span: Option<(i64, i64)>,
}

impl Summary {
    /// Adds `letter`.
    pub fn add(&mut self, letter: &DeadLetter) {
        self.total += 1;
        let kind = format!(
            "{}/{}/{}",
            letter.stage().unwrap_or("?"),
            letter.reason().unwrap_or("?"),
            letter.source().unwrap_or("?")
        );
        *self.by_kind.entry(kind).or_default() += 1;
        if let Some(t) = letter.timestamp_ms {
            let (low, high) = self.span.get_or_insert((t, t));
            *low = (*low).min(t);
            *high = (*high).max(t);
            self.oldest = Some(rfc3339(*low));
            self.newest = Some(rfc3339(*high));
        }
    }
}

/// Milliseconds since the epoch as RFC 3339 UTC.
pub fn rfc3339(millis: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .ok()
        .and_then(Timestamp::new)
        .map_or_else(|| millis.to_string(), |t| t.to_string())
}
