use voicehub_testkit::metrics::metric_value;

use crate::helpers::{SECRET, spawn_app, status_event};

#[tokio::test(flavor = "multi_thread")]
async fn metrics_parse_as_prometheus_text_and_count_what_was_sent() {
    let app = spawn_app().await;
    for i in 0..3 {
        app.post_json(&status_event(&format!("e-{i}"), "c")).await;
    }
    app.post_json(&status_event("e-0", "c")).await; // duplicate
    app.post("/webhooks/voicehub", Some("bad"), b"{}".to_vec())
        .await;
    app.post("/webhooks/voicehub", Some(SECRET), b"nope".to_vec())
        .await;

    let scrape = app.metrics().await;
    let requests = |event_type, outcome| {
        metric_value(
            &scrape,
            "voicehub_ingress_requests_total",
            &[
                ("source", "default"),
                ("event_type", event_type),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(requests("CallStatusChanged", "accepted"), 3.0);
    assert_eq!(requests("CallStatusChanged", "duplicate"), 1.0);
    assert_eq!(requests("none", "unauthorized"), 1.0);
    assert_eq!(requests("none", "invalid_payload"), 1.0);
    assert_eq!(
        metric_value(
            &scrape,
            "voicehub_ingress_dedupe_hits_total",
            &[("source", "default")]
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &scrape,
            "voicehub_ingress_request_duration_seconds_count",
            &[("outcome", "accepted")]
        ),
        3.0
    );
    // 3 events + 1 dead letter were produced and acknowledged.
    assert_eq!(
        metric_value(
            &scrape,
            "voicehub_ingress_produce_duration_seconds_count",
            &[]
        ),
        4.0
    );
    assert_eq!(
        metric_value(&scrape, "voicehub_ingress_in_flight_requests", &[]),
        0.0
    );
    assert_eq!(
        metric_value(&scrape, "voicehub_build_info", &[("service", "ingress")]),
        1.0
    );
}

/// An alert's `increase()` misses a counter's first increment when the series is born with it,
/// and a sum over no series is empty rather than 0: the series alerts rely on exist at 0 from
/// the start.
#[tokio::test(flavor = "multi_thread")]
async fn the_series_alerts_rely_on_exist_at_zero_before_anything_happens() {
    let app = spawn_app().await;

    let scrape = app.metrics().await;

    let present = |name: &str, labels: &[(&str, &str)]| {
        scrape.samples.iter().any(|sample| {
            sample.metric == name
                && labels
                    .iter()
                    .all(|(key, value)| sample.labels.get(key) == Some(*value))
        })
    };
    for (name, labels) in [
        (
            "voicehub_ingress_auth_failures_total",
            &[("source", "default"), ("reason", "mismatch")][..],
        ),
        (
            "voicehub_ingress_auth_failures_total",
            &[("source", "default"), ("reason", "missing")],
        ),
        (
            "voicehub_ingress_auth_accepted_total",
            &[("source", "default")],
        ),
        (
            "voicehub_ingress_secret_reload_errors_total",
            &[("source", "default")],
        ),
        (
            "voicehub_ingress_dead_letters_total",
            &[("reason", "invalid_json")],
        ),
        (
            "voicehub_ingress_produce_errors_total",
            &[("reason", "timed_out")],
        ),
    ] {
        assert!(present(name, labels), "{name} {labels:?} missing");
        assert_eq!(
            metric_value(&scrape, name, labels),
            0.0,
            "{name} {labels:?}"
        );
    }
}
