//! The VoiceHub side of the bridge, as data: what VoiceHub sends, what the bridge writes to Kafka.
//!
//! Pure: no I/O, no clock, no randomness. Everything that varies per run (the source name, the
//! time a webhook was received, the bridge version) comes in as [`record::Provenance`].
//!
//! The flow through this crate:
//!
//! 1. [`parse_webhook`] turns the raw request body into a [`WebhookEvent`] (or a
//!    [`ParseError`] whose [`ParseError::reason`] is the dead-letter reason code).
//! 2. [`WebhookEvent::to_record`] normalises it into the CloudEvents [`record::Record`]
//!    (key, headers, value) and [`routing::Topics::for_kind`] names its topic.
//! 3. [`analysis::AnalysisResult`] parses a fetched analysis, and
//!    [`enriched::AnalysisEnriched`] is the enricher's output record.
//! 4. [`record::DeadLetter`] is what either stage writes when it cannot process something.

/// The documented VoiceHub event types: each with its topic's configuration key and the
/// stem of its default topic name (`voicehub.<stem>`) and schema file (`<stem>.json`).
///
/// The one list of them: [`EventKind`], [`WebhookEvent`], [`Topics`] and the record schemas
/// are generated from it (`with_event_types!(a_macro)` calls `a_macro!` with the list).
/// Adding an event type is a line here plus its payload type in `event/payloads.rs` (see
/// CONTRIBUTING.md).
macro_rules! with_event_types {
    ($then:ident) => {
        $then! {
            (CallStatusChanged, call_status_changed, "call-status-changed.v1"),
            (RecordingsAvailable, recordings_available, "recordings-available.v1"),
            (AnalysisResultReady, analysis_result_ready, "analysis-result-ready.v1"),
            (CallStudioJobStatusChanged, call_studio_job_status_changed, "call-studio-job-status-changed.v1"),
            (CallStudioJobAnalysisResultReady, call_studio_analysis_result_ready, "call-studio-analysis-result-ready.v1"),
        }
    };
}

pub mod analysis;
mod closed_enum;
pub mod enriched;
mod error;
pub mod event;
mod open_enum;
pub mod record;
pub mod record_codec;
pub mod routing;
pub mod schema;
mod serde_helpers;
pub mod status;
mod strict_json;
pub mod timestamp;

pub use error::ParseError;
pub use event::{WebhookEvent, parse_webhook};
pub use routing::{EventKind, Topics};
pub use timestamp::{Timestamp, UtcText};
