//! Apache Kafka for tests that need a broker at volume (tansu answers fetches slowly and its
//! storage engines fail under a consumer group at tens of thousands of records): the one named
//! by `VOICEHUB_TEST_KAFKA` (`host:port`, shared by the whole test run; `tests/run.sh` starts
//! it), else one started for this test with `deploy/ci/kafka.sh` (Java 17 and Maven; the jars
//! come from Maven Central once, into a cache).

use std::path::PathBuf;
use std::process::Command;

use crate::{Result, TestkitError, free_port};

/// Names the shared broker of a test run.
pub const KAFKA_ENV: &str = "VOICEHUB_TEST_KAFKA";

/// A running Apache Kafka broker.
#[derive(Debug)]
pub(crate) struct Kafka {
    pub(crate) bootstrap: String,
    /// Set when this process started the broker (and so stops it, and may pause it).
    own: Option<Owned>,
}

#[derive(Debug)]
struct Owned {
    dir: tempfile::TempDir,
    pid: u32,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/ci/kafka.sh")
}

impl Kafka {
    /// The shared broker, or a new one.
    pub(crate) fn shared_or_started() -> Result<Self> {
        if let Ok(bootstrap) = std::env::var(KAFKA_ENV) {
            return Ok(Self {
                bootstrap,
                own: None,
            });
        }
        Self::started()
    }

    /// A new broker, this process's own (so it can be paused).
    pub(crate) fn started() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("voicehub-kafka-")
            .tempdir()?;
        let port = free_port()?;
        let output = Command::new(script())
            .arg("start")
            .arg(port.to_string())
            .arg(dir.path())
            .output()?;
        if !output.status.success() {
            return Err(TestkitError::Broker(format!(
                "deploy/ci/kafka.sh start failed: {}",
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        let pid = std::fs::read_to_string(dir.path().join("pid"))?
            .trim()
            .parse()
            .map_err(|e| TestkitError::Broker(format!("kafka pid: {e}")))?;
        Ok(Self {
            bootstrap: String::from_utf8_lossy(&output.stdout).trim().to_owned(),
            own: Some(Owned { dir, pid }),
        })
    }

    /// Freezes (`SIGSTOP`) or thaws (`SIGCONT`) the broker process: an outage in which
    /// connections stay open and nothing is answered. Only for a broker this process started.
    pub(crate) fn signal(&self, signal: &str) -> Result<()> {
        let own = self.own.as_ref().ok_or_else(|| {
            TestkitError::Broker(format!(
                "the broker of {KAFKA_ENV} is shared by the test run: it cannot be paused"
            ))
        })?;
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(own.pid.to_string())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(TestkitError::Broker(format!("kill -{signal} failed")))
        }
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        if let Some(own) = &self.own {
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(own.pid.to_string())
                .status();
            let _ = Command::new(script())
                .arg("stop")
                .arg(own.dir.path())
                .status();
        }
    }
}
