//! Every metric of the enricher, created once against the service's own registry.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use voicehub_runtime::metrics::LATENCY_BUCKETS;

/// The enricher's metrics.
#[derive(Debug, Clone)]
pub struct EnricherMetrics {
    /// `voicehub_enricher_records_total{outcome}`: `enriched`, `dead_lettered`.
    pub records: IntCounterVec,
    /// `voicehub_enricher_dead_letters_total{reason}`
    pub dead_letters: IntCounterVec,
    /// `voicehub_enricher_fetch_duration_seconds{result}`: `ok` or a failure reason.
    pub fetch_duration: HistogramVec,
    /// `voicehub_enricher_fetch_attempts_total{result}`
    pub fetch_attempts: IntCounterVec,
    /// `voicehub_enricher_in_flight_records`
    pub in_flight: IntGauge,
    /// `voicehub_enricher_consumer_lag{partition}` (librdkafka statistics)
    pub consumer_lag: IntGaugeVec,
    /// `voicehub_enricher_commit_errors_total`
    pub commit_errors: IntCounterVec,
}

impl EnricherMetrics {
    /// Creates and registers every metric.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(metric.clone()))?;
            Ok::<_, prometheus::Error>(metric)
        };
        let fetch_duration = HistogramVec::new(
            HistogramOpts::new(
                "voicehub_enricher_fetch_duration_seconds",
                "Analysis fetch attempts by result class.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["result"],
        )?;
        registry.register(Box::new(fetch_duration.clone()))?;
        let in_flight = IntGauge::new(
            "voicehub_enricher_in_flight_records",
            "Records being processed now.",
        )?;
        registry.register(Box::new(in_flight.clone()))?;
        let consumer_lag = IntGaugeVec::new(
            Opts::new(
                "voicehub_enricher_consumer_lag",
                "Records between the committed offset and the end of each input partition.",
            ),
            &["partition"],
        )?;
        registry.register(Box::new(consumer_lag.clone()))?;
        Ok(Self {
            records: counter(
                "voicehub_enricher_records_total",
                "Input records finished, by outcome.",
                &["outcome"],
            )?,
            dead_letters: counter(
                "voicehub_enricher_dead_letters_total",
                "Input records dead-lettered, by reason.",
                &["reason"],
            )?,
            fetch_duration,
            fetch_attempts: counter(
                "voicehub_enricher_fetch_attempts_total",
                "Analysis fetch attempts by result class.",
                &["result"],
            )?,
            in_flight,
            consumer_lag,
            commit_errors: counter(
                "voicehub_enricher_commit_errors_total",
                "Failed offset commits.",
                &["kind"],
            )?,
        })
    }
}
