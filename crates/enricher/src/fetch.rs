//! Fetching an analysis result: the allow-list check before the API key leaves the process,
//! bounded time and size, and a classification of every failure into retry or dead letter.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{HeaderValue, RETRY_AFTER};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use voicehub_model::ParseError;
use voicehub_model::analysis::AnalysisResult;

use crate::allow_list::{AllowList, NonPublicAddress};

/// The header VoiceHub expects the account API key in.
pub const API_KEY_HEADER: &str = "x-dq-api-key";

/// The account API key of a source. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(HeaderValue);

impl ApiKey {
    /// Wraps a key; `None` if it cannot be a header value or is empty.
    pub fn new(key: &str) -> Option<Self> {
        let key = key.trim_end_matches(['\r', '\n']);
        if key.is_empty() {
            return None;
        }
        let mut value = HeaderValue::from_str(key).ok()?;
        value.set_sensitive(true);
        Some(Self(value))
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// A source's current API key, shared between the fetches and the task that re-reads the
/// key's file, so that a rotated key is used without a restart.
#[derive(Debug, Clone)]
pub struct SharedKey(Arc<RwLock<ApiKey>>);

impl SharedKey {
    /// Starts with `key`.
    pub fn new(key: ApiKey) -> Self {
        Self(Arc::new(RwLock::new(key)))
    }

    /// The key to send now.
    fn current(&self) -> HeaderValue {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .clone()
    }

    /// Installs `key`; whether it differs from the previous one.
    pub fn replace(&self, key: ApiKey) -> bool {
        let mut current = self.0.write().unwrap_or_else(PoisonError::into_inner);
        let changed = *current != key;
        *current = key;
        changed
    }
}

/// A source's key, where it may go, and the HTTP client that takes it there (its resolver
/// holds the source's address rules).
#[derive(Debug, Clone)]
pub struct Access {
    api_key: SharedKey,
    allow_list: AllowList,
    client: reqwest::Client,
}

impl Access {
    /// The client: bounded connect time, no redirects, no proxy from the environment, and
    /// `allow_list`'s resolver. [`fetch`] bounds each request's time itself (the wait for body
    /// budget is not the API's time).
    pub fn new(
        api_key: SharedKey,
        allow_list: AllowList,
        connect_timeout: Duration,
    ) -> reqwest::Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(allow_list.resolver()))
            .build()?;
        Ok(Self {
            api_key,
            allow_list,
            client,
        })
    }
}

/// Why a fetch did not yield an analysis.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL is not one the key may be sent to. Nothing was sent.
    #[error("analysis URL refused: {0}")]
    Disallowed(String),
    /// 401 or 403: the key is wrong or lacks access.
    #[error("analysis API answered {0}")]
    Unauthorized(StatusCode),
    /// 404: unknown, or not ready yet.
    #[error("analysis API answered 404 (not ready yet, or unknown)")]
    NotReady,
    /// 429.
    #[error("analysis API answered 429 (retry after {0:?})")]
    RateLimited(Option<Duration>),
    /// 5xx.
    #[error("analysis API answered {0}")]
    ServerError(StatusCode),
    /// A redirect: not followed (it could carry the key elsewhere).
    #[error("analysis API answered a redirect ({0}), which is not followed")]
    Redirected(StatusCode),
    /// Any other status.
    #[error("analysis API answered {0}")]
    ClientError(StatusCode),
    /// No answer in time.
    #[error("analysis API timed out")]
    Timeout,
    /// Connection refused, reset, DNS failure.
    #[error("analysis API unreachable: {0}")]
    Connect(String),
    /// The body is larger than allowed.
    #[error("analysis larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// The body is not an analysis.
    #[error("analysis is not valid: {0}")]
    Invalid(ParseError),
}

impl FetchError {
    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::NotReady
                | Self::RateLimited(_)
                | Self::ServerError(_)
                | Self::Timeout
                | Self::Connect(_)
        )
    }

    /// The dead-letter reason code (and metric label); a closed set.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Disallowed(_) => "disallowed_url",
            Self::Unauthorized(_) => "unauthorized",
            Self::NotReady => "not_ready",
            Self::RateLimited(_) => "rate_limited",
            Self::ServerError(_) => "server_error",
            Self::Redirected(_) => "redirected",
            Self::ClientError(_) => "client_error",
            Self::Timeout => "timeout",
            Self::Connect(_) => "connect",
            Self::TooLarge { .. } => "too_large",
            Self::Invalid(_) => "invalid_analysis",
        }
    }

    /// The wait the server asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited(after) => *after,
            _ => None,
        }
    }
}

/// The analysis bodies all fetches may hold at once (`fetch.max_in_flight_body_bytes`), in
/// KiB. A fetch reserves its body's size before reading it; the reservation goes with the
/// analysis and is released when the caller drops it (after the enriched record is produced).
#[derive(Debug, Clone)]
pub struct BodyBudget(Arc<Semaphore>);

/// Bytes reserved from a [`BodyBudget`], released when dropped.
pub type Reservation = Option<OwnedSemaphorePermit>;

impl BodyBudget {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> Self {
        Self(Arc::new(Semaphore::new(
            kib(bytes as u64).min(Semaphore::MAX_PERMITS as u32) as usize,
        )))
    }

    /// Waits until `bytes` are free and reserves them.
    async fn reserve(&self, bytes: u64) -> Reservation {
        // The semaphore is never closed: an error cannot happen, and would only mean no wait.
        self.0.clone().acquire_many_owned(kib(bytes)).await.ok()
    }

    /// Bytes not reserved now (for metrics).
    pub fn available_bytes(&self) -> u64 {
        self.0.available_permits() as u64 * 1024
    }
}

fn kib(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX)
}

/// One attempt: check, `GET` with the key, reserve the body's size from `budget`, read at most
/// `max_bytes`, parse. The reservation comes back with the analysis. The request (headers, then
/// body) gets `timeout` in all, not counting the wait for budget: records that hold it while
/// Kafka is away must not turn healthy fetches into timeouts and retries.
pub async fn fetch(
    url: &str,
    access: &Access,
    max_bytes: usize,
    budget: &BodyBudget,
    timeout: Duration,
) -> Result<(AnalysisResult, Reservation), FetchError> {
    let started = tokio::time::Instant::now();
    let response = send(url, access, timeout).await?;
    let headers_took = started.elapsed();
    let length = response.content_length();
    if length.is_some_and(|length| length > max_bytes as u64) {
        return Err(FetchError::TooLarge { limit: max_bytes });
    }
    let reservation = budget.reserve(length.unwrap_or(max_bytes as u64)).await;
    let read = async {
        // Exactly the announced size: growing by appending could take twice that.
        let mut body = Vec::with_capacity(length.map_or(0, |l| l as usize));
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(classify_transport)?;
            if body.len() + chunk.len() > max_bytes {
                return Err(FetchError::TooLarge { limit: max_bytes });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    let body = tokio::time::timeout(timeout.saturating_sub(headers_took), read)
        .await
        .map_err(|_| FetchError::Timeout)??;
    let analysis = AnalysisResult::parse(&body).map_err(FetchError::Invalid)?;
    Ok((analysis, reservation))
}

/// The GET of `url` with the source's key, once the allow-list admits it (nothing is sent
/// otherwise), within `timeout`; an answer other than 2xx is its error.
async fn send(
    url: &str,
    access: &Access,
    timeout: Duration,
) -> Result<reqwest::Response, FetchError> {
    let url = access
        .allow_list
        .check(url)
        .map_err(FetchError::Disallowed)?;
    let response = tokio::time::timeout(
        timeout,
        access
            .client
            .get(url)
            .header(API_KEY_HEADER, access.api_key.current())
            .send(),
    )
    .await
    .map_err(|_| FetchError::Timeout)?
    .map_err(classify_transport)?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    Err(match status.as_u16() {
        401 | 403 => FetchError::Unauthorized(status),
        404 => FetchError::NotReady,
        429 => FetchError::RateLimited(retry_after(response.headers().get(RETRY_AFTER))),
        300..=399 => FetchError::Redirected(status),
        500..=599 => FetchError::ServerError(status),
        _ => FetchError::ClientError(status),
    })
}

/// One GET of `url` with the source's key, as [`fetch`] sends it (allow-list, resolver, no
/// redirects), reading no body: whether the API answers, and whether it refuses the key. A
/// preflight's question (`voicehub check`), not the pipeline's.
pub async fn probe(
    url: &str,
    access: &Access,
    timeout: Duration,
) -> Result<StatusCode, FetchError> {
    send(url, access, timeout)
        .await
        .map(|response| response.status())
}

fn classify_transport(error: reqwest::Error) -> FetchError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(error) = cause {
        if let Some(refused) = error.downcast_ref::<NonPublicAddress>() {
            return FetchError::Disallowed(refused.to_string());
        }
        cause = error.source();
    }
    if error.is_timeout() {
        FetchError::Timeout
    } else {
        // Without the URL: it is in the record already, and may carry a token.
        FetchError::Connect(error.without_url().to_string())
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by APIs like this one; ignored).
fn retry_after(value: Option<&HeaderValue>) -> Option<Duration> {
    value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allow_list::AllowedHost;

    fn access(hosts: &[&str], allow_http: bool) -> Access {
        let key = SharedKey::new(ApiKey::new("k").unwrap());
        Access::new(
            key,
            crate::allow_list::tests::list(hosts, allow_http),
            Duration::from_secs(1),
        )
        .unwrap()
    }

    const ANALYSIS: &str = include_str!("../../../tests/fixtures/voicehub/analysis-result.json");

    /// A server on 127.0.0.1 that counts the connections it accepts and answers each with an
    /// analysis.
    async fn counting_server() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let mut request = [0_u8; 4096];
                let _ = socket.read(&mut request).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{ANALYSIS}",
                    ANALYSIS.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        (port, accepted)
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_gets_nothing_unless_its_entry_allows_it() {
        use std::sync::atomic::Ordering;
        // Arrange: `localhost` resolves to 127.0.0.1 (or ::1), where the server listens.
        let (port, accepted) = counting_server().await;
        let budget = BodyBudget::new(64 * 1024);
        let url = format!("http://localhost:{port}/api/v1/analysis-results/a");
        let strict = AllowList::new(
            vec![AllowedHost::parse(&format!("localhost:{port}"), false).unwrap()],
            true,
        );
        let key = SharedKey::new(ApiKey::new("k").unwrap());
        let strict = Access::new(key.clone(), strict, Duration::from_secs(1)).unwrap();
        let trusting = access(&[&format!("localhost:{port}")], true);
        let timeout = Duration::from_secs(5);

        // Act
        let refused = fetch(&url, &strict, 64 * 1024, &budget, timeout).await;
        let connections_when_refused = accepted.load(Ordering::SeqCst);
        let fetched = fetch(&url, &trusting, 64 * 1024, &budget, timeout).await;

        // Assert
        match refused {
            Err(FetchError::Disallowed(why)) => {
                assert!(why.contains("a loopback address"), "{why}")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(connections_when_refused, 0, "the server was reached");
        assert!(fetched.is_ok(), "{fetched:?}");
    }

    #[test]
    fn retryable_and_dead_letter_failures_are_told_apart() {
        assert!(FetchError::NotReady.is_retryable());
        assert!(FetchError::ServerError(StatusCode::BAD_GATEWAY).is_retryable());
        assert!(FetchError::RateLimited(None).is_retryable());
        assert!(!FetchError::Unauthorized(StatusCode::UNAUTHORIZED).is_retryable());
        assert!(!FetchError::TooLarge { limit: 1 }.is_retryable());
        assert!(!FetchError::Redirected(StatusCode::FOUND).is_retryable());
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_waits_until_the_budget_has_room_for_it() {
        let budget = BodyBudget::new(64 * 1024);
        let first = budget.reserve(40 * 1024).await;
        assert_eq!(budget.available_bytes(), 24 * 1024);
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.reserve(40 * 1024).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished(), "reserved beyond the budget");
        drop(first);
        let second = waiting.await.unwrap();
        assert!(second.is_some());
        assert_eq!(budget.available_bytes(), 24 * 1024);
        drop(second);
        assert_eq!(budget.available_bytes(), 64 * 1024);
    }

    /// A record holding the budget (say, its produce waiting for Kafka) must not turn the next
    /// fetch into a timeout: the wait for room is not the API's time.
    #[tokio::test]
    async fn waiting_for_budget_does_not_count_against_the_timeout() {
        let (port, _) = counting_server().await;
        let budget = BodyBudget::new(64 * 1024);
        let everything = budget.reserve(64 * 1024).await;
        let access = access(&[&format!("127.0.0.1:{port}")], true);
        let url = format!("http://127.0.0.1:{port}/api/v1/analysis-results/a");

        // Act: the budget is freed after 3 timeouts' worth of time.
        let (fetched, ()) = tokio::join!(
            fetch(
                &url,
                &access,
                64 * 1024,
                &budget,
                Duration::from_millis(200)
            ),
            async move {
                tokio::time::sleep(Duration::from_millis(600)).await;
                drop(everything);
            }
        );

        // Assert
        let (_analysis, reservation) = fetched.unwrap();
        assert!(reservation.is_some());
    }

    #[test]
    fn the_key_is_never_printed() {
        let key = ApiKey::new("super-secret-key").unwrap();
        assert!(!format!("{key:?}").contains("super-secret"));
    }
}
