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
mod segment;
mod state;
mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::Duration;

use tokio::sync::oneshot;
use tracing::{error, info, warn};

pub use files::UNDELIVERABLE_DIR;
use segment::{Damage, HEADER_BYTES, Segment};
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
        std::fs::create_dir_all(&options.dir).map_err(SpoolError::io(&options.dir))?;
        let lock = lock_dir(&options.dir)?;
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&options.dir)
            .map_err(SpoolError::io(&options.dir))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
            .collect();
        paths.sort();
        let mut recovery = Recovery::default();
        let mut segments = BTreeMap::new();
        let acked = files::read_watermark(&options.dir);
        // Never reuse a sequence number below the watermark: it would count as acknowledged.
        let mut next_seq = acked;
        for path in paths {
            let (mut segment, found) = Segment::recover(&path)?;
            if !found.torn.is_empty() {
                recovery.torn += 1;
                let name = format!("{:020}.torn", segment.first_seq());
                let aside = files::set_aside(&options.dir, &name, &found.torn)?;
                warn!(
                    path = %path.display(),
                    aside = %aside.display(),
                    "spool segment had a torn end; cut off and set aside"
                );
            }
            for damage in &found.damaged {
                if *damage.seqs.end() < acked {
                    // Forwarded before it was damaged: nothing to set aside.
                    warn!(
                        first = damage.seqs.start(),
                        last = damage.seqs.end(),
                        "damaged spool records, already forwarded"
                    );
                    continue;
                }
                recovery.damaged += set_aside_damage(&options.dir, damage)?;
            }
            next_seq = next_seq.max(segment.next_seq());
            for seq in segment.first_seq()..acked.min(segment.next_seq()) {
                segment.acknowledge(seq);
            }
            if segment.all_acknowledged() {
                std::fs::remove_file(&path).map_err(SpoolError::io(&path))?;
                continue;
            }
            recovery.records += segment.unacknowledged();
            segments.insert(segment.first_seq(), segment);
        }
        if recovery.damaged > 0 {
            observer.damaged(recovery.damaged);
        }
        let bytes = segments.values().map(Segment::bytes).sum();
        info!(
            records = recovery.records,
            torn = recovery.torn,
            damaged = recovery.damaged,
            "spool opened"
        );
        let state = Arc::new(Mutex::new(State {
            dir: options.dir.clone(),
            segment_bytes: options.segment_bytes,
            segments,
            next_seq,
            bytes,
            records: recovery.records,
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
            recovery,
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
                        let count = set_aside_damage(&self.dir, &damage)?;
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

/// Takes the directory's lock file: one process per spool directory.
fn lock_dir(dir: &Path) -> Result<std::fs::File, SpoolError> {
    let lock_path = dir.join("LOCK");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(SpoolError::io(&lock_path))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(SpoolError::Locked(dir.to_owned())),
        Err(std::fs::TryLockError::Error(error)) => Err(SpoolError::io(&lock_path)(error)),
    }
}

/// Writes damaged bytes to `undeliverable/<first>-<last>.damaged`; the records they held.
fn set_aside_damage(dir: &Path, damage: &Damage) -> Result<u64, SpoolError> {
    let (first, last) = (*damage.seqs.start(), *damage.seqs.end());
    let path = files::set_aside(
        dir,
        &format!("{first:020}-{last:020}.damaged"),
        &damage.bytes,
    )?;
    let records = last - first + 1;
    error!(
        first,
        last,
        path = %path.display(),
        "damaged spool records set aside (checksum mismatch)"
    );
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(dir: &Path) -> Options {
        Options {
            dir: dir.to_owned(),
            segment_bytes: 1024,
            max_bytes: 1 << 20,
            max_age: Duration::from_secs(3600),
        }
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
            .collect();
        files.sort();
        files
    }

    fn payloads(entries: &[Entry]) -> Vec<Vec<u8>> {
        entries.iter().map(|e| e.payload.clone()).collect()
    }

    #[tokio::test]
    async fn a_bounded_read_stops_at_a_record_too_large_for_it_not_after_it() {
        // Segment one holds a small and a large record, segment two a small one: a bound with
        // room for the small records but not the large one must stop after the first, or the
        // large one would be passed over (and the forwarder reads on from the last it got).
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(options(dir.path())).unwrap();
        for size in [100, 900, 100] {
            spool.append(vec![7; size]).await.unwrap();
        }
        assert_eq!(segment_files(dir.path()).len(), 2, "1 KiB segments");
        let bound = 2 * (HEADER_BYTES + 100);
        let entries = spool.read_bounded(0, 100, bound).unwrap();
        assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [0]);
        let entries = spool.read_bounded(1, 100, bound).unwrap();
        assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [1]);
    }

    #[tokio::test]
    async fn appended_records_read_back_oldest_first_and_acknowledged_segments_go() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, recovery) = Spool::open(options(dir.path())).unwrap();
        assert_eq!(recovery, Recovery::default());
        let mut seqs = Vec::new();
        for i in 0..40u8 {
            seqs.push(spool.append(vec![i; 100]).await.unwrap());
        }
        assert_eq!(seqs, (0..40).collect::<Vec<_>>());
        assert!(segment_files(dir.path()).len() > 2, "1 KiB segments roll");

        let entries = spool.read(0, 100).unwrap();
        assert_eq!(
            payloads(&entries),
            (0..40u8).map(|i| vec![i; 100]).collect::<Vec<_>>()
        );
        assert_eq!(spool.read(35, 100).unwrap().len(), 5);
        // A byte bound, across segments (a 1 KiB segment holds 8): whole records only, and
        // always one, however small the bound.
        let size = HEADER_BYTES + 100;
        let seqs_read = |max_bytes| -> Vec<Seq> {
            let entries = spool.read_bounded(2, 100, max_bytes).unwrap();
            entries.iter().map(|entry| entry.seq).collect()
        };
        assert_eq!(seqs_read(0), [2]);
        assert_eq!(seqs_read(size - 1), [2]);
        assert_eq!(seqs_read(2 * size), [2, 3]);
        assert_eq!(seqs_read(20 * size - 1), (2..21).collect::<Vec<_>>());
        assert_eq!(seqs_read(u64::MAX), (2..40).collect::<Vec<_>>());
        let depth = spool.depth();
        assert_eq!(depth.records, 40);
        assert_eq!(depth.bytes, 40 * (HEADER_BYTES + 100));
        assert!(depth.oldest.is_some());

        for seq in seqs {
            spool.acknowledge(seq).unwrap();
        }
        assert_eq!(spool.depth(), Depth::default());
        assert!(spool.read(0, 100).unwrap().is_empty());
        // Only the active segment is left.
        assert_eq!(segment_files(dir.path()).len(), 1);
    }

    #[tokio::test]
    async fn unacknowledged_records_survive_a_restart_and_keep_their_order() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (spool, _) = Spool::open(options(dir.path())).unwrap();
            for i in 0..30u8 {
                spool.append(vec![i; 50]).await.unwrap();
            }
            for seq in 0..10 {
                spool.acknowledge(seq).unwrap();
            }
        }
        let (spool, recovery) = Spool::open(options(dir.path())).unwrap();
        // Acknowledgements are not persisted and the first segment still holds 10..=13
        // unacknowledged: all 30 come back (a restart forwards 0..=9 again, same ce_id).
        assert_eq!(
            recovery,
            Recovery {
                records: 30,
                ..Recovery::default()
            }
        );
        let entries = spool.read(0, 100).unwrap();
        assert_eq!(
            payloads(&entries),
            (0..30u8).map(|i| vec![i; 50]).collect::<Vec<_>>()
        );
        assert_eq!(spool.append(b"next".to_vec()).await.unwrap(), 30);
    }

    #[tokio::test]
    async fn persisted_acknowledgements_are_not_forwarded_again_and_sequences_go_on() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (spool, _) = Spool::open(options(dir.path())).unwrap();
            for i in 0..30u8 {
                spool.append(vec![i; 50]).await.unwrap();
            }
            for seq in (0..12).chain([20]) {
                spool.acknowledge(seq).unwrap();
            }
            spool.persist_acknowledgements().unwrap();
        }
        let (spool, recovery) = Spool::open(options(dir.path())).unwrap();
        // Below the watermark (12) nothing comes back; 20 was acknowledged out of order, above
        // it, and is forwarded again.
        assert_eq!(recovery.records, 18);
        let seqs: Vec<Seq> = spool.read(0, 100).unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (12..30).collect::<Vec<_>>());

        for seq in 12..30 {
            spool.acknowledge(seq).unwrap();
        }
        spool.persist_acknowledgements().unwrap();
        drop(spool);
        let (spool, recovery) = Spool::open(options(dir.path())).unwrap();
        assert_eq!(recovery.records, 0);
        assert!(
            segment_files(dir.path()).is_empty(),
            "all acknowledged: deleted"
        );
        // Numbering goes on above the watermark, never below it.
        assert_eq!(spool.append(b"next".to_vec()).await.unwrap(), 30);
    }

    #[tokio::test]
    async fn a_torn_last_record_is_dropped_and_counted_and_every_earlier_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (spool, _) = Spool::open(options(dir.path())).unwrap();
            for i in 0..5u8 {
                spool.append(vec![i; 20]).await.unwrap();
            }
        }
        let file = segment_files(dir.path()).pop().unwrap();
        let len = std::fs::metadata(&file).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .unwrap()
            .set_len(len - 7)
            .unwrap();

        let (spool, recovery) = Spool::open(options(dir.path())).unwrap();

        assert_eq!(
            recovery,
            Recovery {
                records: 4,
                torn: 1,
                damaged: 0
            }
        );
        let entries = spool.read(0, 100).unwrap();
        assert_eq!(
            payloads(&entries),
            (0..4u8).map(|i| vec![i; 20]).collect::<Vec<_>>()
        );
        assert_eq!(
            std::fs::metadata(&file).unwrap().len(),
            4 * (HEADER_BYTES + 20)
        );
    }

    fn aside_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.join(UNDELIVERABLE_DIR))
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    #[tokio::test]
    async fn a_damaged_record_in_a_closed_segment_costs_only_itself_on_opening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (spool, _) = Spool::open(options(dir.path())).unwrap();
            for i in 0..30u8 {
                spool.append(vec![i; 100]).await.unwrap();
            }
        }
        let files = segment_files(dir.path());
        let first = &files[0];
        let mut bytes = std::fs::read(first).unwrap();
        let record = (HEADER_BYTES + 100) as usize;
        bytes[record + 30] ^= 0xff; // a flipped byte in record 1's payload
        bytes[3 * record + 1] ^= 0x01; // and one in record 3's length
        std::fs::write(first, bytes).unwrap();

        let (spool, recovery) = Spool::open(options(dir.path())).unwrap();

        assert_eq!(
            recovery,
            Recovery {
                records: 28,
                torn: 0,
                damaged: 2
            }
        );
        let seqs: Vec<Seq> = spool.read(0, 100).unwrap().iter().map(|e| e.seq).collect();
        let expected: Vec<Seq> = (0..30).filter(|seq| ![1, 3].contains(seq)).collect();
        assert_eq!(seqs, expected);
        assert_eq!(
            aside_files(dir.path()),
            [
                format!("{:020}-{:020}.damaged", 1, 1),
                format!("{:020}-{:020}.damaged", 3, 3)
            ]
        );
        assert_eq!(spool.depth().records, 28);
    }

    #[tokio::test]
    async fn a_record_damaged_after_opening_is_set_aside_when_read_and_the_rest_flow() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(options(dir.path())).unwrap();
        for i in 0..30u8 {
            spool.append(vec![i; 100]).await.unwrap();
        }
        let first = segment_files(dir.path()).remove(0);
        let mut bytes = std::fs::read(&first).unwrap();
        bytes[(HEADER_BYTES + 100) as usize + 50] ^= 0x04;
        std::fs::write(&first, bytes).unwrap();

        let entries = spool.read(0, 100).unwrap();

        let seqs: Vec<Seq> = entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (0..30).filter(|seq| *seq != 1).collect::<Vec<_>>());
        assert_eq!(spool.depth().records, 29, "the damaged one is acknowledged");
        assert_eq!(aside_files(dir.path()).len(), 1);
        assert_eq!(spool.read(0, 100).unwrap().len(), 29, "and not read again");
    }

    #[tokio::test]
    async fn a_set_aside_record_is_kept_durably_and_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(options(dir.path())).unwrap();
        spool.append(b"too big for Kafka".to_vec()).await.unwrap();
        let entry = spool.read(0, 1).unwrap().remove(0);

        let path = spool.set_aside(&entry, "too_large").unwrap();

        assert_eq!(std::fs::read(path).unwrap(), b"too big for Kafka");
        assert_eq!(spool.depth().records, 0);
    }

    #[tokio::test]
    async fn a_full_spool_refuses_appends_and_keeps_what_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(Options {
            max_bytes: 3 * (HEADER_BYTES + 100),
            ..options(dir.path())
        })
        .unwrap();
        for _ in 0..3 {
            spool.append(vec![1; 100]).await.unwrap();
        }

        let refused = spool.append(vec![2; 100]).await;

        assert!(
            matches!(refused, Err(SpoolError::Full { .. })),
            "{refused:?}"
        );
        assert_eq!(spool.read(0, 10).unwrap().len(), 3);
        spool.acknowledge(0).unwrap();
        assert!(spool.append(vec![3; 100]).await.is_ok(), "room again");
    }

    #[tokio::test]
    async fn a_spool_that_does_not_drain_refuses_appends_once_its_oldest_is_too_old() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(Options {
            max_age: Duration::from_millis(200),
            ..options(dir.path())
        })
        .unwrap();
        let first = spool.append(vec![1; 10]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!spool.accepts(10));

        let refused = spool.append(vec![2; 10]).await;

        assert!(
            matches!(refused, Err(SpoolError::Stale { .. })),
            "{refused:?}"
        );
        spool.acknowledge(first).unwrap();
        assert!(spool.accepts(10));
        assert!(
            spool.append(vec![3; 10]).await.is_ok(),
            "drained: taken again"
        );
    }

    #[tokio::test]
    async fn a_second_spool_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(options(dir.path())).unwrap();

        let second = Spool::open(options(dir.path()));

        assert!(matches!(second, Err(SpoolError::Locked(_))), "{second:?}");
        drop(spool);
        assert!(Spool::open(options(dir.path())).is_ok(), "free once closed");
    }

    #[tokio::test]
    async fn appends_waiting_together_share_one_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(Options {
            segment_bytes: 1 << 20,
            ..options(dir.path())
        })
        .unwrap();
        // The writer cannot take the lock: every append queues up behind the first batch.
        let guard = spool.state.lock().unwrap();
        let answers: Vec<_> = (0..50u8)
            .map(|i| {
                let (done, answer) = oneshot::channel();
                spool
                    .appends
                    .send(Append {
                        payload: vec![i; 10],
                        done,
                    })
                    .unwrap();
                answer
            })
            .collect();
        drop(guard);
        for answer in answers {
            answer.await.unwrap().unwrap();
        }

        let (syncs, records) = spool.syncs();
        assert_eq!(records, 50);
        assert!(syncs <= 2, "{syncs} fsyncs for 50 appends");
        assert_eq!(spool.read(0, 100).unwrap().len(), 50);
    }
}
