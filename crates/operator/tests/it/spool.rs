use std::time::Duration;

use voicehub_model::record::header;
use voicehub_model::record_codec;
use voicehub_operator::interrupt::Interrupt;
use voicehub_operator::spool::{Run, WINDOW, produce_set_aside, produce_spool};
use voicehub_spool::{Options, Spool};
use voicehub_testkit::TestBroker;

use crate::helpers::{blocking, event_record, kafka_settings, status_body};

/// A run that no signal interrupts.
fn run(dry_run: bool) -> Run<'static> {
    static NEVER: std::sync::LazyLock<Interrupt> = std::sync::LazyLock::new(Interrupt::default);
    Run {
        dry_run,
        interrupt: &NEVER,
    }
}

fn spool_options(dir: &std::path::Path) -> Options {
    Options {
        dir: dir.to_owned(),
        segment_bytes: 4 * 1024,
        max_bytes: 64 * 1024 * 1024,
        max_age: Duration::from_secs(3600),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_instances_spool_is_produced_in_order_and_emptied() {
    let broker = TestBroker::start().await.unwrap();
    let kafka = kafka_settings(&broker);
    let topic = kafka.topics.call_status_changed.clone();
    broker.create_topics(&[&topic], 2).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // An instance set one record aside (and wrote down that it did), then spooled 300 events
    // of 3 calls (several segments) and died without forwarding any.
    {
        let (spool, _) = Spool::open(spool_options(dir.path())).unwrap();
        let aside = event_record(&status_body("evt-aside", "call-aside", r#""completed""#));
        spool
            .append(record_codec::encode(&topic, &aside).unwrap())
            .await
            .unwrap();
        let entry = spool.read(0, 1).unwrap().remove(0);
        spool.set_aside(&entry, "too_large").unwrap();
        spool.persist_acknowledgements().unwrap();
        for i in 0..300 {
            let body = status_body(
                &format!("evt-{i:03}"),
                &format!("call-{}", i % 3),
                r#""completed""#,
            );
            let bytes = record_codec::encode(&topic, &event_record(&body)).unwrap();
            spool.append(bytes).await.unwrap();
            if i == 150 {
                // Bytes no version of the bridge can read, amid the rest.
                spool.append(b"\x07junk".to_vec()).await.unwrap();
            }
        }
    }
    assert!(dir.path().join("undeliverable").read_dir().unwrap().count() == 1);

    // Act
    let path = dir.path().to_owned();
    let settings = kafka.clone();
    let dry = blocking({
        let (path, settings) = (path.clone(), settings.clone());
        move |runtime| produce_spool(&settings, &path, run(true), runtime).unwrap()
    })
    .await;
    let report =
        blocking(move |runtime| produce_spool(&settings, &path, run(false), runtime).unwrap())
            .await;

    // Assert: each event once, each call's in spool order; the spool empty, only the
    // unreadable record left (set aside, so that no later open sends what follows it again).
    assert_eq!(
        (dry.produced, report.produced),
        (301, 301),
        "{dry:?} {report:?}"
    );
    assert_eq!(report.left.len(), 1, "{report:?}");
    assert!(report.left[0].why.starts_with("unreadable"), "{report:?}");
    let records = broker
        .consume_until(
            &[&topic],
            |r| r.len() >= 301,
            Duration::from_secs(2),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(records.len(), 301);
    for call in 0..3 {
        let ids: Vec<String> = records
            .iter()
            .filter(|r| r.key.as_deref() == Some(&format!("call-{call}")))
            .map(|r| r.header(header::ID).unwrap().to_owned())
            .collect();
        let expected: Vec<String> = (0..300)
            .filter(|i| i % 3 == call)
            .map(|i| format!("evt-{i:03}"))
            .collect();
        assert_eq!(ids, expected, "call-{call}");
    }
    let (spool, recovery) = Spool::open(spool_options(dir.path())).unwrap();
    assert_eq!(recovery.records, 0, "{recovery:?}");
    assert!(spool.read(0, 10).unwrap().is_empty());
    assert_eq!(
        dir.path().join("undeliverable").read_dir().unwrap().count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn set_aside_files_go_once_and_unreadable_ones_stay() {
    let broker = TestBroker::start().await.unwrap();
    let kafka = kafka_settings(&broker);
    let topic = kafka.topics.call_status_changed.clone();
    broker.create_topics(&[&topic], 2).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let undeliverable = dir.path().join("undeliverable");
    std::fs::create_dir(&undeliverable).unwrap();
    for i in 0..3 {
        let record = event_record(&status_body(
            &format!("evt-{i}"),
            "call-1",
            r#""completed""#,
        ));
        std::fs::write(
            undeliverable.join(format!("{i:020}.rec")),
            record_codec::encode(&topic, &record).unwrap(),
        )
        .unwrap();
    }
    std::fs::write(
        undeliverable.join("00000000000000000009.rec"),
        b"\x07garbage",
    )
    .unwrap();
    // Spooled for a topic this configuration does not name.
    let elsewhere = event_record(&status_body("evt-x", "call-1", r#""completed""#));
    std::fs::write(
        undeliverable.join("00000000000000000010.rec"),
        record_codec::encode("another.instances.topic", &elsewhere).unwrap(),
    )
    .unwrap();
    std::fs::write(
        undeliverable.join("00000000000000000004-00000000000000000005.damaged"),
        b"xx",
    )
    .unwrap();

    // The spool's own queue (a segment file), beside undeliverable/.
    std::fs::write(dir.path().join("00000000000000000011.seg"), b"").unwrap();

    // Act: twice (the second finds only what cannot go), then from the spool directory.
    let settings = kafka.clone();
    let (path, spool_dir) = (undeliverable.clone(), dir.path().to_owned());
    let (first, second, third) = blocking(move |runtime| {
        (
            produce_set_aside(&settings, &path, run(false), runtime).unwrap(),
            produce_set_aside(&settings, &path, run(false), runtime).unwrap(),
            produce_set_aside(&settings, &spool_dir, run(false), runtime).unwrap(),
        )
    })
    .await;

    // Assert
    let counts = |r: &voicehub_operator::spool::SpoolReport| {
        (r.produced, r.left.len(), r.kept.len(), r.queue_segments)
    };
    assert_eq!(counts(&first), (3, 2, 1, 0), "{first:?}");
    assert_eq!(counts(&second), (0, 2, 1, 0), "{second:?}");
    // Named from the spool directory, the queue's segment is mentioned (not produced).
    assert_eq!(counts(&third), (0, 2, 1, 1), "{third:?}");
    assert!(
        first.left.iter().any(|l| l.why.starts_with("unreadable")),
        "{first:?}"
    );
    assert!(
        first.left.iter().any(|l| l.what.ends_with("10.rec")
            && l.why
                .contains("`another.instances.topic`, which the configuration does not name")),
        "{first:?}"
    );
    let records = broker
        .consume_until(
            &[&topic],
            |r| r.len() >= 3,
            Duration::from_secs(2),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    let ids: Vec<&str> = records
        .iter()
        .map(|r| r.header(header::ID).unwrap())
        .collect();
    assert_eq!(ids, ["evt-0", "evt-1", "evt-2"]);
    assert_eq!(undeliverable.read_dir().unwrap().count(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spool_record_for_another_topic_stops_the_run_and_stays_queued_with_what_follows() {
    // Arrange: three records, the second for a topic this configuration does not name.
    let broker = TestBroker::start().await.unwrap();
    let kafka = kafka_settings(&broker);
    let topic = kafka.topics.call_status_changed.clone();
    broker.create_topics(&[&topic], 1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    {
        let (spool, _) = Spool::open(spool_options(dir.path())).unwrap();
        for (id, to) in [
            ("evt-0", topic.as_str()),
            ("evt-1", "another.instances.topic"),
            ("evt-2", topic.as_str()),
        ] {
            let record = event_record(&status_body(id, "call-1", r#""completed""#));
            spool
                .append(record_codec::encode(to, &record).unwrap())
                .await
                .unwrap();
        }
    }

    // Act
    let (path, settings) = (dir.path().to_owned(), kafka.clone());
    let stopped =
        blocking(move |runtime| produce_spool(&settings, &path, run(false), runtime).unwrap_err())
            .await;

    // Assert: the first produced (and reported beside the error), the foreign one and the one
    // after it still queued, nothing set aside.
    assert_eq!(stopped.report.produced, 1, "{stopped:?}");
    let text = stopped.to_string();
    assert!(
        text.contains("record 1 is for topic `another.instances.topic`"),
        "{text}"
    );
    let records = broker
        .consume_until(
            &[&topic],
            |r| !r.is_empty(),
            Duration::from_secs(2),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    let ids: Vec<&str> = records
        .iter()
        .map(|r| r.header(header::ID).unwrap())
        .collect();
    assert_eq!(ids, ["evt-0"]);
    let (_, recovery) = Spool::open(spool_options(dir.path())).unwrap();
    assert_eq!(recovery.records, 2, "{recovery:?}");
    assert!(!dir.path().join("undeliverable").exists());
}

/// `voicehub spool produce --spool DIR` against `broker`, its output piped.
fn spool_produce(broker: &TestBroker, dir: &std::path::Path) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_voicehub"))
        .args(["spool", "produce", "--spool"])
        .arg(dir)
        .env_remove("VOICEHUB_BRIDGE_CONFIG")
        .env(
            "VOICEHUB_BRIDGE__KAFKA__BOOTSTRAP_SERVERS",
            broker.bootstrap_servers(),
        )
        .env(
            "VOICEHUB_BRIDGE__KAFKA__TOPICS__CALL_STATUS_CHANGED",
            broker.topics().call_status_changed,
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_spool_produce_sends_again_at_most_one_window_and_a_signal_nothing() {
    // Arrange: a stopped instance's spool of 4,000 events (unique ids), in one segment of the
    // ingress's default size (a segment wholly acknowledged is deleted, which would bound the
    // duplicates by itself).
    const EVENTS: usize = 4_000;
    // Apache Kafka (the run's, or one of its own): 4,000 records read back whole.
    let broker = TestBroker::kafka().await.unwrap();
    let topic = broker.topics().call_status_changed;
    broker.create_topics(&[&topic], 2).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    {
        let (spool, _) = Spool::open(Options {
            segment_bytes: 16 * 1024 * 1024,
            ..spool_options(dir.path())
        })
        .unwrap();
        for i in 0..EVENTS {
            let body = status_body(
                &format!("evt-{i:05}"),
                &format!("call-{}", i % 7),
                r#""completed""#,
            );
            let bytes = record_codec::encode(&topic, &event_record(&body)).unwrap();
            spool.append(bytes).await.unwrap();
        }
    }
    let produced = |at_least: usize| {
        let (broker, topic) = (&broker, &topic);
        async move {
            broker
                .wait_for_records(topic, at_least, Duration::from_secs(120))
                .await
                .unwrap()
                .len()
        }
    };

    // Act: killed outright once more than two windows went (all of them lost to the old
    // write-at-the-end), then interrupted by SIGINT, then run to the end.
    let mut killed = spool_produce(&broker, dir.path());
    produced(2 * WINDOW + 200).await;
    killed.kill().unwrap();
    killed.wait().unwrap();
    // A request the killed process had sent may still land: count once the topic is still.
    let mut after_kill = produced(0).await;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = produced(0).await;
        if now == after_kill {
            break;
        }
        after_kill = now;
    }
    let interrupted = spool_produce(&broker, dir.path());
    produced(after_kill + 300).await;
    let signal = std::process::Command::new("kill")
        .args(["-INT", &interrupted.id().to_string()])
        .status()
        .unwrap();
    assert!(signal.success());
    let interrupted = interrupted.wait_with_output().unwrap();
    let after_signal = produced(0).await;
    let last = spool_produce(&broker, dir.path())
        .wait_with_output()
        .unwrap();

    // Assert: the signalled run reported its work in its JSON line (exit 3: work left); the
    // last finished; every event on the topic, the only duplicates from the kill, at most one
    // window of them.
    let report = |output: &std::process::Output| -> serde_json::Value {
        serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stderr)))
    };
    let (signalled, finished) = (report(&interrupted), report(&last));
    assert_eq!(interrupted.status.code(), Some(3), "{signalled}");
    assert_eq!(signalled["interrupted"], true, "{signalled}");
    assert_eq!(
        signalled["produced"].as_u64(),
        Some((after_signal - after_kill) as u64),
        "a signal stops after the record in hand, written down"
    );
    assert_eq!(last.status.code(), Some(0), "{finished}");
    let records = broker.read_all(&topic).await.unwrap();
    let mut ids: Vec<&str> = records
        .iter()
        .map(|r| r.header(header::ID).unwrap())
        .collect();
    ids.sort_unstable();
    let total = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), EVENTS, "every event produced");
    let duplicates = total - EVENTS;
    assert_eq!(
        finished["produced"].as_u64(),
        Some((total - after_signal) as u64)
    );
    assert!(
        duplicates <= WINDOW,
        "{duplicates} sent again after the kill (at most one window, {WINDOW})"
    );
    eprintln!("killed after {after_kill} produced: {duplicates} sent again");
}
