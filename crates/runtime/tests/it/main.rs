//! The runtime's pieces against real parts: a real broker (embedded tansu), a real HTTP
//! server, a real Prometheus text parser.

#[cfg(feature = "admin")]
mod admin;
mod kafka;
