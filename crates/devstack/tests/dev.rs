//! `voicehub-dev`, the README's first command, as a new user runs it: it starts, the bridge
//! becomes ready, simulated calls flow, and its output has no ERROR line.

#![allow(clippy::unwrap_used)] // test code: a panic is a failure report

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use voicehub_testkit::free_port;

/// The started `voicehub-dev`, killed if the test fails before it has stopped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

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
    let child = Command::new(env!("CARGO_BIN_EXE_voicehub-dev"))
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
    let mut child = Running(child);

    // Ready: both services answer /readyz 200.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    for admin_port in [admin, admin + 1] {
        let url = format!("http://127.0.0.1:{admin_port}/readyz");
        loop {
            let ready = client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ready || Instant::now() > deadline {
                assert!(ready, "{url} not ready within 60 s");
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // some simulated calls
    let _ = Command::new("kill").arg(child.0.id().to_string()).status();
    // SIGTERM stops it within its drain deadlines (10 s each); 30 s, then it has hung.
    let deadline = Instant::now() + Duration::from_secs(30);
    let exited = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "voicehub-dev still running 30 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let mut printed = std::fs::read_to_string(&output).unwrap();
    printed.push_str(&std::fs::read_to_string(dir.path().join("err.log")).unwrap());
    let errors: Vec<&str> = printed.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(
        errors.is_empty(),
        "ERROR lines at a clean start: {errors:#?}"
    );
    assert!(exited.success(), "{exited:?}\n{printed}");
}
