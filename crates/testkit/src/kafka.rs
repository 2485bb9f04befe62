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
    /// Its configuration, data, log, and `pid` (which changes with every resume).
    dir: tempfile::TempDir,
}

impl Owned {
    fn pid(&self) -> Result<String> {
        Ok(std::fs::read_to_string(self.dir.path().join("pid"))?
            .trim()
            .to_owned())
    }
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

    /// Whether the test run shares this broker (so it is not this process's to stop).
    pub(crate) fn is_shared(&self) -> bool {
        self.own.is_none()
    }

    /// A new broker, this process's own (so it can be stopped and paused).
    pub(crate) fn started() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("voicehub-kafka-")
            .tempdir()?;
        // The controller listens on the port after the broker's.
        let port = loop {
            let port = free_port()?;
            if std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
                break port;
            }
        };
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
        Ok(Self {
            bootstrap: String::from_utf8_lossy(&output.stdout).trim().to_owned(),
            own: Some(Owned { dir }),
        })
    }

    fn own(&self) -> Result<&Owned> {
        self.own.as_ref().ok_or_else(|| {
            TestkitError::Broker(format!(
                "the broker of {KAFKA_ENV} is shared by the test run: it cannot be stopped or \
                 paused (use TestBroker::start_stoppable)"
            ))
        })
    }

    /// `deploy/ci/kafka.sh kill` (`SIGKILL`, waiting until the process is gone: its ports
    /// closed, its connections reset, its log directory kept) or `resume` (started again on
    /// its data and ports, waiting until it serves), run off the async runtime.
    pub(crate) async fn control(&self, verb: &str) -> Result<()> {
        let dir = self.own()?.dir.path().to_owned();
        let verb = verb.to_owned();
        crate::read::off_runtime(move || {
            let output = Command::new(script()).arg(&verb).arg(&dir).output()?;
            if output.status.success() {
                Ok(())
            } else {
                Err(TestkitError::Broker(format!(
                    "deploy/ci/kafka.sh {verb} failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                )))
            }
        })
        .await
    }

    /// Freezes (`SIGSTOP`) or thaws (`SIGCONT`) the broker process: an outage in which
    /// connections stay open and nothing is answered. Only for a broker this process started.
    pub(crate) fn signal(&self, signal: &str) -> Result<()> {
        let own = self.own()?;
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(own.pid()?)
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
        // Its data is of no more use: killed, not stopped (a frozen broker dies too).
        if let Some(own) = &self.own {
            let _ = Command::new(script())
                .arg("kill")
                .arg(own.dir.path())
                .status();
        }
    }
}
