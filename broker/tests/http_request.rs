//! End to end: request/reply over HTTP (`proto-docs/http-api.md`, "Request/reply"): the echo
//! round trip with headers and content type, no responders (fast, nothing stored), timeout,
//! late and foreign replies, error replies, load-balanced responders in a group (1,000
//! concurrent requests over 4 responders), a responder that leaves mid-request, and the
//! request/reply metrics.
//!
//! Responders here are plain SSE subscriptions driven by the test: each reads a request
//! event and answers by publishing to its `reply_to`. Nothing sleeps: every wait is for a
//! message or an answer, bounded by `WAIT`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bus_testkit::{
    Engine, HttpClient, SseReader, TestServer, enc, engines, eventually, metric, send, within,
};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::Value;

/// `POST /v1/requests/{subject}?<query>` with `headers` and `body`.
async fn request(
    s: &TestServer,
    subject: &str,
    query: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> bus_testkit::Resp {
    let path = format!("/v1/requests/{}?{query}", enc(subject));
    s.post(&path, headers, Bytes::copy_from_slice(body.as_bytes()))
        .await
}

/// Publishes a reply to `inbox`, returning the raw response.
async fn reply(
    client: &HttpClient,
    base: &str,
    inbox: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> bus_testkit::Resp {
    let url = format!("{base}/v1/events/{}", enc(inbox));
    send(
        client,
        Method::POST,
        &url,
        headers,
        Bytes::copy_from_slice(body.as_bytes()),
    )
    .await
}

/// The base URL of `s` (for responder tasks that hold only a client).
fn base(s: &TestServer) -> String {
    s.url("")
}

/// Reads the next request on `st` and returns its event JSON (which carries `reply_to`).
async fn next_request(st: &mut SseReader) -> Value {
    let e = st.expect_event().await.json();
    let inbox = e["reply_to"]
        .as_str()
        .unwrap_or_else(|| panic!("no reply_to: {e}"));
    assert!(inbox.starts_with("_inbox."), "{e}");
    assert_eq!(inbox.len(), "_inbox.".len() + 32, "128-bit inbox: {e}");
    e
}

/// Answers every request on `st` by echoing its payload, with header `responder: <name>`;
/// counts replies the broker refused in `refused`; returns when the stream ends.
async fn echo_responder(
    mut st: SseReader,
    client: HttpClient,
    base: String,
    name: String,
    refused: Arc<AtomicUsize>,
) {
    while let Some(m) = st.next_event().await {
        if m.event.is_some() {
            continue;
        }
        let e = m.json();
        let inbox = e["reply_to"].as_str().expect("reply_to").to_owned();
        let payload = e["payload"].as_str().expect("text payload").to_owned();
        let r = reply(
            &client,
            &base,
            &inbox,
            &[
                ("bus-header-responder", &name),
                ("content-type", "text/plain"),
            ],
            &payload,
        )
        .await;
        if r.status != StatusCode::OK {
            eprintln!("reply refused: {}", r.text());
            refused.fetch_add(1, Ordering::Relaxed);
        }
    }
}

engines!(echo_round_trip_carries_payload_headers_and_content_type);
async fn echo_round_trip_carries_payload_headers_and_content_type(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let mut responder = s.subscribe("pattern=rpc.%3E&from=newest").await;
    let caller = {
        let client = s.client.clone();
        let url = s.url("/v1/requests/rpc.user.get?timeout=10s");
        tokio::spawn(async move {
            send(
                &client,
                Method::POST,
                &url,
                &[
                    ("content-type", "application/json"),
                    ("bus-header-trace", "t-1"),
                ],
                Bytes::from_static(br#"{"id":7}"#),
            )
            .await
        })
    };
    let req = next_request(&mut responder).await;
    assert_eq!(req["subject"], "rpc.user.get");
    assert_eq!(req["payload"]["id"], 7, "{req}");
    assert_eq!(req["headers"]["trace"], "t-1", "{req}");
    let r = reply(
        &s.client,
        &base(&s),
        req["reply_to"].as_str().unwrap(),
        &[
            ("content-type", "application/json"),
            ("bus-header-status", "found"),
        ],
        r#"{"id":7,"name":"ada"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["replied"], true);

    let answer = within("the caller's answer", caller).await.unwrap();
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.text(), r#"{"id":7,"name":"ada"}"#);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(answer.header("bus-header-status"), Some("found"));
    assert_eq!(answer.header("bus-request-id"), req["id"].as_str());

    // The request is stored like any event, with its reply_to; the reply is not stored.
    let stored = s.pull_all("rpc.>").await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["id"], req["id"]);
    assert_eq!(stored[0]["reply_to"], req["reply_to"]);
    let namespaces = s.get_json("/v1/namespaces").await;
    assert!(
        !namespaces.to_string().contains("_inbox"),
        "inboxes are never stored: {namespaces}"
    );
}

engines!(no_responders_answers_at_once_and_stores_nothing);
async fn no_responders_answers_at_once_and_stores_nothing(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let started = Instant::now();
    let r = request(&s, "rpc.user.get", "timeout=60s", &[], "x").await;
    let msg = r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "no_responders");
    assert!(msg.contains("rpc.user.get"), "{msg}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "answered at once, not after the 60 s timeout"
    );
    assert_eq!(
        s.get("/v1/namespaces/rpc").await.status,
        StatusCode::NOT_FOUND,
        "nothing was stored: the namespace was never created"
    );

    // A subscription elsewhere does not answer; a durable with no live member does not count.
    let _other = s.subscribe("pattern=user.%3E").await;
    let (durable, _) = s.attach("pattern=rpc.%3E&durable=users&ack=manual").await;
    drop(durable);
    eventually("the durable's member left", || async {
        let subs = s.get_json("/v1/subscriptions").await;
        !subs.to_string().contains("rpc.>")
    })
    .await;
    request(&s, "rpc.user.get", "", &[], "x")
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE, "no_responders");
    assert_eq!(
        s.get("/v1/namespaces/rpc").await.status,
        StatusCode::NOT_FOUND
    );

    let m = s.get("/metrics").await.text();
    assert_eq!(
        metric(&m, "bus_requests_total{outcome=\"no_responders\"}"),
        Some(2.0)
    );
}

engines!(timeout_answers_504_and_the_late_reply_is_refused_and_counted);
async fn timeout_answers_504_and_the_late_reply_is_refused_and_counted(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let mut responder = s.subscribe("pattern=rpc.slow&from=newest").await;
    let r = request(&s, "rpc.slow", "timeout=100ms", &[], "x").await;
    let msg = r.assert_error(StatusCode::GATEWAY_TIMEOUT, "timeout");
    assert!(msg.contains("100ms") && msg.contains("rpc.slow"), "{msg}");

    // The request was stored and delivered; its answer comes too late.
    let req = next_request(&mut responder).await;
    let late = reply(
        &s.client,
        &base(&s),
        req["reply_to"].as_str().unwrap(),
        &[],
        "late",
    )
    .await;
    late.assert_error(StatusCode::NOT_FOUND, "unknown_inbox");
    let m = s.get("/metrics").await.text();
    assert_eq!(
        metric(&m, "bus_requests_total{outcome=\"timeout\"}"),
        Some(1.0)
    );
    assert_eq!(metric(&m, "bus_replies_dropped_total"), Some(1.0));
}

engines!(replies_to_foreign_malformed_or_answered_inboxes_are_refused);
async fn replies_to_foreign_malformed_or_answered_inboxes_are_refused(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let c = &s.client;
    let b = base(&s);
    reply(c, &b, "_inbox.0123456789abcdef0123456789abcdef", &[], "x")
        .await
        .assert_error(StatusCode::NOT_FOUND, "unknown_inbox");
    // Not an inbox the broker could have opened: the namespace is reserved.
    for inbox in [
        "_inbox.x",
        "_inbox.abc",
        "_inbox.0123456789ABCDEF0123456789ABCDEF",
        "_inbox.0123456789abcdef0123456789abcdef0",
        "_inbox.0123456789abcdef0123456789abcdef.x",
    ] {
        reply(c, &b, inbox, &[], "x")
            .await
            .assert_error(StatusCode::FORBIDDEN, "reserved_namespace");
    }

    // Answered once, the inbox is closed: a second answer is refused.
    let mut responder = s.subscribe("pattern=rpc.once&from=newest").await;
    let caller = {
        let client = s.client.clone();
        let url = s.url("/v1/requests/rpc.once");
        tokio::spawn(async move { send(&client, Method::POST, &url, &[], Bytes::new()).await })
    };
    let req = next_request(&mut responder).await;
    let inbox = req["reply_to"].as_str().unwrap();
    assert_eq!(
        reply(c, &b, inbox, &[], "first").await.status,
        StatusCode::OK
    );
    reply(c, &b, inbox, &[], "second")
        .await
        .assert_error(StatusCode::NOT_FOUND, "unknown_inbox");
    let answer = within("answer", caller).await.unwrap();
    assert_eq!(answer.text(), "first");

    // Inboxes are not for batches, and a reply cannot wait for confirmations.
    let batch = format!(r#"[{{"subject":"{inbox}","payload":"x"}}]"#);
    s.publish_batch(batch)
        .await
        .assert_error(StatusCode::FORBIDDEN, "reserved_namespace");
    let path = format!("/v1/events/{}?confirm=1", enc(inbox));
    s.post(&path, &[], "x")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_parameter");
    // The unknown inbox and the second answer; a malformed inbox is no reply at all.
    let m = s.get("/metrics").await.text();
    assert_eq!(metric(&m, "bus_replies_dropped_total"), Some(2.0));
}

engines!(an_error_reply_answers_502_with_the_responders_message);
async fn an_error_reply_answers_502_with_the_responders_message(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let mut responder = s.subscribe("pattern=rpc.user.get&from=newest").await;
    let caller = {
        let client = s.client.clone();
        let url = s.url("/v1/requests/rpc.user.get");
        tokio::spawn(async move {
            send(&client, Method::POST, &url, &[], Bytes::from_static(b"7")).await
        })
    };
    let req = next_request(&mut responder).await;
    let r = reply(
        &s.client,
        &base(&s),
        req["reply_to"].as_str().unwrap(),
        &[
            ("bus-header-bus-error", "user 7 not found"),
            ("bus-header-code", "404"),
        ],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let answer = within("answer", caller).await.unwrap();
    let msg = answer.assert_error(StatusCode::BAD_GATEWAY, "reply_error");
    assert_eq!(msg, "user 7 not found");
    assert_eq!(answer.header("bus-header-code"), Some("404"));
    assert_eq!(answer.header("bus-request-id"), req["id"].as_str());
    let m = s.get("/metrics").await.text();
    assert_eq!(
        metric(&m, "bus_requests_total{outcome=\"error\"}"),
        Some(1.0)
    );
}

engines!(a_thousand_concurrent_requests_over_four_grouped_responders);
async fn a_thousand_concurrent_requests_over_four_grouped_responders(engine: Engine) {
    const N: usize = 1000;
    let s = TestServer::start_default_on(engine).await;
    let mut responders = Vec::new();
    let refused = Arc::new(AtomicUsize::new(0));
    for i in 0..4 {
        let (st, hello) = s.attach("pattern=rpc.echo&group=echoers&from=newest").await;
        assert_eq!(hello["consumer"], "echoers");
        responders.push(tokio::spawn(echo_responder(
            st,
            s.client.clone(),
            base(&s),
            format!("r{i}"),
            refused.clone(),
        )));
    }
    let started = Instant::now();
    let mut callers = tokio::task::JoinSet::new();
    let url = Arc::new(s.url("/v1/requests/rpc.echo?timeout=60s"));
    for i in 0..N {
        let client = s.client.clone();
        let url = url.clone();
        callers.spawn(async move {
            let body = format!("request {i}");
            let r = send(&client, Method::POST, &url, &[], Bytes::from(body.clone())).await;
            (i, body, r)
        });
    }
    let mut by_responder: BTreeMap<String, usize> = BTreeMap::new();
    let mut answered = BTreeSet::new();
    while let Some(joined) = within("a caller", callers.join_next()).await {
        let (i, body, r) = joined.unwrap();
        assert_eq!(r.status, StatusCode::OK, "request {i}: {}", r.text());
        assert_eq!(r.text(), body, "each reply reaches its own caller");
        let who = r
            .header("bus-header-responder")
            .expect("responder")
            .to_owned();
        *by_responder.entry(who).or_default() += 1;
        assert!(answered.insert(r.header("bus-request-id").unwrap().to_owned()));
    }
    assert_eq!(answered.len(), N);
    assert_eq!(by_responder.values().sum::<usize>(), N, "{by_responder:?}");
    // Each request went to exactly one member: no member answered a request twice, and the
    // group read each request once.
    assert_eq!(
        refused.load(Ordering::Relaxed),
        0,
        "a request was answered twice"
    );
    let info = s.consumer("echoers").await;
    assert_eq!(info["redelivered"], 0, "{info}");
    assert_eq!(info["positions"]["rpc"], N as u64 + 1, "{info}");
    assert_eq!(info["members"], 4, "{info}");
    eprintln!(
        "{N} requests over 4 responders in {:?}: {by_responder:?}",
        started.elapsed()
    );
    for r in responders {
        r.abort();
    }
}

engines!(a_grouped_responder_that_leaves_mid_request_hands_it_to_another);
async fn a_grouped_responder_that_leaves_mid_request_hands_it_to_another(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let q = "pattern=rpc.work&group=workers&ack=manual&from=newest";
    let (mut first, _) = s.attach(q).await;
    let caller = {
        let client = s.client.clone();
        let url = s.url("/v1/requests/rpc.work?timeout=60s");
        tokio::spawn(async move {
            send(&client, Method::POST, &url, &[], Bytes::from_static(b"job")).await
        })
    };
    let req = next_request(&mut first).await;
    // The second member joins only now, so the request went to the first, which leaves
    // without answering or acking: the request goes to the second at once.
    let (mut second, _) = s.attach(q).await;
    drop(first);
    let again = next_request(&mut second).await;
    assert_eq!(again["id"], req["id"]);
    assert_eq!(again["delivery_count"], 2, "{again}");
    assert_eq!(
        again["reply_to"], req["reply_to"],
        "the same inbox, still waiting"
    );
    let r = reply(
        &s.client,
        &base(&s),
        again["reply_to"].as_str().unwrap(),
        &[],
        "done by the second",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let answer = within("answer", caller).await.unwrap();
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.text(), "done by the second");
}

engines!(malformed_requests_are_refused);
async fn malformed_requests_are_refused(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let _responder = s.subscribe("pattern=rpc.%3E").await;
    /// (subject, query, request headers, status, code)
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a [(&'a str, &'a str)],
        StatusCode,
        &'a str,
    );
    let cases: &[Case] = &[
        (
            "rpc.x",
            "timeout=0s",
            &[],
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
        ),
        (
            "rpc.x",
            "timeout=10m",
            &[],
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
        ),
        (
            "rpc.x",
            "confirm=1",
            &[],
            StatusCode::BAD_REQUEST,
            "unknown_parameter",
        ),
        (
            "rpc.x",
            "",
            &[("bus-reply-to", "rpc.mine")],
            StatusCode::BAD_REQUEST,
            "invalid_header",
        ),
        (
            "rpc.x",
            "",
            &[("bus-msg-id", "once")],
            StatusCode::BAD_REQUEST,
            "invalid_header",
        ),
        (
            "rpc.*",
            "",
            &[],
            StatusCode::BAD_REQUEST,
            "wildcard_in_subject",
        ),
        (
            "rpc..x",
            "",
            &[],
            StatusCode::BAD_REQUEST,
            "invalid_subject",
        ),
        (
            "_bus_.x",
            "",
            &[],
            StatusCode::FORBIDDEN,
            "reserved_namespace",
        ),
        (
            "_inbox.x",
            "",
            &[],
            StatusCode::FORBIDDEN,
            "reserved_namespace",
        ),
    ];
    for (subject, query, headers, status, code) in cases {
        request(&s, subject, query, headers, "x")
            .await
            .assert_error(*status, code);
    }
    assert_eq!(
        s.get("/v1/namespaces/rpc").await.status,
        StatusCode::NOT_FOUND,
        "no refused request was stored"
    );
}

engines!(a_caller_that_hangs_up_is_counted_as_abandoned);
async fn a_caller_that_hangs_up_is_counted_as_abandoned(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let mut responder = s.subscribe("pattern=rpc.gone&from=newest").await;
    let caller = {
        let client = s.client.clone();
        let url = s.url("/v1/requests/rpc.gone?timeout=60s");
        tokio::spawn(async move { send(&client, Method::POST, &url, &[], Bytes::new()).await })
    };
    next_request(&mut responder).await; // stored and delivered: the caller waits
    caller.abort();
    eventually("the hang-up counted", || async {
        let m = s.get("/metrics").await.text();
        metric(&m, "bus_requests_total{outcome=\"abandoned\"}") == Some(1.0)
    })
    .await;
}

engines!(responders_on_wildcard_patterns_are_found_through_the_trie);
async fn responders_on_wildcard_patterns_are_found_through_the_trie(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let gets = s.subscribe("pattern=rpc.*.get&from=newest").await;
    let users = s.subscribe("pattern=rpc.user.*&from=newest").await;
    let refused = Arc::new(AtomicUsize::new(0));
    for (st, name) in [(gets, "gets"), (users, "users")] {
        tokio::spawn(echo_responder(
            st,
            s.client.clone(),
            base(&s),
            name.to_owned(),
            refused.clone(),
        ));
    }
    // `rpc.order.get` matches only `rpc.*.get`, `rpc.user.put` only `rpc.user.*`; the first
    // answer wins where both match (`rpc.user.get`).
    for (subject, answered_by) in [
        ("rpc.order.get", &["gets"][..]),
        ("rpc.user.put", &["users"][..]),
        ("rpc.user.get", &["gets", "users"][..]),
    ] {
        let r = request(&s, subject, "timeout=10s", &[], subject).await;
        assert_eq!(r.status, StatusCode::OK, "{subject}: {}", r.text());
        assert_eq!(r.text(), subject);
        let by = r.header("bus-header-responder").unwrap_or_default();
        assert!(answered_by.contains(&by), "{subject} answered by {by}");
    }
    request(&s, "rpc.order.put", "", &[], "x")
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE, "no_responders");
    // Both responders are on the live path by now.
    eventually("both responders are live", || async {
        let subs = s.get_json("/v1/subscriptions").await;
        let subs = subs.as_array().cloned().unwrap_or_default();
        subs.len() == 2 && subs.iter().all(|x| x["state"] == "live")
    })
    .await;
}
