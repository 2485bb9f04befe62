//! VoiceHub's analysis API, played: `GET {base}/{analysisId}` with `x-dq-api-key` answers the
//! example analysis for that call, 401 without the right key, and trouble on request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::Value;

const EXAMPLE: &str = include_str!("../../../tests/fixtures/voicehub/analysis-result.json");

/// Trouble the API adds on request.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnalysisTrouble {
    /// Added to every answer.
    pub delay: Duration,
    /// Every analysis answers 503 this many times before it succeeds.
    pub fail_first: u32,
}

struct State {
    api_key: String,
    trouble: AnalysisTrouble,
    example: Value,
    attempts: Mutex<HashMap<String, u32>>,
}

/// A running analysis API.
#[derive(Debug)]
pub struct AnalysisApi {
    port: u16,
    server: actix_web::dev::ServerHandle,
}

impl AnalysisApi {
    /// Starts it on `listen` (`127.0.0.1:0` for any free port).
    pub fn start(listen: &str, api_key: &str, trouble: AnalysisTrouble) -> std::io::Result<Self> {
        let example: Value = serde_json::from_str(EXAMPLE)?;
        let state = web::Data::new(State {
            api_key: api_key.to_owned(),
            trouble,
            example,
            attempts: Mutex::new(HashMap::new()),
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .route("/api/v1/analysis-results/{id}", web::get().to(answer))
        })
        .workers(2)
        .disable_signals()
        .bind(listen)?;
        let port = server.addrs().first().map_or(0, std::net::SocketAddr::port);
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Self {
            port,
            server: handle,
        })
    }

    /// The URL prefix an `analysisResultUrl` starts with.
    pub fn base_url(&self) -> String {
        Self::base_url_at(&format!("http://127.0.0.1:{}", self.port))
    }

    /// The URL prefix of analysis results when the API is reached at `origin`
    /// (`scheme://host:port`), e.g. through a container name.
    pub fn base_url_at(origin: &str) -> String {
        format!("{}/api/v1/analysis-results", origin.trim_end_matches('/'))
    }

    /// `host:port`, for the enricher's allow-list.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops it.
    pub async fn stop(&self) {
        self.server.stop(true).await;
    }
}

async fn answer(
    request: HttpRequest,
    id: web::Path<String>,
    state: web::Data<State>,
) -> HttpResponse {
    let key = request.headers().get("x-dq-api-key").map(|v| v.as_bytes());
    if key != Some(state.api_key.as_bytes()) {
        return HttpResponse::Unauthorized().json(serde_json::json!({"error": "invalid API key"}));
    }
    tokio::time::sleep(state.trouble.delay).await;
    let id = id.into_inner();
    let attempt = {
        let mut attempts = state
            .attempts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = attempts.entry(id.clone()).or_insert(0);
        *count += 1;
        *count
    };
    if attempt <= state.trouble.fail_first {
        return HttpResponse::ServiceUnavailable().finish();
    }
    // The simulator names analyses anl_{run}_{index}; the call is sim-{run}-{index}.
    let call_id = id
        .strip_prefix("anl_")
        .map(|rest| format!("sim-{}", rest.replacen('_', "-", 1)))
        .unwrap_or_default();
    let mut analysis = state.example.clone();
    analysis["callId"] = call_id.into();
    HttpResponse::Ok().json(analysis)
}
