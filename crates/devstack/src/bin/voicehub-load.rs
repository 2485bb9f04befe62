//! `voicehub-load`: webhook load for benchmarks.
//!
//! `voicehub-load run --url URL --secret S [--concurrency 32] [--seconds 20] [--rate N]`
//! posts `CallStatusChanged` events with unique `eventId`s (100 calls in rotation) and prints
//! one JSON line: requests, 2xx, other statuses, errors, rate, latency percentiles. Without
//! `--rate` it is closed-loop (each of `--concurrency` workers sends its next request when the
//! previous one is answered: the maximum rate); with `--rate` it is open-loop at that many
//! requests per second (latency includes any queueing, as VoiceHub would see it).
//!
//! `--count N` stops after N requests; `--analysis-url BASE` sends `AnalysisResultReady` events
//! whose `analysisResultUrl` is `BASE/<n>` instead.
//!
//! `voicehub-load baseline --listen ADDR [--workers N]` serves a minimal actix handler that reads
//! the body and answers 200: the HTTP ceiling to compare the ingress with.
//!
//! `voicehub-load bare-bridge --listen ADDR --brokers HOST:PORT [--topic T] [--workers N]`
//! serves the smallest honest bridge: actix-web reads the body and produces it unparsed with
//! rdkafka (acks=all, idempotent, linger 5 ms, lz4, as the ingress's defaults), answering 200
//! only after the broker's acknowledgement (503 if it fails): the baseline the ingress's
//! parsing, authentication, deduplication, metrics and logging are measured against.
//!
//! `voicehub-load analysis-api --listen ADDR [--delay-ms 20]` serves the example analysis on
//! every path after the delay: a stand-in for VoiceHub's analysis API.

#![allow(clippy::print_stdout)] // a command-line tool: stdout is its interface

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use voicehub_devstack::{flag, number_flag};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("run") => run(&args).await,
        Some("baseline") => baseline(&args).await,
        Some("bare-bridge") => bare_bridge(&args).await,
        Some("analysis-api") => analysis_api(&args).await,
        _ => {
            anyhow::bail!(
                "usage: voicehub-load run --url URL --secret S | baseline --listen ADDR | \
                 bare-bridge --listen ADDR --brokers HOST:PORT | analysis-api --listen ADDR"
            )
        }
    }
}

async fn baseline(args: &[String]) -> anyhow::Result<()> {
    let listen = flag(args, "--listen").unwrap_or_else(|| "127.0.0.1:8081".into());
    let workers: usize = number_flag(args, "--workers", 0)?;
    let mut server = HttpServer::new(|| {
        App::new().default_service(web::to(|body: web::Bytes| async move {
            std::hint::black_box(body);
            HttpResponse::Ok().json(serde_json::json!({"status": "accepted"}))
        }))
    })
    .bind(&listen)?;
    if workers > 0 {
        server = server.workers(workers);
    }
    println!("baseline listening on {listen}");
    server.run().await?;
    Ok(())
}

async fn bare_bridge(args: &[String]) -> anyhow::Result<()> {
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let listen = flag(args, "--listen").unwrap_or_else(|| "127.0.0.1:8083".into());
    let brokers =
        flag(args, "--brokers").ok_or_else(|| anyhow::anyhow!("--brokers is required"))?;
    let topic = flag(args, "--topic").unwrap_or_else(|| "bench.bare-bridge".into());
    let workers: usize = number_flag(args, "--workers", 0)?;
    let mut settings = voicehub_runtime::settings::KafkaSettings {
        bootstrap_servers: brokers.clone(),
        ..Default::default()
    };
    settings.provision.partitions = 3;
    settings.provision.replication_factor = 1;
    voicehub_runtime::kafka::ensure_topics(&settings, &[&topic], Duration::from_secs(30)).await?;
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set("message.timeout.ms", "10000")
        .create()?;
    let topic: Arc<str> = topic.into();
    let mut server = HttpServer::new(move || {
        let (producer, topic) = (producer.clone(), topic.clone());
        App::new().default_service(web::to(move |body: web::Bytes| {
            let (producer, topic) = (producer.clone(), topic.clone());
            async move {
                let record = FutureRecord::<(), [u8]>::to(&topic).payload(&body);
                match producer.send(record, Duration::from_secs(2)).await {
                    Ok(_) => HttpResponse::Ok().json(serde_json::json!({"status": "accepted"})),
                    Err(_) => HttpResponse::ServiceUnavailable().finish(),
                }
            }
        }))
    })
    .bind(&listen)?;
    if workers > 0 {
        server = server.workers(workers);
    }
    println!("bare bridge listening on {listen}, producing to {brokers}");
    server.run().await?;
    Ok(())
}

const EXAMPLE_ANALYSIS: &[u8] =
    include_bytes!("../../../../tests/fixtures/voicehub/analysis-result.json");

async fn analysis_api(args: &[String]) -> anyhow::Result<()> {
    let listen = flag(args, "--listen").unwrap_or_else(|| "127.0.0.1:8082".into());
    let delay = Duration::from_millis(number_flag(args, "--delay-ms", 20)?);
    let server = HttpServer::new(move || {
        App::new().default_service(web::to(move || async move {
            tokio::time::sleep(delay).await;
            HttpResponse::Ok()
                .content_type("application/json")
                .body(EXAMPLE_ANALYSIS)
        }))
    })
    .bind(&listen)?;
    println!("analysis API listening on {listen}, answering in {delay:?}");
    server.run().await?;
    Ok(())
}

struct Totals {
    ok: AtomicU64,
    other: AtomicU64,
    errors: AtomicU64,
}

async fn run(args: &[String]) -> anyhow::Result<()> {
    let url = flag(args, "--url").ok_or_else(|| anyhow::anyhow!("--url is required"))?;
    let secret = flag(args, "--secret").unwrap_or_default();
    let concurrency: usize = number_flag(args, "--concurrency", 32)?;
    let seconds: u64 = number_flag(args, "--seconds", 20)?;
    let rate: f64 = number_flag(args, "--rate", 0.0)?;
    let count: u64 = number_flag(args, "--count", u64::MAX)?;
    let analysis_url = flag(args, "--analysis-url");
    let run_id = format!(
        "{:x}",
        std::process::id() ^ Instant::now().elapsed().subsec_nanos()
    );

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency.max(64))
        .timeout(Duration::from_secs(10))
        .build()?;
    let totals = Arc::new(Totals {
        ok: AtomicU64::new(0),
        other: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    let sequence = Arc::new(AtomicU64::new(0));
    let send = {
        let (client, totals, sequence) = (client.clone(), totals.clone(), sequence.clone());
        let analysis_url = analysis_url.clone();
        move || {
            let (client, totals, url, secret) =
                (client.clone(), totals.clone(), url.clone(), secret.clone());
            let n = sequence.fetch_add(1, Ordering::Relaxed);
            let mut event = serde_json::json!({
                "eventType": "CallStatusChanged",
                "timestamp": "2025-10-14T09:21:07.512Z",
                "eventId": format!("bench-{run_id}-{n}"),
                "callId": format!("call-{}", n % 100),
                "status": "in-progress",
            });
            if let Some(base) = &analysis_url {
                event["eventType"] = "AnalysisResultReady".into();
                event["analysisId"] = format!("anl-{n}").into();
                event["analysisResultUrl"] = format!("{base}/{n}").into();
            }
            let body = event.to_string();
            async move {
                let started = Instant::now();
                let response = client
                    .post(&url)
                    .header("x-webhook-secret", secret)
                    .body(body)
                    .send()
                    .await;
                let latency = started.elapsed();
                match response {
                    Ok(r) if r.status().is_success() => totals.ok.fetch_add(1, Ordering::Relaxed),
                    Ok(_) => totals.other.fetch_add(1, Ordering::Relaxed),
                    Err(_) => totals.errors.fetch_add(1, Ordering::Relaxed),
                };
                latency
            }
        }
    };

    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let mut latencies: Vec<Duration> = Vec::new();
    if rate > 0.0 {
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut tasks = tokio::task::JoinSet::new();
        while Instant::now() < until && sequence.load(Ordering::Relaxed) < count {
            ticker.tick().await;
            tasks.spawn(send());
            while let Some(Ok(latency)) = tasks.try_join_next() {
                latencies.push(latency);
            }
        }
        while let Some(result) = tasks.join_next().await {
            latencies.extend(result.ok());
        }
    } else {
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..concurrency {
            let send = send.clone();
            let sequence = sequence.clone();
            workers.spawn(async move {
                let mut mine = Vec::new();
                while Instant::now() < until && sequence.load(Ordering::Relaxed) < count {
                    mine.push(send().await);
                }
                mine
            });
        }
        while let Some(result) = workers.join_next().await {
            latencies.extend(result.unwrap_or_default());
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let ok = totals.ok.load(Ordering::Relaxed);
    println!(
        "{}",
        serde_json::json!({
            "requests": latencies.len(),
            "ok": ok,
            "other_status": totals.other.load(Ordering::Relaxed),
            "errors": totals.errors.load(Ordering::Relaxed),
            "seconds": elapsed,
            "ok_per_second": ok as f64 / elapsed,
            "p50_ms": percentile(0.50),
            "p99_ms": percentile(0.99),
            "max_ms": percentile(1.0),
        })
    );
    Ok(())
}
