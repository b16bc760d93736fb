//! The HTTP surface is exactly as documented (issue 13, item 3): unknown, duplicate, empty
//! or mode-foreign query parameters are refused with the JSON error; values outside the
//! grammar are refused and every documented spelling keeps its meaning; errors from below
//! the router carry the JSON error body; inboxes and HEAD answer as the docs say; a
//! stream's `limit` caps its member without touching the consumer.

use bus_testkit::*;
use hyper::{Method, StatusCode};

engines!(unknown_query_parameters_are_refused_naming_the_accepted_ones);
/// Parameters that are not the endpoint's answer `unknown_parameter`, naming them and
/// listing those it takes.
async fn unknown_query_parameters_are_refused_naming_the_accepted_ones(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    for (path, name, accepted) in [
        (
            "/v1/events?pattern=user.%3E&form=oldest",
            "form",
            "pattern, from, limit, wait",
        ),
        (
            "/v1/stream?pattern=user.%3E&durabel=x",
            "durabel",
            "durable",
        ),
        ("/v1/namespaces?verbose=1", "verbose", "none"),
        ("/v1/consumers?all=1", "all", "none"),
        ("/v1/subscriptions?x=1", "x", "none"),
    ] {
        let m = s
            .get(path)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "unknown_parameter");
        assert!(m.contains(&format!("{name:?}")), "{path}: {m}");
        assert!(m.contains(accepted), "{path}: {m}");
    }
    for (path, name) in [
        ("/v1/events/user.x?confrim=1", "confrim"),
        ("/v1/requests/rpc.x?timout=1s", "timout"),
        ("/v1/events?dry_run=1", "dry_run"),
    ] {
        let m = s
            .post(path, &[], "[]")
            .await
            .assert_error(StatusCode::BAD_REQUEST, "unknown_parameter");
        assert!(m.contains(name), "{path}: {m}");
    }
    assert!(
        s.broker().namespace("user").is_none(),
        "a refused publish stored something"
    );
}

engines!(cache_busters_and_the_polyfill_last_event_id_are_accepted);
/// `_` is a cache-buster everywhere; `lastEventId` is `Last-Event-ID` on streams.
async fn cache_busters_and_the_polyfill_last_event_id_are_accepted(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    s.publish("user.a", "one").await;
    s.publish("user.b", "two").await;
    let first = s.pull("pattern=user.%3E&from=oldest&limit=1&_=17").await;
    let cursor = first["cursor"].as_str().expect("cursor").to_owned();
    assert_eq!(s.get("/v1/namespaces?_=1").await.status, StatusCode::OK);
    let mut st = s
        .subscribe(&format!(
            "pattern=user.%3E&from=oldest&lastEventId={}&_=99",
            enc(&cursor)
        ))
        .await;
    let e = st.expect_event().await;
    assert_eq!(e.json()["payload"], "two", "lastEventId resumes after it");
    // lastEventId is not a parameter of a pull.
    s.get(&format!(
        "/v1/events?pattern=user.%3E&lastEventId={}",
        enc(&cursor)
    ))
    .await
    .assert_error(StatusCode::BAD_REQUEST, "unknown_parameter");
}

engines!(consumer_parameters_on_a_plain_stream_are_refused);
/// Consumer settings on a plain stream belong to another mode: `invalid_parameter`.
async fn consumer_parameters_on_a_plain_stream_are_refused(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    for q in [
        "ack_wait=10s",
        "max_deliver=3",
        "backoff=1s",
        "max_in_flight=5",
        "limit=2",
        "ack=none&ack_wait=10s",
    ] {
        let m = s
            .get(&format!("/v1/stream?pattern=user.%3E&{q}"))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_parameter");
        assert!(m.contains("consumer stream"), "{q}: {m}");
    }
}

engines!(duplicate_parameters_are_refused);
/// A parameter given twice is refused: which one would win is not obvious.
async fn duplicate_parameters_are_refused(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let m = s
        .get("/v1/events?pattern=user.%3E&from=oldest&from=newest")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_parameter");
    assert!(m.contains("more than once"), "{m}");
}

engines!(values_outside_the_grammar_are_refused);
/// Values outside the grammar are refused, before anything happens.
async fn values_outside_the_grammar_are_refused(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    for (path, code) in [
        ("/v1/events?pattern=user.%3E&from=", "invalid_start"),
        (
            "/v1/events?pattern=user.%3E&from=%20oldest",
            "invalid_start",
        ),
        ("/v1/events?pattern=user.%3E&from=oldest+", "invalid_start"),
        ("/v1/events?pattern=", "invalid_parameter"),
        (
            "/v1/events?pattern=user.%3E&wait=1%20s",
            "invalid_parameter",
        ),
        ("/v1/events?pattern=user.%3E&wait=%2B5", "invalid_parameter"),
        (
            "/v1/events?pattern=user.%3E&wait=%2B5s",
            "invalid_parameter",
        ),
        ("/v1/events?pattern=user.%3E&wait=5", "invalid_parameter"),
        ("/v1/events?pattern=user.%3E&wait=1.5s", "invalid_parameter"),
        (
            "/v1/events?pattern=user.%3E&limit=%2B5",
            "invalid_parameter",
        ),
        (
            "/v1/events?pattern=user.%3E&limit=5%20",
            "invalid_parameter",
        ),
        (
            "/v1/stream?pattern=user.%3E&heartbeat=",
            "invalid_parameter",
        ),
        (
            "/v1/stream?pattern=user.%3E&heartbeat=1%20s",
            "invalid_parameter",
        ),
        (
            "/v1/stream?pattern=j.%3E&ack=manual&ack_wait=%2B5s",
            "invalid_parameter",
        ),
        (
            "/v1/stream?pattern=j.%3E&ack=manual&limit=%2B2",
            "invalid_parameter",
        ),
        (
            "/v1/stream?pattern=j.%3E&ack=manual&max_in_flight=%2B2",
            "invalid_parameter",
        ),
        (
            "/v1/stream?pattern=j.%3E&ack=manual&backoff=1s,%2B2s",
            "invalid_parameter",
        ),
    ] {
        s.get(path)
            .await
            .assert_error(StatusCode::BAD_REQUEST, code);
    }
    for (path, code) in [
        ("/v1/events/user.x?confirm=%2B1", "invalid_parameter"),
        (
            "/v1/events/user.x?confirm=1&timeout=1%20s",
            "invalid_parameter",
        ),
        ("/v1/requests/rpc.x?timeout=", "invalid_parameter"),
        ("/v1/requests/rpc.x?timeout=%2B5s", "invalid_parameter"),
    ] {
        s.post(path, &[], "x")
            .await
            .assert_error(StatusCode::BAD_REQUEST, code);
    }
    assert!(s.broker().namespace("user").is_none());
}

engines!(documented_spellings_keep_their_meaning_and_compound_durations_work);
/// Every documented spelling keeps its meaning; compound durations work wherever a
/// duration does.
async fn documented_spellings_keep_their_meaning_and_compound_durations_work(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    for (ack_wait, ms) in [
        ("500ms", 500),
        ("30s", 30_000),
        ("5m", 300_000),
        ("1h", 3_600_000),
        ("1h30m", 5_400_000),
        ("1m30s", 90_000),
        ("1s500ms", 1_500),
    ] {
        let (_st, hello) = s
            .attach(&format!("pattern=job.%3E&ack=manual&ack_wait={ack_wait}"))
            .await;
        assert_eq!(hello["ack_wait"], format!("{ms}ms"), "{ack_wait}");
    }
    let (_st, hello) = s
        .attach("pattern=job.%3E&ack=manual&backoff=1s,1m30s,1h30m")
        .await;
    assert_eq!(
        hello["backoff"],
        serde_json::json!(["1000ms", "90000ms", "5400000ms"])
    );
    assert_eq!(
        s.get("/v1/events?pattern=user.%3E&wait=0s").await.status,
        StatusCode::OK
    );
    assert_eq!(
        s.get("/v1/events?pattern=user.%3E&from=oldest&limit=1000")
            .await
            .status,
        StatusCode::OK
    );
}

engines!(publishing_to_a_malformed_inbox_is_a_reserved_namespace);
/// `POST /v1/events/_inbox.x`: not an inbox the broker opens, so the namespace is
/// reserved (403); a well-formed inbox nobody waits on is `404 unknown_inbox`.
async fn publishing_to_a_malformed_inbox_is_a_reserved_namespace(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    s.post("/v1/events/_inbox.x", &[], "x")
        .await
        .assert_error(StatusCode::FORBIDDEN, "reserved_namespace");
    s.post(
        "/v1/events/_inbox.0123456789abcdef0123456789abcdef",
        &[],
        "x",
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "unknown_inbox");
}

engines!(head_on_the_stream_is_method_not_allowed);
/// HEAD on the SSE stream would open a subscription for nothing: 405, `Allow: GET`.
async fn head_on_the_stream_is_method_not_allowed(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let r = s
        .request(Method::HEAD, "/v1/stream?pattern=user.%3E", &[], "")
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.header("allow"), Some("GET"));
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        r.headers
    );
    assert!(s.broker().subscriptions().is_empty());
}

engines!(a_malformed_chunked_body_is_400);
/// A malformed chunked body is a malformed request (400), not one over its limit (413).
async fn a_malformed_chunked_body_is_400(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let req = b"POST /v1/events/user.x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n";
    raw_http(s.addr(), req)
        .await
        .assert_error(400, "invalid_body");
    let req = b"POST /v1/events HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n";
    raw_http(s.addr(), req)
        .await
        .assert_error(400, "invalid_body");
    assert!(s.broker().namespace("user").is_none());
}

engines!(a_stream_limit_caps_its_member_without_changing_the_consumer);
/// `limit=N` alone caps the member at N deliveries in flight and leaves the consumer's
/// settings as they are.
async fn a_stream_limit_caps_its_member_without_changing_the_consumer(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    for i in 0..3 {
        s.publish("job.x", &i.to_string()).await;
    }
    let (mut a, hello) = s
        .attach("pattern=job.%3E&from=oldest&durable=mailer&ack=manual&limit=2")
        .await;
    assert_eq!(hello["max_in_flight"], 1000, "{hello}");
    let got = next_n(&mut a, 2).await;
    assert_eq!(got, vec![d("0", 1), d("1", 1)]);
    let info = s.consumer("mailer").await;
    assert_eq!(info["max_in_flight"], 1000, "{info}");
    // The third event is left for another member.
    let (mut b, _) = s.attach("pattern=job.%3E&durable=mailer&limit=2").await;
    assert_eq!(next(&mut b).await, d("2", 1));
}

engines!(oversized_request_heads_get_the_json_error);
/// The broker's limits on the request head answer with the JSON error body, not the HTTP
/// library's bare status: too many headers, too many header bytes, too long a URI.
async fn oversized_request_heads_get_the_json_error(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let mut req = String::from("GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    // 3 + 110 headers: past the broker's 100, within the HTTP library's 128.
    for i in 0..110 {
        req.push_str(&format!("X-H-{i}: v\r\n"));
    }
    req.push_str("\r\n");
    raw_http(s.addr(), req.as_bytes())
        .await
        .assert_error(431, "headers_too_large");
    // Past the library's limit the answer is its bare 431 (proto-docs/http-api.md, Limits).
    let mut req = String::from("GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for i in 0..200 {
        req.push_str(&format!("X-H-{i}: v\r\n"));
    }
    req.push_str("\r\n");
    assert_eq!(raw_http(s.addr(), req.as_bytes()).await.status, 431);
    let big = "v".repeat(70 * 1024);
    let req = format!(
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Big: {big}\r\n\r\n"
    );
    raw_http(s.addr(), req.as_bytes())
        .await
        .assert_error(431, "headers_too_large");
    // Past the broker's 32 KiB (hyper's own fixed limit, 65,534 bytes, is further on).
    let path = format!("/v1/events/user.{}", "a".repeat(40 * 1024));
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    raw_http(s.addr(), req.as_bytes())
        .await
        .assert_error(414, "uri_too_long");
    // Within the limits, a request goes through.
    let mut req = String::from("GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for i in 0..90 {
        req.push_str(&format!("X-H-{i}: v\r\n"));
    }
    req.push_str("\r\n");
    assert_eq!(raw_http(s.addr(), req.as_bytes()).await.status, 200);
}
