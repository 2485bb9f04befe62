//! `voicehub-dev`: the whole bridge on this machine, nothing to install.
//!
//! Starts an embedded Kafka-compatible broker (tansu, SQLite in a temporary directory), creates
//! the topics, runs the ingress and the enricher on loopback, serves a stand-in analysis API,
//! and plays simulated VoiceHub calls at a steady rate, printing a summary every few seconds.
//! Ctrl-C stops it all cleanly.
//!
//! Flags: `--port` (8080), `--admin-port` (9090; the enricher's is the next one), `--broker-port`
//! (9092), `--api-port` (8090, the stand-in analysis API), `--secret` (`dev-webhook-secret`),
//! `--api-key` (`dev-api-key`), `--rate` (simulated calls per second, 2), `--no-sim` (no
//! simulated calls: send your own), `--storage sqlite|memory` (sqlite; memory only with
//! `--broker-only`, for producer benchmarks: it loses records for consumers), `--broker-only` (the
//! broker alone: for running the services yourself or for benchmarks).

#![allow(clippy::print_stdout)] // a command-line tool: stdout is its interface

use anyhow::Context;
use clap::Parser;
use voicehub_devstack::stack;
use voicehub_enricher::EnricherSettings;
use voicehub_enricher::allow_list::AllowedHost;
use voicehub_ingress::IngressSettings;
use voicehub_runtime::settings::{KafkaSettings, LogFormat, LogSettings};
use voicehub_runtime::shutdown::ShutdownTrigger;
use voicehub_runtime::{shutdown, telemetry};
use voicehub_simulator::{AnalysisApi, AnalysisTrouble};
use voicehub_testkit::{Storage, TestBroker};

/// The whole bridge on this machine: an embedded broker, the ingress, the enricher, a stand-in
/// analysis API and simulated VoiceHub calls, all on loopback. Ctrl-C stops it all cleanly.
#[derive(Debug, Parser)]
#[command(name = "voicehub-dev", version)]
struct Args {
    /// The ingress's webhook port.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The ingress's admin port; the enricher's is the next one.
    #[arg(long, default_value_t = 9090)]
    admin_port: u16,
    /// The embedded broker's port.
    #[arg(long, default_value_t = 9092)]
    broker_port: u16,
    /// The stand-in analysis API's port.
    #[arg(long, default_value_t = 8090)]
    api_port: u16,
    /// The webhook secret.
    #[arg(long, default_value = "dev-webhook-secret")]
    secret: String,
    /// The analysis API key.
    #[arg(long, default_value = "dev-api-key")]
    api_key: String,
    /// Simulated calls per second.
    #[arg(long, default_value_t = 2.0)]
    rate: f64,
    /// No simulated calls: send your own (`voicehub-sim` serves its analyses on --api-port).
    #[arg(long)]
    no_sim: bool,
    /// The broker's storage: sqlite, or memory (only with --broker-only, for producer
    /// benchmarks: it loses records for consumers).
    #[arg(long, value_enum, default_value = "sqlite")]
    storage: StorageArg,
    /// The broker alone: for running the services yourself, or for benchmarks.
    #[arg(long)]
    broker_only: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum StorageArg {
    Sqlite,
    Memory,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Args {
        port,
        admin_port,
        broker_port,
        api_port,
        secret,
        api_key,
        rate,
        no_sim,
        storage,
        broker_only,
    } = Args::parse();
    let storage = match storage {
        StorageArg::Sqlite => Storage::Sqlite,
        // See the test kit's `a_fetch_from_inside_a_batch_gets_the_rest_of_it_...` test.
        StorageArg::Memory if broker_only => {
            eprintln!(
                "WARNING: tansu's memory engine skips the rest of a batch when a fetch starts \
                 inside it (after a consumer pauses, seeks or restarts from a committed \
                 offset): consumers lose records. For producer benchmarks only."
            );
            Storage::Memory
        }
        StorageArg::Memory => anyhow::bail!(
            "--storage memory: tansu's memory engine loses records for consumers (the enricher \
             among them); it is offered with --broker-only, for producer benchmarks. Use sqlite \
             (the default), or Apache Kafka (deploy/ci/kafka.sh start PORT DIR)"
        ),
    };

    let log = LogSettings {
        format: LogFormat::Text,
        level: "info,tansu_broker=warn,tansu_storage=warn,tansu_sans_io=warn,tansu_service=warn,\
                tansu_schema=warn,actix_server=warn,librdkafka=error,rdkafka=error,\
                voicehub_enricher::pipeline=warn,voicehub_ingress::routes=warn"
            .into(),
    };
    let _log = telemetry::init(&log)?;

    let broker = TestBroker::start_on(broker_port, storage)
        .await
        .with_context(|| format!("starting the embedded broker on 127.0.0.1:{broker_port}"))?;
    let mut kafka = KafkaSettings {
        bootstrap_servers: broker.bootstrap_servers(),
        client_id: "voicehub-dev".into(),
        ..KafkaSettings::default()
    };
    kafka.provision.create_topics = true;
    kafka.provision.partitions = 3;
    kafka.provision.replication_factor = 1;
    println!(
        "broker   {} (embedded tansu, {storage:?} storage)",
        broker.bootstrap_servers()
    );
    if broker_only {
        let topics: Vec<&str> = kafka.topics.all().iter().map(|(_, name)| *name).collect();
        broker.create_topics(&topics, 3).await?;
        println!("topics   {}", topics.join(", "));
        shutdown::terminate_signal().await?;
        return Ok(());
    }

    let secret_dir = tempfile::tempdir()?;
    let secret_file = secret_dir.path().join("secret");
    std::fs::write(&secret_file, &secret)?;
    let key_file = secret_dir.path().join("api-key");
    std::fs::write(&key_file, &api_key)?;

    let ingress = voicehub_ingress::Application::build(IngressSettings {
        log: log.clone(),
        ..stack::ingress_settings(&kafka, port, admin_port, secret_file)
    })
    .await?;
    // With --no-sim the port is left for `voicehub-sim`, which serves the same API there.
    let api = if no_sim {
        None
    } else {
        let listen = format!("127.0.0.1:{api_port}");
        Some(
            AnalysisApi::start(&listen, &api_key, AnalysisTrouble::default())
                .with_context(|| format!("starting the stand-in analysis API on {listen}"))?,
        )
    };
    // VoiceHub itself, and the stand-in (plain HTTP on loopback).
    let allowed_hosts = vec![
        AllowedHost::parse("voicehub.dataqueue.ai", false).map_err(anyhow::Error::msg)?,
        AllowedHost::parse(&format!("127.0.0.1:{api_port}"), true).map_err(anyhow::Error::msg)?,
    ];
    let enricher = voicehub_enricher::Application::build(EnricherSettings {
        log,
        ..stack::enricher_settings(&kafka, admin_port + 1, key_file, allowed_hosts)
    })
    .await?;

    let webhook_url = format!("http://127.0.0.1:{}/webhooks/voicehub", ingress.port());
    println!("ingress  {webhook_url}  (x-webhook-secret: {secret})");
    println!(
        "admin    ingress http://127.0.0.1:{}/metrics, enricher http://127.0.0.1:{}/metrics  (/livez /readyz)",
        ingress.admin_port(),
        enricher.admin_port()
    );
    match &api {
        Some(api) => println!(
            "analysis {}/{{id}}  (x-dq-api-key: {api_key})",
            api.base_url()
        ),
        None => println!(
            "analysis fetched from voicehub.dataqueue.ai or 127.0.0.1:{api_port} (where \
             `voicehub-sim --url {webhook_url}` serves it) with x-dq-api-key: {api_key}"
        ),
    }
    println!(
        "try      curl -si {webhook_url} -H 'x-webhook-secret: {secret}' \
         -d @tests/fixtures/voicehub/call-status-changed.json"
    );
    println!(
        "tail     cargo run -p voicehub-devstack --bin voicehub-tail -- --brokers {} --topic {} --follow",
        broker.bootstrap_servers(),
        kafka.topics.analysis_enriched
    );
    println!("Ctrl-C stops everything.");

    let stopping = ShutdownTrigger::new();
    let mut tasks = tokio::task::JoinSet::new();
    let (ingress_stop, enricher_stop) = (ingress.shutdown_trigger(), enricher.shutdown_trigger());
    let enricher_admin_port = enricher.admin_port();
    let ingress_task = tokio::spawn(ingress.run_until_stopped());
    let enricher_task = tokio::spawn(enricher.run_until_stopped());
    if let Some(api) = &api {
        tasks.spawn(stack::play_calls(
            webhook_url,
            secret,
            api.base_url(),
            rate,
            stopping.subscribe(),
        ));
    }
    tasks.spawn(stack::summarise(
        broker.client_config(),
        kafka.topics.clone(),
        format!("http://127.0.0.1:{enricher_admin_port}/metrics"),
        stopping.subscribe(),
    ));

    shutdown::terminate_signal().await?;
    println!("stopping");
    stopping.trigger();
    while tasks.join_next().await.is_some() {}
    ingress_stop.trigger();
    enricher_stop.trigger();
    ingress_task.await??;
    enricher_task.await??;
    if let Some(api) = api {
        api.stop().await;
    }
    drop(broker);
    Ok(())
}
