//! The admin HTTP server, on its own port: `/metrics`, `/livez`, `/readyz`.

use std::net::TcpListener;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpResponse, HttpServer, web};
use prometheus::{IntGauge, Registry};
use serde::Serialize;
use tracing::{error, info};

use crate::readiness::Readiness;

#[derive(Debug, Clone)]
struct State {
    registry: Registry,
    readiness: Readiness,
    ready: IntGauge,
}

/// A bound, not yet running, admin server.
pub struct AdminServer {
    port: u16,
    server: Server,
}

impl std::fmt::Debug for AdminServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminServer")
            .field("port", &self.port)
            .finish()
    }
}

#[derive(Serialize)]
struct Status<'a> {
    status: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    failing: &'a [&'a str],
}

impl AdminServer {
    /// Binds `listen` (`host:port`; port 0 picks a free one), and adds `voicehub_ready` (what
    /// `/readyz` would answer, as 1 or 0, at each scrape) to `registry`.
    pub fn bind(listen: &str, registry: Registry, readiness: Readiness) -> std::io::Result<Self> {
        let ready = IntGauge::new(
            "voicehub_ready",
            "1 when every readiness check passes (what /readyz answers), else 0.",
        )
        .and_then(|gauge| crate::metrics::registered(&registry, gauge))
        .map_err(std::io::Error::other)?;
        let listener = TcpListener::bind(listen)?;
        let port = listener.local_addr()?.port();
        let state = State {
            registry,
            readiness,
            ready,
        };
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(state.clone()))
                .route("/metrics", web::get().to(metrics))
                .route("/livez", web::get().to(livez))
                .route("/readyz", web::get().to(readyz))
        })
        .workers(1)
        // The service owns signal handling and stops this server through its handle.
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)?
        .run();
        info!(port, "admin server listening");
        Ok(Self { port, server })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle to stop it.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped through [`AdminServer::handle`].
    pub async fn run(self) -> std::io::Result<()> {
        self.server.await
    }
}

async fn metrics(state: web::Data<State>) -> HttpResponse {
    state.ready.set(i64::from(state.readiness.is_ready()));
    match crate::metrics::encode(&state.registry) {
        Ok(text) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(text),
        Err(error) => {
            error!(error = &error as &dyn std::error::Error, "encoding metrics");
            HttpResponse::InternalServerError().finish()
        }
    }
}

async fn livez() -> HttpResponse {
    HttpResponse::Ok().json(Status {
        status: "alive",
        failing: &[],
    })
}

async fn readyz(state: web::Data<State>) -> HttpResponse {
    let failing = state.readiness.failing();
    if failing.is_empty() {
        HttpResponse::Ok().json(Status {
            status: "ready",
            failing: &[],
        })
    } else {
        HttpResponse::ServiceUnavailable().json(Status {
            status: "not_ready",
            failing: &failing,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_requires_every_registered_check() {
        let readiness = Readiness::new();
        assert!(readiness.is_ready());
        readiness.register("broker");
        readiness.register("draining");
        assert_eq!(readiness.failing(), ["broker", "draining"]);
        assert!(readiness.set("broker", true));
        assert!(!readiness.set("broker", true));
        readiness.set("draining", true);
        assert!(readiness.is_ready());
        readiness.register("broker");
        assert!(readiness.is_ready(), "registering again keeps the state");
    }
}
