//! End to end: at-least-once delivery over HTTP (`proto-docs/http-api.md`, "Consumers and
//! acknowledgements" and "Publish confirmation by N consumers"): redelivery after the ack wait
//! and its backoff list, dead letters, nack (now and delayed), in progress, term, max in
//! flight, batched acks, durable resumption after a disconnect and a restart, and publishes
//! confirmed by N consumers.
//!
//! Time-based rules run with short configured waits (100 ms to 400 ms). A test waits for the
//! event it expects (bounded by `WAIT`), never sleeps in the hope that something happened;
//! that something does *not* arrive is shown by a marker that must arrive first: usually a
//! later event's own redelivery, which comes after the one being ruled out would have.

use std::time::{Duration, Instant};

use bus_testkit::{
    Engine, SseReader, TestServer, d, enc, engines, eventually, name_of, next, next_n, put, send,
    within,
};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

/// The next dead letter on a `_bus_.dead.>` stream, checked for the documented shape;
/// returns its event JSON.
async fn expect_dead_letter(
    dead: &mut SseReader,
    consumer: &str,
    original_id: &str,
    original_subject: &str,
    count: u64,
    reason: &str,
) -> Value {
    let m = dead.expect_event().await;
    let e = m.json();
    assert_eq!(
        e["subject"],
        format!("_bus_.dead.{original_subject}"),
        "{e}"
    );
    assert_eq!(e["namespace"], "_bus_", "{e}");
    let h = &e["headers"];
    assert_eq!(h["bus-consumer"], consumer, "{e}");
    assert_eq!(h["bus-original-id"], original_id, "{e}");
    assert_eq!(h["bus-original-subject"], original_subject, "{e}");
    assert_eq!(h["bus-delivery-count"], count.to_string(), "{e}");
    assert_eq!(h["bus-reason"], reason, "{e}");
    assert!(
        e.get("delivery_count").is_none(),
        "a plain stream's events carry no delivery_count: {e}"
    );
    e
}

// ---------------------------------------------------------------------------------------
// Redelivery, backoff, dead letters
// ---------------------------------------------------------------------------------------

engines!(redelivers_after_the_ack_wait_with_the_delivery_count);
async fn redelivers_after_the_ack_wait_with_the_delivery_count(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let (mut st, hello) = s.attach("pattern=job.%3E&ack=manual&ack_wait=200ms").await;
    assert_eq!(hello["kind"], "subscription", "{hello}");
    assert_eq!(hello["ack"], "manual", "{hello}");
    assert_eq!(hello["ack_wait"], "200ms", "{hello}");
    let name = name_of(&hello);
    assert!(name.starts_with("~s-"), "generated name: {name}");

    let published = Instant::now();
    let e1 = put(&s, "job.run", "e1").await;
    assert_eq!(next(&mut st).await, d("e1", 1));
    assert_eq!(next(&mut st).await, d("e1", 2));
    assert!(
        published.elapsed() >= Duration::from_millis(200),
        "redelivered before the ack wait ran out: {:?}",
        published.elapsed()
    );
    s.expect_ack(&name, &e1, "ack", "acked").await;

    // Acked: never again. e2's own redelivery comes after e1's would have.
    let e2 = put(&s, "job.run", "e2").await;
    assert_eq!(next_n(&mut st, 2).await, [d("e2", 1), d("e2", 2)]);
    s.expect_ack(&name, &e2, "ack", "acked").await;
    let c = s.consumer(&name).await;
    assert_eq!(c["pending"], 0, "{c}");
    assert!(c["redelivered"].as_u64().unwrap() >= 2, "{c}");
}

engines!(backoff_sets_each_redelivery_wait_and_its_last_step_repeats);
async fn backoff_sets_each_redelivery_wait_and_its_last_step_repeats(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let (mut st, hello) = s
        .attach("pattern=job.%3E&ack=manual&ack_wait=1h&backoff=100ms,300ms")
        .await;
    assert_eq!(hello["backoff"], json!(["100ms", "300ms"]), "{hello}");
    let name = name_of(&hello);

    let published = Instant::now();
    let e1 = put(&s, "job.run", "e1").await;
    assert_eq!(next_n(&mut st, 2).await, [d("e1", 1), d("e1", 2)]);
    // The first step (100 ms) was waited, not ack_wait (an hour: past the end of the list,
    // it would hold the fourth delivery below beyond WAIT).
    assert!(published.elapsed() >= Duration::from_millis(100));

    // From here e1 waits 300 ms per delivery (the last step repeats), while e2, delivered
    // now, waits 100 ms after its first delivery then 300 ms: with e2 just behind e1's
    // second delivery at T, they are due at e2 T+100, e1 T+300, e2 T+400, e1 T+600.
    let e2 = put(&s, "job.run", "e2").await;
    assert_eq!(next(&mut st).await, d("e2", 1));
    assert_eq!(
        next_n(&mut st, 4).await,
        [d("e2", 2), d("e1", 3), d("e2", 3), d("e1", 4)]
    );
    s.expect_ack(&name, &e1, "ack", "acked").await;
    s.expect_ack(&name, &e2, "ack", "acked").await;
}

engines!(dead_letters_after_max_deliver_with_the_documented_headers);
async fn dead_letters_after_max_deliver_with_the_documented_headers(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let (mut st, hello) = s
        .attach("pattern=job.%3E&durable=worker&ack=manual&ack_wait=100ms&max_deliver=2")
        .await;
    assert_eq!(hello["max_deliver"], 2, "{hello}");
    let r = s
        .publish_with(
            "job.run",
            &[
                ("content-type", "application/json"),
                ("bus-header-trace", "abc"),
            ],
            r#"{"n":1}"#,
        )
        .await;
    let e1 = r["id"].as_str().unwrap().to_owned();
    for count in 1..=2 {
        let e = st.expect_event().await.json();
        assert_eq!(
            (e["id"].as_str(), e["delivery_count"].as_u64()),
            (Some(e1.as_str()), Some(count))
        );
    }

    let mut dead = s.subscribe("pattern=_bus_.dead.%3E&from=oldest").await;
    let letter = expect_dead_letter(&mut dead, "worker", &e1, "job.run", 2, "max_deliver").await;
    assert_eq!(
        letter["payload"],
        json!({"n": 1}),
        "payload unchanged: {letter}"
    );
    assert_eq!(letter["content_type"], "application/json", "{letter}");
    assert_eq!(
        letter["headers"]["trace"], "abc",
        "original headers kept: {letter}"
    );

    // Never redelivered: e2's second delivery comes after e1's third would have.
    let e2 = put(&s, "job.run", "e2").await;
    assert_eq!(next_n(&mut st, 2).await, [d("e2", 1), d("e2", 2)]);
    // e2 goes the same way; e1 is not dead-lettered twice.
    expect_dead_letter(&mut dead, "worker", &e2, "job.run", 2, "max_deliver").await;
    eventually("both dead letters resolved", || async {
        s.consumer("worker").await["pending"] == 0
    })
    .await;
    s.expect_ack("worker", &e1, "ack", "already_acked").await;
    s.expect_ack("worker", &e2, "nack", "already_acked").await;
}

engines!(a_nack_or_a_departure_ending_the_last_delivery_dead_letters_with_reason_max_deliver);
async fn a_nack_or_a_departure_ending_the_last_delivery_dead_letters_with_reason_max_deliver(
    engine: Engine,
) {
    let s = TestServer::start_default_on(engine).await;
    let mut dead = s.subscribe("pattern=_bus_.dead.%3E").await;

    // A nack of the last allowed delivery.
    let (mut st, _) = s
        .attach("pattern=job.%3E&durable=w&ack=manual&ack_wait=60s&max_deliver=2&heartbeat=1s")
        .await;
    let e1 = put(&s, "job.run", "e1").await;
    assert_eq!(next(&mut st).await, d("e1", 1));
    s.expect_ack("w", &e1, "nack", "nacked").await;
    assert_eq!(next(&mut st).await, d("e1", 2));
    s.expect_ack("w", &e1, "nack", "nacked").await;
    expect_dead_letter(&mut dead, "w", &e1, "job.run", 2, "max_deliver").await;

    // A delayed nack of the last allowed delivery, once the delay runs out.
    let e2 = put(&s, "job.run", "e2").await;
    assert_eq!(next(&mut st).await, d("e2", 1));
    s.expect_ack("w", &e2, "nack", "nacked").await;
    assert_eq!(next(&mut st).await, d("e2", 2));
    s.expect_ack("w", &e2, "nack?delay=100ms", "nacked").await;
    expect_dead_letter(&mut dead, "w", &e2, "job.run", 2, "max_deliver").await;

    // The holder leaving with the last allowed delivery.
    let e3 = put(&s, "job.run", "e3").await;
    assert_eq!(next(&mut st).await, d("e3", 1));
    s.expect_ack("w", &e3, "nack", "nacked").await;
    assert_eq!(next(&mut st).await, d("e3", 2));
    drop(st);
    expect_dead_letter(&mut dead, "w", &e3, "job.run", 2, "max_deliver").await;

    // None of them comes back to the next member.
    let (mut st, _) = s.attach("pattern=job.%3E&durable=w&ack=manual").await;
    put(&s, "job.run", "e4").await;
    assert_eq!(next(&mut st).await, d("e4", 1));
}

// ---------------------------------------------------------------------------------------
// nack, in progress, term
// ---------------------------------------------------------------------------------------

engines!(nack_redelivers_at_once_with_the_next_count);
async fn nack_redelivers_at_once_with_the_next_count(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    // An ack wait far beyond WAIT: only the nack can bring the event back in time.
    let (mut st, hello) = s.attach("pattern=job.%3E&ack=manual&ack_wait=1h").await;
    let name = name_of(&hello);
    let e1 = put(&s, "job.run", "e1").await;
    assert_eq!(next(&mut st).await, d("e1", 1));
    s.expect_ack(&name, &e1, "nack", "nacked").await;
    assert_eq!(next(&mut st).await, d("e1", 2));
    s.expect_ack(&name, &e1, "nack", "nacked").await;
    assert_eq!(next(&mut st).await, d("e1", 3));
    s.expect_ack(&name, &e1, "ack", "acked").await;
    let c = s.consumer(&name).await;
    assert_eq!(
        (c["pending"].as_u64(), c["redelivered"].as_u64()),
        (Some(0), Some(2)),
        "{c}"
    );
}

engines!(nack_with_a_delay_redelivers_after_the_delay);
async fn nack_with_a_delay_redelivers_after_the_delay(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let (mut st, hello) = s.attach("pattern=job.%3E&ack=manual&ack_wait=1h").await;
    let name = name_of(&hello);
    let e1 = put(&s, "job.run", "e1").await;
    assert_eq!(next(&mut st).await, d("e1", 1));
    let nacked = Instant::now();
    s.expect_ack(&name, &e1, "nack?delay=300ms", "nacked").await;
    // Not at once: an event published after the nack arrives first.
    let e2 = put(&s, "job.run", "e2").await;
    assert_eq!(next(&mut st).await, d("e2", 1));
    assert_eq!(
        next(&mut st).await,
        d("e1", 2),
        "the count goes up on redelivery"
    );
    assert!(
        nacked.elapsed() >= Duration::from_millis(300),
        "redelivered {:?} after a 300ms-delayed nack",
        nacked.elapsed()
    );
    s.expect_ack(&name, &e1, "ack", "acked").await;
    s.expect_ack(&name, &e2, "ack", "acked").await;
    assert_eq!(s.consumer(&name).await["redelivered"], 1);
}

engines!(nack_with_a_delay_holds_back_an_event_that_nobody_holds);
async fn nack_with_a_delay_holds_back_an_event_that_nobody_holds(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let q = "pattern=job.%3E&durable=w&ack=manual&ack_wait=1h&heartbeat=1s";
    let (mut st, _) = s.attach(q).await;
    let e1 = put(&s, "job.run", "e1").await;
    assert_eq!(next(&mut st).await, d("e1", 1));
    // Its holder leaves: e1 awaits the next member.
    drop(st);
    eventually("the member's departure is noticed", || async {
        s.consumer("w").await["members"] == 0
    })
    .await;
    let nacked = Instant::now();
    s.expect_ack("w", &e1, "nack?delay=300ms", "nacked").await;
    let (mut st, _) = s.attach(q).await;
    put(&s, "job.run", "marker").await;
    assert_eq!(next_n(&mut st, 2).await, [d("marker", 1), d("e1", 2)]);
    assert!(
        nacked.elapsed() >= Duration::from_millis(300),
        "redelivered {:?} after a 300ms-delayed nack",
        nacked.elapsed()
    );
}

engines!(progress_restarts_the_ack_wait_and_is_refused_once_the_event_awaits_redelivery);
async fn progress_restarts_the_ack_wait_and_is_refused_once_the_event_awaits_redelivery(
    engine: Engine,
) {
    let s = TestServer::start_default_on(engine).await;
    let (mut st, _) = s
        .attach("pattern=job.%3E&durable=w&ack=manual&ack_wait=400ms&heartbeat=1s")
        .await;
    let e1 = put(&s, "job.run", "e1").await;
    let e2 = put(&s, "job.run", "e2").await;
    assert_eq!(next_n(&mut st, 2).await, [d("e1", 1), d("e2", 1)]);
    // Both were delivered at about T; e1 is due back at T+400. e2, nacked with delays, is
    // the clock: back at T+200 (then e1's wait is restarted: due at T+600) and at T+500.
    s.expect_ack("w", &e2, "nack?delay=200ms", "nacked").await;
    assert_eq!(next(&mut st).await, d("e2", 2));
    s.expect_ack("w", &e1, "progress", "in_progress").await;
    s.expect_ack("w", &e2, "nack?delay=300ms", "nacked").await;
    // Without the progress e1 would be back at T+400, before e2.
    assert_eq!(next_n(&mut st, 2).await, [d("e2", 3), d("e1", 2)]);

    // A delivery whose delay is running is held by no one: progress is refused.
    s.expect_ack("w", &e1, "nack?delay=1h", "nacked").await;
    s.ack_op("w", &e1, "progress")
        .await
        .assert_error(StatusCode::CONFLICT, "not_held");

    // Nor is one whose holder left (it awaits the next member).
    drop(st);
    eventually("the member's departure is noticed", || async {
        s.consumer("w").await["members"] == 0
    })
    .await;
    s.ack_op("w", &e2, "progress")
        .await
        .assert_error(StatusCode::CONFLICT, "not_held");
    // It still counts as pending and can be acked.
    assert_eq!(s.consumer("w").await["pending"], 2);
    s.expect_ack("w", &e2, "ack", "acked").await;
    s.expect_ack("w", &e1, "ack", "acked").await;
}

engines!(term_dead_letters_at_once_and_never_redelivers);
async fn term_dead_letters_at_once_and_never_redelivers(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let mut dead = s.subscribe("pattern=_bus_.dead.%3E").await;
    let (mut st, hello) = s.attach("pattern=job.%3E&ack=manual&ack_wait=300ms").await;
    let name = name_of(&hello);
    let r = s
        .publish_with(
            "job.run",
            &[("content-type", "text/plain"), ("bus-header-k", "v")],
            "e1",
        )
        .await;
    let e1 = r["id"].as_str().unwrap().to_owned();
    assert_eq!(next(&mut st).await, d("e1", 1));
    s.expect_ack(&name, &e1, "term", "terminated").await;
    // Answered once the dead letter is stored and the event is no longer pending (so a
    // crash after the answer cannot bring it back).
    assert_eq!(s.consumer(&name).await["pending"], 0);
    let letter = expect_dead_letter(&mut dead, &name, &e1, "job.run", 1, "terminated").await;
    assert_eq!(letter["payload"], "e1", "{letter}");
    assert_eq!(letter["headers"]["k"], "v", "{letter}");

    // e1 was due back 300 ms after its delivery; e2's second delivery comes later.
    let e2 = put(&s, "job.run", "e2").await;
    assert_eq!(next_n(&mut st, 2).await, [d("e2", 1), d("e2", 2)]);
    for op in ["ack", "nack", "progress", "term"] {
        s.expect_ack(&name, &e1, op, "already_acked").await;
    }
    s.expect_ack(&name, &e2, "ack", "acked").await;
    assert_eq!(s.consumer(&name).await["pending"], 0);
}

// ---------------------------------------------------------------------------------------
// Max in flight, batched acks
// ---------------------------------------------------------------------------------------

engines!(max_in_flight_holds_back_new_events_until_an_ack);
async fn max_in_flight_holds_back_new_events_until_an_ack(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let e1 = put(&s, "job.run", "e1").await;
    let e2 = put(&s, "job.run", "e2").await;
    let e3 = put(&s, "job.run", "e3").await;
    let (mut st, hello) = s
        .attach("pattern=job.%3E&from=oldest&ack=manual&ack_wait=300ms&max_in_flight=2")
        .await;
    assert_eq!(hello["max_in_flight"], 2, "{hello}");
    let name = name_of(&hello);
    assert_eq!(next_n(&mut st, 2).await, [d("e1", 1), d("e2", 1)]);

    // e3 stays in the log: what comes next is the redelivery of the two in flight.
    assert_eq!(next_n(&mut st, 2).await, [d("e1", 2), d("e2", 2)]);
    let c = s.consumer(&name).await;
    assert_eq!(c["pending"], 2, "{c}");
    assert_eq!(c["positions"], json!({"job": 3}), "{c}");
    assert_eq!(c["lag"], 1, "{c}");
    // Not yet delivered: not this consumer's to acknowledge.
    s.ack_op(&name, &e3, "ack")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_delivered");

    // One ack makes room for exactly one new event.
    s.expect_ack(&name, &e1, "ack", "acked").await;
    loop {
        let (p, count) = next(&mut st).await;
        if p == "e3" {
            assert_eq!(count, 1);
            break;
        }
        assert_eq!(p, "e2", "only e2 is redelivered while waiting for e3");
    }
    s.expect_ack(&name, &e2, "ack", "acked").await;
    s.expect_ack(&name, &e3, "ack", "acked").await;
    let c = s.consumer(&name).await;
    assert_eq!(
        (c["pending"].as_u64(), c["lag"].as_u64()),
        (Some(0), Some(0)),
        "{c}"
    );
}

engines!(a_batch_of_acks_answers_each_entry_in_order);
async fn a_batch_of_acks_answers_each_entry_in_order(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let mut dead = s.subscribe("pattern=_bus_.dead.%3E").await;
    let (mut st, _) = s
        .attach("pattern=job.a.%3E&durable=w&ack=manual&ack_wait=1h")
        .await;
    let mut ids = Vec::new();
    for i in 1..=5 {
        ids.push(put(&s, "job.a.run", &format!("e{i}")).await);
    }
    let other_subject = put(&s, "job.b.run", "not for w").await;
    let other_namespace = put(&s, "mail.sent", "not for w either").await;
    let got = next_n(&mut st, 5).await;
    assert_eq!(
        got,
        (1..=5).map(|i| d(&format!("e{i}"), 1)).collect::<Vec<_>>()
    );
    // An id of the right shape that the namespace never held.
    let (stem, inc) = ids[0].rsplit_once('-').unwrap();
    let (ns_part, _) = stem.rsplit_once('-').unwrap();
    let never = format!("{ns_part}-999-{inc}");

    let body = json!([
        ids[0],
        {"id": ids[1], "op": "nack"},
        {"id": ids[2], "op": "progress"},
        {"id": ids[3], "op": "term"},
        {"id": ids[4]},
        ids[0],
        {"id": ids[4], "op": "ack", "delay": "1s"},
        {"id": ids[2], "op": "bogus"},
        other_subject,
        other_namespace,
        never,
        "not-an-id",
    ]);
    let r = s.ack_batch("w", body.to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let results = r.json()["results"].as_array().expect("results").clone();
    assert_eq!(results.len(), 12, "one result per entry: {results:?}");
    let statuses = [
        (0, "acked"),
        (1, "nacked"),
        (2, "in_progress"),
        (3, "terminated"),
        (4, "acked"),
        (5, "already_acked"),
    ];
    for (i, status) in statuses {
        assert_eq!(
            results[i],
            json!({"id": body[i].as_str().or(body[i]["id"].as_str()), "status": status}),
            "entry {i}"
        );
    }
    let errors = [
        (6, "invalid_parameter"),
        (7, "invalid_parameter"),
        (8, "not_delivered"),
        (9, "not_delivered"),
        (10, "unknown_event"),
        (11, "invalid_parameter"),
    ];
    for (i, code) in errors {
        let e = &results[i];
        let id = body[i].as_str().or(body[i]["id"].as_str()).unwrap();
        assert_eq!(e["id"], id, "entry {i}: {e}");
        assert!(e.get("status").is_none(), "entry {i}: {e}");
        assert_eq!(e["error"]["code"], code, "entry {i}: {e}");
        assert!(
            e["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "entry {i}: {e}"
        );
    }

    // Each took effect: e2 back at once, e4 dead-lettered, e3 still pending.
    assert_eq!(next(&mut st).await, d("e2", 2));
    expect_dead_letter(&mut dead, "w", &ids[3], "job.a.run", 1, "terminated").await;
    eventually("e4's dead letter resolved", || async {
        s.consumer("w").await["pending"] == 2
    })
    .await;
    let r = s
        .ack_batch("w", json!([ids[1], ids[2], ids[3]]).to_string())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let statuses: Vec<Value> = r.json()["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["status"].clone())
        .collect();
    assert_eq!(statuses, ["acked", "acked", "already_acked"]);
    assert_eq!(s.consumer("w").await["pending"], 0);
}

engines!(a_batch_nack_with_a_delay_waits_that_delay);
async fn a_batch_nack_with_a_delay_waits_that_delay(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let (mut st, _) = s
        .attach("pattern=job.%3E&durable=w&ack=manual&ack_wait=1h")
        .await;
    let e1 = put(&s, "job.run", "e1").await;
    assert_eq!(next(&mut st).await, d("e1", 1));
    let nacked = Instant::now();
    let r = s
        .ack_batch(
            "w",
            json!([{"id": e1, "op": "nack", "delay": "200ms"}]).to_string(),
        )
        .await;
    assert_eq!(
        r.json(),
        json!({"results": [{"id": e1, "status": "nacked"}]})
    );
    put(&s, "job.run", "marker").await;
    assert_eq!(next_n(&mut st, 2).await, [d("marker", 1), d("e1", 2)]);
    assert!(nacked.elapsed() >= Duration::from_millis(200));
}

// ---------------------------------------------------------------------------------------
// Durable consumers resume
// ---------------------------------------------------------------------------------------

engines!(a_durable_resumes_after_a_disconnect_with_what_was_not_acked);
async fn a_durable_resumes_after_a_disconnect_with_what_was_not_acked(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    // heartbeat=1s lets the server notice the disconnect; ack_wait=1h rules out a
    // redelivery for any other reason.
    let q = "pattern=job.%3E&from=oldest&durable=w&ack=manual&ack_wait=1h&heartbeat=1s";
    let mut ids = Vec::new();
    for i in 1..=3 {
        ids.push(put(&s, "job.run", &format!("e{i}")).await);
    }
    let (mut st, hello) = s.attach(q).await;
    assert_eq!(hello["kind"], "durable");
    assert_eq!(hello["consumer"], "w");
    assert_eq!(
        next_n(&mut st, 3).await,
        [d("e1", 1), d("e2", 1), d("e3", 1)]
    );
    s.expect_ack("w", &ids[0], "ack", "acked").await;
    s.expect_ack("w", &ids[2], "ack", "acked").await;
    drop(st);

    // The next member (attached maybe before the first one is noticed gone) gets e2 as soon
    // as its holder is gone, then only new events.
    let (mut st, _) = s.attach(q).await;
    assert_eq!(next(&mut st).await, d("e2", 2));
    put(&s, "job.run", "e4").await;
    assert_eq!(next(&mut st).await, d("e4", 1));
    let c = s.consumer("w").await;
    assert_eq!(c["pending"], 2, "{c}");
    assert_eq!(c["positions"], json!({"job": 5}), "{c}");
}

// disk only: restarts and checks what survived (the memory engine starts empty).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_resumes_after_a_graceful_restart() {
    let mut s = TestServer::start_default().await;
    let q = "pattern=job.%3E&from=oldest&durable=w&ack=manual&ack_wait=1h&max_deliver=5";
    let mut ids = Vec::new();
    for i in 1..=3 {
        ids.push(put(&s, "job.run", &format!("e{i}")).await);
    }
    let (mut st, _) = s.attach(q).await;
    assert_eq!(
        next_n(&mut st, 3).await,
        [d("e1", 1), d("e2", 1), d("e3", 1)]
    );
    s.expect_ack("w", &ids[1], "ack", "acked").await;
    s.restart().await;
    let shutdown = st.next_event().await.expect("shutdown message");
    assert_eq!(shutdown.event.as_deref(), Some("shutdown"), "{shutdown:?}");
    drop(st);

    // Its settings, position and pending deliveries survived; no delivery has a holder.
    let c = s.consumer("w").await;
    assert_eq!(c["kind"], "durable", "{c}");
    assert_eq!(c["ack_wait"], "3600000ms", "{c}");
    assert_eq!(c["max_deliver"], 5, "{c}");
    assert_eq!(c["pending"], 2, "{c}");
    assert_eq!(c["members"], 0, "{c}");
    assert_eq!(c["positions"], json!({"job": 4}), "{c}");
    s.ack_op("w", &ids[0], "progress")
        .await
        .assert_error(StatusCode::CONFLICT, "not_held");

    // Redeliveries first, at once, lowest sequence first; then the new event. The acked
    // one never comes back, and `from` does not matter any more.
    put(&s, "job.run", "e4").await;
    let (mut st, _) = s
        .attach("pattern=job.%3E&from=newest&durable=w&ack=manual")
        .await;
    assert_eq!(
        next_n(&mut st, 3).await,
        [d("e1", 2), d("e3", 2), d("e4", 1)]
    );
    s.expect_ack("w", &ids[1], "ack", "already_acked").await;
    s.expect_ack("w", &ids[0], "ack", "acked").await;
}

// disk only: restarts and checks what survived (the memory engine starts empty).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_last_delivery_held_at_a_restart_is_dead_lettered_once() {
    let mut s = TestServer::start_default().await;
    let q = "pattern=job.%3E&durable=w&ack=manual&ack_wait=1h&max_deliver=1";
    let (mut st, _) = s.attach(q).await;
    let e1 = put(&s, "job.run", "e1").await;
    assert_eq!(next(&mut st).await, d("e1", 1));
    // Its only delivery ends with the broker (or with the member at shutdown).
    s.restart().await;
    drop(st);
    let mut dead = s.subscribe("pattern=_bus_.dead.%3E&from=oldest").await;
    expect_dead_letter(&mut dead, "w", &e1, "job.run", 1, "max_deliver").await;
    // Not redelivered, and not dead-lettered twice: the next dead letter is e2's.
    let (mut st, _) = s.attach(q).await;
    let e2 = put(&s, "job.run", "e2").await;
    assert_eq!(next(&mut st).await, d("e2", 1));
    s.expect_ack("w", &e2, "term", "terminated").await;
    expect_dead_letter(&mut dead, "w", &e2, "job.run", 1, "terminated").await;
    s.expect_ack("w", &e1, "ack", "already_acked").await;
}

// disk only: restarts and checks what survived (the memory engine starts empty).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_created_from_newest_does_not_replay_history_after_a_restart() {
    let mut s = TestServer::start_default().await;
    put(&s, "job.run", "old").await;
    let (st, _) = s.attach("pattern=job.%3E&durable=w&ack=manual").await;
    drop(st);
    s.restart().await;
    let (mut st, _) = s.attach("pattern=job.%3E&durable=w&ack=manual").await;
    put(&s, "job.run", "new").await;
    assert_eq!(next(&mut st).await, d("new", 1));
}

// ---------------------------------------------------------------------------------------
// Publish confirmation by N consumers
// ---------------------------------------------------------------------------------------

/// Starts `POST /v1/events/{subject}?{query}` in the background; the answer is the task's.
fn publish_in_background(
    s: &TestServer,
    subject: &str,
    query: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> tokio::task::JoinHandle<bus_testkit::Resp> {
    let client = s.client.clone();
    let url = s.url(&format!("/v1/events/{}?{query}", enc(subject)));
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let body = body.to_owned();
    tokio::spawn(async move {
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        send(&client, Method::POST, &url, &h, body.into()).await
    })
}

async fn answer(task: tokio::task::JoinHandle<bus_testkit::Resp>) -> bus_testkit::Resp {
    within("the confirming publish to answer", task)
        .await
        .expect("publish task")
}

engines!(a_publish_confirmed_by_two_consumers_answers_201_once_both_acked);
async fn a_publish_confirmed_by_two_consumers_answers_201_once_both_acked(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let (mut a, _) = s.attach("pattern=order.%3E&durable=a&ack=manual").await;
    let (mut b, _) = s.attach("pattern=order.%3E&durable=b&ack=manual").await;
    let task = publish_in_background(&s, "order.placed", "confirm=2&timeout=5s", &[], "o1");
    let id = a.expect_event().await.json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(b.expect_event().await.json()["id"], id.as_str());
    s.expect_ack("a", &id, "ack", "acked").await;
    assert!(
        !task.is_finished(),
        "the publish answered with one of two confirmations"
    );
    s.expect_ack("b", &id, "ack", "acked").await;
    let r = answer(task).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let v = r.json();
    assert_eq!(v["id"], id.as_str(), "{v}");
    assert_eq!(v["subject"], "order.placed", "{v}");
    assert_eq!(v["namespace"], "order", "{v}");
    assert_eq!(
        (v["confirmed"].as_u64(), v["required"].as_u64()),
        (Some(2), Some(2)),
        "{v}"
    );
}

engines!(manual_ack_subscriptions_each_count_on_their_own);
async fn manual_ack_subscriptions_each_count_on_their_own(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let (mut a, ha) = s.attach("pattern=order.%3E&ack=manual").await;
    let (mut b, hb) = s.attach("pattern=order.%3E&ack=manual").await;
    let task = publish_in_background(&s, "order.placed", "confirm=2", &[], "o1");
    let id = a.expect_event().await.json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(b.expect_event().await.json()["id"], id.as_str());
    s.expect_ack(&name_of(&ha), &id, "ack", "acked").await;
    s.expect_ack(&name_of(&hb), &id, "ack", "acked").await;
    let r = answer(task).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["confirmed"], 2);
}

engines!(a_publish_not_confirmed_in_time_answers_202_and_repeated_or_ack_none_acks_do_not_count);
async fn a_publish_not_confirmed_in_time_answers_202_and_repeated_or_ack_none_acks_do_not_count(
    engine: Engine,
) {
    let s = TestServer::start_default_on(engine).await;
    let (mut a, _) = s.attach("pattern=order.%3E&durable=a&ack=manual").await;
    // A durable in ack mode none, and a plain stream: they receive the event, never count.
    let (mut none, hello) = s.attach("pattern=order.%3E&durable=n").await;
    assert_eq!(hello["ack"], "none", "{hello}");
    let mut plain = s.subscribe("pattern=order.%3E").await;
    let started = Instant::now();
    let task = publish_in_background(&s, "order.placed", "confirm=2&timeout=2s", &[], "o1");
    let id = a.expect_event().await.json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let e = none.expect_event().await.json();
    assert_eq!(e["id"], id.as_str());
    assert!(
        e.get("delivery_count").is_none(),
        "ack none: no delivery_count: {e}"
    );
    assert_eq!(plain.expect_event().await.json()["id"], id.as_str());
    // One consumer acking twice, both ways.
    s.expect_ack("a", &id, "ack", "acked").await;
    s.expect_ack("a", &id, "ack", "already_acked").await;
    let r = s.ack_batch("a", json!([id]).to_string()).await;
    assert_eq!(r.json()["results"][0]["status"], "already_acked");
    s.ack_op("n", &id, "ack")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_parameter");

    let r = answer(task).await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let v = r.json();
    assert_eq!(v["id"], id.as_str(), "{v}");
    assert_eq!(
        (v["confirmed"].as_u64(), v["required"].as_u64()),
        (Some(1), Some(2)),
        "{v}"
    );
    // The event stays stored.
    let stored = s.pull_all("order.>").await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["id"], id.as_str());
}

engines!(a_confirming_publish_of_a_duplicate_answers_200_without_waiting);
async fn a_confirming_publish_of_a_duplicate_answers_200_without_waiting(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let first = s
        .publish_with("order.placed", &[("bus-msg-id", "o-1")], "o1")
        .await;
    let started = Instant::now();
    let r = s
        .post(
            "/v1/events/order.placed?confirm=3&timeout=5s",
            &[("bus-msg-id", "o-1")],
            "o1",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(v["duplicate"], true, "{v}");
    assert_eq!(v["id"], first["id"], "{v}");
    assert!(v.get("confirmed").is_none(), "{v}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "it waited: {:?}",
        started.elapsed()
    );
}

engines!(confirmation_parameters_are_checked);
async fn confirmation_parameters_are_checked(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    for q in [
        "confirm=0",
        "confirm=1001",
        "confirm=two",
        "confirm=1&timeout=0s",
        "confirm=1&timeout=6m",
        "confirm=1&timeout=soon",
        "timeout=1s",
    ] {
        s.post(&format!("/v1/events/order.placed?{q}"), &[], "x")
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_parameter");
    }
    // Nothing was stored.
    assert!(s.pull_all("order.>").await.is_empty());
}
