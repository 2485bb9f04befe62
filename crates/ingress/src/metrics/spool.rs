//! The spool's metrics (`voicehub_ingress_spool_*`), registered in every spool mode so that
//! dashboards and alerts find them.

use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use voicehub_runtime::metrics::{LATENCY_BUCKETS, registered};

/// `voicehub_ingress_spool_*`
#[derive(Debug, Clone)]
pub struct SpoolMetrics {
    /// `voicehub_ingress_spool_mode{mode}`: 1 for the configured mode.
    pub mode: IntGaugeVec,
    /// `voicehub_ingress_spool_records`: spooled, not yet acknowledged by Kafka.
    pub records: IntGauge,
    /// `voicehub_ingress_spool_bytes`: their bytes on disk.
    pub bytes: IntGauge,
    /// `voicehub_ingress_spool_max_bytes`: the bound (`spool.max_bytes`).
    pub max_bytes: IntGauge,
    /// `voicehub_ingress_spool_oldest_record_age_seconds`
    pub oldest_age: Gauge,
    /// `voicehub_ingress_spool_appended_records_total`
    pub appended: IntCounter,
    /// `voicehub_ingress_spool_forwarded_records_total`
    pub forwarded: IntCounter,
    /// `voicehub_ingress_spool_fallbacks_total`: `fallback` mode, records spooled because Kafka
    /// had not acknowledged them within `spool.fallback_after_ms` (each may also land from the
    /// direct delivery: a duplicate with the same `ce_id`).
    pub fallbacks: IntCounter,
    /// `voicehub_ingress_spool_torn_records_total`: dropped at a torn or corrupt segment end
    /// when the spool was opened.
    pub torn: IntCounter,
    /// `voicehub_ingress_spool_undeliverable_records_total{reason}`: set aside on disk.
    pub undeliverable: IntCounterVec,
    /// `voicehub_ingress_spool_undeliverable_files`: files in `undeliverable/` now.
    pub set_aside_files: IntGauge,
    /// `voicehub_ingress_spool_undeliverable_bytes`: their bytes.
    pub set_aside_bytes: IntGauge,
    /// `voicehub_ingress_spool_undeliverable_oldest_age_seconds`: since the oldest was written.
    pub set_aside_oldest_age: Gauge,
    /// `voicehub_ingress_spool_undeliverable_expired_files_total`: deleted, older than
    /// `spool.undeliverable_retention_s`.
    pub set_aside_expired: IntCounter,
    /// `voicehub_ingress_spool_fsync_duration_seconds`: one write + fsync of a batch.
    pub fsync_duration: Histogram,
    /// `voicehub_ingress_spool_fsync_batch_records`: appends made durable by one fsync.
    pub fsync_batch: Histogram,
}

impl voicehub_spool::Observer for SpoolMetrics {
    fn synced(&self, records: usize, took: std::time::Duration) {
        self.fsync_duration.observe(took.as_secs_f64());
        self.fsync_batch.observe(records as f64);
    }

    fn damaged(&self, records: u64) {
        self.undeliverable
            .with_label_values(&["damaged"])
            .inc_by(records);
    }
}

/// Reasons of `voicehub_ingress_spool_undeliverable_records_total`.
pub const UNDELIVERABLE_REASONS: [&str; 3] = ["too_large", "unreadable", "damaged"];

impl SpoolMetrics {
    pub(super) fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let undeliverable = registered(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "voicehub_ingress_spool_undeliverable_records_total",
                    "Spooled records Kafka can never take (too large for the broker, \
                     unreadable, or damaged on disk), moved to the spool's undeliverable/ \
                     directory.",
                ),
                &["reason"],
            )?,
        )?;
        for reason in UNDELIVERABLE_REASONS {
            undeliverable.with_label_values(&[reason]);
        }
        Ok(Self {
            mode: registered(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "voicehub_ingress_spool_mode",
                        "1 for the configured spool mode (off, fallback, always).",
                    ),
                    &["mode"],
                )?,
            )?,
            records: registered(
                registry,
                IntGauge::new(
                    "voicehub_ingress_spool_records",
                    "Records in the spool not yet acknowledged by Kafka.",
                )?,
            )?,
            bytes: registered(
                registry,
                IntGauge::new(
                    "voicehub_ingress_spool_bytes",
                    "Bytes on disk of the records not yet acknowledged by Kafka.",
                )?,
            )?,
            max_bytes: registered(
                registry,
                IntGauge::new(
                    "voicehub_ingress_spool_max_bytes",
                    "The spool's byte bound; appends beyond it are refused with 503.",
                )?,
            )?,
            oldest_age: registered(
                registry,
                Gauge::new(
                    "voicehub_ingress_spool_oldest_record_age_seconds",
                    "Age of the oldest record not yet acknowledged by Kafka (0 when empty).",
                )?,
            )?,
            appended: registered(
                registry,
                IntCounter::new(
                    "voicehub_ingress_spool_appended_records_total",
                    "Records made durable in the spool (each answered 2xx).",
                )?,
            )?,
            forwarded: registered(
                registry,
                IntCounter::new(
                    "voicehub_ingress_spool_forwarded_records_total",
                    "Spooled records acknowledged by Kafka.",
                )?,
            )?,
            fallbacks: registered(
                registry,
                IntCounter::new(
                    "voicehub_ingress_spool_fallbacks_total",
                    "Records spooled because Kafka had not acknowledged them within \
                     spool.fallback_after_ms (the direct delivery may land too: a duplicate).",
                )?,
            )?,
            torn: registered(
                registry,
                IntCounter::new(
                    "voicehub_ingress_spool_torn_records_total",
                    "Records dropped at a torn or corrupt segment end when the spool was opened.",
                )?,
            )?,
            undeliverable,
            set_aside_files: registered(
                registry,
                IntGauge::new(
                    "voicehub_ingress_spool_undeliverable_files",
                    "Files in the spool's undeliverable/ directory (records set aside, damaged \
                     bytes), waiting for an operator.",
                )?,
            )?,
            set_aside_bytes: registered(
                registry,
                IntGauge::new(
                    "voicehub_ingress_spool_undeliverable_bytes",
                    "Bytes of the files in the spool's undeliverable/ directory.",
                )?,
            )?,
            set_aside_oldest_age: registered(
                registry,
                Gauge::new(
                    "voicehub_ingress_spool_undeliverable_oldest_age_seconds",
                    "Seconds since the oldest file in undeliverable/ was written (0: none).",
                )?,
            )?,
            set_aside_expired: registered(
                registry,
                IntCounter::new(
                    "voicehub_ingress_spool_undeliverable_expired_files_total",
                    "Files of undeliverable/ deleted for being older than \
                     spool.undeliverable_retention_s.",
                )?,
            )?,
            fsync_duration: registered(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "voicehub_ingress_spool_fsync_duration_seconds",
                        "Time to write and fsync one group of appends.",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                )?,
            )?,
            fsync_batch: registered(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "voicehub_ingress_spool_fsync_batch_records",
                        "Appends made durable by one fsync (group commit).",
                    )
                    .buckets(prometheus::exponential_buckets(1.0, 2.0, 13)?),
                )?,
            )?,
        })
    }
}
