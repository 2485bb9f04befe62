//! The secured three-node Apache Kafka of `deploy/ci/kafka-cluster.sh` (SASL_SSL with
//! SCRAM-SHA-512 and PLAIN, mutual TLS, ACLs with nothing allowed by default, replication 3,
//! `min.insync.replicas` 2): the one named by `VOICEHUB_TEST_SECURE_KAFKA` (its directory;
//! `tests/run.sh` starts it), else one started for the test.
//!
//! Tests reach it through [`crate::TestBroker::secure`], whose own clients (topic creation,
//! reading back) are the admin user's, and give the services the principals of
//! [`SecureCluster::client_properties`] with exactly the ACLs they [`SecureCluster::grant`].
//! Faults ([`SecureCluster::kill`] and friends) touch the whole cluster: tests that use it are
//! run one at a time (the nextest group `secure-cluster`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Result, TestkitError, free_port};

/// Names the secured cluster's directory for the test run.
pub const SECURE_KAFKA_ENV: &str = "VOICEHUB_TEST_SECURE_KAFKA";

/// How a client authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// SASL_SSL with SCRAM-SHA-512.
    Scram,
    /// SASL_SSL with PLAIN (the shape of Confluent Cloud's API keys).
    Plain,
    /// SSL with a client certificate (the principal is the certificate's CN).
    Mtls,
}

/// An ACL resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// A topic, by its literal name.
    Topic(String),
    /// A consumer group, by its literal name.
    Group(String),
}

/// The secured cluster.
#[derive(Debug)]
pub struct SecureCluster {
    dir: PathBuf,
    /// Set when this process started it (and so stops it).
    own: Option<tempfile::TempDir>,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/ci/kafka-cluster.sh")
}

fn run(args: &[&std::ffi::OsStr]) -> Result<String> {
    let output = Command::new(script()).args(args).output()?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(TestkitError::Broker(format!(
            "deploy/ci/kafka-cluster.sh {:?} failed: {}",
            args.first(),
            String::from_utf8_lossy(&output.stderr)
        )))
    }
}

impl SecureCluster {
    /// The test run's cluster, or one started now (about 30 s).
    pub(crate) fn shared_or_started() -> Result<Self> {
        if let Some(dir) = std::env::var_os(SECURE_KAFKA_ENV) {
            return Ok(Self {
                dir: dir.into(),
                own: None,
            });
        }
        let own = tempfile::Builder::new()
            .prefix("voicehub-kafka-cluster-")
            .tempdir()?;
        // Node N uses base + 10N .. base + 10N + 3.
        let base = loop {
            let base = free_port()?;
            let free = (1..=3u16).all(|n| {
                (0..4u16)
                    .all(|i| std::net::TcpListener::bind(("127.0.0.1", base + 10 * n + i)).is_ok())
            });
            if free && base < 31_900 {
                break base;
            }
        };
        run(&[
            "start".as_ref(),
            base.to_string().as_ref(),
            own.path().as_os_str(),
        ])?;
        Ok(Self {
            dir: own.path().to_owned(),
            own: Some(own),
        })
    }

    /// The bootstrap list of the listener `auth` uses.
    pub fn bootstrap(&self, auth: Auth) -> Result<String> {
        let file = match auth {
            Auth::Scram | Auth::Plain => "bootstrap.sasl",
            Auth::Mtls => "bootstrap.mtls",
        };
        Ok(std::fs::read_to_string(self.dir.join(file))?
            .trim()
            .to_owned())
    }

    /// The CA certificate every listener's certificate is signed by.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The password of `user` (SCRAM and PLAIN alike).
    pub fn password(&self, user: &str) -> Result<String> {
        std::fs::read_to_string(self.dir.join("users"))?
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{user}:")).map(str::to_owned))
            .ok_or_else(|| TestkitError::Broker(format!("no user {user} in the cluster")))
    }

    /// The librdkafka properties (secrets included) that make a client `user` with `auth`;
    /// `bootstrap.servers` apart ([`Self::bootstrap`]).
    pub fn client_properties(&self, user: &str, auth: Auth) -> Result<BTreeMap<String, String>> {
        let path = |p: &Path| p.to_string_lossy().into_owned();
        let mut properties = BTreeMap::from([("ssl.ca.location".to_owned(), path(&self.ca()))]);
        let mut set = |name: &str, value: String| properties.insert(name.to_owned(), value);
        match auth {
            Auth::Scram | Auth::Plain => {
                set("security.protocol", "SASL_SSL".into());
                let mechanism = if auth == Auth::Scram {
                    "SCRAM-SHA-512"
                } else {
                    "PLAIN"
                };
                set("sasl.mechanism", mechanism.into());
                set("sasl.username", user.into());
                set("sasl.password", self.password(user)?);
            }
            Auth::Mtls => {
                set("security.protocol", "SSL".into());
                set(
                    "ssl.certificate.location",
                    path(&self.dir.join(format!("client-{user}.pem"))),
                );
                set(
                    "ssl.key.location",
                    path(&self.dir.join(format!("client-{user}.key"))),
                );
            }
        }
        Ok(properties)
    }

    /// Allows `user` the `operations` (Kafka's names: `Read`, `Write`, `Describe`, ...) on
    /// each of `resources`, through Kafka's own ACL tool as the admin user.
    pub async fn grant(
        &self,
        user: &str,
        operations: &[&str],
        resources: &[Resource],
    ) -> Result<()> {
        let mut args: Vec<String> = vec![
            "acl".into(),
            self.dir.to_string_lossy().into_owned(),
            "--add".into(),
            "--force".into(),
            "--allow-principal".into(),
            format!("User:{user}"),
        ];
        for operation in operations {
            args.extend(["--operation".into(), (*operation).to_owned()]);
        }
        for resource in resources {
            let (flag, name) = match resource {
                Resource::Topic(name) => ("--topic", name),
                Resource::Group(name) => ("--group", name),
            };
            args.extend([flag.to_owned(), name.clone()]);
        }
        crate::read::off_runtime(move || {
            let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
            run(&args).map(drop)
        })
        .await
    }

    /// `SIGKILL` of node `node` (1-3), waiting until it is gone; its data stays.
    pub async fn kill(&self, node: u8) -> Result<()> {
        self.control("kill", node).await
    }

    /// Starts node `node` again on its data and waits until it serves.
    pub async fn resume(&self, node: u8) -> Result<()> {
        self.control("resume", node).await
    }

    /// Stops node `node` cleanly (`SIGTERM`), starts it again and waits until it serves.
    pub async fn restart(&self, node: u8) -> Result<()> {
        self.control("restart", node).await
    }

    /// Drops (iptables, as root) what clients send to node `node`: a network partition
    /// between the clients and that broker, which still talks to the other two.
    pub async fn isolate(&self, node: u8) -> Result<()> {
        self.control("isolate", node).await
    }

    /// Ends [`Self::isolate`].
    pub async fn rejoin(&self, node: u8) -> Result<()> {
        self.control("rejoin", node).await
    }

    /// The id (1-3) of the active controller.
    pub async fn controller(&self) -> Result<u8> {
        let dir = self.dir.clone();
        let out = crate::read::off_runtime(move || run(&["controller".as_ref(), dir.as_os_str()]))
            .await?;
        out.trim()
            .parse()
            .map_err(|_| TestkitError::Broker(format!("no controller id in {out:?}")))
    }

    /// `SIGSTOP` of node `node`: its connections stay open and nothing is answered.
    pub async fn pause(&self, node: u8) -> Result<()> {
        self.control("pause", node).await
    }

    /// `SIGCONT` of node `node`.
    pub async fn unpause(&self, node: u8) -> Result<()> {
        self.control("unpause", node).await
    }

    async fn control(&self, verb: &'static str, node: u8) -> Result<()> {
        let dir = self.dir.clone();
        crate::read::off_runtime(move || {
            run(&[verb.as_ref(), dir.as_os_str(), node.to_string().as_ref()]).map(drop)
        })
        .await
    }
}

impl Drop for SecureCluster {
    fn drop(&mut self) {
        if let Some(own) = &self.own {
            let _ = run(&["stop".as_ref(), own.path().as_os_str()]);
        }
    }
}
