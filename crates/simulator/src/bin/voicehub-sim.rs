//! `voicehub-sim`: plays VoiceHub against a running bridge and prints what was sent and
//! acknowledged as JSON.
//!
//! Flags: `voicehub-sim --help` (`USAGE` below).
//!
//! It serves the analysis API itself (on `--api-listen`) and keeps serving it for
//! `--serve-seconds` after the last webhook, so the enricher can fetch what it needs. The
//! `analysisResultUrl` of each call points at `--api-url` (default: the listen address), which
//! must be what the enricher reaches it at, e.g. `http://simulator:8090` in docker compose.

#![allow(clippy::print_stdout)] // a command-line tool: stdout is its interface

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use voicehub_simulator::{AnalysisApi, AnalysisTrouble, SendOptions, Trouble, simulate};

const USAGE: &str = "
voicehub-sim --url http://127.0.0.1:8080/webhooks/voicehub --secret dev-secret
  [--calls 100] [--concurrency 16] [--rate CALLS_PER_S] [--retries 3] [--retry-delay-ms 1000]
  [--timeout-ms 10000] [--duplicate-every N] [--out-of-order-every N] [--malformed-every N]
  [--api-listen 127.0.0.1:8090] [--api-key dev-api-key] [--api-delay-ms 0] [--api-fail-first 0]
  [--api-url http://<api-listen>] [--serve-seconds 0]

Plays VoiceHub: sends whole calls as webhooks (with VoiceHub's retries), serves the analysis API
the enricher fetches from, and prints a JSON report of what was sent and acknowledged.
";

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn number<T: std::str::FromStr>(args: &[String], name: &str) -> anyhow::Result<Option<T>>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    flag(args, name)
        .map(|v| {
            v.parse::<T>()
                .with_context(|| format!("{name}: `{v}` is not a number"))
        })
        .transpose()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{}", USAGE.trim());
        return Ok(());
    }
    let url = flag(&args, "--url").context("--url is required (the bridge's webhook URL)")?;
    let api_key = flag(&args, "--api-key").unwrap_or_else(|| "dev-api-key".into());
    let api = AnalysisApi::start(
        &flag(&args, "--api-listen").unwrap_or_else(|| "127.0.0.1:8090".into()),
        &api_key,
        AnalysisTrouble {
            delay: Duration::from_millis(number(&args, "--api-delay-ms")?.unwrap_or(0)),
            fail_first: number(&args, "--api-fail-first")?.unwrap_or(0),
        },
    )
    .context("starting the analysis API")?;
    let run = format!(
        "{:x}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default()
    );
    let report = simulate(SendOptions {
        webhook_url: url,
        secret: flag(&args, "--secret").unwrap_or_else(|| "dev-secret".into()),
        calls: number(&args, "--calls")?.unwrap_or(100),
        concurrency: number(&args, "--concurrency")?.unwrap_or(16),
        calls_per_second: number(&args, "--rate")?,
        retries: number(&args, "--retries")?.unwrap_or(3),
        retry_delay: Duration::from_millis(number(&args, "--retry-delay-ms")?.unwrap_or(1_000)),
        timeout: Duration::from_millis(number(&args, "--timeout-ms")?.unwrap_or(10_000)),
        analysis_base: flag(&args, "--api-url")
            .map(|origin| AnalysisApi::base_url_at(&origin))
            .unwrap_or_else(|| api.base_url()),
        run,
        trouble: Trouble {
            duplicate_every: number(&args, "--duplicate-every")?,
            out_of_order_every: number(&args, "--out-of-order-every")?,
            malformed_every: number(&args, "--malformed-every")?,
        },
    })
    .await;
    println!("{}", serde_json::to_string(&report)?);
    let serve: u64 = number(&args, "--serve-seconds")?.unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(serve)).await;
    api.stop().await;
    Ok(())
}
