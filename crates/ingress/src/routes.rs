//! `POST /webhooks/voicehub/{source}` and `POST /webhooks/voicehub` (the `default` source).

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix_web::http::header::HeaderName;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::{FutureExt, StreamExt};
use tokio::sync::Semaphore;
use tracing::{error, info, warn};
use voicehub_model::record::{DeadLetter, Provenance, Stage};
use voicehub_model::{EventKind, Timestamp, Topics, WebhookEvent, parse_webhook};
use voicehub_runtime::{BRIDGE_VERSION, FaultHook};

use crate::auth::{AuthOutcome, SourceSecrets};
use crate::body_budget::BodyBudget;
use crate::dedupe::{Claim, Dedupe};
use crate::error::{Outcome, WebhookError};
use crate::metrics::{IngressMetrics, RequestCounters, SourceMetrics, event_type_label};
use crate::outbox::{Outbox, StoreError};

/// The source served by `POST /webhooks/voicehub`.
pub const DEFAULT_SOURCE: &str = "default";
/// The header VoiceHub puts the shared secret in (a `HeaderName`: looked up by a `&str`, the
/// name was parsed and allocated at every request).
pub static SECRET_HEADER: HeaderName = HeaderName::from_static("x-webhook-secret");

/// What every request handler shares.
#[derive(Debug)]
pub struct AppState {
    /// Sources by name.
    pub sources: HashMap<String, Source>,
    /// `voicehub_ingress_requests_total{source="unknown"}`: requests to a name no source has.
    pub unknown_source: RequestCounters,
    /// Topic names.
    pub topics: Topics,
    /// Where records go: Kafka, or the spool first.
    pub outbox: Outbox,
    /// Recent event ids.
    pub dedupe: Arc<Dedupe>,
    /// Bounds requests in flight.
    pub in_flight: Semaphore,
    /// Bounds the body bytes they hold.
    pub body_budget: BodyBudget,
    /// Longest wait for room in the body budget.
    pub body_budget_wait: Duration,
    /// Set on SIGTERM: new requests get 503.
    pub draining: AtomicBool,
    pub metrics: IngressMetrics,
    /// Largest body accepted.
    pub max_body_bytes: usize,
    /// Time allowed to receive a body.
    pub body_timeout: Duration,
    /// `Retry-After` on 503.
    pub retry_after_s: u64,
    /// Called with every parsed event before it is stored: a seam for fault-injection tests
    /// (a panic on the request path), set by [`crate::Application::inject_fault`]. Unset in
    /// the service.
    pub fault_hook: std::sync::OnceLock<FaultHook>,
}

/// A configured source.
#[derive(Debug)]
pub struct Source {
    /// Its active secrets (re-read from their files while the service runs).
    pub secrets: Arc<SourceSecrets>,
    /// Its series.
    pub metrics: SourceMetrics,
}

/// What the request log line and the metrics say about a request.
struct RequestInfo<'a> {
    source_label: &'a str,
    kind: Option<EventKind>,
    event_id: Option<String>,
}

/// `POST /webhooks/voicehub/{source}`
pub async fn webhook(
    source: web::Path<String>,
    request: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    handle(&source, &request, body, &state).await
}

/// `POST /webhooks/voicehub`
pub async fn webhook_default(
    request: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    handle(DEFAULT_SOURCE, &request, body, &state).await
}

async fn handle(
    source: &str,
    request: &HttpRequest,
    body: web::Payload,
    state: &AppState,
) -> HttpResponse {
    let started = Instant::now();
    let configured = state.sources.get_key_value(source);
    let mut info = RequestInfo {
        source_label: configured.map_or("unknown", |(name, _)| name.as_str()),
        kind: None,
        event_id: None,
    };
    let result = match configured {
        Some((_, configured)) => process(source, configured, request, body, state, &mut info).await,
        None => Err(WebhookError::UnknownSource {
            secret_given: request.headers().contains_key(&SECRET_HEADER),
        }),
    };
    let (outcome, response) = match result {
        Ok(outcome) => (
            outcome,
            HttpResponse::Ok()
                .insert_header(actix_web::http::header::ContentType::json())
                .body(if outcome == Outcome::Duplicate {
                    r#"{"status":"duplicate"}"#
                } else {
                    r#"{"status":"accepted"}"#
                }),
        ),
        Err(error) => (
            error.outcome(),
            actix_web::ResponseError::error_response(&error),
        ),
    };
    let elapsed = started.elapsed();
    configured
        .map_or(&state.unknown_source, |(_, configured)| {
            &configured.metrics.requests
        })
        .inc(info.kind, outcome);
    state
        .metrics
        .request_duration
        .observe(outcome, elapsed.as_secs_f64());
    info!(
        source = info.source_label,
        event_type = event_type_label(info.kind),
        event_id = info.event_id.as_deref().unwrap_or(""),
        outcome = outcome.as_str(),
        status = response.status().as_u16(),
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        "webhook"
    );
    response
}

/// The request's life; `Ok` is the outcome of a 200.
async fn process(
    source: &str,
    configured: &Source,
    request: &HttpRequest,
    body: web::Payload,
    state: &AppState,
    info: &mut RequestInfo<'_>,
) -> Result<Outcome, WebhookError> {
    authenticate(configured, request)?;

    let retry_after_s = state.retry_after_s;
    if state.draining.load(Ordering::Acquire) {
        return Err(WebhookError::Draining { retry_after_s });
    }
    let _permit = state
        .in_flight
        .try_acquire()
        .map_err(|_| WebhookError::Overloaded { retry_after_s })?;
    state.metrics.in_flight.inc();
    let _in_flight = scopeguard(|| state.metrics.in_flight.dec());

    let declared = request
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    let limit = state.max_body_bytes;
    if declared.is_some_and(|length| length > limit) {
        return Err(WebhookError::TooLarge { limit });
    }
    let Some(_body_bytes) = state
        .body_budget
        .reserve(declared.unwrap_or(limit), state.body_budget_wait)
        .await
    else {
        // Read and dropped, not kept: closing with the body unread resets the connection,
        // and the sender sees a reset instead of this answer.
        discard_body(body, limit, state.body_timeout).await;
        return Err(WebhookError::Overloaded { retry_after_s });
    };
    let bytes = read_body(body, declared, limit, state.body_timeout).await?;
    let provenance = Provenance {
        source,
        received_at: Timestamp::now(),
        bridge_version: BRIDGE_VERSION,
    };

    // From here on the body is authenticated and in hand: whatever happens to it, a panic
    // included, it ends on a topic, as a dead letter, or with an answer VoiceHub retries.
    let accepted = AssertUnwindSafe(accept(
        state,
        &configured.metrics,
        &provenance,
        &bytes,
        info,
    ))
    .catch_unwind()
    .await;
    match accepted {
        Ok(result) => result,
        Err(panic) => {
            let text = format!(
                "the ingress failed on this body: {}",
                voicehub_runtime::panic_message(&*panic)
            );
            error!(error = %text, "request handler panicked; dead-lettering the body");
            dead_letter(state, &provenance, &bytes, "internal_error", &text).await?;
            Err(WebhookError::Internal)
        }
    }
}

/// Parses, normalises and stores an authenticated body.
async fn accept(
    state: &AppState,
    metrics: &SourceMetrics,
    provenance: &Provenance<'_>,
    bytes: &[u8],
    info: &mut RequestInfo<'_>,
) -> Result<Outcome, WebhookError> {
    let event = match parse_webhook(bytes) {
        Ok(event) => event,
        Err(error) => {
            dead_letter(state, provenance, bytes, error.reason(), &error.to_string()).await?;
            return Err(WebhookError::Invalid(error));
        }
    };
    info.kind = Some(event.kind());
    info.event_id = Some(event.event_id().to_owned());
    FaultHook::call(&state.fault_hook, &event);
    match publish_once(state, metrics, provenance, &event).await {
        Err(WebhookError::RecordTooLarge) => {
            let text = "the normalised record exceeds the producer's message.max.bytes";
            dead_letter(state, provenance, bytes, "record_too_large", text).await?;
            Err(WebhookError::RecordTooLarge)
        }
        published => published,
    }
}

fn authenticate(source: &Source, request: &HttpRequest) -> Result<(), WebhookError> {
    let presented = request
        .headers()
        .get(&SECRET_HEADER)
        .map(|value| value.as_bytes());
    match source.secrets.check(presented) {
        AuthOutcome::Accepted { slot } => {
            source.metrics.auth_accepted(slot);
            Ok(())
        }
        AuthOutcome::Missing => {
            source.metrics.auth_missing();
            Err(WebhookError::MissingSecret)
        }
        AuthOutcome::Mismatch => {
            source.metrics.auth_mismatch();
            Err(WebhookError::WrongSecret)
        }
    }
}

/// Reads a body and drops it chunk by chunk, until its end, `limit` bytes, or `timeout`.
async fn discard_body(mut body: web::Payload, limit: usize, timeout: Duration) {
    let discard = async {
        let mut read = 0;
        while let Some(Ok(chunk)) = body.next().await {
            read += chunk.len();
            if read > limit {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(timeout, discard).await;
}

/// Reads a body of at most `limit` bytes (`declared`: its `Content-Length`, already checked
/// against `limit`) within `timeout`.
async fn read_body(
    mut body: web::Payload,
    declared: Option<usize>,
    limit: usize,
    timeout: Duration,
) -> Result<web::Bytes, WebhookError> {
    let read = async {
        let mut bytes = web::BytesMut::with_capacity(declared.unwrap_or(1024).min(limit));
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| WebhookError::BodyRead(e.to_string()))?;
            if bytes.len() + chunk.len() > limit {
                return Err(WebhookError::TooLarge { limit });
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes.freeze())
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| WebhookError::BodyTimeout(timeout))?
}

/// Produces the event unless this instance already accepted it; see [`crate::dedupe`].
async fn publish_once(
    state: &AppState,
    metrics: &SourceMetrics,
    provenance: &Provenance<'_>,
    event: &WebhookEvent,
) -> Result<Outcome, WebhookError> {
    let retry_after_s = state.retry_after_s;
    let wait_until = tokio::time::Instant::now() + state.outbox.deadline();
    loop {
        match state.dedupe.claim(provenance.source, event.event_id()) {
            Claim::Duplicate => {
                metrics.dedupe_hit();
                return Ok(Outcome::Duplicate);
            }
            Claim::InFlight(mut done) => {
                // Wakes when the other produce ends either way; then claim again.
                if tokio::time::timeout_at(wait_until, done.changed())
                    .await
                    .is_err()
                {
                    return Err(WebhookError::Unavailable { retry_after_s });
                }
            }
            Claim::Fresh(pending) => {
                let topic = state.topics.for_kind(event.kind());
                let record = event.to_record(provenance);
                let on_outcome = move |delivered| {
                    if delivered {
                        pending.succeeded();
                    } // else dropping `pending` releases the id for a retry
                };
                return match state.outbox.store(topic, &record, on_outcome).await {
                    Ok(()) => Ok(if event.kind() == EventKind::Unrouted {
                        Outcome::Unrouted
                    } else {
                        Outcome::Accepted
                    }),
                    Err(error) => Err(produce_failed(error, retry_after_s, event)),
                };
            }
        }
    }
}

fn produce_failed(error: StoreError, retry_after_s: u64, event: &WebhookEvent) -> WebhookError {
    if error.is_too_large() {
        warn!(
            error = &error as &dyn std::error::Error,
            event_id = event.event_id(),
            "record refused as too large"
        );
    }
    store_failed(&error, retry_after_s)
}

fn store_failed(error: &StoreError, retry_after_s: u64) -> WebhookError {
    if error.is_too_large() {
        WebhookError::RecordTooLarge
    } else if error.is_spool_full() {
        WebhookError::SpoolFull { retry_after_s }
    } else {
        if let StoreError::Spool(error) = error {
            warn!(
                error = error as &dyn std::error::Error,
                "spool append failed"
            );
        }
        WebhookError::Unavailable { retry_after_s }
    }
}

/// Writes an unusable body to the dead-letter topic. If that fails, the request fails with
/// 503 so that VoiceHub retries: an authenticated body is never silently dropped.
async fn dead_letter(
    state: &AppState,
    provenance: &Provenance<'_>,
    bytes: &[u8],
    reason: &'static str,
    error: &str,
) -> Result<(), WebhookError> {
    let record = DeadLetter {
        stage: Stage::Ingress,
        reason,
        error,
        original: bytes,
        original_content_type: "application/octet-stream",
        subject: None,
    }
    .to_record(provenance);
    match state
        .outbox
        .store(&state.topics.dead_letter, &record, |_| {})
        .await
    {
        Ok(()) => {
            state
                .metrics
                .dead_letters
                .with_label_values(&[reason])
                .inc();
            Ok(())
        }
        Err(error) => {
            if error.is_too_large() {
                error!(
                    error = &error as &dyn std::error::Error,
                    reason,
                    "dead letter refused as too large: the dead-letter topic's \
                     max.message.bytes must carry http.max_body_bytes"
                );
            }
            Err(store_failed(&error, state.retry_after_s))
        }
    }
}

/// Runs `f` when dropped.
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// Any other path or method: a JSON 404.
pub async fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(serde_json::json!({
        "error": "not_found",
        "detail": "POST /webhooks/voicehub or /webhooks/voicehub/{source}",
    }))
}
