//! Webhook secrets: loaded from environment variables and files, compared in constant time,
//! file-based ones re-read periodically so a rotated Kubernetes Secret applies without a
//! restart. A file emptied or deleted since disables its slot (the way to revoke a leaked
//! secret at once); at startup every configured secret must be there.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use tracing::warn;

use crate::settings::SourceSettings;

/// One secret. Never printed.
#[derive(Clone, PartialEq, Eq)]
struct Secret(Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The shortest webhook secret taken, in bytes: the secret is VoiceHub's only authentication,
/// and a short one can be guessed.
pub const MIN_SECRET_BYTES: usize = 16;

/// Why a secret could not be loaded. Names where it comes from, never its value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The environment variable is unset or empty.
    #[error("environment variable {0} is unset or empty")]
    Env(String),
    /// The file could not be read.
    #[error("secret file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file holds nothing but whitespace.
    #[error("secret file {0} is empty")]
    EmptyFile(PathBuf),
    /// Shorter than [`MIN_SECRET_BYTES`].
    #[error("the secret of {from} is {bytes} bytes long: at least {MIN_SECRET_BYTES} are required")]
    TooShort {
        /// Where it comes from: `environment variable NAME` or `file PATH`.
        from: String,
        /// Its length.
        bytes: usize,
    },
}

/// The result of checking a presented secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Matches the active secret in this slot (env secrets first, then files, in config order).
    Accepted {
        /// The slot that matched.
        slot: usize,
    },
    /// No `x-webhook-secret` header.
    Missing,
    /// The header matches no active secret.
    Mismatch,
}

/// The active secrets of one source.
#[derive(Debug)]
pub struct SourceSecrets {
    env: Vec<Secret>,
    files: Vec<PathBuf>,
    /// Per file, its secret; `None` while the file is empty or gone (the slot disabled).
    file_secrets: RwLock<Vec<Option<Secret>>>,
}

impl SourceSecrets {
    /// Loads every secret of a source; any missing one is an error (a startup error).
    pub fn load(settings: &SourceSettings) -> Result<Arc<Self>, SecretError> {
        Self::load_with(settings, |name| std::env::var(name).ok())
    }

    /// [`Self::load`], the environment read through `env`.
    fn load_with(
        settings: &SourceSettings,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Arc<Self>, SecretError> {
        let env = settings
            .secret_envs
            .iter()
            .map(|name| match env(name) {
                Some(value) if !value.is_empty() => long_enough(value.into_bytes(), || {
                    format!("environment variable {name}")
                }),
                _ => Err(SecretError::Env(name.clone())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let file_secrets = settings
            .secret_files
            .iter()
            .map(|path| read_secret_file(path).map(Some))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(Self {
            env,
            files: settings.secret_files.clone(),
            file_secrets: RwLock::new(file_secrets),
        }))
    }

    /// Whether some secrets come from files (and so need reloading).
    pub fn has_files(&self) -> bool {
        !self.files.is_empty()
    }

    /// Re-reads the secret files. A file that is empty or gone disables its slot (logged);
    /// any other failure to read one, or a secret too short, keeps every previous secret active
    /// (all or nothing).
    /// Returns whether anything changed.
    pub fn reload(&self) -> Result<bool, SecretError> {
        let fresh = self
            .files
            .iter()
            .map(|path| match read_secret_file(path) {
                Ok(secret) => Ok(Some(secret)),
                Err(SecretError::EmptyFile(_)) => Ok(None),
                Err(SecretError::File { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    Ok(None)
                }
                Err(error) => Err(error),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut current = self
            .file_secrets
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        for (slot, (path, (was, now))) in self
            .files
            .iter()
            .zip(current.iter().zip(&fresh))
            .enumerate()
        {
            if was.is_some() && now.is_none() {
                warn!(
                    path = %path.display(),
                    slot = self.env.len() + slot,
                    "webhook secret file empty or gone: its secret is no longer accepted"
                );
            }
        }
        let changed = *current != fresh;
        *current = fresh;
        Ok(changed)
    }

    /// Secret files that are empty or gone since startup (their slots accept nothing).
    pub fn disabled(&self) -> usize {
        self.file_secrets
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|secret| secret.is_none())
            .count()
    }

    /// Checks a presented secret against every active one. The comparison takes the same time
    /// whichever secret (if any) matches and wherever the first differing byte is.
    pub fn check(&self, presented: Option<&[u8]>) -> AuthOutcome {
        let Some(presented) = presented else {
            return AuthOutcome::Missing;
        };
        let files = self
            .file_secrets
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let mut matched = None;
        let files = files.iter().map(Option::as_ref);
        for (slot, secret) in self.env.iter().map(Some).chain(files).enumerate() {
            let Some(secret) = secret else {
                continue;
            };
            if constant_time_eq(&secret.0, presented) && matched.is_none() {
                matched = Some(slot);
            }
        }
        match matched {
            Some(slot) => AuthOutcome::Accepted { slot },
            None => AuthOutcome::Mismatch,
        }
    }

    /// How many secrets are active (the slot labels are `0..count`).
    pub fn count(&self) -> usize {
        self.env.len() + self.files.len()
    }
}

fn read_secret_file(path: &Path) -> Result<Secret, SecretError> {
    let bytes = std::fs::read(path).map_err(|source| SecretError::File {
        path: path.to_owned(),
        source,
    })?;
    let trimmed = bytes.trim_ascii_end();
    if trimmed.is_empty() {
        return Err(SecretError::EmptyFile(path.to_owned()));
    }
    long_enough(trimmed.to_vec(), || format!("file {}", path.display()))
}

fn long_enough(bytes: Vec<u8>, from: impl FnOnce() -> String) -> Result<Secret, SecretError> {
    if bytes.len() < MIN_SECRET_BYTES {
        return Err(SecretError::TooShort {
            from: from(),
            bytes: bytes.len(),
        });
    }
    Ok(Secret(bytes))
}

/// Equality whose running time depends only on the lengths, not on the contents.
fn constant_time_eq(expected: &[u8], presented: &[u8]) -> bool {
    let mut difference = expected.len() ^ presented.len();
    for (i, p) in presented.iter().enumerate() {
        let e = expected.get(i).copied().unwrap_or(0);
        difference |= usize::from(e ^ p);
    }
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn source(files: &[&Path]) -> SourceSettings {
        SourceSettings {
            secret_envs: Vec::new(),
            secret_files: files.iter().map(|p| p.to_path_buf()).collect(),
            secret_reload_ms: 1_000,
        }
    }

    fn write(file: &mut tempfile::NamedTempFile, text: &str) {
        file.as_file_mut().set_len(0).unwrap();
        std::fs::write(file.path(), text).unwrap();
        file.flush().unwrap();
    }

    #[test]
    fn constant_time_eq_is_plain_equality() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"secret", b"secre"));
        assert!(!constant_time_eq(b"secret", b""));
    }

    #[test]
    fn either_of_two_file_secrets_is_accepted_with_its_slot() {
        let mut current = tempfile::NamedTempFile::new().unwrap();
        let mut next = tempfile::NamedTempFile::new().unwrap();
        write(&mut current, "old-webhook-secret\n");
        write(&mut next, "new-webhook-secret");
        let secrets = SourceSecrets::load(&source(&[current.path(), next.path()])).unwrap();

        assert_eq!(
            secrets.check(Some(b"old-webhook-secret")),
            AuthOutcome::Accepted { slot: 0 }
        );
        assert_eq!(
            secrets.check(Some(b"new-webhook-secret")),
            AuthOutcome::Accepted { slot: 1 }
        );
        assert_eq!(
            secrets.check(Some(b"old-webhook-secret\n")),
            AuthOutcome::Mismatch
        );
        assert_eq!(secrets.check(None), AuthOutcome::Missing);
    }

    #[test]
    fn a_rotated_file_applies_on_reload_and_an_emptied_or_deleted_one_disables_its_slot() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let mut other = tempfile::NamedTempFile::new().unwrap();
        write(&mut file, "first-webhook-secret");
        write(&mut other, "other-webhook-secret");
        let secrets = SourceSecrets::load(&source(&[file.path(), other.path()])).unwrap();

        write(&mut file, "second-webhook-secret");
        assert!(secrets.reload().unwrap());
        assert_eq!(
            secrets.check(Some(b"first-webhook-secret")),
            AuthOutcome::Mismatch
        );
        assert_eq!(
            secrets.check(Some(b"second-webhook-secret")),
            AuthOutcome::Accepted { slot: 0 }
        );

        // Emptied: the leaked secret is refused at once, the other slot keeps its number.
        write(&mut file, "  \n");
        assert!(secrets.reload().unwrap());
        assert_eq!(
            secrets.check(Some(b"second-webhook-secret")),
            AuthOutcome::Mismatch
        );
        assert_eq!(secrets.check(Some(b"")), AuthOutcome::Mismatch);
        assert_eq!(
            secrets.check(Some(b"other-webhook-secret")),
            AuthOutcome::Accepted { slot: 1 }
        );
        assert_eq!(secrets.disabled(), 1);

        // Written again: accepted again.
        write(&mut file, "third-webhook-secret");
        assert!(secrets.reload().unwrap());
        assert_eq!(
            secrets.check(Some(b"third-webhook-secret")),
            AuthOutcome::Accepted { slot: 0 }
        );
        assert_eq!(secrets.disabled(), 0);

        // Deleted: the same.
        let path = other.path().to_owned();
        other.close().unwrap();
        assert!(secrets.reload().unwrap());
        assert_eq!(
            secrets.check(Some(b"other-webhook-secret")),
            AuthOutcome::Mismatch
        );
        assert_eq!(secrets.disabled(), 1);
        assert!(!path.exists());
    }

    #[test]
    fn a_file_that_cannot_be_read_keeps_every_previous_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "kept-webhook-secret").unwrap();
        let secrets = SourceSecrets::load(&source(&[&path])).unwrap();

        // A directory where the file was: a read error that is neither "empty" nor "gone".
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert!(matches!(secrets.reload(), Err(SecretError::File { .. })));
        assert_eq!(
            secrets.check(Some(b"kept-webhook-secret")),
            AuthOutcome::Accepted { slot: 0 }
        );
    }

    #[test]
    fn a_secret_shorter_than_the_minimum_is_refused_at_load_and_never_taken_on_reload() {
        // Arrange
        let mut file = tempfile::NamedTempFile::new().unwrap();
        write(&mut file, "fifteen-bytes!!\n");
        let variable = "WEBHOOK_SECRET";
        let from_env = SourceSettings {
            secret_envs: vec![variable.to_owned()],
            ..source(&[])
        };

        // Act
        let from_file = SourceSecrets::load(&source(&[file.path()]));
        let from_env = SourceSecrets::load_with(&from_env, |_| Some("short".to_owned()));

        // Assert: refused, naming where it comes from and its length, never its value.
        let text = from_file.unwrap_err().to_string();
        assert!(
            text.contains(&format!("file {}", file.path().display())),
            "{text}"
        );
        assert!(text.contains("15 bytes long: at least 16"), "{text}");
        assert!(!text.contains("fifteen"), "{text}");
        let text = from_env.unwrap_err().to_string();
        assert!(
            text.contains(&format!("environment variable {variable} is 5 bytes long")),
            "{text}"
        );

        // A reload to a short secret keeps the one in use.
        write(&mut file, "sixteen-bytes!!!");
        let secrets = SourceSecrets::load(&source(&[file.path()])).unwrap();
        write(&mut file, "short");
        assert!(matches!(
            secrets.reload(),
            Err(SecretError::TooShort { bytes: 5, .. })
        ));
        assert_eq!(
            secrets.check(Some(b"sixteen-bytes!!!")),
            AuthOutcome::Accepted { slot: 0 }
        );
        assert_eq!(secrets.check(Some(b"short")), AuthOutcome::Mismatch);
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        write(&mut file, "hunter2-webhook-secret");
        let secrets = SourceSecrets::load(&source(&[file.path()])).unwrap();
        assert!(!format!("{secrets:?}").contains("hunter2-webhook-secret"));
    }
}
