//! One segment file: its records' positions in memory, appends buffered until the next sync.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::{Entry, Seq, SpoolError};

/// Bytes of one segment to write and sync, taken out of the spool's lock.
#[derive(Debug)]
pub(crate) struct Flush {
    pub(crate) first_seq: Seq,
    path: PathBuf,
    file: File,
    pub(crate) bytes: Vec<u8>,
}

impl Flush {
    /// Appends the bytes to the file and syncs it.
    pub(crate) fn run(&mut self) -> Result<(), SpoolError> {
        self.file
            .write_all(&self.bytes)
            .and_then(|()| self.file.sync_data())
            .map_err(SpoolError::io(&self.path))
    }
}

/// `[len u32][crc32 u32][seq u64][appended_at_ms u64]` before each payload.
pub(crate) const HEADER_BYTES: u64 = 4 + 4 + 8 + 8;

#[derive(Debug)]
pub(crate) struct Segment {
    path: PathBuf,
    /// Open for appending while this is the active segment.
    file: Option<File>,
    first_seq: Seq,
    /// Per record (index `seq - first_seq`): offset, size on disk, append time, acknowledged.
    offsets: Vec<u64>,
    sizes: Vec<u64>,
    appended_at_ms: Vec<u64>,
    acknowledged: Vec<bool>,
    acknowledged_count: u64,
    /// Index of the first unacknowledged record.
    cursor: usize,
    /// Bytes written to the file; `pending` follows them at the next sync.
    written: u64,
    pending: Vec<u8>,
}

fn encode(seq: Seq, appended_at_ms: u64, payload: &[u8], out: &mut Vec<u8>) {
    let mut checked = Vec::with_capacity(16 + payload.len());
    checked.extend_from_slice(&seq.to_le_bytes());
    checked.extend_from_slice(&appended_at_ms.to_le_bytes());
    checked.extend_from_slice(payload);
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&checked).to_le_bytes());
    out.extend_from_slice(&checked);
}

/// The record starting at `bytes[0]`: (seq, appended_at_ms, payload, size), or `None` if it
/// is incomplete or its checksum does not match.
fn decode(bytes: &[u8]) -> Option<(Seq, u64, &[u8], u64)> {
    let (seq, len) = peek(bytes)?;
    decode_checked(bytes, seq, len)
}

/// The sequence number and payload length a record header at `bytes[0]` claims (unchecked).
fn peek(bytes: &[u8]) -> Option<(Seq, usize)> {
    let header = bytes.get(..HEADER_BYTES as usize)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    let seq = u64::from_le_bytes(header[8..16].try_into().ok()?);
    Some((seq, len))
}

fn decode_checked(bytes: &[u8], seq: Seq, len: usize) -> Option<(Seq, u64, &[u8], u64)> {
    let crc = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    let checked = bytes.get(8..HEADER_BYTES as usize + len)?;
    if crc32fast::hash(checked) != crc {
        return None;
    }
    let at = u64::from_le_bytes(checked[8..16].try_into().ok()?);
    Some((seq, at, &checked[16..], HEADER_BYTES + len as u64))
}

/// After a damaged record at `bytes[damaged]` whose sequence number should have been
/// `expected`: the offset and sequence number of the next valid record, if one follows. Valid
/// means a matching checksum and a sequence number that continues the segment (above
/// `expected`, by no more than the records the damaged span can hold), so a payload that
/// happens to contain a record-like run is not mistaken for one.
fn resync(bytes: &[u8], damaged: usize, expected: Seq) -> Option<(usize, Seq)> {
    (damaged + 1..bytes.len()).find_map(|at| {
        let (seq, len) = peek(&bytes[at..])?;
        let most_missing = (at - damaged) as u64 / HEADER_BYTES + 1;
        let continues = seq > expected && seq - expected <= most_missing;
        (continues && decode_checked(&bytes[at..], seq, len).is_some()).then_some((at, seq))
    })
}

/// Records of a segment found damaged (a checksum that does not match, with valid records
/// after them): their sequence numbers and the bytes they occupied, to be set aside.
#[derive(Debug)]
pub(crate) struct Damage {
    /// The first and last sequence numbers the damaged bytes held.
    pub(crate) seqs: std::ops::RangeInclusive<Seq>,
    /// The damaged bytes, as found.
    pub(crate) bytes: Vec<u8>,
}

/// What recovering a segment found besides its valid records.
#[derive(Debug, Default)]
pub(crate) struct Found {
    /// The bytes cut off at an incomplete or corrupt end (empty if there was none).
    pub(crate) torn: Vec<u8>,
    /// Damaged records followed by valid ones.
    pub(crate) damaged: Vec<Damage>,
}

/// Where a record to read back lies (taken under the spool's lock, read outside it).
#[derive(Debug)]
pub(crate) struct Position {
    seq: Seq,
    offset: u64,
    size: u64,
}

/// A record read back, or the raw bytes of one whose checksum no longer matches.
pub(crate) type ReadBack = Result<Entry, Damage>;

impl Segment {
    /// A new, empty, active segment whose first record will be `first_seq`.
    pub(crate) fn create(dir: &Path, first_seq: Seq) -> Result<Self, SpoolError> {
        let path = dir.join(format!("{first_seq:020}.seg"));
        let file = crate::files::private_file()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(SpoolError::io(&path))?;
        // The new name must survive a crash too.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(SpoolError::io(dir))?;
        Ok(Self::empty(path, Some(file), first_seq))
    }

    fn empty(path: PathBuf, file: Option<File>, first_seq: Seq) -> Self {
        Self {
            path,
            file,
            first_seq,
            offsets: Vec::new(),
            sizes: Vec::new(),
            appended_at_ms: Vec::new(),
            acknowledged: Vec::new(),
            acknowledged_count: 0,
            cursor: 0,
            written: 0,
            pending: Vec::new(),
        }
    }

    /// Reads a segment left by an earlier run: every valid record in order. A damaged record
    /// followed by valid ones costs only itself: it is reported (to be set aside) and counts
    /// as acknowledged. An incomplete or corrupt end (a crash during a write) is truncated.
    /// Returns the (sealed) segment and what was found.
    pub(crate) fn recover(path: &Path) -> Result<(Self, Found), SpoolError> {
        let first_seq = path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .and_then(|stem| stem.parse::<Seq>().ok())
            .ok_or_else(|| SpoolError::Io {
                path: path.to_owned(),
                source: std::io::Error::other("not a segment name"),
            })?;
        let bytes = std::fs::read(path).map_err(SpoolError::io(path))?;
        let mut segment = Self::empty(path.to_owned(), None, first_seq);
        let mut found = Found::default();
        let mut offset = 0usize;
        while offset < bytes.len() {
            let expected = segment.next_seq();
            match decode(&bytes[offset..]) {
                Some((seq, at, _, size)) if seq == expected => {
                    segment.push(offset as u64, size, at);
                    offset += size as usize;
                }
                _ => {
                    let Some((next, next_seq)) = resync(&bytes, offset, expected) else {
                        break;
                    };
                    // Placeholders, acknowledged: their bytes are set aside instead.
                    segment.written = next as u64;
                    for seq in expected..next_seq {
                        let size = if seq == expected { next - offset } else { 0 };
                        segment.push(offset as u64, size as u64, 0);
                        segment.acknowledge(seq);
                    }
                    found.damaged.push(Damage {
                        seqs: expected..=next_seq - 1,
                        bytes: bytes[offset..next].to_vec(),
                    });
                    offset = next;
                }
            }
        }
        segment.written = offset as u64;
        found.torn = bytes[offset..].to_vec();
        let offset = offset as u64;
        if !found.torn.is_empty() {
            let file = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(SpoolError::io(path))?;
            file.set_len(offset).map_err(SpoolError::io(path))?;
            file.sync_all().map_err(SpoolError::io(path))?;
        }
        Ok((segment, found))
    }

    fn push(&mut self, offset: u64, size: u64, appended_at_ms: u64) {
        self.offsets.push(offset);
        self.sizes.push(size);
        self.appended_at_ms.push(appended_at_ms);
        self.acknowledged.push(false);
    }

    /// Buffers a record (written and synced by [`Self::sync`]); its size on disk.
    pub(crate) fn append(
        &mut self,
        seq: Seq,
        appended_at_ms: u64,
        payload: &[u8],
    ) -> Result<u64, SpoolError> {
        if self.file.is_none() {
            return Err(SpoolError::Closed);
        }
        let offset = self.bytes_on_disk();
        encode(seq, appended_at_ms, payload, &mut self.pending);
        let size = self.bytes_on_disk() - offset;
        self.push(offset, size, appended_at_ms);
        Ok(size)
    }

    /// Hands over what is buffered, to be written and synced outside the spool's lock
    /// ([`Flush::run`]); `None` if nothing is.
    pub(crate) fn take_pending(&mut self) -> Result<Option<Flush>, SpoolError> {
        let Some(file) = self.file.as_ref() else {
            return Ok(None);
        };
        if self.pending.is_empty() {
            return Ok(None);
        }
        Ok(Some(Flush {
            first_seq: self.first_seq,
            path: self.path.clone(),
            file: file.try_clone().map_err(SpoolError::io(&self.path))?,
            bytes: std::mem::take(&mut self.pending),
        }))
    }

    /// `bytes` handed over by [`Self::take_pending`] are on disk: their records can be read.
    pub(crate) fn mark_written(&mut self, bytes: u64) {
        self.written += bytes;
    }

    /// A flush failed: forgets the records that are not on disk and takes no more appends
    /// (whatever half-written bytes follow `written` are cut off as a torn tail at the next
    /// open). Returns the (records, bytes) forgotten.
    pub(crate) fn abandon_unwritten(&mut self) -> (u64, u64) {
        let keep = self
            .offsets
            .iter()
            .zip(&self.sizes)
            .take_while(|(offset, size)| *offset + *size <= self.written)
            .count();
        let forgotten: u64 = self.sizes[keep..].iter().sum();
        let records = (self.offsets.len() - keep) as u64;
        self.offsets.truncate(keep);
        self.sizes.truncate(keep);
        self.appended_at_ms.truncate(keep);
        self.acknowledged.truncate(keep);
        self.pending.clear();
        self.file = None;
        (records, forgotten)
    }

    /// No more appends (what is buffered must have been taken).
    pub(crate) fn seal(&mut self) {
        self.file = None;
    }

    pub(crate) fn is_sealed(&self) -> bool {
        self.file.is_none()
    }

    /// Where up to `max` unacknowledged, written records with `seq >= from` lie, of at most
    /// `bytes_left` bytes in all (taken off it; set to 0 when a record did not fit, so that no
    /// later record is read past it); `first`: nothing read before, so one record is taken
    /// whatever its size.
    pub(crate) fn positions(
        &self,
        from: Seq,
        max: usize,
        bytes_left: &mut u64,
        first: bool,
    ) -> Vec<Position> {
        let start = from.saturating_sub(self.first_seq) as usize;
        let mut positions = Vec::new();
        for i in (start.max(self.cursor)..self.offsets.len())
            .filter(|&i| !self.acknowledged[i] && self.offsets[i] + self.sizes[i] <= self.written)
        {
            let size = self.sizes[i];
            if positions.len() == max {
                break;
            }
            if size > *bytes_left && !(first && positions.is_empty()) {
                *bytes_left = 0;
                break;
            }
            *bytes_left = bytes_left.saturating_sub(size);
            positions.push(Position {
                seq: self.first_seq + i as u64,
                offset: self.offsets[i],
                size,
            });
        }
        positions
    }

    /// Marks `seq` acknowledged; its size on disk if it was not already. A record not yet
    /// written (its batch's fsync pending) cannot be acknowledged.
    pub(crate) fn acknowledge(&mut self, seq: Seq) -> Option<u64> {
        let i = usize::try_from(seq.checked_sub(self.first_seq)?).ok()?;
        if *self.acknowledged.get(i)? || self.offsets[i] + self.sizes[i] > self.written {
            return None;
        }
        self.acknowledged[i] = true;
        self.acknowledged_count += 1;
        while self.cursor < self.acknowledged.len() && self.acknowledged[self.cursor] {
            self.cursor += 1;
        }
        Some(self.sizes[i])
    }

    pub(crate) fn all_acknowledged(&self) -> bool {
        self.acknowledged_count == self.records()
    }

    /// Sequence number of the oldest record not acknowledged.
    pub(crate) fn first_unacknowledged(&self) -> Option<Seq> {
        (self.cursor < self.offsets.len()).then(|| self.first_seq + self.cursor as u64)
    }

    pub(crate) fn unacknowledged(&self) -> u64 {
        self.records() - self.acknowledged_count
    }

    pub(crate) fn oldest_unacknowledged_ms(&self) -> Option<u64> {
        self.appended_at_ms.get(self.cursor).copied()
    }

    pub(crate) fn records(&self) -> u64 {
        self.offsets.len() as u64
    }

    /// Bytes of the records not yet acknowledged.
    pub(crate) fn bytes(&self) -> u64 {
        (0..self.offsets.len())
            .filter(|&i| !self.acknowledged[i])
            .map(|i| self.sizes[i])
            .sum()
    }

    pub(crate) fn bytes_on_disk(&self) -> u64 {
        self.written + self.pending.len() as u64
    }

    pub(crate) fn first_seq(&self) -> Seq {
        self.first_seq
    }

    pub(crate) fn next_seq(&self) -> Seq {
        self.first_seq + self.records()
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads the records at `positions` of the segment file at `path` (no lock needed: written
/// bytes never change). A record whose checksum or sequence number no longer matches comes
/// back as [`Damage`], so that one bad record costs one record.
pub(crate) fn read_at(path: &Path, positions: &[Position]) -> Result<Vec<ReadBack>, SpoolError> {
    if positions.is_empty() {
        return Ok(Vec::new());
    }
    let mut file = File::open(path).map_err(SpoolError::io(path))?;
    let mut out = Vec::with_capacity(positions.len());
    for position in positions {
        let mut bytes = vec![0; position.size as usize];
        file.seek(SeekFrom::Start(position.offset))
            .and_then(|_| file.read_exact(&mut bytes))
            .map_err(SpoolError::io(path))?;
        out.push(match decode(&bytes) {
            Some((seq, appended_at_ms, payload, _)) if seq == position.seq => Ok(Entry {
                seq,
                appended_at_ms,
                payload: payload.to_vec(),
            }),
            _ => Err(Damage {
                seqs: position.seq..=position.seq,
                bytes,
            }),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(n: u64, payload: usize) -> Vec<u8> {
        let mut bytes = Vec::new();
        for seq in 0..n {
            encode(seq, 7, &vec![seq as u8; payload], &mut bytes);
        }
        bytes
    }

    #[test]
    fn resync_finds_the_record_after_a_damaged_one_and_only_a_continuing_one() {
        let size = HEADER_BYTES as usize + 40;
        let mut bytes = records(4, 40);
        bytes[size + 2] ^= 0x10; // record 1's length field

        assert_eq!(resync(&bytes, size, 1), Some((2 * size, 2)));
        // A record that does not continue the sequence is no resynchronisation point.
        assert_eq!(resync(&bytes, size, 3), None);
        assert_eq!(resync(&bytes[..2 * size + 5], size, 1), None, "torn");
    }
}
