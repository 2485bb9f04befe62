//! `voicehub-tail`: prints a topic's records for downstream developers: partition, offset and
//! key, the CloudEvents headers, and the value as pretty JSON (as text when it is not JSON).
//!
//! ```text
//! voicehub-tail --topic voicehub.analysis-enriched.v1 [--brokers 127.0.0.1:9092] [--follow]
//! ```
//!
//! From the beginning of every partition; without `--follow` it stops at the end.

#![allow(clippy::print_stdout)] // a command-line tool: stdout is its interface

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// Prints a topic's records: partition, offset and key, the CloudEvents headers, and the value
/// as pretty JSON (as text when it is not JSON), from the beginning of every partition.
#[derive(Debug, Parser)]
#[command(name = "voicehub-tail", version)]
struct Args {
    /// The topic.
    #[arg(long)]
    topic: String,
    /// Bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Keep waiting for new records instead of stopping at the end.
    #[arg(long)]
    follow: bool,
}

fn main() -> anyhow::Result<()> {
    let Args {
        topic,
        brokers,
        follow,
    } = Args::parse();
    let timeout = Duration::from_secs(5);

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "voicehub-tail")
        .set("enable.auto.commit", "false")
        .create()
        .context("creating the Kafka client")?;
    let metadata = consumer
        .fetch_metadata(Some(&topic), timeout)
        .with_context(|| format!("reading the metadata of {topic} from {brokers}"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    anyhow::ensure!(
        !partitions.is_empty(),
        "topic {topic} has no partitions (does it exist?)"
    );
    let mut assignment = TopicPartitionList::new();
    let mut remaining: HashMap<i32, i64> = HashMap::new();
    for &partition in &partitions {
        assignment.add_partition_offset(&topic, partition, Offset::Beginning)?;
        let (low, high) = consumer.fetch_watermarks(&topic, partition, timeout)?;
        if high > low {
            remaining.insert(partition, high);
        }
    }
    consumer.assign(&assignment)?;

    while follow || !remaining.is_empty() {
        let Some(result) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = result.context("consuming")?;
        print_record(&message);
        if let Some(&end) = remaining.get(&message.partition())
            && message.offset() + 1 >= end
        {
            remaining.remove(&message.partition());
        }
    }
    Ok(())
}

fn print_record<M: Message>(message: &M) {
    let key = message
        .key()
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    println!(
        "--- {}[{}]@{}  key={key}",
        message.topic(),
        message.partition(),
        message.offset()
    );
    if let Some(headers) = message.headers() {
        for header in headers.iter() {
            let value = header
                .value
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            println!("{}: {value}", header.key);
        }
    }
    let payload = message.payload().unwrap_or_default();
    match serde_json::from_slice::<serde_json::Value>(payload) {
        Ok(value) => println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        ),
        Err(_) => println!("{}", String::from_utf8_lossy(payload)),
    }
}
