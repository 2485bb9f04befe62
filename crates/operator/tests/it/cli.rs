use std::process::Command;
use std::time::Duration;

use serde_json::json;

use voicehub_testkit::TestBroker;

use crate::helpers::{ingress_dead_letter, kafka_settings, produce, producer, status_body};

const SECRET: &str = "hunter2-sasl-password";
/// Escape sequences (ESC, the 8-bit CSI) and a right-to-left override, as a JSON string body.
const HOSTILE: &str = "\"\u{1b}[2J\u{9b}31m\u{202e}gnp.exe\"";

/// Runs the `voicehub` binary against `broker` (topics through the environment, a Kafka
/// property holding a secret through the file): exit code, stdout, stderr.
fn voicehub(broker: &TestBroker, config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let topics = broker.topics();
    let output = Command::new(env!("CARGO_BIN_EXE_voicehub"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env(
            "VOICEHUB_BRIDGE__KAFKA__BOOTSTRAP_SERVERS",
            broker.bootstrap_servers(),
        )
        .env(
            "VOICEHUB_BRIDGE__KAFKA__TOPICS__DEAD_LETTER",
            &topics.dead_letter,
        )
        .env(
            "VOICEHUB_BRIDGE__KAFKA__TOPICS__CALL_STATUS_CHANGED",
            &topics.call_status_changed,
        )
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    );
    assert!(
        !stdout.contains(SECRET) && !stderr.contains(SECRET),
        "{stdout}\n{stderr}"
    );
    (output.status.code().unwrap_or(-1), stdout, stderr)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_summarises_shows_and_dry_runs_with_a_json_line_and_an_honest_exit_code() {
    let broker = TestBroker::start().await.unwrap();
    let kafka = kafka_settings(&broker);
    let topics = kafka.topics.clone();
    broker
        .create_topics(&[&topics.dead_letter, &topics.call_status_changed], 2)
        .await
        .unwrap();
    let producer = producer(&kafka);
    for i in 0..2 {
        let body = status_body(&format!("evt-{i}"), "call-1", r#""completed""#);
        produce(
            &producer,
            &topics.dead_letter,
            &ingress_dead_letter(&body, "invalid_field"),
        )
        .await;
    }
    produce(
        &producer,
        &topics.dead_letter,
        &ingress_dead_letter(b"{", "invalid_json"),
    )
    .await;
    // A body that would drive an operator's terminal if printed as it is.
    produce(
        &producer,
        &topics.dead_letter,
        &ingress_dead_letter(HOSTILE.as_bytes(), "not_an_object"),
    )
    .await;
    broker
        .wait_for_records(&topics.dead_letter, 4, Duration::from_secs(30))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ingress.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka.properties]\n\"sasl.password\" = \"{SECRET}\"\n\n[http]\nmax_in_flight = 7\n"
        ),
    )
    .unwrap();

    // Act
    let (summary_code, summary, _) = voicehub(&broker, &config, &["dead-letters", "summary"]);
    let (_, filtered, _) = voicehub(
        &broker,
        &config,
        &["dead-letters", "summary", "--reason", "invalid_json"],
    );
    let (show_code, show, _) = voicehub(
        &broker,
        &config,
        &["dead-letters", "show", "--reason", "invalid_json"],
    );
    let (dry_code, dry, dry_err) = voicehub(&broker, &config, &["redrive", "--dry-run"]);
    let hostile = ["dead-letters", "show", "--reason", "not_an_object"];
    let (_, shown, _) = voicehub(&broker, &config, &hostile);
    let (_, redacted, _) = voicehub(&broker, &config, &[&hostile[..], &["--redact"]].concat());

    // Assert
    assert_eq!(summary_code, 0, "{summary}");
    let summary: serde_json::Value = serde_json::from_str(summary.trim()).unwrap();
    assert_eq!(
        (&summary["read"], &summary["total"]),
        (&json!(4), &json!(4))
    );
    // What was read beside what matched.
    let filtered: serde_json::Value = serde_json::from_str(filtered.trim()).unwrap();
    assert_eq!(
        (&filtered["read"], &filtered["total"]),
        (&json!(4), &json!(1))
    );
    assert_eq!(summary["by_kind"]["ingress/invalid_field/acme"], 2);
    assert_eq!(show_code, 0);
    let lines: Vec<serde_json::Value> = show
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{show}");
    assert_eq!(lines[0]["value"], "{");
    assert_eq!(lines[0]["headers"]["ce_deadletterreason"], "invalid_json");
    // One still fails: exit 3, and it is named on stderr; nothing produced in a dry run.
    assert_eq!(dry_code, 3, "{dry}\n{dry_err}");
    let report: serde_json::Value = serde_json::from_str(dry.trim()).unwrap();
    assert_eq!(
        (report["dry_run"].as_bool(), report["redriven"].as_u64()),
        (Some(true), Some(2))
    );
    assert!(dry_err.contains("still fails (invalid_json)"), "{dry_err}");
    // The hostile body: escaped on the terminal, the same text to a JSON parser; redacted, only
    // its size.
    let terminal_safe = |text: &str| {
        !text
            .chars()
            .any(|c| (c.is_control() && c != '\n') || ('\u{202a}'..='\u{202e}').contains(&c))
    };
    assert!(
        terminal_safe(&shown) && terminal_safe(&dry_err),
        "{shown:?} {dry_err:?}"
    );
    let shown: serde_json::Value = serde_json::from_str(shown.trim()).unwrap();
    assert_eq!(shown["value"], HOSTILE);
    let redacted: serde_json::Value = serde_json::from_str(redacted.trim()).unwrap();
    assert_eq!(
        redacted["value"],
        serde_json::json!({ "redacted": true, "bytes": HOSTILE.len() })
    );
    assert!(
        broker
            .read_all(&topics.call_status_changed)
            .await
            .unwrap()
            .is_empty()
    );
}

#[test]
fn help_version_and_completions() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_voicehub"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let help = run(&["--help"]);
    for command in ["dead-letters", "redrive", "spool", "completions"] {
        assert!(help.contains(command), "{help}");
    }
    assert!(run(&["--version"]).contains(env!("CARGO_PKG_VERSION")));
    assert!(run(&["completions", "bash"]).contains("voicehub"));
}

/// Runs the `voicehub` binary with no broker and no configuration but `env`: exit code and
/// stderr.
fn offline(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_voicehub"))
        .args(args)
        .env_remove("VOICEHUB_BRIDGE_CONFIG")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code().unwrap_or(-1), stderr)
}

#[test]
fn a_command_line_that_cannot_match_anything_is_refused_before_any_work() {
    for (args, says) in [
        (&["redrive", "--limit", "0"][..], "0 is not in 1.."),
        (
            &["dead-letters", "show", "--limit", "0"][..],
            "0 is not in 1..",
        ),
        (
            &["dead-letters", "summary", "--stage", "enrich"][..],
            "[possible values: ingress, enricher]",
        ),
        (
            &["redrive", "--reason", "unauthorised"][..],
            "[possible values: client_error, dead_letter_too_large,",
        ),
        (
            &["redrive", "--stage", "ingress", "--reason", "unauthorized"][..],
            "--reason unauthorized is never written by --stage ingress (reasons by stage: \
             ingress: invalid_json,",
        ),
        (
            &[
                "redrive",
                "--since",
                "2026-01-02T00:00:00Z",
                "--until",
                "2026-01-01T00:00:00Z",
            ][..],
            "is not before --until",
        ),
    ] {
        let (code, stderr) = offline(args, &[]);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    // A reason any stage writes, with that stage or none, is accepted (and only then does the
    // command look for its configuration).
    for args in [
        &["redrive", "--reason", "unauthorized"][..],
        &[
            "redrive",
            "--stage",
            "enricher",
            "--reason",
            "internal_error",
        ][..],
    ] {
        let (code, stderr) = offline(
            args,
            &[("VOICEHUB_BRIDGE_CONFIG", "/nonexistent/ingress.toml")],
        );
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(stderr.contains("/nonexistent/ingress.toml"), "{stderr}");
    }
}

#[test]
fn the_configuration_named_by_voicehub_bridge_config_is_the_one_read() {
    let (code, stderr) = offline(
        &["dead-letters", "summary"],
        &[("VOICEHUB_BRIDGE_CONFIG", "/nonexistent/ingress.toml")],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("/nonexistent/ingress.toml"), "{stderr}");
}

#[test]
fn completions_into_a_closed_pipe_end_quietly() {
    // Every write fails with EPIPE: the reader end is closed before the binary starts.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = Command::new(env!("CARGO_BIN_EXE_voicehub"))
        .args(["completions", "bash"])
        .stdout(writer)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn brokers_that_do_not_answer_are_named_once_with_where_they_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("enricher.toml");
    std::fs::write(&config, "[kafka]\nbootstrap_servers = \"127.0.0.1:2\"\n").unwrap();
    let config = config.to_str().unwrap();
    for (env, origin) in [
        (
            &[("VOICEHUB_BRIDGE__KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")][..],
            "brokers 127.0.0.1:1 (from VOICEHUB_BRIDGE__KAFKA__BOOTSTRAP_SERVERS)".to_owned(),
        ),
        (
            &[("VOICEHUB_BRIDGE_CONFIG", config)][..],
            format!("brokers 127.0.0.1:2 (from {config})"),
        ),
    ] {
        let (code, stderr) = offline(&["--timeout", "1", "dead-letters", "summary"], env);
        assert_eq!(code, 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!("voicehub: {origin}: metadata of ")),
            "{stderr}"
        );
        assert_eq!(
            stderr.matches("BrokerTransportFailure").count(),
            1,
            "{stderr}"
        );
    }
}

#[test]
fn a_check_with_brokers_that_do_not_answer_fails_its_brokers_row() {
    // Plaintext, and SASL_SSL: librdkafka names its brokers `sasl_ssl://...`, which must not
    // read as a refused login.
    for properties in [
        "",
        "[kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanism\" = \"SCRAM-SHA-512\"\n\"sasl.username\" = \"u\"\n\"sasl.password\" = \"p\"\n",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("ingress.toml");
        std::fs::write(
            &config,
            format!("[kafka]\nbootstrap_servers = \"127.0.0.1:1\"\n{properties}"),
        )
        .unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_voicehub"))
            .arg("--config")
            .arg(&config)
            .args(["--timeout", "1", "check", "--service", "ingress", "--json"])
            .env_remove("VOICEHUB_BRIDGE_CONFIG")
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(output.status.code(), Some(3), "{report:#}");
        assert_eq!(report["passed"], false);
        let checks = report["checks"].as_array().unwrap();
        assert_eq!(checks[0]["check"], "brokers", "{report:#}");
        assert_eq!(checks[0]["status"], "fail", "{report:#}");
        assert!(
            checks[0]["detail"]
                .as_str()
                .unwrap()
                .starts_with("none of 127.0.0.1:1 answered within 1s"),
            "{report:#}"
        );
        // Nothing else is asked of brokers that do not answer.
        assert_eq!(checks.len(), 1, "{report:#}");
    }
}

#[test]
fn the_checks_default_body_limit_is_the_ingresss() {
    assert_eq!(
        voicehub_operator::settings::INGRESS_DEFAULT_MAX_BODY_BYTES,
        voicehub_ingress::settings::HttpSettings::default().max_body_bytes
    );
}
