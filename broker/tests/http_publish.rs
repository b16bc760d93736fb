//! End to end: `POST /v1/events/{subject}` and `POST /v1/events` (batches) against a real
//! server: receipts, the payload forms of the event JSON, headers, dedup, atomic batches.

use std::time::{Duration, Instant};

use bus_testkit::{Engine, TestServer, WAIT, assert_receipt, assert_time, enc, engines, texts};
use hyper::StatusCode;
use serde_json::{Value, json};

engines!(publish_answers_201_with_a_receipt_and_numbers_from_one);
async fn publish_answers_201_with_a_receipt_and_numbers_from_one(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let r = s
        .post(
            "/v1/events/user.created",
            &[("content-type", "application/json")],
            r#"{"name":"ada"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let first = r.json();
    assert_eq!(assert_receipt(&first, "user.created"), 1);
    let keys: Vec<&String> = first.as_object().unwrap().keys().collect();
    for k in ["id", "namespace", "sequence", "subject", "time"] {
        assert!(first.get(k).is_some(), "receipt lacks {k}: {first}");
    }
    assert!(first.get("duplicate").is_none(), "fresh receipt: {keys:?}");

    let second = s.publish("user.deleted", "bye").await;
    assert_eq!(assert_receipt(&second, "user.deleted"), 2);
    assert_ne!(first["id"], second["id"]);
    assert!(second["time"].as_str() >= first["time"].as_str());

    // Another namespace has its own sequence.
    let other = s.publish("order.created", "x").await;
    assert_eq!(assert_receipt(&other, "order.created"), 1);
}

engines!(published_event_has_the_documented_json_fields);
async fn published_event_has_the_documented_json_fields(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let receipt = s
        .publish_with(
            "user.created",
            &[
                ("content-type", "application/json"),
                ("bus-header-trace", "abc"),
            ],
            r#"{"name":"ada"}"#,
        )
        .await;
    let events = s.pull_all("user.>").await;
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e["id"], receipt["id"]);
    assert_eq!(e["subject"], "user.created");
    assert_eq!(e["namespace"], "user");
    assert_eq!(e["sequence"], 1);
    assert_eq!(e["time"], receipt["time"]);
    assert_time(e["time"].as_str().unwrap());
    assert_eq!(e["headers"], json!({"trace": "abc"}));
    assert_eq!(e["content_type"], "application/json");
    assert_eq!(e["payload"], json!({"name": "ada"}));
    assert!(e.get("reply_to").is_none(), "no reply subject given: {e}");
    assert!(e.get("encoding").is_none(), "payload is not base64: {e}");
}

/// Publishes `body` with `content_type` and returns the stored event's JSON.
async fn round_trip(
    s: &TestServer,
    subject: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Value {
    let headers: Vec<(&str, &str)> = content_type
        .map(|c| ("content-type", c))
        .into_iter()
        .collect();
    let receipt = s
        .publish_with(subject, &headers, bytes::Bytes::copy_from_slice(body))
        .await;
    let page = s
        .pull(&format!("pattern={}&from=oldest&limit=1000", enc(subject)))
        .await;
    let events = page["events"].as_array().unwrap();
    events
        .iter()
        .find(|e| e["id"] == receipt["id"])
        .unwrap_or_else(|| panic!("event {} not in {page}", receipt["id"]))
        .clone()
}

engines!(payload_form_follows_the_content_type);
async fn payload_form_follows_the_content_type(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;

    // application/json that parses: the JSON itself.
    let e = round_trip(
        &s,
        "p.json",
        Some("application/json"),
        br#"{"name":"ada","n":[1,2]}"#,
    )
    .await;
    assert_eq!(e["payload"], json!({"name": "ada", "n": [1, 2]}));
    assert_eq!(e["content_type"], "application/json");
    assert!(e.get("encoding").is_none());

    // A `+json` media type counts as JSON.
    let e = round_trip(
        &s,
        "p.plus",
        Some("application/vnd.bus.test+json"),
        b"[true,null,3]",
    )
    .await;
    assert_eq!(e["payload"], json!([true, null, 3]));
    assert_eq!(e["content_type"], "application/vnd.bus.test+json");

    // Scalars are JSON too.
    let e = round_trip(&s, "p.scalar", Some("application/json"), b"42").await;
    assert_eq!(e["payload"], json!(42));
    let e = round_trip(&s, "p.jstring", Some("application/json"), br#""hi""#).await;
    assert_eq!(e["payload"], json!("hi"));

    // A JSON content type whose bytes do not parse: a string.
    let e = round_trip(&s, "p.badjson", Some("application/json"), b"{not json").await;
    assert_eq!(e["payload"], json!("{not json"));
    assert_eq!(e["content_type"], "application/json");
    assert!(e.get("encoding").is_none());

    // Text: a string.
    let e = round_trip(
        &s,
        "p.text",
        Some("text/plain"),
        "héllo {\"x\":1}".as_bytes(),
    )
    .await;
    assert_eq!(e["payload"], json!("héllo {\"x\":1}"));
    assert_eq!(e["content_type"], "text/plain");

    // Valid JSON under a non-JSON content type stays a string.
    let e = round_trip(&s, "p.textjson", Some("text/plain"), br#"{"a":1}"#).await;
    assert_eq!(e["payload"], json!(r#"{"a":1}"#));

    // No content type: no content_type field; UTF-8 bytes are a string.
    let e = round_trip(&s, "p.none", None, b"plain").await;
    assert!(
        e.get("content_type").is_none(),
        "no Content-Type given: {e}"
    );
    assert_eq!(e["payload"], json!("plain"));

    // Binary: padded standard base64 with "encoding": "base64".
    let e = round_trip(
        &s,
        "p.bin",
        Some("application/octet-stream"),
        &[0xff, 0xfe, 0x00, 0x01],
    )
    .await;
    assert_eq!(e["payload"], json!("//4AAQ=="));
    assert_eq!(e["encoding"], "base64");
    assert_eq!(e["content_type"], "application/octet-stream");

    // Binary under a JSON content type: still base64.
    let e = round_trip(&s, "p.binjson", Some("application/json"), &[0x80]).await;
    assert_eq!(e["payload"], json!("gA=="));
    assert_eq!(e["encoding"], "base64");

    // An empty body is allowed and is the empty string.
    let e = round_trip(&s, "p.empty", None, b"").await;
    assert_eq!(e["payload"], json!(""));
}

engines!(json_payload_is_embedded_verbatim);
async fn json_payload_is_embedded_verbatim(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    // Key order and a number too large for f64/u64 survive only if the bytes are embedded as
    // they are, not re-serialised.
    let raw = r#"{"zeta":1,"alpha":[12345678901234567890123,0.10]}"#;
    s.publish_with("user.raw", &[("content-type", "application/json")], raw)
        .await;
    let r = s.get("/v1/events?pattern=user.raw&from=oldest").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.text().contains(raw),
        "pull page does not embed the payload verbatim: {}",
        r.text()
    );
}

engines!(bus_headers_are_stored_lowercase_with_reply_to);
async fn bus_headers_are_stored_lowercase_with_reply_to(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    s.publish_with(
        "user.created",
        &[
            ("Bus-Header-X-Trace", "abc-123"),
            ("Bus-Header-Tenant", "Acme Corp"),
            ("Bus-Reply-To", "user.replies.7"),
            ("X-Unrelated", "not an event header"),
        ],
        "x",
    )
    .await;
    s.publish("user.plain", "y").await;
    let events = s.pull_all("user.>").await;
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[0]["headers"],
        json!({"x-trace": "abc-123", "tenant": "Acme Corp"})
    );
    assert_eq!(events[0]["reply_to"], "user.replies.7");
    assert_eq!(events[1]["headers"], json!({}));
    assert!(events[1].get("reply_to").is_none(), "{}", events[1]);
}

engines!(duplicate_msg_id_within_window_returns_original_receipt);
async fn duplicate_msg_id_within_window_returns_original_receipt(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let first = s
        .publish_with("user.created", &[("bus-msg-id", "order-17")], "one")
        .await;
    assert!(first.get("duplicate").is_none(), "{first}");

    let r = s
        .post(
            "/v1/events/user.created",
            &[("bus-msg-id", "order-17")],
            "two",
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "duplicate answers 200: {}",
        r.text()
    );
    let dup = r.json();
    assert_eq!(dup["duplicate"], true, "{dup}");
    for k in ["id", "namespace", "sequence", "subject", "time"] {
        assert_eq!(dup[k], first[k], "duplicate receipt field {k}");
    }

    // Another id is a new event; the duplicate stored nothing.
    let other = s
        .publish_with("user.created", &[("bus-msg-id", "order-18")], "three")
        .await;
    assert_eq!(other["sequence"], 2);
    assert_eq!(texts(&s.pull_all("user.>").await), ["one", "three"]);

    // Dedup is per namespace: the same id elsewhere is a new event.
    let elsewhere = s
        .publish_with("order.created", &[("bus-msg-id", "order-17")], "four")
        .await;
    assert_eq!(elsewhere["sequence"], 1);
}

engines!(a_header_given_twice_counts_by_its_first_value);
async fn a_header_given_twice_counts_by_its_first_value(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    s.publish_with(
        "user.created",
        &[("bus-msg-id", "first"), ("bus-msg-id", "second")],
        "one",
    )
    .await;
    let again = s
        .post("/v1/events/user.created", &[("bus-msg-id", "first")], "two")
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text());
    assert_eq!(again.json()["duplicate"], true);
    let other = s
        .publish_with("user.created", &[("bus-msg-id", "second")], "three")
        .await;
    assert!(other.get("duplicate").is_none(), "{other}");
    assert_eq!(texts(&s.pull_all("user.>").await), ["one", "three"]);
}

// disk only: restarts and checks what survived (the memory engine starts empty).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_msg_id_is_still_a_duplicate_after_restart() {
    let mut s = TestServer::start_default().await;
    let first = s
        .publish_with("user.created", &[("bus-msg-id", "m-1")], "one")
        .await;
    s.restart().await;
    let r = s
        .post("/v1/events/user.created", &[("bus-msg-id", "m-1")], "again")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let dup = r.json();
    assert_eq!(dup["duplicate"], true);
    assert_eq!(dup["id"], first["id"]);
    assert_eq!(dup["sequence"], first["sequence"]);
    assert_eq!(texts(&s.pull_all("user.>").await), ["one"]);
}

engines!(msg_id_is_accepted_again_after_the_dedup_window);
async fn msg_id_is_accepted_again_after_the_dedup_window(engine: Engine) {
    const WINDOW: Duration = Duration::from_millis(300);
    let s = TestServer::start_on(engine, |c| c.log.dedup_window = WINDOW).await;
    let started = Instant::now();
    let first = s
        .publish_with("user.created", &[("bus-msg-id", "m-1")], "one")
        .await;
    // Waits on the observable condition (the id is accepted again), polling; each attempt
    // inside the window must be a duplicate that stores nothing.
    let deadline = Instant::now() + WAIT;
    let fresh = loop {
        let r = s
            .post("/v1/events/user.created", &[("bus-msg-id", "m-1")], "again")
            .await;
        match r.status {
            StatusCode::OK => {
                assert_eq!(r.json()["id"], first["id"]);
                assert!(
                    Instant::now() < deadline,
                    "id still a duplicate after {WAIT:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            StatusCode::CREATED => break r.json(),
            other => panic!("unexpected {other}: {}", r.text()),
        }
    };
    assert!(
        started.elapsed() >= WINDOW,
        "accepted again after {:?}, inside the {WINDOW:?} window",
        started.elapsed()
    );
    assert_eq!(fresh["sequence"], 2);
    assert_eq!(texts(&s.pull_all("user.>").await), ["one", "again"]);
}

engines!(batch_json_array_stores_every_item_in_order);
async fn batch_json_array_stores_every_item_in_order(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let body = json!([
        {"subject": "user.created", "payload": {"name": "ada"}},
        {"subject": "user.deleted", "payload": "bye"},
        {"subject": "user.bin", "payload": "//4AAQ==", "encoding": "base64"},
        {"subject": "user.custom", "payload": "a,b", "content_type": "text/csv",
         "headers": {"trace": "t1"}, "reply_to": "user.replies", "msg_id": "b-1"},
        {"subject": "user.empty"},
    ]);
    let r = s.publish_batch(body.to_string()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let receipts = r.json()["receipts"].as_array().expect("receipts").clone();
    let subjects = [
        "user.created",
        "user.deleted",
        "user.bin",
        "user.custom",
        "user.empty",
    ];
    assert_eq!(receipts.len(), subjects.len());
    for (i, (rc, subject)) in receipts.iter().zip(subjects).enumerate() {
        assert_eq!(assert_receipt(rc, subject), i as u64 + 1);
    }

    let events = s.pull_all("user.>").await;
    assert_eq!(events.len(), 5);
    assert_eq!(events[0]["payload"], json!({"name": "ada"}));
    assert_eq!(events[0]["content_type"], "application/json");
    assert_eq!(events[1]["payload"], "bye");
    assert_eq!(events[1]["content_type"], "text/plain; charset=utf-8");
    assert_eq!(events[2]["payload"], "//4AAQ==");
    assert_eq!(events[2]["encoding"], "base64");
    assert_eq!(events[2]["content_type"], "application/octet-stream");
    assert_eq!(events[3]["payload"], "a,b");
    assert_eq!(events[3]["content_type"], "text/csv");
    assert_eq!(events[3]["headers"], json!({"trace": "t1"}));
    assert_eq!(events[3]["reply_to"], "user.replies");
    assert_eq!(events[4]["payload"], "");
    for (e, rc) in events.iter().zip(&receipts) {
        assert_eq!(e["id"], rc["id"]);
    }

    // The batch's msg_id is remembered: publishing it again is a duplicate.
    let r = s
        .post("/v1/events/user.custom", &[("bus-msg-id", "b-1")], "again")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["id"], receipts[3]["id"]);
}

engines!(batch_ndjson_stores_every_item_in_order);
async fn batch_ndjson_stores_every_item_in_order(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let body = "{\"subject\":\"order.created\",\"payload\":{\"id\":1}}\n\
                {\"subject\":\"order.paid\",\"payload\":\"ok\"}\n\
                {\"subject\":\"order.shipped\",\"payload\":[1]}\n";
    let r = s
        .post(
            "/v1/events",
            &[("content-type", "application/x-ndjson")],
            body,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let receipts = r.json()["receipts"].as_array().unwrap().clone();
    assert_eq!(receipts.len(), 3);
    for (i, rc) in receipts.iter().enumerate() {
        assert_eq!(rc["sequence"], i as u64 + 1);
    }
    let events = s.pull_all("order.>").await;
    let subjects: Vec<&str> = events
        .iter()
        .map(|e| e["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["order.created", "order.paid", "order.shipped"]);
    assert_eq!(events[0]["payload"], json!({"id": 1}));
    assert_eq!(events[1]["payload"], "ok");
    assert_eq!(events[2]["payload"], json!([1]));
}

engines!(batch_strings_with_escapes_are_decoded);
async fn batch_strings_with_escapes_are_decoded(engine: Engine) {
    // Escaped and plain strings take different paths through the batch decoder (a plain one
    // is copied from the body as it is): both must store the decoded text.
    let s = TestServer::start_default_on(engine).await;
    let body = concat!(
        r#"{"subject":"\u006frder.esc","payload":"say \"hi\"\n\u00e9\\"}"#,
        "\n",
        r#"{"subject":"order.plain","payload":"caf\u00e9 plain"}"#,
        "\n",
        r#"{"subject":"order.raw","payload":"é, as UTF-8"}"#,
        "\n",
        r#"{"subject":"order.b64","payload":"aGk\u003d","encoding":"base64"}"#,
        "\n",
    );
    let r = s.publish_batch(body.to_owned()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let receipts = r.json()["receipts"].as_array().unwrap().clone();
    let subjects: Vec<&str> = receipts
        .iter()
        .map(|rc| rc["subject"].as_str().unwrap())
        .collect();
    assert_eq!(
        subjects,
        ["order.esc", "order.plain", "order.raw", "order.b64"]
    );
    let events = s.pull_all("order.>").await;
    assert_eq!(events[0]["subject"], "order.esc");
    assert_eq!(events[0]["payload"], "say \"hi\"\n\u{e9}\\");
    assert_eq!(events[1]["payload"], "caf\u{e9} plain");
    assert_eq!(events[2]["payload"], "\u{e9}, as UTF-8");
    // `aGk=` once its escape is decoded: "hi", shown as the text it is.
    assert_eq!(events[3]["payload"], "hi");
    assert_eq!(events[3]["content_type"], "application/octet-stream");
}

engines!(batch_duplicate_item_receipt_is_marked);
async fn batch_duplicate_item_receipt_is_marked(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let first = s
        .publish_with("user.created", &[("bus-msg-id", "d-1")], "one")
        .await;
    let body = json!([
        {"subject": "user.created", "payload": "dup", "msg_id": "d-1"},
        {"subject": "user.created", "payload": "new", "msg_id": "d-2"},
    ]);
    let r = s.publish_batch(body.to_string()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let receipts = r.json()["receipts"].as_array().unwrap().clone();
    assert_eq!(receipts.len(), 2);
    assert_eq!(receipts[0]["duplicate"], true);
    assert_eq!(receipts[0]["id"], first["id"]);
    assert!(receipts[1].get("duplicate").is_none_or(|d| d == false));
    assert_eq!(receipts[1]["sequence"], 2);
    assert_eq!(texts(&s.pull_all("user.>").await), ["one", "new"]);
}

/// Publishes one event so the namespace exists, then checks `body` is refused with
/// `status`/`code` and that the namespace still holds only that event.
async fn assert_batch_refused(s: &TestServer, body: &str, status: StatusCode, code: &str) {
    let r = s.publish_batch(body.to_owned()).await;
    r.assert_error(status, code);
    assert_eq!(
        texts(&s.pull_all("user.>").await),
        ["before"],
        "a refused batch stored something: {body}"
    );
    assert!(s.pull_all("order.>").await.is_empty());
}

engines!(batch_spanning_namespaces_is_refused_and_stores_nothing);
async fn batch_spanning_namespaces_is_refused_and_stores_nothing(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    s.publish("user.seed", "before").await;
    let body = json!([
        {"subject": "user.created", "payload": "a"},
        {"subject": "order.created", "payload": "b"},
    ]);
    assert_batch_refused(
        &s,
        &body.to_string(),
        StatusCode::BAD_REQUEST,
        "invalid_batch",
    )
    .await;
}

engines!(batch_with_one_item_over_the_payload_limit_is_413_and_stores_nothing);
async fn batch_with_one_item_over_the_payload_limit_is_413_and_stores_nothing(engine: Engine) {
    let s = TestServer::start_on(engine, |c| c.log.max_payload_bytes = 1024).await;
    s.publish("user.seed", "before").await;
    let body = json!([
        {"subject": "user.a", "payload": "small"},
        {"subject": "user.b", "payload": "x".repeat(1025)},
        {"subject": "user.c", "payload": "small"},
    ]);
    assert_batch_refused(
        &s,
        &body.to_string(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
    // Exactly at the limit is fine.
    let ok = json!([{"subject": "user.b", "payload": "x".repeat(1024)}]);
    let r = s.publish_batch(ok.to_string()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
}

engines!(empty_or_malformed_batch_is_invalid_batch_and_stores_nothing);
async fn empty_or_malformed_batch_is_invalid_batch_and_stores_nothing(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    s.publish("user.seed", "before").await;
    for body in [
        "[]",
        "",
        "[{\"subject\":\"user.a\"",
        "[{\"payload\":\"no subject\"}]",
        "[1,2]",
        "{\"subject\":\"user.a\"}\nnot json\n",
        "[{\"subject\":\"user.a\",\"payload\":\"!!!\",\"encoding\":\"base64\"}]",
    ] {
        assert_batch_refused(&s, body, StatusCode::BAD_REQUEST, "invalid_batch").await;
    }
}

// Local only: JetStream's atomic batches hold at most 1,000 events (see jetstream.rs), and
// the fsync policy this test sets is refused there.
engines!(local: batch_over_ten_thousand_items_is_invalid_batch);
async fn batch_over_ten_thousand_items_is_invalid_batch(engine: Engine) {
    let s = TestServer::start_on(engine, |c| {
        c.log.fsync = bus_broker::storage::FsyncPolicy::Never
    })
    .await;
    s.publish("user.seed", "before").await;
    let item = json!({"subject": "user.x", "payload": "p"});
    let too_many = Value::Array(vec![item.clone(); 10_001]);
    assert_batch_refused(
        &s,
        &too_many.to_string(),
        StatusCode::BAD_REQUEST,
        "invalid_batch",
    )
    .await;
    let at_limit = Value::Array(vec![item; 10_000]);
    let r = s.publish_batch(at_limit.to_string()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["receipts"].as_array().unwrap().len(), 10_000);
}

engines!(batch_item_with_an_invalid_subject_stores_nothing);
async fn batch_item_with_an_invalid_subject_stores_nothing(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    s.publish("user.seed", "before").await;
    for (subject, code) in [
        ("user..x", "invalid_subject"),
        ("user.*", "wildcard_in_subject"),
    ] {
        let body = json!([
            {"subject": "user.ok", "payload": "a"},
            {"subject": subject, "payload": "b"},
        ]);
        let r = s.publish_batch(body.to_string()).await;
        // Either the subject's own code or invalid_batch is a fair reading of the contract;
        // what matters is 400 and nothing stored.
        let v = r.json();
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{v}");
        let got = v["error"]["code"].as_str().unwrap_or("");
        assert!(
            got == code || got == "invalid_batch",
            "batch item {subject:?}: code {got:?}"
        );
        assert_eq!(texts(&s.pull_all("user.>").await), ["before"]);
    }
}
