//! Tests of the built `bus` binary's tools for when something goes wrong: `bus inspect`
//! (printing, `--verify`, `--repair`, also while a broker runs), `bus dump` and `bus restore`
//! (a round trip into a second broker, restored twice) and `bus tail`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use bus_broker::storage::record::{self, Decoded};
use bus_broker::storage::segment::SEGMENT_HEADER_BYTES;
use bus_client::Client;
use serde_json::Value;

mod common;

use common::{
    RUN_TIMEOUT, Reader, ServerProcess, TestBroker, bus, json_lines, ok, run, stderr, stdout,
};

/// Runs `f` on a runtime of its own, bounded by [`RUN_TIMEOUT`].
fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async { tokio::time::timeout(RUN_TIMEOUT, f).await.expect("in time") })
}

/// Publishes `n` small JSON events on `user.created`, one publish each.
fn publish_many(url: &str, n: usize) {
    block_on(async {
        let client = Client::connect(url).await.unwrap();
        for i in 1..=n {
            client
                .publish(
                    "user.created",
                    format!(r#"{{"n":{i},"pad":"{}"}}"#, "x".repeat(150)),
                )
                .content_type("application/json")
                .await
                .unwrap();
        }
    });
}

/// The segment files of a namespace directory, oldest first.
fn segments(ns_dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(ns_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    v.sort();
    v
}

/// The offset of each record in a segment file.
fn record_offsets(segment: &Path) -> Vec<usize> {
    let data = std::fs::read(segment).unwrap();
    let mut offsets = Vec::new();
    let mut pos = SEGMENT_HEADER_BYTES;
    while let Decoded::Record(_, n) = record::decode(&data[pos..]) {
        offsets.push(pos);
        pos += n;
    }
    offsets
}

/// Flips one byte inside the record at `offset` (in its time field).
fn flip(segment: &Path, offset: usize) {
    let mut data = std::fs::read(segment).unwrap();
    data[offset + 20] ^= 0x40;
    std::fs::write(segment, data).unwrap();
}

#[test]
fn inspect_reads_a_live_broker_s_data_as_the_api_serves_it() {
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data.path());
    block_on(async {
        let client = Client::connect(server.url()).await.unwrap();
        client
            .publish("user.created", r#"{"name":"ada"}"#)
            .content_type("application/json")
            .header("trace", "abc")
            .await
            .unwrap();
        client
            .publish("user.raw", vec![0u8, 0xff, 7])
            .content_type("application/octet-stream")
            .reply_to("user.replies")
            .await
            .unwrap();
        client.publish("order.placed", "seven").await.unwrap();
    });
    let path = data.path().to_str().unwrap();

    // Offline JSON is the API's JSON, event for event, while the broker runs.
    let offline = ok(run(bus().args(["--json", "inspect", path])));
    let online =
        ok(run(&mut server.bus(&[
            "--json", "get", ">", "--from", "oldest", "--count", "3",
        ])));
    let mut a = json_lines(&offline);
    let mut b = json_lines(&online);
    let key = |v: &Value| v["id"].as_str().unwrap().to_owned();
    a.sort_by_key(key);
    b.sort_by_key(key);
    assert_eq!(a, b);

    // The human form is `bus get`'s; --from and --count select within a namespace.
    let o = ok(run(bus()
        .args(["inspect", "--from", "2", "--count", "1"])
        .arg(data.path().join("user"))));
    let lines: Vec<String> = stdout(&o).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("user.raw #2 ")
            && lines[0].ends_with("<3 bytes of application/octet-stream>"),
        "{}",
        lines[0]
    );

    // Healthy, and nothing touched: the broker still holds its lock.
    let o = ok(run(bus().args(["inspect", "--verify", path])));
    let out = stdout(&o);
    assert!(
        out.contains("order: ok, 1 event (1..1) in 1 segment"),
        "{out}"
    );
    assert!(out.contains("user: ok, 2 events (1..2)"), "{out}");
    assert!(out.contains(".state: ok"), "{out}");
    let lock = std::fs::read_to_string(data.path().join(".lock")).unwrap();
    assert_eq!(lock, server.pid().to_string());

    // Repairing under a running broker is refused.
    let o = run(bus().args(["inspect", "--repair", path]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("stop the broker before --repair"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn verify_tells_a_zeroed_tail_from_damage_and_repair_salvages_past_it() {
    let data = tempfile::tempdir().unwrap();
    let flags = ["--fsync", "never", "--segment-size", "4KiB"];
    let server = ServerProcess::start_with(data.path(), &flags);
    publish_many(server.url(), 40);
    server.signal_and_wait("-TERM");
    let ns = data.path().join("user");
    let segs = segments(&ns);
    assert!(segs.len() >= 3, "{segs:?}");
    let active = segs.last().unwrap().clone();
    let path = data.path().to_str().unwrap();

    // Pre-allocated (zeroed) space after the last record is the end of the log.
    let mut bytes = std::fs::read(&active).unwrap();
    bytes.extend_from_slice(&[0; 4096]);
    std::fs::write(&active, &bytes).unwrap();
    let o = ok(run(bus().args(["inspect", "--verify", path])));
    assert!(
        stdout(&o).contains("user: ok, 40 events (1..40)"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("torn tail of 4096 bytes"),
        "{}",
        stdout(&o)
    );

    // A flipped byte in the active segment, with valid records after it, is damage.
    let offsets = record_offsets(&active);
    assert!(offsets.len() >= 3, "{offsets:?}");
    let first_seq: u64 = active
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    flip(&active, offsets[1]);
    let o = run(bus().args(["inspect", "--verify", path]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let damaged_seq = first_seq + 1;
    let named = format!(
        "{} at offset {} (sequence {damaged_seq}): checksum mismatch",
        active.display(),
        offsets[1]
    );
    assert!(stderr(&o).contains(&named), "{}", stderr(&o));
    assert!(stdout(&o).contains("user: DAMAGED"), "{}", stdout(&o));

    // Printing stops at the damage, with the same status.
    let o = run(bus().arg("inspect").arg(&ns));
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o).lines().count() as u64, damaged_seq - 1);

    // Repair keeps every record but the damaged one, then the log verifies and the broker
    // serves it.
    let o = ok(run(bus().args(["--json", "inspect", "--repair", path])));
    let reports = json_lines(&o);
    let repaired = reports
        .iter()
        .find_map(|r| r.get("repaired"))
        .unwrap_or_else(|| panic!("{reports:?}"));
    assert_eq!(repaired["events_lost"], 1);
    assert_eq!(
        repaired["lost"],
        serde_json::json!([[damaged_seq, damaged_seq]])
    );
    let o = ok(run(bus().args(["inspect", "--verify", path])));
    assert!(
        stdout(&o).contains("user: ok, 39 events (1..40, 1 lost to damage)"),
        "{}",
        stdout(&o)
    );
    let kept = 40;
    let server = ServerProcess::start(data.path());
    let o = ok(run(&mut server.bus(&["--json", "ns"])));
    let list: Vec<Value> = serde_json::from_str(stdout(&o).trim()).unwrap();
    let user = list.iter().find(|n| n["name"] == "user").unwrap();
    assert_eq!(user["last_sequence"], kept);
}

#[test]
fn damage_in_a_sealed_segment_loses_only_the_damaged_record() {
    let data = tempfile::tempdir().unwrap();
    let flags = ["--fsync", "never", "--segment-size", "4KiB"];
    let server = ServerProcess::start_with(data.path(), &flags);
    publish_many(server.url(), 30);
    server.signal_and_wait("-TERM");
    let ns = data.path().join("user");
    let segs = segments(&ns);
    assert!(segs.len() >= 2, "{segs:?}");
    let offsets = record_offsets(&segs[0]);
    flip(&segs[0], offsets[1]);

    // The segment file alone names the damage too.
    let o = run(bus().args(["inspect", "--verify"]).arg(&segs[0]));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!(
            "{} at offset {} (sequence 2)",
            segs[0].display(),
            offsets[1]
        )),
        "{}",
        stderr(&o)
    );
    let o = ok(run(bus().args(["inspect", "--repair"]).arg(&ns)));
    let out = stdout(&o);
    assert!(
        out.contains("user: repaired: lost 1 event (sequences 2)"),
        "{out}"
    );
    assert!(out.contains("original kept in"), "{out}");
    // Every later segment is kept; the active one was sealed under a new version-2 one.
    let after = segments(&ns);
    assert_eq!(&after[..segs.len()], &segs[..]);
    assert_eq!(after.len(), segs.len() + 1);
    let o = ok(run(bus().args(["inspect", "--verify"]).arg(&ns)));
    assert!(
        stdout(&o).contains("user: ok, 29 events (1..30, 1 lost to damage)"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn inspect_refuses_what_is_not_a_log() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
    let o = run(bus().arg("inspect").arg(dir.path()));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).starts_with("bus: "), "{}", stderr(&o));
    let o = run(bus().arg("inspect").arg(dir.path().join("notes.txt")));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("is not a segment file"),
        "{}",
        stderr(&o)
    );
}

/// The fields a restore must keep, of every event `bus get` reads from `broker`, by
/// namespace and sequence.
fn restorable(broker: &TestBroker, n: usize) -> Vec<Value> {
    let o = ok(run(&mut broker.bus(&[
        "--json",
        "get",
        ">",
        "--from",
        "oldest",
        "--count",
        &n.to_string(),
    ])));
    let mut events = json_lines(&o);
    events.sort_by_key(|e| {
        (
            e["namespace"].as_str().unwrap().to_owned(),
            e["sequence"].as_u64(),
        )
    });
    events
        .into_iter()
        .map(|e| {
            serde_json::json!({
                "subject": e["subject"], "headers": e["headers"], "payload": e["payload"],
                "encoding": e["encoding"], "content_type": e["content_type"], "reply_to": e["reply_to"],
            })
        })
        .collect()
}

#[test]
fn dump_and_restore_round_trip_into_a_second_broker_once() {
    let a = TestBroker::start();
    let b = TestBroker::start();
    block_on(async {
        let client = Client::connect(&a.url()).await.unwrap();
        client
            .publish("user.created", r#"{"name":"ada","tags":["x"]}"#)
            .content_type("application/json")
            .header("trace", "abc")
            .header("tenant", "t1")
            .await
            .unwrap();
        client
            .publish("user.avatar", vec![0u8, 0xff, 0x80, 10, 13])
            .content_type("image/png")
            .await
            .unwrap();
        client
            .publish("user.note", "no content type, \"quoted\"\nand a newline")
            .reply_to("user.replies")
            .await
            .unwrap();
        client.publish("user.empty", Vec::new()).await.unwrap();
        client
            .publish("order.placed", "plain text")
            .content_type("text/plain; charset=utf-8")
            .await
            .unwrap();
    });
    let o = ok(run(&mut a.bus(&["dump", ">"])));
    assert!(stderr(&o).contains("dumped 5 events"), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 5);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &o.stdout).unwrap();

    let o = ok(run(b
        .bus(&["restore"])
        .stdin(Stdio::from(file.reopen().unwrap()))));
    assert_eq!(
        stdout(&o).trim(),
        "restored 5 events: 5 stored, 0 duplicates"
    );
    assert_eq!(restorable(&a, 5), restorable(&b, 5));

    // Again: every event is a duplicate, nothing new is stored.
    let o = ok(run(b.bus(&["--json", "restore"]).arg(file.path())));
    let counts: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(
        counts,
        serde_json::json!({"events": 5, "stored": 0, "duplicates": 5})
    );
    let o = ok(run(&mut b.bus(&["--json", "ns"])));
    let list: Vec<Value> = serde_json::from_str(stdout(&o).trim()).unwrap();
    let total: u64 = list.iter().map(|n| n["events"].as_u64().unwrap()).sum();
    assert_eq!(total, 5, "{list:?}");
}

#[test]
fn restore_names_the_line_that_is_not_an_event() {
    let b = TestBroker::start();
    let dump = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(dump.path(), "\n{\"subject\":\"user.x\"}\n").unwrap();
    let o = run(b.bus(&["restore"]).arg(dump.path()));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("bus: line 2 is not an event: "),
        "{}",
        stderr(&o)
    );
}

#[test]
fn tail_shows_a_live_event_for_people() {
    let broker = TestBroker::start();
    let mut tail = Reader::spawn(&mut broker.bus(&["tail", "user.>", "--count", "1"]));
    tail.wait_stderr("following user.> from newest");
    ok(run(&mut broker.bus(&[
        "put",
        "user.created",
        r#"{"name":"ada"}"#,
        "-H",
        "trace=abc",
    ])));
    let header = tail.line();
    assert!(header.starts_with("user.created #1 "), "{header}");
    assert!(header.ends_with(" [trace=abc]"), "{header}");
    assert!(
        header.contains(" ago") || header.contains("just now"),
        "{header}"
    );
    assert_eq!(
        [tail.line(), tail.line(), tail.line()],
        ["  {", "    \"name\": \"ada\"", "  }"]
    );
    let (status, rest, _) = tail.finish();
    assert_eq!((status.code(), rest.len()), (Some(0), 0));
}
