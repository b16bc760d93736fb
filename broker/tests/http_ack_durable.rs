//! Acks are answered only once durable, also when repeated, and a failed state write undoes
//! them: whatever the broker answered about an event holds after a restart.

use std::io::ErrorKind;
use std::sync::Arc;
use std::time::Duration;

use bus_broker::storage::io::{FaultOp, SimFs};
use bus_testkit::*;
use hyper::StatusCode;

/// A server over `fs`, a durable manual-ack consumer `w` on `user.>`, and one event
/// delivered to it: (server, stream, event id).
async fn one_delivery(fs: &SimFs) -> (TestServer, SseReader, String) {
    let injected = fs.clone();
    let s = TestServer::start(move |c| c.file_system = Arc::new(injected.clone())).await;
    let (mut st, _) = s
        .attach("pattern=user.%3E&durable=w&ack=manual&from=oldest")
        .await;
    let id = put(&s, "user.created", "one").await;
    assert_eq!(next(&mut st).await, d("one", 1));
    (s, st, id)
}

/// Sends an ack and its repeat while the state write's sync is held, then fails that sync:
/// neither may be answered before, and both must be refused.
async fn ack_twice_while_the_state_sync_fails(s: &TestServer, fs: &SimFs, id: &str) {
    fs.hold_syncs(true);
    fs.fail(FaultOp::Sync, 0, ErrorKind::Other);
    let mut first = Box::pin(s.ack_op("w", id, "ack"));
    let held = tokio::task::spawn_blocking({
        let fs = fs.clone();
        move || fs.wait_for_held_sync()
    });
    tokio::select! {
        r = &mut first => panic!("ack answered before its state was synced: {}", r.text()),
        h = held => h.expect("waiting for the held sync"),
    }
    let mut repeat = Box::pin(s.ack_op("w", id, "ack"));
    // Before the fix the repeat came back at once as `already_acked`; it must wait too. (A
    // bounded look, not a wait for something to happen: either way the answers are checked.)
    if let Ok(r) = tokio::time::timeout(Duration::from_millis(300), &mut repeat).await {
        panic!(
            "the repeated ack was answered before the first was durable: {} {}",
            r.status,
            r.text()
        );
    }
    fs.hold_syncs(false);
    let (first, repeat) = within("the acks", async { tokio::join!(first, repeat) }).await;
    first.assert_error(StatusCode::SERVICE_UNAVAILABLE, "read_only");
    repeat.assert_error(StatusCode::SERVICE_UNAVAILABLE, "read_only");
    fs.clear_faults();
}

// disk only: fails the disk engine's state-log syncs (SimFs), then restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_ack_is_undone_and_the_event_comes_back_after_a_restart() {
    let fs = SimFs::new();
    let (mut s, st, id) = one_delivery(&fs).await;
    ack_twice_while_the_state_sync_fails(&s, &fs, &id).await;
    // Still pending in memory as on disk.
    assert_eq!(s.consumer("w").await["pending"], 1);
    drop(st);
    s.restart().await;
    let (mut st, _) = s
        .attach("pattern=user.%3E&durable=w&ack=manual&from=oldest")
        .await;
    // Delivered again: its count is 1 or 2, as the lazily written delivery record made it
    // to disk before the failed write or not.
    let (payload, _count) = next(&mut st).await;
    assert_eq!(payload, "one", "the refused ack took effect after all");
}

// disk only: the state log turns read-only and heals on the disk engine's file system (SimFs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_retried_after_the_state_log_heals_is_durable() {
    let fs = SimFs::new();
    let (mut s, st, id) = one_delivery(&fs).await;
    ack_twice_while_the_state_sync_fails(&s, &fs, &id).await;
    // The state log probes and heals by itself; meanwhile the retry is refused, never
    // answered `already_acked`.
    let status = within("the state log to heal", async {
        loop {
            let r = s.ack_op("w", &id, "ack").await;
            if r.status == StatusCode::OK {
                break r.json()["status"].clone();
            }
            r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "read_only");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(status, "acked");
    s.expect_ack("w", &id, "ack", "already_acked").await;
    drop(st);
    s.restart().await;
    let (mut st, _) = s
        .attach("pattern=user.%3E&durable=w&ack=manual&from=oldest")
        .await;
    put(&s, "user.created", "two").await;
    assert_eq!(
        next(&mut st).await,
        d("two", 1),
        "the acked event came back"
    );
}
