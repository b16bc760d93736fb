//! `docker-compose.yml` and the `Dockerfile`, checked where no image can be built (CI reaches
//! no container registry): the compose file parses and builds what the Dockerfile builds; the
//! Dockerfile's build is the README's; both health checks are the same `bus health`; the port
//! is published on loopback only; and the binary started with exactly the compose file's
//! command, environment and auth file is healthy and safe as shipped — every request but
//! `/healthz` needs a credential, and unknown Host names are refused.
//!
//! What the test maps, because a test may not bind the container's address or write its
//! paths: `BUS_ADDR`'s `0.0.0.0:2021` becomes `127.0.0.1:0`, `BUS_DATA` a temporary directory,
//! and the mounted `/etc/bus/auth.yaml` the mount's source file in this repository.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

mod common;

use common::{ServerProcess, bus, ok, run, stderr, stdout};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(repo().join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
}

fn strings(v: &serde_yaml_ng::Value) -> Vec<String> {
    v.as_sequence()
        .expect("a list")
        .iter()
        .map(|s| s.as_str().expect("a string").to_owned())
        .collect()
}

/// The `bus` service of docker-compose.yml.
fn service() -> serde_yaml_ng::Value {
    let compose: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&read("docker-compose.yml")).expect("docker-compose.yml parses");
    compose["services"]["bus"].clone()
}

#[test]
fn the_compose_file_builds_the_dockerfile_and_publishes_on_loopback_only() {
    let svc = service();
    assert_eq!(
        svc["build"].as_str(),
        Some("."),
        "built from the Dockerfile at the root"
    );
    let dockerfile = read("Dockerfile");
    let build = "cargo build --release --locked -p bus-cli";
    assert!(
        dockerfile.contains(build),
        "the Dockerfile builds with `{build}`"
    );
    assert!(
        read("README.md").contains(build),
        "the README gives the same build"
    );
    assert!(
        dockerfile.contains("USER bus"),
        "the runtime image runs as a non-root user"
    );

    for port in strings(&svc["ports"]) {
        assert!(
            port.starts_with("127.0.0.1:"),
            "published on loopback only: {port}"
        );
    }
    // One health check, in both files: `bus health`.
    let check = strings(&svc["healthcheck"]["test"]);
    assert_eq!(check[0], "CMD");
    let quoted: Vec<String> = check[1..].iter().map(|a| format!("\"{a}\"")).collect();
    let docker_cmd = format!("CMD [{}]", quoted.join(", "));
    assert!(
        dockerfile.contains(&docker_cmd),
        "the Dockerfile's HEALTHCHECK is {docker_cmd}"
    );
    // The data directory is a volume, and the auth file is mounted read-only.
    let volumes = strings(&svc["volumes"]);
    assert!(volumes.iter().any(|v| v.ends_with(":/data")), "{volumes:?}");
    assert!(
        volumes
            .iter()
            .any(|v| v == "./deploy/auth.yaml:/etc/bus/auth.yaml:ro"),
        "{volumes:?}"
    );
}

/// Sends `GET path` with `host` on a plain connection; returns the status line.
fn status_with_host(url: &str, path: &str, host: &str) -> String {
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(common::RUN_TIMEOUT)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.lines().next().unwrap_or_default().to_owned()
}

#[test]
fn the_binary_with_the_compose_environment_is_healthy_and_safe_as_shipped() {
    let svc = service();
    let data = tempfile::tempdir().unwrap();
    let mut env: BTreeMap<String, String> = svc["environment"]
        .as_mapping()
        .expect("environment is a map")
        .iter()
        .map(|(k, v)| {
            let v = match v {
                serde_yaml_ng::Value::String(s) => s.clone(),
                other => serde_yaml_ng::to_string(other).unwrap().trim().to_owned(),
            };
            (k.as_str().unwrap().to_owned(), v)
        })
        .collect();
    assert_eq!(env["BUS_ADDR"], "0.0.0.0:2021");
    assert!(
        env.contains_key("BUS_AUTH") && !env.contains_key("BUS_ALLOW_ANONYMOUS"),
        "credentials on, anonymous off, as shipped: {env:?}"
    );
    // The mapped parts (see the module docs).
    env.insert("BUS_ADDR".into(), "127.0.0.1:0".into());
    env.insert("BUS_DATA".into(), data.path().display().to_string());
    let mount = strings(&svc["volumes"])
        .into_iter()
        .find_map(|v| {
            let mut parts = v.split(':');
            let (from, to) = (parts.next()?, parts.next()?);
            (to == env["BUS_AUTH"]).then(|| repo().join(from))
        })
        .expect("the auth file is mounted");
    env.insert("BUS_AUTH".into(), mount.display().to_string());

    let mut cmd = bus();
    cmd.args(strings(&svc["command"])).envs(&env);
    let server = ServerProcess::spawn(cmd);

    let o = ok(run(&mut server.bus(&["health"])));
    assert!(stdout(&o).contains("healthy"), "{}", stdout(&o));
    // As shipped the auth file holds no token: everything else is refused.
    let o = run(&mut server.bus(&["ns"]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("unauthorized"), "{}", stderr(&o));
    // A name outside BUS_ALLOWED_HOSTS (DNS rebinding) is refused; a listed one answered.
    assert!(
        status_with_host(server.url(), "/healthz", "evil.example").contains(" 421 "),
        "421 for an unknown Host"
    );
    assert!(
        status_with_host(server.url(), "/healthz", "localhost").contains(" 200 "),
        "200 for localhost"
    );
}

#[test]
fn health_fails_plainly_when_no_broker_answers() {
    let port = common::free_port();
    let o = run(bus().args(["--url", &format!("http://127.0.0.1:{port}"), "health"]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cannot reach the broker"),
        "{}",
        stderr(&o)
    );
}
