//! `examples/curl.sh`, the HTTP API walkthrough, run against a fresh broker: every step
//! passes; and against a broker that cannot answer one of them (a single namespace allowed,
//! so the `rpc` steps are refused) it stops with a failing status and names the step, which
//! shows that its checks check. Needs `curl` (`.ci/run` installs it); without it the test
//! says so and skips, except under CI.

use std::process::Command;

use bus_testkit::*;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/curl.sh");

fn curl_available() -> bool {
    let ok = Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but curl is missing"
        );
        eprintln!("skipped: needs curl (apt-get install curl)");
    }
    ok
}

/// Runs the script against `s` off the runtime; (status, stdout, stderr).
async fn walk(s: &TestServer) -> (std::process::ExitStatus, String, String) {
    let url = s.base();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg(SCRIPT)
            .env("BUS_URL", url)
            .output()
            .expect("run bash")
    });
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), out)
        .await
        .expect("the walkthrough ends within 2 minutes")
        .expect("join");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_of_the_walkthrough_passes() {
    if !curl_available() {
        return;
    }
    let s = TestServer::start_default().await;
    let (status, out, err) = walk(&s).await;
    assert!(status.success(), "curl.sh failed\n{out}\n{err}");
    for step in [
        "publish",
        "batch",
        "pull",
        "stream",
        "attach",
        "ack",
        "consumer",
        "delete consumer",
        "member stream ended",
        "request",
        "no responders",
        "error as JSON",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(&format!("ok: {step}"))),
            "no `ok: {step}` in\n{out}"
        );
    }
    assert!(out.ends_with("walkthrough done\n"), "{out}");
    // What the script did is in the broker: the three events, and the answered request.
    let page = s.get_json("/v1/events?pattern=user.%3E&from=oldest").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 3, "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_answer_stops_the_walkthrough_at_its_step() {
    if !curl_available() {
        return;
    }
    // Only one namespace: `user` fits, `rpc` (the request step) is refused.
    let s = TestServer::start(|c| c.max_namespaces = 1).await;
    let (status, out, err) = walk(&s).await;
    assert!(
        !status.success(),
        "curl.sh passed against a broker that refuses rpc\n{out}"
    );
    assert!(err.contains("FAILED: request"), "{err}");
    assert!(!out.contains("walkthrough done"), "{out}");
}
