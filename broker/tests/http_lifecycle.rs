//! End to end: what survives a restart, and graceful shutdown with open streams.

use std::time::Duration;

use bus_testkit::{Engine, TestServer, enc, engines, jsons, texts};
use serde_json::Value;

// disk only: restarts and checks what survived (the memory engine starts empty).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_every_event_and_continues_sequences() {
    let mut s = TestServer::start_default().await;
    let mut receipts = Vec::new();
    for (subject, p) in [
        ("user.created", "u1"),
        ("order.created", "o1"),
        ("user.deleted", "u2"),
        ("order.paid", "o2"),
        ("user.created", "u3"),
    ] {
        receipts.push(s.publish(subject, p).await);
    }
    let before = s.pull_all(">").await;
    assert_eq!(before.len(), 5);

    s.restart().await;

    // A stream from the oldest sees all of them, unchanged.
    let mut st = s.subscribe("pattern=%3E&from=oldest").await;
    let after = jsons(&st.expect_events(5).await);
    let sorted = |v: &[Value]| {
        let mut v: Vec<String> = v.iter().map(Value::to_string).collect();
        v.sort();
        v
    };
    assert_eq!(sorted(&after), sorted(&before));
    for r in &receipts {
        assert!(
            after
                .iter()
                .any(|e| e["id"] == r["id"] && e["time"] == r["time"]),
            "receipt {r} not found after restart"
        );
    }

    // Sequences continue; the live stream sees the new event.
    let r = s.publish("user.created", "u4").await;
    assert_eq!(r["sequence"], 4);
    let e = st.expect_event().await.json();
    assert_eq!(e["payload"], "u4");
    let r = s.publish("order.created", "o3").await;
    assert_eq!(r["sequence"], 3);
}

// disk only: restarts and checks what survived (the memory engine starts empty).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_and_event_ids_stay_valid_across_restart() {
    let mut s = TestServer::start_default().await;
    let first = s.publish("user.a", "e1").await;
    s.publish("user.a", "e2").await;
    let page = s.pull("pattern=user.%3E&from=oldest").await;
    let cursor = page["cursor"].as_str().unwrap().to_owned();

    s.restart().await;

    s.publish("user.a", "e3").await;
    let page = s
        .pull(&format!("pattern=user.%3E&from={}", enc(&cursor)))
        .await;
    assert_eq!(texts(page["events"].as_array().unwrap()), ["e3"]);
    let id = first["id"].as_str().unwrap();
    let page = s.pull(&format!("pattern=user.%3E&from={}", enc(id))).await;
    assert_eq!(texts(page["events"].as_array().unwrap()), ["e2", "e3"]);
    // And as Last-Event-ID on a stream.
    let mut st = s
        .subscribe_with("pattern=user.%3E", &[("last-event-id", &cursor)])
        .await;
    assert_eq!(st.expect_event().await.json()["payload"], "e3");
}

// disk only: restarts and checks what survived (the memory engine starts empty).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_figures_survive_restart() {
    let mut s = TestServer::start_default().await;
    for i in 0..3 {
        s.publish("user.a", &format!("{i}")).await;
    }
    let before = s.get_json("/v1/namespaces/user").await;
    s.restart().await;
    let after = s.get_json("/v1/namespaces/user").await;
    for k in ["events", "bytes", "first_sequence", "last_sequence"] {
        assert_eq!(after[k], before[k], "{k}: before {before}, after {after}");
    }
}

engines!(graceful_shutdown_ends_open_streams_with_a_shutdown_event);
async fn graceful_shutdown_ends_open_streams_with_a_shutdown_event(engine: Engine) {
    let mut s = TestServer::start_default_on(engine).await;
    s.publish("user.a", "e1").await;
    let mut a = s.subscribe("pattern=user.%3E&from=oldest").await;
    assert_eq!(a.expect_event().await.json()["payload"], "e1");
    let mut b = s.subscribe("pattern=%3E").await;
    let mut c = s.subscribe("pattern=order.%3E").await;

    s.trigger_shutdown();
    for (name, st) in [("a", &mut a), ("b", &mut b), ("c", &mut c)] {
        let m = st
            .next_event()
            .await
            .unwrap_or_else(|| panic!("stream {name} ended without a shutdown event"));
        assert_eq!(m.event.as_deref(), Some("shutdown"), "stream {name}: {m:?}");
        assert_eq!(m.json(), serde_json::json!({}), "stream {name}");
        assert!(
            st.next_event().await.is_none(),
            "stream {name} continued after shutdown"
        );
    }
    let took = s.wait_stopped().await;
    assert!(
        took < Duration::from_secs(10),
        "run took {took:?} to return"
    );
}

engines!(graceful_shutdown_returns_with_an_unread_stream_open);
async fn graceful_shutdown_returns_with_an_unread_stream_open(engine: Engine) {
    let mut s = TestServer::start_default_on(engine).await;
    // A client that opened a stream and reads nothing more.
    let _idle = s.subscribe("pattern=user.%3E").await;
    s.publish("user.a", "unread").await;
    s.trigger_shutdown();
    let took = s.wait_stopped().await;
    assert!(
        took < Duration::from_secs(10),
        "run took {took:?} to return"
    );
}

// disk only: restarts and checks what survived (the memory engine starts empty).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_then_restart_keeps_events_published_just_before() {
    let mut s = TestServer::start(|c| {
        c.log.fsync = bus_broker::storage::FsyncPolicy::Never;
    })
    .await;
    for i in 0..20 {
        s.publish("user.a", &format!("e{i}")).await;
    }
    s.restart().await;
    let got = texts(&s.pull_all("user.>").await);
    let expected: Vec<String> = (0..20).map(|i| format!("e{i}")).collect();
    assert_eq!(
        got, expected,
        "a graceful stop flushes even with fsync=never"
    );
}
