//! The spool's upkeep: opening it at startup (its segments validated, a torn tail counted),
//! then, every half second while the ingress runs, its gauges and readiness refreshed and its
//! acknowledgement watermark written to disk on a blocking thread, and every 30 s its
//! `undeliverable/` counted and aged (files past `spool.undeliverable_retention_s` deleted); at
//! shutdown, drained as far as the drain timeout allows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::{Gauge, IntGauge};
use tokio::task::JoinHandle;
use tracing::{info, warn};
use voicehub_runtime::readiness::Readiness;
use voicehub_spool::SpoolError;

use crate::metrics::IngressMetrics;
use crate::outbox::SpoolState;
use crate::settings::IngressSettings;

/// The readiness check that fails while the spool refuses appends.
pub const SPOOL_CHECK: &str = "spool";
/// How often the spool's gauges and readiness are refreshed.
const SPOOL_REFRESH: Duration = Duration::from_millis(500);
/// How often `undeliverable/` is counted and aged.
const SET_ASIDE_REFRESH: Duration = Duration::from_secs(30);

/// Opens the spool: validates its segments, counts a torn tail.
pub fn open(
    settings: &IngressSettings,
    metrics: &IngressMetrics,
) -> Result<Arc<SpoolState>, SpoolError> {
    let options = voicehub_spool::Options {
        dir: settings.spool.dir.clone(),
        segment_bytes: settings.spool.segment_bytes,
        max_bytes: settings.spool.max_bytes,
        max_age: Duration::from_secs(settings.spool.max_age_s),
    };
    let (spool, recovery) = voicehub_spool::Spool::open_observed(options, metrics.spool.clone())?;
    metrics.spool.torn.inc_by(recovery.torn);
    metrics
        .spool
        .max_bytes
        .set(i64::try_from(settings.spool.max_bytes).unwrap_or(i64::MAX));
    info!(
        mode = settings.spool.mode.as_str(),
        dir = %settings.spool.dir.display(),
        records = recovery.records,
        torn = recovery.torn,
        damaged = recovery.damaged,
        "spool open"
    );
    let state = Arc::new(SpoolState::new(spool, metrics.spool.clone()));
    refresh(&state, None);
    count_set_aside(&state, settings.spool.undeliverable_retention());
    Ok(state)
}

/// Keeps the spool's gauges and readiness current, and its acknowledgements on disk (so a
/// restart re-sends at most the last half second's forwarded records).
pub async fn run(spool: Arc<SpoolState>, readiness: Readiness) {
    let mut interval = tokio::time::interval(SPOOL_REFRESH);
    loop {
        interval.tick().await;
        refresh(&spool, Some(&readiness));
        persist_acknowledgements(&spool).await;
    }
}

/// Counts and ages `undeliverable/` every 30 s (files older than `retention` deleted; none when
/// `None`), on a blocking thread: a large directory never holds up the refresh above.
pub async fn age_set_aside(spool: Arc<SpoolState>, retention: Option<Duration>) {
    let mut interval = tokio::time::interval(SET_ASIDE_REFRESH);
    // The first count was made when the spool was opened.
    interval.tick().await;
    loop {
        interval.tick().await;
        let state = spool.clone();
        let _ = tokio::task::spawn_blocking(move || count_set_aside(&state, retention)).await;
    }
}

/// Counts `undeliverable/` into the gauges after deleting what is older than `retention`
/// (each deletion logged and counted). Blocking I/O.
fn count_set_aside(spool: &SpoolState, retention: Option<Duration>) {
    let census = match spool.spool.age_set_aside(retention) {
        Ok(census) => census,
        Err(error) => {
            warn!(
                error = &error as &dyn std::error::Error,
                "the spool's undeliverable/ could not be read or aged"
            );
            return;
        }
    };
    for path in &census.expired {
        warn!(
            path = %path.display(),
            retention_s = retention.map_or(0, |r| r.as_secs()),
            "set-aside spool file deleted: older than spool.undeliverable_retention_s"
        );
    }
    let metrics = &spool.metrics;
    metrics
        .set_aside_expired
        .inc_by(census.expired.len() as u64);
    set_gauges(
        (
            &metrics.set_aside_files,
            &metrics.set_aside_bytes,
            &metrics.set_aside_oldest_age,
        ),
        (census.files, census.bytes, census.oldest),
    );
}

/// Sets a (count, bytes, oldest age) triple of gauges; no oldest is an age of 0.
fn set_gauges(
    (count, bytes, oldest): (&IntGauge, &IntGauge, &Gauge),
    values: (u64, u64, Option<Duration>),
) {
    count.set(i64::try_from(values.0).unwrap_or(i64::MAX));
    bytes.set(i64::try_from(values.1).unwrap_or(i64::MAX));
    oldest.set(values.2.map_or(0.0, |age| age.as_secs_f64()));
}

/// At shutdown: lets the forwarder send what it can until `deadline`, stops it, and writes
/// the watermark; the rest stays on disk for the next start.
pub async fn drain(spool: &SpoolState, forwarder: JoinHandle<()>, deadline: Instant) {
    while spool.spool.depth().records > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Stopped, not just told to stop: nothing is acknowledged after the watermark below is
    // written.
    forwarder.abort();
    let _ = forwarder.await;
    persist_acknowledgements(spool).await;
    let left = spool.spool.depth().records;
    if left > 0 {
        warn!(
            records = left,
            "spool not drained in time: left on disk for the next start"
        );
    }
}

/// Writes the acknowledgement watermark (file and directory fsyncs) on a blocking thread.
async fn persist_acknowledgements(spool: &SpoolState) {
    let storage = spool.spool.clone();
    let persisted = tokio::task::spawn_blocking(move || storage.persist_acknowledgements())
        .await
        .unwrap_or(Err(SpoolError::Closed));
    if let Err(error) = persisted {
        warn!(
            error = &error as &dyn std::error::Error,
            "spool acknowledgements not persisted; a restart forwards them again"
        );
    }
}

fn refresh(spool: &SpoolState, readiness: Option<&Readiness>) {
    let depth = spool.spool.depth();
    let metrics = &spool.metrics;
    set_gauges(
        (&metrics.records, &metrics.bytes, &metrics.oldest_age),
        (depth.records, depth.bytes, depth.oldest),
    );
    if let Some(readiness) = readiness {
        let accepts = spool.accepting();
        if readiness.set(SPOOL_CHECK, accepts) {
            if accepts {
                info!(check = SPOOL_CHECK, "spool accepts appends: ready");
            } else {
                warn!(
                    check = SPOOL_CHECK,
                    ?depth,
                    "spool full or not draining: not ready"
                );
            }
        }
    }
}
