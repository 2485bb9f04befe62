//! The operator docs keep up with the code: adding a metric without documenting it fails here.

use std::path::{Path, PathBuf};

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source folder") {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            into.push(path);
        }
    }
}

/// Every `"voicehub_…"` string literal in the services' sources: the metric names.
fn metric_names() -> Vec<String> {
    let mut files = Vec::new();
    for krate in ["runtime", "ingress", "enricher"] {
        rust_files(
            &repository().join("crates").join(krate).join("src"),
            &mut files,
        );
    }
    let mut names: Vec<String> = files
        .iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(file).expect("a readable source file");
            text.match_indices("\"voicehub_")
                .filter_map(|(at, _)| {
                    let rest = &text[at + 1..];
                    let name = &rest[..rest.find('"')?];
                    name.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                        .then(|| name.to_owned())
                })
                .collect::<Vec<_>>()
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn every_metric_is_documented_in_the_operations_guide() {
    let names = metric_names();
    assert!(names.len() > 40, "the scan found only {names:?}");
    let guide =
        std::fs::read_to_string(repository().join("docs/operations.md")).expect("the guide");
    let missing: Vec<&String> = names
        .iter()
        .filter(|name| !guide.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "metrics missing from docs/operations.md (add a row to its metrics table): {missing:?}"
    );
}
