//! End to end: every error code of the contract's table that a client can provoke, each with
//! its status and the body `{"error":{"code","message"}}`.

use bus_testkit::{Engine, TestServer, enc, engines};
use hyper::{Method, StatusCode};

engines!(invalid_subject_is_400_with_the_parsers_message);
async fn invalid_subject_is_400_with_the_parsers_message(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    for (subject, message) in [
        ("a..b", r#"empty token at position 2 in "a..b""#),
        ("a.", r#"empty token at position 2 in "a.""#),
        (
            "a b",
            r#"invalid character ' ' in token "a b" at position 1 in "a b""#,
        ),
        (
            "ns.a%b",
            r#"invalid character '%' in token "a%b" at position 2 in "ns.a%b""#,
        ),
    ] {
        let r = s
            .post(&format!("/v1/events/{}", enc(subject)), &[], "x")
            .await;
        let got = r.assert_error(StatusCode::BAD_REQUEST, "invalid_subject");
        assert_eq!(got, message, "subject {subject:?}");
    }
    let long = "a".repeat(256);
    let r = s.post(&format!("/v1/events/{long}"), &[], "x").await;
    let got = r.assert_error(StatusCode::BAD_REQUEST, "invalid_subject");
    assert!(
        got.contains("256 bytes long, more than the 255-byte limit"),
        "{got}"
    );
}

engines!(wildcard_in_publish_subject_is_400);
async fn wildcard_in_publish_subject_is_400(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    for subject in ["user.*", "user.>", "*.created", ">"] {
        let r = s
            .post(&format!("/v1/events/{}", enc(subject)), &[], "x")
            .await;
        r.assert_error(StatusCode::BAD_REQUEST, "wildcard_in_subject");
    }
    // Unencoded `*` in the path works the same.
    let r = s.post("/v1/events/user.*", &[], "x").await;
    r.assert_error(StatusCode::BAD_REQUEST, "wildcard_in_subject");
}

engines!(invalid_pattern_is_400_on_stream_and_pull);
async fn invalid_pattern_is_400_on_stream_and_pull(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    for (pattern, message) in [
        (
            "a.>.b",
            r#"">" must be the last token in "a.>.b" (found at position 2)"#,
        ),
        (
            "a*",
            r#""*" inside token "a*" at position 1 in "a*": a wildcard must be a whole token"#,
        ),
        ("a..b", r#"empty token at position 2 in "a..b""#),
    ] {
        let q = format!("pattern={}", enc(pattern));
        let r = s.get(&format!("/v1/stream?{q}")).await;
        let got = r.assert_error(StatusCode::BAD_REQUEST, "invalid_pattern");
        assert_eq!(got, message, "stream pattern {pattern:?}");
        let r = s.get(&format!("/v1/events?{q}")).await;
        let got = r.assert_error(StatusCode::BAD_REQUEST, "invalid_pattern");
        assert_eq!(got, message, "pull pattern {pattern:?}");
    }
}

engines!(missing_pattern_is_400);
async fn missing_pattern_is_400(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    for path in ["/v1/stream", "/v1/events", "/v1/events?from=oldest"] {
        let r = s.get(path).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.text());
        let v = r.json();
        // The contract does not say which code a missing required parameter gets.
        let code = v["error"]["code"].as_str().unwrap_or("");
        assert!(
            code == "invalid_parameter" || code == "invalid_pattern",
            "{path}: {v}"
        );
    }
}

engines!(invalid_start_is_400_from_query_and_last_event_id);
async fn invalid_start_is_400_from_query_and_last_event_id(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    s.publish("user.created", "x").await;
    // Inputs that are neither `oldest`/`newest`, an RFC 3339 time, nor shaped like an id or
    // cursor (`<namespace>-<sequence>-<suffix>`, comma-separated).
    for from in ["yesterday", "-1", "user-notanumber-x", "oldest,newest"] {
        let q = format!("pattern=user.%3E&from={}", enc(from));
        let r = s.get(&format!("/v1/stream?{q}")).await;
        r.assert_error(StatusCode::BAD_REQUEST, "invalid_start");
        let r = s.get(&format!("/v1/events?{q}")).await;
        r.assert_error(StatusCode::BAD_REQUEST, "invalid_start");
    }
    let r = s
        .get_with(
            "/v1/stream?pattern=user.%3E",
            &[("last-event-id", "not a cursor")],
        )
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "invalid_start");
}

engines!(invalid_batch_is_400);
async fn invalid_batch_is_400(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let r = s.publish_batch("[]").await;
    r.assert_error(StatusCode::BAD_REQUEST, "invalid_batch");
    let r = s
        .publish_batch(r#"[{"subject":"user.a"},{"subject":"order.a"}]"#)
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "invalid_batch");
}

engines!(invalid_parameter_is_400);
async fn invalid_parameter_is_400(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    s.publish("user.created", "x").await;
    for q in [
        "limit=0",
        "limit=1001",
        "limit=-1",
        "limit=ten",
        "wait=61s",
        "wait=soon",
        "wait=5",
    ] {
        let r = s
            .get(&format!("/v1/events?pattern=user.%3E&from=oldest&{q}"))
            .await;
        r.assert_error(StatusCode::BAD_REQUEST, "invalid_parameter");
    }
    for q in ["heartbeat=500ms", "heartbeat=6m", "heartbeat=often"] {
        let r = s.get(&format!("/v1/stream?pattern=user.%3E&{q}")).await;
        r.assert_error(StatusCode::BAD_REQUEST, "invalid_parameter");
    }
    // The bounds themselves are accepted.
    for q in ["limit=1", "limit=1000", "wait=60s"] {
        s.pull(&format!("pattern=user.%3E&from=oldest&{q}")).await;
    }
}

engines!(invalid_header_is_400);
async fn invalid_header_is_400(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    s.publish("user.seed", "before").await;
    let r = s
        .post("/v1/events/user.created", &[("bus-reply-to", "a..b")], "x")
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "invalid_header");
    let r = s
        .post(
            "/v1/events/user.created",
            &[("bus-reply-to", "user.*")],
            "x",
        )
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "invalid_header");
    assert_eq!(s.pull_all("user.>").await.len(), 1, "nothing stored");
}

engines!(publishing_into_reserved_namespaces_is_403);
async fn publishing_into_reserved_namespaces_is_403(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    for subject in [
        "_bus_.x",
        "_inbox.x",
        "_bus_.dead.user.created",
        "_inbox.00000000000000000000000000000abc",
    ] {
        let r = s.post(&format!("/v1/events/{subject}"), &[], "x").await;
        if subject.len() == "_inbox.".len() + 32 {
            // A single publish to an inbox is a reply: refused, as no request waits there.
            r.assert_error(StatusCode::NOT_FOUND, "unknown_inbox");
        } else {
            r.assert_error(StatusCode::FORBIDDEN, "reserved_namespace");
        }
        let body = format!(r#"[{{"subject":"{subject}"}}]"#);
        let r = s.publish_batch(body).await;
        r.assert_error(StatusCode::FORBIDDEN, "reserved_namespace");
    }
    // Only the exact names are reserved.
    for subject in ["_BUS_.x", "_bus_x.y", "_inboxes.y"] {
        let r = s.post(&format!("/v1/events/{subject}"), &[], "x").await;
        assert_eq!(r.status, StatusCode::CREATED, "{subject}: {}", r.text());
    }
}

engines!(unknown_namespace_is_404_naming_the_allowed_ones);
async fn unknown_namespace_is_404_naming_the_allowed_ones(engine: Engine) {
    let s = TestServer::start_on(engine, |c| {
        c.namespaces = Some(vec!["user".into(), "rpc".into()])
    })
    .await;
    let r = s.post("/v1/events/order.created", &[], "x").await;
    let msg = r.assert_error(StatusCode::NOT_FOUND, "unknown_namespace");
    assert!(msg.contains("user") && msg.contains("rpc"), "{msg}");
    let r = s.publish_batch(r#"[{"subject":"order.created"}]"#).await;
    r.assert_error(StatusCode::NOT_FOUND, "unknown_namespace");
    // The allowed ones work.
    s.publish("user.created", "x").await;
    s.publish("rpc.call", "x").await;
}

engines!(unknown_namespace_lookup_is_404);
async fn unknown_namespace_lookup_is_404(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let r = s.get("/v1/namespaces/nothing").await;
    r.assert_error(StatusCode::NOT_FOUND, "unknown_namespace");
}

/// Replaces the sequence in an event id shaped like `<namespace>-<sequence>-<suffix>`, the
/// form the contract shows. Only a test builds ids: it needs one the broker never held.
fn with_sequence(id: &str, seq: u64) -> String {
    let mut parts = id.rsplitn(3, '-');
    let suffix = parts.next().expect("suffix");
    let old = parts.next().expect("sequence");
    let ns = parts
        .next()
        .unwrap_or_else(|| panic!("id {id:?} is not <namespace>-<sequence>-<suffix>"));
    assert!(
        old.parse::<u64>().is_ok(),
        "id {id:?}: {old:?} is not a sequence"
    );
    format!("{ns}-{seq}-{suffix}")
}

engines!(start_at_an_event_never_held_is_404_unknown_event);
async fn start_at_an_event_never_held_is_404_unknown_event(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let receipt = s.publish("user.created", "x").await;
    let never = with_sequence(receipt["id"].as_str().unwrap(), 999);
    let q = format!("pattern=user.%3E&from={}", enc(&never));
    let r = s.get(&format!("/v1/stream?{q}")).await;
    r.assert_error(StatusCode::NOT_FOUND, "unknown_event");
    let r = s.get(&format!("/v1/events?{q}")).await;
    r.assert_error(StatusCode::NOT_FOUND, "unknown_event");
    let r = s
        .get_with("/v1/stream?pattern=user.%3E", &[("last-event-id", &never)])
        .await;
    r.assert_error(StatusCode::NOT_FOUND, "unknown_event");
}

engines!(unknown_path_is_404_not_found);
async fn unknown_path_is_404_not_found(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    for path in ["/nope", "/v1", "/v1/nothing", "/v2/events/user.created"] {
        let r = s.get(path).await;
        r.assert_error(StatusCode::NOT_FOUND, "not_found");
    }
    let r = s.post("/v1/nothing", &[], "x").await;
    r.assert_error(StatusCode::NOT_FOUND, "not_found");
}

engines!(wrong_method_is_405_method_not_allowed);
async fn wrong_method_is_405_method_not_allowed(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    for (method, path) in [
        (Method::PUT, "/v1/events/user.created"),
        (Method::DELETE, "/v1/events/user.created"),
        (Method::DELETE, "/v1/events"),
        (Method::POST, "/v1/stream?pattern=user.%3E"),
        (Method::POST, "/healthz"),
        (Method::POST, "/metrics"),
        (Method::PUT, "/v1/subscriptions"),
        (Method::POST, "/v1/namespaces"),
    ] {
        let r = s.request(method.clone(), path, &[], "").await;
        r.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    }
}

engines!(payload_over_the_limit_is_413_and_stores_nothing);
async fn payload_over_the_limit_is_413_and_stores_nothing(engine: Engine) {
    let s = TestServer::start_on(engine, |c| c.log.max_payload_bytes = 1024).await;
    s.publish("user.seed", "before").await;
    let r = s.post("/v1/events/user.big", &[], vec![b'x'; 1025]).await;
    r.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    // Far over the body limit too (payload limit + 64 KiB).
    let r = s
        .post("/v1/events/user.big", &[], vec![b'x'; 1024 + 65 * 1024])
        .await;
    r.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert_eq!(s.pull_all("user.>").await.len(), 1, "nothing stored");
    // Exactly at the limit is fine.
    s.publish_with("user.big", &[], vec![b'x'; 1024]).await;
}

engines!(default_payload_limit_is_one_mebibyte);
async fn default_payload_limit_is_one_mebibyte(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let r = s
        .post("/v1/events/user.big", &[], vec![b'x'; 1024 * 1024 + 1])
        .await;
    r.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    s.publish_with("user.big", &[], vec![b'x'; 1024 * 1024])
        .await;
}
