use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use voicehub_enricher::allow_list::AllowedHost;
use voicehub_enricher::settings::{
    ConsumerSettings, EnricherSettings, RetrySettings, SourceSettings,
};
use voicehub_model::record::header;
use voicehub_model::{ParseError, WebhookEvent, parse_webhook};
use voicehub_operator::dead_letters::Filter;
use voicehub_operator::interrupt::Interrupt;
use voicehub_operator::redrive::{self, Options, Report};
use voicehub_runtime::settings::{AdminSettings, LogSettings};
use voicehub_simulator::{AnalysisApi, AnalysisTrouble};
use voicehub_testkit::TestBroker;

use crate::helpers::{
    SOURCE, blocking, event_record, ingress_dead_letter, kafka_settings, produce, producer,
    status_body,
};

const ANALYSES: usize = 40;

/// `parse_webhook`, dying on its 16th call: a re-drive interrupted mid-way.
fn dies_at_the_16th(bytes: &[u8]) -> Result<WebhookEvent, ParseError> {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    if CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 15 {
        panic!("interrupted");
    }
    parse_webhook(bytes)
}

fn analysis_body(i: usize, api: &AnalysisApi) -> Vec<u8> {
    serde_json::json!({
        "eventType": "AnalysisResultReady",
        "eventId": format!("evt-analysis-{i}"),
        "callId": format!("sim-t-{i}"),
        "analysisId": format!("anl_t_{i}"),
        "timestamp": "2026-11-30T10:00:00Z",
        "analysisResultUrl": format!("{}/anl_t_{i}", api.base_url()),
    })
    .to_string()
    .into_bytes()
}

fn run(
    kafka: &voicehub_runtime::settings::KafkaSettings,
    options: Options,
    parse: fn(&[u8]) -> Result<WebhookEvent, ParseError>,
) -> impl std::future::Future<Output = (Report, Vec<String>)> {
    let kafka = kafka.clone();
    blocking(move |runtime| {
        let mut left = Vec::new();
        let report = redrive::run(&kafka, &options, &parse, runtime, |event| {
            if let redrive::Event::Left { location, why } = event {
                left.push(format!("{location}: {why}"));
            }
        })
        .unwrap();
        (report, left)
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn analyses_dead_lettered_for_a_revoked_key_are_enriched_once_after_a_redrive_even_interrupted()
 {
    let broker = TestBroker::start().await.unwrap();
    let kafka = kafka_settings(&broker);
    let topics = kafka.topics.clone();
    // The account's key is new-key; the enricher still holds the revoked one.
    let api = AnalysisApi::start("127.0.0.1:0", "new-key", AnalysisTrouble::default()).unwrap();
    let key = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key.path(), "revoked-key\n").unwrap();
    let settings = EnricherSettings {
        consumer: ConsumerSettings {
            group_id: broker.name("enricher"),
            max_in_flight: 8,
            commit_interval_ms: 200,
            drain_timeout_ms: 3_000,
            ..ConsumerSettings::default()
        },
        fetch: Default::default(),
        retry: RetrySettings {
            initial_backoff_ms: 50,
            max_backoff_ms: 200,
            max_elapsed_ms: 5_000,
        },
        sources: BTreeMap::from([(
            SOURCE.to_owned(),
            SourceSettings {
                api_key_env: None,
                api_key_file: Some(key.path().to_owned()),
                allowed_hosts: vec![AllowedHost::parse(&api.host(), true).unwrap()],
                allow_http: true,
                api_key_reload_ms: 100,
            },
        )]),
        kafka: kafka.clone(),
        admin: AdminSettings {
            listen: "127.0.0.1:0".into(),
        },
        log: LogSettings::default(),
    };
    let enricher = voicehub_enricher::Application::build(settings)
        .await
        .unwrap();
    let stop = enricher.shutdown_trigger();
    let metrics_url = format!("http://127.0.0.1:{}/metrics", enricher.admin_port());
    let task = tokio::spawn(enricher.run_until_stopped());
    let producer = producer(&kafka);
    let mut originals = HashMap::new();
    for i in 0..ANALYSES {
        let record = event_record(&analysis_body(i, &api));
        originals.insert(
            record.header(header::ID).unwrap().to_owned(),
            record.key.clone(),
        );
        produce(&producer, &topics.analysis_result_ready, &record).await;
    }

    // Every analysis is dead-lettered as unauthorized.
    let dead = broker
        .wait_for_records(&topics.dead_letter, ANALYSES, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(dead.len(), ANALYSES);
    assert!(
        dead.iter()
            .all(|r| r.header(header::DEAD_LETTER_REASON) == Some("unauthorized"))
    );

    // Act: the key is restored; a re-drive stopped at a limit, one interrupted, then one to the
    // end, then once more.
    std::fs::write(key.path(), "new-key\n").unwrap();
    key_reloaded(&metrics_url).await;
    let filter = Filter {
        reasons: vec!["unauthorized".into()],
        ..Filter::default()
    };
    let options = Options {
        group: Options::default_group(&filter),
        filter: filter.clone(),
        dry_run: false,
        rate: None,
        limit: None,
        from_beginning: false,
        sources: Some(BTreeSet::from([SOURCE.to_owned()])),
        timeout: Duration::from_secs(10),
        interrupt: Interrupt::default(),
    };
    let (dry, _) = run(
        &kafka,
        Options {
            dry_run: true,
            ..options.clone()
        },
        parse_webhook,
    )
    .await;
    let (first, _) = run(
        &kafka,
        Options {
            limit: Some(5),
            ..options.clone()
        },
        parse_webhook,
    )
    .await;
    // Interrupted: the next run dies (a panic) as it takes its 16th letter, 15 re-driven before.
    let interrupted = {
        let (kafka, options) = (kafka.clone(), options.clone());
        blocking(move |runtime| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                redrive::run(&kafka, &options, &dies_at_the_16th, runtime, |_| {})
            }))
            .is_err()
        })
        .await
    };
    assert!(interrupted, "the run was not interrupted");
    let (second, left) = run(&kafka, options.clone(), parse_webhook).await;
    let (third, _) = run(&kafka, options.clone(), parse_webhook).await;

    // Assert
    assert_eq!((dry.redriven, dry.matched), (40, 40), "{dry:?}");
    assert_eq!(
        (first.redriven, first.stopped_at_limit),
        (5, true),
        "{first:?}"
    );
    // What the interrupted run sent was committed as it went: the next run sends the rest.
    assert_eq!(second.redriven, 20, "{second:?} {left:?}");
    assert!(left.is_empty() && !second.failed(), "{left:?}");
    assert_eq!((third.read, third.redriven), (0, 0), "{third:?}");
    let enriched = broker
        .consume_until(
            &[&topics.analysis_enriched],
            |records| records.len() >= ANALYSES,
            Duration::from_secs(3),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let mut per_event: HashMap<String, usize> = HashMap::new();
    for record in &enriched {
        let event = record.json()["eventId"].as_str().unwrap().to_owned();
        *per_event.entry(event).or_default() += 1;
    }
    assert_eq!(per_event.len(), ANALYSES, "{per_event:?}");
    assert!(per_event.values().all(|n| *n == 1), "{per_event:?}");
    // The re-driven inputs: the originals' ce_id and key, and where each came from.
    let inputs = broker
        .read_all(&topics.analysis_result_ready)
        .await
        .unwrap();
    let redriven: Vec<_> = inputs
        .iter()
        .filter(|r| r.header(header::REDRIVEN_FROM).is_some())
        .collect();
    assert_eq!(redriven.len(), ANALYSES);
    for record in redriven {
        let id = record.header(header::ID).unwrap();
        assert_eq!(originals.get(id), Some(&record.key), "{id}");
        // As first received: the enricher's dead letter kept the input's receive time.
        assert_eq!(
            record.header(header::RECEIVED_AT),
            Some("2026-11-30T10:00:00.000Z")
        );
        assert!(
            record
                .header(header::REDRIVEN_FROM)
                .unwrap()
                .starts_with(&format!("{}/", topics.dead_letter))
        );
    }
    stop.trigger();
    task.await.unwrap().unwrap();
    api.stop().await;
}

/// What the parser would accept after a change: a numeric status read as its string.
fn parser_after_a_change(body: &[u8]) -> Result<WebhookEvent, ParseError> {
    let text = String::from_utf8_lossy(body).replace(r#""status":42"#, r#""status":"completed""#);
    parse_webhook(text.as_bytes())
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_bodies_parse_after_a_parser_change_and_what_still_fails_or_is_forged_stays() {
    // Apache Kafka (the run's, or one of its own): what a run left behind is kept in its
    // offset commits' metadata, which tansu does not keep.
    let broker = TestBroker::kafka().await.unwrap();
    let kafka = kafka_settings(&broker);
    let topics = kafka.topics.clone();
    broker
        .create_topics(&[&topics.dead_letter, &topics.call_status_changed], 2)
        .await
        .unwrap();
    let producer = producer(&kafka);
    for i in 0..5 {
        let body = status_body(&format!("evt-status-{i}"), &format!("call-{i}"), "42");
        assert!(parse_webhook(&body).is_err(), "refused today");
        produce(
            &producer,
            &topics.dead_letter,
            &ingress_dead_letter(&body, "invalid_field"),
        )
        .await;
    }
    // Still refused after the change, and two records no bridge wrote.
    produce(
        &producer,
        &topics.dead_letter,
        &ingress_dead_letter(b"not json", "invalid_json"),
    )
    .await;
    let mut forged = ingress_dead_letter(
        &status_body("evt-forged", "call-x", r#""completed""#),
        "invalid_field",
    );
    forged
        .headers
        .retain(|(name, _)| *name != header::DEAD_LETTER_STAGE);
    produce(&producer, &topics.dead_letter, &forged).await;
    let mut corrupt = ingress_dead_letter(
        &status_body("evt-corrupt", "call-y", r#""completed""#),
        "invalid_field",
    );
    let mut elsewhere = ingress_dead_letter(
        &status_body("evt-other", "call-z", r#""completed""#),
        "invalid_field",
    );
    for (record, source) in [
        (&mut corrupt, "/elsewhere/../../etc"),
        (&mut elsewhere, "/voicehub/sources/other"),
    ] {
        for (name, value) in &mut record.headers {
            if *name == header::SOURCE {
                *value = source.into();
            }
        }
    }
    produce(&producer, &topics.dead_letter, &corrupt).await;
    produce(&producer, &topics.dead_letter, &elsewhere).await;
    broker
        .wait_for_records(&topics.dead_letter, 9, Duration::from_secs(30))
        .await
        .unwrap();

    // Act: today's parser; the same filter again after the change; then from the beginning.
    let options = Options {
        group: broker.name("redrive"),
        filter: Filter::default(),
        dry_run: false,
        rate: Some(200.0),
        limit: None,
        from_beginning: false,
        sources: Some(BTreeSet::from([SOURCE.to_owned()])),
        timeout: Duration::from_secs(10),
        interrupt: Interrupt::default(),
    };
    let (before, _) = run(&kafka, options.clone(), parse_webhook).await;
    let (again, _) = run(&kafka, options.clone(), parser_after_a_change).await;
    let (report, left) = run(
        &kafka,
        Options {
            from_beginning: true,
            ..options.clone()
        },
        parser_after_a_change,
    )
    .await;
    let (reminded, _) = run(&kafka, options, parser_after_a_change).await;

    // Assert
    let counts = |r: &Report| (r.matched, r.redriven, r.still_failing, r.invalid);
    assert_eq!(counts(&before), (9, 0, 6, 3), "{before:?}");
    // Passed over, but not forgotten: a re-run says what earlier runs left behind.
    assert_eq!(
        (
            again.read,
            again.redriven,
            again.left_earlier,
            again.failed()
        ),
        (0, 0, 9, true),
        "passed over: {again:?}"
    );
    assert_eq!(counts(&report), (9, 5, 1, 3), "{report:?} {left:?}");
    assert!(report.failed());
    assert_eq!(
        (reminded.read, reminded.left_earlier, reminded.failed()),
        (0, 4, true),
        "{reminded:?}"
    );
    assert_eq!(left.len(), 4, "{left:?}");
    for expected in [
        "still fails (invalid_json)",
        "no ce_deadletterstage",
        "no ce_source",
        "\"other\", not a configured source",
    ] {
        assert!(
            left.iter().any(|l| l.contains(expected)),
            "{expected}: {left:?}"
        );
    }
    let landed = broker
        .wait_for_records(&topics.call_status_changed, 5, Duration::from_secs(30))
        .await
        .unwrap();
    let mut ids: Vec<&str> = landed
        .iter()
        .map(|r| r.header(header::ID).unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        [
            "evt-status-0",
            "evt-status-1",
            "evt-status-2",
            "evt-status-3",
            "evt-status-4"
        ]
    );
    for record in &landed {
        assert_eq!(record.json()["status"], "completed");
        assert_eq!(
            record.header(header::RECEIVED_AT),
            Some("2026-11-30T10:00:00.000Z")
        );
        assert_eq!(record.key.as_deref(), record.json()["callId"].as_str());
    }
    // Nothing was taken off the dead-letter topic, and nothing forged went anywhere.
    assert_eq!(broker.read_all(&topics.dead_letter).await.unwrap().len(), 9);
    assert_eq!(
        broker
            .read_all(&topics.call_status_changed)
            .await
            .unwrap()
            .len(),
        5
    );
}

/// Waits until the enricher has taken the rewritten key file in (its reload counter moved).
async fn key_reloaded(metrics_url: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let scrape = voicehub_testkit::metrics::scrape(metrics_url).await;
        let reloads = voicehub_testkit::metrics::metric_value(
            &scrape,
            "voicehub_enricher_api_key_reloads_total",
            &[("source", SOURCE)],
        );
        if reloads >= 1.0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the enricher never reloaded its key file"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
