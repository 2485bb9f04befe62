//! `voicehub-dev`: the bridge on this machine, nothing to install.
//!
//! Starts an embedded Kafka-compatible broker (tansu, SQLite in a temporary directory), creates
//! the topics, and runs the ingress on loopback with a development secret. Ctrl-C stops it all
//! cleanly.
//!
//! Flags: `--port` (8080), `--admin-port` (9090), `--broker-port` (9092), `--secret`
//! (`dev-secret`), `--storage sqlite|memory` (sqlite), `--broker-only` (no ingress: for running
//! the services yourself or for benchmarks).

#![allow(clippy::print_stdout)] // a command-line tool: stdout is its interface

use std::collections::BTreeMap;

use anyhow::Context;
use voicehub_devstack::{flag, number_flag};
use voicehub_ingress::settings::{HttpSettings, SourceSettings};
use voicehub_ingress::{Application, IngressSettings};
use voicehub_runtime::settings::{AdminSettings, KafkaSettings, LogFormat, LogSettings};
use voicehub_runtime::{shutdown, telemetry};
use voicehub_testkit::{Storage, TestBroker};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port: u16 = number_flag(&args, "--port", 8080)?;
    let admin_port: u16 = number_flag(&args, "--admin-port", 9090)?;
    let broker_port: u16 = number_flag(&args, "--broker-port", 9092)?;
    let secret = flag(&args, "--secret").unwrap_or_else(|| "dev-secret".into());
    let broker_only = args.iter().any(|a| a == "--broker-only");
    let storage = match flag(&args, "--storage").as_deref() {
        None | Some("sqlite") => Storage::Sqlite,
        Some("memory") => Storage::Memory,
        Some(other) => anyhow::bail!("--storage: `{other}` is not sqlite or memory"),
    };

    let log = LogSettings {
        format: LogFormat::Text,
        level: "info,tansu_broker=warn,tansu_storage=warn,tansu_sans_io=warn,tansu_service=warn,\
                tansu_schema=warn,actix_server=warn"
            .into(),
    };
    telemetry::init(&log)?;

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
    let secret_file = secret_dir.path().join("default");
    std::fs::write(&secret_file, &secret)?;
    let settings = IngressSettings {
        http: HttpSettings {
            listen: format!("127.0.0.1:{port}"),
            ..HttpSettings::default()
        },
        dedupe: Default::default(),
        sources: BTreeMap::from([(
            "default".to_owned(),
            SourceSettings {
                secret_envs: Vec::new(),
                secret_files: vec![secret_file],
                secret_reload_ms: 5_000,
            },
        )]),
        kafka,
        admin: AdminSettings {
            listen: format!("127.0.0.1:{admin_port}"),
        },
        log,
    };
    let app = Application::build(settings).await?;
    println!(
        "ingress  http://127.0.0.1:{}/webhooks/voicehub  (x-webhook-secret: {secret})",
        app.port()
    );
    println!(
        "admin    http://127.0.0.1:{}/metrics  /livez  /readyz",
        app.admin_port()
    );
    println!(
        "try      curl -si http://127.0.0.1:{}/webhooks/voicehub -H 'x-webhook-secret: {secret}' \
         -d @tests/fixtures/voicehub/call-status-changed.json",
        app.port()
    );
    println!("Ctrl-C stops everything.");
    let trigger = app.shutdown_trigger();
    tokio::spawn(async move {
        let _ = shutdown::terminate_signal().await;
        trigger.trigger();
    });
    app.run_until_stopped().await?;
    drop(broker);
    Ok(())
}
