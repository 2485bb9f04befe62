//! The ingress over real HTTP against a real broker (embedded tansu per test).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod helpers;

mod accounting;
mod auth;
mod broker_outage;
mod contract;
mod hostile;
mod invalid;
mod metrics;
mod shutdown;
mod spool;
mod startup;
