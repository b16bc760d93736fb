//! Limits and exactness found in review: NDJSON batches over the item limit, batch JSON
//! payloads kept as their exact text, selective patterns over busy namespaces, and cursors
//! of subscriptions that have read nothing yet.

use bus_testkit::*;
use hyper::StatusCode;
use serde_json::Value;

// Local only: the item limit tested (10,000) is over JetStream's atomic batch limit of
// 1,000, which jetstream.rs tests.
engines!(local: an_ndjson_batch_over_the_item_limit_is_refused_whole);
async fn an_ndjson_batch_over_the_item_limit_is_refused_whole(engine: Engine) {
    let s = TestServer::start_on(engine, |c| {
        c.log.fsync = bus_broker::storage::FsyncPolicy::Never
    })
    .await;
    let line = "{\"subject\":\"user.x\",\"payload\":\"p\"}\n";
    let r = s.publish_batch(line.repeat(10_001)).await;
    r.assert_error(StatusCode::BAD_REQUEST, "invalid_batch");
    assert!(
        s.broker().namespace("user").is_none(),
        "something was stored"
    );
    let r = s.publish_batch(line.repeat(10_000)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
}

engines!(a_batch_json_payload_is_stored_as_its_exact_text);
async fn a_batch_json_payload_is_stored_as_its_exact_text(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let body = r#"[{"subject":"user.a","payload":{"b":1,"a":12345678901234567890123,"c":1e2}},
                   {"subject":"user.b","payload":"text"},
                   {"subject":"user.c","payload":"aGk=","encoding":"base64"}]"#;
    let r = s.publish_batch(body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let page = s.pull("pattern=user.%3E&from=oldest").await;
    let events = page["events"].as_array().unwrap();
    // The pull response embeds the stored JSON verbatim: check the raw text.
    let raw = s
        .get("/v1/events?pattern=user.%3E&from=oldest")
        .await
        .text();
    assert!(
        raw.contains(r#""payload":{"b":1,"a":12345678901234567890123,"c":1e2}"#),
        "{raw}"
    );
    assert_eq!(events[1]["payload"], "text");
    assert_eq!(events[2]["payload"], "hi");
}

engines!(a_selective_pull_over_a_busy_namespace_returns_and_moves_on);
async fn a_selective_pull_over_a_busy_namespace_returns_and_moves_on(engine: Engine) {
    let s = TestServer::start_on(engine, |c| {
        c.log.fsync = bus_broker::storage::FsyncPolicy::Never
    })
    .await;
    // Three batches of 1,000: JetStream's atomic batch limit.
    for k in 0..3 {
        let batch: Vec<Value> = (k * 1000..(k + 1) * 1000)
            .map(|i| serde_json::json!({"subject": "user.noise", "payload": i}))
            .collect();
        assert_eq!(
            s.publish_batch(Value::Array(batch).to_string())
                .await
                .status,
            StatusCode::CREATED
        );
    }
    s.publish("user.wanted", "yes").await;
    // Each page passes over at most a budget of records, so it comes back at once, with a
    // cursor that has moved; following the cursors reaches the one matching event.
    let mut from = "oldest".to_string();
    let mut found = Vec::new();
    for _ in 0..10 {
        let page = s.pull(&format!("pattern=user.wanted&from={from}")).await;
        found.extend(
            page["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["payload"].clone()),
        );
        let next = page["cursor"].as_str().unwrap().to_string();
        if !found.is_empty() {
            break;
        }
        assert_ne!(next, from, "cursor did not move");
        from = next;
    }
    assert_eq!(found, [Value::from("yes")]);
}

engines!(an_empty_page_before_any_namespace_exists_misses_nothing_published_later);
async fn an_empty_page_before_any_namespace_exists_misses_nothing_published_later(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let page = s.pull("pattern=user.%3E&from=newest").await;
    let cursor = page["cursor"].as_str().unwrap().to_string();
    assert!(page["events"].as_array().unwrap().is_empty());
    s.publish("user.a", "first").await;
    let page = s.pull(&format!("pattern=user.%3E&from={cursor}")).await;
    let got: Vec<_> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["payload"].clone())
        .collect();
    assert_eq!(got, [Value::from("first")]);
}

engines!(creating_a_namespace_past_the_limit_is_refused);
async fn creating_a_namespace_past_the_limit_is_refused(engine: Engine) {
    let s = TestServer::start_on(engine, |c| c.max_namespaces = 2).await;
    s.publish("a.x", "1").await;
    s.publish("b.x", "1").await;
    let r = s.post("/v1/events/c.x", &[], "1").await;
    let msg = r.assert_error(StatusCode::FORBIDDEN, "namespace_limit");
    assert!(msg.contains("limit of 2"), "{msg}");
    // Existing namespaces still take events.
    s.publish("a.y", "2").await;
    assert!(s.broker().namespace("c").is_none());
}
