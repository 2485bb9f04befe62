//! JSON Schemas of every JSON record value, generated from the types.
//!
//! The committed copies live in `schemas/` at the repository root; a test fails when they and
//! the code disagree (regenerate with `VOICEHUB_BLESS_SCHEMAS=1 cargo test -p voicehub-model`).

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema};

use crate::analysis::AnalysisResult;
use crate::enriched::AnalysisEnriched;
use crate::event::{Event, UnroutedValue};

macro_rules! event_schemas {
    ($(($kind:ident, $topic:ident, $stem:literal)),* $(,)?) => {
        vec![$((
            concat!($stem, ".json"),
            root::<Event<crate::event::$kind>>(concat!(stringify!($kind), " record value")),
        ),)*]
    };
}

/// Every schema, by file name.
pub fn all() -> Vec<(&'static str, Schema)> {
    let mut all = with_event_types!(event_schemas);
    all.extend([
        (
            "analysis-enriched.v1.json",
            root::<AnalysisEnriched>("AnalysisEnriched record value"),
        ),
        (
            "unrouted.v1.json",
            root::<UnroutedValue>("Unrouted record value"),
        ),
        (
            "analysis-result.json",
            root::<AnalysisResult>("VoiceHub analysis result (as fetched)"),
        ),
    ]);
    all
}

fn root<T: JsonSchema>(title: &str) -> Schema {
    let mut schema = SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<T>();
    schema.insert("title".into(), title.into());
    schema
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn schemas_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas")
    }

    /// Fails when a type changed without its schema being regenerated (or a schema file was
    /// edited by hand, or a stale one is left behind).
    #[test]
    fn committed_schemas_match_the_types() {
        let dir = schemas_dir();
        let bless = std::env::var_os("VOICEHUB_BLESS_SCHEMAS").is_some();
        let mut expected_files = Vec::new();
        let mut stale = Vec::new();
        for (file, schema) in all() {
            expected_files.push(file.to_owned());
            let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
            let path = dir.join(file);
            if bless {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &text).unwrap();
            } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                stale.push(file);
            }
        }
        assert!(
            stale.is_empty(),
            "schemas/{stale:?} differ from the types: run \
             `VOICEHUB_BLESS_SCHEMAS=1 cargo test -p voicehub-model` and commit the result"
        );
        let mut present: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        present.sort();
        expected_files.sort();
        assert_eq!(
            present, expected_files,
            "schemas/ holds files no type generates"
        );
    }
}
