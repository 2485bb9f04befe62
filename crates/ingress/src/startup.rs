//! Building and running the ingress: `Application::build(settings)`, then
//! `run_until_stopped()`.

use std::collections::HashMap;
use std::net::{TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use tokio::sync::Semaphore;
use tracing::{error, info, warn};
use voicehub_runtime::admin::AdminServer;
use voicehub_runtime::permissions::TopicPermissions;
use voicehub_runtime::readiness::Readiness;
use voicehub_runtime::settings::SettingsError;
pub use voicehub_runtime::shutdown::ShutdownTrigger;
use voicehub_runtime::{FaultHook, kafka, reload};

use crate::auth::{SecretError, SourceSecrets};
use crate::body_budget::BodyBudget;
use crate::dedupe::Dedupe;
use crate::error::Outcome;
use crate::forwarder::Forwarder;
use crate::metrics::IngressMetrics;
use crate::outbox::{Outbox, Spooling};
use crate::publisher::Publisher;
use crate::routes::{self, AppState, Source};
use crate::settings::{IngressSettings, SpoolMode};
use crate::spool_upkeep;

/// The readiness check that fails while draining.
pub const ACCEPTING_CHECK: &str = "accepting";
pub use crate::spool_upkeep::SPOOL_CHECK;
/// With the spool on: how long one attempt to create the topics may take, and the pause
/// between attempts while the broker is away (they are created in the background).
const PROVISION_RETRY: Duration = Duration::from_secs(5);
/// How often the broker is probed for readiness.
const PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// Why the ingress could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Invalid settings.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// A secret could not be loaded.
    #[error("sources.{source_name}: {error}")]
    Secret {
        /// The source.
        source_name: String,
        /// What failed.
        #[source]
        error: SecretError,
    },
    /// The Kafka producer could not be created.
    #[error("kafka producer: {0}")]
    Producer(#[from] rdkafka::error::KafkaError),
    /// Topics could not be created.
    #[error(transparent)]
    Provision(#[from] kafka::ProvisionError),
    /// A listener could not be bound.
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
    /// The spool could not be opened.
    #[error("spool.dir: {0}")]
    Spool(#[from] voicehub_spool::SpoolError),
}

/// A built ingress: listeners bound, producer created, not serving yet.
pub struct Application {
    port: u16,
    server: Server,
    admin: AdminServer,
    state: web::Data<AppState>,
    readiness: Readiness,
    settings: IngressSettings,
    shutdown: ShutdownTrigger,
    provision_later: bool,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .field("admin_port", &self.admin.port())
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Validates the settings, loads secrets, provisions topics (if configured), creates the
    /// producer and binds both listeners. Every failure here is a startup error naming its
    /// cause.
    pub async fn build(settings: IngressSettings) -> Result<Self, StartupError> {
        settings.validate()?;
        let registry = voicehub_runtime::metrics::registry("ingress")?;
        let metrics = IngressMetrics::register(&registry)?;
        let readiness = Readiness::new();
        readiness.register(ACCEPTING_CHECK);

        let mut sources = HashMap::new();
        for (name, source) in &settings.sources {
            let secrets = SourceSecrets::load(source).map_err(|error| StartupError::Secret {
                source_name: name.clone(),
                error,
            })?;
            sources.insert(
                name.clone(),
                Source {
                    secrets,
                    metrics: metrics.source(name),
                },
            );
        }

        let spool_mode = settings.spool.mode;
        let create_topics = settings.kafka.provision.create_topics;
        // With the spool on, an instance must start during a Kafka outage: topics are created
        // in the background (the forwarder's records wait for them in the producer).
        let provision_later = create_topics && spool_mode != SpoolMode::Off;
        if create_topics && !provision_later {
            let names = topics_to_provision(&settings);
            kafka::ensure_topics(&settings.kafka, &names, Duration::from_secs(30)).await?;
        }

        metrics
            .spool
            .mode
            .with_label_values(&[spool_mode.as_str()])
            .set(1);
        let publisher = Publisher::new(
            &settings.kafka,
            settings.http.produce_deadline(),
            (spool_mode == SpoolMode::Off).then(|| readiness.clone()),
            metrics.clone(),
        )?;
        let spooling = match spool_mode {
            SpoolMode::Off => None,
            mode => {
                readiness.register(SPOOL_CHECK);
                Some(Spooling {
                    state: spool_upkeep::open(&settings, &metrics)?,
                    fallback_after: (mode == SpoolMode::Fallback)
                        .then(|| settings.spool.fallback_after()),
                    max_record_bytes: settings.kafka.message_max_bytes(),
                })
            }
        };
        let outbox = Outbox::new(publisher, spooling);

        let unknown_source = metrics.requests_of("unknown");
        // At 0 from the start: what an unknown source gets is a series an alert can rate.
        unknown_source.touch(None, Outcome::UnknownSource);
        let state = web::Data::new(AppState {
            sources,
            unknown_source,
            topics: settings.kafka.topics.clone(),
            outbox,
            dedupe: Arc::new(Dedupe::new(
                Duration::from_secs(settings.dedupe.window_s),
                settings.dedupe.max_entries,
            )),
            in_flight: Semaphore::new(settings.http.max_in_flight),
            body_budget: BodyBudget::new(
                settings.http.max_in_flight_body_bytes,
                metrics.body_bytes_reserved.clone(),
            ),
            body_budget_wait: settings.http.body_budget_wait(),
            draining: AtomicBool::new(false),
            metrics,
            max_body_bytes: settings.http.max_body_bytes,
            body_timeout: settings.http.body_timeout(),
            retry_after_s: settings.http.retry_after_s,
            fault_hook: std::sync::OnceLock::new(),
        });

        let listener =
            bind(&settings.http.listen, settings.http.listen_backlog).map_err(|error| {
                StartupError::Bind {
                    address: settings.http.listen.clone(),
                    error,
                }
            })?;
        let port = listener
            .local_addr()
            .map_err(|error| StartupError::Bind {
                address: settings.http.listen.clone(),
                error,
            })?
            .port();
        let server = http_server(listener, state.clone(), &settings).map_err(|error| {
            StartupError::Bind {
                address: settings.http.listen.clone(),
                error,
            }
        })?;
        let admin = AdminServer::bind(&settings.admin.listen, registry, readiness.clone())
            .map_err(|error| StartupError::Bind {
                address: settings.admin.listen.clone(),
                error,
            })?;
        info!(port, admin_port = admin.port(), "ingress listening");

        Ok(Self {
            port,
            server,
            admin,
            state,
            readiness,
            settings,
            shutdown: ShutdownTrigger::new(),
            provision_later,
        })
    }

    /// The webhook port.
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn admin_port(&self) -> u16 {
        self.admin.port()
    }

    /// Calls `hook` with every parsed event before it is stored, for fault-injection tests (a
    /// hook that panics stands for a bug on the request path). Only the first call counts.
    pub fn inject_fault(&self, hook: FaultHook) {
        let _ = self.state.fault_hook.set(hook);
    }

    /// A handle that starts the drain.
    pub fn shutdown_trigger(&self) -> ShutdownTrigger {
        self.shutdown.clone()
    }

    /// Serves until the shutdown trigger fires, then drains: readiness false, new requests
    /// 503, in-flight requests finish, the producer is flushed, all within
    /// `http.drain_timeout_ms`.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Self {
            server,
            admin,
            state,
            readiness,
            settings,
            shutdown,
            provision_later,
            ..
        } = self;
        let http = server.handle();
        let admin_handle = admin.handle();
        let mut server_task = tokio::spawn(server);
        let admin_task = tokio::spawn(admin.run());
        let mut background = tokio::task::JoinSet::new();
        let topics = topics_to_provision(&settings)
            .into_iter()
            .map(str::to_owned)
            .collect();
        let permissions = match TopicPermissions::new(
            &settings.kafka,
            topics,
            readiness.clone(),
            state.metrics.refused_topics.clone(),
        ) {
            Ok(permissions) => Some(permissions),
            Err(error) => {
                // The producer was made with the same properties: not expected.
                error!(
                    error = &error as &dyn std::error::Error,
                    "no client to check topic permissions with; not checking them"
                );
                None
            }
        };
        // Awaited at the end, not aborted: its checks hold Kafka clients on blocking threads,
        // which would outlive an abort and keep connecting after the stop.
        let probe = tokio::spawn(probe_broker(
            state.clone(),
            permissions,
            shutdown.subscribe(),
        ));
        if provision_later {
            background.spawn(provision_until_done(settings.clone()));
        }
        let mut forwarder = None;
        if let Some(spool) = state.outbox.spool() {
            background.spawn(spool_upkeep::run(spool.clone(), readiness.clone()));
            background.spawn(spool_upkeep::age_set_aside(
                spool.clone(),
                settings.spool.undeliverable_retention(),
            ));
            forwarder = Some(tokio::spawn(
                Forwarder {
                    spool: spool.clone(),
                    publisher: state.outbox.publisher().clone(),
                    window: settings.spool.forward_window,
                    window_bytes: settings.spool.forward_window_bytes,
                }
                .run(),
            ));
        }
        for (name, source) in &settings.sources {
            let configured = state.sources.get(name);
            if let Some(secrets) = configured.map(|c| &c.secrets).filter(|s| s.has_files()) {
                let secrets = secrets.clone();
                let disabled = state
                    .metrics
                    .secret_files_disabled
                    .with_label_values(&[name]);
                background.spawn(reload::reload_forever(
                    "webhook secrets",
                    name.clone(),
                    Duration::from_millis(source.secret_reload_ms),
                    state.metrics.secret_reloads.clone(),
                    state.metrics.secret_reload_errors.clone(),
                    move || {
                        let reloaded = secrets.reload();
                        disabled.set(i64::try_from(secrets.disabled()).unwrap_or(i64::MAX));
                        reloaded
                    },
                ));
            }
        }
        readiness.set(ACCEPTING_CHECK, true);

        let mut stop = shutdown.subscribe();
        let server_result = tokio::select! {
            _ = stop.wait_for(|stop| *stop) => None,
            result = &mut server_task => Some(result),
        };
        if let Some(result) = server_result {
            error!("webhook server stopped by itself");
            background.abort_all();
            probe.abort();
            if let Some(forwarder) = forwarder {
                forwarder.abort();
            }
            admin_handle.stop(false).await;
            return result.unwrap_or_else(|e| Err(std::io::Error::other(e)));
        }

        let drain_started = Instant::now();
        let drain_timeout = settings.http.drain_timeout();
        info!(?drain_timeout, "draining");
        state.draining.store(true, Ordering::Release);
        readiness.set(ACCEPTING_CHECK, false);
        // Graceful: stop accepting, let in-flight requests finish (bounded by the server's
        // shutdown timeout, set to the drain timeout).
        http.stop(true).await;
        let _ = server_task.await;
        if let (Some(spool), Some(forwarder)) = (state.outbox.spool(), forwarder) {
            spool_upkeep::drain(spool, forwarder, drain_started + drain_timeout).await;
        }
        let remaining = drain_timeout.saturating_sub(drain_started.elapsed());
        if let Err(error) = state.outbox.publisher().flush(remaining).await {
            warn!(
                error = &error as &dyn std::error::Error,
                "producer flush incomplete"
            );
        }
        // Waits until the tasks are gone, and the blocking reads and watermark writes they
        // started, so that the spool's directory lock is released when this returns (a
        // successor may open it; bounded: a stuck disk must not stall the exit).
        background.shutdown().await;
        let _ = probe.await;
        if let Some(spool) = state.outbox.spool() {
            let deadline = Instant::now() + Duration::from_secs(2);
            while spool.spool.handles() > 1 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        admin_handle.stop(true).await;
        let _ = admin_task.await;
        info!(elapsed = ?drain_started.elapsed(), "drained");
        Ok(())
    }
}

/// Binds the webhook listener with `backlog` pending connections (std's `TcpListener::bind`
/// always asks for 128, which a burst above `http.max_connections` overflows into SYN retries).
fn bind(address: &str, backlog: usize) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let address = address.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "resolves to no address")
    })?;
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, None)?;
    // As std does: a restarted ingress can bind while old connections are in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    // Validated to at most MAX_LISTEN_BACKLOG, so it fits.
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

fn http_server(
    listener: TcpListener,
    state: web::Data<AppState>,
    settings: &IngressSettings,
) -> std::io::Result<Server> {
    let http = &settings.http;
    let workers = match http.workers {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        workers => workers,
    };
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap_fn(|mut request, service| {
                copy_header_values(request.headers_mut());
                actix_web::dev::Service::call(service, request)
            })
            .route(
                "/webhooks/voicehub",
                web::post().to(routes::webhook_default),
            )
            .route(
                "/webhooks/voicehub/{source}",
                web::post().to(routes::webhook),
            )
            .default_service(web::to(routes::not_found))
    })
    .disable_signals()
    .shutdown_timeout(http.drain_timeout().as_secs().max(1))
    .workers(workers)
    .max_connections(http.max_connections.div_ceil(workers))
    .keep_alive(Duration::from_secs(http.keep_alive_s))
    .client_request_timeout(http.head_timeout())
    .listen(listener)?;
    Ok(server.run())
}

/// Gives each header value an allocation of its own. actix-web parses header values as slices
/// of the connection's read buffer (up to 128 KiB once a body streams in behind the head) and
/// keeps a finished request's head in its per-worker request pool until the slot is reused, so
/// without the copy a burst of large webhooks left those buffers held, idle, after their
/// connections closed: 229 to 333 of them (31 to 45 MB) in the burst of docs/benchmarks.md,
/// none with it. The copy costs a few dozen bytes per header.
fn copy_header_values(headers: &mut actix_web::http::header::HeaderMap) {
    use actix_web::http::header::HeaderValue;
    headers.retain(|_, value| {
        if let Ok(copy) = HeaderValue::from_bytes(value.as_bytes()) {
            *value = copy;
        }
        true
    });
}

/// Every [`PROBE_INTERVAL`] the broker's health, and (first, then as the last answer says)
/// whether the cluster lets the ingress use its topics.
async fn probe_broker(
    state: web::Data<AppState>,
    permissions: Option<TopicPermissions>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(PROBE_INTERVAL);
    let mut next_permissions = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        if let Some(permissions) = &permissions
            && tokio::time::Instant::now() >= next_permissions
            && let Some(next) = permissions.check(PROBE_INTERVAL).await
        {
            next_permissions = tokio::time::Instant::now() + next;
        }
        state.outbox.publisher().probe(PROBE_INTERVAL).await;
    }
}

/// The topics the ingress writes.
fn topics_to_provision(settings: &IngressSettings) -> Vec<&str> {
    settings
        .kafka
        .topics
        .all()
        .into_iter()
        .filter(|(key, _)| *key != "analysis_enriched")
        .map(|(_, name)| name)
        .collect()
}

async fn provision_until_done(settings: IngressSettings) {
    let names = topics_to_provision(&settings);
    loop {
        match kafka::ensure_topics(&settings.kafka, &names, PROVISION_RETRY).await {
            Ok(()) => return,
            Err(error) => warn!(
                error = &error as &dyn std::error::Error,
                "topics not created yet; retrying"
            ),
        }
        tokio::time::sleep(PROVISION_RETRY).await;
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpStream;

    use super::*;

    #[test]
    fn the_listener_holds_its_whole_backlog_of_unaccepted_connections() {
        // std's TcpListener::bind holds 128: the 130th connection would wait for a SYN retry.
        // The kernel caps a backlog at net.core.somaxconn (4096 on current kernels).
        let cap: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let backlog = cap.min(600);
        assert!(
            backlog > 129,
            "net.core.somaxconn {cap} leaves nothing to show"
        );
        let listener = bind("127.0.0.1:0", backlog).unwrap();
        let address = listener.local_addr().unwrap();
        let connected: Vec<TcpStream> = (0..backlog)
            .map(|i| {
                TcpStream::connect_timeout(&address, Duration::from_millis(500))
                    .unwrap_or_else(|error| panic!("connection {i}: {error}"))
            })
            .collect();
        assert_eq!(connected.len(), backlog);
    }
}
