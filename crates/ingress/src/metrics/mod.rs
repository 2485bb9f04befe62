//! Every metric of the ingress, created once against the service's own registry.
//!
//! Labels come from closed sets only: configured source names (or `unknown`), event kinds,
//! outcomes, reasons, secret slots. Never an event, call or job id.
//!
//! The series a webhook request touches are resolved from their families once, on first use
//! ([`SourceMetrics`], [`RequestCounters`], [`RequestDurations`]): a request counts through a
//! held handle instead of hashing its label values under the family's lock.

use std::sync::{Arc, OnceLock};

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use voicehub_model::EventKind;
use voicehub_runtime::kafka::ProduceError;
use voicehub_runtime::metrics::{LATENCY_BUCKETS, registered};

use crate::error::Outcome;

mod spool;

pub use spool::{SpoolMetrics, UNDELIVERABLE_REASONS};

/// The ingress's metrics.
#[derive(Debug, Clone)]
pub struct IngressMetrics {
    /// `voicehub_ingress_requests_total{source, event_type, outcome}`: counted through
    /// [`RequestCounters`].
    requests: IntCounterVec,
    /// `voicehub_ingress_request_duration_seconds{outcome}`
    pub request_duration: RequestDurations,
    /// `voicehub_ingress_produce_duration_seconds`: successful produces, request to ack.
    pub produce_duration: Histogram,
    /// `voicehub_ingress_produce_errors_total{reason}`
    pub produce_errors: IntCounterVec,
    /// `voicehub_ingress_in_flight_requests`
    pub in_flight: IntGauge,
    /// `voicehub_ingress_dedupe_hits_total{source}`: counted through [`SourceMetrics`].
    dedupe_hits: IntCounterVec,
    /// `voicehub_ingress_auth_failures_total{source, reason}`: counted through
    /// [`SourceMetrics`].
    auth_failures: IntCounterVec,
    /// `voicehub_ingress_auth_accepted_total{source, slot}`: counted through [`SourceMetrics`].
    auth_accepted: IntCounterVec,
    /// `voicehub_ingress_dead_letters_total{reason}`
    pub dead_letters: IntCounterVec,
    /// `voicehub_ingress_secret_reloads_total{source}`: re-reads that changed the secrets.
    pub secret_reloads: IntCounterVec,
    /// `voicehub_ingress_secret_reload_errors_total{source}`
    pub secret_reload_errors: IntCounterVec,
    /// `voicehub_ingress_secret_files_disabled{source}`: secret files empty or gone (their
    /// slots accept nothing).
    pub secret_files_disabled: IntGaugeVec,
    /// `voicehub_ingress_producer_queue_messages`
    pub producer_queue: IntGauge,
    /// `voicehub_ingress_producer_replacements_total`
    pub producer_replacements: IntCounter,
    /// `voicehub_ingress_broker_reachable`: 1 after an acknowledgement or a metadata answer, 0
    /// once nothing has succeeded for 5 s.
    pub broker_reachable: IntGauge,
    /// `voicehub_ingress_kafka_refused_topics`: topics the cluster refuses to this principal
    /// or does not have (readiness check `kafka_permissions`).
    pub refused_topics: IntGauge,
    /// `voicehub_ingress_body_bytes_reserved`: request body bytes reserved from
    /// `http.max_in_flight_body_bytes`.
    pub body_bytes_reserved: IntGauge,
    /// The spool's metrics (registered in every mode, so dashboards and alerts find them).
    pub spool: SpoolMetrics,
}

/// Reasons of `voicehub_ingress_dead_letters_total`.
pub use voicehub_model::record::INGRESS_DEAD_LETTER_REASONS as DEAD_LETTER_REASONS;

impl IngressMetrics {
    /// Creates and registers every metric.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            registered(registry, IntCounterVec::new(Opts::new(name, help), labels)?)
        };
        let gauge = |name: &str, help: &str| registered(registry, IntGauge::new(name, help)?);
        let request_duration = RequestDurations::new(registered(
            registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "voicehub_ingress_request_duration_seconds",
                    "Webhook request handling time, body read to answer, by outcome.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["outcome"],
            )?,
        )?);
        let produce_duration = registered(
            registry,
            Histogram::with_opts(
                HistogramOpts::new(
                    "voicehub_ingress_produce_duration_seconds",
                    "Time from produce to the broker's acknowledgement (acks=all), successes only.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            )?,
        )?;
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
            secret_reloads: counter(
                "voicehub_ingress_secret_reloads_total",
                "Re-reads of secret files that changed the active secrets (a rotation applied).",
                &["source"],
            )?,
            secret_reload_errors: counter(
                "voicehub_ingress_secret_reload_errors_total",
                "Failed re-reads of secret files (the previous secrets stay active).",
                &["source"],
            )?,
            secret_files_disabled: registered(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "voicehub_ingress_secret_files_disabled",
                        "Webhook secret files found empty or gone at the last re-read: their \
                         secrets are no longer accepted.",
                    ),
                    &["source"],
                )?,
            )?,
            producer_replacements: {
                registered(
                    registry,
                    IntCounter::new(
                        "voicehub_ingress_producer_replacements_total",
                        "Producers replaced after entering a fatal state (e.g. fenced).",
                    )?,
                )?
            },
            producer_queue: gauge(
                "voicehub_ingress_producer_queue_messages",
                "Records in the producer's queue awaiting delivery (librdkafka statistics).",
            )?,
            broker_reachable: gauge(
                "voicehub_ingress_broker_reachable",
                "1 while the broker acknowledges records or answers metadata requests, else 0.",
            )?,
            body_bytes_reserved: gauge(
                "voicehub_ingress_body_bytes_reserved",
                "Request body bytes reserved from http.max_in_flight_body_bytes (whole KiB).",
            )?,
            refused_topics: gauge(
                "voicehub_ingress_kafka_refused_topics",
                "Topics the ingress writes that the cluster refuses to its principal or does not \
                 have (readiness check kafka_permissions).",
            )?,
            spool: SpoolMetrics::register(registry)?,
        };
        for reason in DEAD_LETTER_REASONS {
            metrics.dead_letters.with_label_values(&[reason]);
        }
        Ok(metrics)
    }

    /// The series of a configured source, started at 0 (so that an alert's `rate()` or
    /// `increase()` sees the first failure, and a ratio has its denominator before the first
    /// success).
    pub fn source(&self, source: &str) -> SourceMetrics {
        self.secret_reloads.with_label_values(&[source]);
        self.secret_reload_errors.with_label_values(&[source]);
        self.secret_files_disabled.with_label_values(&[source]);
        let accepted = ChildrenByIndex::new();
        accepted.get(0, || {
            self.auth_accepted.with_label_values(&[source, SLOTS[0]])
        });
        SourceMetrics {
            requests: self.requests_of(source),
            auth_accepted_family: self.auth_accepted.clone(),
            auth_accepted: accepted,
            auth_missing: self.auth_failures.with_label_values(&[source, "missing"]),
            auth_mismatch: self.auth_failures.with_label_values(&[source, "mismatch"]),
            dedupe_hits: self.dedupe_hits.with_label_values(&[source]),
        }
    }

    /// The request counters of a source label (`unknown` for a name no source has); no series
    /// exists before its first request.
    pub fn requests_of(&self, source: &str) -> RequestCounters {
        RequestCounters {
            family: self.requests.clone(),
            source: source.to_owned(),
            cells: ChildrenByIndex::new(),
        }
    }
}

/// The `event_type` label: the event's kind, or `none` before the body is parsed.
pub fn event_type_label(kind: Option<EventKind>) -> &'static str {
    kind.map_or("none", EventKind::as_str)
}

const OUTCOMES: usize = Outcome::ALL.len();
const EVENT_TYPES: usize = EventKind::ALL.len() + 1;
/// The `slot` label: which active secret matched.
const SLOTS: [&str; 9] = ["0", "1", "2", "3", "4", "5", "6", "7", "8+"];

/// A family's children by index, each resolved at most once.
#[derive(Debug)]
struct ChildrenByIndex<M, const N: usize>([OnceLock<M>; N]);

impl<M, const N: usize> ChildrenByIndex<M, N> {
    fn new() -> Self {
        Self([const { OnceLock::new() }; N])
    }

    /// The child at `index` (`index < N`, from an enum's position), resolving it on first use.
    fn get(&self, index: usize, resolve: impl FnOnce() -> M) -> &M {
        self.0[index].get_or_init(resolve)
    }
}

/// `voicehub_ingress_requests_total` of one source label.
#[derive(Debug)]
pub struct RequestCounters {
    family: IntCounterVec,
    source: String,
    cells: ChildrenByIndex<IntCounter, { EVENT_TYPES * OUTCOMES }>,
}

impl RequestCounters {
    /// Counts a request.
    pub fn inc(&self, kind: Option<EventKind>, outcome: Outcome) {
        self.counter(kind, outcome).inc();
    }

    /// Creates the series at 0 if it does not exist yet: alert rules then see a rate of 0
    /// rather than no series at all.
    pub fn touch(&self, kind: Option<EventKind>, outcome: Outcome) {
        self.counter(kind, outcome);
    }

    fn counter(&self, kind: Option<EventKind>, outcome: Outcome) -> &IntCounter {
        let event_type = kind.map_or(0, |kind| kind as usize + 1);
        self.cells
            .get(event_type * OUTCOMES + outcome as usize, || {
                self.family.with_label_values(&[
                    &self.source,
                    event_type_label(kind),
                    outcome.as_str(),
                ])
            })
    }
}

/// `voicehub_ingress_request_duration_seconds`, by outcome.
#[derive(Debug, Clone)]
pub struct RequestDurations {
    family: HistogramVec,
    cells: Arc<ChildrenByIndex<Histogram, OUTCOMES>>,
}

impl RequestDurations {
    fn new(family: HistogramVec) -> Self {
        Self {
            family,
            cells: Arc::new(ChildrenByIndex::new()),
        }
    }

    /// Records one request's handling time.
    pub fn observe(&self, outcome: Outcome, seconds: f64) {
        self.cells
            .get(outcome as usize, || {
                self.family.with_label_values(&[outcome.as_str()])
            })
            .observe(seconds);
    }
}

/// The per-request series of one configured source.
#[derive(Debug)]
pub struct SourceMetrics {
    /// `voicehub_ingress_requests_total{source=<this source>}`
    pub requests: RequestCounters,
    auth_accepted_family: IntCounterVec,
    auth_accepted: ChildrenByIndex<IntCounter, { SLOTS.len() }>,
    auth_missing: IntCounter,
    auth_mismatch: IntCounter,
    dedupe_hits: IntCounter,
}

impl SourceMetrics {
    /// A secret accepted; `slot` is the position of the secret that matched.
    pub fn auth_accepted(&self, slot: usize) {
        let slot = slot.min(SLOTS.len() - 1);
        self.auth_accepted
            .get(slot, || {
                self.auth_accepted_family
                    .with_label_values(&[&self.requests.source, SLOTS[slot]])
            })
            .inc();
    }

    /// No `x-webhook-secret` header.
    pub fn auth_missing(&self) {
        self.auth_missing.inc();
    }

    /// A header matching no active secret.
    pub fn auth_mismatch(&self) {
        self.auth_mismatch.inc();
    }

    /// A webhook answered as a duplicate.
    pub fn dedupe_hit(&self) {
        self.dedupe_hits.inc();
    }
}

#[cfg(test)]
mod tests {
    use voicehub_testkit::metrics::Value;

    use super::*;

    /// The sample of `name` with exactly `labels`, read through the text format and a
    /// Prometheus text parser: a counter's value, a histogram's count.
    fn value(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .expect("encodes");
        let scrape = voicehub_testkit::metrics::parse(&text).expect("parses");
        let sample = scrape.samples.into_iter().find(|sample| {
            sample.metric == name
                && sample.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(key, wanted)| sample.labels.get(key) == Some(*wanted))
        })?;
        match sample.value {
            Value::Counter(value) => Some(value),
            Value::Histogram(buckets) => buckets.iter().map(|bucket| bucket.count).reduce(f64::max),
            other => panic!("{name}: unexpected {other:?}"),
        }
    }

    #[test]
    fn positions_match_the_enums() {
        for (position, outcome) in Outcome::ALL.into_iter().enumerate() {
            assert_eq!(outcome as usize, position);
        }
        for (position, kind) in EventKind::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, position);
        }
    }

    #[test]
    fn every_event_type_and_outcome_has_a_series_of_its_own() {
        let registry = Registry::new();
        let metrics = IngressMetrics::register(&registry).expect("registers");
        let source = metrics.source("acme");
        let kinds = EventKind::ALL.map(Some);
        for kind in kinds.iter().copied().chain([None]) {
            for (times, outcome) in Outcome::ALL.into_iter().enumerate() {
                for _ in 0..=times {
                    source.requests.inc(kind, outcome);
                }
            }
        }
        for kind in kinds.iter().copied().chain([None]) {
            for (times, outcome) in Outcome::ALL.into_iter().enumerate() {
                let labels = [
                    ("source", "acme"),
                    ("event_type", event_type_label(kind)),
                    ("outcome", outcome.as_str()),
                ];
                let count = value(&registry, "voicehub_ingress_requests_total", &labels);
                assert_eq!(count, Some(times as f64 + 1.0), "{labels:?}");
            }
        }
    }

    #[test]
    fn held_handles_count_into_the_labelled_series() {
        let registry = Registry::new();
        let metrics = IngressMetrics::register(&registry).expect("registers");
        let source = metrics.source("acme");
        let requests = "voicehub_ingress_requests_total";

        // A configured source's auth and dedupe series start at 0; its request series do not.
        let missing = [("source", "acme"), ("reason", "missing")];
        assert_eq!(
            value(&registry, "voicehub_ingress_auth_failures_total", &missing),
            Some(0.0)
        );
        assert_eq!(
            value(
                &registry,
                "voicehub_ingress_dedupe_hits_total",
                &[("source", "acme")]
            ),
            Some(0.0)
        );
        let accepted = [
            ("source", "acme"),
            ("event_type", "CallStatusChanged"),
            ("outcome", "accepted"),
        ];
        assert_eq!(value(&registry, requests, &accepted), None);

        for _ in 0..3 {
            source
                .requests
                .inc(Some(EventKind::CallStatusChanged), Outcome::Accepted);
        }
        source.requests.inc(None, Outcome::Unauthorized);
        source
            .requests
            .inc(Some(EventKind::Unrouted), Outcome::Unrouted);
        source.auth_accepted(0);
        source.auth_accepted(1);
        source.auth_accepted(12);
        source.auth_missing();
        source.dedupe_hit();
        metrics.request_duration.observe(Outcome::Accepted, 0.01);
        metrics.request_duration.observe(Outcome::Accepted, 0.02);
        metrics
            .requests_of("unknown")
            .inc(None, Outcome::UnknownSource);

        assert_eq!(value(&registry, requests, &accepted), Some(3.0));
        let unauthorized = [
            ("source", "acme"),
            ("event_type", "none"),
            ("outcome", "unauthorized"),
        ];
        assert_eq!(value(&registry, requests, &unauthorized), Some(1.0));
        let unrouted = [
            ("source", "acme"),
            ("event_type", "unrouted"),
            ("outcome", "unrouted"),
        ];
        assert_eq!(value(&registry, requests, &unrouted), Some(1.0));
        let unknown = [
            ("source", "unknown"),
            ("event_type", "none"),
            ("outcome", "unknown_source"),
        ];
        assert_eq!(value(&registry, requests, &unknown), Some(1.0));
        for (slot, count) in [("0", 1.0), ("1", 1.0), ("8+", 1.0)] {
            let labels = [("source", "acme"), ("slot", slot)];
            assert_eq!(
                value(&registry, "voicehub_ingress_auth_accepted_total", &labels),
                Some(count)
            );
        }
        assert_eq!(
            value(&registry, "voicehub_ingress_auth_failures_total", &missing),
            Some(1.0)
        );
        assert_eq!(
            value(
                &registry,
                "voicehub_ingress_dedupe_hits_total",
                &[("source", "acme")]
            ),
            Some(1.0)
        );
        let duration = [("outcome", "accepted")];
        assert_eq!(
            value(
                &registry,
                "voicehub_ingress_request_duration_seconds",
                &duration
            ),
            Some(2.0)
        );
        // The unknown source has no auth series.
        let unknown_missing = [("source", "unknown"), ("reason", "missing")];
        assert_eq!(
            value(
                &registry,
                "voicehub_ingress_auth_failures_total",
                &unknown_missing
            ),
            None
        );
    }
}
