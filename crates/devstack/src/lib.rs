//! Local tooling: `voicehub-dev` runs the bridge with an embedded broker, `voicehub-load`
//! drives webhook load at it (and serves the bare-HTTP baseline for benchmarks),
//! `voicehub-tail` prints a topic's records.

pub mod stack;
