//! End to end: `GET /v1/events` (pull pages): cursors continue exactly, an empty page's
//! cursor stays valid, `wait` returns as soon as an event is published.

use std::time::{Duration, Instant};

use bus_testkit::{Engine, TestServer, WAIT, enc, engines, texts, within};
use serde_json::{Value, json};

fn cursor(page: &Value) -> String {
    page["cursor"].as_str().expect("cursor").to_owned()
}

fn page_texts(page: &Value) -> Vec<String> {
    texts(page["events"].as_array().expect("events"))
}

engines!(pull_pages_continue_exactly_from_each_cursor);
async fn pull_pages_continue_exactly_from_each_cursor(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    for i in 1..=25 {
        s.publish("user.a", &format!("e{i}")).await;
    }
    let mut from = "oldest".to_owned();
    let mut all = Vec::new();
    for expected_len in [10, 10, 5] {
        let page = s
            .pull(&format!("pattern=user.%3E&from={}&limit=10", enc(&from)))
            .await;
        assert_eq!(page["gaps"], json!([]), "{page}");
        let got = page_texts(&page);
        assert_eq!(got.len(), expected_len, "{page}");
        all.extend(got);
        from = cursor(&page);
    }
    let expected: Vec<String> = (1..=25).map(|i| format!("e{i}")).collect();
    assert_eq!(all, expected);

    // At the end: an empty page whose cursor still continues exactly.
    let empty = s
        .pull(&format!("pattern=user.%3E&from={}&limit=10", enc(&from)))
        .await;
    assert_eq!(empty["events"], json!([]));
    let at_end = cursor(&empty);
    s.publish("user.a", "e26").await;
    let page = s
        .pull(&format!("pattern=user.%3E&from={}", enc(&at_end)))
        .await;
    assert_eq!(page_texts(&page), ["e26"]);
    // The old cursor is still valid too, and reads the same.
    let page = s
        .pull(&format!("pattern=user.%3E&from={}", enc(&from)))
        .await;
    assert_eq!(page_texts(&page), ["e26"]);
}

engines!(pull_defaults_to_newest_and_its_empty_page_cursor_sees_later_events);
async fn pull_defaults_to_newest_and_its_empty_page_cursor_sees_later_events(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    s.publish("user.a", "before").await;
    let page = s.pull("pattern=user.%3E").await;
    assert_eq!(page["events"], json!([]), "newest is the default: {page}");
    let c = cursor(&page);
    s.publish("user.a", "after-1").await;
    s.publish("user.a", "after-2").await;
    let page = s.pull(&format!("pattern=user.%3E&from={}", enc(&c))).await;
    assert_eq!(page_texts(&page), ["after-1", "after-2"]);
}

engines!(pull_limit_caps_the_page);
async fn pull_limit_caps_the_page(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    for i in 1..=5 {
        s.publish("user.a", &format!("e{i}")).await;
    }
    let page = s.pull("pattern=user.%3E&from=oldest&limit=1").await;
    assert_eq!(page_texts(&page), ["e1"]);
    let page = s.pull("pattern=user.%3E&from=oldest").await;
    assert_eq!(page_texts(&page).len(), 5, "default limit is 100");
}

engines!(pull_cursor_continues_exactly_across_namespaces);
async fn pull_cursor_continues_exactly_across_namespaces(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    for (subject, p) in [
        ("user.created", "u1"),
        ("order.created", "o1"),
        ("user.created", "u2"),
        ("order.created", "o2"),
        ("order.created", "o3"),
    ] {
        s.publish(subject, p).await;
    }
    let mut seen = Vec::new();
    let mut from = "oldest".to_owned();
    loop {
        let page = s
            .pull(&format!("pattern=%3E&from={}&limit=2", enc(&from)))
            .await;
        let events = page["events"].as_array().unwrap().clone();
        assert!(events.len() <= 2);
        from = cursor(&page);
        if events.is_empty() {
            break;
        }
        seen.extend(events);
        assert!(seen.len() <= 5, "more events than published: {seen:?}");
    }
    let mut user = Vec::new();
    let mut order = Vec::new();
    for e in &seen {
        match e["namespace"].as_str().unwrap() {
            "user" => user.push(e["payload"].as_str().unwrap().to_owned()),
            "order" => order.push(e["payload"].as_str().unwrap().to_owned()),
            other => panic!("unexpected namespace {other}"),
        }
    }
    assert_eq!(user, ["u1", "u2"]);
    assert_eq!(order, ["o1", "o2", "o3"]);

    // The final cursor names both namespaces' positions; a new namespace is read from oldest.
    s.publish("order.created", "o4").await;
    s.publish("audit.created", "a1").await;
    let page = s.pull(&format!("pattern=%3E&from={}", enc(&from))).await;
    let mut got = page_texts(&page);
    got.sort();
    assert_eq!(got, ["a1", "o4"]);
}

engines!(pull_with_wait_returns_when_an_event_is_published);
async fn pull_with_wait_returns_when_an_event_is_published(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    s.publish("user.a", "before").await;
    let c = cursor(&s.pull("pattern=user.%3E").await);
    let client = s.client.clone();
    let url = s.url(&format!(
        "/v1/events?pattern=user.%3E&from={}&wait=10s",
        enc(&c)
    ));
    let started = Instant::now();
    let waiting = tokio::spawn(async move {
        bus_testkit::send(&client, hyper::Method::GET, &url, &[], bytes::Bytes::new()).await
    });
    // The result does not depend on this pause (the cursor predates the publish either way);
    // it only makes it likely that the pull is already waiting when the event arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.publish("user.a", "wake").await;
    let r = within("the waiting pull", waiting)
        .await
        .expect("pull task");
    let took = started.elapsed();
    assert_eq!(r.status, hyper::StatusCode::OK, "{}", r.text());
    assert_eq!(page_texts(&r.json()), ["wake"]);
    assert!(took < Duration::from_secs(5), "wait=10s pull took {took:?}");
}

engines!(pull_with_wait_and_no_event_returns_an_empty_page_after_the_wait);
async fn pull_with_wait_and_no_event_returns_an_empty_page_after_the_wait(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    s.publish("user.a", "before").await;
    let started = Instant::now();
    let page = s.pull("pattern=user.%3E&wait=300ms").await;
    let took = started.elapsed();
    assert_eq!(page["events"], json!([]));
    assert!(
        took >= Duration::from_millis(250) && took < WAIT,
        "wait=300ms answered after {took:?}"
    );
    // Its cursor is valid.
    s.publish("user.a", "after").await;
    let next = s
        .pull(&format!("pattern=user.%3E&from={}", enc(&cursor(&page))))
        .await;
    assert_eq!(page_texts(&next), ["after"]);
}

engines!(pull_from_an_event_id_and_from_a_time);
async fn pull_from_an_event_id_and_from_a_time(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let mut receipts = Vec::new();
    for i in 1..=4 {
        receipts.push(s.publish("user.a", &format!("e{i}")).await);
    }
    let id = receipts[1]["id"].as_str().unwrap();
    let page = s.pull(&format!("pattern=user.%3E&from={}", enc(id))).await;
    assert_eq!(page_texts(&page), ["e3", "e4"], "an event id is exclusive");

    let times: Vec<&str> = receipts
        .iter()
        .map(|r| r["time"].as_str().unwrap())
        .collect();
    let first = times.iter().position(|t| *t >= times[2]).unwrap();
    let expected: Vec<String> = (first + 1..=4).map(|i| format!("e{i}")).collect();
    let page = s
        .pull(&format!("pattern=user.%3E&from={}", enc(times[2])))
        .await;
    assert_eq!(page_texts(&page), expected, "a time is inclusive");
}
