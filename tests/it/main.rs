//! Cross-crate tests of the record contract, against a real broker.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod broker_bounce;
mod cloudevents_binding;
mod docs;
mod end_to_end;
mod harness;
mod intake;
mod process;
mod process_crash;
mod secured;
