//! End to end: consumers as named things over HTTP (`proto-docs/http-api.md`, "Consumers and
//! acknowledgements"): queue groups and durables shared by their members, failover when a
//! member leaves, fan-out across names, re-attaching, ephemeral state dropped with its last
//! member, seek, delete, the listing, and every error case of attaching and acknowledging.
//!
//! Streams whose disconnect the server must notice ask for `heartbeat=1s` (the server learns
//! that a client went away when it writes to it). Ack waits that must not run out during a
//! test are `1h`, so that a redelivery within `WAIT` can only come from the rule under test.

use std::collections::{BTreeMap, BTreeSet};

use bus_testkit::{
    Engine, Resp, SseReader, TestServer, assert_time, d, engines, eventually, next, next_n, put,
};
use hyper::StatusCode;
use serde_json::{Value, json};

/// Reads from two members until `n` deliveries arrived between them; returns (member index,
/// event JSON) in arrival order.
async fn read_both(a: &mut SseReader, b: &mut SseReader, n: usize) -> Vec<(usize, Value)> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        // Cancelling the other branch's read loses nothing: the reader keeps what it
        // buffered, and a body frame is taken only when complete.
        let (i, m) = tokio::select! {
            m = a.expect_event() => (0, m),
            m = b.expect_event() => (1, m),
        };
        out.push((i, m.json()));
    }
    out
}

/// Waits until consumer `name` has `n` live members.
async fn members_become(s: &TestServer, name: &str, n: u64) {
    eventually(&format!("consumer {name} to have {n} members"), || async {
        s.consumer(name).await["members"] == n
    })
    .await;
}

/// Answers `GET /v1/stream?<query>` in full: for streams refused before they start.
async fn refused_stream(s: &TestServer, query: &str) -> Resp {
    s.get(&format!("/v1/stream?{query}")).await
}

// ---------------------------------------------------------------------------------------
// Sharing, failover, fan-out
// ---------------------------------------------------------------------------------------

engines!(a_queue_group_gives_each_event_to_exactly_one_member_and_every_event_to_one);
async fn a_queue_group_gives_each_event_to_exactly_one_member_and_every_event_to_one(
    engine: Engine,
) {
    let s = TestServer::start_default_on(engine).await;
    let q = "pattern=job.%3E&group=g&ack=manual&ack_wait=1h";
    let (mut a, ha) = s.attach(q).await;
    let (mut b, hb) = s.attach(q).await;
    assert_eq!(
        (ha["consumer"].as_str(), ha["kind"].as_str()),
        (Some("g"), Some("group"))
    );
    assert_eq!(hb["consumer"], "g");
    assert_ne!(ha["subscription"], hb["subscription"]);

    let mut published = BTreeSet::new();
    for i in 0..20 {
        published.insert(put(&s, "job.run", &format!("e{i}")).await);
    }
    let got = read_both(&mut a, &mut b, 20).await;
    let ids: BTreeSet<String> = got
        .iter()
        .map(|(_, e)| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, published, "every event to someone, none twice");
    assert!(got.iter().all(|(_, e)| e["delivery_count"] == 1), "{got:?}");
    let c = s.consumer("g").await;
    assert_eq!(c["members"], 2, "{c}");
    assert_eq!(c["pending"], 20, "each event pending once: {c}");
    assert_eq!(c["redelivered"], 0, "{c}");

    // Each is acknowledged once, whichever member had it.
    let body: Vec<&String> = published.iter().collect();
    let r = s
        .ack_batch("g", serde_json::to_string(&body).unwrap())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    for x in r.json()["results"].as_array().unwrap() {
        assert_eq!(x["status"], "acked", "{x}");
    }
    assert_eq!(s.consumer("g").await["pending"], 0);
}

engines!(durable_members_share_its_events_within_their_own_caps);
async fn durable_members_share_its_events_within_their_own_caps(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    // The consumer is created with max_in_flight=20; its creator leaves.
    let (first, hello) = s
        .attach("pattern=job.%3E&durable=w&ack=manual&ack_wait=1h&max_in_flight=20&heartbeat=1s")
        .await;
    assert_eq!(hello["max_in_flight"], 20);
    drop(first);
    members_become(&s, "w", 0).await;

    // Two members capped at 10 each: 20 events must split 10 and 10.
    let q = "pattern=job.%3E&durable=w&ack=manual&max_in_flight=10";
    let (mut a, ha) = s.attach(q).await;
    let (mut b, _) = s.attach(q).await;
    assert_eq!(ha["max_in_flight"], 20, "the consumer's own bound: {ha}");
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(put(&s, "job.run", &format!("e{i}")).await);
    }
    let got = read_both(&mut a, &mut b, 20).await;
    let mut per_member: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (i, e) in &got {
        per_member
            .entry(*i)
            .or_default()
            .push(e["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(per_member.get(&0).map(Vec::len), Some(10), "{per_member:?}");
    assert_eq!(per_member.get(&1).map(Vec::len), Some(10), "{per_member:?}");

    // The consumer is at its bound: e20 waits. Acking one of a's events frees room that
    // only a may use (b is at its own cap), so e20 goes to a.
    put(&s, "job.run", "e20").await;
    let c = s.consumer("w").await;
    assert_eq!(
        (c["pending"].as_u64(), c["lag"].as_u64()),
        (Some(20), Some(1)),
        "{c}"
    );
    s.expect_ack("w", &per_member[&0][0], "ack", "acked").await;
    assert_eq!(next(&mut a).await, d("e20", 1));
}

engines!(max_in_flight_bounds_the_consumer_across_its_members);
async fn max_in_flight_bounds_the_consumer_across_its_members(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    // Each member may hold 2 (the consumer's bound is its default cap), the two together 2.
    let q = "pattern=job.%3E&group=g&ack=manual&ack_wait=300ms&max_in_flight=2";
    let (mut a, _) = s.attach(q).await;
    let (mut b, hb) = s
        .attach("pattern=job.%3E&group=g&ack=manual&ack_wait=300ms")
        .await;
    assert_eq!(hb["max_in_flight"], 2, "{hb}");
    let mut ids = Vec::new();
    for i in 1..=4 {
        ids.push(put(&s, &format!("job.e{i}"), "x").await);
    }
    // e1 and e2 go out, then only come back (count 2) until an ack: e3 and e4 wait.
    let got = read_both(&mut a, &mut b, 4).await;
    let seen: Vec<(String, u64)> = got
        .iter()
        .map(|(_, e)| {
            (
                e["subject"].as_str().unwrap().to_owned(),
                e["delivery_count"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut first = seen[..2].to_vec();
    first.sort();
    let mut second = seen[2..].to_vec();
    second.sort();
    assert_eq!(first, [d("job.e1", 1), d("job.e2", 1)], "{seen:?}");
    assert_eq!(second, [d("job.e1", 2), d("job.e2", 2)], "{seen:?}");
    // Acking both lets exactly e3 and e4 out.
    let r = s.ack_batch("g", json!([ids[0], ids[1]]).to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let mut subjects = Vec::new();
    while subjects.len() < 2 {
        let (_, e) = read_both(&mut a, &mut b, 1).await.remove(0);
        let subject = e["subject"].as_str().unwrap().to_owned();
        // An e1 or e2 redelivery may still be on its way from before the acks.
        if subject == "job.e3" || subject == "job.e4" {
            assert_eq!(e["delivery_count"], 1, "{e}");
            subjects.push(subject);
        }
    }
    subjects.sort();
    assert_eq!(subjects, ["job.e3", "job.e4"]);
}

engines!(what_a_leaving_member_held_goes_to_the_other_at_once);
async fn what_a_leaving_member_held_goes_to_the_other_at_once(engine: Engine) {
    for kind in ["group=g", "durable=g"] {
        let s = TestServer::start_default_on(engine).await;
        let q = format!("pattern=job.%3E&{kind}&ack=manual&ack_wait=1h&heartbeat=1s");
        let (mut a, _) = s.attach(&q).await;
        let e1 = put(&s, "job.run", "e1").await;
        assert_eq!(next(&mut a).await, d("e1", 1), "{kind}");
        let (mut b, _) = s.attach(&q).await;
        drop(a);
        // The ack wait is an hour: only the departure can bring e1 back now.
        assert_eq!(next(&mut b).await, d("e1", 2), "{kind}");
        put(&s, "job.run", "e2").await;
        assert_eq!(next(&mut b).await, d("e2", 1), "{kind}");
        s.expect_ack("g", &e1, "ack", "acked").await;
        let c = s.consumer("g").await;
        assert_eq!(
            (c["members"].as_u64(), c["pending"].as_u64()),
            (Some(1), Some(1)),
            "{kind}: {c}"
        );
    }
}

engines!(different_consumers_each_get_every_event);
async fn different_consumers_each_get_every_event(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let (mut d1, _) = s
        .attach("pattern=job.%3E&durable=d1&ack=manual&ack_wait=1h")
        .await;
    let (mut d2, _) = s
        .attach("pattern=job.%3E&durable=d2&ack=manual&ack_wait=1h")
        .await;
    let (mut g, _) = s
        .attach("pattern=job.%3E&group=g&ack=manual&ack_wait=1h")
        .await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(put(&s, "job.run", &format!("e{i}")).await);
    }
    let all: Vec<_> = (0..5).map(|i| d(&format!("e{i}"), 1)).collect();
    assert_eq!(next_n(&mut d1, 5).await, all);
    assert_eq!(next_n(&mut d2, 5).await, all);
    assert_eq!(next_n(&mut g, 5).await, all);
    // Acks of one consumer are its own.
    for id in &ids {
        s.expect_ack("d1", id, "ack", "acked").await;
    }
    assert_eq!(s.consumer("d1").await["pending"], 0);
    assert_eq!(s.consumer("d2").await["pending"], 5);
    assert_eq!(s.consumer("g").await["pending"], 5);
    s.expect_ack("d2", &ids[0], "ack", "acked").await;
}

// ---------------------------------------------------------------------------------------
// Re-attaching, ephemeral state
// ---------------------------------------------------------------------------------------

engines!(reattaching_with_another_start_resumes_from_the_consumer_s_floor);
async fn reattaching_with_another_start_resumes_from_the_consumer_s_floor(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let mut ids = Vec::new();
    for i in 1..=3 {
        ids.push(put(&s, "job.run", &format!("e{i}")).await);
    }
    let q = |from: &str| {
        format!("pattern=job.%3E&from={from}&durable=w&ack=manual&ack_wait=1h&heartbeat=1s")
    };
    let (mut st, hello) = s.attach(&q("oldest")).await;
    assert_eq!(hello["from"], "oldest");
    assert_eq!(
        next_n(&mut st, 3).await,
        [d("e1", 1), d("e2", 1), d("e3", 1)]
    );
    for id in &ids {
        s.expect_ack("w", id, "ack", "acked").await;
    }
    drop(st);
    members_become(&s, "w", 0).await;

    // `newest` does not skip what the consumer has not read yet.
    ids.push(put(&s, "job.run", "e4").await);
    ids.push(put(&s, "job.run", "e5").await);
    let (mut st, _) = s.attach(&q("newest")).await;
    assert_eq!(next_n(&mut st, 2).await, [d("e4", 1), d("e5", 1)]);
    s.expect_ack("w", &ids[3], "ack", "acked").await;
    drop(st);
    members_become(&s, "w", 0).await;

    // `oldest`, an event id, or a Last-Event-ID do not replay what was acked: e5 (not acked)
    // comes back first, then e6.
    let from_e1 = bus_testkit::enc(&ids[0]);
    let mut st = s.stream(&q(&from_e1), &[("last-event-id", &ids[1])]).await;
    st.expect_subscribed().await;
    assert_eq!(next(&mut st).await, d("e5", 2));
    put(&s, "job.run", "e6").await;
    assert_eq!(next(&mut st).await, d("e6", 1));
    drop(st);
    members_become(&s, "w", 0).await;
    let (mut st, _) = s.attach(&q("oldest")).await;
    put(&s, "job.run", "e7").await;
    assert_eq!(
        next_n(&mut st, 3).await,
        [d("e5", 3), d("e6", 2), d("e7", 1)]
    );
}

engines!(a_new_consumer_starts_at_from_whatever_last_event_id_says);
async fn a_new_consumer_starts_at_from_whatever_last_event_id_says(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let e1 = put(&s, "job.run", "e1").await;
    let e2 = put(&s, "job.run", "e2").await;
    for q in [
        "pattern=job.%3E&from=oldest&durable=w&ack=manual",
        "pattern=job.%3E&from=oldest&ack=manual",
    ] {
        let mut st = s.stream(q, &[("last-event-id", &e2)]).await;
        let hello = st.expect_subscribed().await;
        assert_eq!(hello["from"], "oldest", "{q}: {hello}");
        let first = st.expect_event().await.json();
        assert_eq!(first["id"], e1.as_str(), "{q}: {first}");
        assert_eq!(next(&mut st).await, d("e2", 1), "{q}");
    }
}

engines!(an_ephemeral_consumer_is_dropped_with_its_last_member);
async fn an_ephemeral_consumer_is_dropped_with_its_last_member(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let q = "pattern=job.%3E&group=g&ack=manual&ack_wait=1h&heartbeat=1s";
    let (mut a, _) = s.attach(q).await;
    let (mut b, _) = s.attach(q).await;
    let (single, hello) = s
        .attach("pattern=job.%3E&ack=manual&ack_wait=1h&heartbeat=1s")
        .await;
    let single_name = hello["consumer"].as_str().unwrap().to_owned();
    assert_eq!(hello["kind"], "subscription");
    assert_eq!(s.consumer("g").await["members"], 2);
    assert_eq!(s.consumer(&single_name).await["members"], 1);
    let e1 = put(&s, "job.run", "e1").await;
    assert_eq!(read_both(&mut a, &mut b, 1).await.len(), 1);

    // One member leaving keeps the group (and hands e1 over at once if it held it).
    drop(a);
    members_become(&s, "g", 1).await;
    assert_eq!(s.consumer("g").await["pending"], 1);
    drop(b);
    drop(single);
    for name in ["g", single_name.as_str()] {
        eventually(&format!("consumer {name} to be dropped"), || async {
            s.get(&format!("/v1/consumers/{}", bus_testkit::enc(name)))
                .await
                .status
                == StatusCode::NOT_FOUND
        })
        .await;
        s.get(&format!("/v1/consumers/{}", bus_testkit::enc(name)))
            .await
            .assert_error(StatusCode::NOT_FOUND, "unknown_consumer");
        s.ack_op(name, &e1, "ack")
            .await
            .assert_error(StatusCode::NOT_FOUND, "unknown_consumer");
    }
    assert_eq!(s.get_json("/v1/consumers").await, json!([]));

    // The name is free again, for any pattern; nothing of the old group remains.
    let (mut g, hello) = s.attach("pattern=mail.%3E&group=g&ack=manual").await;
    assert_eq!(hello["pattern"], "mail.>");
    let c = s.consumer("g").await;
    assert_eq!(
        (c["pending"].as_u64(), c["members"].as_u64()),
        (Some(0), Some(1)),
        "{c}"
    );
    put(&s, "mail.sent", "m1").await;
    assert_eq!(next(&mut g).await, d("m1", 1));
}

// ---------------------------------------------------------------------------------------
// Seek, delete, listing
// ---------------------------------------------------------------------------------------

// disk only: restarts and checks what survived (the memory engine starts empty).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_drops_pending_deliveries_and_restarts_reading_there() {
    let mut s = TestServer::start_default().await;
    let mut ids = Vec::new();
    for i in 1..=3 {
        ids.push(put(&s, "job.run", &format!("e{i}")).await);
    }
    let q = "pattern=job.%3E&from=oldest&durable=w&ack=manual&ack_wait=1h&heartbeat=1s";
    let (mut st, _) = s.attach(q).await;
    assert_eq!(
        next_n(&mut st, 3).await,
        [d("e1", 1), d("e2", 1), d("e3", 1)]
    );
    s.expect_ack("w", &ids[0], "ack", "acked").await;

    let r = s.post("/v1/consumers/w/seek?to=oldest", &[], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(
        (v["name"].as_str(), v["kind"].as_str()),
        (Some("w"), Some("durable")),
        "{v}"
    );
    // Everything again, as first deliveries (the acked e1 too).
    assert_eq!(
        next_n(&mut st, 3).await,
        [d("e1", 1), d("e2", 1), d("e3", 1)]
    );

    // To an event id: after it.
    let to = bus_testkit::enc(&ids[1]);
    let r = s
        .post(&format!("/v1/consumers/w/seek?to={to}"), &[], "")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(next(&mut st).await, d("e3", 1));
    drop(st);
    members_become(&s, "w", 0).await;
    let c = s.consumer("w").await;
    assert_eq!(
        (c["pending"].as_u64(), c["lag"].as_u64()),
        (Some(1), Some(0)),
        "{c}"
    );

    // Without members the answer shows the new position exactly.
    let v = s
        .post("/v1/consumers/w/seek?to=newest", &[], "")
        .await
        .json();
    assert_eq!(v["positions"], json!({"job": 4}), "{v}");
    assert_eq!(
        (v["pending"].as_u64(), v["lag"].as_u64()),
        (Some(0), Some(0)),
        "{v}"
    );
    let v = s
        .post("/v1/consumers/w/seek?to=oldest", &[], "")
        .await
        .json();
    assert_eq!(v["positions"], json!({"job": 1}), "{v}");
    assert_eq!(
        (v["pending"].as_u64(), v["lag"].as_u64()),
        (Some(0), Some(3)),
        "{v}"
    );

    // A seek is durable: it survives a restart.
    s.restart().await;
    let (mut st, _) = s.attach(q).await;
    assert_eq!(
        next_n(&mut st, 3).await,
        [d("e1", 1), d("e2", 1), d("e3", 1)]
    );

    // Errors.
    s.post("/v1/consumers/w/seek", &[], "")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_parameter");
    s.post("/v1/consumers/w/seek?to=yesterday", &[], "")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_start");
    s.post("/v1/consumers/nope/seek?to=oldest", &[], "")
        .await
        .assert_error(StatusCode::NOT_FOUND, "unknown_consumer");
}

// disk only: restarts and checks what survived (the memory engine starts empty).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_ends_the_members_streams_and_removes_a_durable_for_good() {
    let mut s = TestServer::start_default().await;
    let q = "pattern=job.%3E&durable=w&ack=manual&ack_wait=1h";
    let (mut a, _) = s.attach(q).await;
    let (mut b, _) = s.attach(q).await;
    let e1 = put(&s, "job.run", "e1").await;
    read_both(&mut a, &mut b, 1).await;

    let r = s.delete("/v1/consumers/w").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json(), json!({"deleted": "w"}));
    for st in [&mut a, &mut b] {
        let m = st.next_event().await.expect("an error message");
        assert_eq!(m.event.as_deref(), Some("error"), "{m:?}");
        assert_eq!(m.json()["code"], "unknown_consumer", "{m:?}");
        assert!(
            st.next_event().await.is_none(),
            "the stream ends after the error"
        );
    }
    s.get("/v1/consumers/w")
        .await
        .assert_error(StatusCode::NOT_FOUND, "unknown_consumer");
    s.delete("/v1/consumers/w")
        .await
        .assert_error(StatusCode::NOT_FOUND, "unknown_consumer");
    s.ack_op("w", &e1, "ack")
        .await
        .assert_error(StatusCode::NOT_FOUND, "unknown_consumer");

    s.restart().await;
    s.get("/v1/consumers/w")
        .await
        .assert_error(StatusCode::NOT_FOUND, "unknown_consumer");
    // The name is free for another filter; the new consumer starts afresh.
    let (mut st, _) = s.attach("pattern=job.b.%3E&durable=w&ack=manual").await;
    put(&s, "job.b.x", "fresh").await;
    assert_eq!(next(&mut st).await, d("fresh", 1));

    // Deleting a group ends its members' streams too.
    let (mut g, _) = s.attach("pattern=job.%3E&group=g&ack=manual").await;
    assert_eq!(s.delete("/v1/consumers/g").await.status, StatusCode::OK);
    let m = g.next_event().await.expect("an error message");
    assert_eq!(
        (m.event.as_deref(), m.json()["code"].as_str()),
        (Some("error"), Some("unknown_consumer"))
    );
    assert!(g.next_event().await.is_none());
}

engines!(the_listing_shows_each_consumer_s_settings_and_figures);
async fn the_listing_shows_each_consumer_s_settings_and_figures(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let mut ids = Vec::new();
    for i in 1..=3 {
        ids.push(put(&s, "job.run", &format!("e{i}")).await);
    }
    let q = "pattern=job.%3E&from=oldest&durable=w&ack=manual&ack_wait=2s&max_deliver=5\
             &backoff=1m,2m&max_in_flight=7&heartbeat=1s";
    let (mut st, hello) = s.attach(q).await;
    assert!(
        hello["subscription"]
            .as_str()
            .is_some_and(|x| x.starts_with("s-")),
        "{hello}"
    );
    let expected_hello = json!({
        "subscription": hello["subscription"], "consumer": "w", "kind": "durable",
        "pattern": "job.>", "from": "oldest", "ack": "manual", "ack_wait": "2000ms",
        "max_deliver": 5, "backoff": ["60000ms", "120000ms"], "max_in_flight": 7,
    });
    assert_eq!(hello, expected_hello);
    assert_eq!(
        next_n(&mut st, 3).await,
        [d("e1", 1), d("e2", 1), d("e3", 1)]
    );
    s.expect_ack("w", &ids[0], "ack", "acked").await;
    s.expect_ack("w", &ids[1], "nack", "nacked").await;
    assert_eq!(next(&mut st).await, d("e2", 2));

    let c = s.consumer("w").await;
    assert_time(c["created"].as_str().expect("created"));
    let mut without_created = c.clone();
    without_created.as_object_mut().unwrap().remove("created");
    assert_eq!(
        without_created,
        json!({
            "name": "w", "kind": "durable", "pattern": "job.>", "ack": "manual",
            "ack_wait": "2000ms", "max_deliver": 5, "backoff": ["60000ms", "120000ms"],
            "max_in_flight": 7, "positions": {"job": 4}, "pending": 2, "redelivered": 1,
            "members": 1, "lag": 0,
        })
    );

    // The whole list, by name; other kinds too; their members are consumer subscriptions.
    let (_g, _) = s.attach("pattern=mail.%3E&group=g").await;
    let (_one, one) = s.attach("pattern=job.%3E&ack=manual").await;
    let list = s.get_json("/v1/consumers").await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    let mut sorted = vec!["g", "w", one["consumer"].as_str().unwrap()];
    sorted.sort();
    assert_eq!(names, sorted, "{list}");
    let listed_w = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "w")
        .unwrap();
    assert_eq!(listed_w, &c);
    let g = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "g")
        .unwrap();
    assert_eq!(
        (g["kind"].as_str(), g["ack"].as_str()),
        (Some("group"), Some("none")),
        "{g}"
    );
    assert_eq!(g["ack_wait"], "30000ms", "defaults: {g}");
    assert_eq!(g["max_in_flight"], 1000, "defaults: {g}");
    assert_eq!(g["backoff"], json!([]), "defaults: {g}");
    assert!(g["max_deliver"].is_null(), "unlimited: {g}");
    let one_listed = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == one["consumer"])
        .unwrap();
    assert_eq!(one_listed["kind"], "subscription");
    let subs = s.get_json("/v1/subscriptions").await;
    let member = subs
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == hello["subscription"])
        .unwrap_or_else(|| panic!("member listed: {subs}"));
    assert_eq!(member["kind"], "consumer", "{member}");

    // Without members, new events are lag, not position.
    drop(st);
    members_become(&s, "w", 0).await;
    put(&s, "job.run", "e4").await;
    put(&s, "job.run", "e5").await;
    put(&s, "mail.sent", "elsewhere").await;
    let c = s.consumer("w").await;
    assert_eq!(c["positions"], json!({"job": 4}), "{c}");
    assert_eq!(
        (c["lag"].as_u64(), c["pending"].as_u64()),
        (Some(2), Some(2)),
        "{c}"
    );
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

engines!(acknowledgement_errors_have_their_documented_codes);
async fn acknowledgement_errors_have_their_documented_codes(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    // Matching, but published before the consumer existed (it starts at newest).
    let before = put(&s, "job.a.x", "before").await;
    let (mut w, _) = s
        .attach("pattern=job.a.%3E&durable=w&ack=manual&ack_wait=1h")
        .await;
    let (mut n, _) = s.attach("pattern=job.%3E&durable=n").await;
    // Outside w's filter, in its namespace: below w's position once e1 is read.
    let other_subject = put(&s, "job.b.x", "e0").await;
    let e1 = put(&s, "job.a.x", "e1").await;
    let after = put(&s, "job.a.x", "e2").await;
    let other_namespace = put(&s, "mail.x", "e3").await;
    assert_eq!(next_n(&mut w, 2).await, [d("e1", 1), d("e2", 1)]);
    assert_eq!(n.expect_event().await.json()["payload"], "e0");
    s.expect_ack("w", &after, "ack", "acked").await;

    // No such consumer, whatever the operation.
    for op in ["ack", "nack", "progress", "term"] {
        s.ack_op("nope", &e1, op)
            .await
            .assert_error(StatusCode::NOT_FOUND, "unknown_consumer");
    }
    s.ack_batch("nope", format!("[\"{e1}\"]"))
        .await
        .assert_error(StatusCode::NOT_FOUND, "unknown_consumer");
    s.get("/v1/consumers/nope")
        .await
        .assert_error(StatusCode::NOT_FOUND, "unknown_consumer");
    s.delete("/v1/consumers/nope")
        .await
        .assert_error(StatusCode::NOT_FOUND, "unknown_consumer");

    // No such event: an id of the right shape the broker never held, in a namespace it has
    // or one it does not.
    let (stem, inc) = e1.rsplit_once('-').unwrap();
    let (ns, _) = stem.rsplit_once('-').unwrap();
    let other_inc = if inc == "00000000" {
        "00000001"
    } else {
        "00000000"
    };
    for id in [
        format!("{ns}-999-{inc}"),
        format!("{ns}-1-{other_inc}"),
        "nope-1-00000000".into(),
    ] {
        s.ack_op("w", &id, "ack")
            .await
            .assert_error(StatusCode::NOT_FOUND, "unknown_event");
    }
    // Not an event id at all.
    for id in ["garbage", "job-01-abcdefab", "job-1-ABCDEFAB"] {
        s.ack_op("w", id, "ack")
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_parameter");
    }
    // Events the consumer never had: from before it existed, outside its filter, in another
    // namespace.
    for id in [&before, &other_subject, &other_namespace] {
        for op in ["ack", "nack", "progress", "term"] {
            s.ack_op("w", id, op)
                .await
                .assert_error(StatusCode::NOT_FOUND, "not_delivered");
        }
    }
    // A delay on anything but nack, a bad delay, an unknown operation.
    for op in [
        "ack?delay=1s",
        "progress?delay=1s",
        "term?delay=1s",
        "nack?delay=25h",
        "nack?delay=soon",
        "bogus",
    ] {
        s.ack_op("w", &e1, op)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_parameter");
    }
    // A consumer in ack mode none has nothing to acknowledge.
    s.ack_op("n", &e1, "ack")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_parameter");
    // None of that changed anything: e1 is still pending, then acked once.
    assert_eq!(s.consumer("w").await["pending"], 1);
    s.expect_ack("w", &e1, "ack", "acked").await;
    s.expect_ack("w", &e1, "ack", "already_acked").await;
    s.expect_ack("w", &e1, "nack?delay=1s", "already_acked")
        .await;
}

engines!(attaching_with_another_pattern_or_as_another_kind_is_a_conflict);
async fn attaching_with_another_pattern_or_as_another_kind_is_a_conflict(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let (durable, _) = s
        .attach("pattern=job.%3E&durable=w&ack=manual&heartbeat=1s")
        .await;
    let (_group, _) = s.attach("pattern=job.%3E&group=g&ack=manual").await;
    let conflicts = [
        "pattern=job.a.%3E&durable=w&ack=manual",
        "pattern=job.%3E&group=w&ack=manual",
        "pattern=job.%3E&durable=g&ack=manual",
        "pattern=mail.%3E&group=g&ack=manual",
    ];
    for q in conflicts {
        refused_stream(&s, q)
            .await
            .assert_error(StatusCode::CONFLICT, "consumer_conflict");
    }
    // A durable keeps its name and filter without members too.
    drop(durable);
    members_become(&s, "w", 0).await;
    for q in &conflicts[..2] {
        refused_stream(&s, q)
            .await
            .assert_error(StatusCode::CONFLICT, "consumer_conflict");
    }
    // The same pattern and kind attaches with its own settings, or none; another setting
    // is a conflict that changes nothing.
    for q in [
        "pattern=job.%3E&durable=w&ack=manual&ack_wait=5s",
        "pattern=job.%3E&durable=w&ack=none",
        "pattern=job.%3E&durable=w&max_deliver=3",
        "pattern=job.%3E&durable=w&backoff=1s",
    ] {
        let m = refused_stream(&s, q)
            .await
            .assert_error(StatusCode::CONFLICT, "consumer_conflict");
        assert!(m.contains("own value"), "{m}");
    }
    let (_w, hello) = s
        .attach("pattern=job.%3E&durable=w&ack=manual&ack_wait=30s&max_in_flight=7")
        .await;
    assert_eq!(
        hello["ack_wait"], "30000ms",
        "the consumer keeps its settings: {hello}"
    );
    assert_eq!(hello["max_in_flight"], 1000, "{hello}");
    let (_w2, _) = s.attach("pattern=job.%3E&durable=w").await;
}

engines!(invalid_consumer_settings_are_refused_before_any_stream_starts);
async fn invalid_consumer_settings_are_refused_before_any_stream_starts(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let long = "x".repeat(65);
    let bad = [
        "ack=auto".to_owned(),
        "ack=manual&ack_wait=0ms".into(),
        "ack=manual&ack_wait=25h".into(),
        "ack=manual&ack_wait=soon".into(),
        "ack=manual&max_deliver=0".into(),
        "ack=manual&max_deliver=-1".into(),
        "ack=manual&backoff=1s,,2s".into(),
        "ack=manual&backoff=0s".into(),
        "ack=manual&max_in_flight=0".into(),
        "ack=manual&max_in_flight=100001".into(),
        "durable=a.b".into(),
        "durable=a%2Ab".into(),
        "durable=".into(),
        "group=a%20b".into(),
        format!("durable={long}"),
        "durable=a&group=b".into(),
    ];
    for q in &bad {
        refused_stream(&s, &format!("pattern=job.%3E&{q}"))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_parameter");
    }
    refused_stream(&s, "durable=w&ack=manual")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_parameter");
    refused_stream(&s, "pattern=job..x&durable=w")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_pattern");
    refused_stream(&s, "pattern=job.%3E&durable=w&from=yesterday")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_start");
    // Nothing was created by any of them.
    assert_eq!(s.get_json("/v1/consumers").await, json!([]));
    // The longest name is fine.
    let ok = "x".repeat(64);
    let (_st, hello) = s.attach(&format!("pattern=job.%3E&durable={ok}")).await;
    assert_eq!(hello["consumer"], ok.as_str());
}

engines!(a_malformed_ack_batch_is_refused_whole);
async fn a_malformed_ack_batch_is_refused_whole(engine: Engine) {
    let s = TestServer::start_default_on(engine).await;
    let (mut st, _) = s
        .attach("pattern=job.%3E&durable=w&ack=manual&ack_wait=1h")
        .await;
    let e1 = put(&s, "job.run", "e1").await;
    assert_eq!(next(&mut st).await, d("e1", 1));
    let too_many = serde_json::to_string(&vec![e1.as_str(); 10_001]).unwrap();
    for body in [
        String::new(),
        "not json".into(),
        "{}".into(),
        format!("\"{e1}\""),
        "[]".into(),
        "[1]".into(),
        "[null]".into(),
        r#"[{"op":"ack"}]"#.into(),
        format!(r#"[{{"id":"{e1}","op":7}}]"#),
        format!("[\"{e1}\""),
        too_many,
    ] {
        s.ack_batch("w", body.clone())
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_batch");
    }
    let huge = format!("[\"{}\"]", "x".repeat(4 * 1024 * 1024));
    s.ack_batch("w", huge)
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    // Nothing was applied: e1 is still pending, and a good batch of the most entries works.
    assert_eq!(s.consumer("w").await["pending"], 1);
    let most = serde_json::to_string(&vec![e1.as_str(); 10_000]).unwrap();
    let r = s.ack_batch("w", most).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let results = r.json()["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 10_000);
    assert_eq!(results[0]["status"], "acked");
    assert!(results[1..].iter().all(|x| x["status"] == "already_acked"));
}

engines!(retention_wins_over_pending_deliveries_with_a_gap_notice);
async fn retention_wins_over_pending_deliveries_with_a_gap_notice(engine: Engine) {
    const EVENTS: u64 = 100;
    let s = TestServer::start_on(engine, |c| {
        c.log.fsync = bus_broker::storage::FsyncPolicy::Never;
        c.log.segment_bytes = 4096;
        c.log.retention.max_events = Some(5);
    })
    .await;
    let query = "pattern=user.%3E&from=oldest&durable=r&ack=manual&ack_wait=1h&max_in_flight=3";
    let (mut st, _) = s.attach(query).await;
    let payload = "p".repeat(100);
    for _ in 0..3 {
        s.publish("user.a", &payload).await;
    }
    let held: Vec<u64> = st
        .expect_events(3)
        .await
        .iter()
        .map(|m| m.json()["sequence"].as_u64().expect("sequence"))
        .collect();
    assert_eq!(held, vec![1, 2, 3]);
    for _ in 3..EVENTS {
        s.publish("user.a", &payload).await;
    }
    // Retention runs when a segment rolls: wait until it deleted what the consumer holds.
    eventually("retention deletes the held events", || async {
        let ns = s.get_json("/v1/namespaces/user").await;
        ns["first_sequence"].as_u64().expect("first_sequence") > 3
    })
    .await;
    // The holder leaves; the next member is told of the gap instead of getting the events,
    // and delivery resumes at the oldest retained event. The holder must be gone first:
    // until the broker sees its stream close, it still holds 1 to 3.
    drop(st);
    members_become(&s, "r", 0).await;
    let (mut st, _) = s.attach(query).await;
    let mut gaps = Vec::new();
    let mut seqs = Vec::new();
    while seqs.len() < 3 {
        let m = st.next_event().await.expect("a message");
        let v = m.json();
        match m.event.as_deref() {
            Some("gap") => gaps.push(v),
            None => {
                assert_eq!(v["delivery_count"], 1, "{v}");
                seqs.push(v["sequence"].as_u64().expect("sequence"));
            }
            other => panic!("unexpected {other:?}: {v}"),
        }
    }
    assert!(!gaps.is_empty(), "a gap notice comes first");
    assert!(gaps.iter().all(|g| g["namespace"] == "user"), "{gaps:?}");
    assert_eq!(gaps[0]["missed_from"], 1, "{gaps:?}");
    let resume = gaps.last().and_then(|g| g["resume_at"].as_u64());
    assert!(seqs[0] > 3, "{seqs:?}");
    assert_eq!(Some(seqs[0]), resume, "{gaps:?}");
    assert_eq!(seqs, vec![seqs[0], seqs[0] + 1, seqs[0] + 2]);
    let c = s.consumer("r").await;
    assert_eq!(c["pending"], 3, "only the new deliveries are pending: {c}");
}

// disk only: restarts and checks what survived (the memory engine starts empty).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_changes_settings_durably_and_refuses_what_cannot_change() {
    let mut s = TestServer::start_default().await;
    let (st, _) = s
        .attach("pattern=user.%3E&durable=w&ack=manual&max_in_flight=2")
        .await;
    let patch = |body: &'static str| {
        let s = &s;
        async move {
            s.request(
                hyper::Method::PATCH,
                "/v1/consumers/w",
                &[("content-type", "application/json")],
                body,
            )
            .await
        }
    };
    let r =
        patch(r#"{"max_in_flight":50,"ack_wait":"1m30s","max_deliver":3,"backoff":["1s","5s"]}"#)
            .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let info = r.json();
    assert_eq!(info["max_in_flight"], 50);
    assert_eq!(info["max_deliver"], 3);
    assert_eq!(info["ack_wait"], "90000ms");
    assert_eq!(info["backoff"], serde_json::json!(["1000ms", "5000ms"]));
    patch(r#"{"ack":"none"}"#)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_parameter");
    patch(r#"{"max_inflight":5}"#)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "unknown_parameter");
    patch(r#"{"ack_wait":"1 s"}"#)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_parameter");
    s.request(hyper::Method::PATCH, "/v1/consumers/nope", &[], "{}")
        .await
        .assert_error(StatusCode::NOT_FOUND, "unknown_consumer");
    // Refused patches changed nothing; null and [] clear; it all survives a restart.
    let r = patch(r#"{"max_deliver":null,"backoff":[]}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    drop(st);
    s.restart().await;
    let info = s.consumer("w").await;
    assert_eq!(info["max_in_flight"], 50, "{info}");
    assert_eq!(info["max_deliver"], serde_json::Value::Null);
    assert_eq!(info["backoff"], serde_json::json!([]));
    assert_eq!(info["ack_wait"], "90000ms");
    assert_eq!(info["ack"], "manual");
}

// A member that took its `limit` holds its deliveries and waits; deleting the consumer must
// still end its stream, as for any member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_ends_the_stream_of_a_member_that_reached_its_limit() {
    let s = TestServer::start_default().await;
    put(&s, "job.run", "e1").await;
    put(&s, "job.run", "e2").await;
    let (mut m, _) = s
        .attach("pattern=job.%3E&from=oldest&durable=held&ack=manual&limit=1")
        .await;
    assert_eq!(m.expect_event().await.json()["payload"], "e1");
    let r = s.delete("/v1/consumers/held").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let e = m.next_event().await.expect("an error message");
    assert_eq!(e.event.as_deref(), Some("error"), "{e:?}");
    assert_eq!(e.json()["code"], "unknown_consumer", "{e:?}");
    assert!(
        m.next_event().await.is_none(),
        "the stream ends after the error"
    );
}
