//! End to end: `bus auth token` makes an entry that `bus server --auth` accepts; the client
//! commands send `--token` / `BUS_TOKEN`; refusals (401 with its reason, 403 naming the
//! operation, the subject and the missing right) are printed plainly; `bus auth whoami`; and a
//! token removed from the file stops working after SIGHUP.

use std::path::Path;
use std::process::Command;

mod common;

use common::{ServerProcess, bus, ok, run, stderr, stdout};

/// `bus auth token NAME --json`: the token and its stored digest.
fn new_token(name: &str) -> (String, String) {
    let o = ok(run(bus().args(["auth", "token", name, "--json"])));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("JSON");
    assert_eq!(v["principal"], name);
    (
        v["token"].as_str().expect("token").to_owned(),
        v["stored"].as_str().expect("stored").to_owned(),
    )
}

/// Writes an auth file with `orders` (publish and subscribe `orders.>`, may create `orders`)
/// holding the digests `stored`.
fn write_auth(path: &Path, stored: &[&str]) {
    let tokens = stored
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let yaml = format!(
        r#"principals:
  - name: orders
    tokens: [{tokens}]
    permissions:
      publish: {{allow: ["orders.>"]}}
      subscribe: {{allow: ["orders.>"]}}
      create_namespace: {{names: ["orders"], quota: 1}}
"#
    );
    std::fs::write(path, yaml).expect("write the auth file");
}

#[test]
fn auth_token_prints_a_fresh_token_and_the_entry_holding_only_its_digest() {
    let (a, stored_a) = new_token("svc");
    let (b, _) = new_token("svc");
    assert!(a.starts_with("bus_") && a.len() > 40, "{a}");
    assert_ne!(a, b, "two runs, two tokens");
    assert_eq!(
        stored_a,
        bus_broker::auth::bearer_token::TokenHash::of(&a).to_stored()
    );
    assert!(stored_a.starts_with("sha256:"), "{stored_a}");

    let o = ok(run(bus().args(["auth", "token", "billing"])));
    let text = stdout(&o);
    assert!(text.contains("- name: billing"), "{text}");
    assert!(text.contains("tokens: [\"sha256:"), "{text}");
    let token = text
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .expect("a token line");
    // The entry holds the digest of the printed token, never the token itself.
    let stored = bus_broker::auth::bearer_token::TokenHash::of(token).to_stored();
    assert!(text.contains(&stored), "{text}");
    assert_eq!(text.matches(token).count(), 1, "{text}");
}

#[test]
fn client_commands_send_the_token_and_print_refusals_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let (token, stored) = new_token("orders");
    let file = dir.path().join("auth.yaml");
    write_auth(&file, &[&stored]);
    let data = dir.path().join("data");
    let server = ServerProcess::start_with(&data, &["--auth", file.to_str().unwrap()]);

    // No credential: 401, and why.
    let o = run(&mut server.bus(&["put", "orders.a", "x"]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("unauthorized"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("credentials are required"),
        "{}",
        stderr(&o)
    );

    // A token the broker does not know.
    let o = run(&mut server.bus(&["--token", "bus_not-a-real-token", "ns"]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("unauthorized"), "{}", stderr(&o));

    // --token and BUS_TOKEN both work.
    let o = ok(run(
        &mut server.bus(&["--token", &token, "put", "orders.a", "one"])
    ));
    assert!(
        stdout(&o).starts_with("published orders.a as "),
        "{}",
        stdout(&o)
    );
    let o = ok(run(server
        .bus(&[
            "get", "orders.>", "--from", "oldest", "--count", "1", "--json",
        ])
        .env("BUS_TOKEN", &token)));
    assert!(stdout(&o).contains("\"one\""), "{}", stdout(&o));

    // 403 names the operation, the subject and the missing right.
    let o = run(&mut server.bus(&["--token", &token, "put", "billing.a", "x"]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("forbidden"), "{e}");
    assert!(e.contains("billing.a"), "{e}");
    assert!(e.contains("publish"), "{e}");

    // whoami: the principal and its rights.
    let o = ok(run(&mut server.bus(&["--token", &token, "auth", "whoami"])));
    let text = stdout(&o);
    assert!(text.contains("principal: orders"), "{text}");
    assert!(text.contains("credential: token"), "{text}");
    assert!(text.contains("orders.>"), "{text}");

    // The server takes no --token: it would be a credential for nothing.
    let o = run(bus()
        .args(["--token", &token, "server", "--data"])
        .arg(dir.path().join("x")));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--token"), "{}", stderr(&o));
}

#[test]
fn a_token_removed_from_the_file_is_refused_after_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let (old, old_stored) = new_token("orders");
    let (new, new_stored) = new_token("orders");
    let file = dir.path().join("auth.yaml");
    write_auth(&file, &[&old_stored, &new_stored]);
    let data = dir.path().join("data");
    let server = ServerProcess::start_with(&data, &["--auth", file.to_str().unwrap()]);
    ok(run(
        &mut server.bus(&["--token", &old, "put", "orders.a", "1"])
    ));

    write_auth(&file, &[&new_stored]);
    let status = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    // The reload is logged once it has taken effect.
    server.wait_log("auth file reloaded");
    let o = run(&mut server.bus(&["--token", &old, "put", "orders.a", "2"]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("unauthorized"), "{}", stderr(&o));
    ok(run(
        &mut server.bus(&["--token", &new, "put", "orders.a", "3"])
    ));
}
