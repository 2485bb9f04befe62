//! A durable local queue of byte records for the ingress (the write-ahead spool of
//! `docs/operations.md`): an append is acknowledged once it is on disk, concurrent appends
//! share one `fsync` (group commit), records are read back oldest first, and a segment file is
//! deleted once every record in it is acknowledged (by Kafka, for the ingress).
//!
//! On disk: segment files `<first sequence number, 20 digits>.seg` in one directory, each a run
//! of records `[len u32][crc32 u32][seq u64][appended_at_ms u64][payload]` (little endian; the
//! CRC covers everything after it). Opening a spool validates every record; a torn tail (a
//! crash in the middle of a write) is truncated and counted, and no valid record before it is
//! ever skipped.
//!
//! Not thread-per-append: one writer thread owns the active segment, takes every append waiting
//! in its channel, writes them, syncs once, then answers them all.

mod segment;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;
use tracing::{info, warn};

use segment::{Flush, HEADER_BYTES, Segment};

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

/// Told about every group commit (for metrics).
pub trait SyncObserver: Send + Sync + 'static {
    /// `records` appends were made durable by one write and fsync that took `took`.
    fn synced(&self, records: usize, took: Duration);
}

impl SyncObserver for () {
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
#[derive(Debug, Clone)]
pub struct Spool {
    state: Arc<Mutex<State>>,
    appends: mpsc::Sender<Append>,
    max_bytes: u64,
    max_age: Duration,
    /// Held (locked) for the life of the spool: one process per directory.
    _lock: Arc<std::fs::File>,
}

#[derive(Debug)]
struct State {
    dir: PathBuf,
    segment_bytes: u64,
    /// Every segment with an unacknowledged record, and the active one, by first seq.
    segments: BTreeMap<Seq, Segment>,
    next_seq: Seq,
    /// Unacknowledged bytes.
    bytes: u64,
    records: u64,
    /// Appends per sync, for the group-commit metric: (syncs, records).
    syncs: (u64, u64),
    /// The acknowledgement watermark last written to [`WATERMARK_FILE`].
    persisted_watermark: Seq,
}

/// Holds the acknowledgement watermark: every record below it was acknowledged.
const WATERMARK_FILE: &str = "ACKED";

/// The persisted watermark, 0 if there is none (or it is unreadable: then everything left is
/// forwarded again, which duplicates but never loses).
fn read_watermark(dir: &Path) -> Seq {
    let path = dir.join(WATERMARK_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| {
            warn!(path = %path.display(), "unreadable spool watermark; forwarding everything left");
            0
        }),
        Err(_) => 0,
    }
}

#[derive(Debug)]
struct Append {
    payload: Vec<u8>,
    done: oneshot::Sender<Result<Seq, SpoolError>>,
}

impl Spool {
    /// Opens (or creates) the spool in `options.dir`: validates every segment, truncates a torn
    /// tail, and starts the writer thread.
    pub fn open(options: Options) -> Result<(Self, Recovery), SpoolError> {
        Self::open_observed(options, ())
    }

    /// [`Spool::open`], telling `observer` about every group commit.
    pub fn open_observed(
        options: Options,
        observer: impl SyncObserver,
    ) -> Result<(Self, Recovery), SpoolError> {
        std::fs::create_dir_all(&options.dir).map_err(SpoolError::io(&options.dir))?;
        let lock_path = options.dir.join("LOCK");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(SpoolError::io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(SpoolError::Locked(options.dir.clone()));
            }
            Err(std::fs::TryLockError::Error(error)) => {
                return Err(SpoolError::io(&lock_path)(error));
            }
        }
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&options.dir)
            .map_err(SpoolError::io(&options.dir))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
            .collect();
        paths.sort();
        let mut recovery = Recovery::default();
        let mut segments = BTreeMap::new();
        let acked = read_watermark(&options.dir);
        // Never reuse a sequence number below the watermark: it would count as acknowledged.
        let mut next_seq = acked;
        for path in paths {
            let (mut segment, torn) = Segment::recover(&path)?;
            recovery.torn += torn;
            if torn > 0 {
                warn!(path = %path.display(), torn, "spool segment had a torn end; truncated");
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
        let bytes = segments.values().map(Segment::bytes).sum();
        info!(
            records = recovery.records,
            torn = recovery.torn,
            "spool opened"
        );
        let state = Arc::new(Mutex::new(State {
            dir: options.dir,
            segment_bytes: options.segment_bytes,
            segments,
            next_seq,
            bytes,
            records: recovery.records,
            syncs: (0, 0),
            persisted_watermark: acked,
        }));
        let (appends, receiver) = mpsc::channel();
        let writer_state = state.clone();
        std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || write_forever(&writer_state, &receiver, &observer))
            .map_err(SpoolError::io(Path::new("spool-writer thread")))?;
        Ok((
            Self {
                state,
                appends,
                max_bytes: options.max_bytes,
                max_age: options.max_age,
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

    /// Up to `max` unacknowledged records from `from` on, oldest first.
    pub fn read(&self, from: Seq, max: usize) -> Result<Vec<Entry>, SpoolError> {
        let state = self.lock();
        let mut entries = Vec::new();
        for segment in state.segments.values() {
            if segment.next_seq() <= from {
                continue;
            }
            segment.read(from, max - entries.len(), &mut entries)?;
            if entries.len() >= max {
                break;
            }
        }
        Ok(entries)
    }

    /// Marks `seq` as forwarded. A segment whose records are all acknowledged (and that is
    /// not being written) is deleted.
    pub fn acknowledge(&self, seq: Seq) -> Result<(), SpoolError> {
        let mut state = self.lock();
        let Some((&first, segment)) = state.segments.range_mut(..=seq).next_back() else {
            return Ok(());
        };
        let Some(bytes) = segment.acknowledge(seq) else {
            return Ok(()); // not in it, or acknowledged before
        };
        let done = segment.all_acknowledged() && segment.is_sealed();
        let path = segment.path().to_owned();
        state.bytes -= bytes;
        state.records -= 1;
        if done {
            state.segments.remove(&first);
            std::fs::remove_file(&path).map_err(SpoolError::io(&path))?;
        }
        Ok(())
    }

    /// Writes down that every record below the oldest unacknowledged one is acknowledged, so
    /// that the next open does not forward them again (write, fsync, rename). Without it a
    /// restart forwards the acknowledged records of undeleted segments again (same payloads).
    /// Cheap when nothing changed.
    pub fn persist_acknowledgements(&self) -> Result<(), SpoolError> {
        let mut state = self.lock();
        let watermark = state
            .segments
            .values()
            .find_map(Segment::first_unacknowledged)
            .unwrap_or(state.next_seq);
        if watermark == state.persisted_watermark {
            return Ok(());
        }
        let temporary = state.dir.join(format!("{WATERMARK_FILE}.tmp"));
        let path = state.dir.join(WATERMARK_FILE);
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&temporary)?;
            std::io::Write::write_all(&mut file, watermark.to_string().as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temporary, &path)
        };
        write().map_err(SpoolError::io(&path))?;
        state.persisted_watermark = watermark;
        Ok(())
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

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// The writer thread: batches whatever is waiting, writes, syncs once, answers. Ends when every
/// [`Spool`] handle is dropped.
fn write_forever(
    state: &Mutex<State>,
    receiver: &mpsc::Receiver<Append>,
    observer: &impl SyncObserver,
) {
    const MAX_BATCH: usize = 4096;
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let results = write_batch(state, &batch);
        observer.synced(batch.len(), started.elapsed());
        for (append, result) in batch.into_iter().zip(results) {
            let _ = append.done.send(result);
        }
    }
}

/// Writes a batch: the records are encoded and indexed under the lock, written and synced
/// outside it (so that appends, reads and acknowledgements never wait for an fsync), then made
/// readable. Every append of the batch gets the same outcome.
fn write_batch(state: &Mutex<State>, batch: &[Append]) -> Vec<Result<Seq, SpoolError>> {
    let lock = || state.lock().unwrap_or_else(PoisonError::into_inner);
    let mut flushes = Vec::new();
    let mut seqs = Vec::with_capacity(batch.len());
    let mut outcome = Ok(());
    {
        let mut state = lock();
        for append in batch {
            match state.write(&append.payload, &mut flushes) {
                Ok(seq) => seqs.push(seq),
                Err(error) => {
                    outcome = Err(error);
                    break;
                }
            }
        }
        if let Some(active) = state.segments.values_mut().next_back() {
            match active.take_pending() {
                Ok(flush) => flushes.extend(flush),
                Err(error) => outcome = outcome.and(Err(error)),
            }
        }
    }
    if outcome.is_ok() {
        for flush in &mut flushes {
            if let Err(error) = flush.run() {
                outcome = Err(error);
                break;
            }
        }
    }
    let mut state = lock();
    state.syncs.0 += 1;
    match outcome {
        Ok(()) => {
            for flush in &flushes {
                if let Some(segment) = state.segments.get_mut(&flush.first_seq) {
                    segment.mark_written(flush.bytes.len() as u64);
                }
            }
            state.syncs.1 += seqs.len() as u64;
            seqs.into_iter().map(Ok).collect()
        }
        Err(error) => {
            // Nothing of this batch is known durable: forget it, and write on in a new segment.
            for flush in &flushes {
                if let Some(segment) = state.segments.get_mut(&flush.first_seq) {
                    let (records, bytes) = segment.abandon_unwritten();
                    state.records -= records;
                    state.bytes -= bytes;
                }
            }
            warn!(
                error = &error as &dyn std::error::Error,
                "spool write failed"
            );
            batch.iter().map(|_| Err(error.duplicate())).collect()
        }
    }
}

impl SpoolError {
    /// The same error again, for each append of a failed batch.
    fn duplicate(&self) -> Self {
        match self {
            Self::Full { bytes, max_bytes } => Self::Full {
                bytes: *bytes,
                max_bytes: *max_bytes,
            },
            Self::Io { path, source } => Self::Io {
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            Self::Stale { oldest, max_age } => Self::Stale {
                oldest: *oldest,
                max_age: *max_age,
            },
            Self::Locked(dir) => Self::Locked(dir.clone()),
            Self::Closed => Self::Closed,
        }
    }
}

impl State {
    /// Age of the oldest unacknowledged record.
    fn oldest(&self) -> Option<Duration> {
        let now = now_ms();
        self.segments
            .values()
            .find_map(Segment::oldest_unacknowledged_ms)
            .map(|at| Duration::from_millis(now.saturating_sub(at)))
    }

    /// Buffers one record in the active segment, sealing it and opening a new one when it is
    /// full (the sealed one's buffer goes to `flushes`).
    fn write(&mut self, payload: &[u8], flushes: &mut Vec<Flush>) -> Result<Seq, SpoolError> {
        let seq = self.next_seq;
        let needs_new = match self.segments.values().next_back() {
            Some(active) => active.is_sealed() || active.bytes_on_disk() >= self.segment_bytes,
            None => true,
        };
        if needs_new {
            if let Some((&first, active)) = self.segments.iter_mut().next_back() {
                flushes.extend(active.take_pending()?);
                active.seal();
                if active.all_acknowledged() {
                    let path = active.path().to_owned();
                    self.segments.remove(&first);
                    std::fs::remove_file(&path).map_err(SpoolError::io(&path))?;
                }
            }
            let segment = Segment::create(&self.dir, seq)?;
            self.segments.insert(seq, segment);
        }
        let Some(active) = self.segments.values_mut().next_back() else {
            return Err(SpoolError::Closed);
        };
        let bytes = active.append(seq, now_ms(), payload)?;
        self.next_seq += 1;
        self.bytes += bytes;
        self.records += 1;
        Ok(seq)
    }
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
                torn: 0
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
                torn: 1
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

    #[tokio::test]
    async fn a_corrupt_record_ends_its_segment_there_and_later_segments_are_kept() {
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
        let second_record = (HEADER_BYTES + 100) as usize;
        bytes[second_record + 30] ^= 0xff; // a flipped bit in record 1's payload
        std::fs::write(first, bytes).unwrap();

        let (spool, recovery) = Spool::open(options(dir.path())).unwrap();

        assert_eq!(recovery.torn, 1);
        // Record 0 stays; the rest of the first segment is gone; the later segments are whole.
        let second_first: Seq = files[1]
            .file_stem()
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let seqs: Vec<Seq> = spool.read(0, 100).unwrap().iter().map(|e| e.seq).collect();
        let expected: Vec<Seq> = std::iter::once(0).chain(second_first..30).collect();
        assert_eq!(seqs, expected);
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
