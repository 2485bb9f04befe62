//! The durable spool against a real (embedded) broker: outages, a full spool, a torn segment.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use voicehub_ingress::IngressSettings;
use voicehub_ingress::settings::SpoolMode;
use voicehub_model::record::Provenance;
use voicehub_model::{Timestamp, parse_webhook};
use voicehub_testkit::metrics::metric_value;

use voicehub_testkit::TestBroker;

use crate::helpers::{
    TestApp, spawn_app_against, spawn_app_stoppable, spawn_app_with, status_event,
};

/// How long the broker is away in the outage tests (the figure).
const OUTAGE: Duration = Duration::from_secs(60);
/// Calls sending events at once during the outage, and each call's pause between events.
const CALLS: usize = 10;
const PAUSE: Duration = Duration::from_millis(250);
/// The tests' produce deadline (helpers.rs): no answer may take longer.
const DEADLINE: Duration = Duration::from_secs(2);

fn spool_on(mode: SpoolMode, dir: &Path) -> impl FnOnce(&mut IngressSettings) + use<> {
    let dir = dir.to_owned();
    move |settings| {
        settings.spool.mode = mode;
        settings.spool.dir = dir;
        settings.spool.fallback_after_ms = 500;
    }
}

/// Posts `event_id` for `call`, asserting a 2xx within the deadline; returns the latency.
async fn post_acknowledged(app: &TestApp, event_id: &str, call: &str) -> Duration {
    let started = Instant::now();
    let response = app.post_json(&status_event(event_id, call)).await;
    let elapsed = started.elapsed();
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert_eq!(status, 200, "{event_id}: {body}");
    assert!(elapsed < DEADLINE, "{event_id} answered after {elapsed:?}");
    elapsed
}

async fn spool_records(app: &TestApp) -> f64 {
    metric_value(&app.metrics().await, "voicehub_ingress_spool_records", &[])
}

/// Waits until the forwarder has emptied the spool: every record this instance appended is
/// forwarded (counters, exact), and nothing is left from before it started (the depth gauge,
/// refreshed every 0.5 s). A 200 with the spool on means "on disk", not yet "on the topic".
pub(crate) async fn wait_drained(app: &TestApp, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let scrape = app.metrics().await;
        let left = metric_value(&scrape, "voicehub_ingress_spool_records", &[]);
        let appended = metric_value(
            &scrape,
            "voicehub_ingress_spool_appended_records_total",
            &[],
        );
        let forwarded = metric_value(
            &scrape,
            "voicehub_ingress_spool_forwarded_records_total",
            &[],
        );
        if left == 0.0 && forwarded >= appended {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{left} records still spooled, {forwarded} of {appended} forwarded"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The call-status topic as `call -> ce_ids in offset order`, checked against what was
/// acknowledged: every acknowledged id is there, nothing else is, and each call's ids appear
/// (first copies) in acknowledgement order. Returns the number of duplicate copies.
async fn assert_all_there_in_order(
    app: &TestApp,
    acknowledged: &BTreeMap<String, Vec<String>>,
) -> usize {
    let records = app
        .broker
        .read_all(&app.topics.call_status_changed)
        .await
        .unwrap();
    let mut on_topic: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for record in &records {
        let call = record.key.clone().expect("keyed by call");
        let id = record.header("ce_id").expect("ce_id").to_owned();
        on_topic.entry(call).or_default().push(id);
    }
    let mut duplicates = 0;
    for (call, expected) in acknowledged {
        let ids = on_topic.remove(call).unwrap_or_default();
        let mut seen = BTreeSet::new();
        let first_copies: Vec<&String> = ids.iter().filter(|id| seen.insert(*id)).collect();
        duplicates += ids.len() - first_copies.len();
        let expected: Vec<&String> = expected.iter().collect();
        assert_eq!(first_copies, expected, "call {call}: order or content");
    }
    assert!(
        on_topic.is_empty(),
        "records of unknown calls: {on_topic:?}"
    );
    duplicates
}

async fn a_minute_without_the_broker(mode: SpoolMode) {
    let dir = tempfile::tempdir().unwrap();
    let mut app = spawn_app_stoppable(spool_on(mode, dir.path())).await;
    let mut acknowledged: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for call in 0..CALLS {
        let (call, id) = (format!("call-{call}"), format!("call-{call}-before"));
        post_acknowledged(&app, &id, &call).await;
        acknowledged.entry(call).or_default().push(id);
    }

    app.broker.stop().await;
    let outage_started = Instant::now();
    let senders: Vec<_> = (0..CALLS)
        .map(|call| {
            let app = &app;
            async move {
                let call_id = format!("call-{call}");
                let (mut ids, mut slowest) = (Vec::new(), Duration::ZERO);
                let mut n = 0;
                while outage_started.elapsed() < OUTAGE {
                    let id = format!("{call_id}-{n}");
                    slowest = slowest.max(post_acknowledged(app, &id, &call_id).await);
                    ids.push(id);
                    n += 1;
                    tokio::time::sleep(PAUSE).await;
                }
                (call_id, ids, slowest)
            }
        })
        .collect();
    let readiness = async {
        let mut unready = 0;
        while outage_started.elapsed() < OUTAGE {
            if app.readyz().await != 200 {
                unready += 1;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        unready
    };
    let (sent, unready) = tokio::join!(futures_util::future::join_all(senders), readiness);
    let mut during = 0;
    let mut slowest = Duration::ZERO;
    for (call, ids, call_slowest) in sent {
        during += ids.len();
        slowest = slowest.max(call_slowest);
        acknowledged.entry(call).or_default().extend(ids);
    }
    assert_eq!(
        unready, 0,
        "readiness must stay true while the spool has room"
    );
    let spooled = spool_records(&app).await;
    assert!(spooled > 0.0, "the outage left nothing in the spool");

    let resumed_at = OffsetDateTime::now_utc();
    app.broker.resume().await.unwrap();
    let resumed = Instant::now();
    // Within the test's time (nextest ends it at 180 s): a forwarder that lost records fails
    // here, naming what is left, rather than timing out.
    wait_drained(&app, Duration::from_secs(60)).await;
    let drained_after = resumed.elapsed();
    for call in 0..CALLS {
        let (call, id) = (format!("call-{call}"), format!("call-{call}-after"));
        post_acknowledged(&app, &id, &call).await;
        acknowledged.entry(call).or_default().push(id);
    }
    wait_drained(&app, Duration::from_secs(30)).await;

    let duplicates = assert_all_there_in_order(&app, &acknowledged).await;
    // A spooled record keeps the time it was received, not the time it was forwarded.
    let records = app
        .broker
        .read_all(&app.topics.call_status_changed)
        .await
        .unwrap();
    let spooled_record = records
        .iter()
        .find(|r| r.header("ce_id") == Some("call-0-0"))
        .expect("call-0-0");
    let received = spooled_record
        .header("ce_bridgereceivedat")
        .and_then(|at| OffsetDateTime::parse(at, &Rfc3339).ok())
        .expect("ce_bridgereceivedat");
    assert!(received < resumed_at, "received-at {received} is not kept");

    let scrape = app.metrics().await;
    let forwarded = metric_value(
        &scrape,
        "voicehub_ingress_spool_forwarded_records_total",
        &[],
    );
    let syncs = metric_value(
        &scrape,
        "voicehub_ingress_spool_fsync_batch_records_count",
        &[],
    );
    let appended = metric_value(
        &scrape,
        "voicehub_ingress_spool_appended_records_total",
        &[],
    );
    assert!(forwarded >= appended, "{forwarded} forwarded of {appended}");
    eprintln!(
        "spool {}: {during} events acknowledged during a {OUTAGE:?} outage (slowest answer \
         {slowest:?}), {spooled} spooled at its end, drained {drained_after:?} after the \
         broker returned; {appended} appended in {syncs} fsyncs, {forwarded} forwarded, \
         {duplicates} duplicate copies on the topic",
        mode.as_str()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn always_a_minute_without_the_broker_delays_events_and_loses_none() {
    a_minute_without_the_broker(SpoolMode::Always).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fallback_a_minute_without_the_broker_delays_events_and_loses_none() {
    a_minute_without_the_broker(SpoolMode::Fallback).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fallback_with_a_healthy_broker_produces_directly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let app = spawn_app_with(move |settings| {
        spool_on(SpoolMode::Fallback, &path)(settings);
        // A loaded CI machine can take over 0.5 s for an acknowledgement from the test broker:
        // the budget is the most the tests' 2 s deadline allows, so only a real outage spools.
        settings.spool.fallback_after_ms = 1_900;
    })
    .await;
    let mut acknowledged = BTreeMap::new();
    let ids: Vec<String> = (0..20).map(|n| format!("direct-{n}")).collect();
    for id in &ids {
        post_acknowledged(&app, id, "c").await;
    }
    acknowledged.insert("c".to_owned(), ids);

    assert_eq!(assert_all_there_in_order(&app, &acknowledged).await, 0);
    let scrape = app.metrics().await;
    assert_eq!(
        metric_value(
            &scrape,
            "voicehub_ingress_spool_appended_records_total",
            &[]
        ),
        0.0
    );
    assert_eq!(
        metric_value(
            &scrape,
            "voicehub_ingress_spool_mode",
            &[("mode", "fallback")]
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_spool_answers_503_with_retry_after_and_loses_nothing_it_took() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let mut app = spawn_app_stoppable(move |settings| {
        spool_on(SpoolMode::Always, &path)(settings);
        settings.spool.segment_bytes = 4 * 1024;
        settings.spool.max_bytes = 16 * 1024;
    })
    .await;
    app.broker.stop().await;

    let mut taken = Vec::new();
    let refused = loop {
        let id = format!("fill-{}", taken.len());
        let response = app.post_json(&status_event(&id, "c")).await;
        if response.status() != 200 {
            break response;
        }
        taken.push(id);
        assert!(taken.len() < 1_000, "16 KiB never filled");
    };
    refused_then_drained(&mut app, refused, taken).await;
    let scrape = app.metrics().await;
    assert!(
        metric_value(
            &scrape,
            "voicehub_ingress_requests_total",
            &[("outcome", "spool_full")]
        ) >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spool_whose_oldest_is_too_old_answers_503_and_is_unready_until_it_drains() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let mut app = spawn_app_stoppable(move |settings| {
        spool_on(SpoolMode::Always, &path)(settings);
        settings.spool.max_age_s = 2;
    })
    .await;
    app.broker.stop().await;
    post_acknowledged(&app, "old", "c").await;

    // Not draining (the broker is away): once the oldest record is over 2 s old, refused.
    let mut taken = vec!["old".to_owned()];
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let id = format!("late-{}", taken.len());
        let response = app.post_json(&status_event(&id, "c")).await;
        if response.status() != 200 {
            break response;
        }
        taken.push(id);
        assert!(
            Instant::now() < deadline,
            "still taking webhooks behind a stale spool"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    refused_then_drained(&mut app, refused, taken).await;
}

/// A spool that refuses with the broker away: 503 `spool_full` with `Retry-After`, and unready
/// within 5 s; with the broker back it drains, is ready, takes another webhook, and every
/// webhook it took (`taken`, call `c`) is on the topic in order.
async fn refused_then_drained(
    app: &mut TestApp,
    refused: reqwest::Response,
    mut taken: Vec<String>,
) {
    crate::helpers::assert_retry_later(refused, "spool_full").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.readyz().await != 503 {
        assert!(Instant::now() < deadline, "still ready while refusing");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    app.broker.resume().await.unwrap();
    wait_drained(app, Duration::from_secs(60)).await;
    app.wait_ready().await;
    post_acknowledged(app, "after", "c").await;
    taken.push("after".to_owned());
    wait_drained(app, Duration::from_secs(30)).await;
    assert_all_there_in_order(app, &BTreeMap::from([("c".to_owned(), taken)])).await;
}

/// Opens a spool directory as the ingress would, outside it.
fn open_spool(dir: &Path) -> (voicehub_spool::Spool, voicehub_spool::Recovery) {
    voicehub_spool::Spool::open(voicehub_spool::Options {
        dir: dir.to_owned(),
        segment_bytes: 1 << 20,
        max_bytes: 1 << 30,
        max_age: Duration::from_secs(3600),
    })
    .unwrap()
}

/// Spools call-status events for `call` as a previous instance on `broker` would have.
async fn prefill(broker: &TestBroker, dir: &Path, ids: impl Iterator<Item = String>, call: &str) {
    let topic = broker.topics().call_status_changed;
    let (spool, _) = open_spool(dir);
    for id in ids {
        let body = status_event(&id, call).to_string();
        let event = parse_webhook(body.as_bytes()).unwrap();
        let record = event.to_record(&Provenance {
            source: "default",
            received_at: Timestamp::now(),
            bridge_version: "test",
        });
        let payload = voicehub_model::record_codec::encode(&topic, &record).unwrap();
        spool.append(payload).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fallback_after_a_restart_sends_new_events_behind_the_spooled_ones() {
    let dir = tempfile::tempdir().unwrap();
    let old: Vec<String> = (0..3_000).map(|n| format!("old-{n}")).collect();
    let broker = TestBroker::start().await.unwrap();
    prefill(&broker, dir.path(), old.clone().into_iter(), "c").await;

    // One record in flight at a time: the old ones take seconds to forward, so "new" arrives
    // while they wait, and a direct produce would overtake them.
    let fallback = spool_on(SpoolMode::Fallback, dir.path());
    let settings = move |s: &mut IngressSettings| {
        fallback(s);
        s.spool.forward_window = 1;
    };
    let app = spawn_app_against(broker, settings, |_| {}).await;
    // The depth gauge is refreshed every 0.5 s.
    let deadline = Instant::now() + Duration::from_secs(3);
    while spool_records(&app).await == 0.0 {
        assert!(
            Instant::now() < deadline,
            "the old records were forwarded before the test could post"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    post_acknowledged(&app, "new", "c").await;

    wait_drained(&app, Duration::from_secs(60)).await;
    let mut expected = old;
    expected.push("new".to_owned());
    assert_all_there_in_order(&app, &BTreeMap::from([("c".to_owned(), expected)])).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_segment_torn_in_its_last_record_forwards_every_earlier_record() {
    let dir = tempfile::tempdir().unwrap();
    // Five records spooled by an instance that then died in the middle of writing the fifth.
    let broker = TestBroker::start().await.unwrap();
    prefill(
        &broker,
        dir.path(),
        (0..5).map(|n| format!("torn-{n}")),
        "c",
    )
    .await;
    let segment = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .unwrap();
    let length = std::fs::metadata(&segment).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(length - 20)
        .unwrap();

    let app = spawn_app_against(broker, spool_on(SpoolMode::Always, dir.path()), |_| {}).await;

    wait_drained(&app, Duration::from_secs(30)).await;
    let acknowledged = BTreeMap::from([(
        "c".to_owned(),
        (0..4).map(|n| format!("torn-{n}")).collect::<Vec<_>>(),
    )]);
    assert_all_there_in_order(&app, &acknowledged).await;
    let scrape = app.metrics().await;
    assert_eq!(
        metric_value(&scrape, "voicehub_ingress_spool_torn_records_total", &[]),
        1.0
    );
    assert_eq!(
        metric_value(
            &scrape,
            "voicehub_ingress_spool_forwarded_records_total",
            &[]
        ),
        4.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clean_stop_leaves_nothing_to_forward_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = spawn_app_with(spool_on(SpoolMode::Always, dir.path())).await;
    for n in 0..50 {
        post_acknowledged(&app, &format!("clean-{n}"), "c").await;
    }

    app.trigger.trigger();
    app.task.take().unwrap().await.unwrap().unwrap();

    // Everything was forwarded before the exit and the watermark says so: a successor
    // re-sends nothing (without it, the active segment's 50 records came back).
    let (_, recovery) = open_spool(dir.path());
    assert_eq!(recovery.records, 0);
    let ids = app.status_ids().await;
    assert_eq!(ids.len(), 50);
}

#[tokio::test(flavor = "multi_thread")]
async fn set_aside_files_past_their_retention_are_deleted_and_counted_the_others_counted() {
    // Arrange: a previous instance set two records aside, one eight days ago.
    let dir = tempfile::tempdir().unwrap();
    let aside = dir.path().join(voicehub_spool::UNDELIVERABLE_DIR);
    std::fs::create_dir(&aside).unwrap();
    let (old, recent) = (
        aside.join("00000000000000000001.rec"),
        aside.join("00000000000000000002.rec"),
    );
    std::fs::write(&old, b"old bytes").unwrap();
    std::fs::write(&recent, b"recent bytes").unwrap();
    let eight_days_ago = std::time::SystemTime::now() - Duration::from_secs(8 * 86_400);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(eight_days_ago)
        .unwrap();

    // Act: an ingress opens the spool with the default retention (7 days).
    let app = spawn_app_with(spool_on(SpoolMode::Always, dir.path())).await;

    // Assert: counted before the first scrape, the old file gone, the recent one kept.
    let scrape = app.metrics().await;
    let value = |name: &str| metric_value(&scrape, name, &[]);
    assert_eq!(
        value("voicehub_ingress_spool_undeliverable_expired_files_total"),
        1.0
    );
    assert_eq!(value("voicehub_ingress_spool_undeliverable_files"), 1.0);
    assert_eq!(value("voicehub_ingress_spool_undeliverable_bytes"), 12.0);
    assert!(value("voicehub_ingress_spool_undeliverable_oldest_age_seconds") < 3_600.0);
    assert!(!old.exists(), "the expired file is still there");
    assert!(recent.exists(), "the recent file was deleted");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stop_during_an_outage_leaves_the_spool_on_disk_within_the_drain_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = spawn_app_stoppable(spool_on(SpoolMode::Always, dir.path())).await;
    app.broker.stop().await;
    for n in 0..20 {
        post_acknowledged(&app, &format!("left-{n}"), "c").await;
    }

    let started = Instant::now();
    app.trigger.trigger();
    app.task.take().unwrap().await.unwrap().unwrap();
    let stopped_after = started.elapsed();

    // helpers.rs sets http.drain_timeout_ms to 5 s: the forwarder tried until then. After it,
    // the stop may still wait for a broker probe in flight (with the broker gone: its
    // permissions request and its health request, 2 s each), the spool's handles (2 s at
    // most) and the admin server (1 s): the grace period counts these (vb.gracePeriod). A
    // 7 s bound failed whenever the stop met a probe just started.
    assert!(stopped_after >= Duration::from_secs(5), "{stopped_after:?}");
    assert!(
        stopped_after < Duration::from_secs(5 + 4 + 2 + 1),
        "{stopped_after:?}"
    );
    let (spool, recovery) = open_spool(dir.path());
    assert_eq!(recovery.records, 20, "left for the successor");
    let left: Vec<String> = spool
        .read(0, 100)
        .unwrap()
        .iter()
        .map(|entry| {
            let (_, record) = voicehub_model::record_codec::decode(&entry.payload).unwrap();
            record.header("ce_id").unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        left,
        (0..20).map(|n| format!("left-{n}")).collect::<Vec<_>>()
    );
}
