//! `proto-docs/openapi.yaml` and the server agree: every documented path and method is
//! served (answers something other than 404 not_found / 405), every route of the router is
//! documented, and every error code the server can answer is in the spec's enum.

use std::collections::BTreeSet;
use std::io::{Read, Write};

use bus_broker::broker::Broker;
use bus_broker::config::Config;

const SPEC: &str = include_str!("../../proto-docs/openapi.yaml");

/// (METHOD, path) pairs under `paths:`, read from the YAML's indentation.
fn documented() -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let mut in_paths = false;
    let mut path = None;
    for line in SPEC.lines() {
        if !line.starts_with(' ') {
            in_paths = line.trim_end() == "paths:";
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(p) = line.strip_prefix("  ").filter(|l| l.starts_with('/')) {
            path = Some(p.trim_end().trim_end_matches(':').to_owned());
        } else if let Some(m) = line.strip_prefix("    ").filter(|l| !l.starts_with(' ')) {
            let m = m.trim_end().trim_end_matches(':');
            if ["get", "post", "put", "delete", "patch"].contains(&m) {
                out.insert((m.to_uppercase(), path.clone().expect("method before path")));
            }
        }
    }
    out
}

#[test]
fn every_route_is_documented_and_every_documented_route_is_routed() {
    let routes: BTreeSet<(String, String)> = bus_broker::http::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let spec = documented();
    assert!(spec.len() >= 9, "spec parse found only {spec:?}");
    assert_eq!(routes, spec, "router and openapi.yaml differ");
}

#[test]
fn every_error_code_is_in_the_spec() {
    use bus_broker::error::ErrorCode::*;
    for code in [
        InvalidSubject,
        WildcardInSubject,
        InvalidPattern,
        InvalidStart,
        InvalidBatch,
        InvalidHeader,
        InvalidParameter,
        ReservedNamespace,
        NamespaceLimit,
        UnknownNamespace,
        UnknownEvent,
        NotFound,
        UnknownConsumer,
        NotDelivered,
        ConsumerConflict,
        NotHeld,
        MethodNotAllowed,
        PayloadTooLarge,
        ReadOnly,
        ShuttingDown,
        UnknownInbox,
        TooManyRequests,
        ReplyError,
        NoResponders,
        Timeout,
        Internal,
    ] {
        assert!(
            SPEC.contains(code.as_str()),
            "{} missing from openapi.yaml",
            code.as_str()
        );
    }
}

/// One HTTP/1.1 request on a fresh connection; returns the status and the start of the body.
fn request(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let body = if method == "POST" {
        "[{\"subject\":\"user.a\"}]"
    } else {
        ""
    };
    write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut buf = vec![0u8; 4096];
    // Read until the headers and the start of the body are in.
    let mut got = Vec::new();
    // Streams never end by themselves: the status line and first bytes are enough.
    loop {
        let text = String::from_utf8_lossy(&got);
        if text
            .split_once("\r\n\r\n")
            .is_some_and(|(_, b)| !b.is_empty())
        {
            break;
        }
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_owned(),
        ..Config::default()
    };
    let (broker, _) = Broker::open(config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(bus_broker::server::run(listener, broker.clone(), async {
        let _ = rx.await;
    }));
    for (method, path) in documented() {
        let concrete = path
            .replace("{subject}", "user.created")
            .replace("{name}", "user")
            + if path == "/v1/stream" || (path == "/v1/events" && method == "GET") {
                "?pattern=user.%3E"
            } else {
                ""
            };
        let (status, text) = tokio::task::spawn_blocking(move || request(addr, &method, &concrete))
            .await
            .unwrap();
        // Routed: anything but a 405 or the router's own not_found (unknown_namespace is a
        // routed answer).
        assert!(
            status != 405 && !text.contains("\"not_found\""),
            "{path}: {status}\n{text}"
        );
        // A request with nobody subscribed is answered 503 no_responders, by its handler.
        let served = status < 500 || text.contains("\"no_responders\"");
        assert!(status != 0 && served, "{path}: {status}\n{text}");
    }
    let _ = tx.send(());
    tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    broker.close().await;
}
