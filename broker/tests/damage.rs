//! One bad byte stays in its namespace: a namespace whose log is damaged (a flipped byte
//! anywhere but the last record, in the active or a sealed segment) is set aside, the broker
//! starts and serves every other namespace, and every request touching the damaged one is
//! answered `503 namespace_damaged` naming the file, the offset and `bus inspect --repair`;
//! `/healthz` says `degraded`, `/metrics` counts it. A bad last record is cut as a torn
//! write, logged, counted, and its bytes kept in `quarantine/`. After a repair the namespace
//! serves again.
//!
//! The flips are at offsets drawn from a seeded generator: the seed and every offset are
//! printed; set `BUS_DAMAGE_SEED` to replay a run.

use std::path::{Path, PathBuf};

use bus_broker::storage::inspect::{DataDir, DirLock};
use bus_testkit::{Rng, TestServer, enc, record_starts};
use hyper::StatusCode;

fn seed() -> u64 {
    Rng::seed_from_env("BUS_DAMAGE_SEED", "damage")
}

/// Segments of 4 KiB, so that a few dozen events make sealed segments.
async fn server() -> TestServer {
    TestServer::start(|c| c.log.segment_bytes = 4096).await
}

fn ns_dir(s: &TestServer, ns: &str) -> PathBuf {
    s.dir.path().join("data").join(ns)
}

/// The segment files of `dir`, oldest first.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    logs
}

/// Where the damage of a flip at `byte` is reported: the start of its record, or 0 for the
/// segment header.
fn damage_offset(starts: &[usize], byte: usize) -> usize {
    starts.iter().copied().rfind(|&s| s <= byte).unwrap_or(0)
}

fn flip(path: &Path, byte: usize, mask: u8) {
    let mut data = std::fs::read(path).unwrap();
    data[byte] ^= mask;
    std::fs::write(path, data).unwrap();
}

/// Publishes `n` events to each namespace, one at a time.
async fn fill(s: &TestServer, namespaces: &[&str], n: usize) {
    for i in 0..n {
        for ns in namespaces {
            s.publish(
                &format!("{ns}.e{i}"),
                &format!("event {i} of {ns} {}", "x".repeat(40)),
            )
            .await;
        }
    }
}

/// Every request touching `user` is refused with 503 namespace_damaged naming `file` and
/// `offset`; the healthy namespace `orders` publishes and reads; health and metrics say so.
async fn assert_set_aside(s: &TestServer, file: &Path, offset: usize, orders: usize) {
    let name = file.file_name().unwrap().to_str().unwrap();
    let check = |what: &str, r: bus_testkit::Resp| {
        let m = r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "namespace_damaged");
        assert!(m.contains(name), "{what}: {m}");
        assert!(m.contains(&format!("at offset {offset} ")), "{what}: {m}");
        assert!(m.contains("bus inspect --repair"), "{what}: {m}");
    };
    let user = enc("user.>");
    check(
        "publish",
        s.post(
            "/v1/events/user.new",
            &[("content-type", "text/plain")],
            "x",
        )
        .await,
    );
    check(
        "pull",
        s.get(&format!("/v1/events?pattern={user}&from=oldest"))
            .await,
    );
    check(
        "stream",
        s.get(&format!("/v1/stream?pattern={user}&from=oldest"))
            .await,
    );
    check(
        "consumer",
        s.get(&format!(
            "/v1/stream?pattern={user}&from=oldest&durable=mailer&ack=manual"
        ))
        .await,
    );
    check(
        "request",
        s.post("/v1/requests/user.rpc?timeout=1s", &[], "x").await,
    );
    check("namespace", s.get("/v1/namespaces/user").await);
    // Not listed either (whether found at start or by a read), the healthy one is.
    let listed: Vec<String> = s
        .get("/v1/namespaces")
        .await
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        listed.contains(&"orders".to_owned()) && !listed.contains(&"user".to_owned()),
        "{listed:?}"
    );

    let health = s.get("/healthz").await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.text());
    let h = health.json();
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(h["namespaces"]["user"]["state"], "damaged", "{h}");
    let metrics = s.get("/metrics").await.text();
    assert!(
        metrics.contains("\nbus_namespaces_damaged 1\n"),
        "{metrics}"
    );

    // The healthy namespace serves, alone and under a wildcard.
    s.publish("orders.more", "still here").await;
    assert_eq!(s.pull_all("orders.>").await.len(), orders + 1);
    let all = s.pull_all(">").await;
    assert!(
        all.iter()
            .all(|e| e["subject"].as_str().unwrap().starts_with("orders.")),
        "a wildcard read only the healthy namespace"
    );
    assert_eq!(all.len(), orders + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flip_in_the_active_segment_sets_the_namespace_aside_and_the_rest_serve() {
    let mut rng = Rng(seed());
    let mut s = server().await;
    fill(&s, &["user", "orders"], 45).await;
    s.stop().await;
    let active = segments(&ns_dir(&s, "user")).pop().unwrap();
    let pristine = std::fs::read(&active).unwrap();
    let starts = record_starts(&pristine);
    assert!(starts.len() >= 3, "the active segment holds a few records");
    let last = *starts.last().unwrap();
    for round in 0..16 {
        // Anywhere before the last record: the header or a record that a valid one follows.
        let byte = rng.below(last as u64) as usize;
        let mask = 1 << rng.below(8);
        let offset = damage_offset(&starts, byte);
        println!(
            "round {round}: flip byte {byte} (mask {mask:#04x}) of {}, damage at {offset}",
            active.display()
        );
        flip(&active, byte, mask);
        s.start_again().await;
        assert_set_aside(&s, &active, offset, 45 + round).await;
        s.stop().await;
        // Never written to: the damaged file is as the flip left it.
        let mut expected = pristine.clone();
        expected[byte] ^= mask;
        assert_eq!(std::fs::read(&active).unwrap(), expected, "round {round}");
        assert_eq!(
            segments(&ns_dir(&s, "user")).last(),
            Some(&active),
            "no new segment"
        );
        std::fs::write(&active, &pristine).unwrap();
    }
    s.start_again().await;
    assert_eq!(s.pull_all("user.>").await.len(), 45, "healthy again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flip_in_a_sealed_segment_sets_the_namespace_aside_when_read() {
    let mut rng = Rng(seed());
    let mut s = server().await;
    fill(&s, &["user", "orders"], 120).await;
    s.stop().await;
    let segs = segments(&ns_dir(&s, "user"));
    assert!(segs.len() >= 3, "a few sealed segments: {segs:?}");
    for round in 0..16 {
        let seg = &segs[rng.below(segs.len() as u64 - 1) as usize];
        let pristine = std::fs::read(seg).unwrap();
        let starts = record_starts(&pristine);
        let byte = rng.below(pristine.len() as u64) as usize;
        let mask = 1 << rng.below(8);
        let offset = damage_offset(&starts, byte);
        println!(
            "round {round}: flip byte {byte} (mask {mask:#04x}) of {}, damage at {offset}",
            seg.display()
        );
        flip(seg, byte, mask);
        s.start_again().await;
        // Sealed segments are checked when first read: reading up to the damage finds it
        // (the events before it are served), and from then on the namespace is set aside.
        let mut from = "oldest".to_owned();
        let found = loop {
            let r = s
                .get(&format!(
                    "/v1/events?pattern={}&from={}&limit=1000",
                    enc("user.>"),
                    enc(&from)
                ))
                .await;
            if r.status != StatusCode::OK {
                break r;
            }
            let page = r.json();
            assert!(
                !page["events"].as_array().unwrap().is_empty(),
                "read past the damage: {page}"
            );
            from = page["cursor"].as_str().unwrap().to_owned();
        };
        let m = found.assert_error(StatusCode::SERVICE_UNAVAILABLE, "namespace_damaged");
        assert!(m.contains(&format!("at offset {offset} ")), "{m}");
        assert_set_aside(&s, seg, offset, 120 + round).await;
        s.stop().await;
        std::fs::write(seg, &pristine).unwrap();
    }
    s.start_again().await;
    assert_eq!(s.pull_all("user.>").await.len(), 120, "healthy again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_repair_the_namespace_serves_again() {
    let mut s = server().await;
    fill(&s, &["user", "orders"], 10).await;
    s.stop().await;
    let active = segments(&ns_dir(&s, "user")).pop().unwrap();
    let starts = record_starts(&std::fs::read(&active).unwrap());
    flip(&active, starts[3] + 20, 0x40);
    s.start_again().await;
    s.post("/v1/events/user.x", &[], "x")
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE, "namespace_damaged");
    s.stop().await;

    // What `bus inspect --repair <dir>` does: salvage around the damage.
    let data = s.dir.path().join("data");
    let lock = DirLock::acquire(&data).unwrap();
    let dir = DataDir::open(&data).unwrap();
    for ns in dir.open_namespaces(true).unwrap() {
        let fixed = ns.repair(&lock).unwrap();
        if ns.label == "user" {
            assert_eq!(fixed.lost, vec![4..=4], "{fixed:?}");
        } else {
            assert!(!fixed.changed(), "{}: {fixed:?}", ns.label);
        }
    }
    drop(lock);

    s.start_again().await;
    let h = s.get_json("/healthz").await;
    assert_eq!(h["status"], "ok", "{h}");
    s.publish("user.after", "repaired").await;
    let page = s
        .pull(&format!("pattern={}&from=oldest&limit=1000", enc("user.>")))
        .await;
    let seqs: Vec<u64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    // Every record after the damage is kept with its sequence, and the new event takes a
    // sequence never handed out before.
    let mut want: Vec<u64> = (1..=10).filter(|&q| q != 4).collect();
    want.push(11);
    assert_eq!(seqs, want);
    assert_eq!(
        page["gaps"],
        serde_json::json!([{"namespace": "user", "missed_from": 4, "resume_at": 5, "reason": "damaged"}])
    );
    // A stream gets the same gap, between the events on either side of it.
    let mut st = s
        .subscribe(&format!("pattern={}&from=oldest", enc("user.>")))
        .await;
    for want in 1..=3 {
        assert_eq!(st.expect_event().await.json()["sequence"], want);
    }
    let gap = st.next_event().await.expect("gap message");
    assert_eq!(gap.event.as_deref(), Some("gap"), "{gap:?}");
    assert_eq!(
        gap.json(),
        serde_json::json!({"namespace": "user", "missed_from": 4, "resume_at": 5, "reason": "damaged"})
    );
    assert_eq!(st.expect_event().await.json()["sequence"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_last_record_is_cut_counted_and_kept_in_quarantine() {
    let mut rng = Rng(seed());
    let mut s = server().await;
    fill(&s, &["user"], 5).await;
    s.stop().await;
    let active = segments(&ns_dir(&s, "user")).pop().unwrap();
    let data = std::fs::read(&active).unwrap();
    let last = *record_starts(&data).last().unwrap();
    let byte = last + rng.below((data.len() - last) as u64) as usize;
    println!(
        "flip byte {byte} of the last record at {last} of {}",
        active.display()
    );
    flip(&active, byte, 0x01);
    let cut = std::fs::read(&active).unwrap()[last..].to_vec();

    // The state log's tail too: bytes that are no record.
    let state = segments(&s.dir.path().join("data/.state")).pop().unwrap();
    let state_len = std::fs::metadata(&state).unwrap().len();
    let garbage = vec![0xab; 100];
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&state)
            .unwrap();
        f.write_all(&garbage).unwrap();
    }

    s.start_again().await;
    let name = active.file_name().unwrap().to_str().unwrap();
    let kept = ns_dir(&s, "user").join(format!("quarantine/{name}.{last}.cut"));
    assert_eq!(std::fs::read(&kept).unwrap(), cut, "exactly the cut bytes");
    let state_name = state.file_name().unwrap().to_str().unwrap();
    let kept_state = s.dir.path().join(format!(
        "data/.state/quarantine/{state_name}.{state_len}.cut"
    ));
    assert_eq!(std::fs::read(&kept_state).unwrap(), garbage);
    assert_eq!(std::fs::metadata(&active).unwrap().len(), last as u64);

    let metrics = s.get("/metrics").await.text();
    assert!(
        metrics.contains("\nbus_recovery_tail_cuts_total 2\n"),
        "{metrics}"
    );
    let bytes = cut.len() + garbage.len();
    assert!(
        metrics.contains(&format!("\nbus_recovery_tail_cut_bytes_total {bytes}\n")),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nbus_namespaces_damaged 0\n"),
        "{metrics}"
    );
    // Not damage: the namespace serves, without its last record.
    assert_eq!(s.get_json("/healthz").await["status"], "ok");
    assert_eq!(s.pull_all("user.>").await.len(), 4);
    s.publish("user.next", "after the cut").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_state_log_starts_and_keeps_every_acknowledged_position() {
    let mut rng = Rng(seed());
    let mut s = server().await;
    fill(&s, &["user"], 6).await;
    let consumers = ["mailer", "billing", "audit"];
    let data = s.dir.path().join("data");
    // Every event delivered to each consumer (none acked yet): 6 pending each.
    let mut ids = Vec::new();
    for name in consumers {
        let (mut st, _) = s
            .attach(&format!(
                "pattern={}&from=oldest&durable={name}&ack=manual",
                enc("user.>")
            ))
            .await;
        ids.clear();
        for seq in 1..=6 {
            let m = st.expect_event().await;
            let id = m.id.clone().unwrap_or_else(|| panic!("an event: {m:?}"));
            assert!(id.starts_with(&format!("user-{seq}-")), "{id}");
            ids.push(id);
        }
    }
    let mut acked = 0;
    for (round, upto) in [2usize, 4, 5].into_iter().enumerate() {
        for name in consumers {
            for id in &ids[acked..upto] {
                s.expect_ack(name, id, "ack", "acked").await;
            }
        }
        acked = upto;
        s.stop().await;
        // One flipped byte anywhere in the state log's segments.
        let state = segments(&data.join(".state"));
        let file = &state[rng.below(state.len() as u64) as usize];
        let len = std::fs::metadata(file).unwrap().len();
        let byte = rng.below(len) as usize;
        println!("round {round}: flip {} byte {byte}", file.display());
        flip(file, byte, 1 << rng.below(8));
        s.start_again().await;
        assert_eq!(s.get_json("/healthz").await["status"], "ok");
        for name in consumers {
            let c = s.consumer(name).await;
            assert_eq!(c["pending"], 6 - acked, "{name} after round {round}: {c}");
            assert_eq!(c["positions"]["user"], 7, "{name} after round {round}: {c}");
        }
    }
    assert_eq!(s.pull_all("user.>").await.len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_of_a_newer_format_is_refused_naming_its_version_and_never_cut() {
    let mut s = server().await;
    fill(&s, &["user", "orders"], 3).await;
    s.stop().await;
    let active = segments(&ns_dir(&s, "user")).pop().unwrap();
    let mut data = std::fs::read(&active).unwrap();
    // Version 3 with a header checksum that verifies: written by a newer bus, not damage.
    data[8..10].copy_from_slice(&3u16.to_le_bytes());
    let crc = crc32fast::hash(&data[..28]);
    data[28..32].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&active, &data).unwrap();
    s.start_again().await;
    let r = s
        .post(
            "/v1/events/user.new",
            &[("content-type", "text/plain")],
            "x",
        )
        .await;
    let m = r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "namespace_damaged");
    assert!(
        m.contains("segment format version 3 is not supported"),
        "{m}"
    );
    assert_eq!(s.pull_all("orders.>").await.len(), 3);
    s.stop().await;
    // Repair does not cut what it cannot read.
    let data_dir = s.dir.path().join("data");
    let lock = DirLock::acquire(&data_dir).unwrap();
    for ns in DataDir::open(&data_dir)
        .unwrap()
        .open_namespaces(true)
        .unwrap()
    {
        if ns.label == "user" {
            assert!(ns.repair(&lock).is_err(), "repair refused");
        }
    }
    drop(lock);
    assert_eq!(
        std::fs::read(&active).unwrap(),
        data,
        "the segment is untouched"
    );
}
