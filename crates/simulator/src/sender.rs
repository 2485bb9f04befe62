//! Sends calls' webhooks the way VoiceHub does: `POST` with the secret in `x-webhook-secret`,
//! a request timeout, and a fixed number of retries with a fixed delay on anything but a 2xx
//! (`../shared/spec/voicehub.md` §1: 3 retries, 1 s apart, 10 s timeout by default). A call's
//! webhooks go one after another, as VoiceHub sends them; calls run concurrently.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Semaphore;

use crate::calls::{Trouble, Webhook, call_events};

/// How to send.
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// The bridge's webhook URL.
    pub webhook_url: String,
    /// The shared secret.
    pub secret: String,
    /// Calls to play.
    pub calls: usize,
    /// Calls in progress at once.
    pub concurrency: usize,
    /// Calls started per second; `None`: as fast as `concurrency` allows.
    pub calls_per_second: Option<f64>,
    /// Retries after a failed attempt.
    pub retries: u32,
    /// Delay between attempts.
    pub retry_delay: Duration,
    /// Bound on one request.
    pub timeout: Duration,
    /// URL prefix of the analysis API (see [`crate::AnalysisApi::base_url`]).
    pub analysis_base: String,
    /// Distinguishes this run's ids from other runs'.
    pub run: String,
    /// Trouble to add.
    pub trouble: Trouble,
}

/// One webhook body that got a 2xx, in the order the acknowledgements came.
#[derive(Debug, Clone)]
pub struct Acknowledged {
    /// Its call.
    pub call_id: String,
    /// Its `eventId`.
    pub event_id: Option<String>,
    /// Its `eventType`.
    pub event_type: &'static str,
}

/// What was sent and what was acknowledged.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Calls played.
    pub calls: usize,
    /// Distinct webhook bodies.
    pub webhooks: usize,
    /// HTTP requests made, retries and duplicates included.
    pub requests: u64,
    /// Bodies that got a 2xx.
    pub acknowledged: usize,
    /// Bodies that never got a 2xx, retries exhausted (malformed ones are meant to).
    pub refused: usize,
    /// Extra deliveries of acknowledged bodies (trouble).
    pub duplicates_sent: usize,
    /// Seconds from the first call to the last answer.
    pub seconds: f64,
    /// Per acknowledged body, in acknowledgement order.
    #[serde(skip)]
    pub acked: Vec<Acknowledged>,
}

#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    webhooks: AtomicUsize,
    refused: AtomicUsize,
    duplicates: AtomicUsize,
    acked: Mutex<Vec<Acknowledged>>,
}

/// Plays `options.calls` calls against the bridge and reports.
pub async fn simulate(options: SendOptions) -> Report {
    let client = reqwest::Client::builder()
        .timeout(options.timeout)
        .pool_max_idle_per_host(options.concurrency)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new());
    let options = Arc::new(options);
    let tally = Arc::new(Tally::default());
    let slots = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for index in 0..options.calls {
        if let Some(rate) = options.calls_per_second.filter(|r| *r > 0.0) {
            let due = started + Duration::from_secs_f64(index as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let (client, options, tally) = (client.clone(), options.clone(), tally.clone());
        calls.spawn(async move {
            let events = call_events(&options.run, index, &options.analysis_base, options.trouble);
            for webhook in events {
                play(&client, &options, &tally, webhook).await;
            }
            drop(slot);
        });
    }
    while calls.join_next().await.is_some() {}

    let acked = tally
        .acked
        .lock()
        .map(|mut acked| std::mem::take(&mut *acked))
        .unwrap_or_default();
    Report {
        calls: options.calls,
        webhooks: tally.webhooks.load(Ordering::Relaxed),
        requests: tally.requests.load(Ordering::Relaxed),
        acknowledged: acked.len(),
        refused: tally.refused.load(Ordering::Relaxed),
        duplicates_sent: tally.duplicates.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
        acked,
    }
}

async fn play(client: &reqwest::Client, options: &SendOptions, tally: &Tally, webhook: Webhook) {
    let number = tally.webhooks.fetch_add(1, Ordering::Relaxed) + 1;
    let body = webhook.body.to_string();
    if !deliver(client, options, tally, &body).await {
        tally.refused.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if let Ok(mut acked) = tally.acked.lock() {
        acked.push(Acknowledged {
            call_id: webhook.call_id,
            event_id: webhook.event_id,
            event_type: webhook.event_type,
        });
    }
    if options
        .trouble
        .duplicate_every
        .is_some_and(|n| number.is_multiple_of(n))
    {
        tally.duplicates.fetch_add(1, Ordering::Relaxed);
        deliver(client, options, tally, &body).await;
    }
}

/// One delivery with VoiceHub's retries; true once a 2xx came.
async fn deliver(
    client: &reqwest::Client,
    options: &SendOptions,
    tally: &Tally,
    body: &str,
) -> bool {
    for attempt in 0..=options.retries {
        if attempt > 0 {
            tokio::time::sleep(options.retry_delay).await;
        }
        tally.requests.fetch_add(1, Ordering::Relaxed);
        let answer = client
            .post(&options.webhook_url)
            .header("x-webhook-secret", &options.secret)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await;
        if answer.is_ok_and(|response| response.status().is_success()) {
            return true;
        }
    }
    false
}
