//! Local tooling: `voicehub-dev` runs the bridge with an embedded broker, `voicehub-load`
//! drives webhook load at it (and serves the bare-HTTP baseline for benchmarks),
//! `voicehub-tail` prints a topic's records.

pub mod stack;

/// Reads `--name value` flags; `None` when absent.
pub fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|arg| arg == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// Reads a numeric `--name value` flag, or `default`.
pub fn number_flag<T: std::str::FromStr>(
    args: &[String],
    name: &str,
    default: T,
) -> anyhow::Result<T> {
    match flag(args, name) {
        None => Ok(default),
        Some(text) => text
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}: `{text}` is not a number")),
    }
}
