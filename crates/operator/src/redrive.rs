//! Dead letters back into the pipeline, through the current parser and normaliser.
//!
//! Both stages' dead letters hold what the stage was given: the webhook body (ingress) or the
//! analysis-ready record's value, itself a normalised webhook (enricher). Either way, the bytes
//! go through the parser again; what now parses becomes the record the ingress would have
//! written (same key, same `ce_id`: VoiceHub's `eventId`), with `ce_bridgereceivedat` as first
//! received and `ce_redrivenfrom` naming the dead letter, on its event type's topic (for an
//! enricher dead letter, its input topic again). What still fails is reported and stays.
//!
//! Progress is the committed offset of a consumer group of the re-drive's own (named after its
//! filter unless given): a re-run after an interruption goes on after the last record handled.
//! Records left behind (still failing, forged, too large) are passed over too, and said so: after
//! fixing their cause, `--from-beginning` looks at every dead letter again (those re-driven
//! before go again: duplicates with the same `ce_id`, which consumers drop).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::Serialize;
use voicehub_model::record::{DEAD_LETTER_TYPE, Provenance, Record, header};
use voicehub_model::{ParseError, Timestamp, Topics, WebhookEvent};
use voicehub_runtime::BRIDGE_VERSION;
use voicehub_runtime::kafka::ProduceError;
use voicehub_runtime::settings::KafkaSettings;

use crate::Stopped;
use crate::dead_letters::{DeadLetter, Filter, ReadError, Reader, Start};
use crate::interrupt::Interrupt;

/// The parser re-driven bodies go through (the bridge's own, or a test's).
pub type Parser = dyn Fn(&[u8]) -> Result<WebhookEvent, ParseError>;

/// What re-driving one dead letter comes to.
#[derive(Debug)]
pub enum Plan {
    /// It parses now: produce `record` to `topic`.
    Produce {
        /// The event type's topic.
        topic: String,
        /// The record the ingress would write.
        record: Record,
    },
    /// It still does not parse.
    StillFails {
        /// The parser's reason code.
        reason: &'static str,
        /// The parser's error.
        error: String,
    },
    /// Not a dead letter the bridge wrote (headers missing or corrupt): never re-driven blindly.
    Invalid(String),
}

/// Decides what re-driving `letter` (read from `from_topic`) would do. With `sources`, a dead
/// letter must name one of them (the configured sources): a record forged onto the dead-letter
/// topic cannot speak for a source that does not exist here.
pub fn plan(
    letter: &DeadLetter,
    from_topic: &str,
    topics: &Topics,
    sources: Option<&BTreeSet<String>>,
    parse: &Parser,
) -> Plan {
    if letter.header(header::TYPE) != Some(DEAD_LETTER_TYPE) {
        return Plan::Invalid(format!("ce_type is not {DEAD_LETTER_TYPE}"));
    }
    match letter.stage() {
        Some("ingress" | "enricher") => {}
        Some(other) => return Plan::Invalid(format!("unknown ce_deadletterstage {other:?}")),
        None => return Plan::Invalid("no ce_deadletterstage header".into()),
    }
    let Some(source) = letter.source().filter(|s| is_source_name(s)) else {
        return Plan::Invalid("no ce_source naming a source".into());
    };
    if sources.is_some_and(|known| !known.contains(source)) {
        return Plan::Invalid(format!(
            "ce_source names {source:?}, not a configured source"
        ));
    }
    let Some(received_at) = letter
        .header(header::RECEIVED_AT)
        .and_then(|text| Timestamp::parse(text).ok())
    else {
        return Plan::Invalid("no valid ce_bridgereceivedat header".into());
    };
    match parse(&letter.value) {
        Ok(event) => {
            let mut record = event.to_record(&Provenance {
                source,
                received_at,
                bridge_version: BRIDGE_VERSION,
            });
            record
                .headers
                .push((header::REDRIVEN_FROM, letter.location(from_topic)));
            Plan::Produce {
                topic: topics.for_kind(event.kind()).to_owned(),
                record,
            }
        }
        Err(error) => Plan::StillFails {
            reason: error.reason(),
            error: error.to_string(),
        },
    }
}

/// Source names as the services accept them in configuration and URLs.
fn is_source_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// How a re-drive runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Which dead letters.
    pub filter: Filter,
    /// Report what would happen; produce and commit nothing.
    pub dry_run: bool,
    /// At most this many records re-driven per second.
    pub rate: Option<f64>,
    /// Stop after re-driving this many.
    pub limit: Option<u64>,
    /// The consumer group that remembers progress.
    pub group: String,
    /// Read every dead letter again, whatever the group had reached.
    pub from_beginning: bool,
    /// The configured sources (from the services' configuration), if known.
    pub sources: Option<BTreeSet<String>>,
    /// How long a request to the brokers may take.
    pub timeout: Duration,
    /// Stops the run before its next record.
    pub interrupt: Interrupt,
}

impl Options {
    /// The group a filter's re-drive uses unless one is given: the same filter resumes, another
    /// starts from the beginning.
    pub fn default_group(filter: &Filter) -> String {
        let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, filter.fingerprint().as_bytes());
        format!("voicehub-redrive-{}", &id.simple().to_string()[..16])
    }
}

/// What a re-drive did (or, dry, would do).
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Whether nothing was produced or committed.
    pub dry_run: bool,
    /// The consumer group holding progress.
    pub group: String,
    /// Dead letters read.
    pub read: u64,
    /// Of those, matching the filter.
    pub matched: u64,
    /// Produced again (or, dry, that would be).
    pub redriven: u64,
    /// Still failing to parse; left where they are.
    pub still_failing: u64,
    /// Headers missing or corrupt, or naming no configured source; left where they are.
    pub invalid: u64,
    /// Parsed, but larger than the broker takes; left where they are.
    pub too_large: u64,
    /// Re-driven, per destination topic.
    pub by_topic: BTreeMap<String, u64>,
    /// Still failing, per parser reason.
    pub still_failing_by_reason: BTreeMap<String, u64>,
    /// Left behind by earlier runs of this group (passed over; `--from-beginning` reads them
    /// again).
    pub left_earlier: u64,
    /// Whether `limit` stopped it before the end.
    pub stopped_at_limit: bool,
    /// Whether an interrupt (SIGINT, SIGTERM) stopped it before the end.
    pub interrupted: bool,
    /// Progress that did not match the topic (recreated, or records expired unread).
    pub warnings: Vec<String>,
}

impl Report {
    /// Dead letters matched that did not go back.
    pub fn left(&self) -> u64 {
        self.still_failing + self.invalid + self.too_large
    }

    /// Whether anything failed to go back, in this run or earlier ones, or the run was
    /// interrupted (the exit status).
    pub fn failed(&self) -> bool {
        self.left() > 0 || self.left_earlier > 0 || self.interrupted
    }
}

/// Why a re-drive stopped early.
#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    /// Reading or committing failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Kafka did not take a re-driven record (nothing after it was re-driven or committed).
    #[error("producing {location} to {topic}: {error}")]
    Produce {
        /// The dead letter.
        location: String,
        /// Where it was going.
        topic: String,
        /// Kafka's answer.
        #[source]
        error: Box<ProduceError>,
    },
    /// The producer could not be created.
    #[error("creating the producer: {0}")]
    Producer(#[from] rdkafka::error::KafkaError),
}

/// Something to tell the operator about, as it happens.
#[derive(Debug)]
pub enum Event<'a> {
    /// The topic is open: this many records to read (for a progress bar's total).
    Opened {
        /// Records between the start and the end.
        remaining: u64,
    },
    /// Read one more (for a progress bar).
    Read,
    /// A dead letter that does not go back, and why.
    Left {
        /// Where it is.
        location: String,
        why: &'a str,
    },
}

/// Re-drives the dead letters `options` selects. `notify` hears of every record read and of
/// every one left where it is. An interrupt stops it before the next record, what was done
/// committed.
pub fn run(
    settings: &KafkaSettings,
    options: &Options,
    parse: &Parser,
    runtime: &tokio::runtime::Runtime,
    mut notify: impl FnMut(Event<'_>),
) -> Result<Report, Stopped<Report, RedriveError>> {
    let mut report = Report {
        dry_run: options.dry_run,
        group: options.group.clone(),
        ..Report::default()
    };
    Stopped::or_report(
        redrive(settings, options, parse, runtime, &mut notify, &mut report),
        report,
    )
}

fn redrive(
    settings: &KafkaSettings,
    options: &Options,
    parse: &Parser,
    runtime: &tokio::runtime::Runtime,
    notify: &mut impl FnMut(Event<'_>),
    report: &mut Report,
) -> Result<(), RedriveError> {
    let from = settings.topics.dead_letter.clone();
    let topics = settings.topics.clone();
    let start = if options.from_beginning {
        Start::Over(&options.group)
    } else {
        Start::Committed(&options.group)
    };
    let mut reader = Reader::open(settings, &from, start, options.timeout)?;
    report.warnings = reader.warnings().to_vec();
    report.left_earlier = reader.left_before();
    notify(Event::Opened {
        remaining: reader.remaining(),
    });
    let producer = (!options.dry_run)
        .then(|| {
            voicehub_runtime::kafka::create_producer(
                &crate::settings::one_at_a_time(settings),
                rdkafka::client::DefaultClientContext,
            )
        })
        .transpose()?;
    let deadline = settings.message_timeout() + Duration::from_secs(5);
    let interval = options
        .rate
        .filter(|r| *r > 0.0)
        .map(|rate| Duration::from_secs_f64(1.0 / rate));
    let mut last_sent: Option<Instant> = None;
    // Handled but not yet committed, per partition: the highest offset.
    let mut done: BTreeMap<i32, i64> = BTreeMap::new();

    loop {
        if options.interrupt.requested() {
            report.interrupted = true;
            break;
        }
        let Some(letter) = reader.next_letter()? else {
            break;
        };
        report.read += 1;
        notify(Event::Read);
        done.insert(letter.partition, letter.offset);
        if !options.filter.matches(&letter) {
            continue;
        }
        report.matched += 1;
        let location = letter.location(&from);
        let why = match plan(&letter, &from, &topics, options.sources.as_ref(), parse) {
            Plan::Invalid(why) => {
                report.invalid += 1;
                format!("skipped, not re-driven: {why}")
            }
            Plan::StillFails { reason, error } => {
                report.still_failing += 1;
                *report
                    .still_failing_by_reason
                    .entry(reason.to_owned())
                    .or_default() += 1;
                format!("still fails ({reason}): {error}")
            }
            Plan::Produce { topic, record } => {
                if let Some(producer) = &producer {
                    if let (Some(interval), Some(last)) = (interval, last_sent) {
                        // In slices: an interrupt is noticed within 100 ms at any --rate.
                        while !options.interrupt.requested() {
                            let left = interval.saturating_sub(last.elapsed());
                            if left.is_zero() {
                                break;
                            }
                            std::thread::sleep(left.min(Duration::from_millis(100)));
                        }
                    }
                    last_sent = Some(Instant::now());
                    match runtime.block_on(voicehub_runtime::kafka::produce(
                        producer, &topic, &record, deadline,
                    )) {
                        // Acknowledged: the next run starts after it.
                        Ok(_) => reader.commit(std::mem::take(&mut done))?,
                        Err(ProduceError::TooLarge(_)) => {
                            report.too_large += 1;
                            reader.leave(&letter);
                            notify(Event::Left {
                                location,
                                why: &format!(
                                    "too large for the broker ({} bytes): raise the topic's \
                                     max.message.bytes",
                                    record.value.len()
                                ),
                            });
                            continue;
                        }
                        // Nothing after it goes, nor is it committed: a re-run retries it.
                        Err(error) => {
                            return Err(RedriveError::Produce {
                                location,
                                topic,
                                error: Box::new(error),
                            });
                        }
                    }
                }
                report.redriven += 1;
                *report.by_topic.entry(topic).or_default() += 1;
                if options.limit.is_some_and(|limit| report.redriven >= limit) {
                    report.stopped_at_limit = true;
                    break;
                }
                continue;
            }
        };
        reader.leave(&letter);
        notify(Event::Left {
            location,
            why: &why,
        });
    }
    if !options.dry_run {
        reader.commit(done)?;
    }
    Ok(())
}
