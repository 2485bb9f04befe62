//! The Kafka half of the bridge: for every `AnalysisResultReady` record, fetch the analysis
//! and republish it enriched. Delivery semantics: see [`pipeline`].

pub mod allow_list;
pub mod consumer_watch;
pub mod dead_letter;
pub mod fetch;
pub mod metrics;
pub mod pipeline;
pub mod settings;
pub mod sources;
#[cfg(feature = "service")]
pub mod startup;
pub mod tracker;

pub use settings::EnricherSettings;
#[cfg(feature = "service")]
pub use startup::{Application, ShutdownTrigger, StartupError};
