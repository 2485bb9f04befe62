//! The local stack: the settings of its two services, and its two loops (simulated calls,
//! the summary line). The end-to-end test builds the same stack.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::sync::watch;
use voicehub_enricher::EnricherSettings;
use voicehub_enricher::allow_list::AllowedHost;
use voicehub_enricher::settings::SourceSettings as EnricherSource;
use voicehub_ingress::IngressSettings;
use voicehub_ingress::settings::{HttpSettings, SourceSettings as IngressSource};
use voicehub_model::Topics;
use voicehub_runtime::settings::{AdminSettings, KafkaSettings};
use voicehub_simulator::{SendOptions, Trouble, simulate};

/// The ingress on loopback `port` (admin on `admin_port`; 0 for any), one `default` source
/// whose secret is in `secret_file`.
pub fn ingress_settings(
    kafka: &KafkaSettings,
    port: u16,
    admin_port: u16,
    secret_file: PathBuf,
) -> IngressSettings {
    IngressSettings {
        http: HttpSettings {
            listen: format!("127.0.0.1:{port}"),
            ..HttpSettings::default()
        },
        dedupe: Default::default(),
        spool: Default::default(),
        sources: BTreeMap::from([(
            "default".to_owned(),
            IngressSource {
                secret_envs: Vec::new(),
                secret_files: vec![secret_file],
                secret_reload_ms: 5_000,
            },
        )]),
        kafka: kafka.clone(),
        admin: AdminSettings {
            listen: format!("127.0.0.1:{admin_port}"),
        },
        log: Default::default(),
    }
}

/// The enricher with its admin server on loopback `admin_port`, one `default` source whose
/// API key is in `key_file`, fetching from `allowed_hosts` over HTTP or HTTPS.
pub fn enricher_settings(
    kafka: &KafkaSettings,
    admin_port: u16,
    key_file: PathBuf,
    allowed_hosts: Vec<AllowedHost>,
) -> EnricherSettings {
    EnricherSettings {
        consumer: Default::default(),
        fetch: Default::default(),
        retry: Default::default(),
        sources: BTreeMap::from([(
            "default".to_owned(),
            EnricherSource {
                api_key_env: None,
                api_key_file: Some(key_file),
                allowed_hosts,
                allow_http: true,
                api_key_reload_ms: 5_000,
            },
        )]),
        kafka: kafka.clone(),
        admin: AdminSettings {
            listen: format!("127.0.0.1:{admin_port}"),
        },
        log: Default::default(),
    }
}

/// Plays calls at `rate` per second in batches of five seconds' worth, with some trouble
/// (duplicates, out-of-order statuses, a malformed body now and then), until `stop`.
pub async fn play_calls(
    webhook_url: String,
    secret: String,
    analysis_base: String,
    rate: f64,
    mut stop: watch::Receiver<bool>,
) {
    let calls = ((rate * 5.0).round() as usize).max(1);
    for batch in 1.. {
        let options = SendOptions {
            webhook_url: webhook_url.clone(),
            secret: secret.clone(),
            calls,
            concurrency: calls,
            calls_per_second: Some(rate),
            retries: 3,
            retry_delay: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            analysis_base: analysis_base.clone(),
            run: format!("{}-{batch}", std::process::id()),
            trouble: Trouble {
                duplicate_every: Some(10),
                out_of_order_every: Some(7),
                malformed_every: Some(50),
            },
        };
        tokio::select! {
            report = simulate(options) => tracing::info!(
                calls = report.calls,
                acknowledged = report.acknowledged,
                refused = report.refused,
                duplicates = report.duplicates_sent,
                "simulated calls sent"
            ),
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

/// Prints the records on each topic and the enricher's latency (from `enricher_metrics`, its
/// `/metrics` URL) every five seconds until `stop`.
pub async fn summarise(
    client: ClientConfig,
    topics: Topics,
    enricher_metrics: String,
    mut stop: watch::Receiver<bool>,
) {
    let Ok(consumer) = client.create::<BaseConsumer>() else {
        tracing::warn!("no summary: could not create a client");
        return;
    };
    let consumer = std::sync::Arc::new(consumer);
    let http = reqwest::Client::new();
    let mut last = (0.0, 0.0);
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        let (consumer, topics) = (consumer.clone(), topics.clone());
        let counts = tokio::task::spawn_blocking(move || {
            topics
                .all()
                .iter()
                .map(|(_, name)| format!("{} {}", short(name), records_on(&consumer, name)))
                .collect::<Vec<_>>()
                .join(" · ")
        })
        .await
        .unwrap_or_default();
        tracing::info!("records  {counts}");
        let now = latency_sum_and_count(&http, &enricher_metrics).await;
        if now.1 > last.1 {
            let average_ms = (now.0 - last.0) / (now.1 - last.1) * 1_000.0;
            tracing::info!(
                "enriched {} in the last 5 s, {average_ms:.0} ms on average from webhook to enriched record",
                now.1 - last.1
            );
        }
        last = now;
    }
}

/// The sum and count of `voicehub_enricher_enrichment_latency_seconds`, (0, 0) if unreadable.
async fn latency_sum_and_count(http: &reqwest::Client, url: &str) -> (f64, f64) {
    let Ok(text) = async { http.get(url).send().await?.text().await }.await else {
        return (0.0, 0.0);
    };
    let value = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (
        value("voicehub_enricher_enrichment_latency_seconds_sum "),
        value("voicehub_enricher_enrichment_latency_seconds_count "),
    )
}

fn short(topic: &str) -> &str {
    topic
        .strip_prefix("voicehub.")
        .and_then(|t| t.strip_suffix(".v1"))
        .unwrap_or(topic)
}

/// The sum of the high watermarks of the topic's partitions.
fn records_on(consumer: &BaseConsumer, topic: &str) -> i64 {
    let timeout = Duration::from_secs(2);
    let Ok(metadata) = consumer.fetch_metadata(Some(topic), timeout) else {
        return 0;
    };
    metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions())
        .filter_map(|p| consumer.fetch_watermarks(topic, p.id(), timeout).ok())
        .map(|(low, high)| high - low)
        .sum()
}
