//! Nothing acknowledged is lost at volume: webhooks sent at concurrency the way VoiceHub sends
//! them (retries after a failure, duplicate deliveries), through a broker pause with the spool
//! in `fallback` mode; every event that got a 2xx is read back from its topic by consuming.
//!
//! Against Apache Kafka of its own (`TestBroker::kafka_of_its_own`: the pause freezes the
//! broker process). `VOICEHUB_ACCOUNTING_RECORDS` sets the number of distinct events (default
//! 50,000); `scripts/reliability/accounting.sh` runs it longer.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use voicehub_ingress::settings::SpoolMode;
use voicehub_testkit::TestBroker;
use voicehub_testkit::metrics::metric_value;

use crate::helpers::{SECRET, TestApp, spawn_app_against, status_event};
use crate::spool::wait_drained;

/// Requests in flight at once (VoiceHub's deliveries for many calls).
const CONCURRENCY: usize = 32;
/// VoiceHub's documented retry policy: 3 more attempts, 1 s apart.
const RETRIES: usize = 3;
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// Every this many events is delivered twice (VoiceHub's at-least-once).
const DUPLICATE_EVERY: usize = 10;
/// How long the broker is frozen.
const PAUSE: Duration = Duration::from_secs(5);

fn records_from_env() -> usize {
    std::env::var("VOICEHUB_ACCOUNTING_RECORDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(50_000)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// What VoiceHub saw: the events acknowledged (a 2xx to some delivery), and the deliveries
/// that never got one after their retries, by the last status (0: no answer).
#[derive(Debug, Default)]
struct Sent {
    acknowledged: HashSet<String>,
    given_up: BTreeMap<u16, usize>,
}

/// Delivers one event like VoiceHub: up to `1 + RETRIES` attempts, 1 s apart.
async fn deliver(app: &TestApp, event_id: &str, call: &str) -> Result<(), u16> {
    let body = status_event(event_id, call).to_string().into_bytes();
    let mut last = 0;
    for attempt in 0..=RETRIES {
        if attempt > 0 {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        let response = app
            .client
            .post(format!("{}/webhooks/voicehub", app.base))
            .header("x-webhook-secret", SECRET)
            .timeout(Duration::from_secs(10))
            .body(body.clone())
            .send()
            .await;
        match response {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) => last = response.status().as_u16(),
            Err(_) => last = 0,
        }
    }
    Err(last)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_acknowledged_webhook_is_on_its_topic_at_volume_through_a_broker_pause() {
    let total = records_from_env();
    let broker = TestBroker::kafka_of_its_own().await.unwrap();
    let spool = tempfile::tempdir().unwrap();
    let run = format!("{}-{}", std::process::id(), now_ms());
    let dir = spool.path().to_owned();
    let mut app = spawn_app_against(
        broker,
        move |s| {
            s.spool.mode = SpoolMode::Fallback;
            s.spool.dir = dir;
            s.spool.fallback_after_ms = 500;
            s.spool.segment_bytes = 256 * 1024; // many segments
            s.http.max_in_flight = 4 * CONCURRENCY;
            s.kafka.topics = s.kafka.topics.with_suffix(&format!(".accounting-{run}"));
        },
        |_| {},
    )
    .await;

    // Warm up: a fresh producer's first acknowledgements can take longer than
    // `fallback_after_ms`, which engages the spool; with traffic flowing it stays engaged (a
    // call's events must not overtake each other), and the pause below would meet `always`.
    // Go on once an event is produced directly.
    let mut warm = 0;
    loop {
        let before = appended(&app).await;
        deliver(&app, &format!("warm-up-{warm}"), "warm-up")
            .await
            .unwrap();
        warm += 1;
        if appended(&app).await == before {
            break;
        }
        assert!(warm < 100, "the spool never disengaged");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Deliveries: each event once, every DUPLICATE_EVERY-th twice (the copy a little later).
    let mut deliveries: Vec<usize> = (0..total).collect();
    deliveries.extend((0..total).step_by(DUPLICATE_EVERY));
    deliveries.sort_by_key(|&i| (i + if i % DUPLICATE_EVERY == 0 { 97 } else { 0 }, i));
    let attempts = deliveries.len();
    let done = AtomicUsize::new(0);
    let started = Instant::now();
    let sending = async {
        let (app, done) = (&app, &done);
        futures_util::stream::iter(deliveries)
            .map(|i| async move {
                let id = format!("e{i}");
                let result = deliver(app, &id, &format!("c{}", i % 500)).await;
                done.fetch_add(1, Ordering::Relaxed);
                (id, result)
            })
            .buffer_unordered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await
    };
    let pausing = async {
        while done.load(Ordering::Relaxed) < attempts * 3 / 10 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let before = appended(&app).await;
        app.broker.freeze().unwrap();
        tokio::time::sleep(PAUSE).await;
        let during = appended(&app).await - before;
        app.broker.thaw().unwrap();
        during
    };
    let (results, spooled_during_the_freeze) = tokio::join!(sending, pausing);
    let send_elapsed = started.elapsed();
    let mut sent = Sent::default();
    for (id, result) in results {
        match result {
            Ok(()) => {
                sent.acknowledged.insert(id);
            }
            Err(status) => *sent.given_up.entry(status).or_default() += 1,
        }
    }

    // The spool drains; then every event is read back from the topic by consuming.
    wait_drained(&app, Duration::from_secs(120)).await;
    let scrape = app.metrics().await;
    let spooled = metric_value(
        &scrape,
        "voicehub_ingress_spool_appended_records_total",
        &[],
    );
    let dedupe_hits = metric_value(&scrape, "voicehub_ingress_dedupe_hits_total", &[]);
    let fallbacks = metric_value(&scrape, "voicehub_ingress_spool_fallbacks_total", &[]);
    let expected = sent.acknowledged.len();
    let topic = app.topics.call_status_changed.clone();
    let on_topic = app
        .broker
        .consume_until(
            &[&topic],
            move |records| distinct_events(records) >= expected + warm,
            Duration::from_secs(3),
            Duration::from_secs(120),
        )
        .await
        .unwrap();

    let report = reconcile(&sent, &on_topic, fallbacks as usize);
    println!(
        "ingress accounting: {total} events in {attempts} deliveries at concurrency \
         {CONCURRENCY} in {send_elapsed:.1?} ({:.0}/s), broker frozen {PAUSE:?} at 30%; \
         {spooled} spooled ({fallbacks} after fallback_after_ms), {dedupe_hits} duplicate \
         deliveries answered from the dedupe table\n{report}",
        attempts as f64 / send_elapsed.as_secs_f64()
    );
    app.trigger.trigger();
    let _ = app.task.take().unwrap().await;
    assert!(report.missing.is_empty(), "{report}");
    assert!(report.unexplained.is_empty(), "{report}");
    // VoiceHub's retries and the spool get every event a 2xx, frozen broker or not.
    assert!(report.given_up.is_empty(), "{report}");
    assert_eq!(expected, total, "{report}");
    assert!(
        spooled_during_the_freeze > 0.0,
        "the freeze spooled nothing: the fallback was not exercised"
    );
}

/// Records the spool has taken so far.
async fn appended(app: &TestApp) -> f64 {
    metric_value(
        &app.metrics().await,
        "voicehub_ingress_spool_appended_records_total",
        &[],
    )
}

fn event_of(record: &voicehub_testkit::ConsumedRecord) -> Option<String> {
    record.json()["eventId"].as_str().map(str::to_owned)
}

fn distinct_events(records: &[voicehub_testkit::ConsumedRecord]) -> usize {
    records
        .iter()
        .filter_map(event_of)
        .collect::<HashSet<_>>()
        .len()
}

#[derive(Debug, Default)]
struct Report {
    acknowledged: usize,
    given_up: BTreeMap<u16, usize>,
    on_topic_distinct: usize,
    missing: Vec<String>,
    /// Copies beyond the first, by cause.
    duplicates: BTreeMap<&'static str, usize>,
    unexplained: Vec<String>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "  acknowledged {}; never acknowledged after VoiceHub's retries {:?} (by last \
             status); distinct on the topic {}",
            self.acknowledged, self.given_up, self.on_topic_distinct
        )?;
        writeln!(f, "  acknowledged but missing: {}", self.missing.len())?;
        for (cause, count) in &self.duplicates {
            writeln!(f, "  duplicate copies admitted: {count} ({cause})")?;
        }
        writeln!(
            f,
            "  duplicate copies unexplained: {}",
            self.unexplained.len()
        )?;
        let sample = |v: &[String]| v.iter().take(10).cloned().collect::<Vec<_>>().join(", ");
        if !self.missing.is_empty() {
            writeln!(f, "  missing (first 10): {}", sample(&self.missing))?;
        }
        if !self.unexplained.is_empty() {
            writeln!(f, "  unexplained (first 10): {}", sample(&self.unexplained))?;
        }
        Ok(())
    }
}

/// Duplicate copies are admitted up to the records spooled after `spool.fallback_after_ms`
/// (`voicehub_ingress_spool_fallbacks_total`): each was given up on and spooled, and its
/// direct delivery can still land (`docs/reliability.md`). That happens while the broker is
/// frozen, and at the start (a fresh producer's first acknowledgements can take longer than
/// 500 ms). Such a copy is the same record written twice: same `ce_id` and the same
/// `ce_bridgereceivedat`. A copy received at another time is a second acceptance of the
/// event (a deduplication miss), never admitted. Nothing else may duplicate an acknowledged
/// event.
fn reconcile(
    sent: &Sent,
    on_topic: &[voicehub_testkit::ConsumedRecord],
    fallbacks: usize,
) -> Report {
    let mut copies: HashMap<String, Vec<&voicehub_testkit::ConsumedRecord>> = HashMap::new();
    for record in on_topic {
        if let Some(event) = event_of(record) {
            copies.entry(event).or_default().push(record);
        }
    }
    let mut report = Report {
        acknowledged: sent.acknowledged.len(),
        given_up: sent.given_up.clone(),
        on_topic_distinct: copies.len(),
        ..Report::default()
    };
    for event in &sent.acknowledged {
        if !copies.contains_key(event) {
            report.missing.push(event.clone());
        }
    }
    let mut duplicated: Vec<(&String, usize)> = copies
        .iter()
        .filter(|(_, records)| records.len() > 1)
        .map(|(event, records)| (event, records.len() - 1))
        .collect();
    duplicated.sort();
    let mut admitted = 0;
    for (event, extra) in duplicated {
        let first = &copies[event][0];
        let same_record = copies[event].iter().all(|copy| {
            copy.header("ce_id") == first.header("ce_id")
                && copy.header("ce_bridgereceivedat") == first.header("ce_bridgereceivedat")
        });
        if same_record && admitted + extra <= fallbacks {
            admitted += extra;
        } else {
            report.unexplained.push(event.clone());
        }
    }
    if admitted > 0 {
        report.duplicates.insert(
            "spooled after fallback_after_ms, and the direct delivery landed too",
            admitted,
        );
    }
    report
}
