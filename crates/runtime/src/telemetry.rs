//! Structured logging through `tracing`.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::settings::{LogFormat, LogSettings, SettingsError};

/// Installs the global subscriber: JSON lines (or text) on stdout, filtered by `log.level`.
/// A second call (tests) leaves the first subscriber in place.
pub fn init(settings: &LogSettings) -> Result<(), SettingsError> {
    let filter =
        EnvFilter::try_new(&settings.level).map_err(|e| SettingsError::invalid("log.level", e))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::NONE);
    let _already_set = match settings.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    Ok(())
}
