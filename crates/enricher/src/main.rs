//! `voicehub-enricher [--config PATH]`: see the README for configuration.

use anyhow::Context;
use voicehub_enricher::{Application, EnricherSettings};
use voicehub_runtime::{settings, shutdown, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let path = settings::config_path(std::env::args().skip(1));
    let settings: EnricherSettings = settings::load(path.as_deref())?;
    telemetry::init(&settings.log)?;

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
    app.run_until_stopped().await?;
    Ok(())
}
