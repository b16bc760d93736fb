//! `bus migrate` end to end with the built binary: a data directory filled through `bus
//! server` (events with dedup ids, a durable consumer that acked some), moved into a real
//! `nats-server -js`, then served by `bus server --storage nats://...`. What clients hold on
//! to must still hold: sequences, ids and times, a `Last-Event-ID` resume, the consumer's
//! acked position, a dedup id within the window. And what migrate refuses: a data
//! directory a running broker holds, a target that already holds the streams.
//!
//! Skipped (saying why) where no `nats-server` is found; under CI it fails instead. Every
//! wait is bounded and waits on something observable (an exit, a line, an SSE message).

mod common;

use bus_testkit::NatsServer;
use common::{ServerProcess, bus, json_lines, ok, run, stderr, stdout};
use serde_json::Value;

/// `bus put --json subject payload [--id ID -H n=ID]`: the receipt.
fn put(s: &ServerProcess, subject: &str, payload: &str, id: Option<&str>) -> Value {
    let mut args = vec!["put", "--json", subject, payload];
    let header;
    if let Some(id) = id {
        header = format!("n={id}");
        args.extend(["--id", id, "-H", &header]);
    }
    let o = ok(run(&mut s.bus(&args)));
    serde_json::from_str(stdout(&o).trim_end()).expect("a JSON receipt")
}

/// The first `n` events of `pattern`, oldest first, as `bus get --json` prints them.
fn read(s: &ServerProcess, pattern: &str, n: usize) -> Vec<Value> {
    let count = n.to_string();
    let o = ok(run(&mut s.bus(&[
        "get", pattern, "--from", "oldest", "--count", &count, "--json",
    ])));
    json_lines(&o)
}

/// `n` events of `user.>` through durable consumer `d`, each acked once printed (the
/// command exits once the acks are confirmed).
fn consume(s: &ServerProcess, n: usize) -> Vec<Value> {
    let count = n.to_string();
    let o = ok(run(&mut s.bus(&[
        "get",
        "user.>",
        "--from",
        "oldest",
        "--ack",
        "auto",
        "--durable",
        "d",
        "--count",
        &count,
        "--json",
    ])));
    json_lines(&o)
}

fn sequences(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e["sequence"].as_u64().expect("a sequence"))
        .collect()
}

/// `bus migrate --data <data> --to <url>`, run to its exit.
fn migrate(data: &std::path::Path, url: &str) -> std::process::Output {
    run(bus()
        .arg("migrate")
        .arg("--data")
        .arg(data)
        .args(["--to", url]))
}

/// The events of `pattern` after `last_event_id`, as an `EventSource` reconnecting with
/// `Last-Event-ID` gets them: the next `n`.
fn resume(base: &str, pattern: &str, last_event_id: &str, n: usize) -> Vec<Value> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = bus_testkit::http1_client();
        let url = format!("{base}/v1/stream?pattern={}", bus_testkit::enc(pattern));
        let mut s = bus_testkit::sse(&client, &url, &[("Last-Event-ID", last_event_id)]).await;
        s.expect_subscribed().await;
        s.expect_events(n).await.iter().map(|m| m.json()).collect()
    })
}

#[test]
fn migrate_keeps_sequences_times_resumes_consumers_and_dedup_ids() {
    if !NatsServer::available() {
        return;
    }
    let data = tempfile::tempdir().expect("tempdir");
    let disk = ServerProcess::start(data.path());
    let receipts: Vec<Value> = (1..=5)
        .map(|i| put(&disk, "user.e", &format!("e{i}"), Some(&format!("m-{i}"))))
        .collect();
    assert_eq!(sequences(&receipts), [1, 2, 3, 4, 5]);
    put(&disk, "rpc.a", "r1", None);
    assert_eq!(sequences(&consume(&disk, 3)), [1, 2, 3]);
    let before = read(&disk, "user.>", 5);
    assert_eq!(sequences(&before), [1, 2, 3, 4, 5]);

    let nats = NatsServer::start();
    // The running broker holds the data directory's lock.
    let o = migrate(data.path(), nats.url());
    assert_eq!(o.status.code(), Some(2), "stderr: {}", stderr(&o));
    assert!(
        stderr(&o).contains("bus: cannot open data directory"),
        "{}",
        stderr(&o)
    );
    assert!(disk.signal_and_wait("-TERM").success());

    let o = ok(migrate(data.path(), nats.url()));
    let out = stdout(&o);
    assert!(out.contains("user: 5 events"), "{out}");
    assert!(out.contains("rpc: 1 event"), "{out}");
    assert!(
        out.contains("moved 2 namespaces and ") && out.contains(nats.url()),
        "{out}"
    );

    // Again: the streams exist now, and nothing is overwritten.
    let o = migrate(data.path(), nats.url());
    assert_eq!(o.status.code(), Some(2), "stdout: {}", stdout(&o));
    assert!(
        stderr(&o).contains("bus: migration failed: ")
            && stderr(&o).contains(
                "exists already: migrate moves into an empty JetStream and overwrites nothing"
            ),
        "{}",
        stderr(&o)
    );

    let unused = tempfile::tempdir().expect("tempdir");
    let js = ServerProcess::start_with(unused.path(), &["--storage", nats.url()]);
    // Same ids, sequences, times, headers, dedup ids and payloads.
    assert_eq!(before[0]["headers"]["n"], "m-1", "{}", before[0]);
    assert_eq!(read(&js, "user.>", 5), before);
    assert_eq!(read(&js, "rpc.>", 1).len(), 1);

    let after_2 = before[1]["id"].as_str().expect("an id");
    assert_eq!(
        sequences(&resume(js.url(), "user.>", after_2, 3)),
        [3, 4, 5]
    );

    // The consumer goes on after what it acked.
    assert_eq!(sequences(&consume(&js, 2)), [4, 5]);

    // A dedup id from before the move is still one within the window.
    let dup = put(&js, "user.e", "again", Some("m-2"));
    assert_eq!(dup["duplicate"], true, "{dup}");
    assert_eq!(dup["id"], receipts[1]["id"], "{dup}");
    assert_eq!(dup["time"], receipts[1]["time"], "{dup}");
    let next = put(&js, "user.e", "e6", Some("m-6"));
    assert_eq!(next["sequence"], 6, "{next}");
    assert!(next.get("duplicate").is_none(), "{next}");
}
