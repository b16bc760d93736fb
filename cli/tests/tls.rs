//! End to end: `bus server` with `--tls-cert`/`--tls-key`, the client commands over https
//! with `--cacert` (and `BUS_CACERT`), a certificate reloaded on SIGHUP, and the refusal to
//! listen beyond loopback without `--allow-anonymous`.

use std::process::Command;

mod common;

use common::{ServerProcess, bus, ok, run, stderr, stdout};

#[test]
fn client_commands_speak_https_with_a_ca_file_and_sighup_reloads_the_certificate() {
    let certs = bus_testkit::TestCerts::new("cli");
    let data = tempfile::tempdir().unwrap();
    let cert = certs.server.cert.to_str().unwrap().to_owned();
    let key = certs.server.key.to_str().unwrap().to_owned();
    let server = ServerProcess::start_with(data.path(), &["--tls-cert", &cert, "--tls-key", &key]);
    assert!(
        server.url().starts_with("https://127.0.0.1:"),
        "{}",
        server.url()
    );
    let ca = certs.ca.to_str().unwrap().to_owned();

    let o = ok(run(
        &mut server.bus(&["--cacert", &ca, "put", "user.a", "over tls"])
    ));
    assert!(
        stdout(&o).starts_with("published user.a as "),
        "{}",
        stdout(&o)
    );
    let o = ok(run(server
        .bus(&[
            "get", "user.>", "--from", "oldest", "--count", "1", "--json",
        ])
        .env("BUS_CACERT", &ca)));
    assert!(stdout(&o).contains("over tls"), "{}", stdout(&o));

    // Without the CA the certificate is refused, and the command says why.
    let o = run(&mut server.bus(&["ns"]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("certificate"), "{}", stderr(&o));

    // SIGHUP: the new certificate for new connections.
    let new_ca = certs.replace_server("next");
    let status = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    server.wait_log("TLS certificate reloaded");
    let new_ca = new_ca.to_str().unwrap();
    ok(run(&mut server.bus(&["--cacert", new_ca, "ns"])));
    let o = run(&mut server.bus(&["--cacert", &ca, "ns"]));
    assert_eq!(
        o.status.code(),
        Some(2),
        "the old CA no longer verifies: {}",
        stderr(&o)
    );

    // A bad file on reload keeps the certificate in force and logs an error.
    std::fs::write(&certs.server.cert, "garbage").unwrap();
    Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    let line = server.wait_log("not reloaded");
    assert!(line.contains("ERROR"), "{line}");
    ok(run(&mut server.bus(&["--cacert", new_ca, "ns"])));
    let status = server.signal_and_wait("-TERM");
    assert!(status.success(), "{status}");
}

#[test]
fn refuses_to_listen_beyond_loopback_without_allow_anonymous() {
    let data = tempfile::tempdir().unwrap();
    let o = run(bus()
        .args(["server", "--addr", "0.0.0.0:0", "--data"])
        .arg(data.path()));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("refusing to listen on 0.0.0.0:0"), "{err}");
    assert!(err.contains("--allow-anonymous"), "{err}");
    assert!(!data.path().join("data").exists());

    // With it, the broker starts, warns, and serves.
    let server = ServerProcess::start_at(data.path(), "0.0.0.0:0", &["--allow-anonymous"]);
    let line = server.wait_log("without credentials");
    assert!(line.contains("WARN"), "{line}");
    ok(run(&mut server.bus(&["ns"])));
}
