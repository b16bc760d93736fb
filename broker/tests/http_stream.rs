//! End to end: `GET /v1/stream` (Server-Sent Events): framing, start positions, wildcards
//! across namespaces, exact resumption with `Last-Event-ID`, keep-alives, fan-out and slow
//! readers.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bus_testkit::{Engine, SseMessage, TestServer, WAIT, enc, engines, jsons, within};
use hyper::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `(namespace, sequence, payload)` of each event, for comparisons.
fn keys(events: &[Value]) -> Vec<(String, u64, String)> {
    events
        .iter()
        .map(|e| {
            (
                e["namespace"].as_str().expect("namespace").to_owned(),
                e["sequence"].as_u64().expect("sequence"),
                e["payload"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// Groups events by namespace, keeping their order, for multi-namespace comparisons (there is
/// no global order across namespaces).
fn by_namespace(events: &[Value]) -> BTreeMap<String, Vec<(u64, String)>> {
    let mut m: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
    for (ns, seq, p) in keys(events) {
        m.entry(ns).or_default().push((seq, p));
    }
    m
}

fn payloads(messages: &[SseMessage]) -> Vec<String> {
    jsons(messages)
        .iter()
        .map(|e| e["payload"].as_str().expect("text payload").to_owned())
        .collect()
}

engines!(stream_is_event_stream_with_subscribed_first_then_one_line_default_events);
async fn stream_is_event_stream_with_subscribed_first_then_one_line_default_events(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let mut st = s.stream("pattern=user.%3E", &[]).await;
    assert_eq!(st.status, StatusCode::OK);
    assert!(
        st.header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream")),
        "content-type {:?}",
        st.header("content-type")
    );
    let first = st.next_event().await.expect("first message");
    assert_eq!(first.event.as_deref(), Some("subscribed"), "{first:?}");
    let sub = first.json();
    assert!(
        sub["subscription"].as_str().is_some_and(|s| !s.is_empty()),
        "{sub}"
    );
    assert_eq!(sub["pattern"], "user.>");
    assert!(sub["from"].is_string(), "{sub}");
    assert_eq!(st.retry(), Some(1000), "the first message sets retry: 1000");

    // A multi-line JSON payload still travels as one `data:` line.
    let receipt = s
        .publish_with(
            "user.created",
            &[("content-type", "application/json")],
            "{\n  \"name\": \"ada\"\n}\n",
        )
        .await;
    let m = st.expect_event().await;
    assert_eq!(m.event, None, "events use the default type: {m:?}");
    assert_eq!(m.data_lines, 1, "data is one line: {m:?}");
    let e = m.json();
    assert_eq!(e["id"], receipt["id"]);
    assert_eq!(e["subject"], "user.created");
    assert_eq!(e["namespace"], "user");
    assert_eq!(e["sequence"], 1);
    assert_eq!(e["payload"], json!({"name": "ada"}));
    assert!(m.id.as_deref().is_some_and(|id| !id.is_empty()), "{m:?}");
}

engines!(stream_from_newest_sees_only_events_published_after_it_started);
async fn stream_from_newest_sees_only_events_published_after_it_started(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    s.publish("user.a", "old-1").await;
    s.publish("user.a", "old-2").await;
    // `newest` is the default.
    for q in ["pattern=user.%3E", "pattern=user.%3E&from=newest"] {
        let mut st = s.subscribe(q).await;
        let tag = format!("new-{q}");
        s.publish("user.a", &tag).await;
        let m = st.expect_event().await;
        assert_eq!(payloads(&[m]), [tag], "{q}");
    }
}

engines!(stream_from_oldest_sees_history_then_live_events);
async fn stream_from_oldest_sees_history_then_live_events(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    for i in 0..3 {
        s.publish("user.a", &format!("e{i}")).await;
    }
    let mut st = s.subscribe("pattern=user.%3E&from=oldest").await;
    let history = st.expect_events(3).await;
    assert_eq!(payloads(&history), ["e0", "e1", "e2"]);
    s.publish("user.b", "e3").await;
    let live = st.expect_event().await;
    let e = live.json();
    assert_eq!(
        (e["sequence"].as_u64(), e["payload"].as_str()),
        (Some(4), Some("e3"))
    );
}

engines!(stream_from_an_event_id_starts_after_that_event);
async fn stream_from_an_event_id_starts_after_that_event(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let mut receipts = Vec::new();
    for i in 0..4 {
        receipts.push(s.publish("user.a", &format!("e{i}")).await);
    }
    let id = receipts[1]["id"].as_str().unwrap();
    let mut st = s
        .subscribe(&format!("pattern=user.%3E&from={}", enc(id)))
        .await;
    assert_eq!(payloads(&st.expect_events(2).await), ["e2", "e3"]);
    s.publish("user.a", "e4").await;
    assert_eq!(payloads(&[st.expect_event().await]), ["e4"]);

    // The id of the newest event: only later events.
    let last = receipts[3]["id"].as_str().unwrap();
    let mut st = s
        .subscribe(&format!("pattern=user.%3E&from={}", enc(last)))
        .await;
    assert_eq!(payloads(&[st.expect_event().await]), ["e4"]);
}

/// The same instant as `t` (`...THH:MM:SS.fffffffffZ`) written with a `+01:00` or `-01:00`
/// offset.
fn with_offset(t: &str) -> String {
    let hour: u32 = t[11..13].parse().expect("hour");
    let base = t.strip_suffix('Z').expect("UTC time");
    if hour < 23 {
        format!("{}{:02}{}+01:00", &base[..11], hour + 1, &base[13..])
    } else {
        format!("{}{:02}{}-01:00", &base[..11], hour - 1, &base[13..])
    }
}

engines!(stream_from_a_time_starts_at_the_first_event_at_or_after_it);
async fn stream_from_a_time_starts_at_the_first_event_at_or_after_it(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    // (time, payload) of every event published, in order.
    let mut published: Vec<(String, String)> = Vec::new();
    for i in 0..4 {
        let p = format!("e{i}");
        let r = s.publish("user.a", &p).await;
        published.push((r["time"].as_str().unwrap().to_owned(), p));
    }
    // Times never decrease but may repeat: expect from the first event whose time >= t.
    let t = published[2].0.clone();
    for from in [t.clone(), with_offset(&t)] {
        let first = published.iter().position(|(x, _)| *x >= t).unwrap();
        let expected: Vec<String> = published[first..].iter().map(|(_, p)| p.clone()).collect();
        let mut st = s
            .subscribe(&format!("pattern=user.%3E&from={}", enc(&from)))
            .await;
        let got = st.expect_events(expected.len()).await;
        assert_eq!(payloads(&got), expected, "from={from}");
        let r = s.publish("user.a", "live").await;
        published.push((r["time"].as_str().unwrap().to_owned(), "live".to_owned()));
        assert_eq!(
            payloads(&[st.expect_event().await]),
            ["live"],
            "from={from}"
        );
    }

    // A time before everything, with an offset and few fraction digits: every event.
    let mut st = s
        .subscribe(&format!(
            "pattern=user.%3E&from={}",
            enc("2000-01-01T01:00:00.5+01:00")
        ))
        .await;
    let got = st.expect_events(6).await;
    assert_eq!(payloads(&got), ["e0", "e1", "e2", "e3", "live", "live"]);
}

engines!(wildcard_patterns_span_ordinary_namespaces_only);
async fn wildcard_patterns_span_ordinary_namespaces_only(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    s.publish("user.created", "u1").await;
    s.publish("order.created", "o1").await;
    s.publish("user.deleted", "u2").await;
    s.publish("order.created.v2", "o2").await;
    s.publish("_BUS_.created", "b1").await;

    // `>` sees every event of every ordinary namespace.
    let mut all = s.subscribe("pattern=%3E&from=oldest").await;
    let got = jsons(&all.expect_events(5).await);
    let mut expected = BTreeMap::new();
    expected.insert("_BUS_".to_owned(), vec![(1, "b1".to_owned())]);
    expected.insert(
        "order".to_owned(),
        vec![(1, "o1".to_owned()), (2, "o2".to_owned())],
    );
    expected.insert(
        "user".to_owned(),
        vec![(1, "u1".to_owned()), (2, "u2".to_owned())],
    );
    assert_eq!(by_namespace(&got), expected);

    // `*.created` matches exactly two tokens ending in `created`, in any namespace.
    let mut created = s.subscribe("pattern=%2A.created&from=oldest").await;
    let got = jsons(&created.expect_events(3).await);
    let subjects: BTreeMap<String, Vec<String>> = got.iter().fold(BTreeMap::new(), |mut m, e| {
        m.entry(e["namespace"].as_str().unwrap().to_owned())
            .or_default()
            .push(e["subject"].as_str().unwrap().to_owned());
        m
    });
    assert_eq!(subjects["user"], ["user.created"]);
    assert_eq!(subjects["order"], ["order.created"]);
    assert_eq!(subjects["_BUS_"], ["_BUS_.created"]);

    // Live events of a namespace that did not exist when the streams started reach both.
    s.publish("audit.created", "a1").await;
    s.publish("audit.x.y", "a2").await;
    let e = all.expect_event().await.json();
    assert_eq!(e["subject"], "audit.created");
    let e = all.expect_event().await.json();
    assert_eq!(e["subject"], "audit.x.y");
    let e = created.expect_event().await.json();
    assert_eq!(e["subject"], "audit.created");
    // Nothing from a reserved namespace: every event seen so far is ordinary (a client can
    // not publish into `_bus_` or `_inbox`, so their absence is all that can be observed).
    s.publish("user.created", "u3").await;
    let e = created.expect_event().await.json();
    assert_eq!(e["payload"], "u3");
    let e = all.expect_event().await.json();
    assert_eq!(e["payload"], "u3");
}

engines!(reserved_namespace_can_be_subscribed_by_name);
async fn reserved_namespace_can_be_subscribed_by_name(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    for q in [
        "pattern=_bus_.%3E",
        "pattern=_bus_.dead.%3E&from=oldest",
        "pattern=_inbox.%2A",
    ] {
        let mut st = s.stream(q, &[]).await;
        let sub = st.expect_subscribed().await;
        assert!(
            sub["pattern"].as_str().is_some_and(|p| p.starts_with('_')),
            "{sub}"
        );
    }
}

engines!(last_event_id_resumes_exactly_in_one_namespace);
async fn last_event_id_resumes_exactly_in_one_namespace(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    for i in 1..=5 {
        s.publish("user.a", &format!("e{i}")).await;
    }
    let mut st = s.subscribe("pattern=user.%3E&from=oldest").await;
    let seen = st.expect_events(3).await;
    assert_eq!(payloads(&seen), ["e1", "e2", "e3"]);
    let last_id = seen[2].id.clone().unwrap();
    drop(st);

    s.publish("user.a", "e6").await;
    // `Last-Event-ID` wins over `from`.
    let mut st = s
        .subscribe_with(
            "pattern=user.%3E&from=oldest",
            &[("last-event-id", &last_id)],
        )
        .await;
    assert_eq!(payloads(&st.expect_events(3).await), ["e4", "e5", "e6"]);
    s.publish("user.a", "e7").await;
    let m = st.expect_event().await;
    assert_eq!(payloads(std::slice::from_ref(&m)), ["e7"]);

    // The id of the last message resumes after it, with nothing in between.
    let last_id = m.id.unwrap();
    drop(st);
    let mut st = s
        .subscribe_with("pattern=user.%3E", &[("last-event-id", &last_id)])
        .await;
    s.publish("user.a", "e8").await;
    assert_eq!(payloads(&[st.expect_event().await]), ["e8"]);
}

engines!(last_event_id_resumes_exactly_across_namespaces);
async fn last_event_id_resumes_exactly_across_namespaces(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    for (subject, p) in [
        ("user.created", "u1"),
        ("order.created", "o1"),
        ("user.deleted", "skip"),
        ("user.created", "u2"),
        ("order.created", "o2"),
    ] {
        s.publish(subject, p).await;
    }
    let mut st = s.subscribe("pattern=%2A.created&from=oldest").await;
    let seen = st.expect_events(4).await;
    let cursor = seen[3].id.clone().unwrap();
    let mut expected = BTreeMap::new();
    expected.insert(
        "order".to_owned(),
        vec![(1, "o1".to_owned()), (2, "o2".to_owned())],
    );
    expected.insert(
        "user".to_owned(),
        vec![(1, "u1".to_owned()), (3, "u2".to_owned())],
    );
    assert_eq!(by_namespace(&jsons(&seen)), expected);
    drop(st);

    // While disconnected: more in both namespaces, and a namespace the cursor does not name
    // (read from its oldest event).
    s.publish("user.created", "u3").await;
    s.publish("order.created", "o3").await;
    s.publish("audit.created", "a1").await;
    s.publish("order.created", "o4").await;

    let mut st = s
        .subscribe_with("pattern=%2A.created", &[("last-event-id", &cursor)])
        .await;
    let rest = st.expect_events(4).await;
    let mut expected = BTreeMap::new();
    expected.insert("audit".to_owned(), vec![(1, "a1".to_owned())]);
    expected.insert(
        "order".to_owned(),
        vec![(3, "o3".to_owned()), (4, "o4".to_owned())],
    );
    expected.insert("user".to_owned(), vec![(4, "u3".to_owned())]);
    assert_eq!(by_namespace(&jsons(&rest)), expected);

    // Then live, with nothing duplicated in between.
    s.publish("user.created", "u4").await;
    let e = st.expect_event().await.json();
    assert_eq!(
        (e["subject"].as_str(), e["payload"].as_str()),
        (Some("user.created"), Some("u4"))
    );

    // The same cursor as `from` in the query resumes the same way.
    let mut st = s
        .subscribe(&format!("pattern=%2A.created&from={}", enc(&cursor)))
        .await;
    let again = st.expect_events(5).await;
    let mut expected_again = expected.clone();
    expected_again
        .get_mut("user")
        .unwrap()
        .push((5, "u4".to_owned()));
    assert_eq!(by_namespace(&jsons(&again)), expected_again);
}

engines!(heartbeat_comments_arrive_at_the_requested_interval);
async fn heartbeat_comments_arrive_at_the_requested_interval(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let mut st = s.subscribe("pattern=user.%3E&heartbeat=1s").await;
    let started = Instant::now();
    let c = st.expect_comment().await;
    assert_eq!(c.trim(), "keep-alive");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "first keep-alive after {:?}",
        started.elapsed()
    );
    // The stream still delivers afterwards.
    s.publish("user.a", "after").await;
    assert_eq!(payloads(&[st.expect_event().await]), ["after"]);
}

engines!(heartbeat_default_comes_from_the_config);
async fn heartbeat_default_comes_from_the_config(engine: Engine) {
    let s = TestServer::start_on(engine, |c| c.heartbeat = Duration::from_secs(1)).await;
    let mut st = s.subscribe("pattern=user.%3E").await;
    let c = st.expect_comment().await;
    assert_eq!(c.trim(), "keep-alive");
}

engines!(two_hundred_subscribers_each_get_every_event_in_order);
async fn two_hundred_subscribers_each_get_every_event_in_order(engine: Engine) {
    const SUBSCRIBERS: usize = 200;
    const EVENTS: usize = 50;
    let s = TestServer::start_on(engine, |c| {
        c.log.fsync = bus_broker::storage::FsyncPolicy::Never
    })
    .await;
    let mut readers = Vec::with_capacity(SUBSCRIBERS);
    for _ in 0..SUBSCRIBERS {
        readers.push(s.subscribe("pattern=user.%3E").await);
    }
    let tasks: Vec<_> = readers
        .into_iter()
        .map(|mut st| {
            tokio::spawn(async move {
                let got = st.expect_events(EVENTS).await;
                jsons(&got)
                    .iter()
                    .map(|e| {
                        (
                            e["sequence"].as_u64().unwrap(),
                            e["payload"].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for i in 1..=EVENTS {
        s.publish("user.tick", &format!("t{i}")).await;
    }
    let expected: Vec<(u64, String)> = (1..=EVENTS as u64).map(|i| (i, format!("t{i}"))).collect();
    for (n, t) in tasks.into_iter().enumerate() {
        let got = within("a subscriber to finish", t)
            .await
            .expect("reader task");
        assert_eq!(got, expected, "subscriber {n}");
    }
}

/// Opens a stream over a raw socket with a tiny receive buffer, reads until the `subscribed`
/// message, and then never reads again. Returns the socket and the subscription id.
async fn stalled_stream(s: &TestServer, query: &str) -> (tokio::net::TcpStream, String) {
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut tcp = within("connect", sock.connect(s.addr()))
        .await
        .expect("connect");
    let req = format!(
        "GET /v1/stream?{query} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
        s.addr()
    );
    within("write request", tcp.write_all(req.as_bytes()))
        .await
        .expect("write");
    // Reads until the whole `subscribed` data line (with the subscription id) has arrived.
    let subscription_id = |seen: &[u8]| -> Option<String> {
        let head = String::from_utf8_lossy(seen);
        let rest = head.split("\"subscription\":\"").nth(1)?;
        let (id, _) = rest.split_once('"')?;
        Some(id.to_owned())
    };
    let mut seen = Vec::new();
    let id = loop {
        if let Some(id) = subscription_id(&seen) {
            break id;
        }
        let mut chunk = [0u8; 256];
        let n = within("stalled stream head", tcp.read(&mut chunk))
            .await
            .expect("read");
        assert!(n > 0, "stream closed: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&chunk[..n]);
    };
    assert!(
        String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    (tcp, id)
}

engines!(stalled_subscriber_delays_neither_the_publisher_nor_other_subscribers);
async fn stalled_subscriber_delays_neither_the_publisher_nor_other_subscribers(engine: Engine) {
    // 128 events of 64 KiB: 8 MiB, far more than the socket buffers between the server and a
    // reader that never reads, so the stalled stream is blocked long before the end.
    const EVENTS: usize = 128;
    let s = TestServer::start_on(engine, |c| {
        c.log.fsync = bus_broker::storage::FsyncPolicy::Never
    })
    .await;
    let (stalled, stalled_id) = stalled_stream(&s, "pattern=user.%3E").await;
    let mut healthy = s.subscribe("pattern=user.%3E").await;
    let reader = tokio::spawn(async move {
        let mut seqs = Vec::new();
        for _ in 0..EVENTS {
            let e = healthy.expect_event().await.json();
            assert_eq!(e["payload"].as_str().map(str::len), Some(64 * 1024));
            seqs.push(e["sequence"].as_u64().unwrap());
        }
        seqs
    });
    let payload = "x".repeat(64 * 1024);
    let started = Instant::now();
    for _ in 0..EVENTS {
        // Each publish is bounded by WAIT; a publisher blocked by the stalled reader fails here.
        s.publish("user.big", &payload).await;
    }
    let publish_time = started.elapsed();
    let seqs = within("the healthy subscriber", reader)
        .await
        .expect("reader");
    assert_eq!(seqs, (1..=EVENTS as u64).collect::<Vec<_>>());
    assert!(publish_time < WAIT, "publishing took {publish_time:?}");
    // The server still answers other requests.
    // And the stalled stream really is stalled, or this test would prove nothing.
    let subs = s.get_json("/v1/subscriptions").await;
    let stalled_entry = subs
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == stalled_id.as_str())
        .unwrap_or_else(|| panic!("stalled subscription {stalled_id} not listed: {subs}"));
    assert!(
        stalled_entry["delivered"].as_u64().unwrap() < EVENTS as u64,
        "the unread stream took every event; it was not stalled: {stalled_entry}"
    );
    drop(stalled);
}

engines!(start_before_retention_reports_a_gap_then_resumes_at_the_oldest_retained);
async fn start_before_retention_reports_a_gap_then_resumes_at_the_oldest_retained(engine: Engine) {
    const EVENTS: u64 = 100;
    let s = TestServer::start_on(engine, |c| {
        c.log.fsync = bus_broker::storage::FsyncPolicy::Never;
        c.log.segment_bytes = 4096;
        c.log.retention.max_events = Some(5);
    })
    .await;
    let payload = "p".repeat(100);
    let first = s.publish("user.a", &payload).await;
    for _ in 1..EVENTS {
        s.publish("user.a", &payload).await;
    }
    // Retention runs when a segment rolls (and on a timer): wait until it has deleted the
    // first segment, observed through the namespace figures.
    let deadline = Instant::now() + WAIT;
    let oldest = loop {
        let ns = s.get_json("/v1/namespaces/user").await;
        let first_seq = ns["first_sequence"].as_u64().expect("first_sequence");
        if first_seq > 1 {
            assert_eq!(ns["last_sequence"], EVENTS, "{ns}");
            break first_seq;
        }
        assert!(Instant::now() < deadline, "retention never ran: {ns}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let from = enc(first["id"].as_str().unwrap());

    // Pull: the page reports the gap and starts at the oldest retained event.
    let page = s
        .pull(&format!("pattern=user.%3E&from={from}&limit=1000"))
        .await;
    let gaps = page["gaps"].as_array().expect("gaps");
    assert_eq!(gaps.len(), 1, "{page}");
    assert_eq!(gaps[0]["namespace"], "user", "{page}");
    assert_eq!(gaps[0]["reason"], "retention", "{page}");
    assert!(
        gaps[0].get("missed_from").is_some() && gaps[0].get("resume_at").is_some(),
        "{page}"
    );
    let seqs: Vec<u64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (oldest..=EVENTS).collect::<Vec<_>>());

    // Stream: a `gap` message, then the events from the oldest retained.
    let mut st = s.subscribe(&format!("pattern=user.%3E&from={from}")).await;
    let gap = st.next_event().await.expect("gap message");
    assert_eq!(gap.event.as_deref(), Some("gap"), "{gap:?}");
    let g = gap.json();
    assert_eq!(g["namespace"], "user", "{g}");
    assert_eq!(g["reason"], "retention", "{g}");
    assert!(
        g.get("missed_from").is_some() && g.get("resume_at").is_some(),
        "{g}"
    );
    let e = st.expect_event().await.json();
    assert_eq!(e["sequence"], oldest);

    // From the oldest: no gap, same start.
    let mut st = s.subscribe("pattern=user.%3E&from=oldest").await;
    let e = st.expect_event().await.json();
    assert_eq!(e["sequence"], oldest);
}
