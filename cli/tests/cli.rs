//! End-to-end tests of the built `bus` binary against a real broker: one started in-process
//! on port 0 with a temporary data directory, and `bus server` itself as a child process.
//! Every wait is bounded; nothing sleeps for a fixed time.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{Reader, TestBroker, bus, json_lines, lines_of, ok, run, stderr, stdout, wait};

/// Longest any one run of the binary, or any wait for a line, may take.
const TIMEOUT: Duration = common::RUN_TIMEOUT;

/// Runs with `input` on stdin.
fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bus");
    child.stdin.take().unwrap().write_all(input).unwrap();
    wait(child)
}

#[test]
fn put_get_and_ns_round_trip() {
    let b = TestBroker::start();
    let o = ok(run(&mut b.bus(&[
        "put",
        "user.created",
        r#"{"name":"ada"}"#,
    ])));
    let line = stdout(&o);
    assert!(
        line.starts_with("published user.created as user-1-"),
        "{line}"
    );
    assert!(line.ends_with(" (sequence 1)\n"), "{line}");

    let o = ok(run(&mut b.bus(&["put", "--json", "user.deleted", "bye"])));
    let receipt: serde_json::Value = serde_json::from_str(stdout(&o).trim_end()).unwrap();
    assert_eq!(receipt["sequence"], 2);
    assert_eq!(receipt["subject"], "user.deleted");
    assert_eq!(stdout(&o).lines().count(), 1);

    let o = ok(run(&mut b.bus(&[
        "get", "user.>", "--from", "oldest", "--count", "2", "--json",
    ])));
    let events = json_lines(&o);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["sequence"], 1);
    assert_eq!(events[0]["payload"]["name"], "ada");
    assert_eq!(events[0]["content_type"], "application/json");
    assert_eq!(events[1]["payload"], "bye");
    assert_eq!(events[1]["content_type"], "text/plain; charset=utf-8");

    // Readable output: one line per event, subject first.
    let o = ok(run(
        &mut b.bus(&["get", "user.>", "--from", "oldest", "-n", "1"])
    ));
    assert!(stdout(&o).starts_with("user.created #1 "), "{}", stdout(&o));
    assert!(stdout(&o).trim_end().ends_with(r#"{"name":"ada"}"#));

    let o = ok(run(&mut b.bus(&["ns", "--json"])));
    let list: serde_json::Value = serde_json::from_str(stdout(&o).trim_end()).unwrap();
    let user = list
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "user")
        .expect("namespace user");
    assert_eq!(user["events"], 2);
    assert_eq!(user["first_sequence"], 1);
    assert_eq!(user["last_sequence"], 2);
    assert!(user["bytes"].as_u64().unwrap() > 0);

    let o = ok(run(&mut b.bus(&["ns"])));
    assert!(stdout(&o).starts_with("NAMESPACE"), "{}", stdout(&o));
    assert!(stdout(&o).lines().any(|l| l.starts_with("user ")));
}

#[test]
fn put_reads_stdin_and_detects_its_content_type() {
    let b = TestBroker::start();
    ok(run_with_stdin(
        &mut b.bus(&["put", "bin.raw"]),
        &[0, 0xFF, 0x10],
    ));
    ok(run_with_stdin(
        &mut b.bus(&["put", "bin.text", "-"]),
        b"hello\n",
    ));
    ok(run(&mut b.bus(&[
        "put",
        "bin.hdr",
        "x",
        "-H",
        "trace=abc",
        "--id",
        "m-1",
        "--content-type",
        "text/csv",
    ])));
    let o = ok(run(&mut b.bus(&["put", "bin.hdr", "x", "--id", "m-1"])));
    assert!(
        stdout(&o).starts_with("duplicate of bin-3-"),
        "{}",
        stdout(&o)
    );

    let o = ok(run(&mut b.bus(&[
        "get", "bin.*", "--from", "oldest", "--count", "3", "--json",
    ])));
    let events = json_lines(&o);
    assert_eq!(events[0]["encoding"], "base64");
    assert_eq!(events[0]["payload"], "AP8Q");
    assert_eq!(events[0]["content_type"], "application/octet-stream");
    assert_eq!(events[1]["payload"], "hello\n");
    assert_eq!(events[1]["content_type"], "text/plain; charset=utf-8");
    assert_eq!(events[2]["headers"]["trace"], "abc");
    assert_eq!(events[2]["content_type"], "text/csv");
}

#[test]
fn get_json_prints_each_event_as_the_broker_sent_it() {
    let b = TestBroker::start();
    for i in 0..5 {
        ok(run(&mut b.bus(&["put", "log.line", &format!("line {i}")])));
    }
    let o =
        ok(run(&mut b.bus(&[
            "get", ">", "--from", "oldest", "--count", "5", "--json",
        ])));
    let text = stdout(&o);
    assert_eq!(text.lines().count(), 5);
    for (i, line) in text.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["sequence"], i as u64 + 1);
        assert_eq!(v["payload"], format!("line {i}"));
        // Re-encoding the value gives the same line: the broker's compact form was kept.
        assert_eq!(serde_json::to_string(&v).unwrap().len(), line.len());
    }
    assert_eq!(stderr(&o), "");
}

#[test]
fn error_answers_exit_2_with_the_brokers_code() {
    let b = TestBroker::start();
    let o = run(&mut b.bus(&["put", "a..b", "x"]));
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.starts_with("bus: cannot publish to a..b: broker answered 400 invalid_subject: "),
        "{err}"
    );
    assert!(o.stdout.is_empty());

    let o = run(&mut b.bus(&["get", "a.>.b", "--json"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("400 invalid_pattern"), "{}", stderr(&o));
    assert!(o.stdout.is_empty());

    let o = run(&mut b.bus(&["put", "_bus_.x", "x"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("403 reserved_namespace"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_follower_outlives_the_broker_s_shutdown_and_exits_0_on_sigterm() {
    let mut b = TestBroker::start();
    ok(run(&mut b.bus(&["put", "user.created", "one"])));
    let mut get = Reader::spawn(&mut b.bus(&["get", "user.>", "--from", "oldest", "--json"]));
    let first = get.line();
    assert!(first.contains("\"payload\":\"one\""), "{first}");
    b.stop();
    // It says so and keeps waiting for the broker to come back, until asked to stop.
    get.wait_stderr("the broker shut down; following user.> again once it is back");
    get.signal("-TERM");
    let (status, rest, err) = get.finish();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(rest.is_empty(), "nothing after the event: {rest:?}");
}

#[test]
fn get_exec_runs_the_command_once_per_event_with_its_json() {
    let b = TestBroker::start();
    ok(run(&mut b.bus(&["put", "job.a", "e1"])));
    ok(run(&mut b.bus(&["put", "job.b", "e2"])));
    // stdout is the command's; its stderr and the failure notice go to ours.
    let script = r#"read -r line; printf '%s %s\n' "$BUS_SUBJECT" "$line"; echo oops >&2; [ "$BUS_SUBJECT" = job.a ]"#;
    let o = ok(run(&mut b.bus(&[
        "get", "job.>", "--from", "oldest", "--count", "2", "--exec", script,
    ])));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    for (line, (subject, payload)) in lines.iter().zip([("job.a", "e1"), ("job.b", "e2")]) {
        let (s, json) = line.split_once(' ').unwrap();
        assert_eq!(s, subject);
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(
            (v["subject"].as_str(), v["payload"].as_str()),
            (Some(subject), Some(payload))
        );
    }
    let err = stderr(&o);
    assert_eq!(err.matches("oops").count(), 2, "{err}");
    assert!(
        err.contains("job.b ") && err.contains("command failed with exit status 1"),
        "{err}"
    );
    assert!(
        !err.contains("nacked"),
        "a plain stream acks nothing: {err}"
    );
}

#[test]
fn bus_server_serves_and_exits_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = bus()
        .args(["server", "--addr", "127.0.0.1:0", "--log-level", "info"])
        .arg("--data")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The one start-up line names the address.
    let log = lines_of(server.stderr.take().unwrap());
    let line = log.recv_timeout(TIMEOUT).unwrap_or_else(|_| {
        let _ = server.kill();
        panic!("no start-up line")
    });
    let url = line
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    let o = ok(run(bus().args(["--url", &url, "put", "user.created", "x"])));
    assert!(stdout(&o).contains("(sequence 1)"));

    let start = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let o = wait(server);
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(o.status.code(), Some(0));

    // Started again on the same directory with its address taken, it opens the directory
    // and then fails to bind, with status 2.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let o = run(bus()
        .args(["server", "--addr", &addr, "--data"])
        .arg(dir.path()));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("bus: cannot listen on {addr}: ")),
        "{}",
        stderr(&o)
    );
}
