//! The HTTP half of the bridge: VoiceHub webhooks in, Kafka records out.
//!
//! # Delivery semantics
//!
//! A webhook is answered 2xx **only once its record is durable**: with `spool.mode = off`
//! (the default) that is once the broker acknowledged it (`acks=all`, idempotent producer),
//! within `http.produce_deadline_ms`; with the spool on, once it is fsynced to the instance's
//! disk, from where the forwarder produces it (see [`outbox`]). Otherwise 503 with
//! `Retry-After`, so VoiceHub retries. A 503 does not mean "not written": the record may still
//! land later, and the retry is then deduplicated (on this instance) or carries the same
//! `ce_id` (across instances). So: at least once, never a 2xx for an event that is not
//! durable, never a 4xx for a transient Kafka failure.
//!
//! Authenticated bodies that cannot be used get 400 and go to the dead-letter topic; if even
//! that cannot be written, 503, so nothing authenticated disappears.
//!
//! The request path, in order: source (unknown: 401, as a wrong secret) → secret (401) → draining / load shedding (503)
//! → body limit (413) → body byte budget (503, [`body_budget`]) → body timeout (408) → parse (400 + dead letter) → deduplicate (200
//! duplicate) → outbox: produce, or spool, and wait until durable (200, or 503).

pub mod auth;
pub mod body_budget;
pub mod dedupe;
pub mod error;
pub mod forwarder;
pub mod metrics;
pub mod outbox;
pub mod publisher;
pub mod routes;
pub mod settings;
pub mod spool_upkeep;
pub mod startup;

pub use settings::IngressSettings;
pub use startup::{Application, ShutdownTrigger, StartupError};
