//! `voicehub`, the operator's command line, as a library (the binary is a thin `clap` layer):
//!
//! - [`check`]: a preflight of a service's configuration against Kafka and the analysis API;
//! - [`dead_letters`]: the dead-letter topic read as it stands, filters, a summary;
//! - [`redrive`]: dead letters back through the current parser onto their topics, resumable;
//! - [`spool`]: records a spool set aside (or a stopped instance's whole spool) to Kafka;
//! - [`interrupt`]: SIGINT and SIGTERM as a request to stop after the record in hand;
//! - [`settings`]: the `[kafka]` section of the services' own configuration;
//! - [`terminal`]: what comes from a webhook body, made safe to show.

pub mod check;
pub mod dead_letters;
pub mod interrupt;
pub mod redrive;
pub mod settings;
pub mod spool;
pub mod terminal;

/// A command stopped by an error, with what it had done until then (reported beside the error).
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct Stopped<R: std::fmt::Debug, E: std::error::Error + 'static> {
    /// What was done before it stopped.
    pub report: Box<R>,
    /// Why it stopped.
    #[source]
    pub error: E,
}

impl<R: std::fmt::Debug, E: std::error::Error + 'static> Stopped<R, E> {
    /// `report`, or, if `outcome` is an error, the report with it.
    pub fn or_report(outcome: Result<(), E>, report: R) -> Result<R, Self> {
        match outcome {
            Ok(()) => Ok(report),
            Err(error) => Err(Self {
                report: Box::new(report),
                error,
            }),
        }
    }
}
