//! A durable local queue of byte records for the ingress (the write-ahead spool of
//! `docs/operations.md`): an append is acknowledged once it is on disk, concurrent appends
//! share one `fsync` (group commit), records are read back oldest first, and a segment file is
//! deleted once every record in it is acknowledged (by Kafka, for the ingress).
//!
//! On disk: segment files `<first sequence number, 20 digits>.seg` in one directory, each a run
//! of records `[len u32][crc32 u32][seq u64][appended_at_ms u64][payload]` (little endian; the
//! CRC covers everything after it); `ACKED`, the acknowledgement watermark; `undeliverable/`,
//! records set aside. Opening a spool validates every record: a torn tail (a crash in the
//! middle of a write) is cut off (its bytes set aside) and counted, and no valid record before
//! it is ever skipped;
//! a damaged record with valid ones after it (a flipped bit) costs only itself: it is set
//! aside, counted, and reading resumes at the next valid record. The same holds for a record
//! found damaged when it is read back later.
//!
//! The parts: `segment` (one file: format, recovery, reading), `state` (the index in memory,
//! under the one lock), `writer` (the thread that appends with group commit), `files`
//! (watermark and set-aside files). No file I/O happens under the lock that appends
//! take, except creating the next segment file.

mod files;
mod recovery;
mod segment;
mod state;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::Duration;

use tokio::sync::oneshot;
use tracing::{error, info};

pub use files::{SetAside, UNDELIVERABLE_DIR};
use recovery::Recovered;
use segment::{HEADER_BYTES, Segment};
use state::State;
use writer::Append;

/// Sequence number of a record: strictly increasing, never reused within a directory.
pub type Seq = u64;

/// Bounds and place of a spool.
#[derive(Debug, Clone)]
pub struct Options {
    /// The directory holding the segment files (created if missing).
    pub dir: PathBuf,
    /// A segment is closed once it holds at least this many bytes.
    pub segment_bytes: u64,
    /// Appends are refused ([`SpoolError::Full`]) while the unacknowledged records take this
    /// many bytes.
    pub max_bytes: u64,
    /// Appends are refused ([`SpoolError::Stale`]) while the oldest unacknowledged record is
    /// older than this: a spool that cannot drain stops taking more rather than dropping any.
    pub max_age: Duration,
}

/// Told about group commits and damaged records (for metrics).
pub trait Observer: Send + Sync + 'static {
    /// `records` appends were made durable by one write and fsync that took `took`.
    fn synced(&self, records: usize, took: Duration);

    /// `records` damaged records were set aside (found on opening, or on reading back).
    fn damaged(&self, records: u64) {
        let _ = records;
    }
}

impl Observer for () {
    fn synced(&self, _records: usize, _took: Duration) {}
}

/// Why a spool operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The spool holds `max_bytes` already: nothing was written.
    #[error("spool full ({bytes} of {max_bytes} bytes)")]
    Full {
        /// Bytes held.
        bytes: u64,
        /// The bound.
        max_bytes: u64,
    },
    /// The oldest unacknowledged record is older than `max_age`: nothing was written.
    #[error("spool not draining (oldest record {oldest:?} old, bound {max_age:?})")]
    Stale {
        /// Age of the oldest record.
        oldest: Duration,
        /// The bound.
        max_age: Duration,
    },
    /// Another process holds the spool directory.
    #[error("spool {0} is in use by another process")]
    Locked(PathBuf),
    /// A file operation failed; an append that reports it may not be durable.
    #[error("spool {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The writer thread is gone (the spool is closing).
    #[error("spool closed")]
    Closed,
}

impl SpoolError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// What opening found on disk.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Valid records waiting to be forwarded.
    pub records: u64,
    /// Records (or partial records) dropped at a torn or corrupt end of a segment.
    pub torn: u64,
    /// Damaged records with valid ones after them, set aside in `undeliverable/`.
    pub damaged: u64,
}

/// A record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its sequence number (acknowledge it with this).
    pub seq: Seq,
    /// When it was appended (milliseconds since the Unix epoch).
    pub appended_at_ms: u64,
    /// What was appended.
    pub payload: Vec<u8>,
}

/// Depth, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Depth {
    /// Records appended and not yet acknowledged.
    pub records: u64,
    /// Their bytes on disk (headers included).
    pub bytes: u64,
    /// Age of the oldest of them.
    pub oldest: Option<Duration>,
}

/// The spool. Cheap to share (`Arc` inside).
#[derive(Clone)]
pub struct Spool {
    state: Arc<Mutex<State>>,
    appends: mpsc::Sender<Append>,
    dir: PathBuf,
    max_bytes: u64,
    max_age: Duration,
    observer: Arc<dyn Observer>,
    /// The watermark last written to disk; its lock serialises writers of the watermark
    /// (never taken by appends).
    persisted_watermark: Arc<Mutex<Seq>>,
    /// Held (locked) for the life of the spool: one process per directory.
    _lock: Arc<std::fs::File>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.dir)
            .field("max_bytes", &self.max_bytes)
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

impl Spool {
    /// Opens (or creates) the spool in `options.dir`: validates every segment, truncates a torn
    /// tail, sets damaged records aside, and starts the writer thread.
    pub fn open(options: Options) -> Result<(Self, Recovery), SpoolError> {
        Self::open_observed(options, ())
    }

    /// [`Spool::open`], telling `observer` about group commits and damaged records.
    pub fn open_observed(
        options: Options,
        observer: impl Observer,
    ) -> Result<(Self, Recovery), SpoolError> {
        files::private_dirs(&options.dir).map_err(SpoolError::io(&options.dir))?;
        let lock = recovery::lock_dir(&options.dir)?;
        let Recovered {
            segments,
            next_seq,
            acked,
            recovery: found,
        } = recovery::recover(&options.dir)?;
        if found.damaged > 0 {
            observer.damaged(found.damaged);
        }
        let bytes = segments.values().map(Segment::bytes).sum();
        info!(
            records = found.records,
            torn = found.torn,
            damaged = found.damaged,
            "spool opened"
        );
        let state = Arc::new(Mutex::new(State {
            dir: options.dir.clone(),
            segment_bytes: options.segment_bytes,
            segments,
            next_seq,
            bytes,
            records: found.records,
            syncs: (0, 0),
        }));
        let (appends, receiver) = mpsc::channel();
        let writer_state = state.clone();
        let observer: Arc<dyn Observer> = Arc::new(observer);
        let writer_observer = observer.clone();
        std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || writer::write_forever(&writer_state, &receiver, &*writer_observer))
            .map_err(SpoolError::io(Path::new("spool-writer thread")))?;
        Ok((
            Self {
                state,
                appends,
                dir: options.dir,
                max_bytes: options.max_bytes,
                max_age: options.max_age,
                observer,
                persisted_watermark: Arc::new(Mutex::new(acked)),
                _lock: Arc::new(lock),
            },
            found,
        ))
    }

    /// Appends `payload`; resolves once it is on disk (after an `fsync` shared with the
    /// appends that arrived meanwhile).
    pub async fn append(&self, payload: Vec<u8>) -> Result<Seq, SpoolError> {
        if let Some(refusal) = self.refusal(&self.lock(), payload.len()) {
            return Err(refusal);
        }
        let (done, answer) = oneshot::channel();
        self.appends
            .send(Append { payload, done })
            .map_err(|_| SpoolError::Closed)?;
        answer.await.map_err(|_| SpoolError::Closed)?
    }

    /// Up to `max` unacknowledged records from `from` on, oldest first. The files are read
    /// outside the lock that appends take (blocking I/O: call it off the async runtime's
    /// threads, or accept a short block). A record found damaged is set aside and
    /// acknowledged, and the records after it are read on.
    pub fn read(&self, from: Seq, max: usize) -> Result<Vec<Entry>, SpoolError> {
        self.read_bounded(from, max, u64::MAX)
    }

    /// [`Self::read`], stopping before the records' sizes on disk add up to more than
    /// `max_bytes` (one record is read whatever its size): what a reader holds in memory.
    pub fn read_bounded(
        &self,
        from: Seq,
        max: usize,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, SpoolError> {
        let mut plan = Vec::new();
        {
            let state = self.lock();
            let mut wanted = max;
            let mut bytes_left = max_bytes;
            for segment in state.segments.values() {
                if wanted == 0 || (bytes_left == 0 && !plan.is_empty()) {
                    break;
                }
                if segment.next_seq() <= from {
                    continue;
                }
                let positions = segment.positions(from, wanted, &mut bytes_left, plan.is_empty());
                wanted -= positions.len();
                if !positions.is_empty() {
                    plan.push((segment.path().to_owned(), positions));
                }
            }
        }
        let mut entries = Vec::new();
        for (path, positions) in plan {
            for read in segment::read_at(&path, &positions)? {
                match read {
                    Ok(entry) => entries.push(entry),
                    Err(damage) => {
                        let count = recovery::set_aside_damage(&self.dir, &damage)?;
                        self.observer.damaged(count);
                        for seq in damage.seqs {
                            self.acknowledge(seq)?;
                        }
                    }
                }
            }
        }
        Ok(entries)
    }

    /// Marks `seq` as forwarded. A segment whose records are all acknowledged (and that is
    /// not being written) is deleted.
    pub fn acknowledge(&self, seq: Seq) -> Result<(), SpoolError> {
        let done = self.lock().acknowledge(seq);
        if let Some(path) = done {
            std::fs::remove_file(&path).map_err(SpoolError::io(&path))?;
        }
        Ok(())
    }

    /// Moves record `entry` (which can never be delivered: `reason` says why) to
    /// `undeliverable/<seq>.rec`, durably, then acknowledges it. Returns where it went.
    pub fn set_aside(&self, entry: &Entry, reason: &str) -> Result<PathBuf, SpoolError> {
        let path = files::set_aside(&self.dir, &format!("{:020}.rec", entry.seq), &entry.payload)?;
        error!(
            seq = entry.seq,
            reason,
            path = %path.display(),
            "spooled record set aside as undeliverable"
        );
        self.acknowledge(entry.seq)?;
        Ok(path)
    }

    /// What `undeliverable/` holds, after deleting the files written more than `retention`
    /// ago (none when `None`): set-aside records are webhook bodies, personal data, kept only
    /// as long as the operators need to act on them. Blocking I/O: call it off the async
    /// runtime's threads.
    pub fn age_set_aside(&self, retention: Option<Duration>) -> Result<SetAside, SpoolError> {
        files::age_set_aside(&self.dir, retention, std::time::SystemTime::now())
    }

    /// Writes down that every record below the oldest unacknowledged one is acknowledged, so
    /// that the next open does not forward them again (write, fsync, rename, directory fsync).
    /// Without it a restart forwards the acknowledged records of undeleted segments again
    /// (same payloads). Cheap when nothing changed. Blocking I/O, outside the lock appends
    /// take: call it off the async runtime's threads.
    pub fn persist_acknowledgements(&self) -> Result<(), SpoolError> {
        let mut persisted = self
            .persisted_watermark
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let watermark = self.lock().watermark();
        if watermark == *persisted {
            return Ok(());
        }
        files::write_watermark(&self.dir, watermark)?;
        *persisted = watermark;
        Ok(())
    }

    /// How many handles on this spool are alive, this one included: its directory lock is
    /// released when the last one is dropped.
    pub fn handles(&self) -> usize {
        Arc::strong_count(&self._lock)
    }

    /// What is waiting.
    pub fn depth(&self) -> Depth {
        let state = self.lock();
        Depth {
            records: state.records,
            bytes: state.bytes,
            oldest: state.oldest(),
        }
    }

    /// The byte bound.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Whether an append of `payload_bytes` would be taken now (not full, not stale).
    pub fn accepts(&self, payload_bytes: usize) -> bool {
        self.refusal(&self.lock(), payload_bytes).is_none()
    }

    /// Why an append of `payload_bytes` would be refused now, if it would.
    fn refusal(&self, state: &State, payload_bytes: usize) -> Option<SpoolError> {
        if state.bytes + HEADER_BYTES + payload_bytes as u64 > self.max_bytes {
            return Some(SpoolError::Full {
                bytes: state.bytes,
                max_bytes: self.max_bytes,
            });
        }
        let oldest = state.oldest().filter(|age| *age > self.max_age)?;
        Some(SpoolError::Stale {
            oldest,
            max_age: self.max_age,
        })
    }

    /// Syncs and records written so far: their ratio is the mean group-commit batch.
    pub fn syncs(&self) -> (u64, u64) {
        self.lock().syncs
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests;
