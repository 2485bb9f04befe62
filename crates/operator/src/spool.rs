//! Spooled records back to Kafka by hand: the files a spool set aside in `undeliverable/`, or
//! (with `--spool`) everything a stopped instance left in its spool directory, in order. Each is
//! produced with the services' producer settings (the same bytes the forwarder would send:
//! same key, headers and `ce_id`), and its file (or spool entry) removed only once Kafka has
//! acknowledged it. A record for a topic the configuration does not name is never produced (a
//! spool read with another instance's configuration would write elsewhere): a set-aside file
//! is left in place, and a `--spool` run stops there, before acknowledging it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use voicehub_model::record_codec;
use voicehub_runtime::kafka::{self, ProduceError};
use voicehub_runtime::settings::KafkaSettings;

use crate::interrupt::Interrupt;

/// Bytes of spooled records read into memory at once (each up to about 1 MiB).
const READ_BYTES: u64 = 16 * 1024 * 1024;

/// Why producing stopped.
#[derive(Debug, thiserror::Error)]
pub enum SpoolProduceError {
    /// A file or the spool could not be read or changed.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        error: std::io::Error,
    },
    /// The spool could not be opened (in use by a running instance, or damaged).
    #[error(transparent)]
    Spool(#[from] voicehub_spool::SpoolError),
    /// Kafka did not take a record (nothing after it was produced).
    #[error("producing {what} to {topic}: {error}")]
    Produce {
        /// The file or spool entry.
        what: String,
        /// Its topic.
        topic: String,
        /// Kafka's answer.
        #[source]
        error: Box<ProduceError>,
    },
    /// The producer could not be created.
    #[error("creating the producer: {0}")]
    Producer(#[from] rdkafka::error::KafkaError),
    /// A spool record for a topic the configuration does not name: nothing from it on was
    /// produced or acknowledged.
    #[error(
        "{what} is for topic `{topic}`, which the configuration does not name (kafka.topics): \
         stopped there; run with the configuration of the instance that spooled it"
    )]
    ForeignTopic {
        /// The spool entry.
        what: String,
        /// Its topic.
        topic: String,
    },
    /// Neither the directory nor a subdirectory of it is a spool's `undeliverable/`.
    #[error("{0}: no undeliverable/ directory here (give a spool directory or its undeliverable/)")]
    NoSetAside(PathBuf),
}

/// What producing did (or, dry, would do).
#[derive(Debug, Default, Serialize)]
pub struct SpoolReport {
    /// Whether nothing was produced or removed.
    pub dry_run: bool,
    /// Produced and removed (or, dry, that would be).
    pub produced: u64,
    /// Left in place, each with why (unreadable, too large for the broker): still to be done.
    pub left: Vec<Left>,
    /// Raw bytes that failed their checksum (`.damaged`, `.torn`): kept for inspection, never
    /// producible, so not counted as left.
    pub kept: Vec<Left>,
    /// Whether an interrupt (SIGINT, SIGTERM) stopped it before the end.
    pub interrupted: bool,
    /// Without `--spool`: segment files of the spool's own queue in the directory, not
    /// produced (a crashed instance's records may be waiting there).
    pub queue_segments: u64,
    /// With `--spool`: the sequence number the queue was read up to.
    #[serde(skip)]
    next_seq: u64,
}

impl SpoolReport {
    fn new(run: Run<'_>) -> Self {
        Self {
            dry_run: run.dry_run,
            ..Self::default()
        }
    }

    /// Whether anything was left undone (the exit status).
    pub fn failed(&self) -> bool {
        !self.left.is_empty() || self.interrupted
    }
}

/// A file or entry left in place.
#[derive(Debug, Serialize)]
pub struct Left {
    /// The file (or spool entry).
    pub what: String,
    pub why: String,
}

struct Producer<'a> {
    producer: Option<rdkafka::producer::FutureProducer>,
    /// The topics the configuration names: a record for any other is never produced.
    topics: Vec<String>,
    deadline: Duration,
    runtime: &'a tokio::runtime::Runtime,
}

enum Outcome {
    Produced,
    Left(String),
    /// For a topic the configuration does not name: never produced.
    ForeignTopic(String),
}

impl Producer<'_> {
    /// Decodes `bytes` and produces them; `Left` if they can never go.
    fn send(&self, what: &str, bytes: &[u8]) -> Result<Outcome, SpoolProduceError> {
        let (topic, record) = match record_codec::decode(bytes) {
            Ok(decoded) => decoded,
            Err(error) => return Ok(Outcome::Left(format!("unreadable: {error}"))),
        };
        if !self.topics.contains(&topic) {
            return Ok(Outcome::ForeignTopic(topic));
        }
        let Some(producer) = &self.producer else {
            return Ok(Outcome::Produced);
        };
        match self
            .runtime
            .block_on(kafka::produce(producer, &topic, &record, self.deadline))
        {
            Ok(_) => Ok(Outcome::Produced),
            Err(ProduceError::TooLarge(_)) => Ok(Outcome::Left(format!(
                "too large for the broker ({} bytes): raise the topic's max.message.bytes",
                record.value.len()
            ))),
            Err(error) => Err(SpoolProduceError::Produce {
                what: what.to_owned(),
                topic,
                error: Box::new(error),
            }),
        }
    }
}

/// Options of a run.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    /// Report what would be produced; change nothing.
    pub dry_run: bool,
    /// Stops the run after the record in hand (what Kafka acknowledged is written down).
    pub interrupt: &'a Interrupt,
}

/// What a run did before an error stopped it, and the error.
pub type Stopped = crate::Stopped<SpoolReport, SpoolProduceError>;

/// Produces the `.rec` files of `dir` (a spool directory or its `undeliverable/`), oldest
/// first, removing each once acknowledged. Other files (`.damaged`, `.torn`: raw bytes that
/// failed their checksum) are reported and left.
pub fn produce_set_aside(
    settings: &KafkaSettings,
    dir: &Path,
    run: Run<'_>,
    runtime: &tokio::runtime::Runtime,
) -> Result<SpoolReport, Stopped> {
    let mut report = SpoolReport::new(run);
    // The spool's own queue, beside undeliverable/: what only --spool produces.
    let produced = match set_aside_dir(dir) {
        Some(set_aside) if set_aside != dir => queue_segments(dir)
            .map(|segments| report.queue_segments = segments)
            .map_err(io(dir)),
        _ => Ok(()),
    }
    .and_then(|()| set_aside(settings, dir, run, runtime, &mut report));
    Stopped::or_report(produced, report)
}

fn set_aside(
    settings: &KafkaSettings,
    dir: &Path,
    run: Run<'_>,
    runtime: &tokio::runtime::Runtime,
    report: &mut SpoolReport,
) -> Result<(), SpoolProduceError> {
    let dir = set_aside_dir(dir).ok_or_else(|| SpoolProduceError::NoSetAside(dir.to_owned()))?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(io(&dir))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io(&dir))?;
    // Sequence numbers are zero-padded: the names sort oldest first.
    files.sort();
    let producer = producer(settings, run.dry_run, runtime)?;
    for path in files {
        if run.interrupt.requested() {
            report.interrupted = true;
            return Ok(());
        }
        let what = path.display().to_string();
        if path.extension().is_none_or(|e| e != "rec") {
            report.kept.push(Left {
                what,
                why: "raw bytes that failed their checksum: kept for inspection".into(),
            });
            continue;
        }
        // Gone meanwhile: produced by another run, or deleted by the ingress's retention.
        let bytes = match std::fs::read(&path) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            read => read.map_err(io(&path))?,
        };
        match producer.send(&what, &bytes)? {
            Outcome::Produced => {
                if !run.dry_run {
                    match std::fs::remove_file(&path) {
                        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                            return Err(io(&path)(error));
                        }
                        _ => sync_dir(&dir).map_err(io(&dir))?,
                    }
                }
                report.produced += 1;
            }
            Outcome::Left(why) => report.left.push(Left { what, why }),
            Outcome::ForeignTopic(topic) => report.left.push(Left {
                what,
                why: foreign(&topic),
            }),
        }
    }
    Ok(())
}

/// Produces everything a stopped instance left in its spool directory `dir`, in order,
/// acknowledging each in the spool once Kafka has; a record Kafka can never take is set aside
/// in `undeliverable/` (as the forwarder does), so nothing after it is sent twice by a later
/// open. Then the `undeliverable/` files. Refused while an instance has the directory open.
/// Opening recovers the spool as a restart would (even dry: a torn end is cut, damaged records
/// set aside); dry, nothing is produced, acknowledged or removed.
///
/// The acknowledgements reach disk after every [`WINDOW`] records (and when the run stops,
/// interrupted or failing): a run killed outright sends again at most the window it was in.
pub fn produce_spool(
    settings: &KafkaSettings,
    dir: &Path,
    run: Run<'_>,
    runtime: &tokio::runtime::Runtime,
) -> Result<SpoolReport, Stopped> {
    let mut report = SpoolReport::new(run);
    let produced = queue(settings, dir, run, runtime, &mut report).and_then(|()| {
        if report.interrupted || set_aside_dir(dir).is_none() {
            return Ok(());
        }
        set_aside(settings, dir, run, runtime, &mut report)
    });
    Stopped::or_report(produced, report)
}

/// Records produced between two writes of the acknowledgements to disk.
pub const WINDOW: usize = 256;

fn queue(
    settings: &KafkaSettings,
    dir: &Path,
    run: Run<'_>,
    runtime: &tokio::runtime::Runtime,
    report: &mut SpoolReport,
) -> Result<(), SpoolProduceError> {
    if !dir.is_dir() {
        return Err(io(dir)(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such spool directory",
        )));
    }
    let (spool, _recovery) = voicehub_spool::Spool::open(voicehub_spool::Options {
        dir: dir.to_owned(),
        segment_bytes: u64::MAX,
        max_bytes: u64::MAX,
        max_age: Duration::MAX,
    })?;
    let producer = producer(settings, run.dry_run, runtime)?;
    let mut window = || -> Result<bool, SpoolProduceError> {
        let entries = spool.read_bounded(report.next_seq, WINDOW, READ_BYTES)?;
        let Some(last) = entries.last() else {
            return Ok(false);
        };
        report.next_seq = last.seq + 1;
        for entry in &entries {
            if run.interrupt.requested() {
                report.interrupted = true;
                return Ok(false);
            }
            let what = format!("{} record {}", dir.display(), entry.seq);
            match producer.send(&what, &entry.payload)? {
                Outcome::Produced => {
                    if !run.dry_run {
                        spool.acknowledge(entry.seq)?;
                    }
                    report.produced += 1;
                }
                // Out of the queue, onto disk: the undeliverable/ pass reports it.
                Outcome::Left(_) if !run.dry_run => {
                    spool.set_aside(entry, "operator")?;
                }
                Outcome::Left(why) => report.left.push(Left { what, why }),
                // Another instance's spool, or a misnamed topic: this and everything after it
                // stays in the queue, acknowledged by no one.
                Outcome::ForeignTopic(topic) if !run.dry_run => {
                    return Err(SpoolProduceError::ForeignTopic { what, topic });
                }
                Outcome::ForeignTopic(topic) => report.left.push(Left {
                    what,
                    why: foreign(&topic),
                }),
            }
        }
        Ok(true)
    };
    loop {
        let more = window();
        // Whatever stopped it: what Kafka acknowledged is written down, never sent again (the
        // window's own error, if any, is the one reported).
        let persisted = if run.dry_run {
            Ok(())
        } else {
            spool.persist_acknowledgements()
        };
        if !more? {
            return Ok(persisted?);
        }
        persisted?;
    }
}

fn producer<'a>(
    settings: &KafkaSettings,
    dry_run: bool,
    runtime: &'a tokio::runtime::Runtime,
) -> Result<Producer<'a>, rdkafka::error::KafkaError> {
    Ok(Producer {
        producer: (!dry_run)
            .then(|| {
                kafka::create_producer(
                    &crate::settings::one_at_a_time(settings),
                    rdkafka::client::DefaultClientContext,
                )
            })
            .transpose()?,
        topics: settings
            .topics
            .all()
            .iter()
            .map(|(_, topic)| (*topic).to_owned())
            .collect(),
        deadline: settings.message_timeout() + Duration::from_secs(5),
        runtime,
    })
}

fn foreign(topic: &str) -> String {
    format!(
        "for topic `{topic}`, which the configuration does not name (kafka.topics): left; run \
         with the configuration of the instance that spooled it"
    )
}

/// `dir/undeliverable`, or `dir` itself if it is one.
fn set_aside_dir(dir: &Path) -> Option<PathBuf> {
    let inner = dir.join("undeliverable");
    if inner.is_dir() {
        Some(inner)
    } else if dir.is_dir() && dir.file_name().is_some_and(|n| n == "undeliverable") {
        Some(dir.to_owned())
    } else {
        None
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolProduceError {
    let path = path.to_owned();
    move |error| SpoolProduceError::Io { path, error }
}

/// The spool's own segment files in `dir` (its queue, which only `--spool` produces).
fn queue_segments(dir: &Path) -> std::io::Result<u64> {
    let mut segments = 0;
    for entry in std::fs::read_dir(dir)? {
        if entry?.path().extension().is_some_and(|e| e == "seg") {
            segments += 1;
        }
    }
    Ok(segments)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
