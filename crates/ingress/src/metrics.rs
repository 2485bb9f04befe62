//! Every metric of the ingress, created once against the service's own registry.
//!
//! Labels come from closed sets only: configured source names (or `unknown`), event kinds,
//! outcomes, reasons, secret slots. Never an event, call or job id.

use prometheus::{
    Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};
use voicehub_model::ParseError;
use voicehub_runtime::kafka::ProduceError;
use voicehub_runtime::metrics::LATENCY_BUCKETS;

/// The ingress's metrics.
#[derive(Debug, Clone)]
pub struct IngressMetrics {
    /// `voicehub_ingress_requests_total{source, event_type, outcome}`
    pub requests: IntCounterVec,
    /// `voicehub_ingress_request_duration_seconds{outcome}`
    pub request_duration: HistogramVec,
    /// `voicehub_ingress_produce_duration_seconds`: successful produces, request to ack.
    pub produce_duration: Histogram,
    /// `voicehub_ingress_produce_errors_total{reason}`
    pub produce_errors: IntCounterVec,
    /// `voicehub_ingress_in_flight_requests`
    pub in_flight: IntGauge,
    /// `voicehub_ingress_dedupe_hits_total{source}`
    pub dedupe_hits: IntCounterVec,
    /// `voicehub_ingress_auth_failures_total{source, reason}`
    pub auth_failures: IntCounterVec,
    /// `voicehub_ingress_auth_accepted_total{source, slot}`
    pub auth_accepted: IntCounterVec,
    /// `voicehub_ingress_dead_letters_total{reason}`
    pub dead_letters: IntCounterVec,
    /// `voicehub_ingress_secret_reload_errors_total{source}`
    pub secret_reload_errors: IntCounterVec,
    /// `voicehub_ingress_producer_queue_messages`
    pub producer_queue: IntGauge,
    /// `voicehub_ingress_producer_replacements_total`
    pub producer_replacements: IntCounter,
    /// `voicehub_ingress_broker_reachable`: 1 after an acknowledgement or a metadata answer, 0
    /// after a failure.
    pub broker_reachable: IntGauge,
    /// The spool's metrics (registered in every mode, so dashboards and alerts find them).
    pub spool: SpoolMetrics,
}

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

/// Reasons of `voicehub_ingress_dead_letters_total`: what the parser refuses, a record too
/// large for the broker, a panic on the request path.
pub const DEAD_LETTER_REASONS: [&str; 6] = [
    ParseError::REASONS[0],
    ParseError::REASONS[1],
    ParseError::REASONS[2],
    ParseError::REASONS[3],
    "record_too_large",
    "internal_error",
];

/// Reasons of `voicehub_ingress_spool_undeliverable_records_total`.
pub const UNDELIVERABLE_REASONS: [&str; 3] = ["too_large", "unreadable", "damaged"];

impl IngressMetrics {
    /// Creates and registers every metric.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(metric.clone()))?;
            Ok::<_, prometheus::Error>(metric)
        };
        let gauge = |name: &str, help: &str| {
            let metric = IntGauge::new(name, help)?;
            registry.register(Box::new(metric.clone()))?;
            Ok::<_, prometheus::Error>(metric)
        };
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "voicehub_ingress_request_duration_seconds",
                "Webhook request handling time, body read to answer, by outcome.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["outcome"],
        )?;
        registry.register(Box::new(request_duration.clone()))?;
        let produce_duration = Histogram::with_opts(
            HistogramOpts::new(
                "voicehub_ingress_produce_duration_seconds",
                "Time from produce to the broker's acknowledgement (acks=all), successes only.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(produce_duration.clone()))?;
        let produce_errors = counter(
            "voicehub_ingress_produce_errors_total",
            "Produces that got no acknowledgement, by reason.",
            &["reason"],
        )?;
        // Every reason starts at 0, so the series exist (and rate() works) before the first error.
        for reason in ProduceError::REASONS {
            produce_errors.with_label_values(&[reason]);
        }
        let metrics = Self {
            requests: counter(
                "voicehub_ingress_requests_total",
                "Webhook requests by source, event type and outcome.",
                &["source", "event_type", "outcome"],
            )?,
            request_duration,
            produce_duration,
            produce_errors,
            in_flight: gauge(
                "voicehub_ingress_in_flight_requests",
                "Webhook requests being processed now.",
            )?,
            dedupe_hits: counter(
                "voicehub_ingress_dedupe_hits_total",
                "Webhooks answered as duplicates of a recently accepted eventId.",
                &["source"],
            )?,
            auth_failures: counter(
                "voicehub_ingress_auth_failures_total",
                "Rejected webhook secrets, by reason (missing, mismatch).",
                &["source", "reason"],
            )?,
            auth_accepted: counter(
                "voicehub_ingress_auth_accepted_total",
                "Accepted webhook secrets, by the slot of the secret that matched.",
                &["source", "slot"],
            )?,
            dead_letters: counter(
                "voicehub_ingress_dead_letters_total",
                "Authenticated bodies written to the dead-letter topic, by reason.",
                &["reason"],
            )?,
            secret_reload_errors: counter(
                "voicehub_ingress_secret_reload_errors_total",
                "Failed re-reads of secret files (the previous secrets stay active).",
                &["source"],
            )?,
            producer_replacements: {
                let metric = IntCounter::new(
                    "voicehub_ingress_producer_replacements_total",
                    "Producers replaced after entering a fatal state (e.g. fenced).",
                )?;
                registry.register(Box::new(metric.clone()))?;
                metric
            },
            producer_queue: gauge(
                "voicehub_ingress_producer_queue_messages",
                "Records in the producer's queue awaiting delivery (librdkafka statistics).",
            )?,
            broker_reachable: gauge(
                "voicehub_ingress_broker_reachable",
                "1 while the broker acknowledges records or answers metadata requests, else 0.",
            )?,
            spool: SpoolMetrics::register(registry)?,
        };
        for reason in DEAD_LETTER_REASONS {
            metrics.dead_letters.with_label_values(&[reason]);
        }
        Ok(metrics)
    }

    /// Starts the per-source series at 0 (so that an alert's `rate()` or `increase()` sees the
    /// first failure, and a ratio has its denominator before the first success).
    pub fn start_source(&self, source: &str) {
        for reason in ["missing", "mismatch"] {
            self.auth_failures.with_label_values(&[source, reason]);
        }
        self.auth_accepted.with_label_values(&[source, "0"]);
        self.secret_reload_errors.with_label_values(&[source]);
        self.dedupe_hits.with_label_values(&[source]);
    }
}

impl SpoolMetrics {
    fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        fn add<M: prometheus::core::Collector + Clone + 'static>(
            registry: &Registry,
            metric: M,
        ) -> Result<M, prometheus::Error> {
            registry.register(Box::new(metric.clone()))?;
            Ok(metric)
        }
        let undeliverable = add(
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
            mode: add(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "voicehub_ingress_spool_mode",
                        "1 for the configured spool mode (off, fallback, always).",
                    ),
                    &["mode"],
                )?,
            )?,
            records: add(
                registry,
                IntGauge::new(
                    "voicehub_ingress_spool_records",
                    "Records in the spool not yet acknowledged by Kafka.",
                )?,
            )?,
            bytes: add(
                registry,
                IntGauge::new(
                    "voicehub_ingress_spool_bytes",
                    "Bytes on disk of the records not yet acknowledged by Kafka.",
                )?,
            )?,
            max_bytes: add(
                registry,
                IntGauge::new(
                    "voicehub_ingress_spool_max_bytes",
                    "The spool's byte bound; appends beyond it are refused with 503.",
                )?,
            )?,
            oldest_age: add(
                registry,
                Gauge::new(
                    "voicehub_ingress_spool_oldest_record_age_seconds",
                    "Age of the oldest record not yet acknowledged by Kafka (0 when empty).",
                )?,
            )?,
            appended: add(
                registry,
                IntCounter::new(
                    "voicehub_ingress_spool_appended_records_total",
                    "Records made durable in the spool (each answered 2xx).",
                )?,
            )?,
            forwarded: add(
                registry,
                IntCounter::new(
                    "voicehub_ingress_spool_forwarded_records_total",
                    "Spooled records acknowledged by Kafka.",
                )?,
            )?,
            fallbacks: add(
                registry,
                IntCounter::new(
                    "voicehub_ingress_spool_fallbacks_total",
                    "Records spooled because Kafka had not acknowledged them within \
                     spool.fallback_after_ms (the direct delivery may land too: a duplicate).",
                )?,
            )?,
            torn: add(
                registry,
                IntCounter::new(
                    "voicehub_ingress_spool_torn_records_total",
                    "Records dropped at a torn or corrupt segment end when the spool was opened.",
                )?,
            )?,
            undeliverable,
            fsync_duration: add(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "voicehub_ingress_spool_fsync_duration_seconds",
                        "Time to write and fsync one group of appends.",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                )?,
            )?,
            fsync_batch: add(
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
