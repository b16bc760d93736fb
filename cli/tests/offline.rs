//! Tests of the built `bus` binary that need no broker: usage errors, environment
//! variables, an unreachable broker, and (against a canned HTTP responder on a loopback
//! port) error answers and a closed stdout pipe.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{RUN_TIMEOUT, bus, run, wait};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn unreachable_broker_fails_fast_with_status_2() {
    let url = format!("http://127.0.0.1:{}", closed_port());
    for args in [
        &["ns"][..],
        &["put", "user.created", "hello"],
        &["get", "user.>", "--count", "1"],
        &["--json", "ns"],
    ] {
        let start = Instant::now();
        let o = run(bus().arg("--url").arg(&url).args(args));
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{args:?} took {:?}",
            start.elapsed()
        );
        assert!(
            err.starts_with(&format!("bus: cannot reach the broker at {url}: ")),
            "{args:?}: {err}"
        );
        assert!(o.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn url_comes_from_bus_url() {
    let url = format!("http://127.0.0.1:{}", closed_port());
    let o = run(bus().env("BUS_URL", &url).arg("ns"));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains(&url), "{}", stderr(&o));
    // A flag wins over the variable.
    let other = format!("http://127.0.0.1:{}", closed_port());
    let o = run(bus().env("BUS_URL", &url).args(["ns", "--url", &other]));
    assert!(stderr(&o).contains(&other), "{}", stderr(&o));
}

#[test]
fn usage_errors_exit_2_with_the_bus_prefix() {
    for args in [
        &["put"][..],
        &["frobnicate"],
        &["get", "a", "--count", "x"],
        &["--url", "ftp://x", "ns"],
    ] {
        let o = run(bus().args(args));
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).starts_with("bus: "), "{args:?}: {}", stderr(&o));
        assert!(o.stdout.is_empty(), "{args:?}");
    }
    let o = run(bus().arg("--help"));
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("server"));
}

#[test]
fn server_flags_come_from_the_environment() {
    // Each variable is read: an invalid value is refused naming its flag, before anything
    // is opened or bound.
    let dir = tempfile::tempdir().unwrap();
    for (var, value, expect) in [
        ("BUS_ADDR", "nowhere", "--addr"),
        ("BUS_FSYNC", "sometimes", "--fsync"),
        ("BUS_MAX_PAYLOAD", "1XB", "--max-payload"),
        ("BUS_SEGMENT_SIZE", "big", "--segment-size"),
        ("BUS_RETENTION_AGE", "5", "--retention-age"),
        ("BUS_RETENTION_BYTES", "-1", "--retention-bytes"),
        ("BUS_RETENTION_EVENTS", "many", "--retention-events"),
        ("BUS_DEDUP_WINDOW", "2", "--dedup-window"),
        ("BUS_MAX_CONNECTIONS", "lots", "--max-connections"),
        ("BUS_NS_CONFIG", "rpc:colour=blue", "--ns-config"),
        (
            "BUS_MAX_CONNECTIONS",
            "0",
            "max connections must be positive",
        ),
        ("BUS_NAMESPACES", "user,a.b", "invalid configuration"),
        ("BUS_LOG_LEVEL", "info,=[", "invalid log level"),
    ] {
        let o = run(bus()
            .arg("server")
            .env("BUS_DATA", dir.path())
            .env("BUS_ADDR", "127.0.0.1:0")
            .env(var, value));
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{var}={value}: {err}");
        assert!(err.starts_with("bus: "), "{var}={value}: {err}");
        assert!(err.contains(expect), "{var}={value}: {err}");
    }
}

/// A canned HTTP/1.1 responder: answers `/healthz` with 200, `POST /v1/events/...` with
/// `publish` (status and body), and `/v1/stream` with an endless SSE stream of events
/// (bounded to 100,000) until the client goes away. Serves until the test ends.
fn fake_broker(publish: (u16, &'static str)) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            std::thread::spawn(move || serve(conn, publish));
        }
    });
    format!("http://{addr}")
}

fn serve(conn: TcpStream, publish: (u16, &'static str)) {
    conn.set_read_timeout(Some(RUN_TIMEOUT)).unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut content_length = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                content_length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; content_length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let path = request_line.split(' ').nth(1).unwrap_or("");
        let respond = |conn: &mut TcpStream, status: u16, body: &str| {
            write!(
                conn,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let ok = if path.starts_with("/healthz") {
            respond(&mut conn, 200, r#"{"status":"ok"}"#)
        } else if path.starts_with("/v1/events/") {
            respond(&mut conn, publish.0, publish.1)
        } else if path.starts_with("/v1/stream") {
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n\
                  event: subscribed\ndata: {\"subscription\":\"s-1\",\"pattern\":\">\",\"from\":\"newest\"}\n\n",
            );
            for seq in 1..=100_000u64 {
                let ev = format!(
                    "id: user-{seq}-0\ndata: {{\"id\":\"user-{seq}-0\",\"subject\":\"user.created\",\"namespace\":\"user\",\"sequence\":{seq},\"time\":\"2026-11-23T13:22:11.123456789Z\",\"headers\":{{}},\"payload\":{{\"n\": {seq}}}}}\n\n"
                );
                if conn.write_all(ev.as_bytes()).is_err() {
                    return;
                }
            }
            return;
        } else {
            respond(
                &mut conn,
                404,
                r#"{"error":{"code":"not_found","message":"no such path"}}"#,
            )
        };
        if ok.is_err() {
            return;
        }
    }
}

#[test]
fn a_closed_stdout_pipe_exits_0_quietly() {
    let url = fake_broker((201, "{}"));
    let mut child = bus()
        .args(["--url", &url, "get", ">", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read one line on a thread (so the wait is bounded), then close the pipe like `head -1`.
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        let mut out = BufReader::new(stdout);
        let mut first = String::new();
        let _ = out.read_line(&mut first);
        let _ = tx.send(first);
    });
    let first = rx.recv_timeout(RUN_TIMEOUT).expect("a first line");
    // The event JSON exactly as sent, spacing included.
    assert!(first.ends_with("\"payload\":{\"n\": 1}}\n"), "{first}");
    let o = wait(child);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stderr(&o), "");
}

#[test]
fn get_count_prints_exactly_n_events() {
    let url = fake_broker((201, "{}"));
    let o = run(bus().args(["--url", &url, "get", ">", "--json", "--count", "3"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[2].contains("\"sequence\":3"));
    // Readable form: subject first, no colour when piped.
    let o = run(bus().args(["--url", &url, "get", ">", "-n", "1"]));
    let text = String::from_utf8(o.stdout).unwrap();
    assert_eq!(
        text,
        "user.created #1 2026-11-23T13:22:11.123456789Z {\"n\": 1}\n"
    );
}

#[test]
fn put_prints_the_receipt_verbatim_with_json() {
    const RECEIPT: &str = r#"{"id":"user-1-9f3c2a1b","namespace":"user","sequence":1,"subject":"user.created","time":"2026-11-23T13:22:11.123456789Z"}"#;
    let url = fake_broker((201, RECEIPT));
    let o = run(bus().args(["--url", &url, "--json", "put", "user.created", "{}"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(String::from_utf8(o.stdout).unwrap(), format!("{RECEIPT}\n"));
    let o = run(bus().args(["--url", &url, "put", "user.created", "{}"]));
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        "published user.created as user-1-9f3c2a1b (sequence 1)\n"
    );
}

#[test]
fn error_answers_exit_2_naming_the_code() {
    let url = fake_broker((
        400,
        r#"{"error":{"code":"invalid_subject","message":"empty token at position 2 in \"a..b\""}}"#,
    ));
    let o = run(bus().args(["--url", &url, "put", "a..b", "x"]));
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "bus: cannot publish to a..b: broker answered 400 invalid_subject: empty token at position 2 in \"a..b\"\n"
    );
    assert!(o.stdout.is_empty());
}

#[test]
fn server_help_lists_only_server_flags() {
    let o = run(bus().args(["server", "--help"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let help = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(help.contains("--addr") && help.contains("--data"), "{help}");
    assert!(
        !help.contains("--url") && !help.contains("--json"),
        "{help}"
    );
    // The client commands still have them.
    let o = run(bus().args(["get", "--help"]));
    let help = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(help.contains("--url") && help.contains("--json"), "{help}");
    // Given to the server anyway, they are refused rather than ignored.
    for args in [
        &["server", "--url", "http://h:1"][..],
        &["server", "--json"],
    ] {
        let o = run(bus().args(args).args(["--data", "/nonexistent/bus-test"]));
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).starts_with("bus: bus server does not take --"),
            "{}",
            stderr(&o)
        );
    }
}
