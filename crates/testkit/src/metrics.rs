//! Reading a service's `/metrics` the way Prometheus does: over HTTP, through a real text
//! parser.

pub use prometheus_parse::{Scrape, Value};

/// Fetches `url` and parses it as the Prometheus text format. Panics (a test failure) if
/// either step fails.
pub async fn scrape(url: &str) -> Scrape {
    let text = reqwest::get(url)
        .await
        .and_then(reqwest::Response::error_for_status)
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    parse(&text).unwrap_or_else(|e| panic!("{url} is not Prometheus text: {e}"))
}

/// Parses `text` as the Prometheus text format.
pub fn parse(text: &str) -> std::io::Result<Scrape> {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
}

/// The sum of the counter, gauge or untyped samples named `name` whose labels include
/// `labels` (0 when there are none).
pub fn metric_value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}
