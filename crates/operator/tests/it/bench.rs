//! Re-drive throughput, a benchmark rather than a test (it asserts only that everything went):
//! `cargo nextest run -p voicehub-operator --run-ignored only --no-capture -E 'test(bench)'`
//! (with `VOICEHUB_TEST_KAFKA` for Apache Kafka). Figures in docs/benchmarks.md.

use std::time::{Duration, Instant};

use voicehub_model::parse_webhook;
use voicehub_operator::dead_letters::Filter;
use voicehub_operator::interrupt::Interrupt;
use voicehub_operator::redrive::{self, Options};
use voicehub_testkit::TestBroker;

use crate::helpers::{
    blocking, ingress_dead_letter, kafka_settings, produce, producer, status_body,
};

const LETTERS: usize = 5_000;

#[allow(clippy::print_stdout)] // a benchmark's figures
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark: run it on its own"]
async fn bench_redrive_throughput() {
    let broker = TestBroker::start().await.unwrap();
    let kafka = kafka_settings(&broker);
    let topics = kafka.topics.clone();
    broker
        .create_topics(&[&topics.dead_letter, &topics.call_status_changed], 6)
        .await
        .unwrap();
    let producer = producer(&kafka);
    for i in 0..LETTERS {
        let body = status_body(
            &format!("evt-{i}"),
            &format!("call-{}", i % 100),
            r#""completed""#,
        );
        produce(
            &producer,
            &topics.dead_letter,
            &ingress_dead_letter(&body, "invalid_field"),
        )
        .await;
    }
    broker
        .wait_for_records(&topics.dead_letter, LETTERS, Duration::from_secs(120))
        .await
        .unwrap();

    let options = |dry_run| Options {
        group: broker.name(if dry_run { "bench-dry" } else { "bench" }),
        filter: Filter::default(),
        dry_run,
        rate: None,
        limit: None,
        from_beginning: false,
        sources: None,
        timeout: Duration::from_secs(10),
        interrupt: Interrupt::default(),
    };
    let mut figures = Vec::new();
    for dry_run in [true, false] {
        let (kafka, options) = (kafka.clone(), options(dry_run));
        let started = Instant::now();
        let report = blocking(move |runtime| {
            redrive::run(&kafka, &options, &parse_webhook, runtime, |_| {}).unwrap()
        })
        .await;
        let took = started.elapsed();
        assert_eq!(report.redriven, LETTERS as u64, "{report:?}");
        figures.push(format!(
            "{}: {LETTERS} in {:.2} s = {:.0}/s",
            if dry_run {
                "dry run (read, parse)"
            } else {
                "re-drive (produce, commit each)"
            },
            took.as_secs_f64(),
            LETTERS as f64 / took.as_secs_f64()
        ));
    }
    let landed = broker
        .consume_until(
            &[&topics.call_status_changed],
            |r| r.len() >= LETTERS,
            Duration::from_secs(2),
            Duration::from_secs(120),
        )
        .await
        .unwrap();
    assert_eq!(landed.len(), LETTERS);
    let kind = if broker.is_kafka() {
        "Apache Kafka"
    } else {
        "tansu"
    };
    println!("{kind}: {}", figures.join("; "));
}
