//! A Kafka record as the spool stores it: topic, key, headers and value, exactly what the
//! direct path would produce, so that the forwarder sends the same bytes later (same `ce_id`,
//! same `ce_bridgereceivedat`).
//!
//! Layout (little endian): `[version u8 = 1][topic: u16 len + bytes][key: u8 present, u32 len +
//! bytes][headers: u16 count, each u16 name len + name, u32 value len + value][value: u32 len +
//! bytes]`. The spool's own CRC covers it.

use crate::record::{Record, header};

const VERSION: u8 = 1;

/// Why stored bytes could not be read back as a record (a different bridge version wrote them,
/// or they are damaged despite their checksum).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The layout version is not ours.
    #[error("unknown spooled record version {0}")]
    Version(u8),
    /// The bytes end early or have bytes left over.
    #[error("spooled record is malformed")]
    Malformed,
    /// A header name this bridge does not write.
    #[error("spooled record has an unknown header {0:?}")]
    UnknownHeader(String),
}

/// The spooled form of `record` for `topic`. `None` if a field is too long for the layout
/// (a topic over 64 KiB or more than 65,535 headers: never produced by the bridge).
pub fn encode(topic: &str, record: &Record) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(64 + topic.len() + record.value.len() + 256);
    out.push(VERSION);
    put_u16_bytes(&mut out, topic.as_bytes())?;
    match &record.key {
        Some(key) => {
            out.push(1);
            put_u32_bytes(&mut out, key.as_bytes())?;
        }
        None => out.push(0),
    }
    out.extend_from_slice(&u16::try_from(record.headers.len()).ok()?.to_le_bytes());
    for (name, value) in &record.headers {
        put_u16_bytes(&mut out, name.as_bytes())?;
        put_u32_bytes(&mut out, value.as_bytes())?;
    }
    put_u32_bytes(&mut out, &record.value)?;
    Some(out)
}

/// Reads back what [`encode`] wrote: `(topic, record)`.
pub fn decode(bytes: &[u8]) -> Result<(String, Record), DecodeError> {
    let mut reader = Reader(bytes);
    let version = reader.u8()?;
    if version != VERSION {
        return Err(DecodeError::Version(version));
    }
    let topic = reader.string(Len::U16)?;
    let key = match reader.u8()? {
        0 => None,
        1 => Some(reader.string(Len::U32)?),
        _ => return Err(DecodeError::Malformed),
    };
    let count = reader.len(Len::U16)?;
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        let name = reader.string(Len::U16)?;
        let name = header::known(&name).ok_or(DecodeError::UnknownHeader(name))?;
        headers.push((name, reader.string(Len::U32)?));
    }
    let value = reader.bytes(Len::U32)?.to_vec();
    if !reader.0.is_empty() {
        return Err(DecodeError::Malformed);
    }
    Ok((
        topic,
        Record {
            key,
            headers,
            value,
        },
    ))
}

fn put_u16_bytes(out: &mut Vec<u8>, bytes: &[u8]) -> Option<()> {
    out.extend_from_slice(&u16::try_from(bytes.len()).ok()?.to_le_bytes());
    out.extend_from_slice(bytes);
    Some(())
}

fn put_u32_bytes(out: &mut Vec<u8>, bytes: &[u8]) -> Option<()> {
    out.extend_from_slice(&u32::try_from(bytes.len()).ok()?.to_le_bytes());
    out.extend_from_slice(bytes);
    Some(())
}

#[derive(Clone, Copy)]
enum Len {
    U16,
    U32,
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Malformed);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn len(&mut self, len: Len) -> Result<usize, DecodeError> {
        let n = match len {
            Len::U16 => u16::from_le_bytes([self.u8()?, self.u8()?]) as usize,
            Len::U32 => {
                let bytes = self.take(4)?;
                u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize
            }
        };
        Ok(n)
    }

    fn bytes(&mut self, len: Len) -> Result<&'a [u8], DecodeError> {
        let n = self.len(len)?;
        self.take(n)
    }

    fn string(&mut self, len: Len) -> Result<String, DecodeError> {
        String::from_utf8(self.bytes(len)?.to_vec()).map_err(|_| DecodeError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: Option<&str>) -> Record {
        Record {
            key: key.map(str::to_owned),
            headers: vec![
                (header::ID, "evt-1".to_owned()),
                (header::RECEIVED_AT, "2026-11-26T05:00:00.123Z".to_owned()),
                (header::CONTENT_TYPE, "application/json".to_owned()),
            ],
            value: br#"{"callId":"c-1"}"#.to_vec(),
        }
    }

    #[test]
    fn a_record_reads_back_exactly_with_and_without_a_key() {
        for key in [Some("c-1"), None] {
            let bytes = encode("voicehub.call-status.v1", &record(key)).unwrap();
            let (topic, back) = decode(&bytes).unwrap();
            assert_eq!(topic, "voicehub.call-status.v1");
            assert_eq!(back, record(key));
        }
    }

    #[test]
    fn damaged_or_foreign_bytes_are_errors_not_panics() {
        let bytes = encode("t", &record(Some("k"))).unwrap();
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), Err(DecodeError::Malformed), "{cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer), Err(DecodeError::Malformed));
        let mut other_version = bytes.clone();
        other_version[0] = 9;
        assert_eq!(decode(&other_version), Err(DecodeError::Version(9)));
        let mut foreign = record(None);
        foreign.headers.push(("x-other", "v".to_owned()));
        let bytes = encode("t", &foreign).unwrap();
        assert_eq!(
            decode(&bytes),
            Err(DecodeError::UnknownHeader("x-other".to_owned()))
        );
    }
}
