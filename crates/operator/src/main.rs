//! `voicehub`: the operator's command line. `voicehub --help` lists the commands; every
//! command reads the services' configuration (`--config`, then `VOICEHUB_BRIDGE__*`).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, CommandFactory, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use voicehub_model::Timestamp;
use voicehub_model::record::Stage;
use voicehub_operator::Stopped;
use voicehub_operator::check::Service;
use voicehub_operator::dead_letters::{Filter, Reader, Start, Summary};
use voicehub_operator::interrupt::Interrupt;
use voicehub_operator::redrive::{self, Event, Options};
use voicehub_operator::settings::OperatorSettings;
use voicehub_operator::spool;
use voicehub_operator::terminal::{json_line, printable};
use voicehub_runtime::settings::CONFIG_PATH_ENV;

/// Operate a voicehub-bridge: read dead letters, re-drive them, produce set-aside spool records.
#[derive(Debug, Parser)]
#[command(name = "voicehub", version, propagate_version = true)]
struct Cli {
    /// The ingress's or the enricher's configuration file (brokers, Kafka properties, topics),
    /// as the services take it.
    #[arg(long, global = true, value_name = "FILE", env = CONFIG_PATH_ENV)]
    config: Option<PathBuf>,
    /// Seconds to wait for the brokers' answer to a request (and for a record expected), 1 or
    /// more.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Will this configuration work? With the service's own configuration, asks the brokers
    /// (reachable, authentication, what its principal may do on each topic and group,
    /// replication, max.message.bytes) and, for the enricher, the analysis API (reachable, the
    /// key not refused). Changes nothing. Exit 0: nothing failed (warnings allowed); 3:
    /// something will not work, named in its row.
    Check {
        /// Which service --config configures.
        #[arg(long, value_enum)]
        service: Service,
        /// One JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Read the dead-letter topic (assigned partitions; joins no consumer group).
    #[command(subcommand)]
    DeadLetters(DeadLettersCommand),
    /// Put dead letters back: each goes through the current parser to its event type's topic
    /// (same key and ce_id, with ce_redrivenfrom); what still fails is reported and stays.
    /// Resumable: progress is its own consumer group's committed offsets.
    Redrive(RedriveArgs),
    /// Spooled records that did not reach Kafka.
    #[command(subcommand)]
    Spool(SpoolCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell to write the script for.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
enum DeadLettersCommand {
    /// Counts by stage, reason and source; the oldest and newest (one JSON object).
    Summary(FilterArgs),
    /// The dead letters, one JSON object per line: headers, key, value (text, or hex).
    Show {
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many (1 or more).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
        /// Leave each body out (its size only): headers and key are enough to triage, and a
        /// body holds personal data.
        #[arg(long)]
        redact: bool,
    },
}

#[derive(Debug, Subcommand)]
enum SpoolCommand {
    /// Produce the records a spool set aside in undeliverable/ (or, with --spool, everything a
    /// stopped instance left in its spool directory, in order); each file or entry is removed
    /// once Kafka acknowledged it.
    Produce {
        /// The spool directory (spool.dir) or its undeliverable/.
        dir: PathBuf,
        /// Also the spool's own records, oldest first (the instance must be stopped).
        #[arg(long)]
        spool: bool,
        /// Report what would be produced; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Clone, Args)]
struct FilterArgs {
    /// Only this stage; repeatable.
    #[arg(long, value_parser = STAGES.map(Stage::as_str))]
    stage: Vec<String>,
    /// Only this reason (e.g. unauthorized, retries_exhausted); repeatable.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(reasons()))]
    reason: Vec<String>,
    /// Only this source; repeatable.
    #[arg(long)]
    source: Vec<String>,
    /// Only dead letters written at or after this time (RFC 3339).
    #[arg(long, value_parser = timestamp)]
    since: Option<Timestamp>,
    /// Only dead letters written before this time (RFC 3339).
    #[arg(long, value_parser = timestamp)]
    until: Option<Timestamp>,
}

#[derive(Debug, Args)]
struct RedriveArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// Report what would happen (counts); produce and commit nothing.
    #[arg(long)]
    dry_run: bool,
    /// At most this many records re-driven per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Stop after re-driving this many, 1 or more (a re-run goes on from there).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    limit: Option<u64>,
    /// The consumer group that remembers progress (default: one per filter, so the same
    /// filter resumes and another starts from the beginning).
    #[arg(long)]
    group: Option<String>,
    /// Read every dead letter again, whatever the group had reached (after fixing what an
    /// earlier run left; what it re-drove goes again, same ce_id).
    #[arg(long)]
    from_beginning: bool,
}

/// The `--stage` values: the stages that write dead letters.
const STAGES: [Stage; 2] = [Stage::Ingress, Stage::Enricher];

/// The `--reason` values: the reasons any stage writes.
fn reasons() -> Vec<&'static str> {
    let mut all: Vec<&str> = STAGES
        .iter()
        .flat_map(|stage| stage.dead_letter_reasons())
        .copied()
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

fn timestamp(text: &str) -> Result<Timestamp, String> {
    Timestamp::parse(text).map_err(|e| e.to_string())
}

impl FilterArgs {
    /// Why nothing could match, if so: a command line refused like a misspelt flag.
    fn contradiction(&self) -> Option<String> {
        if let (Some(since), Some(until)) = (&self.since, &self.until)
            && since >= until
        {
            return Some(format!(
                "--since {since} is not before --until {until}: nothing could match"
            ));
        }
        let stages: Vec<Stage> = STAGES
            .into_iter()
            .filter(|stage| self.stage.iter().any(|s| s == stage.as_str()))
            .collect();
        if stages.is_empty() {
            return None;
        }
        let written = |reason: &str| {
            stages
                .iter()
                .any(|stage| stage.dead_letter_reasons().contains(&reason))
        };
        self.reason.iter().find(|r| !written(r)).map(|reason| {
            let known: Vec<String> = stages
                .iter()
                .map(|stage| {
                    format!(
                        "{}: {}",
                        stage.as_str(),
                        stage.dead_letter_reasons().join(", ")
                    )
                })
                .collect();
            format!(
                "--reason {reason} is never written by --stage {} (reasons by stage: {})",
                self.stage.join(", --stage "),
                known.join("; ")
            )
        })
    }
}

impl From<FilterArgs> for Filter {
    fn from(args: FilterArgs) -> Self {
        Self {
            stages: args.stage,
            reasons: args.reason,
            sources: args.source,
            since: args.since,
            until: args.until,
        }
    }
}

impl Cli {
    fn filter(&self) -> Option<&FilterArgs> {
        match &self.command {
            Command::DeadLetters(
                DeadLettersCommand::Summary(filter) | DeadLettersCommand::Show { filter, .. },
            )
            | Command::Redrive(RedriveArgs { filter, .. }) => Some(filter),
            Command::Check { .. } | Command::Spool(_) | Command::Completions { .. } => None,
        }
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Some(why) = cli.filter().and_then(FilterArgs::contradiction) {
        Cli::command()
            .error(clap::error::ErrorKind::ArgumentConflict, why)
            .exit();
    }
    match run(cli) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        // 2 is clap's, for a command line it refused.
        Ok(false) => std::process::ExitCode::from(3),
        // The reader went away (`| head`): what it wanted is written.
        Err(error) if broken_pipe(&error) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("voicehub: {}", printable(&error_text(&error)));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once: a Kafka client error repeats its cause's text.
fn error_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let said = cause.to_string();
        if text.contains(&said) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&said);
    }
    text
}

/// Where the brokers came from, for an error that reached none.
fn brokers_origin(config: Option<&std::path::Path>) -> String {
    if std::env::var_os("VOICEHUB_BRIDGE__KAFKA__BOOTSTRAP_SERVERS").is_some() {
        "from VOICEHUB_BRIDGE__KAFKA__BOOTSTRAP_SERVERS".into()
    } else if let Some(config) = config {
        format!("from {}", config.display())
    } else {
        format!(
            "the default: no configuration given (--config, {CONFIG_PATH_ENV}) nor \
             VOICEHUB_BRIDGE__KAFKA__BOOTSTRAP_SERVERS"
        )
    }
}

/// Runs the command; `Ok(false)` when it ran but something was left undone.
fn run(cli: Cli) -> anyhow::Result<bool> {
    if let Command::Completions { shell } = cli.command {
        // Into memory first: clap_complete panics when its writer fails (`| head`).
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "voicehub", &mut script);
        std::io::stdout().lock().write_all(&script)?;
        return Ok(true);
    }
    if let Command::Check { service, json } = cli.command {
        return check(
            cli.config.as_deref(),
            service,
            json,
            std::time::Duration::from_secs(cli.timeout),
        );
    }
    let loaded = OperatorSettings::load(cli.config.as_deref())?;
    let brokers = format!(
        "brokers {} ({})",
        loaded.kafka.bootstrap_servers,
        brokers_origin(cli.config.as_deref())
    );
    run_with(cli, loaded).map_err(|error| {
        // Once, before the client's own words: which brokers were tried, and why those.
        if error
            .chain()
            .any(|cause| cause.is::<rdkafka::error::KafkaError>())
        {
            error.context(brokers)
        } else {
            error
        }
    })
}

fn run_with(cli: Cli, loaded: OperatorSettings) -> anyhow::Result<bool> {
    let sources = loaded.source_names();
    let settings = loaded.kafka;
    let timeout = std::time::Duration::from_secs(cli.timeout);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let topic = settings.topics.dead_letter.clone();
    match cli.command {
        Command::DeadLetters(DeadLettersCommand::Summary(filter)) => {
            let filter = Filter::from(filter);
            let mut reader = Reader::open(&settings, &topic, Start::Beginning, timeout)?;
            let bar = progress(reader.remaining());
            let mut summary = Summary::default();
            while let Some(letter) = reader.next_letter()? {
                bar.inc(1);
                summary.read += 1;
                if filter.matches(&letter) {
                    summary.add(&letter);
                }
            }
            bar.finish_and_clear();
            print_json(&summary)?;
            Ok(true)
        }
        Command::DeadLetters(DeadLettersCommand::Show {
            filter,
            limit,
            redact,
        }) => {
            let filter = Filter::from(filter);
            let mut reader = Reader::open(&settings, &topic, Start::Beginning, timeout)?;
            let mut shown = 0;
            while let Some(letter) = reader.next_letter()? {
                if limit.is_some_and(|limit| shown >= limit) {
                    break;
                }
                if filter.matches(&letter) {
                    shown += 1;
                    let mut json = serde_json::to_value(&letter)?;
                    json["value"] = if redact {
                        serde_json::json!({ "redacted": true, "bytes": letter.value.len() })
                    } else {
                        letter.value_text().map_or_else(
                            || serde_json::json!({ "hex": hex(&letter.value) }),
                            |text| serde_json::Value::String(text.to_owned()),
                        )
                    };
                    print_json(&json)?;
                }
            }
            Ok(true)
        }
        Command::Redrive(args) => {
            let filter = Filter::from(args.filter);
            if sources.is_none() {
                eprintln!(
                    "voicehub: the configuration names no [sources]: any well-formed ce_source \
                     is accepted (give the ingress's or the enricher's file with --config)"
                );
            }
            let options = Options {
                group: args
                    .group
                    .unwrap_or_else(|| Options::default_group(&filter)),
                filter,
                dry_run: args.dry_run,
                rate: args.rate,
                limit: args.limit,
                from_beginning: args.from_beginning,
                sources,
                timeout,
                interrupt: Interrupt::on_signals().context("listening for SIGINT and SIGTERM")?,
            };
            let bar = progress(0);
            let parse = |body: &[u8]| voicehub_model::parse_webhook(body);
            let notify = |event: Event<'_>| match event {
                Event::Opened { remaining } => bar.set_length(remaining),
                Event::Read => bar.inc(1),
                Event::Left { location, why } => {
                    bar.suspend(|| eprintln!("{}", printable(&format!("{location}: {why}"))))
                }
            };
            let outcome = redrive::run(&settings, &options, &parse, &runtime, notify);
            bar.finish_and_clear();
            let (report, stopped) = match outcome {
                Ok(report) => (report, None),
                Err(Stopped { report, error }) => (*report, Some(error)),
            };
            for warning in &report.warnings {
                eprintln!("voicehub: {}", printable(&warning.to_string()));
            }
            if report.left() > 0 && report.dry_run {
                eprintln!(
                    "voicehub: {} dead letters would be left where they are (above); a dry run \
                     commits nothing",
                    report.left()
                );
            } else if report.left() > 0 {
                eprintln!(
                    "voicehub: {} dead letters left where they are (above). This group has passed \
                     them: once their cause is fixed, run again with --from-beginning (what was \
                     re-driven before goes again, with the same ce_id)",
                    report.left()
                );
            }
            if report.left_earlier > 0 {
                eprintln!(
                    "voicehub: earlier runs of group {} left {} dead letters behind, which this \
                     run does not read: once their cause is fixed, run with --from-beginning",
                    report.group, report.left_earlier
                );
            }
            print_report(&report)?;
            match stopped {
                Some(error) => Err(error.into()),
                None => Ok(!report.failed()),
            }
        }
        Command::Spool(SpoolCommand::Produce {
            dir,
            spool: whole,
            dry_run,
        }) => {
            let interrupt = Interrupt::on_signals().context("listening for SIGINT and SIGTERM")?;
            let run = spool::Run {
                dry_run,
                interrupt: &interrupt,
            };
            let outcome = if whole {
                spool::produce_spool(&settings, &dir, run, &runtime)
            } else {
                spool::produce_set_aside(&settings, &dir, run, &runtime)
            };
            let (report, stopped) = match outcome {
                Ok(report) => (report, None),
                Err(Stopped { report, error }) => (*report, Some(error)),
            };
            for left in &report.left {
                eprintln!(
                    "{}",
                    printable(&format!("{}: left: {}", left.what, left.why))
                );
            }
            for kept in &report.kept {
                eprintln!(
                    "{}",
                    printable(&format!("{}: kept: {}", kept.what, kept.why))
                );
            }
            if report.queue_segments > 0 {
                eprintln!(
                    "{}",
                    printable(&format!(
                        "voicehub: {} also holds {} segment files of the spool's own queue, \
                         not produced: if its instance is stopped for good (crashed, scaled in), \
                         `voicehub spool produce --spool {}` produces them, in order",
                        dir.display(),
                        report.queue_segments,
                        dir.display()
                    ))
                );
            }
            print_report(&report)?;
            match stopped {
                Some(error) => Err(error.into()),
                None => Ok(!report.failed()),
            }
        }
        Command::Check { .. } | Command::Completions { .. } => Ok(true),
    }
}

/// `voicehub check`: the service's configuration loaded and validated as the service does,
/// then asked of Kafka (and the analysis API); `Ok(false)` when a check failed.
fn check(
    config: Option<&std::path::Path>,
    service: Service,
    json: bool,
    timeout: std::time::Duration,
) -> anyhow::Result<bool> {
    use voicehub_operator::check::{KafkaNeeds, Report};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let (needs, mut others) = match service {
        Service::Ingress => {
            let view: voicehub_operator::settings::IngressView =
                voicehub_runtime::settings::load(config)?;
            view.kafka.validate()?;
            let needs = KafkaNeeds::ingress(&view.kafka, view.http.max_body_bytes);
            (needs, Vec::new())
        }
        Service::Enricher => {
            let settings: voicehub_enricher::EnricherSettings =
                voicehub_runtime::settings::load(config)?;
            settings.validate()?;
            let api = voicehub_operator::check::analysis_api::check(&settings, timeout, &runtime);
            (KafkaNeeds::enricher(&settings), api)
        }
    };
    let mut checks = voicehub_operator::check::kafka::check(&needs, timeout, &runtime);
    checks.append(&mut others);
    let report = Report::new(service, checks);
    if json {
        print_report(&report)?;
    } else {
        let table = report.table();
        let mut out = std::io::stdout().lock();
        for line in table.lines() {
            writeln!(out, "{}", printable(line))?;
        }
    }
    Ok(report.passed)
}

fn broken_pipe(error: &anyhow::Error) -> bool {
    // print_json serialises to memory first: a failed write is an io::Error.
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// A progress bar on a terminal's stderr; hidden otherwise (pipes, logs, Jobs).
fn progress(total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {pos}/{len} read {per_sec} {elapsed}, {eta} left")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// One JSON object on its own stdout line (paste it into the incident).
fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let json = serde_json::to_string(value)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", json_line(&json))?;
    Ok(())
}

/// A command's final report: like [`print_json`], but a reader gone away (`| head`) does not
/// hide the command's own outcome (exit 3 for work left undone).
fn print_report(value: &impl serde::Serialize) -> anyhow::Result<()> {
    match print_json(value) {
        Err(error) if broken_pipe(&error) => Ok(()),
        printed => printed,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
