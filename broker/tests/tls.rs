//! End to end: HTTPS. A certificate made in the test (rcgen) served by the broker, reached
//! with `curl` over HTTP/1.1 and HTTP/2 (by ALPN), a plain-HTTP request refused by the TLS
//! listener, and a certificate reloaded without dropping the connections already open.

use std::process::Stdio;

use bus_broker::broker::Broker;
use bus_broker::config::Config;
use bus_broker::tls::Tls;
use bus_testkit::*;
use futures::StreamExt as _;

/// `curl` with `args`; returns (exit success, stdout, stderr).
async fn curl(args: &[&str]) -> (bool, String, String) {
    let out = within(
        "curl",
        tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "10"])
            .args(args)
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("curl is installed (the TLS tests need it)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn serves_https_over_http1_and_http2_by_alpn() {
    let certs = TestCerts::new("a");
    let files = certs.server.clone();
    let s = TestServer::start_on(Engine::Memory, move |c| c.tls = Some(files.clone())).await;
    let ca = certs.ca.to_str().unwrap();
    let base = format!("https://127.0.0.1:{}", s.addr().port());
    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let url = format!("{base}/v1/events/user.a");
        let (ok, out, err) = curl(&[
            flag,
            "--cacert",
            ca,
            "-H",
            "content-type: text/plain",
            "--data-binary",
            "hello",
            "-w",
            "\n%{http_code} %{http_version}",
            &url,
        ])
        .await;
        assert!(ok, "curl {flag}: {err}");
        assert!(
            out.ends_with(&format!("201 {version}")),
            "curl {flag}: {out}"
        );
        assert!(out.contains(r#""sequence""#), "a receipt: {out}");
    }
    let url = format!("https://localhost:{}/healthz", s.addr().port());
    let (ok, _, err) = curl(&[
        "--cacert",
        ca,
        "--resolve",
        &format!("localhost:{}:127.0.0.1", s.addr().port()),
        &url,
    ])
    .await;
    assert!(ok, "by name: {err}");
    // Without the CA, curl refuses the certificate; plain HTTP gets no answer.
    let (ok, _, err) = curl(&[&format!("{base}/healthz")]).await;
    assert!(!ok, "an unknown CA must be refused: {err}");
    let (ok, out, _) = curl(&[&s.url("/healthz")]).await;
    assert!(!ok, "plain HTTP to a TLS port: {out}");
    assert_eq!(s.broker().namespaces().len(), 1);
}

#[tokio::test]
async fn a_reloaded_certificate_serves_new_handshakes_and_keeps_open_connections() {
    let certs = TestCerts::new("old");
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = Config {
        addr,
        data_dir: dir.path().join("data"),
        tls: Some(certs.server.clone()),
        ..Config::default()
    };
    let broker = Broker::in_memory(config).await.unwrap();
    let tls = Tls::load(&certs.server).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(bus_broker::server::run_with_tls(
        listener,
        broker.clone(),
        Some(tls.clone()),
        async {
            let _ = rx.await;
        },
    ));
    let url = format!("https://127.0.0.1:{}", addr.port());
    let old = within(
        "connect",
        bus_client::ConnectOptions::new()
            .cacert(&certs.ca)
            .unwrap()
            .connect(&url),
    )
    .await
    .unwrap();
    let mut sub = within(
        "subscribe",
        old.subscribe("user.>", bus_client::Start::Newest),
    )
    .await
    .unwrap();

    let new_ca = certs.replace_server("new");
    tls.reload().unwrap();
    // A broken file keeps the new certificate in force.
    std::fs::write(&certs.server.key, "garbage").unwrap();
    assert!(tls.reload().is_err());

    let new_ca_str = new_ca.to_str().unwrap();
    let (ok, _, err) = curl(&["--cacert", new_ca_str, &format!("{url}/healthz")]).await;
    assert!(ok, "a new handshake gets the new certificate: {err}");
    let (ok, _, _) = curl(&[
        "--cacert",
        certs.ca.to_str().unwrap(),
        &format!("{url}/healthz"),
    ])
    .await;
    assert!(!ok, "the old CA no longer verifies new handshakes");

    // The stream opened before the reload still delivers.
    let fresh = bus_client::ConnectOptions::new()
        .cacert(&new_ca)
        .unwrap()
        .connect(&url)
        .await
        .unwrap();
    fresh.publish("user.a", "after reload").await.unwrap();
    loop {
        let item = within("the old stream", sub.next()).await.unwrap().unwrap();
        if let bus_client::StreamItem::Event(m) = item {
            assert_eq!(m.payload.as_ref(), b"after reload");
            break;
        }
    }
    drop(sub);
    let _ = tx.send(());
    within("run to return", task).await.unwrap().unwrap();
    broker.close().await;
}
