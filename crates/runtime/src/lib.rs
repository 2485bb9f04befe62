//! What the ingress and the enricher share at run time.
//!
//! - [`settings`]: layered configuration (defaults < file < `VOICEHUB_BRIDGE__*` environment)
//!   with errors that name the key, and the sections both services have (`kafka`, `admin`,
//!   `log`).
//! - [`kafka`]: the producer with the contract's settings, record conversion, delivery with a
//!   deadline, and topic provisioning.
//! - [`failure_log`]: produce and consume failures logged once per cause and topic a minute.
//! - [`metrics`]: a per-service Prometheus registry (never the global one).
//! - [`admin`] (feature `admin`, on by default): the admin HTTP server (`/metrics`, `/livez`,
//!   `/readyz`); [`readiness`]: the checks `/readyz` answers.
//! - [`permissions`]: whether the cluster lets the service use its topics, as readiness.
//! - [`reload`]: credentials mounted as files, re-read while running.
//! - [`telemetry`]: structured logging, written by a thread of its own.
//! - [`shutdown`]: the termination signal.

#[cfg(feature = "admin")]
pub mod admin;
pub mod allocator;
pub mod failure_log;
mod json_log;
pub mod kafka;
mod log_writer;
pub mod metrics;
pub mod permissions;
pub mod readiness;
pub mod reload;
pub mod settings;
pub mod shutdown;
pub mod telemetry;

/// The bridge version, stamped on every record (`ce_bridgeversion`) and in `build_info`.
pub const BRIDGE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The message of a caught panic's payload (`panic!` with a literal or a formatted string).
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// A function the services call with every parsed event on their request or record path:
/// the seam fault-injection tests use to stand for a bug there (a hook that panics). The
/// services never set one themselves.
#[derive(Clone)]
pub struct FaultHook(std::sync::Arc<dyn Fn(&voicehub_model::WebhookEvent) + Send + Sync>);

impl FaultHook {
    /// Wraps `hook`.
    pub fn new(hook: impl Fn(&voicehub_model::WebhookEvent) + Send + Sync + 'static) -> Self {
        Self(std::sync::Arc::new(hook))
    }

    /// Calls the hook if one is set.
    pub fn call(slot: &std::sync::OnceLock<Self>, event: &voicehub_model::WebhookEvent) {
        if let Some(hook) = slot.get() {
            (hook.0)(event);
        }
    }
}

impl std::fmt::Debug for FaultHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FaultHook")
    }
}
