//! The broker stopped and restarted several times under steady VoiceHub traffic: nothing
//! acknowledged is lost, and both services recover by themselves.

use std::time::{Duration, Instant};

use voicehub_simulator::{AnalysisTrouble, simulate};
use voicehub_testkit::TestBroker;

use crate::harness::{Accounting, Bridge, until_ready, voicehub_traffic};

const BOUNCES: usize = 3;
/// Longer than the ingress's produce deadline (5 s), so webhooks get 503 and VoiceHub's
/// retries are exercised; shorter than message.timeout.ms (30 s), so queued records survive.
const OUTAGE: Duration = Duration::from_secs(6);
const UP_BETWEEN: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread")]
async fn broker_bounces_under_load_lose_nothing_acknowledged_and_need_no_restart() {
    // A broker of its own (tansu on SQLite, or Apache Kafka): its data survives its restarts.
    let mut broker = TestBroker::start_stoppable().await.unwrap();
    let bridge = Bridge::start(&broker, AnalysisTrouble::default()).await;

    // About 30 s of calls (4 webhooks per answered call) while the broker bounces.
    let traffic = tokio::spawn(simulate(voicehub_traffic(
        &bridge.webhook_url,
        &bridge.api,
        300,
        10.0,
    )));
    let mut recoveries = Vec::new();
    for _ in 0..BOUNCES {
        tokio::time::sleep(UP_BETWEEN).await;
        broker.stop().await;
        tokio::time::sleep(OUTAGE).await;
        let during = reqwest::get(format!("http://127.0.0.1:{}/readyz", bridge.ingress_admin))
            .await
            .unwrap();
        assert_eq!(
            during.status(),
            503,
            "the ingress did not notice the outage"
        );
        broker.resume().await.unwrap();
        let resumed = Instant::now();
        until_ready(bridge.ingress_admin, Duration::from_secs(30)).await;
        until_ready(bridge.enricher_admin, Duration::from_secs(30)).await;
        recoveries.push(resumed.elapsed());
    }
    let report = traffic.await.unwrap();

    let accounting =
        Accounting::of(&broker, &bridge.topics, &report, Duration::from_secs(90)).await;
    eprintln!(
        "broker bounce: {BOUNCES} outages of {OUTAGE:?}; {} webhooks, {} requests, {} \
         acknowledged, {} refused by VoiceHub's retry budget; recovery {recoveries:?}; \
         {accounting}",
        report.webhooks, report.requests, report.acknowledged, report.refused
    );
    assert!(accounting.lost.is_empty(), "lost: {:?}", accounting.lost);
    assert_eq!(accounting.not_enriched, 0, "{accounting:?}");
    assert!(accounting.acknowledged > 500, "{report:?}");
    // VoiceHub's budget (4 attempts, 1 s apart, 10 s each) outlasts a 6 s outage.
    assert_eq!(report.refused, 0, "{report:?}");
    assert!(bridge.still_running(), "a service exited");
    bridge.stop().await;
}
