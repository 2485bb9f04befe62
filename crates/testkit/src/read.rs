use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::{Result, TestBroker, TestkitError};

/// A record as read back from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    /// Its topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its key, if any (lossy UTF-8).
    pub key: Option<String>,
    /// Its headers, in order (values lossy UTF-8).
    pub headers: Vec<(String, String)>,
    /// Its value.
    pub value: Vec<u8>,
    /// Its timestamp (milliseconds since the Unix epoch), if it has one.
    pub timestamp_ms: Option<i64>,
}

impl ConsumedRecord {
    /// The first header of that name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value parsed as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.value).unwrap_or(serde_json::Value::Null)
    }
}

const POLL: Duration = Duration::from_millis(100);

impl TestBroker {
    /// Every record now on `topic`, in partition then offset order. Reads up to the high
    /// watermark of each partition, so it neither waits for records that will not come nor
    /// misses ones already acknowledged.
    pub async fn read_all(&self, topic: &str) -> Result<Vec<ConsumedRecord>> {
        let config = self.client_config();
        let topic = topic.to_owned();
        off_runtime(move || read_all_blocking(config, &topic)).await
    }

    /// Waits until `topic` holds at least `expected` records (or `timeout` passes) and returns
    /// them all.
    pub async fn wait_for_records(
        &self,
        topic: &str,
        expected: usize,
        timeout: Duration,
    ) -> Result<Vec<ConsumedRecord>> {
        let started = tokio::time::Instant::now();
        loop {
            let records = self.read_all(topic).await?;
            if records.len() >= expected {
                return Ok(records);
            }
            if started.elapsed() > timeout {
                return Err(TestkitError::Timeout {
                    topic: topic.to_owned(),
                    expected,
                    got: records.len(),
                    waited: started.elapsed(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Consumes `topics` from their beginning, without relying on watermarks (tansu's lag
    /// behind what it serves), until `done` says the records so far are complete and no new
    /// record arrived for `quiet` (so trailing duplicates are seen too), or until `timeout`
    /// (then it returns what it has: the caller's reconciliation reports the shortfall).
    pub async fn consume_until(
        &self,
        topics: &[&str],
        done: impl Fn(&[ConsumedRecord]) -> bool + Send + 'static,
        quiet: Duration,
        timeout: Duration,
    ) -> Result<Vec<ConsumedRecord>> {
        let config = self.client_config();
        let topics: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
        off_runtime(move || {
            let consumer = reader(config, READER_GROUP)?;
            let mut assignment = TopicPartitionList::new();
            for topic in &topics {
                for partition in partitions(&consumer, topic)? {
                    assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
                }
            }
            consumer.assign(&assignment)?;
            let mut records = Vec::new();
            let started = std::time::Instant::now();
            let mut last_new = started;
            let mut complete = false;
            while started.elapsed() < timeout {
                match consumer.poll(POLL) {
                    Some(message) => {
                        records.push(consumed(&message?));
                        last_new = std::time::Instant::now();
                        complete = false;
                    }
                    None => {
                        complete = complete || done(&records);
                        if complete && last_new.elapsed() >= quiet {
                            break;
                        }
                    }
                }
            }
            Ok(records)
        })
        .await
    }

    /// The sum of the offsets `group` has committed on `topic`'s partitions (a partition with
    /// no commit counts 0): with offsets from 0, the records it has finished.
    pub async fn committed(&self, group: &str, topic: &str) -> Result<i64> {
        let config = self.client_config();
        let (group, topic) = (group.to_owned(), topic.to_owned());
        off_runtime(move || {
            let consumer = reader(config, &group)?;
            let mut list = TopicPartitionList::new();
            for partition in partitions(&consumer, &topic)? {
                list.add_partition(&topic, partition);
            }
            let committed = consumer.committed_offsets(list, TIMEOUT)?;
            Ok(committed
                .elements()
                .iter()
                .filter_map(|element| match element.offset() {
                    Offset::Offset(offset) => Some(offset),
                    _ => None,
                })
                .sum())
        })
        .await
    }
}

/// The group the test kit reads in (it assigns partitions itself and never commits).
const READER_GROUP: &str = "voicehub-testkit-reader";

/// A consumer in `group` that never commits.
fn reader(mut config: ClientConfig, group: &str) -> Result<BaseConsumer> {
    Ok(config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()?)
}

/// Runs a blocking client call on a thread of its own, off the async runtime.
pub(crate) async fn off_runtime<T: Send + 'static>(
    call: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|e| TestkitError::Broker(format!("blocking task: {e}")))?
}

fn read_all_blocking(config: ClientConfig, topic: &str) -> Result<Vec<ConsumedRecord>> {
    let consumer = reader(config, READER_GROUP)?;
    let mut assignment = TopicPartitionList::new();
    let mut ends = Vec::new();
    for partition in partitions(&consumer, topic)? {
        assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
        let (low, high) = watermarks(&consumer, topic, partition)?;
        if high > low {
            ends.push((partition, high));
        }
    }
    consumer.assign(&assignment)?;
    let mut records = Vec::new();
    // tansu answers a fetch from SQLite slowly (seconds for a few hundred records on a busy
    // machine): the bound is on time without progress, not on the whole read.
    let mut last_progress = std::time::Instant::now();
    while !ends.is_empty() {
        if last_progress.elapsed() > TIMEOUT {
            return Err(TestkitError::Timeout {
                topic: topic.to_owned(),
                expected: records.len() + 1,
                got: records.len(),
                waited: TIMEOUT,
            });
        }
        let Some(message) = consumer.poll(POLL) else {
            continue;
        };
        last_progress = std::time::Instant::now();
        let record = consumed(&message?);
        ends.retain(|(partition, high)| {
            !(*partition == record.partition && record.offset + 1 >= *high)
        });
        records.push(record);
    }
    records.sort_by_key(|r| (r.partition, r.offset));
    Ok(records)
}

const TIMEOUT: Duration = Duration::from_secs(10);

/// A partition's low and high watermarks. Apache Kafka answers `NotLeaderForPartition` (or
/// `LeaderNotAvailable`) for a partition of a topic created a moment ago until its leader is
/// elected: asked again until [`TIMEOUT`].
fn watermarks(consumer: &BaseConsumer, topic: &str, partition: i32) -> Result<(i64, i64)> {
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaErrorCode::{LeaderNotAvailable, NotLeaderForPartition};
    let started = std::time::Instant::now();
    loop {
        match consumer.fetch_watermarks(topic, partition, TIMEOUT) {
            Err(KafkaError::MetadataFetch(LeaderNotAvailable | NotLeaderForPartition))
                if started.elapsed() < TIMEOUT =>
            {
                std::thread::sleep(POLL);
            }
            result => return Ok(result?),
        }
    }
}

fn partitions(consumer: &BaseConsumer, topic: &str) -> Result<Vec<i32>> {
    let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
    Ok(metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}

fn consumed<M: Message>(message: &M) -> ConsumedRecord {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| {
                    (
                        h.key.to_owned(),
                        String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    ConsumedRecord {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        key: message
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned()),
        headers,
        value: message.payload().unwrap_or_default().to_vec(),
        timestamp_ms: message.timestamp().to_millis(),
    }
}
