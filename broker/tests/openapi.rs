//! `proto-docs/openapi.yaml` and the server agree: every documented path and method is
//! served (answers something other than 404 not_found / 405), every route of the router is
//! documented, and every error code the server can answer is in the spec's enum.

use std::collections::BTreeSet;
use std::io::{Read, Write};

use bus_testkit::{Engine, TestServer, engines};

const SPEC: &str = include_str!("../../proto-docs/openapi.yaml");

/// The spec, parsed by a real YAML parser (a spec that is not valid YAML fails here).
fn spec() -> serde_yaml_ng::Value {
    serde_yaml_ng::from_str(SPEC).unwrap_or_else(|e| panic!("openapi.yaml is not valid YAML: {e}"))
}

/// (METHOD, path) pairs under `paths:`.
fn documented() -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let spec = spec();
    let paths = spec["paths"].as_mapping().expect("paths is a mapping");
    for (path, item) in paths {
        let path = path.as_str().expect("a path is a string");
        for (method, _) in item.as_mapping().expect("a path item is a mapping") {
            let m = method.as_str().expect("a method is a string");
            if ["get", "post", "put", "delete", "patch", "head"].contains(&m) {
                out.insert((m.to_uppercase(), path.to_owned()));
            }
        }
    }
    out
}

/// The error codes the spec's Error schema lists.
fn documented_codes() -> BTreeSet<String> {
    let spec = spec();
    let mut codes = BTreeSet::new();
    // Wherever the Error schema nests it: walk the tree for an `enum` under a `code`.
    fn walk(v: &serde_yaml_ng::Value, under_code: bool, out: &mut BTreeSet<String>) {
        match v {
            serde_yaml_ng::Value::Mapping(m) => {
                for (k, v) in m {
                    let k = k.as_str().unwrap_or_default();
                    if under_code && k == "enum" {
                        for c in v.as_sequence().into_iter().flatten() {
                            out.insert(c.as_str().unwrap_or_default().to_owned());
                        }
                    }
                    walk(v, k == "code", out);
                }
            }
            serde_yaml_ng::Value::Sequence(s) => s.iter().for_each(|v| walk(v, false, out)),
            _ => {}
        }
    }
    walk(&spec["components"], false, &mut codes);
    codes
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
    let codes = documented_codes();
    assert!(codes.len() >= 20, "found only {codes:?}");
    // Every code the protocol defines (the list `ErrorCode::parse` reads back).
    for code in bus_broker::error::ErrorCode::ALL {
        assert!(
            codes.contains(code.as_str()),
            "{} missing from the Error schema's code enum in openapi.yaml",
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
    write!(s, "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
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

engines!(every_documented_route_is_served);
async fn every_documented_route_is_served(engine: Engine) {
    let mut s = TestServer::start_default_on(engine).await;
    let addr = s.addr();
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
    // Stops gracefully: `run` returns Ok in time and the broker closes.
    s.stop().await;
}
