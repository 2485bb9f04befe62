//! Building and running the enricher: `Application::build(settings)`, then
//! `run_until_stopped()`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use tracing::{error, info, warn};
use voicehub_runtime::admin::AdminServer;
use voicehub_runtime::kafka::{self, RecoveringProducer};
use voicehub_runtime::permissions::TopicPermissions;
use voicehub_runtime::readiness::Readiness;
use voicehub_runtime::settings::{KafkaSettings, SettingsError};
pub use voicehub_runtime::shutdown::ShutdownTrigger;
use voicehub_runtime::{FaultHook, reload};

use crate::consumer_watch::BrokerWatch;
use crate::fetch;
use crate::metrics::EnricherMetrics;
use crate::pipeline::{Ended, InputConsumer, InputContext, OwnedConsumer, Pipeline, Worker};
use crate::settings::EnricherSettings;
use crate::sources::{KeyFile, SourceError, access, read_key_file};

/// The readiness check that passes while consuming.
pub const CONSUMING_CHECK: &str = "consuming";
/// The readiness check that passes while the Kafka cluster answers metadata requests.
pub const BROKER_CHECK: &str = "broker";
/// How often the broker is probed (and the longest a probe waits).
const PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// Probes unanswered in a row before the broker counts as unreachable.
const PROBE_FAILURES: u32 = 3;

/// Why the enricher could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Invalid settings.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// A source's API key or HTTP client could not be set up.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A Kafka client could not be created or subscribed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// Topics could not be created.
    #[error(transparent)]
    Provision(#[from] kafka::ProvisionError),
    /// The admin listener could not be bound.
    #[error("binding {address}: {error}")]
    Bind {
        address: String,
        /// The I/O error.
        #[source]
        error: std::io::Error,
    },
    /// Metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// A built enricher: subscribed, admin bound, not processing yet.
#[derive(Debug)]
pub struct Application {
    pipeline: Pipeline,
    consumers: Arc<ConsumerFactory>,
    /// Whether the cluster lets it use its topics.
    permissions: TopicPermissions,
    admin: AdminServer,
    readiness: Readiness,
    producer: Arc<RecoveringProducer<rdkafka::client::DefaultClientContext>>,
    drain_timeout: Duration,
    shutdown: ShutdownTrigger,
    key_files: Vec<KeyFile>,
    metrics: EnricherMetrics,
}

impl Application {
    /// Validates settings, loads API keys, provisions topics (if configured), creates the
    /// producer and the consumer, binds the admin server.
    pub async fn build(settings: EnricherSettings) -> Result<Self, StartupError> {
        settings.validate()?;
        let registry = voicehub_runtime::metrics::registry("enricher")?;
        let metrics = EnricherMetrics::register(&registry)?;
        let readiness = Readiness::new();
        readiness.register(CONSUMING_CHECK);
        readiness.register(BROKER_CHECK);

        let mut sources = HashMap::new();
        let mut key_files = Vec::new();
        let connect_timeout = Duration::from_millis(settings.fetch.connect_timeout_ms);
        for (name, source) in &settings.sources {
            let (access, key_file) = access(name, source, connect_timeout)?;
            sources.insert(name.clone(), access);
            key_files.extend(key_file);
        }

        let topics = settings.kafka.topics.clone();
        let own_topics = [
            topics.analysis_result_ready.as_str(),
            topics.analysis_enriched.as_str(),
            topics.dead_letter.as_str(),
        ];
        if settings.kafka.provision.create_topics {
            kafka::ensure_topics(&settings.kafka, &own_topics, Duration::from_secs(30)).await?;
        }
        let permissions = TopicPermissions::new(
            &settings.kafka,
            own_topics.map(str::to_owned).to_vec(),
            readiness.clone(),
            metrics.refused_topics.clone(),
        )?;

        // The producer's statistics feed nothing here (the consumer's feed the lag gauge);
        // off, rdkafka's default context would log all 5 KB of them at INFO every interval.
        let producer_settings = KafkaSettings {
            statistics_interval_ms: 0,
            ..settings.kafka.clone()
        };
        let producer = Arc::new(RecoveringProducer::new(&producer_settings, || {
            rdkafka::client::DefaultClientContext
        })?);

        let consumers = Arc::new(ConsumerFactory::new(
            &settings,
            metrics.clone(),
            topics.analysis_result_ready.clone(),
        ));
        let (consumer, revoked) = consumers.make()?;

        let admin = AdminServer::bind(&settings.admin.listen, registry, readiness.clone())
            .map_err(|error| StartupError::Bind {
                address: settings.admin.listen.clone(),
                error,
            })?;
        let pipeline = Pipeline {
            consumer,
            topic: topics.analysis_result_ready.clone(),
            worker: Arc::new(Worker {
                producer: producer.clone(),
                sources,
                topics,
                body_budget: fetch::BodyBudget::new(settings.fetch.max_in_flight_body_bytes),
                fetch: settings.fetch.clone(),
                retry: settings.retry.clone(),
                produce_deadline: settings.kafka.message_timeout() + Duration::from_secs(5),
                metrics: metrics.clone(),
                failures: voicehub_runtime::failure_log::FailureLog::default(),
                fault_hook: std::sync::OnceLock::new(),
            }),
            max_in_flight: settings.consumer.max_in_flight,
            max_backlog_bytes: settings.consumer.max_backlog_bytes,
            max_uncommitted_per_partition: settings.consumer.max_uncommitted_per_partition,
            drain_timeout: Duration::from_millis(settings.consumer.drain_timeout_ms),
            revoked,
            group: settings.consumer.group_id.clone(),
            readiness: readiness.clone(),
            refused_at_assignment: None,
        };
        info!(admin_port = admin.port(), "enricher subscribed");
        Ok(Self {
            pipeline,
            consumers,
            permissions,
            admin,
            readiness,
            producer,
            drain_timeout: Duration::from_millis(settings.consumer.drain_timeout_ms),
            shutdown: ShutdownTrigger::new(),
            key_files,
            metrics,
        })
    }

    pub fn admin_port(&self) -> u16 {
        self.admin.port()
    }

    /// Calls `hook` with every parsed input before its fetch, for fault-injection tests (a
    /// hook that panics stands for a bug on the record path). Only the first call counts.
    pub fn inject_fault(&self, hook: FaultHook) {
        let _ = self.pipeline.worker.fault_hook.set(hook);
    }

    /// The broker watch of the current input consumer, for fault-injection tests (a wedge
    /// is pretended through it; see [`crate::consumer_watch`]).
    pub fn consumer_broker_watch(&self) -> Arc<BrokerWatch> {
        self.consumers.current_watch()
    }

    /// A handle that starts the drain.
    pub fn shutdown_trigger(&self) -> ShutdownTrigger {
        self.shutdown.clone()
    }

    /// Processes records until the trigger fires, then drains: stops fetching, finishes or
    /// abandons in-flight records within the drain timeout, commits, flushes.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let admin_handle = self.admin.handle();
        let admin_task = tokio::spawn(self.admin.run());
        // Dropped (and so aborted) when the enricher stops.
        let mut background = tokio::task::JoinSet::new();
        // Awaited at the end, not aborted: its checks hold Kafka clients on blocking threads,
        // which would outlive an abort and keep connecting after the stop.
        let probe = tokio::spawn(probe_broker(
            self.producer.clone(),
            self.readiness.clone(),
            self.metrics.broker_reachable.clone(),
            self.permissions,
            self.shutdown.subscribe(),
        ));
        for key_file in self.key_files {
            let KeyFile {
                source,
                path,
                every,
                key,
            } = key_file;
            background.spawn(reload::reload_forever(
                "API key",
                source,
                every,
                self.metrics.api_key_reloads.clone(),
                self.metrics.api_key_reload_errors.clone(),
                move || read_key_file(&path).map(|fresh| key.replace(fresh)),
            ));
        }
        let mut pipeline = self.pipeline;
        self.readiness.set(CONSUMING_CHECK, true);
        while pipeline.run(self.shutdown.subscribe()).await == Ended::Wedged {
            self.readiness.set(CONSUMING_CHECK, false);
            self.metrics.consumer_rebuilds.inc();
            let mut stop = self.shutdown.subscribe();
            loop {
                // Stopped while the wedged one drained: no new consumer to join the group.
                if *stop.borrow() {
                    break;
                }
                match self.consumers.make() {
                    Ok((consumer, revoked)) => {
                        pipeline.replace_consumer(consumer, revoked);
                        break;
                    }
                    Err(error) => error!(
                        error = &error as &dyn std::error::Error,
                        "a new input consumer could not be made; trying again in 5 s"
                    ),
                }
                if tokio::time::timeout(Duration::from_secs(5), stop.wait_for(|stop| *stop))
                    .await
                    .is_ok()
                {
                    break;
                }
            }
            if *stop.borrow() {
                break;
            }
            info!("input consumer replaced");
            self.readiness.set(CONSUMING_CHECK, true);
        }
        self.readiness.set(CONSUMING_CHECK, false);
        let _ = probe.await;
        let producer = self.producer.producer();
        let flush_timeout = self.drain_timeout;
        let flushed = tokio::task::spawn_blocking(move || {
            use rdkafka::producer::Producer;
            producer.flush(flush_timeout)
        })
        .await;
        if !matches!(flushed, Ok(Ok(()))) {
            warn!("producer flush incomplete");
        }
        admin_handle.stop(true).await;
        let _ = admin_task.await;
        info!("enricher stopped");
        Ok(())
    }
}

/// Makes the input consumer: at startup, and again when one is wedged.
#[derive(Debug)]
struct ConsumerFactory {
    config: rdkafka::ClientConfig,
    metrics: EnricherMetrics,
    topic: String,
    /// The watch of the consumer made last.
    current: std::sync::Mutex<Arc<BrokerWatch>>,
}

impl ConsumerFactory {
    fn new(settings: &EnricherSettings, metrics: EnricherMetrics, topic: String) -> Self {
        let mut config = kafka::client_config(&settings.kafka);
        let consumer = &settings.consumer;
        config
            .set("group.id", &consumer.group_id)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.commit.interval.ms",
                consumer.commit_interval_ms.to_string(),
            )
            .set("auto.offset.reset", "earliest")
            .set(
                "queued.max.messages.kbytes",
                (consumer.max_backlog_bytes / 2 / 1024).max(1).to_string(),
            )
            .set(
                "session.timeout.ms",
                consumer.session_timeout_ms.to_string(),
            )
            .set(
                "max.poll.interval.ms",
                consumer.max_poll_interval_ms.to_string(),
            )
            .set(
                "statistics.interval.ms",
                settings.kafka.statistics_interval_ms.to_string(),
            );
        Self {
            config,
            metrics,
            topic,
            current: std::sync::Mutex::new(Arc::default()),
        }
    }

    /// A new consumer, subscribed, and the receiver of its revocations.
    fn make(
        &self,
    ) -> Result<
        (
            OwnedConsumer,
            tokio::sync::mpsc::UnboundedReceiver<(i32, u64)>,
        ),
        rdkafka::error::KafkaError,
    > {
        let (revoked_tx, revoked) = tokio::sync::mpsc::unbounded_channel();
        let brokers = Arc::new(BrokerWatch::default());
        let consumer: InputConsumer = self
            .config
            .create_with_context(InputContext {
                metrics: self.metrics.clone(),
                topic: self.topic.clone(),
                revoked: revoked_tx,
                revocations: std::sync::atomic::AtomicU64::new(0),
                brokers: brokers.clone(),
                assignments: std::sync::atomic::AtomicU64::new(0),
            })
            .map_err(kafka::redacted)?;
        consumer.subscribe(&[&self.topic])?;
        *self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = brokers;
        Ok((OwnedConsumer::new(consumer), revoked))
    }

    fn current_watch(&self) -> Arc<BrokerWatch> {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// First, then as the last answer says, whether the cluster lets the enricher use its
/// topics. Every [`PROBE_INTERVAL`], asks the cluster for metadata: readiness (`broker`) and
/// `voicehub_enricher_broker_reachable` follow the answers: reachable at the first answer,
/// unreachable after [`PROBE_FAILURES`] unanswered in a row (one slow answer is not an outage).
async fn probe_broker(
    producer: Arc<RecoveringProducer<rdkafka::client::DefaultClientContext>>,
    readiness: Readiness,
    reachable: prometheus::IntGauge,
    permissions: TopicPermissions,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(PROBE_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = PROBE_FAILURES;
    let mut next_permissions = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        if tokio::time::Instant::now() >= next_permissions
            && let Some(next) = permissions.check(PROBE_INTERVAL).await
        {
            next_permissions = tokio::time::Instant::now() + next;
        }
        failures = if producer.reachable(PROBE_INTERVAL).await {
            0
        } else {
            failures.saturating_add(1)
        };
        let up = failures < PROBE_FAILURES;
        reachable.set(i64::from(up));
        if readiness.set(BROKER_CHECK, up) {
            if up {
                info!(check = BROKER_CHECK, "broker reachable");
            } else {
                warn!(check = BROKER_CHECK, "broker unreachable: not ready");
            }
        }
    }
}
