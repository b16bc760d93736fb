//! End to end: the management endpoints (`/healthz`, `/v1/namespaces`, `/v1/subscriptions`,
//! `/metrics`), CORS, and HTTP/2 prior knowledge (h2c).

use std::time::{Duration, Instant};

use bus_testkit::{
    Engine, TestServer, WAIT, assert_time, engines, eventually, h2c_client, metric, send, sse,
};
use bytes::Bytes;
use hyper::{Method, StatusCode, Version};
use serde_json::{Value, json};

engines!(healthz_answers_ok);
async fn healthz_answers_ok(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let r = s.get("/healthz").await;
    assert_eq!(r.status, StatusCode::OK);
    // The body also lists namespaces and the state log (see http-api.md, Health).
    assert_eq!(r.json()["status"], json!("ok"), "{}", r.text());
}

fn find<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .expect("namespace list is an array")
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("namespace {name} not in {list}"))
}

// disk only: reports segment files (the memory engine has none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_report_events_bytes_sequences_and_subscribers() {
    let s = TestServer::start_default().await;
    for i in 0..3 {
        s.publish("user.a", &format!("payload-{i}")).await;
    }
    s.publish("order.a", "o").await;
    let _user_stream = s.subscribe("pattern=user.%3E").await;
    let _both = s.subscribe("pattern=%3E").await;

    let list = s.get_json("/v1/namespaces").await;
    let user = find(&list, "user");
    assert_eq!(user["events"], 3, "{user}");
    assert!(user["bytes"].as_u64().is_some_and(|b| b >= 3 * 9), "{user}");
    assert_eq!(user["first_sequence"], 1, "{user}");
    assert_eq!(user["last_sequence"], 3, "{user}");
    assert!(user["segments"].as_u64().is_some_and(|n| n >= 1), "{user}");
    assert_eq!(user["subscribers"], 2, "{user}");
    assert_eq!(user["fsync"], "always", "{user}");
    assert_eq!(user["read_only"], Value::Null, "{user}");
    assert!(
        user.get("read_only").is_some(),
        "read_only is present as null: {user}"
    );

    let order = find(&list, "order");
    assert_eq!(order["events"], 1, "{order}");
    assert_eq!(order["last_sequence"], 1, "{order}");
    assert_eq!(order["subscribers"], 1, "{order}");

    let one = s.get_json("/v1/namespaces/user").await;
    assert!(one.is_object(), "{one}");
    for k in [
        "name",
        "events",
        "bytes",
        "first_sequence",
        "last_sequence",
        "subscribers",
        "fsync",
    ] {
        assert_eq!(one[k], user[k], "field {k}");
    }
}

// Local only: JetStream refuses an fsync policy (durability is the server's sync_interval).
engines!(local: namespace_fsync_shows_the_configured_policy);
async fn namespace_fsync_shows_the_configured_policy(engine: Engine) {
    let s = TestServer::start_on(engine, |c| {
        c.log.fsync = bus_broker::storage::FsyncPolicy::Never
    })
    .await;
    s.publish("user.a", "x").await;
    let one = s.get_json("/v1/namespaces/user").await;
    assert_eq!(one["fsync"], "never", "{one}");
}

engines!(subscriptions_list_a_live_stream_until_it_closes);
async fn subscriptions_list_a_live_stream_until_it_closes(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let mut st = s.stream("pattern=user.%3E&heartbeat=1s", &[]).await;
    let sub = st.expect_subscribed().await;
    let id = sub["subscription"]
        .as_str()
        .expect("subscription id")
        .to_owned();

    let list = s.get_json("/v1/subscriptions").await;
    let entry = list
        .as_array()
        .expect("subscriptions is an array")
        .iter()
        .find(|e| e["id"] == id.as_str())
        .unwrap_or_else(|| panic!("subscription {id} not in {list}"))
        .clone();
    assert_eq!(entry["pattern"], "user.>");
    assert_eq!(entry["kind"], "stream");
    assert_time(entry["started"].as_str().expect("started"));
    assert!(entry["delivered"].is_u64(), "{entry}");

    // `delivered` counts what the stream sent (observed by polling, bounded by WAIT).
    s.publish("user.a", "1").await;
    s.publish("user.a", "2").await;
    st.expect_events(2).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let list = s.get_json("/v1/subscriptions").await;
        let delivered = list
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id.as_str())
            .map(|e| e["delivered"].as_u64().unwrap_or(0));
        if delivered == Some(2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "delivered never reached 2: {list}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Once the client goes away the subscription is removed (the 1 s heartbeat lets the server
    // notice); waited for by polling, bounded by WAIT.
    drop(st);
    let deadline = Instant::now() + WAIT;
    loop {
        let list = s.get_json("/v1/subscriptions").await;
        if !list
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == id.as_str())
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "subscription still listed: {list}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

engines!(metrics_count_published_events_per_namespace);
async fn metrics_count_published_events_per_namespace(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    for _ in 0..3 {
        s.publish("user.a", "abcd").await;
    }
    s.publish("order.a", "x").await;
    let r = s.get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    let ct = r.header("content-type").unwrap_or("");
    assert!(ct.starts_with("text/plain"), "content-type {ct:?}");
    let text = r.text();
    assert_eq!(
        metric(&text, r#"bus_events_published_total{namespace="user"}"#),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, r#"bus_events_published_total{namespace="order"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, r#"bus_bytes_published_total{namespace="user"}"#),
        Some(12.0),
        "payload bytes: {text}"
    );
    assert!(
        text.contains("# TYPE bus_events_published_total counter"),
        "{text}"
    );
}

engines!(metrics_gauge_counts_open_subscriptions);
async fn metrics_gauge_counts_open_subscriptions(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let _a = s.subscribe("pattern=user.%3E").await;
    let _b = s.subscribe("pattern=%3E").await;
    let text = s.get("/metrics").await.text();
    assert_eq!(metric(&text, "bus_subscriptions"), Some(2.0), "{text}");
}

engines!(cors_allows_a_configured_origin);
async fn cors_allows_a_configured_origin(engine: Engine) {
    let s = TestServer::start_on(engine, |c| {
        c.cors_origins = vec!["https://app.example".into()]
    })
    .await;
    let r = s
        .get_with("/healthz", &[("origin", "https://app.example")])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let r = s
        .get_with("/healthz", &[("origin", "https://evil.example")])
        .await;
    assert!(
        r.header("access-control-allow-origin")
            .is_none_or(|o| o != "https://evil.example" && o != "*"),
        "another origin is not allowed: {:?}",
        r.headers
    );

    // The event stream, the one browsers read, carries it too.
    let mut st = s
        .stream("pattern=user.%3E", &[("origin", "https://app.example")])
        .await;
    assert_eq!(
        st.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    st.expect_subscribed().await;
}

engines!(cors_stands_in_front_of_the_checks);
async fn cors_stands_in_front_of_the_checks(engine: Engine) {
    let s = TestServer::start_on(engine, |c| {
        c.cors_origins = vec!["https://app.example".into()]
    })
    .await;
    // A preflight is answered by CORS itself: no route takes OPTIONS.
    let r = s
        .request(
            Method::OPTIONS,
            "/v1/events/user.created",
            &[
                ("origin", "https://app.example"),
                ("access-control-request-method", "POST"),
            ],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(
        r.header("access-control-allow-methods")
            .is_some_and(|m| m.contains("POST")),
        "{:?}",
        r.headers
    );
    // A refusal by a check carries the CORS headers, so that the page can read its error.
    let long = format!("/healthz?x={}", "a".repeat(33 * 1024));
    let r = s
        .get_with(&long, &[("origin", "https://app.example")])
        .await;
    r.assert_error(StatusCode::URI_TOO_LONG, "uri_too_long");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
}

engines!(no_cors_headers_without_configured_origins);
async fn no_cors_headers_without_configured_origins(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let r = s
        .get_with("/healthz", &[("origin", "https://app.example")])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.header("access-control-allow-origin").is_none(),
        "{:?}",
        r.headers
    );
}

engines!(http2_prior_knowledge_serves_publish_pull_and_stream);
async fn http2_prior_knowledge_serves_publish_pull_and_stream(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let h2 = h2c_client();
    let r = send(&h2, Method::GET, &s.url("/healthz"), &[], Bytes::new()).await;
    assert_eq!(r.version, Version::HTTP_2);
    assert_eq!(r.status, StatusCode::OK);

    let mut st = sse(&h2, &s.url("/v1/stream?pattern=user.%3E"), &[]).await;
    assert_eq!(st.version, Version::HTTP_2);
    st.expect_subscribed().await;

    let r = send(
        &h2,
        Method::POST,
        &s.url("/v1/events/user.created"),
        &[("content-type", "application/json")],
        Bytes::from_static(br#"{"name":"ada"}"#),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.version, Version::HTTP_2);

    let e = st.expect_event().await.json();
    assert_eq!(e["payload"], json!({"name": "ada"}));

    let r = send(
        &h2,
        Method::GET,
        &s.url("/v1/events?pattern=user.%3E&from=oldest"),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["events"][0]["payload"], json!({"name": "ada"}));
}

engines!(metrics_count_acks_nacks_redeliveries_and_dead_letters);
async fn metrics_count_acks_nacks_redeliveries_and_dead_letters(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let (mut st, _) = s
        .attach("pattern=job.%3E&from=oldest&durable=m&ack=manual&max_deliver=2")
        .await;
    let a = s.publish("job.a", "a").await;
    let b = s.publish("job.b", "b").await;
    let c = s.publish("job.c", "c").await;
    let id = |v: &Value| v["id"].as_str().expect("id").to_owned();
    st.expect_events(3).await;
    s.expect_ack("m", &id(&a), "ack", "acked").await;
    s.expect_ack("m", &id(&b), "nack", "nacked").await;
    // The nacked event comes back at once: one redelivery.
    let again = st.expect_event().await.json();
    assert_eq!(
        (again["id"].as_str(), again["delivery_count"].as_u64()),
        (Some(id(&b).as_str()), Some(2))
    );
    s.expect_ack("m", &id(&c), "term", "terminated").await;
    let mut dead = s.subscribe("pattern=_bus_.dead.%3E&from=oldest").await;
    let letter = dead.expect_event().await.json();
    assert_eq!(letter["headers"]["bus-original-id"], id(&c));
    let text = s.get("/metrics").await.text();
    assert_eq!(metric(&text, "bus_acks_total"), Some(1.0), "{text}");
    assert_eq!(metric(&text, "bus_nacks_total"), Some(1.0));
    assert_eq!(metric(&text, "bus_redeliveries_total"), Some(1.0));
    // Counted just after the dead letter is stored, so possibly after a reader saw it.
    eventually("the dead letter is counted", || async {
        let text = s.get("/metrics").await.text();
        metric(&text, "bus_dead_letters_total") == Some(1.0)
    })
    .await;
}

engines!(metrics_show_the_live_path_and_the_process);
async fn metrics_show_the_live_path_and_the_process(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    s.publish("user.a", "1").await;
    let mut live = s.subscribe("pattern=user.%3E&from=newest").await;
    let _behind = s.subscribe("pattern=order.%3E&from=oldest").await;
    s.publish("user.a", "2").await;
    live.expect_event().await;
    let m = s.get("/metrics").await.text();
    let info = format!(
        "bus_info{{version=\"{}\",fsync=\"always\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(metric(&m, &info), Some(1.0), "{m}");
    assert_eq!(metric(&m, "bus_trie_subscriptions"), Some(2.0), "{m}");
    assert!(
        metric(&m, "bus_trie_nodes").is_some_and(|n| n >= 2.0),
        "{m}"
    );
    assert_eq!(metric(&m, "bus_live_routers"), Some(1.0), "{m}");
    assert!(
        metric(&m, "bus_live_routed_total").is_some_and(|n| n >= 1.0),
        "{m}"
    );
    assert!(
        metric(&m, "bus_live_joins_total").is_some_and(|n| n >= 1.0),
        "{m}"
    );
    assert_eq!(metric(&m, "bus_live_fallbacks_total"), Some(0.0), "{m}");
    assert_eq!(
        metric(&m, "bus_subscription_readers{state=\"live\"}")
            .zip(metric(
                &m,
                "bus_subscription_readers{state=\"catching_up\"}"
            ))
            .map(|(a, b)| a + b),
        Some(2.0),
        "{m}"
    );
    if cfg!(target_os = "linux") {
        assert!(
            metric(&m, "process_cpu_seconds_total").is_some_and(|v| v > 0.0),
            "{m}"
        );
        assert!(
            metric(&m, "process_resident_memory_bytes").is_some_and(|v| v > 1e6),
            "{m}"
        );
    }
    let subs = s.get_json("/v1/subscriptions").await;
    let user = subs
        .as_array()
        .and_then(|a| a.iter().find(|x| x["pattern"] == "user.>").cloned())
        .expect("listed");
    assert_eq!(user["state"], "live", "{subs}");
}
