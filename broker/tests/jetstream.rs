//! The JetStream engine against a real `nats-server -js`: what the shared suite's
//! `::jetstream` cases cannot see, because it is about the mapping itself (streams,
//! sequences, headers, dedup, batches) or about what differs (the 1,000-event atomic
//! batch limit, fsync refused, a server that goes away, streams bus did not create).
//!
//! Each test skips, saying why, where no `nats-server` is found, and fails under CI.

use std::time::Duration;

use async_nats::jetstream;
use bus_broker::broker::Broker;
use bus_broker::config::Config;
use bus_broker::storage::{
    FsyncPolicy, IdLookup, JetStreamOptions, JetStreamStorage, NewEvent, ReadItem, Start,
    Storage as _,
};
use bus_testkit::*;
use futures::StreamExt;
use hyper::StatusCode;
use serde_json::{Value, json};

async fn server() -> Option<TestServer> {
    if !NatsServer::available() {
        return None;
    }
    Some(TestServer::start_default_on(Engine::JetStream).await)
}

/// Publishes `e1`..`e<n>` on `subject`; their ids.
async fn publish_ids(s: &TestServer, subject: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 1..=n {
        let r = s.publish(subject, &format!("e{i}")).await;
        ids.push(r["id"].as_str().expect("an id").to_owned());
    }
    ids
}

async fn js(s: &TestServer) -> jetstream::Context {
    let client = within(
        "connect to NATS",
        async_nats::connect(s.nats_url().expect("a NATS server")),
    )
    .await
    .expect("connect to NATS");
    jetstream::new(client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_is_a_stream_and_a_sequence_the_stream_sequence() {
    let Some(s) = server().await else { return };
    s.publish("user.a", "one").await;
    let r = s
        .publish_with(
            "user.b.c",
            &[
                ("content-type", "text/plain"),
                ("bus-header-zeta", "1"),
                ("bus-header-alpha", "2"),
            ],
            "two",
        )
        .await;
    assert_eq!(r["sequence"], 2);
    let js = js(&s).await;
    let mut stream = within("get stream", js.get_stream("BUS_user"))
        .await
        .expect("the namespace's stream");
    let info = within("stream info", stream.info()).await.unwrap().clone();
    assert_eq!(info.config.subjects, ["user", "user.>"]);
    assert_eq!(info.config.metadata["bus.namespace"], "user");
    assert!(info.config.allow_direct && info.config.allow_atomic_publish);
    assert_eq!(info.state.last_sequence, 2);
    let m = within("direct get", stream.direct_get(2)).await.unwrap();
    assert_eq!(m.subject.as_str(), "user.b.c");
    assert_eq!(&m.payload[..], b"two");
    // Headers are NATS headers under their own names, their order kept beside them.
    assert_eq!(m.headers.get("zeta").map(|v| v.as_str()), Some("1"));
    assert_eq!(m.headers.get("alpha").map(|v| v.as_str()), Some("2"));
    assert_eq!(
        m.headers.get("Bus-Headers").map(|v| v.as_str()),
        Some("zeta,alpha")
    );
    let events = s.pull_all("user.>").await;
    assert_eq!(events[1]["headers"], json!({"zeta": "1", "alpha": "2"}));
}

/// The engine alone on a server of its own (the HTTP API shows headers as a JSON object,
/// whose key order says nothing).
async fn storage(nats: &NatsServer) -> JetStreamStorage {
    within(
        "connect",
        JetStreamStorage::connect(JetStreamOptions::new(vec![nats.url().to_owned()])),
    )
    .await
    .expect("JetStreamStorage::connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_come_back_in_the_order_given() {
    if !NatsServer::available() {
        return;
    }
    let nats = NatsServer::start();
    let st = storage(&nats).await;
    let log = st.namespace("user", true).await.unwrap().unwrap();
    let headers: Vec<(String, String)> =
        [("m", "1"), ("b", "2"), ("m", "3"), ("a", ""), ("z", "5")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    let e = NewEvent {
        headers: headers.clone(),
        ..NewEvent::new("user.h", "x")
    };
    within("append", log.append(vec![e])).await.unwrap();
    let mut r = log.reader(Start::Oldest).await.unwrap();
    let Some(ReadItem::Event(got)) = within("read", r.next()).await.unwrap() else {
        panic!("no event")
    };
    assert_eq!(got.headers, headers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_started_by_time_begins_at_the_first_event_at_or_after_it() {
    if !NatsServer::available() {
        return;
    }
    let nats = NatsServer::start();
    let st = storage(&nats).await;
    let log = st.namespace("user", true).await.unwrap().unwrap();
    let mut receipts = Vec::new();
    for i in 0..4 {
        let r = within(
            "append",
            log.append(vec![NewEvent::new("user.t", format!("{i}"))]),
        )
        .await
        .unwrap();
        receipts.push(r[0].clone());
    }
    for (i, r) in receipts.iter().enumerate() {
        let mut reader = log.reader(Start::Time(r.time_ns)).await.unwrap();
        let Some(ReadItem::Event(e)) = within("read", reader.next()).await.unwrap() else {
            panic!("no event")
        };
        assert_eq!(e.sequence, i as u64 + 1, "start at {}", r.time_ns);
    }
    let mut after = log
        .reader(Start::Time(receipts[3].time_ns + 1))
        .await
        .unwrap();
    assert_eq!(after.position(), 5);
    assert!(after.try_next().unwrap().is_none());
    within("close", st.close()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_dedup_id_stores_nothing_in_the_stream() {
    let Some(s) = server().await else { return };
    let h = [("content-type", "text/plain"), ("bus-msg-id", "order-7")];
    let first = s.publish_with("user.o", &h, "a").await;
    let again = s.post("/v1/events/user.o", &h, "b").await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text());
    let again = again.json();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(again["time"], first["time"]);
    let js = js(&s).await;
    let mut stream = js.get_stream("BUS_user").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 1);
    let m = stream.direct_get(1).await.unwrap();
    assert_eq!(
        m.headers.get("Nats-Msg-Id").map(|v| v.as_str()),
        Some("order-7")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_one_atomic_batch_of_at_most_a_thousand() {
    let Some(s) = server().await else { return };
    let item = json!({"subject": "user.x", "payload": "p"});
    let r = s
        .publish_batch(Value::Array(vec![item.clone(); 1001]).to_string())
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "invalid_batch");
    assert!(r.text().contains("1000"), "{}", r.text());
    assert!(
        s.pull_all("user.>").await.is_empty(),
        "a refused batch stored"
    );

    let mut batch = vec![item; 999];
    batch.push(json!({"subject": "user.last", "payload": "end", "msg_id": "b-1"}));
    let r = s.publish_batch(Value::Array(batch).to_string()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let receipts = r.json()["receipts"].as_array().unwrap().clone();
    let seqs: Vec<u64> = receipts
        .iter()
        .map(|r| r["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=1000).collect::<Vec<_>>());
    // A batch repeating a dedup id this node stored answers the original.
    let again = json!([{"subject": "user.last", "payload": "end", "msg_id": "b-1"},
                       {"subject": "user.new", "payload": "n"}]);
    let r = s.publish_batch(again.to_string()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let rs = r.json()["receipts"].clone();
    assert_eq!(rs[0]["sequence"], 1000);
    assert_eq!(rs[0]["duplicate"], true);
    assert_eq!(rs[1]["sequence"], 1001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_event_id_resumes_after_a_restart() {
    let Some(mut s) = server().await else { return };
    let ids: Vec<String> = (0..5).map(|i| format!("e{i}")).collect::<Vec<_>>();
    let mut receipts = Vec::new();
    for p in &ids {
        receipts.push(s.publish("user.r", p).await);
    }
    s.restart().await;
    let after = receipts[2]["id"].as_str().unwrap();
    let page = s
        .pull(&format!("pattern=user.%3E&from={}", enc(after)))
        .await;
    let payloads: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["payload"].as_str().unwrap())
        .collect();
    assert_eq!(payloads, ["e3", "e4"], "{page}");
    // Ids keep the stream's incarnation across restarts.
    let r = s.publish("user.r", "e5").await;
    let inc = |id: &Value| id.as_str().unwrap().rsplit('-').next().unwrap().to_owned();
    assert_eq!(inc(&r["id"]), inc(&receipts[0]["id"]));
    assert_eq!(r["sequence"], 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_bus_did_not_create_is_left_alone() {
    let Some(s) = server().await else { return };
    let js = js(&s).await;
    within(
        "create a foreign stream",
        js.create_stream(jetstream::stream::Config {
            name: "BUS_orders".into(),
            subjects: vec!["orders".into(), "orders.>".into()],
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    let r = s
        .post(
            "/v1/events/orders.new",
            &[("content-type", "text/plain")],
            "x",
        )
        .await;
    assert!(r.status.is_server_error(), "{} {}", r.status, r.text());
    let mut stream = js.get_stream("BUS_orders").await.unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(
        info.state.messages, 0,
        "bus wrote into a stream it did not create"
    );
    assert!(!info.config.metadata.contains_key("bus.namespace"));
    let names = s.get_json("/v1/namespaces").await;
    assert!(!names.to_string().contains("orders"), "{names}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_fsync_policy_is_refused_with_the_reason() {
    if !NatsServer::available() {
        return;
    }
    let nats = NatsServer::start();
    let config = Config {
        log: bus_broker::storage::LogConfig {
            fsync: FsyncPolicy::Never,
            ..Default::default()
        },
        ..Config::default()
    };
    let e = within(
        "on_jetstream",
        Broker::on_jetstream(config, JetStreamOptions::new(vec![nats.url().to_owned()])),
    )
    .await
    .expect_err("fsync accepted on JetStream");
    assert!(e.to_string().contains("sync_interval"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_server_is_a_503_storage_unavailable() {
    if !NatsServer::available() {
        return;
    }
    let nats = NatsServer::start();
    let mut options = JetStreamOptions::new(vec![nats.url().to_owned()]);
    options.request_timeout = Duration::from_millis(500);
    let broker = within(
        "on_jetstream",
        Broker::on_jetstream(Config::default(), options),
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(bus_broker::server::run(listener, broker.clone(), async {
        let _ = rx.await;
    }));
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let url = format!("http://{addr}/v1/events/user.a");
    let headers = [("content-type", "text/plain")];
    let post = |body: &'static str| send(&client, hyper::Method::POST, &url, &headers, body.into());
    assert_eq!(post("before").await.status, StatusCode::CREATED);
    drop(nats);
    let r = post("after").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "storage_unavailable");
    let _ = tx.send(());
    let _ = within("server stops", task).await;
    let _ = within("broker closes", broker.close()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_restart_in_the_kv_bucket() {
    let Some(mut s) = server().await else { return };
    s.publish("job.run", "e1").await;
    let (st, _) = s
        .attach("pattern=job.%3E&from=oldest&durable=billing&ack=manual&ack_wait=1h")
        .await;
    drop(st);
    s.restart().await;
    let r = s.get("/v1/consumers/billing").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let js = js(&s).await;
    let kv = js.get_key_value("BUS_STATE").await.unwrap();
    let keys: Vec<String> = kv
        .keys()
        .await
        .unwrap()
        .filter_map(|k| async move { k.ok() })
        .collect()
        .await;
    assert!(!keys.is_empty(), "no state in the bucket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_knows_the_dedup_ids_stored_before_a_restart() {
    let Some(mut s) = server().await else { return };
    let batch = json!([{"subject": "user.a", "payload": "1", "msg_id": "k-1"},
                       {"subject": "user.b", "payload": "2"}]);
    let r = s.publish_batch(batch.to_string()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    s.restart().await;
    let again = json!([{"subject": "user.c", "payload": "3"},
                       {"subject": "user.a", "payload": "1", "msg_id": "k-1"}]);
    let r = s.publish_batch(again.to_string()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let rs = r.json()["receipts"].clone();
    assert_eq!(rs[0]["sequence"], 3);
    assert_eq!(rs[1]["sequence"], 1, "{rs}");
    assert_eq!(rs[1]["duplicate"], true);
    assert_eq!(s.pull_all("user.>").await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_keeps_sequences_ids_times_dedup_ids_and_state() {
    if !NatsServer::available() {
        return;
    }
    use bus_broker::storage::jetstream::migrate;
    use bus_broker::storage::{DiskStorage, LogConfig, Retention, StorageOptions};
    let dir = tempfile::tempdir().unwrap();
    let mut options = StorageOptions::new(dir.path());
    options.defaults = LogConfig {
        segment_bytes: 4096,
        retention: Retention {
            max_events: Some(20),
            ..Retention::default()
        },
        ..LogConfig::default()
    };
    let (disk, _) = DiskStorage::open(options).unwrap();
    let user = disk.namespace("user", true).await.unwrap().unwrap();
    for i in 0..120 {
        let e = NewEvent {
            headers: vec![("z".into(), format!("{i}")), ("a".into(), "x".into())],
            msg_id: Some(format!("m-{i}")),
            ..NewEvent::new("user.e", vec![b'p'; 100])
        };
        user.append(vec![e]).await.unwrap();
    }
    user.apply_retention().await.unwrap();
    let rpc = disk.namespace("rpc", true).await.unwrap().unwrap();
    rpc.append(vec![
        NewEvent::new("rpc.a", "1"),
        NewEvent::new("rpc.b", "2"),
    ])
    .await
    .unwrap();
    disk.state().put("consumer/w", "pos".into()).await.unwrap();
    let first = user.stats().first_seq;
    assert!(first > 1, "retention deleted nothing");
    let mut source = Vec::new();
    let mut r = user.reader(Start::Oldest).await.unwrap();
    while let Some(ReadItem::Event(e)) = r.try_next().unwrap() {
        source.push(e);
    }
    assert_eq!(source.len() as u64, 121 - first);

    let nats = NatsServer::start();
    let js = storage(&nats).await;
    let report = within("migrate", migrate(&disk, &js, |_, _| {}))
        .await
        .unwrap();
    assert_eq!(report.state_keys, 1);
    disk.close().await.unwrap();
    js.close().await.unwrap();

    // A fresh engine, as the broker opens it after the move.
    let js = storage(&nats).await;
    assert_eq!(js.namespaces().await.unwrap(), ["rpc", "user"]);
    let moved = js.namespace("user", false).await.unwrap().unwrap();
    let mut r = moved.reader(Start::Oldest).await.unwrap();
    let mut got = Vec::new();
    while got.len() < source.len() {
        match within("read", r.next()).await.unwrap() {
            Some(ReadItem::Event(e)) => got.push(e),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        got, source,
        "events, ids, times, headers or dedup ids changed"
    );
    assert_eq!(moved.lookup_id(&source[0].id).await, IdLookup::Found(first));
    let dup = moved
        .append(vec![NewEvent {
            msg_id: Some("m-119".into()),
            ..NewEvent::new("user.e", "again")
        }])
        .await
        .unwrap();
    assert!(dup[0].duplicate && dup[0].sequence == 120, "{dup:?}");
    let next = moved
        .append(vec![NewEvent::new("user.e", "new")])
        .await
        .unwrap();
    assert_eq!(next[0].sequence, 121);
    assert_eq!(
        js.state().get("consumer/w").await.unwrap().as_deref(),
        Some(&b"pos"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_another_nats_client_stores_is_read_as_an_event() {
    let Some(s) = server().await else { return };
    s.publish("user.a", "from bus").await;
    let js = js(&s).await;
    let mut h = async_nats::HeaderMap::new();
    h.insert("Trace", "t-1");
    within(
        "publish directly",
        js.publish_with_headers("user.direct", h, "from nats".into()),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let events = s.pull_all("user.>").await;
    assert_eq!(events.len(), 2, "{events:?}");
    let e = &events[1];
    assert_eq!(e["sequence"], 2);
    assert_eq!(e["subject"], "user.direct");
    assert_eq!(e["payload"], "from nats");
    assert_eq!(e["headers"], json!({"trace": "t-1"}));
    assert_time(e["time"].as_str().unwrap());
}

/// Opening namespaces starts nothing that runs by itself: no task per namespace, so no
/// timer and no request while they sit idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_namespace_runs_no_task_of_its_own() {
    if !NatsServer::available() {
        return;
    }
    let nats = NatsServer::start();
    let storage = storage(&nats).await;
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    // One namespace first, so that whatever the connection starts on first use is counted.
    storage.namespace("warm", true).await.unwrap().unwrap();
    let before = tasks();
    const OPENED: usize = 20;
    for i in 0..OPENED {
        let log = storage
            .namespace(&format!("ns{i}"), true)
            .await
            .unwrap()
            .unwrap();
        log.append(vec![NewEvent::new(format!("ns{i}.a"), "1")])
            .await
            .unwrap();
    }
    let after = tasks();
    assert!(
        after < before + OPENED,
        "{OPENED} namespaces opened, alive tasks {before} -> {after}"
    );
}

/// A namespace nobody reads asks its server nothing, while a reader waiting at another
/// namespace's tail finds what a plain NATS client (not bus) stores there by its own polls.
/// Each find takes at least one poll, so the two finds witness that time passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_namespace_asks_nothing_while_a_reader_finds_direct_publishes() {
    if !NatsServer::available() {
        return;
    }
    let nats = NatsServer::start();
    let storage = storage(&nats).await;
    let idle = storage.namespace("idle", true).await.unwrap().unwrap();
    idle.append(vec![NewEvent::new("idle.a", "1")])
        .await
        .unwrap();
    let busy = storage.namespace("busy", true).await.unwrap().unwrap();
    let idle_log = storage.log("idle").expect("idle is open");
    let busy_log = storage.log("busy").expect("busy is open");
    let before = idle_log.info_requests();

    // Figures asked for again and again within a second cost one request at most.
    let asked = busy_log.info_requests();
    for _ in 0..5 {
        busy.refresh_stats().await;
    }
    assert!(busy_log.info_requests() - asked <= 1);

    let mut reader = within("open a reader", busy.reader(Start::Newest))
        .await
        .unwrap();
    let client = within("connect to NATS", async_nats::connect(nats.url()))
        .await
        .unwrap();
    let js = jetstream::new(client);
    let asked = busy_log.info_requests();
    for i in 1..=2u64 {
        within(
            "publish directly",
            js.publish("busy.direct", format!("{i}").into()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
        match within("the reader finds a direct publish", reader.next())
            .await
            .unwrap()
        {
            Some(ReadItem::Event(e)) => {
                assert_eq!((e.sequence, e.subject.as_str()), (i, "busy.direct"));
                assert_eq!(&e.payload[..], format!("{i}").as_bytes());
            }
            other => panic!("{other:?}"),
        }
    }
    let polls = busy_log.info_requests() - asked;
    assert!(
        (2..=4).contains(&polls),
        "two finds by polling took {polls} STREAM.INFO"
    );
    assert_eq!(
        idle_log.info_requests(),
        before,
        "the idle namespace asked for its stream's info"
    );
    assert_eq!(idle.stats().last_seq, 1);
}

/// `/metrics` and namespace info show what another NATS client stored once their cached
/// figures expire, and scrapes many times a second ask the server about once a second
/// (counted by the server's own JetStream API request total).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figures_follow_direct_publishes_at_one_stream_info_a_second() {
    let Some(s) = server().await else { return };
    s.publish("user.a", "from bus").await;
    let js = js(&s).await;
    let api_total = || async {
        within("account info", js.query_account())
            .await
            .expect("account info")
            .requests
            .total
    };
    within("publish directly", js.publish("user.direct", "x".into()))
        .await
        .unwrap()
        .await
        .unwrap();
    let before = api_total().await;
    let started = std::time::Instant::now();
    eventually("/metrics counts the direct publish", || async {
        let text = s.get("/metrics").await.text();
        metric(&text, "bus_namespace_events{namespace=\"user\"}") == Some(2.0)
    })
    .await;
    let asked = api_total().await - before;
    let secs = started.elapsed().as_secs();
    assert!(
        asked <= secs + 3,
        "{asked} JetStream API requests in {secs} s of scrapes every 20 ms"
    );
    assert_eq!(s.get_json("/v1/namespaces/user").await["events"], 2);

    // Right after a refresh, a burst of scrapes is answered from the cached figures.
    let before = api_total().await;
    for _ in 0..20 {
        s.get("/v1/namespaces").await;
    }
    let asked = api_total().await - before;
    assert!(asked <= 2, "20 listings asked the server {asked} times");
}

/// Namespace stream `name`, through a NATS client of its own.
async fn stream_of(s: &TestServer, name: &str) -> jetstream::stream::Stream {
    js(s)
        .await
        .get_stream(name)
        .await
        .expect("the namespace's stream")
}

/// Sequence and delivery count of each delivery.
fn deliveries(msgs: &[SseMessage]) -> Vec<(u64, u64)> {
    msgs.iter()
        .map(|m| {
            let v = m.json();
            (
                v["sequence"].as_u64().expect("sequence"),
                v["delivery_count"].as_u64().expect("delivery_count"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_of_one_namespace_is_a_jetstream_durable_consumer_with_its_settings() {
    let Some(s) = server().await else {
        return;
    };
    let ids = publish_ids(&s, "job.run", 3).await;
    let (mut st, _) = s
        .attach("pattern=job.%3E&from=oldest&durable=w&ack=manual&ack_wait=45s&max_deliver=4&max_in_flight=7")
        .await;
    assert_eq!(
        deliveries(&st.expect_events(3).await),
        [(1, 1), (2, 1), (3, 1)]
    );
    let stream = stream_of(&s, "BUS_job").await;
    let info = stream
        .consumer_info("w")
        .await
        .expect("a JetStream consumer named w");
    let c = &info.config;
    assert_eq!(c.durable_name.as_deref(), Some("w"));
    assert_eq!(c.filter_subject, "job.>");
    assert_eq!(c.ack_wait, Duration::from_secs(45));
    assert_eq!(c.max_ack_pending, 7);
    // Unlimited on the server (which would drop an event at its limit): bus turns the
    // delivery past its own max_deliver into the dead letter.
    assert_eq!(c.max_deliver, -1);
    assert_eq!(info.num_ack_pending, 3, "{info:?}");

    s.expect_ack("w", &ids[0], "ack", "acked").await;
    s.expect_ack("w", &ids[1], "ack", "acked").await;
    let info = stream.consumer_info("w").await.expect("consumer info");
    assert_eq!(info.ack_floor.stream_sequence, 2, "{info:?}");
    assert_eq!(info.num_ack_pending, 1, "{info:?}");
    let listed = s.consumer("w").await;
    assert_eq!(listed["pending"], 1, "{listed}");
    assert_eq!(listed["positions"]["job"], 4, "{listed}");

    // A pattern spanning namespaces stays on bus's own engine: no JetStream consumer.
    let (wide, _) = s.attach("pattern=*.run&durable=wide&ack=manual").await;
    assert!(
        stream.consumer_info("wide").await.is_err(),
        "a JetStream consumer for *.run"
    );
    drop(wide);

    drop(st);
    let r = s.delete("/v1/consumers/w").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(
        stream.consumer_info("w").await.is_err(),
        "the JetStream consumer outlived its deletion"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_made_before_its_namespace_gets_its_jetstream_consumer_with_the_first_event() {
    let Some(s) = server().await else {
        return;
    };
    let (mut st, _) = s
        .attach("pattern=order.%3E&durable=o&ack=manual&ack_wait=1h")
        .await;
    let id = s.publish("order.placed", "first").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(deliveries(&st.expect_events(1).await), [(1, 1)]);
    let stream = stream_of(&s, "BUS_order").await;
    let info = stream
        .consumer_info("o")
        .await
        .expect("a JetStream consumer named o");
    assert_eq!(info.num_ack_pending, 1, "{info:?}");
    s.expect_ack("o", &id, "ack", "acked").await;
    s.expect_ack("o", &id, "ack", "already_acked").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_reaches_jetstream_whichever_broker_delivered_the_event() {
    let Some(mut s) = server().await else {
        return;
    };
    let ids = publish_ids(&s, "job.run", 3).await;
    let q = "pattern=job.%3E&from=oldest&durable=w&ack=manual&ack_wait=2s";
    let (mut st, _) = s.attach(q).await;
    assert_eq!(
        deliveries(&st.expect_events(3).await),
        [(1, 1), (2, 1), (3, 1)]
    );
    drop(st);
    // A new broker process on the same NATS server: it made none of these deliveries and
    // keeps nothing of the old one's.
    s.restart().await;
    s.expect_ack("w", &ids[1], "ack", "acked").await;
    let stream = stream_of(&s, "BUS_job").await;
    let info = stream.consumer_info("w").await.expect("consumer info");
    assert_eq!(info.num_ack_pending, 2, "{info:?}");
    // What was not acked comes back, counted by the server across both brokers (in the
    // order the server redelivers them: the old broker's shutdown gave them back, or
    // their ack wait ran out).
    // Each sequence's first delivery on the new broker is what is counted: when one comes
    // back at once and the other only once its ack wait runs out, the first may meanwhile
    // run out its own new ack wait and come a third time, which is the server's right.
    let (mut st, _) = s.attach(q).await;
    let mut back: Vec<(u64, u64)> = Vec::new();
    for _ in 0..4 {
        if back.len() == 2 {
            break;
        }
        for (seq, count) in deliveries(&st.expect_events(1).await) {
            if !back.iter().any(|(s, _)| *s == seq) {
                back.push((seq, count));
            }
        }
    }
    back.sort_unstable();
    assert_eq!(back, [(1, 2), (3, 2)]);
    s.expect_ack("w", &ids[1], "ack", "already_acked").await;
    s.expect_ack("w", &ids[0], "ack", "acked").await;
    s.expect_ack("w", &ids[2], "ack", "acked").await;
    let info = stream.consumer_info("w").await.expect("consumer info");
    assert_eq!(info.ack_floor.stream_sequence, 3, "{info:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delivery_past_max_deliver_becomes_the_dead_letter_and_ends_the_jetstream_delivery() {
    let Some(s) = server().await else { return };
    let id = s.publish("job.run", "doomed").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut dead = s.subscribe("pattern=_bus_.dead.%3E&from=oldest").await;
    let (mut st, _) = s
        .attach("pattern=job.%3E&from=oldest&durable=w&ack=manual&ack_wait=100ms&max_deliver=2")
        .await;
    // The server redelivers after each ack wait; the third delivery never reaches a member.
    assert_eq!(deliveries(&st.expect_events(2).await), [(1, 1), (1, 2)]);
    let d = dead.expect_event().await.json();
    assert_eq!(d["subject"], "_bus_.dead.job.run", "{d}");
    assert_eq!(d["headers"]["bus-original-id"], id.as_str(), "{d}");
    assert_eq!(d["headers"]["bus-delivery-count"], "2", "{d}");
    assert_eq!(d["headers"]["bus-reason"], "max_deliver", "{d}");
    let js = js(&s).await;
    eventually("JetStream ends the delivery after its dead letter", || {
        let js = js.clone();
        async move {
            let stream = js
                .get_stream("BUS_job")
                .await
                .expect("the namespace's stream");
            let info = stream.consumer_info("w").await.expect("consumer info");
            info.num_ack_pending == 0 && info.ack_floor.stream_sequence == 1
        }
    })
    .await;
    s.expect_ack("w", &id, "ack", "already_acked").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_brokers_on_one_server_share_a_durable_each_event_going_to_one() {
    const EVENTS: usize = 20;
    let Some(s) = server().await else { return };
    for i in 0..EVENTS {
        s.publish("job.run", &format!("e{i}")).await;
    }
    let created = s
        .attach("pattern=job.%3E&from=oldest&durable=w&ack=manual&ack_wait=1h&max_in_flight=100")
        .await;
    drop(created);
    eventually("the creating member left", || async {
        s.consumer("w").await["members"] == 0
    })
    .await;
    // One member on each broker, each capped at half the events (what the creating
    // member took comes back to them as redeliveries).
    let q = "pattern=job.%3E&durable=w&ack=manual&max_in_flight=10";
    let (a, _) = s.attach(q).await;
    // A second broker on the same NATS server, started after the consumer exists: it
    // reads the consumer's record from the KV bucket and attaches to the same JetStream
    // consumer.
    let second = within(
        "a second broker",
        Broker::on_jetstream(
            Config::default(),
            JetStreamOptions::new(vec![s.nats_url().expect("NATS").to_owned()]),
        ),
    )
    .await
    .expect("a second broker");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(bus_broker::server::run(listener, second, async move {
        let _ = stopped.await;
    }));
    let mut b = sse(
        &http1_client(),
        &format!("http://{addr}/v1/stream?{q}"),
        &[],
    )
    .await;
    b.expect_subscribed().await;
    // Each member reads on its own task; the test takes what they report until every
    // event was seen.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let readers: Vec<_> = [('a', a), ('b', b)]
        .into_iter()
        .map(|(who, mut st)| {
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(m) = st.next_event().await {
                    if tx.send((who, m.json())).is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    let mut seen: Vec<(char, u64)> = Vec::new();
    within("both members drain the namespace", async {
        while seen.len() < EVENTS {
            let (who, v) = rx.recv().await.expect("a delivery");
            seen.push((who, v["sequence"].as_u64().expect("sequence")));
        }
    })
    .await;
    for r in readers {
        r.abort();
    }
    let mut seqs: Vec<u64> = seen.iter().map(|(_, s)| *s).collect();
    seqs.sort_unstable();
    let want: Vec<u64> = (1..=EVENTS as u64).collect();
    assert_eq!(seqs, want, "each event once, across both brokers: {seen:?}");
    let on_b = seen.iter().filter(|(who, _)| *who == 'b').count();
    assert_eq!(
        on_b,
        EVENTS / 2,
        "each broker's member takes its cap: {seen:?}"
    );
    let stream = stream_of(&s, "BUS_job").await;
    let info = stream.consumer_info("w").await.expect("consumer info");
    assert_eq!(info.num_ack_pending, EVENTS, "{info:?}");
    let _ = stop.send(());
    let _ = within("the second broker stops", task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_jetstream_consumers_off_a_durable_keeps_its_state_in_the_kv_bucket() {
    if !NatsServer::available() {
        return;
    }
    let s = TestServer::start_on(Engine::JetStream, |c| c.jetstream_consumers = false).await;
    let ids = publish_ids(&s, "job.run", 2).await;
    let (mut st, _) = s
        .attach("pattern=job.%3E&from=oldest&durable=w&ack=manual&ack_wait=1h")
        .await;
    assert_eq!(deliveries(&st.expect_events(2).await), [(1, 1), (2, 1)]);
    s.expect_ack("w", &ids[0], "ack", "acked").await;
    let stream = stream_of(&s, "BUS_job").await;
    assert!(
        stream.consumer_info("w").await.is_err(),
        "a JetStream consumer with --jetstream-consumers false"
    );
    assert_eq!(s.consumer("w").await["positions"]["job"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_at_its_cap_gets_its_timed_out_delivery_again() {
    let Some(s) = server().await else { return };
    publish_ids(&s, "job.run", 1).await;
    let (created, _) = s
        .attach("pattern=job.%3E&from=oldest&durable=w&ack=manual&ack_wait=300ms")
        .await;
    drop(created);
    eventually("the creating member left", || async {
        s.consumer("w").await["members"] == 0
    })
    .await;
    // Capped at one delivery, which it never acks: once its ack wait runs out the member
    // has room again, and the server's redelivery reaches it.
    let (mut st, _) = s
        .attach("pattern=job.%3E&durable=w&ack=manual&max_in_flight=1")
        .await;
    let first = deliveries(&st.expect_events(1).await)[0];
    assert_eq!(first.0, 1);
    let again = deliveries(&st.expect_events(1).await)[0];
    assert_eq!(again, (1, first.1 + 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jetstream_consumer_left_with_another_filter_is_replaced_by_the_new_durable() {
    let Some(s) = server().await else { return };
    publish_ids(&s, "job.run", 2).await;
    // A consumer of that name with another filter (left behind, or made by hand).
    let stream = stream_of(&s, "BUS_job").await;
    stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("w".into()),
            filter_subject: "job.other".into(),
            ..Default::default()
        })
        .await
        .expect("a hand-made consumer");
    let (mut st, _) = s
        .attach("pattern=job.%3E&from=oldest&durable=w&ack=manual&ack_wait=1h")
        .await;
    assert_eq!(deliveries(&st.expect_events(2).await), [(1, 1), (2, 1)]);
    let info = stream.consumer_info("w").await.expect("consumer info");
    assert_eq!(info.config.filter_subject, "job.>", "{info:?}");
    assert_eq!(
        info.config.ack_policy,
        jetstream::consumer::AckPolicy::Explicit
    );
}
