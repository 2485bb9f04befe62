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
//! `voicehub-load bare-bridge --listen ADDR --brokers HOST:PORT [--topic T] [--workers N]
//! [--keys N]` serves the smallest honest bridge: actix-web reads the body and produces it
//! unparsed with rdkafka (acks=all, idempotent, linger 5 ms, lz4, as the ingress's defaults),
//! answering 200 only after the broker's acknowledgement (503 if it fails): the baseline the
//! ingress's parsing, authentication, deduplication, metrics and logging are measured against.
//! Unkeyed by default (librdkafka then fills one partition's batch at a time); `--keys N`
//! keys the records by a counter modulo N, with the ingress's partitioner, which spreads them
//! over the partitions in smaller batches as the ingress's call keys do. `--contract-headers`
//! also writes the record contract's nine CloudEvents headers (`docs/records.md`), of the sizes
//! the ingress writes, each copied once by librdkafka: what any bridge writing this contract
//! pays, before parsing anything.
//!
//! `voicehub-load analysis-api --listen ADDR [--delay-ms 20]` serves the example analysis on
//! every path after the delay: a stand-in for VoiceHub's analysis API.
//!
//! `voicehub-load bare-enricher --brokers HOST:PORT --input TOPIC --count N [--output T]
//! [--group G] [--in-flight 96]` is the smallest honest enricher, the baseline the enricher is
//! measured against: a librdkafka consumer of the analysis-ready topic, one reqwest GET of each
//! record's `analysisResultUrl` (the one field it reads), the body produced as it came, keyed
//! by the input's key, with the bare bridge's producer settings; each offset stored for the
//! periodic commit once its record is acknowledged; at most `--in-flight` records at once. No
//! validation, retries, headers, metrics or per-partition commit order. It prints
//! `{"event":"first"}` at its first record and a `done` line after N, then waits to be stopped.

#![allow(clippy::print_stdout)] // a command-line tool: stdout is its interface

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use clap::Parser;

/// Webhook load and the baselines it is measured against (see the module documentation).
#[derive(Debug, Parser)]
#[command(name = "voicehub-load", version)]
enum Cli {
    /// Post CallStatusChanged (or AnalysisResultReady) events; print one JSON line of results.
    Run(RunArgs),
    /// A minimal actix handler that reads the body and answers 200: the HTTP ceiling.
    Baseline {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: String,
        /// actix workers (0: one per core).
        #[arg(long, default_value_t = 0)]
        workers: usize,
    },
    /// The smallest honest bridge: the body produced unparsed, 200 after the acknowledgement.
    BareBridge {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:8083")]
        listen: String,
        /// Bootstrap servers.
        #[arg(long)]
        brokers: String,
        /// The topic.
        #[arg(long, default_value = "bench.bare-bridge")]
        topic: String,
        /// actix workers (0: one per core).
        #[arg(long, default_value_t = 0)]
        workers: usize,
        /// Key records by a counter modulo this (0: unkeyed).
        #[arg(long, default_value_t = 0)]
        keys: u64,
        /// Write the record contract's nine headers too.
        #[arg(long)]
        contract_headers: bool,
        /// Read four fields of the body (eventType, eventId, timestamp, callId) with a
        /// borrowed struct, key by callId (instead of --keys), write eventId into ce_id: the
        /// contract bridge of issue 34's measurements. A body without them gets 400.
        #[arg(long)]
        parse_body: bool,
    },
    /// The smallest honest enricher: consume, GET, produce the body, store the offset.
    BareEnricher(BareEnricherArgs),
    /// The example analysis on every path after a delay: a stand-in analysis API.
    AnalysisApi {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:8082")]
        listen: String,
        /// Delay before each answer.
        #[arg(long, default_value_t = 20)]
        delay_ms: u64,
    },
}

#[derive(Debug, clap::Args)]
struct BareEnricherArgs {
    /// Bootstrap servers.
    #[arg(long)]
    brokers: String,
    /// The analysis-ready topic.
    #[arg(long)]
    input: String,
    /// Where the fetched bodies go.
    #[arg(long, default_value = "bench.bare-enriched")]
    output: String,
    /// The consumer group.
    #[arg(long, default_value = "bench-bare-enricher")]
    group: String,
    /// Records at once (the enricher's consumer.max_in_flight).
    #[arg(long, default_value_t = 96)]
    in_flight: usize,
    /// Records to go through before reporting.
    #[arg(long)]
    count: u64,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The webhook URL.
    #[arg(long)]
    url: String,
    /// The webhook secret.
    #[arg(long, default_value = "")]
    secret: String,
    /// Workers (closed loop) or connections (open loop).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// How long.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Requests per second (open loop); 0: as fast as answered (closed loop).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Stop after this many requests.
    #[arg(long, default_value_t = u64::MAX)]
    count: u64,
    /// Send AnalysisResultReady events whose analysisResultUrl is BASE/<n>.
    #[arg(long, value_name = "BASE")]
    analysis_url: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse() {
        Cli::Run(args) => run(args).await,
        Cli::Baseline { listen, workers } => baseline(listen, workers).await,
        Cli::BareBridge {
            listen,
            brokers,
            topic,
            workers,
            keys,
            contract_headers,
            parse_body,
        } => {
            let shape = BareShape {
                keys,
                contract_headers,
                parse_body,
            };
            bare_bridge(listen, brokers, topic, workers, shape).await
        }
        Cli::BareEnricher(args) => bare_enricher(args).await,
        Cli::AnalysisApi { listen, delay_ms } => {
            analysis_api(listen, Duration::from_millis(delay_ms)).await
        }
    }
}

async fn baseline(listen: String, workers: usize) -> anyhow::Result<()> {
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

/// The bare baselines' producer (acks=all, idempotent, linger 5 ms, lz4: the ingress's
/// defaults), with `topic` created first (3 partitions).
async fn bare_producer(
    brokers: &str,
    topic: &str,
) -> anyhow::Result<rdkafka::producer::FutureProducer> {
    let mut settings = voicehub_runtime::settings::KafkaSettings {
        bootstrap_servers: brokers.to_owned(),
        ..Default::default()
    };
    settings.provision.partitions = 3;
    settings.provision.replication_factor = 1;
    voicehub_runtime::kafka::ensure_topics(&settings, &[topic], Duration::from_secs(30)).await?;
    Ok(rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set("message.timeout.ms", "10000")
        .set("partitioner", "murmur2_random")
        .create()?)
}

/// What a bare bridge does beyond producing the body.
#[derive(Debug, Clone, Copy)]
struct BareShape {
    keys: u64,
    contract_headers: bool,
    parse_body: bool,
}

/// The four fields `--parse-body` reads, borrowed from the body.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct WebhookHead<'a> {
    #[serde(borrow)]
    event_type: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    event_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    timestamp: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    call_id: std::borrow::Cow<'a, str>,
}

async fn bare_bridge(
    listen: String,
    brokers: String,
    topic: String,
    workers: usize,
    shape: BareShape,
) -> anyhow::Result<()> {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::FutureRecord;
    use voicehub_model::record::header;

    let producer = bare_producer(&brokers, &topic).await?;
    let topic: Arc<str> = topic.into();
    let counter = Arc::new(AtomicU64::new(0));
    let mut server = HttpServer::new(move || {
        let (producer, topic, counter) = (producer.clone(), topic.clone(), counter.clone());
        App::new().default_service(web::to(move |body: web::Bytes| {
            let (producer, topic) = (producer.clone(), topic.clone());
            let n = counter.fetch_add(1, Ordering::Relaxed);
            async move {
                let head = if shape.parse_body {
                    match serde_json::from_slice::<WebhookHead<'_>>(&body) {
                        Ok(head) => Some(head),
                        Err(_) => return HttpResponse::BadRequest().finish(),
                    }
                } else {
                    None
                };
                let key = match &head {
                    Some(head) => Some(head.call_id.to_string()),
                    None => (shape.keys > 0).then(|| (n % shape.keys).to_string()),
                };
                let mut record = FutureRecord::<str, [u8]>::to(&topic).payload(&body);
                if let Some(key) = &key {
                    record = record.key(key.as_str());
                }
                if shape.contract_headers {
                    // The ingress's values for a load-tool webhook, by size.
                    let id = match &head {
                        Some(head) => format!("{}-{}", head.event_type, head.event_id),
                        None => format!("bench-{n:021}-{n}"),
                    };
                    let at = head
                        .as_ref()
                        .map_or("2025-10-14T09:21:07.512Z", |h| &h.timestamp);
                    let values = [
                        (header::SPEC_VERSION, "1.0"),
                        (header::ID, id.as_str()),
                        (header::TYPE, "ai.dataqueue.voicehub.CallStatusChanged"),
                        (header::SOURCE, "/voicehub/sources/default"),
                        (header::TIME, at),
                        (header::SUBJECT, key.as_deref().unwrap_or("call-00")),
                        (header::CONTENT_TYPE, "application/json"),
                        (header::RECEIVED_AT, at),
                        (header::BRIDGE_VERSION, voicehub_runtime::BRIDGE_VERSION),
                    ];
                    let mut headers = OwnedHeaders::new_with_capacity(values.len());
                    for (key, value) in values {
                        headers = headers.insert(Header {
                            key,
                            value: Some(value.as_bytes()),
                        });
                    }
                    record = record.headers(headers);
                }
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

async fn analysis_api(listen: String, delay: Duration) -> anyhow::Result<()> {
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

/// The input record's one field the bare enricher reads.
#[derive(serde::Deserialize)]
struct AnalysisReady<'a> {
    #[serde(rename = "analysisResultUrl", borrow)]
    url: std::borrow::Cow<'a, str>,
}

/// The smallest honest enricher (see the module documentation). Prints `{"event":"first"}` at
/// its first record and a `done` line once `count` records are through, then waits to be
/// stopped, so that a script can read its CPU time and peak RSS at both moments.
async fn bare_enricher(args: BareEnricherArgs) -> anyhow::Result<()> {
    use rdkafka::Message;
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::producer::FutureRecord;

    let producer = bare_producer(&args.brokers, &args.output).await?;
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("group.id", &args.group)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[&args.input])?;
    let consumer = Arc::new(consumer);
    let http = reqwest::Client::new();
    let output: Arc<str> = args.output.into();
    let slots = Arc::new(tokio::sync::Semaphore::new(args.in_flight));
    let (done, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let all_done = Arc::new(tokio::sync::Notify::new());
    let mut first: Option<Instant> = None;
    loop {
        let slot = Arc::clone(&slots).acquire_owned().await?;
        let message = tokio::select! {
            message = consumer.recv() => message?.detach(),
            () = all_done.notified() => break,
        };
        first.get_or_insert_with(|| {
            println!("{}", serde_json::json!({"event": "first"}));
            Instant::now()
        });
        let (consumer, producer, http, output) = (
            Arc::clone(&consumer),
            producer.clone(),
            http.clone(),
            Arc::clone(&output),
        );
        let (done, failed, all_done, count) = (
            Arc::clone(&done),
            Arc::clone(&failed),
            Arc::clone(&all_done),
            args.count,
        );
        tokio::spawn(async move {
            let enriched = async {
                let ready: AnalysisReady<'_> =
                    serde_json::from_slice(message.payload().unwrap_or_default())?;
                let body = http.get(ready.url.as_ref()).send().await?.bytes().await?;
                let mut record = FutureRecord::<[u8], [u8]>::to(&output).payload(&body);
                if let Some(key) = message.key() {
                    record = record.key(key);
                }
                producer
                    .send(record, Duration::from_secs(10))
                    .await
                    .map_err(|(error, _)| error)?;
                consumer.store_offset(message.topic(), message.partition(), message.offset())?;
                anyhow::Ok(())
            };
            if enriched.await.is_err() {
                failed.fetch_add(1, Ordering::Relaxed);
            }
            if done.fetch_add(1, Ordering::Relaxed) + 1 == count {
                all_done.notify_one();
            }
            drop(slot);
        });
    }
    let seconds = first.map_or(0.0, |at| at.elapsed().as_secs_f64());
    let records = done.load(Ordering::Relaxed);
    println!(
        "{}",
        serde_json::json!({
            "event": "done",
            "records": records,
            "failed": failed.load(Ordering::Relaxed),
            "seconds": seconds,
            "records_per_s": records as f64 / seconds.max(f64::EPSILON),
        })
    );
    // Measured from outside (CPU, peak RSS) until stopped.
    std::future::pending::<()>().await;
    Ok(())
}

struct Totals {
    ok: AtomicU64,
    other: AtomicU64,
    errors: AtomicU64,
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let RunArgs {
        url,
        secret,
        concurrency,
        seconds,
        rate,
        count,
        analysis_url,
    } = args;
    // Unique per run, so that a run's eventIds never repeat an earlier run's against the same
    // ingress (which would answer them from its deduplication table).
    let started_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let run_id = format!("{:x}{:x}", std::process::id(), started_at);

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
