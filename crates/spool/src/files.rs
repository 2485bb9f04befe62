//! The spool's files besides its segments: the acknowledgement watermark and the records set
//! aside in `undeliverable/`. Each write is made durable with its directory entry (file fsync,
//! then directory fsync), so that a crash right after never loses or resurrects one.

use std::io::Write;
use std::path::{Path, PathBuf};

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
        let mut file = std::fs::File::create(&temporary)?;
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
        std::fs::create_dir_all(&aside)?;
        let mut file = std::fs::File::create(&path)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        sync_dir(&aside)?;
        sync_dir(dir)
    };
    write().map_err(SpoolError::io(&path))?;
    Ok(path)
}

/// Makes the directory's entries (a created, renamed or removed file) durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
