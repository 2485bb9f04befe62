//! The spool's files besides its segments: the acknowledgement watermark and the records set
//! aside in `undeliverable/`. Each write is made durable with its directory entry (file fsync,
//! then directory fsync), so that a crash right after never loses or resurrects one.
//!
//! Every file the spool creates is readable by its owner only (0600), every directory it
//! creates enterable by its owner only (0700): the records are webhook bodies, personal data.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tracing::warn;

use crate::{Seq, SpoolError};

/// Holds the acknowledgement watermark: every record below it was acknowledged.
const WATERMARK_FILE: &str = "ACKED";
/// Where records that can never be delivered, or are damaged, are set aside.
pub const UNDELIVERABLE_DIR: &str = "undeliverable";

/// The persisted watermark, 0 if there is none (or it is unreadable: then everything left is
/// forwarded again, which duplicates but never loses).
pub(crate) fn read_watermark(dir: &Path) -> Seq {
    let path = dir.join(WATERMARK_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| {
            warn!(path = %path.display(), "unreadable spool watermark; forwarding everything left");
            0
        }),
        Err(_) => 0,
    }
}

/// Replaces the watermark: write a temporary file, fsync it, rename it over the old one,
/// fsync the directory (the rename is only durable then).
pub(crate) fn write_watermark(dir: &Path, watermark: Seq) -> Result<(), SpoolError> {
    let temporary = dir.join(format!("{WATERMARK_FILE}.tmp"));
    let path = dir.join(WATERMARK_FILE);
    let write = || -> std::io::Result<()> {
        let mut file = private_file()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&temporary)?;
        file.write_all(watermark.to_string().as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)?;
        sync_dir(dir)
    };
    write().map_err(SpoolError::io(&path))
}

/// Writes `bytes` to `undeliverable/<name>` under the spool directory, durably.
pub(crate) fn set_aside(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, SpoolError> {
    let aside = dir.join(UNDELIVERABLE_DIR);
    let path = aside.join(name);
    let write = || -> std::io::Result<()> {
        private_dirs(&aside)?;
        let mut file = private_file()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        sync_dir(&aside)?;
        sync_dir(dir)
    };
    write().map_err(SpoolError::io(&path))?;
    Ok(path)
}

/// What `undeliverable/` holds once the files older than the retention are deleted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SetAside {
    /// Files left.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Age of the oldest file left (since it was written); `None` when there is none.
    pub oldest: Option<Duration>,
    /// Deleted by this call: written more than the retention ago.
    pub expired: Vec<PathBuf>,
}

/// Reads `undeliverable/` under `dir` (none yet: empty), deleting each file written more than
/// `retention` before `now` (none when `None`). A file that vanishes meanwhile (produced by the
/// operator CLI) is skipped; one that cannot be read or deleted is logged and skipped. Fails
/// only when the directory itself cannot be read.
pub(crate) fn age_set_aside(
    dir: &Path,
    retention: Option<Duration>,
    now: SystemTime,
) -> Result<SetAside, SpoolError> {
    let aside = dir.join(UNDELIVERABLE_DIR);
    let mut census = SetAside::default();
    let entries = match std::fs::read_dir(&aside) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(census),
        Err(error) => return Err(SpoolError::io(&aside)(error)),
    };
    // An entry that cannot be read or deleted is logged and skipped: it must neither hide what
    // was deleted before it (each deletion is reported) nor stop the ageing of the others.
    let skip = |path: &Path, error: std::io::Error| {
        warn!(path = %path.display(), %error, "undeliverable/ entry not aged");
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(error) => {
                skip(&aside, error);
                continue;
            }
        };
        let path = entry.path();
        let metadata = match entry.metadata() {
            Ok(metadata) if metadata.is_file() => metadata,
            Ok(_) => continue,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => {
                skip(&path, error);
                continue;
            }
        };
        let age = metadata
            .modified()
            .ok()
            .and_then(|written| now.duration_since(written).ok())
            .unwrap_or_default();
        if retention.is_some_and(|retention| age > retention) {
            match std::fs::remove_file(&path) {
                Ok(()) => census.expired.push(path),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => skip(&path, error),
            }
            continue;
        }
        census.files += 1;
        census.bytes += metadata.len();
        census.oldest = census.oldest.max(Some(age));
    }
    if !census.expired.is_empty()
        && let Err(error) = sync_dir(&aside)
    {
        // The deletions happened; only their durability across a power loss is in doubt.
        skip(&aside, error);
    }
    Ok(census)
}

/// Options for a file of the spool: created 0600 (before the umask).
pub(crate) fn private_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(0o600);
    options
}

/// Creates `dir` and any missing parent, each created 0700 (before the umask). Directories
/// that exist keep their mode: a mounted volume's root may not be ours to change.
pub(crate) fn private_dirs(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Makes the directory's entries (a created, renamed or removed file) durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}
