//! Credentials mounted as files (Kubernetes Secrets), re-read while a service runs: the
//! ingress's webhook secrets and the enricher's API keys share this one loop.

use std::fmt::Display;
use std::time::Duration;

use prometheus::IntCounterVec;
use tracing::{info, warn};

/// Calls `reload` every `every` (the first time one interval after the start: the files were
/// just read) until the task is dropped. `reload` re-reads the files and returns whether
/// anything changed: a change is logged and counted in `reloads{source}`; on an error the
/// previous value stays in use, the error is logged (never the contents: `reload`'s error
/// must not carry them) and counted in `errors{source}`. Both start at 0, so that an alert
/// (or a test waiting for a rotation to apply) sees the first increase.
pub async fn reload_forever<E, F>(
    what: &'static str,
    source: String,
    every: Duration,
    reloads: IntCounterVec,
    errors: IntCounterVec,
    reload: F,
) where
    E: Display + Send + 'static,
    F: Fn() -> Result<bool, E> + Clone + Send + 'static,
{
    let changes = reloads.with_label_values(&[&source]);
    let failures = errors.with_label_values(&[&source]);
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        interval.tick().await;
        // File reads block; a slow volume must not stall the runtime's other tasks.
        let read = reload.clone();
        match tokio::task::spawn_blocking(read).await {
            Ok(Ok(true)) => {
                changes.inc();
                info!(source = %source, what, "reloaded");
            }
            Ok(Ok(false)) => {}
            Ok(Err(error)) => {
                failures.inc();
                warn!(source = %source, what, %error, "reload failed; the previous value stays in use");
            }
            Err(error) => {
                failures.inc();
                warn!(source = %source, what, %error, "reload task failed; the previous value stays in use");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use prometheus::Opts;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn failures_count_per_source_from_zero_and_the_loop_goes_on() {
        let errors = IntCounterVec::new(Opts::new("errors_total", "e"), &["source"]).unwrap();
        let reloads = IntCounterVec::new(Opts::new("reloads_total", "r"), &["source"]).unwrap();
        let calls = Arc::new(AtomicU32::new(0));
        let counted = calls.clone();
        let task = tokio::spawn(reload_forever(
            "secret",
            "default".into(),
            Duration::from_secs(1),
            reloads.clone(),
            errors.clone(),
            move || match counted.fetch_add(1, Ordering::SeqCst) {
                0 => Err("unreadable"),
                n => Ok(n == 1),
            },
        ));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            errors.with_label_values(&["default"]).get(),
            0,
            "starts at 0"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 0, "not at start");
        while calls.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(errors.with_label_values(&["default"]).get(), 1);
        assert_eq!(reloads.with_label_values(&["default"]).get(), 1);
        task.abort();
    }
}
