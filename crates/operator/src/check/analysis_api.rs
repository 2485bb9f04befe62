//! The analysis API half of `voicehub check` (the enricher): for each source, its key read as
//! the enricher reads it, and one GET with it on each allowed host, as the enricher would send
//! it (allow-list, address rules, no redirects), of an analysis that does not exist at the
//! documented path (`/api/v1/analysis-results/<id>`; the entry's path prefix if it does not
//! admit that path). 404 shows the API reachable and the key accepted; 401/403 a refused key.

use std::time::{Duration, Instant};

use voicehub_enricher::EnricherSettings;
use voicehub_enricher::fetch::{self, FetchError};

use super::{Finding, Status, finding};

/// The documented path of an analysis result, with an id no analysis has.
pub const PROBE_PATH: &str = "/api/v1/analysis-results/voicehub-check-no-such-analysis";

/// A finding per source and allowed host.
pub fn check(
    settings: &EnricherSettings,
    timeout: Duration,
    runtime: &tokio::runtime::Runtime,
) -> Vec<Finding> {
    let connect = Duration::from_millis(settings.fetch.connect_timeout_ms).min(timeout);
    let mut findings = Vec::new();
    for (name, source) in &settings.sources {
        let access = {
            // The resolver the client installs needs the runtime.
            let _entered = runtime.enter();
            voicehub_enricher::sources::source_access(name, source, connect)
        };
        let access = match access {
            Ok(access) => access,
            Err(error) => {
                findings.push(finding(
                    format!("source {name}"),
                    "API key",
                    Status::Fail,
                    error.to_string(),
                ));
                continue;
            }
        };
        let scheme = if source.allow_http { "http" } else { "https" };
        for host in &source.allowed_hosts {
            let url = host.probe_url(scheme, PROBE_PATH);
            let started = Instant::now();
            let answer = runtime.block_on(fetch::probe(&url, &access, timeout));
            let took = started.elapsed().as_millis();
            let (status, detail) = judge(answer, took);
            findings.push(finding(
                format!("analysis API {name} {url}"),
                "reachable",
                status,
                detail,
            ));
        }
    }
    findings
}

fn judge(answer: Result<reqwest::StatusCode, FetchError>, millis: u128) -> (Status, String) {
    match answer {
        Ok(status) => (
            Status::Ok,
            format!("answered {status} in {millis} ms; the key is not refused"),
        ),
        Err(FetchError::NotReady) => (
            Status::Ok,
            format!(
                "answered 404 Not Found (no such analysis) in {millis} ms; the key is not refused"
            ),
        ),
        Err(FetchError::Unauthorized(status)) => (
            Status::Fail,
            format!("answered {status}: the API refuses this source's key"),
        ),
        Err(error @ (FetchError::Timeout | FetchError::Connect(_) | FetchError::Disallowed(_))) => {
            (Status::Fail, error.to_string())
        }
        Err(other) => (
            Status::Warn,
            format!("{other} in {millis} ms: reachable, the key's standing unknown"),
        ),
    }
}
