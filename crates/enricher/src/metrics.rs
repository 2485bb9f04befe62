//! Every metric of the enricher, created once against the service's own registry.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use voicehub_runtime::kafka::ProduceError;
use voicehub_runtime::metrics::{LATENCY_BUCKETS, registered};

use crate::dead_letter::DeadLetterReason;

/// The enricher's metrics.
#[derive(Debug, Clone)]
pub struct EnricherMetrics {
    /// `voicehub_enricher_records_total{outcome}`: `enriched`, `dead_lettered`.
    pub records: IntCounterVec,
    /// `voicehub_enricher_dead_letters_total{reason}`
    pub dead_letters: IntCounterVec,
    /// `voicehub_enricher_fetch_duration_seconds{result}`: `ok` or a failure reason.
    pub fetch_duration: HistogramVec,
    /// `voicehub_enricher_enrichment_latency_seconds`: from the ingress receiving the webhook
    /// to the enriched record being acknowledged.
    pub enrichment_latency: Histogram,
    /// `voicehub_enricher_fetch_attempts_total{result}`
    pub fetch_attempts: IntCounterVec,
    /// `voicehub_enricher_in_flight_records`
    pub in_flight: IntGauge,
    /// `voicehub_enricher_backlog_bytes`: received records waiting for a slot.
    pub backlog_bytes: IntGauge,
    /// `voicehub_enricher_fetching_paused`: 1 while the backlog is full.
    pub fetching_paused: IntGauge,
    /// `voicehub_enricher_fetch_pauses_total`: times fetching paused.
    pub fetch_pauses: IntCounter,
    /// `voicehub_enricher_input_offset_gaps_total`: input offsets skipped between two records
    /// received from a partition.
    pub input_offset_gaps: IntCounter,
    /// `voicehub_enricher_redelivered_records_total`: inputs received again (processed again).
    pub redelivered: IntCounter,
    /// `voicehub_enricher_uncommitted_limit_reached_total`: times a partition reached
    /// `consumer.max_uncommitted_per_partition`.
    pub uncommitted_limit_reached: IntCounter,
    /// `voicehub_enricher_partition_revocations_total{partition}`: input partitions revoked
    /// from this instance by rebalances.
    pub partition_revocations: IntCounterVec,
    /// `voicehub_enricher_consumer_lag{partition}` (librdkafka statistics)
    pub consumer_lag: IntGaugeVec,
    /// `voicehub_enricher_commit_errors_total`
    pub commit_errors: IntCounter,
    /// `voicehub_enricher_produce_errors_total{reason}`: failed produces (each retried).
    pub produce_errors: IntCounterVec,
    /// `voicehub_enricher_broker_reachable`: 1 while the cluster answers metadata requests.
    pub broker_reachable: IntGauge,
    /// `voicehub_enricher_api_key_reloads_total{source}`: re-reads that changed the key.
    pub api_key_reloads: IntCounterVec,
    /// `voicehub_enricher_api_key_reload_errors_total{source}`
    pub api_key_reload_errors: IntCounterVec,
    /// `voicehub_enricher_consumer_rebuilds_total`: consumers replaced after knowing no
    /// broker for the wedge limit (see `consumer_watch`).
    pub consumer_rebuilds: IntCounter,
    /// `voicehub_enricher_kafka_refused_topics`: topics the cluster refuses to this principal
    /// or does not have (readiness check `kafka_permissions`).
    pub refused_topics: IntGauge,
    /// `voicehub_enricher_consumer_refused`: 1 while the cluster refuses the consumer its
    /// group or topic (readiness check `consumer_authorized`).
    pub consumer_refused: IntGauge,
}

impl EnricherMetrics {
    /// Creates and registers every metric.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            registered(registry, IntCounterVec::new(Opts::new(name, help), labels)?)
        };
        let fetch_duration = registered(
            registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "voicehub_enricher_fetch_duration_seconds",
                    "Analysis fetch attempts by result class.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["result"],
            )?,
        )?;
        let enrichment_latency = registered(
            registry,
            Histogram::with_opts(
                HistogramOpts::new(
                    "voicehub_enricher_enrichment_latency_seconds",
                    "From the ingress receiving the webhook to the enriched record acknowledged.",
                )
                // Up to the retry budget: an analysis can take minutes to become ready.
                .buckets(vec![
                    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
                ]),
            )?,
        )?;
        let in_flight = registered(
            registry,
            IntGauge::new(
                "voicehub_enricher_in_flight_records",
                "Records being processed now.",
            )?,
        )?;
        let backlog_bytes = registered(
            registry,
            IntGauge::new(
                "voicehub_enricher_backlog_bytes",
                "Received records waiting for a processing slot, in bytes.",
            )?,
        )?;
        let fetching_paused = registered(
            registry,
            IntGauge::new(
                "voicehub_enricher_fetching_paused",
                "1 while fetching is paused because the backlog is full.",
            )?,
        )?;
        let fetch_pauses = registered(
            registry,
            IntCounter::new(
                "voicehub_enricher_fetch_pauses_total",
                "Times fetching paused because the backlog was full.",
            )?,
        )?;
        let input_offset_gaps = registered(
            registry,
            IntCounter::new(
                "voicehub_enricher_input_offset_gaps_total",
                "Input offsets skipped between two records received from a partition: records \
             never received (normal only on compacted or transactional topics).",
            )?,
        )?;
        let redelivered = registered(
            registry,
            IntCounter::new(
                "voicehub_enricher_redelivered_records_total",
                "Input records received again from a partition (at or below an offset already \
             received since it was assigned), processed again.",
            )?,
        )?;
        let uncommitted_limit_reached = registered(
            registry,
            IntCounter::new(
                "voicehub_enricher_uncommitted_limit_reached_total",
                "Times a partition reached consumer.max_uncommitted_per_partition records started \
             and not committable (it starts no more until its oldest finishes).",
            )?,
        )?;
        let consumer_lag = registered(
            registry,
            IntGaugeVec::new(
                Opts::new(
                    "voicehub_enricher_consumer_lag",
                    "Records between the committed offset and the end of each input partition.",
                ),
                &["partition"],
            )?,
        )?;
        let commit_errors = registered(
            registry,
            IntCounter::new(
                "voicehub_enricher_commit_errors_total",
                "Failed offset commits.",
            )?,
        )?;
        let broker_reachable = registered(
            registry,
            IntGauge::new(
                "voicehub_enricher_broker_reachable",
                "1 while the Kafka cluster answers metadata requests (readiness check `broker`).",
            )?,
        )?;
        let consumer_rebuilds = registered(
            registry,
            IntCounter::new(
                "voicehub_enricher_consumer_rebuilds_total",
                "Input consumers replaced because they had known no broker for 30 s (a librdkafka \
             client that lost its broker list never recovers alone).",
            )?,
        )?;
        let refused_topics = registered(
            registry,
            IntGauge::new(
                "voicehub_enricher_kafka_refused_topics",
                "Topics the enricher reads or writes that the cluster refuses to its principal or \
             does not have (readiness check kafka_permissions).",
            )?,
        )?;
        let consumer_refused = registered(
            registry,
            IntGauge::new(
                "voicehub_enricher_consumer_refused",
                "1 while the cluster refuses the consumer its group or topic (readiness check \
             consumer_authorized).",
            )?,
        )?;
        let metrics = Self {
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
            enrichment_latency,
            fetch_attempts: counter(
                "voicehub_enricher_fetch_attempts_total",
                "Analysis fetch attempts by result class.",
                &["result"],
            )?,
            in_flight,
            backlog_bytes,
            fetching_paused,
            fetch_pauses,
            input_offset_gaps,
            redelivered,
            uncommitted_limit_reached,
            partition_revocations: counter(
                "voicehub_enricher_partition_revocations_total",
                "Input partitions revoked from this instance by rebalances, by partition (its \
                 next owner redoes at most consumer.max_uncommitted_per_partition records).",
                &["partition"],
            )?,
            consumer_lag,
            commit_errors,
            produce_errors: counter(
                "voicehub_enricher_produce_errors_total",
                "Produces of enriched or dead-letter records that failed, by reason (each is \
                 retried; too_large is dead-lettered).",
                &["reason"],
            )?,
            broker_reachable,
            api_key_reloads: counter(
                "voicehub_enricher_api_key_reloads_total",
                "Re-reads of an API key file that changed the key in use (a rotation applied).",
                &["source"],
            )?,
            api_key_reload_errors: counter(
                "voicehub_enricher_api_key_reload_errors_total",
                "Re-reads of an API key file that failed (the previous key stays in use).",
                &["source"],
            )?,
            consumer_rebuilds,
            refused_topics,
            consumer_refused,
        };
        // Every label value starts at 0: the series exist before the first increase, so an
        // alert's increase() sees it (and a sum over them is not empty).
        for reason in DeadLetterReason::ALL {
            metrics.dead_letters.with_label_values(&[reason.as_str()]);
        }
        for reason in ProduceError::REASONS {
            metrics.produce_errors.with_label_values(&[reason]);
        }
        for outcome in ["enriched", "dead_lettered"] {
            metrics.records.with_label_values(&[outcome]);
        }
        Ok(metrics)
    }

    /// Sets the lag of the partitions being fetched and removes every other partition's series:
    /// a revoked partition's last value must not stay behind (summed with its new owner's, it
    /// would count twice). `partitions`: (partition, fetched by this instance, lag or -1).
    pub fn set_consumer_lag(&self, partitions: impl IntoIterator<Item = (i32, bool, i64)>) {
        for (partition, fetched, lag) in partitions {
            let label = partition.to_string();
            if fetched && lag >= 0 {
                self.consumer_lag.with_label_values(&[&label]).set(lag);
            } else {
                self.forget_partition(partition);
            }
        }
    }

    /// Removes a partition's lag series (revoked).
    pub fn forget_partition(&self, partition: i32) {
        // An error only means there was no series.
        let _ = self
            .consumer_lag
            .remove_label_values(&[&partition.to_string()]);
    }
}

#[cfg(test)]
mod tests {
    use prometheus::core::Collector;

    use super::*;

    fn lag(metrics: &EnricherMetrics) -> Vec<(String, i64)> {
        let mut series: Vec<(String, i64)> = metrics
            .consumer_lag
            .collect()
            .iter()
            .flat_map(|family| family.get_metric().to_vec())
            .map(|m| {
                (
                    m.get_label()[0].value().to_owned(),
                    m.get_gauge().get_value() as i64,
                )
            })
            .collect();
        series.sort();
        series
    }

    #[test]
    fn a_partition_no_longer_fetched_leaves_no_lag_behind() {
        let metrics = EnricherMetrics::register(&Registry::new()).unwrap();
        metrics.set_consumer_lag([(0, true, 5), (1, true, 7), (2, false, -1)]);
        assert_eq!(lag(&metrics), [("0".into(), 5), ("1".into(), 7)]);
        // Partition 1 went to another instance: librdkafka reports it stopped.
        metrics.set_consumer_lag([(0, true, 3), (1, false, 7), (2, false, -1)]);
        assert_eq!(lag(&metrics), [("0".into(), 3)]);
        metrics.forget_partition(0);
        assert!(lag(&metrics).is_empty());
    }

    #[test]
    fn dead_letter_and_produce_error_series_exist_at_zero_from_the_start() {
        let registry = Registry::new();
        let _metrics = EnricherMetrics::register(&registry).unwrap();
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(text.contains("voicehub_enricher_dead_letters_total{reason=\"unauthorized\"} 0"));
        assert!(text.contains("voicehub_enricher_produce_errors_total{reason=\"timed_out\"} 0"));
    }
}
