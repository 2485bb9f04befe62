//! The operator CLI against a real broker (the test kit's: Apache Kafka in CI, else tansu),
//! a real enricher and a stand-in analysis API.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod bench;
mod cli;
mod helpers;
mod redrive;
mod spool;
