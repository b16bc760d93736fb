//! End-to-end tests of `bus req` and `bus reply` (the built binary against an in-process
//! broker): echo and `--exec` round trips, error replies from a failing command, the exit
//! statuses of no responders (3), timeout (4) and an error reply (1), `--json`, two
//! responders sharing the default group, and a responder that stops on SIGINT or after
//! `--count` requests.
//!
//! Every wait is bounded and waits on something observable: a responder's "answering
//! requests" notice (printed once it is subscribed), a line of output, an exit.

mod common;

use common::{Reader, TestBroker, run, stderr, stdout};

/// Starts `bus reply <args>` and waits until it is subscribed.
fn responder(b: &TestBroker, args: &[&str]) -> Reader {
    let mut all = vec!["reply"];
    all.extend_from_slice(args);
    let mut r = Reader::spawn(&mut b.bus(&all));
    r.wait_stderr("answering requests");
    r
}

#[test]
fn no_responders_exits_3_and_stores_nothing() {
    let b = TestBroker::start();
    let o = run(&mut b.bus(&["req", "rpc.nobody", "hi", "--timeout", "60s"]));
    assert_eq!(o.status.code(), Some(3), "stderr: {}", stderr(&o));
    assert!(stderr(&o).contains("no responders"), "{}", stderr(&o));
    let ns = run(&mut b.bus(&["ns", "--json"]));
    assert!(!stdout(&ns).contains("\"rpc\""), "{}", stdout(&ns));
}

#[test]
fn echo_responder_answers_and_req_prints_the_payload() {
    let b = TestBroker::start();
    let mut r = responder(&b, &["rpc.echo", "--echo"]);
    let o = run(&mut b.bus(&["req", "rpc.echo", "hello there"]));
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "hello there\n",
        "a text payload ends with a newline, on a pipe too"
    );
    let line = r.line();
    assert!(
        line.starts_with("rpc.echo ") && line.ends_with(" replied"),
        "{line}"
    );

    let o = run(&mut b.bus(&["req", "--json", "rpc.echo", r#"{"id":7}"#]));
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["subject"], "rpc.echo");
    assert_eq!(v["payload"]["id"], 7, "{v}");
    assert_eq!(v["content_type"], "application/json", "{v}");
    assert!(v["request_id"].as_str().unwrap().starts_with("rpc-"), "{v}");
}

#[test]
fn exec_replies_with_stdout_and_a_failure_becomes_an_error_reply() {
    let b = TestBroker::start();
    let _up = responder(&b, &["rpc.upper", "--exec", "tr a-z A-Z; echo"]);
    let o = run(&mut b.bus(&["req", "rpc.upper", "shout"]));
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "SHOUT\n",
        "a newline already there is not doubled"
    );

    let _env = responder(&b, &["rpc.env", "--exec", "printf '%s' \"$BUS_SUBJECT\""]);
    let o = run(&mut b.bus(&["req", "rpc.env"]));
    assert_eq!(stdout(&o), "rpc.env\n", "stderr: {}", stderr(&o));

    let mut failing = responder(
        &b,
        &[
            "rpc.fail",
            "--json",
            "--exec",
            "cat >/dev/null; echo 'no such user' >&2; exit 3",
        ],
    );
    let o = run(&mut b.bus(&["req", "rpc.fail", "7"]));
    assert_eq!(o.status.code(), Some(1), "stderr: {}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("reply_error")
            && err.contains("command failed with exit status 3: no such user"),
        "{err}"
    );
    let report = failing.json();
    assert_eq!(report["status"], "error", "{report}");
}

#[test]
fn a_responder_that_does_not_answer_in_time_makes_req_exit_4() {
    let b = TestBroker::start();
    // A member of a group that never answers: subscribed, so the request is stored and waits.
    let mut silent =
        Reader::spawn(&mut b.bus(&["get", "rpc.slow", "--group", "silent", "--ack", "manual"]));
    silent.wait_stderr("reading as consumer silent");
    let o = run(&mut b.bus(&["req", "rpc.slow", "x", "--timeout", "100ms"]));
    assert_eq!(o.status.code(), Some(4), "stderr: {}", stderr(&o));
    assert!(stderr(&o).contains("timeout"), "{}", stderr(&o));
    // The request was stored and delivered.
    let line = silent.line();
    assert!(line.contains("rpc.slow"), "{line}");
}

#[test]
fn req_stops_waiting_on_sigterm_and_exits_0() {
    let b = TestBroker::start();
    let mut silent =
        Reader::spawn(&mut b.bus(&["get", "rpc.slow", "--group", "silent", "--ack", "manual"]));
    silent.wait_stderr("reading as consumer silent");
    let req = Reader::spawn(&mut b.bus(&["req", "rpc.slow", "x", "--timeout", "5m"]));
    // Delivered to the silent member: the request is out and req is waiting for its reply.
    let line = silent.line();
    assert!(line.contains("rpc.slow"), "{line}");
    req.signal("-TERM");
    let (status, lines, err) = req.finish();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(lines.is_empty(), "{lines:?}");
    assert!(
        err.contains("SIGTERM: stopped waiting for the reply"),
        "{err}"
    );
}

#[test]
fn count_stops_a_responder_after_its_answers() {
    let b = TestBroker::start();
    let one = responder(&b, &["rpc.>", "--echo", "--count", "1"]);
    let o = run(&mut b.bus(&["req", "rpc.once", "x"]));
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let (status, lines, err) = one.finish();
    assert_eq!(status.code(), Some(0), "{err}");
    assert_eq!(lines.len(), 1, "{lines:?}");
}

#[test]
fn responders_share_the_default_group_and_stop_cleanly_on_sigint() {
    let b = TestBroker::start();
    let first = responder(&b, &["rpc.>", "--echo"]);
    let second = responder(&b, &["rpc.>", "--echo"]);
    let o = run(&mut b.bus(&["consumers", "info", "rpc.>", "--json"]));
    let info: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(info["members"], 2, "{info}");
    assert_eq!(info["kind"], "group", "{info}");

    for i in 0..6 {
        let payload = format!("n{i}");
        let o = run(&mut b.bus(&["req", "rpc.any", &payload]));
        assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
        assert_eq!(stdout(&o), format!("{payload}\n"));
    }
    // Each request was answered once, by one of the two; SIGINT stops both with status 0.
    let mut answered = 0;
    for r in [first, second] {
        r.signal("-INT");
        let (status, lines, err) = r.finish();
        assert_eq!(status.code(), Some(0), "{err}");
        assert!(err.contains("finishing the requests in flight"), "{err}");
        answered += lines.len();
    }
    assert_eq!(answered, 6);
}

#[test]
fn events_without_reply_to_are_skipped_and_slow_commands_are_killed() {
    let b = TestBroker::start();
    let mut r = responder(
        &b,
        &[
            "rpc.>",
            "--ack-wait",
            "300ms",
            "--exec",
            "cat >/dev/null; sleep 30",
        ],
    );
    // A plain event is no request: acked unanswered, once (no redelivery loop).
    let o = run(&mut b.bus(&["put", "rpc.note", "x"]));
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let line = r.line();
    assert!(line.ends_with("skipped: no reply_to"), "{line}");
    // A command past the ack wait is killed and answered with an error reply.
    let o = run(&mut b.bus(&["req", "rpc.slow", "x", "--timeout", "20s"]));
    assert_eq!(o.status.code(), Some(1), "stderr: {}", stderr(&o));
    assert!(
        stderr(&o).contains("still running after 240ms: killed"),
        "{}",
        stderr(&o)
    );
    let line = r.line();
    assert!(
        line.contains("rpc.slow") && line.contains("error"),
        "{line}"
    );
    let info = run(&mut b.bus(&["consumers", "info", "rpc.>", "--json"]));
    let info: serde_json::Value = serde_json::from_str(stdout(&info).trim()).unwrap();
    assert_eq!(info["redelivered"], 0, "{info}");
    assert_eq!(info["pending"], 0, "{info}");
}
