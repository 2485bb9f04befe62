//! Every metric of the ingress, created once against the service's own registry.
//!
//! Labels come from closed sets only: configured source names (or `unknown`), event kinds,
//! outcomes, reasons, secret slots. Never an event, call or job id.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};
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
}

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
        Ok(Self {
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
        })
    }
}
