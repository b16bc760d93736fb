//! End-to-end tests of the consumer commands of the built `bus` binary: `bus get` as a
//! member of a durable consumer or a queue group with manual and automatic acks,
//! `bus put --confirm`, `bus ack`, `bus nack`, `bus consumers`; and a durable consumer's
//! state across a SIGKILL of `bus server`.
//!
//! Every wait is bounded and waits on something observable (a line of output, an exit, the
//! "reading as consumer" notice a member prints once attached); nothing sleeps for a fixed
//! time.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

mod common;

use common::{Reader, ServerProcess, TestBroker, json_lines, ok, run, stderr, stdout};
use serde_json::Value;

/// The `sequence` of each event.
fn sequences(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e["sequence"].as_u64().expect("a sequence"))
        .collect()
}

/// The `id` of each event.
fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().expect("an id").to_owned())
        .collect()
}

/// Publishes `n` events on `subject`, payloads `e1`, `e2`, ...; returns their ids.
fn publish(b: &TestBroker, subject: &str, n: usize) -> Vec<String> {
    (1..=n)
        .map(|i| {
            let o = ok(run(&mut b.bus(&[
                "put",
                "--json",
                subject,
                &format!("e{i}"),
            ])));
            let r: Value = serde_json::from_str(stdout(&o).trim_end()).unwrap();
            r["id"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// The consumer `name` as `bus consumers --json` lists it, if it is listed.
fn listed(b: &TestBroker, name: &str) -> Option<Value> {
    let o = ok(run(&mut b.bus(&["consumers", "--json"])));
    let list: Value = serde_json::from_str(stdout(&o).trim_end()).unwrap();
    list.as_array()
        .expect("an array")
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
}

/// Waits until `cond` holds, at most [`common::RUN_TIMEOUT`]: for what the broker does after
/// a connection closes, which no output announces.
fn eventually(what: &str, cond: impl FnMut() -> bool) {
    bus_testkit::eventually_blocking(what, common::RUN_TIMEOUT, cond);
}

/// `bus get` of two `job.>` events through durable `d`, acking each after printing it.
const AUTO_GET_D_2: [&str; 11] = [
    "get",
    "job.>",
    "--from",
    "oldest",
    "--ack",
    "auto",
    "--durable",
    "d",
    "--count",
    "2",
    "--json",
];

#[test]
fn get_ack_auto_with_a_durable_acks_what_it_printed() {
    let b = TestBroker::start();
    publish(&b, "job.run", 2);
    let args = AUTO_GET_D_2;
    let o = ok(run(&mut b.bus(&args)));
    let first = json_lines(&o);
    assert_eq!(sequences(&first), [1, 2]);
    assert!(first.iter().all(|e| e["delivery_count"] == 1), "{first:?}");
    assert!(
        stderr(&o).contains("bus: reading as consumer d (durable, ack manual)"),
        "{}",
        stderr(&o)
    );
    // The command exits only after its acks are confirmed: nothing is pending, and a
    // second run gets the next events, not the same ones.
    let c = listed(&b, "d").expect("consumer d is listed");
    assert_eq!(c["kind"], "durable");
    assert_eq!(c["ack"], "manual");
    assert_eq!(
        c["max_in_flight"], 1000,
        "--count 2 leaves the consumer's max_in_flight at its default"
    );
    assert_eq!(c["pending"], 0, "{c}");
    publish(&b, "job.run", 2);
    let o = ok(run(&mut b.bus(&args)));
    let second = json_lines(&o);
    assert_eq!(sequences(&second), [3, 4]);
    assert!(
        second.iter().all(|e| e["delivery_count"] == 1),
        "{second:?}"
    );
    let c = listed(&b, "d").unwrap();
    assert_eq!(c["pending"], 0, "{c}");
    assert_eq!(c["positions"]["job"], 5, "{c}");
}

/// As above, with more events published than the first run prints: the events it does not
/// print (it takes only `--count`, `limit=N`) go to the second run, and nothing acked comes
/// back.
#[test]
fn get_ack_auto_with_a_durable_resumes_after_what_it_acked() {
    let b = TestBroker::start();
    publish(&b, "job.run", 4);
    let args = AUTO_GET_D_2;
    let o = ok(run(&mut b.bus(&args)));
    assert_eq!(sequences(&json_lines(&o)), [1, 2]);
    let o = ok(run(&mut b.bus(&args)));
    assert_eq!(sequences(&json_lines(&o)), [3, 4]);
    // Nothing acked comes back: a third run gets only what is published next.
    publish(&b, "job.run", 1);
    let o = ok(run(&mut b.bus(&[
        "get",
        "job.>",
        "--ack",
        "auto",
        "--durable",
        "d",
        "--count",
        "1",
        "--json",
    ])));
    assert_eq!(sequences(&json_lines(&o)), [5]);
    let c = listed(&b, "d").unwrap();
    assert_eq!(c["pending"], 0, "{c}");
}

/// What a member held when it left (here: printed, never acked) goes to the next member at
/// once, with its delivery count one higher.
#[test]
fn a_member_that_leaves_hands_its_deliveries_back() {
    let b = TestBroker::start();
    let id = publish(&b, "hand.over", 1);
    let args = [
        "get",
        "hand.>",
        "--from",
        "oldest",
        "--ack",
        "manual",
        "--durable",
        "h",
        "--count",
        "1",
        "--json",
    ];
    let o = ok(run(&mut b.bus(&args)));
    assert_eq!(ids(&json_lines(&o)), id);
    let o = ok(run(&mut b.bus(&args)));
    let again = json_lines(&o);
    assert_eq!(ids(&again), id);
    assert_eq!(again[0]["delivery_count"], 2);
}

#[test]
fn group_members_share_the_events() {
    let b = TestBroker::start();
    let member = |b: &TestBroker| {
        let mut r = Reader::spawn(
            &mut b.bus(&["get", "work.>", "--group", "g", "--ack", "auto", "--json"]),
        );
        r.wait_stderr("reading as consumer g (group, ack manual)");
        r
    };
    let mut one = member(&b);
    let mut two = member(&b);
    assert_eq!(listed(&b, "g").expect("group g")["members"], 2);
    let published: BTreeSet<String> = publish(&b, "work.item", 6).into_iter().collect();
    // Collect from both members until six events arrived (or the time is up).
    let mut got: Vec<(usize, Value)> = Vec::new();
    let deadline = Instant::now() + common::RUN_TIMEOUT;
    while got.len() < 6 {
        assert!(
            Instant::now() < deadline,
            "only {} events arrived: {got:?}",
            got.len()
        );
        for (i, r) in [&mut one, &mut two].into_iter().enumerate() {
            while let Some(v) = r.try_json() {
                got.push((i, v));
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Each event went to exactly one member, and every event to someone.
    let events: Vec<Value> = got.iter().map(|(_, v)| v.clone()).collect();
    let got_ids: BTreeSet<String> = ids(&events).into_iter().collect();
    assert_eq!(events.len(), 6, "{got:?}");
    assert_eq!(got_ids, published, "an event went to two members: {got:?}");
    // A third durable name is a different consumer: it gets every event again.
    let o = ok(run(&mut b.bus(&[
        "get",
        "work.>",
        "--from",
        "oldest",
        "--durable",
        "other",
        "--ack",
        "auto",
        "--count",
        "6",
        "--json",
    ])));
    assert_eq!(sequences(&json_lines(&o)), [1, 2, 3, 4, 5, 6]);
    one.kill();
    two.kill();
    // The group ends with its last member (once the broker has seen both connections
    // close).
    eventually("group g to be dropped", || listed(&b, "g").is_none());
}

/// Two members reading three events each out of six: each prints exactly three, so both
/// got a share, and none is printed twice.
#[test]
fn group_members_with_counts_split_the_events() {
    let b = TestBroker::start();
    let member = |b: &TestBroker| {
        let mut r = Reader::spawn(&mut b.bus(&[
            "get", "work.>", "--group", "g", "--ack", "auto", "--count", "3", "--json",
        ]));
        r.wait_stderr("reading as consumer g (group, ack manual)");
        r
    };
    let mut one = member(&b);
    let mut two = member(&b);
    let published: BTreeSet<String> = publish(&b, "work.item", 6).into_iter().collect();
    let mut got = Vec::new();
    for r in [&mut one, &mut two] {
        for _ in 0..3 {
            got.push(r.json());
        }
    }
    for r in [one, two] {
        let (status, rest, err) = r.finish();
        assert!(status.success(), "{err}");
        assert!(rest.is_empty(), "{rest:?}");
    }
    let got_ids: BTreeSet<String> = ids(&got).into_iter().collect();
    assert_eq!(got_ids, published, "{got:?}");
}

#[test]
fn put_confirm_waits_for_a_consumer_that_acks() {
    let b = TestBroker::start();
    let mut worker = Reader::spawn(&mut b.bus(&[
        "get",
        "order.>",
        "--durable",
        "worker",
        "--ack",
        "auto",
        "--json",
    ]));
    worker.wait_stderr("reading as consumer worker (durable, ack manual)");

    let o = ok(run(&mut b.bus(&[
        "put",
        "--json",
        "order.placed",
        "one",
        "--confirm",
        "1",
        "--timeout",
        "10s",
    ])));
    let receipt: Value = serde_json::from_str(stdout(&o).trim_end()).unwrap();
    assert_eq!(
        (&receipt["confirmed"], &receipt["required"]),
        (&1.into(), &1.into())
    );
    let delivered = worker.json();
    assert_eq!(delivered["id"], receipt["id"]);

    let o = ok(run(&mut b.bus(&[
        "put",
        "order.placed",
        "two",
        "--confirm",
        "1",
    ])));
    assert!(
        stdout(&o).ends_with(", confirmed by 1 of 1\n"),
        "{}",
        stdout(&o)
    );
    worker.json();

    // Two are asked for and only one consumer exists: after the timeout the receipt is
    // printed and the exit status is 4.
    let o = run(&mut b.bus(&[
        "put",
        "--json",
        "order.placed",
        "three",
        "--confirm",
        "2",
        "--timeout",
        "300ms",
    ]));
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let receipt: Value = serde_json::from_str(stdout(&o).trim_end()).unwrap();
    assert_eq!(receipt["required"], 2);
    assert!(receipt["confirmed"].as_u64().unwrap() <= 1, "{receipt}");
    assert!(
        stderr(&o).starts_with("bus: only ")
            && stderr(&o).contains(" of 2 consumers confirmed ")
            && stderr(&o).trim_end().ends_with(" within 300ms"),
        "{}",
        stderr(&o)
    );
    // The event is stored all the same.
    assert_eq!(worker.json()["id"], receipt["id"]);
    worker.kill();

    // No consumer at all: 0 of 1.
    let o = run(&mut b.bus(&[
        "put",
        "lonely.event",
        "x",
        "--confirm",
        "1",
        "--timeout",
        "50ms",
    ]));
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stdout(&o).ends_with(", confirmed by 0 of 1\n"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn ack_and_nack_by_id() {
    let b = TestBroker::start();
    publish(&b, "mail.send", 3);
    let o = ok(run(&mut b.bus(&[
        "get",
        "mail.>",
        "--from",
        "oldest",
        "--ack",
        "manual",
        "--durable",
        "m",
        "--count",
        "3",
        "--json",
    ])));
    let events = json_lines(&o);
    assert_eq!(sequences(&events), [1, 2, 3]);
    assert!(
        events.iter().all(|e| e["delivery_count"] == 1),
        "{events:?}"
    );
    let id = ids(&events);
    // Manual mode acks nothing: all three are pending.
    assert_eq!(listed(&b, "m").unwrap()["pending"], 3);

    let o = ok(run(&mut b.bus(&["ack", "m", &id[0], &id[1]])));
    assert_eq!(stdout(&o), format!("acked {}\nacked {}\n", id[0], id[1]));
    // Acking again succeeds: retrying is safe.
    let o = ok(run(&mut b.bus(&["ack", "m", &id[0]])));
    assert_eq!(stdout(&o), format!("already acked {}\n", id[0]));

    // One request answers each id; the failures are named and the status is 2.
    let unknown = id[0].replacen("mail-1-", "mail-99-", 1);
    let o = run(&mut b.bus(&["ack", "--json", "m", &id[0], &unknown, "bogus"]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let results = json_lines(&o);
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["status"], "already_acked");
    assert!(results[1]["error"]["code"].is_string(), "{}", results[1]);
    assert_eq!(results[2]["error"]["code"], "invalid_parameter");
    let err = stderr(&o);
    assert!(
        err.contains(&format!("bus: {unknown}: broker answered 404 ")),
        "{err}"
    );
    assert!(
        err.trim_end().ends_with(&format!(
            "bus: 2 of 3 events could not be acked: {unknown}, bogus"
        )),
        "{err}"
    );
    let o = run(&mut b.bus(&["ack", "nobody", &id[2]]));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("404 unknown_consumer"),
        "{}",
        stderr(&o)
    );

    // A nack: the event is redelivered at once, one delivery more, and only it (the acked
    // ones never come back).
    let o = ok(run(&mut b.bus(&["nack", "m", &id[2]])));
    assert_eq!(stdout(&o), format!("nacked {}\n", id[2]));
    let mut reader = Reader::spawn(&mut b.bus(&[
        "get",
        "mail.>",
        "--ack",
        "manual",
        "--durable",
        "m",
        "--json",
    ]));
    let again = reader.json();
    assert_eq!(again["id"], id[2].as_str());
    assert_eq!(again["delivery_count"], 2);

    // A nack with a delay while a member holds it: it comes back, but not before the delay.
    let nacked = Instant::now();
    let o = ok(run(&mut b.bus(&["nack", "m", &id[2], "--delay", "300ms"])));
    assert_eq!(stdout(&o), format!("nacked {}\n", id[2]));
    let again = reader.json();
    assert!(nacked.elapsed() >= Duration::from_millis(300));
    assert_eq!(again["id"], id[2].as_str());
    assert_eq!(again["delivery_count"], 3);
    ok(run(&mut b.bus(&["ack", "m", &id[2]])));
    assert_eq!(listed(&b, "m").unwrap()["pending"], 0);
    reader.kill();
}

/// A nack with a delay of an event nobody holds (it awaits redelivery after a nack, an
/// ack wait that ran out, or its holder leaving) holds it back for the delay.
#[test]
fn nack_with_delay_holds_back_an_event_nobody_holds() {
    let b = TestBroker::start();
    let id = publish(&b, "later.job", 1);
    let o = ok(run(&mut b.bus(&[
        "get",
        "later.>",
        "--from",
        "oldest",
        "--ack",
        "manual",
        "--durable",
        "l",
        "--count",
        "1",
        "--json",
    ])));
    assert_eq!(ids(&json_lines(&o)), id);
    // Ready for redelivery now, then held back for 500 ms.
    ok(run(&mut b.bus(&["nack", "l", &id[0]])));
    let nacked = Instant::now();
    ok(run(&mut b.bus(&["nack", "l", &id[0], "--delay", "500ms"])));
    let o = ok(run(&mut b.bus(&[
        "get",
        "later.>",
        "--ack",
        "manual",
        "--durable",
        "l",
        "--count",
        "1",
        "--json",
    ])));
    assert!(
        nacked.elapsed() >= Duration::from_millis(500),
        "redelivered after {:?}",
        nacked.elapsed()
    );
    assert_eq!(ids(&json_lines(&o)), id);
}

#[test]
fn manual_get_shows_the_id_and_delivery_count() {
    let b = TestBroker::start();
    let id = publish(&b, "note.add", 1);
    let o = ok(run(&mut b.bus(&[
        "get", "note.>", "--from", "oldest", "--ack", "manual", "--count", "1",
    ])));
    let line = stdout(&o);
    assert!(line.starts_with("note.add #1 "), "{line}");
    assert!(
        line.ends_with(&format!(" {} (delivery 1) e1\n", id[0])),
        "{line}"
    );
    // An unnamed manual-ack subscription is a consumer of its own, named on stderr.
    assert!(
        stderr(&o).contains("bus: reading as consumer ~s-")
            && stderr(&o).contains("(subscription, ack manual)"),
        "{}",
        stderr(&o)
    );
    // A plain read prints no delivery count.
    let o = ok(run(&mut b.bus(&[
        "get", "note.>", "--from", "oldest", "--count", "1", "--json",
    ])));
    assert!(json_lines(&o)[0].get("delivery_count").is_none());
    assert_eq!(stderr(&o), "");
}

#[test]
fn consumers_are_listed_moved_and_deleted() {
    let b = TestBroker::start();
    publish(&b, "shop.sale", 3);
    ok(run(&mut b.bus(&[
        "get",
        "shop.>",
        "--from",
        "oldest",
        "--ack",
        "auto",
        "--durable",
        "s1",
        "--count",
        "2",
        "--ack-wait",
        "10s",
        "--max-deliver",
        "4",
        "--json",
    ])));
    let c = listed(&b, "s1").expect("s1 listed");
    assert_eq!(c["pattern"], "shop.>");
    assert_eq!(c["ack_wait"], "10000ms");
    assert_eq!(c["max_deliver"], 4);
    assert!(c["positions"]["shop"].as_u64().unwrap() >= 3, "{c}");

    let o = ok(run(&mut b.bus(&["consumers"])));
    let table = stdout(&o);
    assert!(table.starts_with("CONSUMER  KIND"), "{table}");
    let header = table.lines().next().unwrap();
    assert!(
        header.contains("ACK WAIT  MAX DELIVER  MAX IN FLIGHT  NEXT"),
        "the settings are listed: {header}"
    );
    let row = table
        .lines()
        .find(|l| l.starts_with("s1 "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("durable") && row.contains("shop.>"), "{row}");
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[8..11], ["10s", "4", "1000"], "{row}");
    let o = ok(run(&mut b.bus(&["consumers", "info", "s1", "--json"])));
    let info: Value = serde_json::from_str(stdout(&o).trim_end()).unwrap();
    assert_eq!(info["name"], "s1");

    // Seek back to the start: reading restarts at sequence 1.
    let o = ok(run(&mut b.bus(&[
        "consumers",
        "seek",
        "s1",
        "--to",
        "oldest",
        "--json",
    ])));
    let moved: Value = serde_json::from_str(stdout(&o).trim_end()).unwrap();
    assert_eq!(moved["positions"]["shop"], 1, "{moved}");
    assert_eq!(moved["pending"], 0);
    let o = ok(run(&mut b.bus(&[
        "get",
        "shop.>",
        "--ack",
        "auto",
        "--durable",
        "s1",
        "--count",
        "1",
        "--json",
    ])));
    assert_eq!(sequences(&json_lines(&o)), [1]);

    let o = ok(run(&mut b.bus(&["consumers", "delete", "s1"])));
    assert_eq!(stdout(&o), "deleted consumer s1\n");
    assert!(listed(&b, "s1").is_none());
    let o = run(&mut b.bus(&["consumers", "delete", "s1"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o)
            .starts_with("bus: cannot delete consumer s1: broker answered 404 unknown_consumer"),
        "{}",
        stderr(&o)
    );
    let o = run(&mut b.bus(&["consumers", "seek", "s1", "--to", "oldest"]));
    assert_eq!(o.status.code(), Some(2));
    let o = ok(run(&mut b.bus(&["consumers"])));
    assert_eq!(stdout(&o), "");
    assert_eq!(stderr(&o), "bus: no consumers\n");
}

#[test]
fn consumer_errors_exit_2_with_the_brokers_code() {
    let b = TestBroker::start();
    // Settings without a consumer are refused before anything is sent.
    let o = run(&mut b.bus(&["get", "a.>", "--ack-wait", "1s"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("consumer settings"), "{}", stderr(&o));
    let o = run(&mut b.bus(&["get", "a.>", "--durable", "bad.name"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("400 invalid_parameter"),
        "{}",
        stderr(&o)
    );
    // A durable name is bound to its pattern.
    let mut holder =
        Reader::spawn(&mut b.bus(&["get", "a.>", "--durable", "bound", "--ack", "manual"]));
    holder.wait_stderr("reading as consumer bound");
    let o = run(&mut b.bus(&["get", "b.>", "--durable", "bound", "--ack", "manual"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("409 consumer_conflict"),
        "{}",
        stderr(&o)
    );
    holder.kill();
    // Deleting a consumer ends its members' streams with an error.
    let mut member =
        Reader::spawn(&mut b.bus(&["get", "c.>", "--durable", "gone", "--ack", "auto"]));
    member.wait_stderr("reading as consumer gone");
    ok(run(&mut b.bus(&["consumers", "delete", "gone"])));
    let (status, _, err) = member.finish();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("unknown_consumer"), "{err}");
}

/// A durable consumer across a SIGKILL of `bus server`: what was acked is never delivered
/// again, what was delivered and not acked comes back with a higher delivery count.
///
/// Events are acked by id with `bus ack` after `--ack manual` runs, so the test decides
/// exactly which events are acked, which are held by a live member at the kill, and that
/// no member leaves holding deliveries it did not print.
#[test]
fn durable_state_survives_a_sigkill_of_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let mut published = Vec::new();
    for i in 1..=5 {
        let o = ok(run(&mut server.bus(&[
            "put",
            "--json",
            "task.run",
            &format!("t{i}"),
        ])));
        let r: Value = serde_json::from_str(stdout(&o).trim_end()).unwrap();
        published.push(r["id"].as_str().unwrap().to_owned());
    }
    // Events 1 and 2: delivered, then acked (`bus ack` answers once the acks are durable).
    // The consumer is created with 2 in flight (--count 2).
    let o = ok(run(&mut server.bus(&[
        "get",
        "task.>",
        "--from",
        "oldest",
        "--ack",
        "manual",
        "--durable",
        "crash",
        "--count",
        "2",
        "--json",
    ])));
    assert_eq!(ids(&json_lines(&o)), published[..2]);
    ok(run(&mut server.bus(&[
        "ack",
        "crash",
        &published[0],
        &published[1],
    ])));
    // A member that acks nothing holds the next ones when the server dies: 3 and 4; acking
    // 3 by id makes room for 5.
    let mut holder = Reader::spawn(&mut server.bus(&[
        "get",
        "task.>",
        "--ack",
        "manual",
        "--durable",
        "crash",
        "--json",
    ]));
    let held: Vec<Value> = vec![holder.json(), holder.json()];
    assert_eq!(sequences(&held), [3, 4]);
    ok(run(&mut server.bus(&["ack", "crash", &published[2]])));
    let fifth = holder.json();
    assert_eq!(fifth["sequence"], 5);
    assert_eq!(fifth["delivery_count"], 1);

    let status = server.signal_and_wait("-9");
    assert_eq!(status.code(), None, "killed by a signal, not exited");
    // The holder would reconnect to the restarted server; it goes with the server instead.
    holder.kill();

    // Restarted on the same directory: the unacked 4 and 5 come back first, delivered
    // again; 1, 2 and 3 never do. Event 4's first delivery is on disk for sure (the durable
    // write of the ack of 3 recorded the whole consumer state, 4 delivered before it), so it
    // comes back as a second delivery. Event 5's delivery was made after that write, and
    // deliveries are written lazily (within 100 ms), so the kill may have lost its count.
    let server = ServerProcess::start(dir.path());
    let o = ok(run(&mut server.bus(&[
        "get",
        "task.>",
        "--ack",
        "manual",
        "--durable",
        "crash",
        "--count",
        "2",
        "--json",
    ])));
    let back = json_lines(&o);
    assert_eq!(ids(&back), published[3..5]);
    assert!(back[0]["delivery_count"].as_u64().unwrap() >= 2, "{back:?}");
    assert!(back[1]["delivery_count"].as_u64().unwrap() >= 1, "{back:?}");
    ok(run(&mut server.bus(&[
        "ack",
        "crash",
        &published[3],
        &published[4],
    ])));
    // What comes next is only the event published next.
    let o = ok(run(&mut server.bus(&["put", "--json", "task.run", "t6"])));
    let sixth: Value = serde_json::from_str(stdout(&o).trim_end()).unwrap();
    let o = ok(run(&mut server.bus(&[
        "get",
        "task.>",
        "--ack",
        "auto",
        "--durable",
        "crash",
        "--count",
        "1",
        "--json",
    ])));
    let rest = json_lines(&o);
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["id"], sixth["id"]);
    assert_eq!(rest[0]["delivery_count"], 1);
    let o = ok(run(&mut server.bus(&[
        "consumers",
        "info",
        "crash",
        "--json",
    ])));
    let c: Value = serde_json::from_str(stdout(&o).trim_end()).unwrap();
    assert_eq!(c["pending"], 0, "{c}");
    assert_eq!(c["positions"]["task"], 7, "{c}");
    let status = server.signal_and_wait("-TERM");
    assert!(status.success());
}

#[test]
fn get_exec_acks_when_the_command_succeeds_and_nacks_otherwise() {
    let b = TestBroker::start();
    publish(&b, "job.run", 2);
    // e1 succeeds, e2 fails: e2 is nacked and comes again.
    let script = r#"cat; case "$BUS_EVENT_ID" in job-1-*) exit 0;; esac; exit 3"#;
    let o = ok(run(&mut b.bus(&[
        "get",
        "job.>",
        "--from",
        "oldest",
        "--durable",
        "x",
        "--count",
        "2",
        "--exec",
        script,
    ])));
    let printed = json_lines(&o);
    assert_eq!(
        sequences(&printed),
        [1, 2],
        "CMD's stdout is passed through"
    );
    let err = stderr(&o);
    assert!(
        err.contains("reading as consumer x (durable, ack manual)"),
        "{err}"
    );
    assert!(
        err.contains("command failed with exit status 3; nacked"),
        "{err}"
    );
    let again = json_lines(&ok(run(&mut b.bus(&[
        "get",
        "job.>",
        "--durable",
        "x",
        "--ack",
        "auto",
        "--count",
        "1",
        "--json",
    ]))));
    assert_eq!(sequences(&again), [2], "only the failed event comes again");
    assert_eq!(again[0]["delivery_count"], 2, "{again:?}");
    let c = listed(&b, "x").unwrap();
    assert_eq!(c["pending"], 0, "{c}");
}

#[test]
fn get_exec_kills_a_command_past_its_time_limit_and_nacks_the_event() {
    let b = TestBroker::start();
    publish(&b, "job.run", 1);
    let o = ok(run(&mut b.bus(&[
        "get",
        "job.>",
        "--from",
        "oldest",
        "--durable",
        "slow",
        "--count",
        "1",
        "--exec",
        "echo started; exec sleep 60",
        "--exec-timeout",
        "200ms",
    ])));
    assert_eq!(stdout(&o), "", "a killed command's output is not passed on");
    let err = stderr(&o);
    assert!(
        err.contains("command still running after 200ms: killed; nacked"),
        "{err}"
    );
    let again = json_lines(&ok(run(&mut b.bus(&[
        "get",
        "job.>",
        "--durable",
        "slow",
        "--ack",
        "auto",
        "--count",
        "1",
        "--json",
    ]))));
    assert_eq!(again[0]["delivery_count"], 2, "{again:?}");
}

#[test]
fn get_count_does_not_change_the_consumer_and_consumers_set_does() {
    let b = TestBroker::start();
    publish(&b, "mail.send", 2);
    // A one-off peek of two events leaves the consumer's settings as they were.
    ok(run(&mut b.bus(&[
        "get",
        "mail.>",
        "--from",
        "oldest",
        "--durable",
        "mailer",
        "--ack",
        "manual",
        "--count",
        "2",
        "--json",
    ])));
    let c = listed(&b, "mailer").unwrap();
    assert_eq!(c["max_in_flight"], 1000, "{c}");
    assert_eq!(c["max_deliver"], Value::Null, "{c}");

    let o = ok(run(&mut b.bus(&[
        "consumers",
        "set",
        "mailer",
        "--ack-wait",
        "45s",
        "--max-deliver",
        "5",
        "--backoff",
        "1s,5s",
        "--max-in-flight",
        "100",
        "--json",
    ])));
    let set: Value = serde_json::from_str(stdout(&o).trim_end()).unwrap();
    assert_eq!(set["name"], "mailer", "{set}");
    assert_eq!(set["ack_wait"], "45000ms", "{set}");
    assert_eq!(set["max_deliver"], 5, "{set}");
    assert_eq!(
        set["backoff"],
        serde_json::json!(["1000ms", "5000ms"]),
        "{set}"
    );
    assert_eq!(set["max_in_flight"], 100, "{set}");
    let c = listed(&b, "mailer").unwrap();
    assert_eq!(
        (&c["ack_wait"], &c["max_deliver"], &c["max_in_flight"]),
        (&set["ack_wait"], &set["max_deliver"], &set["max_in_flight"]),
        "the listing shows the new settings: {c}"
    );

    // Unlimited again; the table shows it; the rest stays.
    let o = ok(run(&mut b.bus(&[
        "consumers",
        "set",
        "mailer",
        "--max-deliver",
        "unlimited",
    ])));
    let table = stdout(&o);
    let row = table
        .lines()
        .find(|l| l.starts_with("mailer "))
        .unwrap_or_else(|| panic!("{table}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[8..11], ["45s", "-", "100"], "{row}");

    // An unknown consumer: the broker's error, status 2.
    let o = run(&mut b.bus(&["consumers", "set", "nobody", "--max-in-flight", "5"]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with(
            "bus: cannot change consumer nobody: broker answered 404 unknown_consumer"
        ),
        "{}",
        stderr(&o)
    );
}
