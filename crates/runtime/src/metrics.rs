//! The Prometheus registry of a service.
//!
//! Each service builds one registry and registers every metric of its own into it; nothing is
//! registered globally, so tests that run several services in one process stay apart.

use prometheus::core::Collector;
use prometheus::{Encoder, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::BRIDGE_VERSION;

/// Histogram buckets for request and produce latencies, in seconds: fine below 100 ms where
/// healthy produces are, coarse up to VoiceHub's 10 s timeout.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A registry with the process metrics (`process_*`, unprefixed, the standard names) and
/// `voicehub_build_info{service, version, librdkafka}`.
pub fn registry(service: &'static str) -> Result<Registry, prometheus::Error> {
    let registry = Registry::new();
    #[cfg(target_os = "linux")]
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    let build_info = registered(
        &registry,
        IntGaugeVec::new(
            Opts::new(
                "voicehub_build_info",
                "Always 1; labels say which service and version this is, and the librdkafka \
                 version linked in.",
            ),
            &["service", "version", "librdkafka"],
        )?,
    )?;
    let (_, librdkafka) = rdkafka::util::get_rdkafka_version();
    build_info
        .with_label_values(&[service, BRIDGE_VERSION, &librdkafka])
        .set(1);
    Ok(registry)
}

/// `metric`, registered in `registry`: every metric of the services is registered this way.
pub fn registered<M: Collector + Clone + 'static>(
    registry: &Registry,
    metric: M,
) -> Result<M, prometheus::Error> {
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

/// The registry in the Prometheus text format.
pub fn encode(registry: &Registry) -> Result<String, prometheus::Error> {
    let mut buffer = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut buffer)?;
    String::from_utf8(buffer).map_err(|e| prometheus::Error::Msg(e.to_string()))
}
