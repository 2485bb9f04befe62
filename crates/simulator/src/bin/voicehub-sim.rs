//! `voicehub-sim`: plays VoiceHub against a running bridge and prints what was sent and
//! acknowledged as JSON.
//!
//! Flags: `voicehub-sim --help`.
//!
//! It serves the analysis API itself (on `--api-listen`) and keeps serving it for
//! `--serve-seconds` after the last webhook, so the enricher can fetch what it needs. The
//! `analysisResultUrl` of each call points at `--api-url` (default: the listen address), which
//! must be what the enricher reaches it at, e.g. `http://simulator:8090` in docker compose.

#![allow(clippy::print_stdout)] // a command-line tool: stdout is its interface

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;
use voicehub_simulator::{AnalysisApi, AnalysisTrouble, SendOptions, Trouble, simulate};

/// Plays VoiceHub: sends whole calls as webhooks (with VoiceHub's retries), serves the analysis
/// API the enricher fetches from, and prints a JSON report of what was sent and acknowledged.
#[derive(Debug, Parser)]
#[command(name = "voicehub-sim", version)]
struct Args {
    /// The bridge's webhook URL.
    #[arg(long)]
    url: String,
    /// The webhook secret.
    #[arg(long, default_value = "dev-webhook-secret")]
    secret: String,
    /// Calls to play.
    #[arg(long, default_value_t = 100)]
    calls: usize,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Calls started per second (default: as fast as answered).
    #[arg(long, value_name = "CALLS_PER_S")]
    rate: Option<f64>,
    /// VoiceHub's retries of a webhook not answered 2xx.
    #[arg(long, default_value_t = 3)]
    retries: u32,
    /// The wait between retries.
    #[arg(long, default_value_t = 1_000)]
    retry_delay_ms: u64,
    /// VoiceHub's timeout per request.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Send every Nth webhook twice.
    #[arg(long, value_name = "N")]
    duplicate_every: Option<usize>,
    /// Swap two statuses of every Nth call.
    #[arg(long, value_name = "N")]
    out_of_order_every: Option<usize>,
    /// Send a malformed body for every Nth call.
    #[arg(long, value_name = "N")]
    malformed_every: Option<usize>,
    /// Where the analysis API listens.
    #[arg(long, default_value = "127.0.0.1:8090")]
    api_listen: String,
    /// The API key it requires.
    #[arg(long, default_value = "dev-api-key")]
    api_key: String,
    /// Added to each analysis answer.
    #[arg(long, default_value_t = 0)]
    api_delay_ms: u64,
    /// Each analysis answers 503 this many times first.
    #[arg(long, default_value_t = 0)]
    api_fail_first: u32,
    /// The origin the enricher reaches the API at (default: the listen address).
    #[arg(long, value_name = "ORIGIN")]
    api_url: Option<String>,
    /// Keep serving analyses this long after the last webhook.
    #[arg(long, default_value_t = 0)]
    serve_seconds: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let api = AnalysisApi::start(
        &args.api_listen,
        &args.api_key,
        AnalysisTrouble {
            delay: Duration::from_millis(args.api_delay_ms),
            fail_first: args.api_fail_first,
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
        webhook_url: args.url,
        secret: args.secret,
        calls: args.calls,
        concurrency: args.concurrency,
        calls_per_second: args.rate,
        retries: args.retries,
        retry_delay: Duration::from_millis(args.retry_delay_ms),
        timeout: Duration::from_millis(args.timeout_ms),
        analysis_base: args
            .api_url
            .map(|origin| AnalysisApi::base_url_at(&origin))
            .unwrap_or_else(|| api.base_url()),
        run,
        trouble: Trouble {
            duplicate_every: args.duplicate_every,
            out_of_order_every: args.out_of_order_every,
            malformed_every: args.malformed_every,
        },
    })
    .await;
    println!("{}", serde_json::to_string(&report)?);
    tokio::time::sleep(Duration::from_secs(args.serve_seconds)).await;
    api.stop().await;
    Ok(())
}
