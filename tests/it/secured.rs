//! The bridge on the secured three-node cluster (`deploy/ci/kafka-cluster.sh`: SASL_SSL,
//! mutual TLS, ACLs with nothing allowed by default, replication 3, `min.insync.replicas` 2),
//! run as a platform team runs it: the real binaries, each service its own principal with
//! exactly the ACLs of docs/operations.md, configured the chart's way (a file naming the
//! mechanism with placeholder credentials, the secrets from the environment).

use std::path::Path;
use std::time::Duration;

use voicehub_model::Topics;
use voicehub_simulator::{AnalysisApi, AnalysisTrouble, simulate};
use voicehub_testkit::secure::{Auth, Resource, SecureCluster};
use voicehub_testkit::{TestBroker, free_port};

use crate::harness::{
    API_KEY, Accounting, SECRET, SecretFiles, lines_containing, voicehub_traffic,
};
use crate::process::{Service, enricher_toml, ingress_toml, topic_lines};

mod check;

/// The topics the ingress writes: every event type's, unrouted and dead letters.
fn ingress_topics(topics: &Topics) -> Vec<Resource> {
    topics
        .all()
        .iter()
        .filter(|(_, name)| *name != topics.analysis_enriched)
        .map(|(_, name)| Resource::Topic((*name).to_owned()))
        .collect()
}

/// Exactly the ACLs of docs/operations.md ("Kafka permissions").
async fn grant_least_privilege(cluster: &SecureCluster, topics: &Topics, group: &str) {
    cluster
        .grant("ingress", &["Write"], &ingress_topics(topics))
        .await
        .unwrap();
    grant_enricher(cluster, topics, Some(group)).await;
}

/// The enricher's ACLs: Read on its input (and on `group`, if given), Write on its outputs.
async fn grant_enricher(cluster: &SecureCluster, topics: &Topics, group: Option<&str>) {
    let mut read = vec![Resource::Topic(topics.analysis_result_ready.clone())];
    read.extend(group.map(|group| Resource::Group(group.to_owned())));
    cluster.grant("enricher", &["Read"], &read).await.unwrap();
    cluster
        .grant(
            "enricher",
            &["Write"],
            &[
                Resource::Topic(topics.analysis_enriched.clone()),
                Resource::Topic(topics.dead_letter.clone()),
            ],
        )
        .await
        .unwrap();
}

/// `[kafka]` of a service's file: the brokers, the topics, and `properties` with everything
/// but the secrets, which stay placeholders (`secret_properties` are left to the
/// environment, as the chart's `kafka.secretProperties` do).
fn kafka_toml(
    cluster: &SecureCluster,
    topics: &Topics,
    user: &str,
    auth: Auth,
    secret_properties: &[&str],
) -> String {
    let topics = topic_lines(topics);
    let properties: String = cluster
        .client_properties(user, auth)
        .unwrap()
        .iter()
        .map(|(name, value)| {
            let value = if secret_properties.contains(&name.as_str()) {
                "set-from-a-secret"
            } else {
                value
            };
            format!("\"{name}\" = \"{value}\"\n")
        })
        .collect();
    format!(
        "[kafka]\nbootstrap_servers = \"{}\"\n[kafka.topics]\n{topics}[kafka.properties]\n\
         {properties}[log]\nlevel = \"info\"\n",
        cluster.bootstrap(auth).unwrap()
    )
}

/// The environment variable the chart sets for a secret librdkafka property.
fn secret_variable(property: &str) -> String {
    format!(
        "VOICEHUB_BRIDGE__KAFKA__PROPERTIES__{}",
        property.to_ascii_uppercase().replace('.', "__")
    )
}

/// The ingress as `ingress` over SASL_SSL with `auth` (SCRAM or PLAIN), credentials from the
/// environment, not yet started.
fn ingress_service(
    broker: &TestBroker,
    dir: &Path,
    secrets: &SecretFiles,
    auth: Auth,
    spool: bool,
) -> (Service, String) {
    let cluster = broker.secure_cluster().unwrap();
    let (http_port, admin_port) = (free_port().unwrap(), free_port().unwrap());
    let sasl_secrets = ["sasl.username", "sasl.password"];
    let spool = if spool {
        format!(
            "[spool]\nmode = \"fallback\"\ndir = \"{}\"\n",
            dir.join("spool").display()
        )
    } else {
        String::new()
    };
    let mut ingress = Service::new(
        dir,
        "ingress",
        admin_port,
        ingress_toml(
            http_port,
            admin_port,
            secrets,
            &format!(
                "{spool}{}",
                kafka_toml(cluster, &broker.topics(), "ingress", auth, &sasl_secrets)
            ),
        ),
    );
    let credentials = cluster.client_properties("ingress", auth).unwrap();
    for property in sasl_secrets {
        ingress.env(secret_variable(property), &credentials[property]);
    }
    (
        ingress,
        format!("http://127.0.0.1:{http_port}/webhooks/voicehub"),
    )
}

/// The enricher as `enricher` over mutual TLS in `group`, not yet started.
fn enricher_service(
    broker: &TestBroker,
    dir: &Path,
    secrets: &SecretFiles,
    api: &AnalysisApi,
    group: &str,
) -> Service {
    let cluster = broker.secure_cluster().unwrap();
    let admin_port = free_port().unwrap();
    Service::new(
        dir,
        "enricher",
        admin_port,
        enricher_toml(
            admin_port,
            group,
            secrets,
            api,
            &kafka_toml(cluster, &broker.topics(), "enricher", Auth::Mtls, &[]),
        ),
    )
}

struct Services {
    ingress: Service,
    enricher: Service,
    webhook_url: String,
    _dir: tempfile::TempDir,
    _secrets: SecretFiles,
}

/// The ingress as `ingress` over SCRAM and the enricher as `enricher` over mutual TLS, both
/// started; SASL credentials only in the environment.
async fn start_services(
    broker: &TestBroker,
    api: &AnalysisApi,
    group: &str,
    spool: bool,
) -> Services {
    let dir = tempfile::tempdir().unwrap();
    let secrets = SecretFiles::write();
    let (mut ingress, webhook_url) =
        ingress_service(broker, dir.path(), &secrets, Auth::Scram, spool);
    let mut enricher = enricher_service(broker, dir.path(), &secrets, api, group);
    ingress.start().await;
    enricher.start().await;
    Services {
        ingress,
        enricher,
        webhook_url,
        _dir: dir,
        _secrets: secrets,
    }
}

async fn create_topics(broker: &TestBroker) {
    let topics = broker.topics();
    let names: Vec<&str> = topics.all().iter().map(|(_, name)| *name).collect();
    broker.create_topics(&names, 3).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn least_privilege_principals_configured_from_the_environment_lose_nothing() {
    // Arrange: topics made by the admin, each service only its own ACLs.
    let broker = TestBroker::secure().await.unwrap();
    let cluster = broker.secure_cluster().unwrap();
    create_topics(&broker).await;
    let group = broker.name("secured");
    grant_least_privilege(cluster, &broker.topics(), &group).await;
    let api = AnalysisApi::start("127.0.0.1:0", API_KEY, AnalysisTrouble::default()).unwrap();
    let services = start_services(&broker, &api, &group, false).await;

    // Act: VoiceHub's traffic.
    let report = simulate(voicehub_traffic(&services.webhook_url, &api, 200, 20.0)).await;

    // Assert: every acknowledged event on its topic, every analysis enriched once.
    let accounting =
        Accounting::of(&broker, &broker.topics(), &report, Duration::from_secs(60)).await;
    eprintln!("secured cluster: {accounting}");
    assert!(accounting.lost.is_empty(), "lost: {:?}", accounting.lost);
    assert_eq!(accounting.not_enriched, 0, "{accounting:?}");
    assert_eq!(report.refused, 0, "{report:?}");
    assert!(accounting.acknowledged >= 400, "{report:?}");
    assert_eq!(accounting.duplicates, 0, "{accounting}");
    assert_eq!(accounting.enriched_duplicates, 0, "{accounting}");
    let logs = [
        services.ingress.log.as_path(),
        services.enricher.log.as_path(),
    ];
    assert_no_secret_logged(cluster, &logs);
    api.stop().await;
}

fn assert_no_secret_logged(cluster: &SecureCluster, logs: &[&Path]) {
    for secret in [
        SECRET.to_owned(),
        API_KEY.to_owned(),
        cluster.password("ingress").unwrap(),
    ] {
        assert_eq!(lines_containing(logs, &secret), Vec::<String>::new());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_write_acl_is_named_makes_the_ingress_unready_and_heals_once_granted() {
    // Arrange: Write on every topic but recordings-available.
    let broker = TestBroker::secure().await.unwrap();
    let cluster = broker.secure_cluster().unwrap();
    create_topics(&broker).await;
    let topics = broker.topics();
    let missing = Resource::Topic(topics.recordings_available.clone());
    let granted: Vec<Resource> = ingress_topics(&topics)
        .into_iter()
        .filter(|topic| *topic != missing)
        .collect();
    cluster
        .grant("ingress", &["Write"], &granted)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secrets = SecretFiles::write();
    // PLAIN over TLS: the shape of Confluent Cloud's API keys.
    let (mut ingress, webhook_url) =
        ingress_service(&broker, dir.path(), &secrets, Auth::Plain, false);

    // Act
    ingress.spawn();

    // Assert: not ready, for that reason, and the log names the topic and the error.
    ingress
        .until_readyz(503, Some("kafka_permissions"), Duration::from_secs(30))
        .await;
    ingress
        .until_logged(
            |line| {
                line.contains(&topics.recordings_available)
                    && line.contains("TopicAuthorizationFailed")
                    && line.contains("\"level\":\"ERROR\"")
            },
            Duration::from_secs(10),
        )
        .await;
    let webhook = || async {
        reqwest::Client::new()
            .post(&webhook_url)
            .header("x-webhook-secret", SECRET)
            .body(
                std::fs::read(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/fixtures/voicehub/recordings-available.json"
                ))
                .unwrap(),
            )
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(webhook().await, 503);

    // Granted: ready again at the next check, with no restart, and the webhook goes through.
    cluster
        .grant("ingress", &["Write"], &[missing])
        .await
        .unwrap();
    ingress.until_readyz(200, None, permissions_recheck()).await;
    assert_eq!(webhook().await, 200);
    assert_eq!(
        broker
            .read_all(&topics.recordings_available)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_enricher_refused_its_group_says_so_is_unready_and_heals_once_granted() {
    // Arrange: everything but Read on its group.
    let broker = TestBroker::secure().await.unwrap();
    let cluster = broker.secure_cluster().unwrap();
    create_topics(&broker).await;
    let topics = broker.topics();
    let group = broker.name("refused");
    grant_enricher(cluster, &topics, None).await;
    let api = AnalysisApi::start("127.0.0.1:0", API_KEY, AnalysisTrouble::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secrets = SecretFiles::write();
    let mut enricher = enricher_service(&broker, dir.path(), &secrets, &api, &group);

    // Act
    enricher.spawn();

    // Assert
    enricher
        .until_readyz(503, Some("consumer_authorized"), Duration::from_secs(30))
        .await;
    enricher
        .until_logged(
            |line| {
                line.contains(&group)
                    && line.contains("GroupAuthorizationFailed")
                    && line.contains("\"level\":\"ERROR\"")
            },
            Duration::from_secs(10),
        )
        .await;
    cluster
        .grant("enricher", &["Read"], &[Resource::Group(group.clone())])
        .await
        .unwrap();
    enricher
        .until_readyz(200, None, Duration::from_secs(60))
        .await;
    api.stop().await;
}

/// How long a granted ACL takes to show in readiness: the next permission check (refused
/// topics are checked again every 5 s).
fn permissions_recheck() -> Duration {
    voicehub_runtime::permissions::RECHECK_REFUSED + Duration::from_secs(10)
}

/// The node that leads most partitions of `topics`.
fn busiest_leader(broker: &TestBroker, topics: &[&str]) -> u8 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let client: BaseConsumer = broker.client_config().create().unwrap();
    let mut led = [0usize; 4];
    for topic in topics {
        let metadata = client
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        for partition in metadata.topics()[0].partitions() {
            led[usize::try_from(partition.leader()).unwrap_or(0).min(3)] += 1;
        }
    }
    (1..=3u8).max_by_key(|n| led[usize::from(*n)]).unwrap()
}

/// Samples `/readyz` of `port` every 50 ms until `stop`; how often its answer changed.
async fn readiness_transitions(port: u16, stop: std::sync::Arc<tokio::sync::Notify>) -> usize {
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/readyz");
    let (mut last, mut changes) = (None, 0);
    loop {
        // A sample that got no answer in time (a loaded machine) says nothing either way.
        if let Ok(response) = client
            .get(&url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
        {
            let status = response.status().as_u16();
            if last.is_some_and(|last| last != status) {
                changes += 1;
            }
            last = Some(status);
        }
        tokio::select! {
            () = stop.notified() => return changes,
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

/// What a fault under load left behind.
struct FaultRun {
    report: voicehub_simulator::Report,
    accounting: Accounting,
    /// Changes of the ingress's `/readyz` answer, sampled every 50 ms.
    transitions: usize,
    /// Times the ingress's broker check failed (its log has each).
    broker_check_failures: usize,
    /// From the end of the fault until the enricher was ready again.
    enricher_back_after: Duration,
}

/// Both services on the secured cluster under VoiceHub's traffic (`calls` calls at 20 a
/// second), `fault` applied 4 s in; then every acknowledged event is read back and
/// reconciled, and the outcome printed as `name: ...`.
async fn under_load<F, Fut>(name: &str, calls: usize, spool: bool, fault: F) -> FaultRun
where
    F: FnOnce(TestBroker) -> Fut,
    Fut: std::future::Future<Output = TestBroker>,
{
    let broker = TestBroker::secure().await.unwrap();
    create_topics(&broker).await;
    let group = broker.name("fault");
    let topics = broker.topics();
    grant_least_privilege(broker.secure_cluster().unwrap(), &topics, &group).await;
    let api = AnalysisApi::start("127.0.0.1:0", API_KEY, AnalysisTrouble::default()).unwrap();
    let services = start_services(&broker, &api, &group, spool).await;
    let stop = std::sync::Arc::new(tokio::sync::Notify::new());
    let watcher = tokio::spawn(readiness_transitions(
        services.ingress.admin_port,
        stop.clone(),
    ));
    let traffic = tokio::spawn(simulate(voicehub_traffic(
        &services.webhook_url,
        &api,
        calls,
        20.0,
    )));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let broker = fault(broker).await;
    let fault_over = std::time::Instant::now();
    services
        .enricher
        .until_readyz(200, None, Duration::from_secs(120))
        .await;
    let enricher_back_after = fault_over.elapsed();
    let report = traffic.await.unwrap();
    stop.notify_one();
    let transitions = watcher.await.unwrap();
    let accounting = Accounting::of(&broker, &topics, &report, Duration::from_secs(120)).await;
    let broker_check_failures = services
        .ingress
        .log_text()
        .lines()
        .filter(|line| line.contains("broker unreachable"))
        .count();
    eprintln!(
        "{name}: {} webhooks, {} requests, {} acknowledged, {} refused; {accounting}; ingress \
         readiness changed {transitions} times (broker check failed {broker_check_failures}); \
         enricher ready {enricher_back_after:?} after the fault",
        report.webhooks, report.requests, report.acknowledged, report.refused
    );
    api.stop().await;
    FaultRun {
        report,
        accounting,
        transitions,
        broker_check_failures,
        enricher_back_after,
    }
}

/// Nothing acknowledged lost, every acknowledged analysis enriched.
fn assert_nothing_lost(run: &FaultRun) {
    assert!(
        run.accounting.lost.is_empty(),
        "lost: {:?}",
        run.accounting.lost
    );
    assert_eq!(run.accounting.not_enriched, 0, "{:?}", run.accounting);
    assert_eq!(
        run.report.acknowledged + run.report.refused,
        run.report.webhooks,
        "{:?}",
        run.report
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_busiest_leader_killed_under_load_loses_nothing_and_readiness_holds() {
    let run = under_load("leader kill", 300, false, |broker| async move {
        let topics = broker.topics();
        let node = busiest_leader(
            &broker,
            &[
                &topics.call_status_changed,
                &topics.recordings_available,
                &topics.analysis_result_ready,
            ],
        );
        killed_for(
            broker.secure_cluster().unwrap(),
            &[node],
            Duration::from_secs(10),
        )
        .await;
        broker
    })
    .await;
    assert_nothing_lost(&run);
    assert_eq!(
        run.report.refused, 0,
        "VoiceHub's retries outlast a leader election"
    );
    assert!(
        run.transitions <= 2,
        "readiness changed {} times",
        run.transitions
    );
    assert!(
        run.broker_check_failures <= 1,
        "{}",
        run.broker_check_failures
    );
}

/// Two of three nodes killed for 12 s: every partition below `min.insync.replicas` (2), and
/// the controllers without a quorum.
async fn quorum_loss(broker: TestBroker) -> TestBroker {
    killed_for(
        broker.secure_cluster().unwrap(),
        &[2, 3],
        Duration::from_secs(12),
    )
    .await;
    broker
}

/// SIGKILLs `nodes`, leaves them down for `down`, starts them again on their data.
async fn killed_for(cluster: &SecureCluster, nodes: &[u8], down: Duration) {
    for node in nodes {
        cluster.kill(*node).await.unwrap();
    }
    tokio::time::sleep(down).await;
    for node in nodes {
        cluster.resume(*node).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn below_min_insync_replicas_webhooks_get_503_never_a_false_2xx_and_it_recovers_alone() {
    let run = under_load("quorum loss, spool off", 300, false, quorum_loss).await;
    assert_nothing_lost(&run);
    assert!(
        run.report.refused > 0,
        "an outage of 12 s outlasts VoiceHub's retries"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn below_min_insync_replicas_a_spooling_ingress_acknowledges_everything_and_loses_nothing() {
    let run = under_load("quorum loss, spool fallback", 300, true, quorum_loss).await;
    assert_nothing_lost(&run);
    assert_eq!(run.report.refused, 0, "the spool takes what Kafka cannot");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_restart_of_all_three_under_load_loses_nothing() {
    let run = under_load("rolling restart", 400, false, |broker| async move {
        let cluster = broker.secure_cluster().unwrap();
        for node in 1..=3 {
            cluster.restart(node).await.unwrap();
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        broker
    })
    .await;
    assert_nothing_lost(&run);
    assert_eq!(run.report.refused, 0, "{:?}", run.report);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_active_controller_killed_under_load_loses_nothing() {
    let run = under_load("controller kill", 300, false, |broker| async move {
        let cluster = broker.secure_cluster().unwrap();
        let node = cluster.controller().await.unwrap();
        killed_for(cluster, &[node], Duration::from_secs(10)).await;
        broker
    })
    .await;
    assert_nothing_lost(&run);
    assert_eq!(run.report.refused, 0, "{:?}", run.report);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_cut_off_from_the_bridge_by_dropped_packets_loses_nothing() {
    let run = under_load("network partition", 300, false, |broker| async move {
        let cluster = broker.secure_cluster().unwrap();
        let topics = broker.topics();
        let node = busiest_leader(&broker, &[&topics.call_status_changed]);
        cluster.isolate(node).await.unwrap();
        tokio::time::sleep(Duration::from_secs(15)).await;
        cluster.rejoin(node).await.unwrap();
        broker
    })
    .await;
    assert_nothing_lost(&run);
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_short_pauses_of_a_broker_leave_an_enricher_that_comes_back_alone() {
    let run = under_load("repeated pauses", 400, false, |broker| async move {
        // Three pauses of 4 s within a minute, of the node leading the enricher's input (and
        // likely its group coordinator): the sequence that once wedged the enricher.
        let cluster = broker.secure_cluster().unwrap();
        let topics = broker.topics();
        let node = busiest_leader(&broker, &[&topics.analysis_result_ready]);
        for _ in 0..3 {
            cluster.pause(node).await.unwrap();
            tokio::time::sleep(Duration::from_secs(4)).await;
            cluster.unpause(node).await.unwrap();
            tokio::time::sleep(Duration::from_secs(8)).await;
        }
        broker
    })
    .await;
    assert_nothing_lost(&run);
    // Bound: the consumer's session (6 s here) and a rejoin, or the wedge limit (30 s) and a
    // rebuild.
    assert!(
        run.enricher_back_after < Duration::from_secs(60),
        "enricher ready only {:?} after the pauses",
        run.enricher_back_after
    );
}
