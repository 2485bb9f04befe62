//! Test support: a real Kafka-compatible broker per test, and ways to look inside it.
//!
//! [`TestBroker::start`] is the test run's broker: Apache Kafka when `VOICEHUB_TEST_KAFKA`
//! names one (`tests/run.sh` starts one for the run from its Maven Central jars, see
//! [`kafka`]), else [tansu](https://crates.io/crates/tansu-broker) in this process on a free
//! loopback port, storing in SQLite in a temporary directory (see [`Storage`]). Tests take
//! their topic and consumer-group names from [`TestBroker::topics`] and [`TestBroker::name`],
//! unique on a shared broker. Outage tests use [`TestBroker::start_stoppable`], a broker of
//! their own (Apache Kafka started for the test, or tansu) that can be stopped and resumed on
//! the same port with its data; records are read back with deadlines, never fixed sleeps.
//! [`TestBroker::secure`] is the secured three-node cluster of [`secure`], for tests of
//! authentication, authorization and broker faults.
//! [`metrics`] reads a service's `/metrics` through a real Prometheus text parser.

mod broker;
pub mod kafka;
pub mod metrics;
mod read;
pub mod secure;

pub use broker::{Storage, TestBroker};
pub use read::ConsumedRecord;

use std::time::Duration;

/// Why a test-kit operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// The embedded broker could not be built or did not come up.
    #[error("embedded broker: {0}")]
    Broker(String),
    /// A Kafka client call failed.
    #[error(transparent)]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// Creating a topic failed (other than because it exists).
    #[error("creating topic {topic}: {detail}")]
    CreateTopic {
        topic: String,
        /// The broker's answer.
        detail: String,
    },
    /// Fewer records than expected arrived before the deadline.
    #[error("{got} of {expected} records on {topic} after {waited:?}")]
    Timeout {
        /// The topic read.
        topic: String,
        /// How many were expected.
        expected: usize,
        /// How many arrived.
        got: usize,
        /// How long it waited.
        waited: Duration,
    },
    /// An I/O error (binding a port).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The test kit's result type.
pub type Result<T, E = TestkitError> = std::result::Result<T, E>;

/// A port that was free a moment ago on 127.0.0.1, below Linux's ephemeral range (32768 and
/// up): a broker stopped in a test must get its port back, and a port in the ephemeral range
/// can meanwhile become the local port of any outgoing connection.
pub fn free_port() -> Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Start where other test processes are unlikely to: from the pid and the clock.
    let seed = std::process::id()
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
    let _ = NEXT.compare_exchange(0, seed % SPAN + 1, Ordering::Relaxed, Ordering::Relaxed);
    for _ in 0..SPAN {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % SPAN;
        let port = u16::try_from(LOW + offset).unwrap_or(20_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no free port in 20000..32000",
    )
    .into())
}
