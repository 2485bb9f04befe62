//! `voicehub-enricher [--config PATH] [--check-config]`: see the README for configuration.

use anyhow::Context;
use voicehub_enricher::{Application, EnricherSettings};
use voicehub_runtime::{allocator, settings, shutdown, telemetry};

/// See [`allocator`].
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = settings::ServiceArgs::parse_for(
        "voicehub-enricher",
        "Analysis-ready records in, enriched records out.",
    );
    let settings: EnricherSettings = settings::load(args.config.as_deref())?;
    if args.check_config {
        settings.validate()?;
        let report = voicehub_runtime::kafka::check_config_report(
            "voicehub-enricher",
            args.config.as_deref(),
            &settings.kafka,
        )?;
        eprint!("{report}");
        return Ok(());
    }
    let _log = telemetry::init(&settings.log)?;
    allocator::return_freed_memory();

    let app = Application::build(settings)
        .await
        .context("voicehub-enricher could not start")?;
    let trigger = app.shutdown_trigger();
    tokio::spawn(async move {
        if let Err(error) = shutdown::terminate_signal().await {
            tracing::error!(error = &error as &dyn std::error::Error, "signal handler");
        }
        trigger.trigger();
    });
    // On a worker of the runtime, not on the thread that blocks on `main`: the loop's task
    // spawns and joins every record's task, and from a worker these stay on its own queue
    // instead of waking another thread each way (docs/benchmarks.md, the enricher's context
    // switches).
    match tokio::spawn(app.run_until_stopped()).await {
        Ok(ended) => Ok(ended?),
        // A panic ends the process as it did on the main thread (exit code 101).
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => Err(error).context("the enricher's main task was cancelled"),
    }
}
