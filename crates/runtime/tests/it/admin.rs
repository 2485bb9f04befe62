use std::collections::HashMap;

use prometheus::{IntCounter, Opts};
use voicehub_runtime::admin::AdminServer;
use voicehub_runtime::metrics;
use voicehub_runtime::readiness::Readiness;

struct Running {
    base: String,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for Running {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

fn start(readiness: Readiness, registry: prometheus::Registry) -> anyhow::Result<Running> {
    let server = AdminServer::bind("127.0.0.1:0", registry, readiness)?;
    let base = format!("http://127.0.0.1:{}", server.port());
    let handle = server.handle();
    tokio::spawn(server.run());
    Ok(Running { base, handle })
}

#[tokio::test]
async fn readyz_follows_the_checks_and_livez_stays_up() -> anyhow::Result<()> {
    let readiness = Readiness::new();
    readiness.register("broker");
    let admin = start(readiness.clone(), metrics::registry("test")?)?;
    let client = reqwest::Client::new();

    let not_ready = client.get(format!("{}/readyz", admin.base)).send().await?;
    assert_eq!(not_ready.status(), 503);
    assert_eq!(
        not_ready.text().await?,
        r#"{"status":"not_ready","failing":["broker"]}"#
    );

    readiness.set("broker", true);
    let ready = client.get(format!("{}/readyz", admin.base)).send().await?;
    assert_eq!(ready.status(), 200);

    readiness.set("broker", false);
    let live = client.get(format!("{}/livez", admin.base)).send().await?;
    assert_eq!(live.status(), 200);
    Ok(())
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_with_process_and_build_info() -> anyhow::Result<()> {
    let registry = metrics::registry("test-service")?;
    let counter = IntCounter::with_opts(Opts::new("voicehub_test_things_total", "Things."))?;
    registry.register(Box::new(counter.clone()))?;
    counter.inc_by(3);
    let admin = start(Readiness::new(), registry)?;

    let response = reqwest::get(format!("{}/metrics", admin.base)).await?;
    assert_eq!(response.status(), 200);
    let text = response.text().await?;
    let scrape = voicehub_testkit::metrics::parse(&text)?;

    let by_name: HashMap<&str, &prometheus_parse::Sample> = scrape
        .samples
        .iter()
        .map(|s| (s.metric.as_str(), s))
        .collect();
    let things = by_name["voicehub_test_things_total"];
    assert!(matches!(things.value, prometheus_parse::Value::Counter(v) if v == 3.0));
    let build = by_name["voicehub_build_info"];
    assert_eq!(build.labels.get("service"), Some("test-service"));
    assert_eq!(build.labels.get("version"), Some(env!("CARGO_PKG_VERSION")));
    assert!(by_name.contains_key("process_resident_memory_bytes"));
    Ok(())
}
