//! Field-level parsing rules shared by the event and analysis types.

use serde::{Deserialize, Deserializer, de};

/// Longest identifier accepted (event, call, job, analysis ids). They end up in Kafka keys,
/// headers and the deduplication table, so an unbounded one is refused.
pub(crate) const MAX_ID_LEN: usize = 512;

/// A non-empty identifier of bounded length.
pub(crate) fn id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let id = String::deserialize(deserializer)?;
    check_id(&id).map_err(de::Error::custom)?;
    Ok(id)
}

/// Like [`id`], for an optional field (absent or null is `None`).
pub(crate) fn optional_id<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let id = Option::<String>::deserialize(deserializer)?;
    if let Some(id) = &id {
        check_id(id).map_err(de::Error::custom)?;
    }
    Ok(id)
}

pub(crate) fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty".into());
    }
    if id.len() > MAX_ID_LEN {
        return Err(format!(
            "is {} bytes long, more than the {MAX_ID_LEN} accepted",
            id.len()
        ));
    }
    Ok(())
}

/// An absolute `http` or `https` URL, kept exactly as delivered.
pub(crate) fn absolute_url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    let url = url::Url::parse(&text).map_err(|e| de::Error::custom(format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(de::Error::custom(format!(
            "scheme `{}` is not http or https",
            url.scheme()
        )));
    }
    Ok(text)
}

/// A list of strings that may arrive as a single string; absent or null is empty.
pub(crate) fn one_or_many<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    use serde_json::Value;
    match Option::<Value>::deserialize(deserializer)? {
        None => Ok(Vec::new()),
        Some(Value::String(one)) => Ok(vec![one]),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(index, item)| match item {
                Value::String(text) => Ok(text),
                other => Err(de::Error::custom(format!(
                    "item {index} is {}, expected a string",
                    json_kind(&other)
                ))),
            })
            .collect(),
        Some(other) => Err(de::Error::custom(format!(
            "expected a string or an array of strings, found {}",
            json_kind(&other)
        ))),
    }
}

/// The JSON type of a value, for error messages.
pub(crate) fn json_kind(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
