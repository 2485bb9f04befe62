//! Opening a spool: its directory locked, every segment validated, a torn end cut off and
//! damaged records set aside, acknowledged segments removed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tracing::{error, warn};

use crate::segment::{Damage, Segment};
use crate::{Recovery, Seq, SpoolError, files};

/// What opening found on disk.
pub(crate) struct Recovered {
    /// The segments still holding unacknowledged records, by first sequence number.
    pub(crate) segments: BTreeMap<Seq, Segment>,
    /// The next sequence number to give out.
    pub(crate) next_seq: Seq,
    /// The acknowledged watermark read back.
    pub(crate) acked: Seq,
    /// What was found.
    pub(crate) recovery: Recovery,
}

/// Validates every segment in `dir` (see the module's doc).
pub(crate) fn recover(dir: &Path) -> Result<Recovered, SpoolError> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(SpoolError::io(dir))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .collect();
    paths.sort();
    let mut recovery = Recovery::default();
    let mut segments = BTreeMap::new();
    let acked = files::read_watermark(dir);
    // Never reuse a sequence number below the watermark: it would count as acknowledged.
    let mut next_seq = acked;
    for path in paths {
        let (mut segment, found) = Segment::recover(&path)?;
        if !found.torn.is_empty() {
            recovery.torn += 1;
            let name = format!("{:020}.torn", segment.first_seq());
            let aside = files::set_aside(dir, &name, &found.torn)?;
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
            recovery.damaged += set_aside_damage(dir, damage)?;
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
    Ok(Recovered {
        segments,
        next_seq,
        acked,
        recovery,
    })
}

/// Takes the directory's lock file: one process per spool directory.
pub(crate) fn lock_dir(dir: &Path) -> Result<std::fs::File, SpoolError> {
    let lock_path = dir.join("LOCK");
    let lock = crate::files::private_file()
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
pub(crate) fn set_aside_damage(dir: &Path, damage: &Damage) -> Result<u64, SpoolError> {
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
