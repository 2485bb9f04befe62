//! The test kit's brokers are real Kafka-compatible brokers: a plain rdkafka client can create
//! topics, produce, and read back through them, across a stop and resume. Most of these are
//! about the embedded tansu broker; the last ones about Apache Kafka.

use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use voicehub_testkit::{Storage, TestBroker, TestkitError};

async fn produce(broker: &TestBroker, topic: &str, key: &str, value: &str) -> anyhow::Result<()> {
    let producer: FutureProducer = broker
        .client_config()
        .set("message.timeout.ms", "5000")
        .create()?;
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(value),
            Duration::from_secs(5),
        )
        .await
        .map_err(|(e, _)| e)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn records_produced_are_read_back_in_order() -> anyhow::Result<()> {
    let broker = TestBroker::start_with(Storage::Sqlite).await?;
    broker.create_topics(&["t"], 1).await?;
    broker.create_topics(&["t"], 1).await?; // idempotent

    for i in 0..3 {
        produce(&broker, "t", "k", &format!("v{i}")).await?;
    }

    let records = broker.read_all("t").await?;
    let values: Vec<_> = records.iter().map(|r| r.value.clone()).collect();
    assert_eq!(values, [b"v0".to_vec(), b"v1".to_vec(), b"v2".to_vec()]);
    assert!(records.iter().all(|r| r.key.as_deref() == Some("k")));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_topic_reads_as_empty_and_waiting_for_more_times_out() -> anyhow::Result<()> {
    let broker = TestBroker::start_with(Storage::Sqlite).await?;
    broker.create_topics(&["empty"], 3).await?;

    assert!(broker.read_all("empty").await?.is_empty());
    let err = broker
        .wait_for_records("empty", 1, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, TestkitError::Timeout { got: 0, .. }), "{err}");
    Ok(())
}

/// Stops `broker` after one record, checks its port refuses connections, resumes it, adds
/// another: both must be there, in order.
async fn stop_refuses_and_resume_keeps_the_data(mut broker: TestBroker) -> anyhow::Result<()> {
    broker.create_topics(&["t"], 1).await?;
    produce(&broker, "t", "k", "before").await?;

    broker.stop().await;
    let refused = tokio::net::TcpStream::connect(broker.bootstrap_servers()).await;

    broker.resume().await?;
    produce(&broker, "t", "k", "after").await?;
    let values: Vec<_> = broker
        .read_all("t")
        .await?
        .into_iter()
        .map(|r| r.value)
        .collect();
    assert!(refused.is_err(), "a stopped broker accepted a connection");
    assert_eq!(values, [b"before".to_vec(), b"after".to_vec()]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_broker_refuses_connections_and_resumes_with_its_data() -> anyhow::Result<()> {
    stop_refuses_and_resume_keeps_the_data(TestBroker::start_with(Storage::Sqlite).await?).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_port_already_taken_is_an_error_not_someone_elses_broker() -> anyhow::Result<()> {
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = taken.local_addr()?.port();

    let started = TestBroker::start_on(port, Storage::Memory).await;

    let err = started.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    Ok(())
}

/// Produces `count` records in one batch to partition 0 of `topic`, then reads that partition
/// from `from` (inside the batch) with a plain consumer; returns the offsets read.
async fn read_from_inside_a_batch(
    broker: &TestBroker,
    topic: &str,
    count: i64,
    from: i64,
) -> anyhow::Result<Vec<i64>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::producer::Producer;

    broker.create_topics(&[topic], 1).await?;
    let producer: FutureProducer = broker
        .client_config()
        .set("linger.ms", "200")
        .set("message.timeout.ms", "5000")
        .create()?;
    let deliveries: Vec<_> = (0..count)
        .map(|i| {
            let payload = i.to_string();
            producer
                .send_result(FutureRecord::to(topic).key("k").payload(&payload))
                .map_err(|(e, _)| e)
        })
        .collect::<Result<_, _>>()?;
    producer.flush(Duration::from_secs(5))?;
    for delivery in deliveries {
        delivery.await?.map_err(|(e, _)| e)?;
    }
    let topic = topic.to_owned();
    let config = broker.client_config();
    tokio::task::spawn_blocking(move || {
        let mut config = config;
        let consumer: BaseConsumer = config
            .set("group.id", "batch-reader")
            .set("enable.auto.commit", "false")
            .create()?;
        let mut assignment = rdkafka::TopicPartitionList::new();
        assignment.add_partition_offset(&topic, 0, rdkafka::Offset::Offset(from))?;
        consumer.assign(&assignment)?;
        let mut offsets = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                offsets.push(message?.offset());
            }
        }
        Ok(offsets)
    })
    .await?
}

/// Why `voicehub-dev` offers no memory storage and the accounting tests run on Apache Kafka:
/// tansu 0.6's memory engine answers a fetch that starts inside a stored batch with the batches
/// after it, skipping the rest of that batch. A consumer starts inside a batch after a pause
/// (librdkafka fetches again from the next record it has not handed over), a seek, or a
/// restart from a committed offset: the enricher lost 1,657 of 10,000 records that way in the
/// accounting test. Its SQLite engine serves the fetch exactly. If this starts failing for
/// memory, tansu has fixed it.
#[tokio::test(flavor = "multi_thread")]
async fn a_fetch_from_inside_a_batch_gets_the_rest_of_it_except_from_tansus_memory_engine()
-> anyhow::Result<()> {
    let sqlite = TestBroker::start_with(Storage::Sqlite).await?;
    let memory = TestBroker::start_with(Storage::Memory).await?;
    let kafka = TestBroker::kafka().await?;

    let exact = read_from_inside_a_batch(&sqlite, "batch", 10, 4).await?;
    let skipped = read_from_inside_a_batch(&memory, "batch", 10, 4).await?;
    // Apache Kafka returns the whole batch; the client drops the records before the offset.
    let from_kafka = read_from_inside_a_batch(&kafka, &kafka.name("batch"), 10, 4).await?;

    assert_eq!(exact, (4..10).collect::<Vec<_>>());
    assert_eq!(from_kafka, exact);
    assert!(
        !skipped.contains(&4),
        "tansu's memory engine now serves a fetch from inside a batch: {skipped:?}"
    );
    Ok(())
}

/// Apache Kafka stopped in a test is killed (a crash, not a freeze): its port refuses
/// connections, and it comes back on the same port with everything it acknowledged.
#[tokio::test(flavor = "multi_thread")]
async fn apache_kafka_killed_and_resumed_serves_what_it_acknowledged() -> anyhow::Result<()> {
    stop_refuses_and_resume_keeps_the_data(TestBroker::kafka_of_its_own().await?).await
}

/// On the test run's shared Kafka, each test's names are its own; on a broker of a test's
/// own, they are the defaults (what the services would use).
#[tokio::test(flavor = "multi_thread")]
async fn names_are_unique_on_a_shared_broker_and_the_defaults_on_an_own_one() -> anyhow::Result<()>
{
    let defaults = voicehub_model::Topics::default();
    let own = TestBroker::start_with(Storage::Memory).await?;
    assert_eq!(own.topics(), defaults);
    assert_eq!(own.name("group"), "group");
    if std::env::var_os(voicehub_testkit::kafka::KAFKA_ENV).is_some() {
        let (a, b) = (TestBroker::start().await?, TestBroker::start().await?);
        assert!(a.is_kafka() && b.is_kafka());
        assert_ne!(a.topics().dead_letter, b.topics().dead_letter);
        assert_ne!(a.name("group"), b.name("group"));
        a.topics().validate()?;
    }
    Ok(())
}
