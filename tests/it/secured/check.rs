//! `voicehub check` on the secured cluster: each service's configuration as the chart passes it
//! (the file, SASL credentials from the environment), judged with its own principal. One test
//! per way it can fail, and the least-privilege setup that passes.

use std::collections::BTreeMap;

use serde_json::Value;
use voicehub_simulator::{AnalysisApi, AnalysisTrouble};
use voicehub_testkit::secure::{Auth, Resource};
use voicehub_testkit::{TestBroker, free_port};

use super::{create_topics, grant_enricher, ingress_topics, kafka_toml, secret_variable};
use crate::harness::{API_KEY, SecretFiles};
use crate::process::{binary, enricher_toml, ingress_toml};

/// A service's configuration for the check: its file, and the environment the chart gives it.
struct Config {
    _dir: tempfile::TempDir,
    _secrets: SecretFiles,
    file: std::path::PathBuf,
    service: &'static str,
    env: BTreeMap<String, String>,
}

impl Config {
    /// The ingress as `ingress` over SCRAM, its SASL credentials in the environment.
    fn ingress(broker: &TestBroker, password: Option<&str>) -> Self {
        let cluster = broker.secure_cluster().unwrap();
        let secrets = SecretFiles::write();
        let sasl = ["sasl.username", "sasl.password"];
        let toml = ingress_toml(
            free_port().unwrap(),
            free_port().unwrap(),
            &secrets,
            &kafka_toml(cluster, &broker.topics(), "ingress", Auth::Scram, &sasl),
        );
        let mut credentials = cluster.client_properties("ingress", Auth::Scram).unwrap();
        if let Some(password) = password {
            credentials.insert("sasl.password".into(), password.into());
        }
        let env = sasl
            .iter()
            .map(|p| (secret_variable(p), credentials[*p].clone()))
            .collect();
        Self::write("ingress", toml, secrets, env)
    }

    /// The enricher as `enricher` over mutual TLS in `group`, fetching from `api`.
    fn enricher(broker: &TestBroker, group: &str, api: &AnalysisApi) -> Self {
        let cluster = broker.secure_cluster().unwrap();
        let secrets = SecretFiles::write();
        let toml = enricher_toml(
            free_port().unwrap(),
            group,
            &secrets,
            api,
            &kafka_toml(cluster, &broker.topics(), "enricher", Auth::Mtls, &[]),
        );
        Self::write("enricher", toml, secrets, BTreeMap::new())
    }

    fn write(
        service: &'static str,
        toml: String,
        secrets: SecretFiles,
        env: BTreeMap<String, String>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(format!("{service}.toml"));
        std::fs::write(&file, toml).unwrap();
        Self {
            _dir: dir,
            _secrets: secrets,
            file,
            service,
            env,
        }
    }

    /// `voicehub check --json`: the exit code and the report.
    fn check(&self) -> (i32, Value) {
        let output = self.run(&["--json"]);
        let report = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stderr)));
        (output.status.code().unwrap_or(-1), report)
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(binary("voicehub"))
            .arg("--config")
            .arg(&self.file)
            .args(["--timeout", "10", "check", "--service", self.service])
            .args(args)
            .env_remove("VOICEHUB_BRIDGE_CONFIG")
            .envs(&self.env)
            .output()
            .unwrap()
    }
}

/// The rows about `subject` as `check: status`.
fn rows(report: &Value, subject: &str) -> Vec<String> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["subject"] == subject)
        .map(|c| {
            format!(
                "{}: {}",
                c["check"].as_str().unwrap(),
                c["status"].as_str().unwrap()
            )
        })
        .collect()
}

/// The detail of `subject`'s `check`.
fn detail<'a>(report: &'a Value, subject: &str, check: &str) -> &'a str {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["subject"] == subject && c["check"] == check)
        .and_then(|c| c["detail"].as_str())
        .unwrap_or_else(|| panic!("no {subject} {check} in {report}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn least_privilege_services_pass_with_their_topics_replication_and_limits_shown() {
    // Arrange: the ACLs of docs/operations.md, and DescribeConfigs to show the topics' settings.
    let broker = TestBroker::secure().await.unwrap();
    let cluster = broker.secure_cluster().unwrap();
    let topics = broker.topics();
    create_topics(&broker).await;
    let group = broker.name("check");
    cluster
        .grant(
            "ingress",
            &["Write", "DescribeConfigs"],
            &ingress_topics(&topics),
        )
        .await
        .unwrap();
    grant_enricher(cluster, &topics, Some(&group)).await;
    let enricher_topics = [
        &topics.analysis_result_ready,
        &topics.analysis_enriched,
        &topics.dead_letter,
    ];
    let resources: Vec<Resource> = enricher_topics
        .iter()
        .map(|t| Resource::Topic((*t).clone()))
        .collect();
    cluster
        .grant("enricher", &["DescribeConfigs"], &resources)
        .await
        .unwrap();
    let api = AnalysisApi::start("127.0.0.1:0", API_KEY, AnalysisTrouble::default()).unwrap();
    let (ingress, enricher) = (
        Config::ingress(&broker, None),
        Config::enricher(&broker, &group, &api),
    );

    // Act
    let (ingress_code, ingress_report) = ingress.check();
    let (enricher_code, enricher_report) = enricher.check();
    let table = ingress.run(&[]);

    // Assert
    assert_eq!(ingress_code, 0, "{ingress_report:#}");
    assert_eq!(ingress_report["passed"], true);
    // Kafka's default max.message.bytes (1 MiB + 12) is below the largest webhook's record
    // uncompressed: a warning (lz4 brings a JSON body under it), not a failure.
    let status_topic = format!("topic {}", topics.call_status_changed);
    assert_eq!(
        rows(&ingress_report, &status_topic),
        [
            "authorization: ok",
            "replication: ok",
            "max.message.bytes: warn"
        ]
    );
    assert!(
        detail(&ingress_report, &status_topic, "replication")
            .ends_with("replication factor 3, min.insync.replicas 2"),
        "{ingress_report:#}"
    );
    assert_eq!(
        rows(&ingress_report, "kafka"),
        ["brokers: ok", "authentication: ok"]
    );
    assert!(
        detail(&ingress_report, "kafka", "authentication").contains("SCRAM-SHA-512 as ingress")
    );
    assert_eq!(enricher_code, 0, "{enricher_report:#}");
    assert_eq!(
        rows(
            &enricher_report,
            &format!("topic {}", topics.analysis_result_ready)
        ),
        ["authorization: ok", "partitions: ok"]
    );
    assert_eq!(
        rows(&enricher_report, &format!("group {group}")),
        ["authorization: ok"]
    );
    assert_eq!(
        rows(
            &enricher_report,
            &format!(
                "analysis API default http://{}/api/v1/analysis-results/voicehub-check-no-such-analysis",
                api.host()
            )
        ),
        ["reachable: ok"]
    );
    // Neither the SASL password nor the API key is printed.
    let text = String::from_utf8_lossy(&table.stdout);
    eprintln!("{text}");
    for secret in [cluster.password("ingress").unwrap(), API_KEY.to_owned()] {
        assert!(!text.contains(&secret) && !ingress_report.to_string().contains(&secret));
        assert!(!enricher_report.to_string().contains(&secret));
    }
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_fails_authentication_not_the_brokers() {
    let broker = TestBroker::secure().await.unwrap();
    create_topics(&broker).await;

    let (code, report) = Config::ingress(&broker, Some("not-the-password-at-all")).check();

    assert_eq!(code, 3, "{report:#}");
    assert_eq!(
        rows(&report, "kafka"),
        ["brokers: ok", "authentication: fail"],
        "{report:#}"
    );
    assert!(
        detail(&report, "kafka", "authentication").contains("Authentication failed"),
        "{report:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_write_acl_is_named_and_unknown_settings_are_skipped_not_passed() {
    // Arrange: Write on every topic but the dead-letter topic; no DescribeConfigs.
    let broker = TestBroker::secure().await.unwrap();
    let cluster = broker.secure_cluster().unwrap();
    let topics = broker.topics();
    create_topics(&broker).await;
    let granted: Vec<Resource> = ingress_topics(&topics)
        .into_iter()
        .filter(|r| !matches!(r, Resource::Topic(t) if *t == topics.dead_letter))
        .collect();
    cluster
        .grant("ingress", &["Write"], &granted)
        .await
        .unwrap();
    cluster
        .grant(
            "ingress",
            &["Describe"],
            &[Resource::Topic(topics.dead_letter.clone())],
        )
        .await
        .unwrap();

    let (code, report) = Config::ingress(&broker, None).check();

    assert_eq!(code, 3, "{report:#}");
    let dead_letter = format!("topic {}", topics.dead_letter);
    assert_eq!(
        rows(&report, &dead_letter),
        [
            "authorization: fail",
            "replication: ok",
            "max.message.bytes: skip"
        ]
    );
    assert!(
        detail(&report, &dead_letter, "authorization")
            .starts_with("may not Write (allowed: Describe)"),
        "{report:#}"
    );
    assert!(
        detail(&report, &dead_letter, "max.message.bytes").contains("may not DescribeConfigs"),
        "{report:#}"
    );
    let status_topic = format!("topic {}", topics.call_status_changed);
    assert_eq!(rows(&report, &status_topic)[0], "authorization: ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_enricher_without_its_group_is_named() {
    let broker = TestBroker::secure().await.unwrap();
    let cluster = broker.secure_cluster().unwrap();
    create_topics(&broker).await;
    grant_enricher(cluster, &broker.topics(), None).await;
    let api = AnalysisApi::start("127.0.0.1:0", API_KEY, AnalysisTrouble::default()).unwrap();
    let group = broker.name("ungranted");

    let (code, report) = Config::enricher(&broker, &group, &api).check();

    assert_eq!(code, 3, "{report:#}");
    assert_eq!(
        rows(&report, &format!("group {group}")),
        ["authorization: fail"]
    );
    assert!(
        detail(&report, &format!("group {group}"), "authorization").contains("grant Read"),
        "{report:#}"
    );
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_topic_that_does_not_exist_is_named() {
    // Arrange: every topic but recordings-available, all granted.
    let broker = TestBroker::secure().await.unwrap();
    let cluster = broker.secure_cluster().unwrap();
    let topics = broker.topics();
    let names: Vec<&str> = topics
        .all()
        .iter()
        .map(|(_, name)| *name)
        .filter(|name| *name != topics.recordings_available)
        .collect();
    broker.create_topics(&names, 3).await.unwrap();
    cluster
        .grant("ingress", &["Write"], &ingress_topics(&topics))
        .await
        .unwrap();

    let (code, report) = Config::ingress(&broker, None).check();

    assert_eq!(code, 3, "{report:#}");
    let missing = format!("topic {}", topics.recordings_available);
    assert_eq!(rows(&report, &missing), ["exists: fail"]);
    assert!(detail(&report, &missing, "exists").starts_with("does not exist"));
}

#[tokio::test(flavor = "multi_thread")]
async fn topics_that_may_not_take_the_largest_webhook_are_named() {
    // Arrange: webhooks up to 2 MiB (the producer allowed 4 MiB); the topics keep Kafka's
    // default 1 MiB.
    let broker = TestBroker::secure().await.unwrap();
    let cluster = broker.secure_cluster().unwrap();
    let topics = broker.topics();
    create_topics(&broker).await;
    cluster
        .grant(
            "ingress",
            &["Write", "DescribeConfigs"],
            &ingress_topics(&topics),
        )
        .await
        .unwrap();
    let mut config = Config::ingress(&broker, None);
    config.env.insert(
        "VOICEHUB_BRIDGE__HTTP__MAX_BODY_BYTES".into(),
        "2097152".into(),
    );
    config.env.insert(
        "VOICEHUB_BRIDGE__KAFKA__PROPERTIES__MESSAGE__MAX__BYTES".into(),
        "4194304".into(),
    );

    let (code, report) = config.check();

    // A warning (compression may bring a record under the limit), naming both sizes and what
    // becomes of a record refused there.
    assert_eq!(code, 0, "{report:#}");
    let (status_topic, dead_letters) = (
        format!("topic {}", topics.call_status_changed),
        format!("topic {}", topics.dead_letter),
    );
    assert_eq!(
        rows(&report, &status_topic),
        [
            "authorization: ok",
            "replication: ok",
            "max.message.bytes: warn"
        ]
    );
    assert!(
        detail(&report, &status_topic, "max.message.bytes")
            .starts_with("1048588 < 2162688 (http.max_body_bytes + 64 KiB"),
        "{report:#}"
    );
    assert!(
        detail(&report, &dead_letters, "max.message.bytes").contains("kept nowhere"),
        "{report:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_analysis_api_that_refuses_the_key_or_does_not_answer_is_named() {
    // Arrange: an API that holds another key, and one whose port nothing listens on.
    let broker = TestBroker::secure().await.unwrap();
    let cluster = broker.secure_cluster().unwrap();
    create_topics(&broker).await;
    let group = broker.name("check-api");
    grant_enricher(cluster, &broker.topics(), Some(&group)).await;
    let api = AnalysisApi::start(
        "127.0.0.1:0",
        "another-account-key",
        AnalysisTrouble::default(),
    )
    .unwrap();
    let config = Config::enricher(&broker, &group, &api);
    let (refused_code, refused) = config.check();
    api.stop().await;
    drop(api);

    // Act: the same configuration once the API is gone.
    let (gone_code, gone) = config.check();

    // Assert
    let probe = |report: &Value| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == "reachable")
            .cloned()
            .unwrap_or_else(|| panic!("{report:#}"))
    };
    assert_eq!((refused_code, gone_code), (3, 3), "{refused:#} {gone:#}");
    assert_eq!(
        rows(&gone, &format!("group {group}")),
        ["authorization: ok"]
    );
    let (refused, gone) = (probe(&refused), probe(&gone));
    assert_eq!(refused["status"], "fail");
    assert!(
        refused["detail"].as_str().unwrap().contains("401"),
        "{refused}"
    );
    assert_eq!(gone["status"], "fail");
    assert!(
        gone["detail"].as_str().unwrap().contains("unreachable"),
        "{gone}"
    );
}
