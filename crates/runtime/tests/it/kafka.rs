use std::time::Duration;

use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::Headers;
use rdkafka::producer::DefaultProducerContext;
use voicehub_model::record::Record;
use voicehub_runtime::kafka::{self, ProduceError};
use voicehub_runtime::settings::KafkaSettings;
use voicehub_testkit::{Storage, TestBroker};

fn settings(broker: &TestBroker) -> KafkaSettings {
    let mut settings = KafkaSettings {
        bootstrap_servers: broker.bootstrap_servers(),
        topics: broker.topics(),
        ..KafkaSettings::default()
    };
    settings.provision.partitions = 3;
    settings.provision.replication_factor = 1;
    settings
}

fn record(key: &str, n: usize) -> Record {
    Record {
        key: Some(key.to_owned()),
        headers: vec![
            ("ce_id", format!("id-{n}")),
            ("ce_specversion", "1.0".into()),
        ],
        value: format!("{{\"n\":{n}}}").into_bytes(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn contract_producer_records_arrive_through_a_consumer_group() -> anyhow::Result<()> {
    // Arrange
    let broker = TestBroker::start().await?;
    let settings = settings(&broker);
    let topic = settings.topics.call_status_changed.clone();
    kafka::ensure_topics(&settings, &[&topic], Duration::from_secs(10)).await?;
    kafka::ensure_topics(&settings, &[&topic], Duration::from_secs(10)).await?;
    let producer = kafka::create_producer(&settings, DefaultProducerContext)?;

    // Act: idempotent, acks=all, murmur2 partitioning, lz4.
    let mut partitions = Vec::new();
    for n in 0..10 {
        let key = if n % 2 == 0 { "call-a" } else { "call-b" };
        let delivered =
            kafka::produce(&producer, &topic, &record(key, n), Duration::from_secs(5)).await?;
        partitions.push((key, delivered.partition));
    }

    // Assert: one key, one partition; everything readable through a group, in order per key.
    for (key, partition) in &partitions {
        let first = partitions.iter().find(|(k, _)| k == key).map(|(_, p)| *p);
        assert_eq!(Some(*partition), first, "{key} moved partitions");
    }
    let consumer = broker.group_consumer(&broker.name("contract-test"), &[&topic])?;
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < 10 {
        let message = tokio::time::timeout_at(deadline, consumer.recv()).await??;
        let headers = message.headers().map(|h| h.count()).unwrap_or(0);
        assert_eq!(headers, 2);
        let value: serde_json::Value = serde_json::from_slice(message.payload().unwrap_or(&[]))?;
        seen.push((
            String::from_utf8_lossy(message.key().unwrap_or(&[])).into_owned(),
            value["n"].as_u64().unwrap_or(u64::MAX),
        ));
        consumer.commit_message(&message, CommitMode::Sync)?;
    }
    for key in ["call-a", "call-b"] {
        let ns: Vec<u64> = seen
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, n)| *n)
            .collect();
        let mut sorted = ns.clone();
        sorted.sort_unstable();
        assert_eq!(ns, sorted, "per-key order for {key}");
        assert_eq!(ns.len(), 5);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_broker_fails_the_produce_within_its_deadline() -> anyhow::Result<()> {
    let mut broker = TestBroker::start_stoppable().await?;
    let settings = settings(&broker);
    let topic = settings.topics.unrouted.clone();
    kafka::ensure_topics(&settings, &[&topic], Duration::from_secs(10)).await?;
    let producer = kafka::create_producer(&settings, DefaultProducerContext)?;
    kafka::produce(&producer, &topic, &record("k", 0), Duration::from_secs(5)).await?;

    broker.stop().await;
    let deadline = Duration::from_millis(800);
    let started = std::time::Instant::now();
    let result = kafka::produce(&producer, &topic, &record("k", 1), deadline).await;
    assert!(
        matches!(result, Err(ProduceError::Deadline(_))),
        "{result:?}"
    );
    // Bounded by the deadline (with scheduling slack), not by librdkafka's own timeouts.
    assert!(started.elapsed() < deadline * 3, "{:?}", started.elapsed());

    broker.resume().await?;
    kafka::produce(&producer, &topic, &record("k", 2), Duration::from_secs(10)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outage_longer_than_the_message_timeout_recovers_with_a_new_producer()
-> anyhow::Result<()> {
    // Arrange: records time out inside librdkafka while the broker is down, so the idempotent
    // producer must bump its epoch; tansu's memory storage fences it instead (see
    // `voicehub_testkit::Storage`), and only a new producer can deliver again.
    let mut broker = TestBroker::start_with(Storage::Memory).await?;
    let mut settings = settings(&broker);
    settings.message_timeout_ms = 1_000;
    let topic = settings.topics.unrouted.clone();
    kafka::ensure_topics(&settings, &[&topic], Duration::from_secs(10)).await?;
    let producer = std::sync::Arc::new(kafka::RecoveringProducer::new(&settings, || {
        DefaultProducerContext
    })?);
    // A fresh producer's first record can itself outlast the 1 s message timeout on a loaded
    // machine (producer id, metadata): the arrangement is a producer that has delivered.
    let ready_by = tokio::time::Instant::now() + Duration::from_secs(30);
    while let Err(error) = producer
        .produce(&topic, &record("k", 0), Duration::from_secs(5))
        .await
    {
        assert!(
            tokio::time::Instant::now() < ready_by,
            "never delivered: {error}"
        );
    }
    let generation_before = producer.generation();

    // Act
    broker.stop().await;
    let during = producer
        .produce(&topic, &record("k", 1), Duration::from_secs(2))
        .await;
    broker.resume().await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut attempts = 0;
    let delivered = loop {
        attempts += 1;
        let result = producer
            .produce(&topic, &record("k", 2), Duration::from_secs(2))
            .await;
        if let Ok(delivered) = result {
            break delivered;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no recovery after {attempts} attempts"
        );
    };

    // Assert: acknowledged again, by a replacement producer.
    assert!(during.is_err());
    assert!(delivered.offset >= 1);
    assert!(producer.generation() > generation_before);
    Ok(())
}

/// A delivery outlasting its deadline, or one its caller stops waiting for, still runs to its
/// end (where the callers count it, report it to the deduplication table, replace a wedged
/// producer): nothing that was started is silently abandoned.
#[tokio::test]
async fn a_delivery_past_its_deadline_or_abandoned_still_finishes() -> anyhow::Result<()> {
    let delivery = |done: tokio::sync::oneshot::Sender<()>| async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = done.send(());
        Ok(kafka::Delivered {
            partition: 0,
            offset: 7,
        })
    };

    // Past the deadline: the caller hears Deadline, the delivery goes on.
    let (done, finished) = tokio::sync::oneshot::channel();
    let deadline = Duration::from_millis(20);
    let result = kafka::within_deadline(delivery(done), deadline).await;
    assert!(
        matches!(result, Err(ProduceError::Deadline(d)) if d == deadline),
        "{result:?}"
    );
    tokio::time::timeout(Duration::from_secs(5), finished).await??;

    // Abandoned: the caller's future is dropped while waiting.
    let (done, finished) = tokio::sync::oneshot::channel();
    let waiting = kafka::within_deadline(delivery(done), Duration::from_secs(60));
    assert!(
        tokio::time::timeout(Duration::from_millis(20), waiting)
            .await
            .is_err()
    );
    tokio::time::timeout(Duration::from_secs(5), finished).await??;

    // Within the deadline: its own result.
    let (done, _finished) = tokio::sync::oneshot::channel();
    let result = kafka::within_deadline(delivery(done), Duration::from_secs(5)).await?;
    assert_eq!(result.offset, 7);
    Ok(())
}

/// A delivery that panics while its caller waits is a failed delivery for that caller (as a
/// panicked spawned task was), not a panic in the request; one dropped before it was ever
/// polled still finishes.
#[tokio::test]
async fn a_panicking_delivery_fails_and_an_unpolled_one_still_finishes() -> anyhow::Result<()> {
    let panicking = async {
        tokio::task::yield_now().await;
        panic!("a bug in a delivery's tail");
        #[allow(unreachable_code)]
        Ok(kafka::Delivered {
            partition: 0,
            offset: 0,
        })
    };
    let result = kafka::within_deadline(panicking, Duration::from_secs(5)).await;
    assert!(matches!(result, Err(ProduceError::Failed(_))), "{result:?}");

    let (done, finished) = tokio::sync::oneshot::channel();
    drop(kafka::within_deadline(
        async move {
            let _ = done.send(());
            Ok(kafka::Delivered {
                partition: 0,
                offset: 1,
            })
        },
        Duration::from_secs(5),
    ));
    tokio::time::timeout(Duration::from_secs(5), finished).await??;
    Ok(())
}
