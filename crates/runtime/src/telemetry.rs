//! Structured logging through `tracing`.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{FmtSpan, JsonFields};

use crate::json_log::JsonLines;
use crate::log_writer::{self, Limits, LogWriterGuard};

use crate::settings::{LogFormat, LogSettings, SettingsError};

/// Keeps the log writer's thread; dropping it writes out what is still queued. Hold it until
/// the process ends.
#[must_use = "dropping the guard stops the log writer"]
#[derive(Debug)]
pub struct LogGuard {
    _writer: Option<LogWriterGuard>,
}

/// Installs the global subscriber: JSON lines ([`crate::json_log`]) or text on stdout, filtered by `log.level`.
/// Lines are written by a thread of their own, in batches ([`crate::log_writer`]: a request's
/// thread never waits on stdout unless 4 MiB of lines are queued). A second call (tests)
/// leaves the first subscriber in place.
pub fn init(settings: &LogSettings) -> Result<LogGuard, SettingsError> {
    let filter =
        EnvFilter::try_new(&settings.level).map_err(|e| SettingsError::invalid("log.level", e))?;
    let (writer, guard) = log_writer::spawn(std::io::stdout(), Limits::STDOUT);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::NONE)
        .with_writer(writer);
    let installed = match settings.format {
        LogFormat::Json => builder
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    Ok(LogGuard {
        _writer: installed.is_ok().then_some(guard),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use serde_json::{Value, json};

    use super::*;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_json_line_holds_time_level_fields_target_and_span() {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(source = %"acme", event_id = "e\"1", status = 200u16, latency_ms = 1.5, ok = true, "webhook");
            tracing::info!(
                whole = 1.0,
                big = 1e300,
                small = -2.5e-7,
                nan = f64::NAN,
                min = i64::MIN,
                max = u64::MAX,
                "numbers"
            );
            let span = tracing::info_span!("drain", records = 3);
            span.in_scope(|| tracing::warn!(left = -1i64, "stopping"));
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let read: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(read.len(), 3, "{text}");
        let time = read[0]["timestamp"].as_str().unwrap();
        assert_eq!((time.len(), &time[26..]), (27, "Z"), "{time}");
        let mut first = read[0].clone();
        first.as_object_mut().unwrap().remove("timestamp");
        assert_eq!(
            first,
            json!({"level": "INFO", "message": "webhook", "source": "acme", "event_id": "e\"1",
                   "status": 200, "latency_ms": 1.5, "ok": true,
                   "target": "voicehub_runtime::telemetry::tests"})
        );
        // Numbers as serde_json writes them: a whole float stays a float.
        let numbers = text.lines().nth(1).unwrap();
        assert!(
            numbers.contains(r#""whole":1.0,"big":1e+300,"small":-2.5e-7,"nan":null,"min":-9223372036854775808,"max":18446744073709551615,"#),
            "{numbers}"
        );
        assert_eq!(read[2]["level"], "WARN");
        assert_eq!(read[2]["left"], -1);
        assert_eq!(read[2]["span"], json!({"name": "drain", "records": 3}));
    }
}
