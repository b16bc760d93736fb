//! End-to-end tests of followers: `bus get` and `bus tail` without `--count` against
//! `bus server` child processes on one data directory and one port, through a graceful
//! restart (SIGTERM: the stream's `event: shutdown`) and a crash (SIGKILL), and stopped by
//! SIGTERM / SIGINT with status 0.
//!
//! Every wait is bounded and waits on something observable: a line of output, a notice on
//! stderr, an exit. The followers start `--from oldest`, so an event published before a
//! follower is (re)subscribed is still read: no wait depends on timing.

mod common;

use common::{Reader, ServerProcess, free_port, ok, run};
use serde_json::Value;

/// Publishes `payload` on `job.run` through `server`.
fn put(server: &ServerProcess, payload: &str) {
    ok(run(&mut server.bus(&["put", "job.run", payload])));
}

/// Reads `r`'s next JSON line, which must carry `payload`.
fn read_until(r: &mut Reader, payload: &str) -> Value {
    let v = r.json();
    assert_eq!(v["payload"], payload, "{v}");
    v
}

#[test]
fn followers_follow_through_a_graceful_restart_and_a_crash() {
    let data = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let server = ServerProcess::start_at(data.path(), &addr, &[]);
    put(&server, "e1");
    let args = ["job.>", "--from", "oldest", "--json"];
    let mut get = Reader::spawn(&mut server.bus(&[&["get"][..], &args].concat()));
    let mut tail = Reader::spawn(&mut server.bus(&[&["tail"][..], &args].concat()));
    for r in [&mut get, &mut tail] {
        read_until(r, "e1");
    }

    // A graceful restart: each follower hears the shutdown and comes back by itself.
    assert_eq!(server.signal_and_wait("-TERM").code(), Some(0));
    for r in [&mut get, &mut tail] {
        r.wait_stderr("the broker shut down; following job.> again once it is back");
    }
    let server = ServerProcess::start_at(data.path(), &addr, &[]);
    put(&server, "e2");
    let e2 = read_until(&mut get, "e2");
    assert_eq!(e2["sequence"], 2, "resumed after e1, nothing missed: {e2}");
    read_until(&mut tail, "e2");

    // A crash: the connection just drops; the followers reconnect.
    assert_eq!(server.signal_and_wait("-KILL").code(), None);
    let server = ServerProcess::start_at(data.path(), &addr, &[]);
    put(&server, "e3");
    read_until(&mut get, "e3");
    read_until(&mut tail, "e3");

    // Stopped only when asked, with status 0 and nothing more printed.
    get.signal("-TERM");
    tail.signal("-INT");
    for r in [get, tail] {
        let (status, rest, err) = r.finish();
        assert_eq!(status.code(), Some(0), "{err}");
        assert!(rest.is_empty(), "{rest:?}");
    }
    drop(server);
}
