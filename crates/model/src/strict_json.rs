//! JSON parsing that refuses an object holding the same key twice, at any depth. `serde_json`
//! keeps the last value silently, so `{"eventId":"a","eventId":"b"}` would be deduplicated,
//! keyed and routed on a value the sender may not have meant; such a body is refused instead.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Value};

/// Parses `text` like `serde_json::from_slice::<Value>`, duplicate keys being an error.
pub(crate) fn from_slice(text: &[u8]) -> serde_json::Result<Value> {
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    let value = Strict.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// A JSON text read by [`top_level`].
#[derive(Debug, PartialEq)]
pub(crate) enum TopLevel<'a> {
    /// An object's members in their order, with no key twice; a key is borrowed from the
    /// text unless it holds an escape.
    Object(Vec<(Cow<'a, str>, Value)>),
    /// Anything else, as [`from_slice`] reads it.
    Other(Value),
}

/// Parses `text` like [`from_slice`], but leaves a top-level object as its list of members:
/// for a webhook body, whose members are each read once and mostly dropped, that saves the
/// map, a hash per key and a copy of each key (and a UTF-8 check per string: see below).
pub(crate) fn top_level(text: &[u8]) -> serde_json::Result<TopLevel<'_>> {
    let first = text
        .iter()
        .find(|byte| !matches!(byte, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(&b'{') {
        return from_slice(text).map(TopLevel::Other);
    }
    // Checked as UTF-8 once, so that serde_json need not check each string again; a text
    // that is not UTF-8 is read as bytes, for serde_json's own error.
    match std::str::from_utf8(text) {
        Ok(text) => members(serde_json::Deserializer::from_str(text)),
        Err(_) => members(serde_json::Deserializer::from_slice(text)),
    }
}

fn members<'a, R: serde_json::de::Read<'a>>(
    mut deserializer: serde_json::Deserializer<R>,
) -> serde_json::Result<TopLevel<'a>> {
    let members = deserializer.deserialize_map(Members)?;
    deserializer.end()?;
    Ok(TopLevel::Object(members))
}

/// Up to this many members, a new key is checked against the others one by one; past it,
/// through a set (a body may hold many thousands of keys).
const SCANNED_KEYS: usize = 16;

/// Visitor reading an object into its members, with the duplicate check.
struct Members;

impl<'de> Visitor<'de> for Members {
    type Value = Vec<(Cow<'de, str>, Value)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members: Self::Value = Vec::new();
        let mut keys: Option<HashSet<Cow<'de, str>>> = None;
        while let Some(key) = map.next_key_seed(Key)? {
            let taken = match &mut keys {
                Some(keys) => !keys.insert(key.clone()),
                None => members.iter().any(|(taken, _)| *taken == key),
            };
            if taken {
                return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
            }
            members.push((key, map.next_value_seed(Strict)?));
            if keys.is_none() && members.len() > SCANNED_KEYS {
                keys = Some(members.iter().map(|(key, _)| key.clone()).collect());
            }
        }
        Ok(members)
    }
}

/// A key, borrowed from the text when it can be (also the analysis reader's).
pub(crate) struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// Seed and visitor building a [`Value`] with the duplicate check.
#[derive(Clone, Copy)]
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // Finite: JSON text cannot hold anything else.
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            // One lookup for the check and the insert.
            let slot = match object.entry(key) {
                Entry::Occupied(taken) => {
                    let key = taken.key();
                    return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
                }
                Entry::Vacant(slot) => slot,
            };
            slot.insert(map.next_value_seed(self)?);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_value_as_serde_json_without_duplicates() {
        let text = br#"{"a":[1,-2,3.5,1e300,"x",null,true,{"b":{}}],"c":"\u00e9","d":18446744073709551615}"#;
        assert_eq!(
            from_slice(text).unwrap(),
            serde_json::from_slice::<Value>(text).unwrap()
        );
    }

    #[test]
    fn a_duplicate_key_is_an_error_at_any_depth_naming_the_key() {
        for text in [
            &br#"{"eventId":"a","eventId":"b"}"#[..],
            br#"{"x":[{"k":1,"k":1}]}"#,
        ] {
            let error = from_slice(text).unwrap_err().to_string();
            assert!(error.contains("duplicate key"), "{error}");
        }
    }

    #[test]
    fn a_top_level_object_is_its_members_in_order_as_from_slice_reads_them() {
        for text in [
            &br#" {"b":1,"a":{"x":[true]},"\u0063":"\u00e9"} "#[..],
            br#"{}"#,
        ] {
            let TopLevel::Object(members) = top_level(text).unwrap() else {
                panic!("not an object");
            };
            let map: Map<String, Value> = members
                .into_iter()
                .map(|(key, value)| (key.into_owned(), value))
                .collect();
            assert_eq!(Value::Object(map), from_slice(text).unwrap());
        }
        for text in [&b"[1]"[..], b"\"{}\"", b"1", b"null"] {
            assert_eq!(
                top_level(text).unwrap(),
                TopLevel::Other(from_slice(text).unwrap())
            );
        }
    }

    #[test]
    fn a_duplicate_top_level_key_is_an_error_among_few_keys_and_among_many() {
        for count in [2, SCANNED_KEYS, SCANNED_KEYS + 1, 1000] {
            let mut text = String::from("{");
            for n in 0..count {
                text.push_str(&format!("\"k{n}\":{n},"));
            }
            // The last key again, spelled with an escape (an owned key).
            text.push_str(&format!("\"\\u006b{}\":0}}", count - 1));
            let error = top_level(text.as_bytes()).unwrap_err().to_string();
            assert!(
                error.contains(&format!("duplicate key `k{}`", count - 1)),
                "{error}"
            );
            assert_eq!(error, from_slice(text.as_bytes()).unwrap_err().to_string());
        }
    }

    #[test]
    fn top_level_errors_are_from_slices() {
        for text in [
            &b"{"[..],
            b"{\"a\" 1}",
            b"{1:2}",
            b"{} x",
            b"",
            b" ",
            b"{\"a\":}",
            b"{\"a\":\"\xff\"}",
            b"{\"\xc3\":1}",
            b"{\"a\":[\"\xed\xa0\x80\"]}",
        ] {
            assert_eq!(
                top_level(text).unwrap_err().to_string(),
                from_slice(text).unwrap_err().to_string(),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn trailing_garbage_and_deep_nesting_stay_errors() {
        assert!(from_slice(b"{} x").is_err());
        let deep = "[".repeat(100_000);
        assert!(from_slice(deep.as_bytes()).is_err());
        let deep = "{\"a\":".repeat(100_000);
        assert!(top_level(deep.as_bytes()).is_err());
    }
}
