//! What the ingress and the enricher share at run time.
//!
//! - [`settings`]: layered configuration (defaults < file < `VOICEHUB_BRIDGE__*` environment)
//!   with errors that name the key, and the sections both services have (`kafka`, `admin`,
//!   `log`).
//! - [`kafka`]: the producer with the contract's settings, record conversion, delivery with a
//!   deadline, and topic provisioning.
//! - [`metrics`]: a per-service Prometheus registry (never the global one).
//! - [`admin`]: the admin HTTP server (`/metrics`, `/livez`, `/readyz`) and readiness flags.
//! - [`telemetry`]: structured logging.
//! - [`shutdown`]: the termination signal.

pub mod admin;
pub mod kafka;
pub mod metrics;
pub mod settings;
pub mod shutdown;
pub mod telemetry;

/// The bridge version, stamped on every record (`ce_bridgeversion`) and in `build_info`.
pub const BRIDGE_VERSION: &str = env!("CARGO_PKG_VERSION");
