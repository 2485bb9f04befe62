//! `voicehub-dev`, the README's first command, as a new user runs it: it starts, the bridge
//! becomes ready, simulated calls flow, and its output has no ERROR line.

#![allow(clippy::unwrap_used)] // test code: a panic is a failure report

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use voicehub_testkit::free_port;

#[tokio::test(flavor = "multi_thread")]
async fn a_clean_start_is_ready_and_logs_no_error() {
    let dir = tempfile::tempdir().unwrap();
    let (port, broker, api) = (
        free_port().unwrap(),
        free_port().unwrap(),
        free_port().unwrap(),
    );
    // The enricher's admin port is the one after the ingress's.
    let admin = loop {
        let admin = free_port().unwrap();
        if std::net::TcpListener::bind(("127.0.0.1", admin + 1)).is_ok() {
            break admin;
        }
    };
    let output = dir.path().join("out.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_voicehub-dev"))
        .current_dir(dir.path())
        .args([
            "--port",
            &port.to_string(),
            "--admin-port",
            &admin.to_string(),
        ])
        .args([
            "--broker-port",
            &broker.to_string(),
            "--api-port",
            &api.to_string(),
        ])
        .stdout(Stdio::from(std::fs::File::create(&output).unwrap()))
        .stderr(Stdio::from(
            std::fs::File::create(dir.path().join("err.log")).unwrap(),
        ))
        .spawn()
        .unwrap();

    // Ready: both services answer /readyz 200.
    let deadline = Instant::now() + Duration::from_secs(60);
    for admin_port in [admin, admin + 1] {
        let url = format!("http://127.0.0.1:{admin_port}/readyz");
        loop {
            let ready = reqwest::get(&url).await.is_ok_and(|r| r.status() == 200);
            if ready || Instant::now() > deadline {
                assert!(ready, "{url} not ready within 60 s");
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // some simulated calls
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let exited = child.wait().unwrap();

    let mut printed = std::fs::read_to_string(&output).unwrap();
    printed.push_str(&std::fs::read_to_string(dir.path().join("err.log")).unwrap());
    let errors: Vec<&str> = printed.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(
        errors.is_empty(),
        "ERROR lines at a clean start: {errors:#?}"
    );
    assert!(exited.success(), "{exited:?}\n{printed}");
}
