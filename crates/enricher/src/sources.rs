//! A source's access to the analysis API, from its settings: its API key (read from the
//! environment or a file, the file re-read while the enricher runs), its allow-list, and the
//! HTTP client that holds the allow-list's resolver.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::allow_list::AllowList;
use crate::fetch::{Access, ApiKey, SharedKey};
use crate::settings::SourceSettings;

/// Why a source's access could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// An API key could not be loaded.
    #[error("sources.{source_name}: {detail}")]
    ApiKey {
        /// The source.
        source_name: String,
        /// What failed (never the key).
        detail: String,
    },
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
}

/// Reads a key file; the error says what is wrong without the contents.
pub(crate) fn read_key_file(path: &Path) -> Result<ApiKey, String> {
    let key = std::fs::read_to_string(path)
        .map_err(|e| format!("API key file {}: {e}", path.display()))?;
    ApiKey::new(&key).ok_or_else(|| {
        format!(
            "API key file {}: empty or not a valid header value",
            path.display()
        )
    })
}

/// A source whose key comes from a file, re-read while the enricher runs.
#[derive(Debug)]
#[cfg_attr(not(feature = "service"), allow(dead_code))] // read by the service's reload task
pub(crate) struct KeyFile {
    pub(crate) source: String,
    pub(crate) path: PathBuf,
    pub(crate) every: Duration,
    pub(crate) key: SharedKey,
}

/// Source `name`'s key (read as the enricher reads it at startup), its allow-list and its
/// HTTP client: what a preflight (`voicehub check`) probes the analysis API with.
pub fn source_access(
    name: &str,
    source: &SourceSettings,
    connect_timeout: Duration,
) -> Result<Access, SourceError> {
    access(name, source, connect_timeout).map(|(access, _)| access)
}

pub(crate) fn access(
    name: &str,
    source: &SourceSettings,
    connect_timeout: Duration,
) -> Result<(Access, Option<KeyFile>), SourceError> {
    let fail = |detail: String| SourceError::ApiKey {
        source_name: name.to_owned(),
        detail,
    };
    let api_key = match (&source.api_key_env, &source.api_key_file) {
        (Some(var), _) => std::env::var(var)
            .ok()
            .and_then(|key| ApiKey::new(&key))
            .ok_or_else(|| {
                fail(format!(
                    "environment variable {var} is unset, empty or not a valid header value"
                ))
            })?,
        (None, Some(path)) => read_key_file(path).map_err(fail)?,
        (None, None) => return Err(fail("no API key configured".into())),
    };
    let api_key = SharedKey::new(api_key);
    let key_file = source
        .api_key_file
        .as_ref()
        .filter(|_| source.api_key_env.is_none())
        .map(|path| KeyFile {
            source: name.to_owned(),
            path: path.clone(),
            every: Duration::from_millis(source.api_key_reload_ms),
            key: api_key.clone(),
        });
    let allow_list = AllowList::new(source.allowed_hosts.clone(), source.allow_http);
    let access = Access::new(api_key, allow_list, connect_timeout)?;
    Ok((access, key_file))
}
