//! The enricher against a real broker (embedded tansu) and a real HTTP server standing in
//! for VoiceHub's analysis API.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod helpers;

mod accounting;
mod failures;
mod flow_control;
mod happy_path;
mod restart;
