//! Layered configuration: serde defaults, then a TOML file, then environment variables.
//!
//! Environment variables are `VOICEHUB_BRIDGE__SECTION__KEY` (double underscores between
//! levels), e.g. `VOICEHUB_BRIDGE__KAFKA__BOOTSTRAP_SERVERS=kafka:9092`. The file is named by
//! `--config PATH` or `VOICEHUB_BRIDGE_CONFIG`. Every error names the key at fault.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

mod kafka;

pub(crate) use kafka::shown_value;
pub use kafka::{
    CONTRACT_PRODUCER_PROPERTIES, Compression, KafkaSettings, PRODUCER_MESSAGE_MAX_BYTES,
    ProvisionSettings,
};

/// Prefix of configuration environment variables.
pub const ENV_PREFIX: &str = "VOICEHUB_BRIDGE";
/// Environment variable naming the configuration file (when `--config` is not given).
pub const CONFIG_PATH_ENV: &str = "VOICEHUB_BRIDGE_CONFIG";

/// A configuration problem, found at startup.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file could not be read or parsed.
    #[error("configuration file {path}: {detail}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// A key has a bad value, is unknown, or is missing.
    #[error("configuration key `{key}`: {detail}")]
    Invalid {
        /// Dotted path of the key, e.g. `kafka.message_timeout_ms`.
        key: String,
        /// What is wrong with it.
        detail: String,
    },
}

impl SettingsError {
    /// A bad value at `key`.
    pub fn invalid(key: impl Into<String>, detail: impl fmt::Display) -> Self {
        Self::Invalid {
            key: key.into(),
            detail: detail.to_string(),
        }
    }
}

/// Loads `T` from its defaults, `file` (if any) and the process environment.
pub fn load<T: DeserializeOwned>(file: Option<&Path>) -> Result<T, SettingsError> {
    load_with_env(file, std::env::vars())
}

/// Like [`load`], with the environment given explicitly (for tests).
pub fn load_with_env<T: DeserializeOwned>(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, SettingsError> {
    serde_path_to_error::deserialize(build(file, env)?).map_err(|e| {
        let key = e.path().to_string();
        SettingsError::invalid(key, e.into_inner())
    })
}

/// Where a `kafka.properties` entry was set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropertyOrigin {
    /// In the configuration file.
    File,
    /// By the environment variable named.
    Environment(String),
}

/// Where each `kafka.properties` entry of the merged configuration comes from (for
/// `--check-config`), keyed by the librdkafka property name.
pub fn kafka_property_origins(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<BTreeMap<String, PropertyOrigin>, SettingsError> {
    let config = build(file, env)?;
    let Ok(table) = config.get_table(PROPERTIES_PATH) else {
        return Ok(BTreeMap::new());
    };
    Ok(table
        .into_iter()
        .map(|(name, value)| {
            let origin = match value.origin() {
                Some(origin) if origin.starts_with(ENV_PREFIX) => {
                    PropertyOrigin::Environment(origin.to_owned())
                }
                _ => PropertyOrigin::File,
            };
            (name, origin)
        })
        .collect())
}

/// Where librdkafka's properties sit in the configuration.
const PROPERTIES_PATH: &str = "kafka.properties";

/// The file and the environment, merged (the environment wins, key by key).
fn build(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<config::Config, SettingsError> {
    let mut builder = config::Config::builder();
    if let Some(path) = file {
        if !path.is_file() {
            return Err(SettingsError::File {
                path: path.to_owned(),
                detail: "no such file".into(),
            });
        }
        builder = builder.add_source(FileWithFlatProperties(
            config::File::from(path)
                .format(config::FileFormat::Toml)
                .required(true),
        ));
    }
    let prefix = format!("{ENV_PREFIX}__");
    let properties_prefix = format!("{prefix}KAFKA__PROPERTIES__");
    let (properties, env): (Vec<_>, Vec<_>) = env
        .into_iter()
        .filter(|(name, _)| name.starts_with(&prefix))
        .partition(|(name, _)| name.starts_with(&properties_prefix));
    builder = builder.add_source(
        config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .source(Some(env.into_iter().collect())),
    );
    let properties: config::Map<String, config::Value> = properties
        .into_iter()
        .map(|(name, value)| {
            let property = name[properties_prefix.len()..]
                .to_ascii_lowercase()
                .replace("__", ".");
            (property, config::Value::new(Some(&name), value))
        })
        .collect();
    if !properties.is_empty() {
        builder = builder.add_source(PropertiesFromEnvironment(properties));
    }
    builder.build().map_err(|e| match file {
        Some(path) => SettingsError::File {
            path: path.to_owned(),
            detail: without_source_lines(&e.to_string()),
        },
        None => SettingsError::invalid("(environment)", e),
    })
}

/// The configuration file, with `kafka.properties` as flat, dotted librdkafka names however
/// the file spells them (`"sasl.username" = ..`, `sasl.username = ..` or a `[..sasl]` table).
///
/// The `config` crate merges sources key by key along their tables: a property must have one
/// spelling in every source, or the environment's value sits beside the file's instead of
/// replacing it (and which one librdkafka got depended on the spelling). Flat names also let
/// properties that are prefixes of others (`api.version.request` and
/// `api.version.request.timeout.ms`) stand together.
#[derive(Debug, Clone)]
struct FileWithFlatProperties(config::File<config::FileSourceFile, config::FileFormat>);

impl config::Source for FileWithFlatProperties {
    fn clone_into_box(&self) -> Box<dyn config::Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<config::Map<String, config::Value>, config::ConfigError> {
        use config::ValueKind::Table;
        let mut map = self.0.collect()?;
        if let Some(kafka) = map.get_mut("kafka")
            && let Table(kafka) = &mut kafka.kind
            && let Some(properties) = kafka.get_mut("properties")
            && let Table(table) = &mut properties.kind
        {
            let mut flat = config::Map::new();
            flatten_table("", std::mem::take(table), &mut flat);
            *table = flat;
        }
        Ok(map)
    }
}

fn flatten_table(
    prefix: &str,
    table: config::Map<String, config::Value>,
    out: &mut config::Map<String, config::Value>,
) {
    for (key, value) in table {
        let name = if prefix.is_empty() {
            key
        } else {
            format!("{prefix}.{key}")
        };
        match value.kind {
            config::ValueKind::Table(table) => flatten_table(&name, table, out),
            _ => {
                out.insert(name, value);
            }
        }
    }
}

/// `VOICEHUB_BRIDGE__KAFKA__PROPERTIES__*` variables as flat librdkafka names under
/// `kafka.properties`: `__` stands for a dot (`..__SASL__PASSWORD` is `sasl.password`), since
/// a shell cannot set a variable with a dot in its name.
#[derive(Debug, Clone)]
struct PropertiesFromEnvironment(config::Map<String, config::Value>);

impl config::Source for PropertiesFromEnvironment {
    fn clone_into_box(&self) -> Box<dyn config::Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<config::Map<String, config::Value>, config::ConfigError> {
        let properties: config::Value = self.0.clone().into();
        let kafka: config::Value =
            config::Map::from([("properties".to_owned(), properties)]).into();
        Ok(config::Map::from([("kafka".to_owned(), kafka)]))
    }
}

/// A parse error without the lines of the file it quotes (the line may hold a password): the
/// position and the reason stay.
fn without_source_lines(text: &str) -> String {
    let quoted = |line: &str| {
        let (gutter, _) = line.split_once('|').unwrap_or(("x", ""));
        gutter.trim().chars().all(|c| c.is_ascii_digit())
    };
    text.lines()
        .filter(|line| !quoted(line) && !line.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(": ")
}

/// The services' command line: `voicehub-ingress` and `voicehub-enricher` take the same flags.
#[derive(Debug, Clone, clap::Parser)]
pub struct ServiceArgs {
    /// The configuration file (TOML); `VOICEHUB_BRIDGE__*` variables override its keys.
    #[arg(long, value_name = "FILE", env = CONFIG_PATH_ENV)]
    pub config: Option<PathBuf>,
    /// Load and validate the configuration, report, and exit: no secret is read, no broker
    /// contacted, no port bound (for checking rendered configuration before a rollout).
    #[arg(long)]
    pub check_config: bool,
}

impl ServiceArgs {
    /// Parses the process's arguments for binary `name` (`--help` and `--version` print and
    /// exit; an unknown flag is an error naming it, exit 2).
    pub fn parse_for(name: &'static str, about: &'static str) -> Self {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Self::command()
            .name(name)
            .about(about)
            .version(crate::BRIDGE_VERSION)
            .get_matches();
        Self::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
    }
}

/// `[admin]`: the admin HTTP server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    /// Address to listen on, `host:port` (port 0 picks a free one).
    pub listen: String,
}

/// `[log]`: logging.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `json` (one object per line, for log shippers) or `text` (for people).
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `info,voicehub_ingress=debug`.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Json,
            level: "info".into(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON lines.
    Json,
    /// Human-readable text.
    Text,
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[serde(default)]
        kafka: KafkaSettings,
        admin: AdminSettings,
        #[serde(default)]
        log: LogSettings,
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn environment_overrides_file_which_overrides_defaults() {
        let f = file(
            "[admin]\nlisten = \"0.0.0.0:9090\"\n[kafka]\nbootstrap_servers = \"file:9092\"\nlinger_ms = 20\n",
        );
        let s: Sample = load_with_env(
            Some(f.path()),
            env(&[
                ("VOICEHUB_BRIDGE__KAFKA__BOOTSTRAP_SERVERS", "env:9092"),
                (
                    "VOICEHUB_BRIDGE__KAFKA__TOPICS__UNROUTED",
                    "custom.unrouted",
                ),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(s.kafka.bootstrap_servers, "env:9092");
        assert_eq!(s.kafka.linger_ms, 20);
        assert_eq!(s.kafka.message_timeout_ms, 30_000);
        assert_eq!(s.kafka.topics.unrouted, "custom.unrouted");
        assert_eq!(s.kafka.topics.dead_letter, "voicehub.dead-letter.v1");
        assert_eq!(s.log.format, LogFormat::Json);
        assert_eq!(s.admin.listen, "0.0.0.0:9090");
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let err = load_with_env::<Sample>(
            None,
            env(&[
                ("VOICEHUB_BRIDGE__ADMIN__LISTEN", "0.0.0.0:1"),
                ("VOICEHUB_BRIDGE__KAFKA__LINGER_MS", "soon"),
            ]),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("configuration key `kafka.linger_ms`"),
            "{text}"
        );
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_section() {
        let f = file("[admin]\nlisten = \"x:1\"\n[kafka]\nbootstrap_server = \"typo:9092\"\n");
        let text = load_with_env::<Sample>(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("`kafka`") && text.contains("bootstrap_server"),
            "{text}"
        );
    }

    #[test]
    fn a_missing_required_key_is_named() {
        let text = load_with_env::<Sample>(None, env(&[]))
            .unwrap_err()
            .to_string();
        assert!(text.contains("admin"), "{text}");
    }

    #[test]
    fn a_missing_file_is_an_error_not_a_silent_default() {
        let err = load_with_env::<Sample>(Some(Path::new("/nonexistent.toml")), env(&[]));
        assert!(matches!(err, Err(SettingsError::File { .. })));
    }

    #[test]
    fn a_secret_kafka_property_can_come_from_a_nested_environment_name() {
        // The Helm chart's `kafka.secretProperties` use this form: no dot in the variable name.
        let s: Sample = load_with_env(
            None,
            env(&[
                ("VOICEHUB_BRIDGE__ADMIN__LISTEN", "x:1"),
                ("VOICEHUB_BRIDGE__KAFKA__PROPERTIES__SASL__PASSWORD", "pw"),
            ]),
        )
        .unwrap();
        assert_eq!(
            s.kafka.properties.get("sasl.password").map(String::as_str),
            Some("pw")
        );
    }

    fn property<'a>(s: &'a Sample, name: &str) -> Option<&'a str> {
        s.kafka.properties.get(name).map(String::as_str)
    }

    #[test]
    fn debug_output_shows_every_property_but_no_secret_value() {
        let mut kafka = KafkaSettings::default();
        for (name, value) in [
            ("security.protocol", "SASL_SSL"),
            ("sasl.password", "hunter2-password"),
            ("ssl.key.password", "hunter2-key"),
            ("ssl.key.pem", "hunter2-pem"),
            ("sasl.oauthbearer.client.secret", "hunter2-oauth"),
        ] {
            kafka.properties.insert(name.into(), value.into());
        }
        let shown = format!("{kafka:?} {kafka:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        for expected in [
            "SASL_SSL",
            "sasl.password",
            "(secret, not shown)",
            "bootstrap_servers",
        ] {
            assert!(shown.contains(expected), "{expected}: {shown}");
        }
    }

    #[test]
    fn an_environment_secret_replaces_the_files_placeholder_however_the_file_spells_it() {
        // The chart's way: the file names the mechanism and a placeholder, a Secret fills the
        // environment. Before the fix the file's quoted key won over the environment.
        let secret = [
            (
                "VOICEHUB_BRIDGE__KAFKA__PROPERTIES__SASL__USERNAME",
                "ingress",
            ),
            (
                "VOICEHUB_BRIDGE__KAFKA__PROPERTIES__SASL__PASSWORD",
                "from-secret",
            ),
        ];
        for properties in [
            "[kafka.properties]\n\"sasl.username\" = \"x\"\n\"sasl.password\" = \"x\"\n",
            "[kafka.properties]\nsasl.username = \"x\"\nsasl.password = \"x\"\n",
            "[kafka.properties.sasl]\nusername = \"x\"\npassword = \"x\"\n",
        ] {
            let f = file(&format!("[admin]\nlisten = \"x:1\"\n{properties}"));
            let s: Sample = load_with_env(Some(f.path()), env(&secret)).unwrap();
            assert_eq!(
                property(&s, "sasl.username"),
                Some("ingress"),
                "{properties}"
            );
            assert_eq!(
                property(&s, "sasl.password"),
                Some("from-secret"),
                "{properties}"
            );
            assert_eq!(s.kafka.properties.len(), 2, "{properties}");
        }
    }

    #[test]
    fn a_property_set_in_the_file_only_or_the_environment_only_is_taken() {
        let f = file(
            "[admin]\nlisten = \"x:1\"\n[kafka.properties]\n\"sasl.mechanism\" = \"SCRAM-SHA-512\"\n",
        );
        let s: Sample = load_with_env(
            Some(f.path()),
            env(&[("VOICEHUB_BRIDGE__KAFKA__PROPERTIES__SASL__PASSWORD", "pw")]),
        )
        .unwrap();
        assert_eq!(property(&s, "sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(property(&s, "sasl.password"), Some("pw"));
    }

    #[test]
    fn a_property_that_prefixes_another_keeps_both() {
        let f = file(
            "[admin]\nlisten = \"x:1\"\n[kafka.properties]\n\"api.version.request\" = \"true\"\n",
        );
        let s: Sample = load_with_env(
            Some(f.path()),
            env(&[(
                "VOICEHUB_BRIDGE__KAFKA__PROPERTIES__API__VERSION__REQUEST__TIMEOUT__MS",
                "5000",
            )]),
        )
        .unwrap();
        assert_eq!(property(&s, "api.version.request"), Some("true"));
        assert_eq!(property(&s, "api.version.request.timeout.ms"), Some("5000"));
    }

    #[test]
    fn property_origins_name_the_file_or_the_variable() {
        let f = file(
            "[kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.password\" = \"x\"\n",
        );
        let variable = "VOICEHUB_BRIDGE__KAFKA__PROPERTIES__SASL__PASSWORD";
        let origins = kafka_property_origins(Some(f.path()), env(&[(variable, "pw")])).unwrap();
        assert_eq!(
            origins.get("security.protocol"),
            Some(&PropertyOrigin::File)
        );
        assert_eq!(
            origins.get("sasl.password"),
            Some(&PropertyOrigin::Environment(variable.into()))
        );
        assert_eq!(origins.len(), 2);
    }

    #[test]
    fn dotted_kafka_properties_survive_file_and_environment() {
        let f = file(
            "[admin]\nlisten = \"x:1\"\n[kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\n",
        );
        let s: Sample = load_with_env(
            Some(f.path()),
            env(&[(
                "VOICEHUB_BRIDGE__KAFKA__PROPERTIES__SASL.MECHANISM",
                "PLAIN",
            )]),
        )
        .unwrap();
        assert_eq!(
            s.kafka
                .properties
                .get("security.protocol")
                .map(String::as_str),
            Some("SASL_SSL")
        );
        assert_eq!(
            s.kafka.properties.get("sasl.mechanism").map(String::as_str),
            Some("PLAIN")
        );
    }

    #[test]
    fn validation_names_the_key_and_protects_the_contract() {
        let mut kafka = KafkaSettings::default();
        assert!(kafka.validate().is_ok());
        kafka.properties.insert("acks".into(), "1".into());
        let text = kafka.validate().unwrap_err().to_string();
        assert!(
            text.starts_with("configuration key `kafka.properties.acks`"),
            "{text}"
        );

        let mut kafka = KafkaSettings::default();
        kafka.topics.dead_letter = "no spaces".into();
        let text = kafka.validate().unwrap_err().to_string();
        assert!(
            text.starts_with("configuration key `kafka.topics.dead_letter`"),
            "{text}"
        );
    }

    #[test]
    fn a_file_that_does_not_parse_is_named_without_quoting_its_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(
            &path,
            "[kafka.properties]\n\"sasl.password\" = hunter2-secret\n",
        )
        .unwrap();
        let text = load_with_env::<KafkaSettings>(Some(&path), [])
            .unwrap_err()
            .to_string();
        assert!(text.contains("line 2"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn the_service_flags_parse_in_either_form() {
        use clap::Parser;
        let args =
            ServiceArgs::try_parse_from(["bin", "--config", "a.toml", "--check-config"]).unwrap();
        assert_eq!(args.config, Some(PathBuf::from("a.toml")));
        assert!(args.check_config);
        let args = ServiceArgs::try_parse_from(["bin", "--config=b.toml"]).unwrap();
        assert_eq!(args.config, Some(PathBuf::from("b.toml")));
        assert!(!args.check_config);
        assert!(ServiceArgs::try_parse_from(["bin", "--konfig", "c.toml"]).is_err());
    }
}
