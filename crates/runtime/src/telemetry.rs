//! Structured logging through `tracing`.

use std::io::{BufWriter, Stdout};

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::settings::{LogFormat, LogSettings, SettingsError};

/// Keeps the log writer's thread; dropping it writes out what is still queued. Hold it until
/// the process ends.
#[must_use = "dropping the guard stops the log writer"]
#[derive(Debug)]
pub struct LogGuard {
    _writer: Option<WorkerGuard>,
}

/// Lines queued for the writer thread before a logging thread waits (never drops a line).
const QUEUED_LINES: usize = 16_384;

/// Installs the global subscriber: JSON lines (or text) on stdout, filtered by `log.level`.
/// Lines are written by a thread of their own, in batches (a request's thread never waits on
/// stdout unless that thread is [`QUEUED_LINES`] behind). A second call (tests) leaves the
/// first subscriber in place.
pub fn init(settings: &LogSettings) -> Result<LogGuard, SettingsError> {
    let filter =
        EnvFilter::try_new(&settings.level).map_err(|e| SettingsError::invalid("log.level", e))?;
    // BufWriter over stdout's line buffering: the writer thread flushes whenever its queue
    // is empty, so a burst of lines leaves in one write.
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("log-writer")
        .finish(BufWriter::<Stdout>::new(std::io::stdout()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::NONE)
        .with_writer(writer);
    let installed = match settings.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    Ok(LogGuard {
        _writer: installed.is_ok().then_some(guard),
    })
}
