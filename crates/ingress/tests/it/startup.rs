use std::process::Command;

fn ingress() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_voicehub-ingress"));
    command.env_clear();
    command
}

#[test]
fn a_bad_value_stops_the_binary_at_startup_naming_the_key() {
    let output = ingress()
        .env("VOICEHUB_BRIDGE__HTTP__MAX_BODY_BYTES", "lots")
        .output()
        .unwrap();

    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`http.max_body_bytes`"), "{stderr}");
}

#[test]
fn a_missing_secret_stops_the_binary_naming_the_source_and_variable_not_a_value() {
    let config = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(
        config.path(),
        "[sources.default]\nsecret_envs = [\"NOT_SET_ANYWHERE\"]\n",
    )
    .unwrap();

    let output = ingress()
        .arg("--config")
        .arg(config.path())
        .output()
        .unwrap();

    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("sources.default: environment variable NOT_SET_ANYWHERE is unset"),
        "{stderr}"
    );
}

#[test]
fn check_config_validates_without_secrets_or_broker() {
    let shipped = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/config/ingress.toml"
    );
    let output = ingress()
        .args(["--check-config", "--config", shipped])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");

    // Each librdkafka property is reported with where it comes from; secrets are not shown.
    let variable = "VOICEHUB_BRIDGE__KAFKA__PROPERTIES__SASL__PASSWORD";
    let output = ingress()
        .args(["--check-config", "--config", shipped])
        .env(variable, "hunter2-secret")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .lines()
            .any(|line| line.trim_start().starts_with("sasl.password ")
                && line.ends_with(&format!("(secret, not shown)  <- environment ({variable})"))),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");

    let output = ingress()
        .args(["--check-config", "--config", shipped])
        .env("VOICEHUB_BRIDGE__KAFKA__COMPRESSION", "brotli")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`kafka.compression`"), "{stderr}");

    // Cross-field validation runs too: what the service would refuse at startup.
    let output = ingress()
        .args(["--check-config", "--config", shipped])
        .env("VOICEHUB_BRIDGE__HTTP__PRODUCE_DEADLINE_MS", "10000")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`http.produce_deadline_ms`"), "{stderr}");
}
