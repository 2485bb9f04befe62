use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::types::RDKafkaErrorCode;
use tansu_broker::broker::Broker;
use tansu_broker::coordinator::group::administrator::Controller;
use tansu_storage::StorageContainer;
use tokio::task::JoinHandle;
use url::Url;

use crate::kafka::{KAFKA_ENV, Kafka};
use crate::secure::{Auth, SecureCluster};
use crate::{Result, TestkitError, free_port};

type Tansu = Broker<Controller<StorageContainer>, StorageContainer>;

/// Where the embedded broker keeps its data.
///
/// Each of tansu 0.6's engines has a flaw a test can trip over, so tests pick:
/// - [`Storage::Sqlite`] (the default): correct offsets and watermarks, but an idempotent
///   producer's epoch bump (after a record timed out inside librdkafka) hits a `todo!()` in
///   tansu and can leave the broker unable to write.
/// - [`Storage::Memory`]: answers an epoch bump by fencing the producer (a clean fatal error),
///   but can report a high watermark short of the last records written until the next write
///   to the partition, so "read everything" can miss the tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Storage {
    /// SQLite in a temporary directory.
    #[default]
    Sqlite,
    /// In memory.
    Memory,
}

/// An embedded tansu broker on 127.0.0.1. Its data survives [`TestBroker::stop`] and
/// [`TestBroker::resume`]; it is stopped (and its files deleted) when dropped.
///
/// [`TestBroker::kafka`] is Apache Kafka instead (see [`crate::kafka`]), for tests at volume.
#[derive(Debug)]
pub struct TestBroker {
    port: u16,
    /// `None` for Apache Kafka.
    broker: Option<Tansu>,
    storage: Url,
    /// The serving task; it ends with the broker's error, if any.
    task: Option<JoinHandle<Result<(), String>>>,
    _data: Option<tempfile::TempDir>,
    /// Set for Apache Kafka: the tansu fields are then unused.
    kafka: Option<Kafka>,
    /// Set for the secured cluster (the tansu fields are then unused): this broker's own
    /// clients are its admin user's.
    secure: Option<SecureCluster>,
    /// Appended to the names [`Self::topics`] and [`Self::name`] give: unique on a broker the
    /// test run shares, empty on one of this test's own.
    namespace: String,
}

impl TestBroker {
    /// The test run's broker: Apache Kafka shared by the whole run when `VOICEHUB_TEST_KAFKA`
    /// names one (`tests/run.sh` starts it), else an embedded tansu broker of this test's own
    /// (SQLite). Tests take their topic and group names from [`Self::topics`] and
    /// [`Self::name`], which keep them apart on a shared broker. A shared broker cannot be
    /// stopped: outage tests use [`Self::start_stoppable`].
    pub async fn start() -> Result<Self> {
        if std::env::var_os(KAFKA_ENV).is_some() {
            Self::kafka().await
        } else {
            Self::start_with(Storage::Sqlite).await
        }
    }

    /// A broker for this test alone, which it may [`Self::stop`] and [`Self::resume`]: Apache
    /// Kafka started for it when the test run uses Kafka (`VOICEHUB_TEST_KAFKA`), else
    /// embedded tansu (SQLite).
    pub async fn start_stoppable() -> Result<Self> {
        if std::env::var_os(KAFKA_ENV).is_some() {
            Self::kafka_of_its_own().await
        } else {
            Self::start_with(Storage::Sqlite).await
        }
    }

    /// Whether this is Apache Kafka (else embedded tansu).
    pub fn is_kafka(&self) -> bool {
        self.kafka.is_some() || self.secure.is_some()
    }

    /// The topics of this test: the default names, made unique on a shared broker.
    pub fn topics(&self) -> voicehub_model::Topics {
        voicehub_model::Topics::default().with_suffix(&self.namespace)
    }

    /// `base` made unique on a shared broker (a topic or consumer group of this test's).
    pub fn name(&self, base: &str) -> String {
        format!("{base}{}", self.namespace)
    }

    /// Starts a broker with the given storage on a free port.
    pub async fn start_with(storage: Storage) -> Result<Self> {
        Self::start_on(free_port()?, storage).await
    }

    /// Starts a broker with the given storage on `port` of 127.0.0.1.
    pub async fn start_on(port: u16, storage: Storage) -> Result<Self> {
        let (storage_url, data) = match storage {
            Storage::Sqlite => {
                let (url, dir) = sqlite_storage()?;
                (url, Some(dir))
            }
            Storage::Memory => ("memory://tansu/".to_owned(), None),
        };
        let storage_url =
            Url::parse(&storage_url).map_err(|e| TestkitError::Broker(e.to_string()))?;
        let mut this = Self {
            port,
            broker: Some(build(port, &storage_url).await?),
            storage: storage_url,
            task: None,
            _data: data,
            kafka: None,
            secure: None,
            namespace: String::new(),
        };
        this.resume().await?;
        Ok(this)
    }

    /// Apache Kafka: the test run's (`VOICEHUB_TEST_KAFKA`), or one started for this test.
    pub async fn kafka() -> Result<Self> {
        Self::with_kafka(Kafka::shared_or_started).await
    }

    /// Apache Kafka started for this test alone, whatever `VOICEHUB_TEST_KAFKA` says: one it
    /// may stop or freeze without disturbing other tests.
    pub async fn kafka_of_its_own() -> Result<Self> {
        Self::with_kafka(Kafka::started).await
    }

    async fn with_kafka(start: fn() -> Result<Kafka>) -> Result<Self> {
        let kafka = tokio::task::spawn_blocking(start)
            .await
            .map_err(|e| TestkitError::Broker(format!("starting Kafka: {e}")))??;
        let unique = kafka.is_shared();
        Self::external("kafka://external/", Some(kafka), None, unique)
    }

    /// A broker not in this process: Apache Kafka or the secured cluster. `unique`: its names
    /// get a suffix of this test's (a broker the run shares).
    fn external(
        storage: &str,
        kafka: Option<Kafka>,
        secure: Option<SecureCluster>,
        unique: bool,
    ) -> Result<Self> {
        let storage = Url::parse(storage).map_err(|e| TestkitError::Broker(e.to_string()))?;
        let namespace = if unique {
            format!(".t{}", uuid::Uuid::new_v4().simple())
        } else {
            String::new()
        };
        Ok(Self {
            port: 0,
            broker: None,
            storage,
            task: None,
            _data: None,
            kafka,
            secure,
            namespace,
        })
    }

    /// The secured three-node cluster (see [`crate::secure`]): the test run's
    /// (`VOICEHUB_TEST_SECURE_KAFKA`), or one started for this test. Topics are created with
    /// replication 3; reading back and topic creation authenticate as its admin user.
    pub async fn secure() -> Result<Self> {
        let cluster = tokio::task::spawn_blocking(SecureCluster::shared_or_started)
            .await
            .map_err(|e| TestkitError::Broker(format!("starting the secured cluster: {e}")))??;
        Self::external("kafka://secure/", None, Some(cluster), true)
    }

    /// The secured cluster, for [`TestBroker::secure`].
    pub fn secure_cluster(&self) -> Option<&SecureCluster> {
        self.secure.as_ref()
    }

    /// Apache Kafka started by this test: freezes the broker process (`SIGSTOP`), an outage
    /// in which connections stay open and go unanswered. [`Self::thaw`] ends it.
    pub fn freeze(&self) -> Result<()> {
        self.own_kafka()?.signal("STOP")
    }

    /// Ends [`Self::freeze`] (`SIGCONT`).
    pub fn thaw(&self) -> Result<()> {
        self.own_kafka()?.signal("CONT")
    }

    fn own_kafka(&self) -> Result<&Kafka> {
        self.kafka
            .as_ref()
            .ok_or_else(|| TestkitError::Broker("only Apache Kafka can be frozen".into()))
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> String {
        match (&self.kafka, &self.secure) {
            (Some(kafka), _) => kafka.bootstrap.clone(),
            (None, Some(secure)) => secure.bootstrap(Auth::Scram).unwrap_or_default(),
            (None, None) => format!("127.0.0.1:{}", self.port),
        }
    }

    /// Whether the broker is serving.
    pub fn is_running(&self) -> bool {
        self.kafka.is_some()
            || self.secure.is_some()
            || self.task.as_ref().is_some_and(|task| !task.is_finished())
    }

    /// Stops serving: the port is closed and every connection dropped; the data is kept.
    /// Apache Kafka (started by this test) is killed (`SIGKILL`, a crash: what it
    /// acknowledged is in its log directory). Panics on a broker the test run shares.
    pub async fn stop(&mut self) {
        if let Some(kafka) = &self.kafka {
            if let Err(error) = kafka.control("kill").await {
                panic!("{error}");
            }
            return;
        }
        if let Some(task) = self.task.take() {
            task.abort();
            // Aborting drops the listener and the connection tasks; wait until it has.
            let _ = task.await;
        }
    }

    /// Serves again on the same port, with the data it had when stopped. A broker that stops
    /// again at once (its error is in the message) is started up to twice more, rebuilt on the
    /// same SQLite file, before this gives up: the whole-system tests bounce it under load,
    /// and a restart that fails is the test kit's problem, not the bridge's.
    pub async fn resume(&mut self) -> Result<()> {
        if let Some(kafka) = &self.kafka {
            return kafka.control("resume").await;
        }
        if self.is_running() {
            return Ok(());
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            // Another process on the port would answer the readiness probe below in our place.
            std::net::TcpListener::bind(("127.0.0.1", self.port)).map_err(|e| {
                TestkitError::Broker(format!("cannot listen on 127.0.0.1:{}: {e}", self.port))
            })?;
            let Some(mut broker) = self.broker.clone() else {
                return Err(TestkitError::Broker("no embedded broker".into()));
            };
            self.task = Some(tokio::spawn(async move {
                broker
                    .serve(tokio::time::Instant::now())
                    .await
                    .map_err(|error| {
                        tracing::error!(?error, "embedded broker stopped");
                        format!("{error:?}")
                    })
            }));
            match self.wait_until_accepting().await {
                Err(error) if attempt < 3 && self.task.is_none() => {
                    eprintln!("testkit: embedded broker did not come back ({error}); again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    // tansu's storage task can be gone for good (`Storage(UnableToSend)`, after
                    // a panic in it): a new broker on the same SQLite file has the same data.
                    if self.storage.scheme() == "sqlite" {
                        self.broker = Some(build(self.port, &self.storage).await?);
                    }
                }
                outcome => return outcome,
            }
        }
    }

    async fn wait_until_accepting(&mut self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if !self.is_running() {
                // Say why: the broker's own error, or its panic.
                let why = match self.task.take() {
                    Some(task) => match task.await {
                        Ok(Ok(())) => "it stopped serving".to_owned(),
                        Ok(Err(error)) => error,
                        Err(join) => format!("it panicked: {join}"),
                    },
                    None => "it was not started".to_owned(),
                };
                return Err(TestkitError::Broker(format!(
                    "not accepting connections on port {}: {why}",
                    self.port
                )));
            }
            if tokio::time::Instant::now() > deadline {
                return Err(TestkitError::Broker(format!(
                    "not accepting connections on port {} within 10 s",
                    self.port
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A client configuration pointing at this broker.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.bootstrap_servers());
        if let Some(secure) = &self.secure {
            // The cluster was made with an admin user: a missing one is a broken test setup.
            for (name, value) in secure
                .client_properties("admin", Auth::Scram)
                .unwrap_or_default()
            {
                config.set(name, value);
            }
        }
        config
    }

    /// Creates topics (an existing topic is not an error).
    pub async fn create_topics(&self, names: &[&str], partitions: i32) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = self.client_config().create()?;
        let replication = if self.secure.is_some() { 3 } else { 1 };
        let topics: Vec<NewTopic<'_>> = names
            .iter()
            .map(|name| NewTopic::new(name, partitions, TopicReplication::Fixed(replication)))
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        for result in admin.create_topics(&topics, &options).await? {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(TestkitError::CreateTopic {
                        topic,
                        detail: code.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// A consumer in `group` subscribed to `topics`, reading from the earliest offset, with
    /// short group timeouts (a fresh group joins in about 3 s instead of about 23 s).
    pub fn group_consumer(&self, group: &str, topics: &[&str]) -> Result<StreamConsumer> {
        let consumer: StreamConsumer = self
            .client_config()
            .set("group.id", group)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "6000")
            .set("max.poll.interval.ms", "7000")
            .create()?;
        consumer.subscribe(topics)?;
        Ok(consumer)
    }
}

/// A SQLite storage URL and the directory it lives in. tansu resolves the URL's path against
/// the working directory, so the directory is made there (ignored by git, deleted on drop).
async fn build(port: u16, storage: &Url) -> Result<Tansu> {
    let url = Url::parse(&format!("tcp://127.0.0.1:{port}"))
        .map_err(|e| TestkitError::Broker(e.to_string()))?;
    Tansu::builder()
        .node_id(1)
        .cluster_id("voicehub-test")
        .incarnation_id(uuid::Uuid::new_v4())
        .advertised_listener(url.clone())
        .storage(storage.clone())
        .listener(url)
        .silent(true)
        .build()
        .await
        .map_err(|e| TestkitError::Broker(format!("{e:?}")))
}

fn sqlite_storage() -> Result<(String, tempfile::TempDir)> {
    let dir = tempfile::Builder::new()
        .prefix(".tansu-test-")
        .tempdir_in(std::env::current_dir()?)?;
    let name = dir
        .path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok((format!("sqlite:///{name}/tansu.db"), dir))
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is a failure report

    use rdkafka::producer::{FutureProducer, FutureRecord};

    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn a_broker_rebuilt_on_its_sqlite_file_serves_the_same_records() {
        let mut broker = TestBroker::start_with(Storage::Sqlite).await.unwrap();
        broker.create_topics(&["t"], 1).await.unwrap();
        let producer: FutureProducer = broker.client_config().create().unwrap();
        for value in ["a", "b"] {
            producer
                .send(
                    FutureRecord::<str, str>::to("t").payload(value),
                    Duration::from_secs(5),
                )
                .await
                .unwrap();
        }
        drop(producer);

        broker.stop().await;
        broker.broker = Some(build(broker.port, &broker.storage).await.unwrap());
        broker.resume().await.unwrap();

        let values: Vec<Vec<u8>> = broker
            .read_all("t")
            .await
            .unwrap()
            .into_iter()
            .map(|record| record.value)
            .collect();
        assert_eq!(values, [b"a".to_vec(), b"b".to_vec()]);
    }
}
