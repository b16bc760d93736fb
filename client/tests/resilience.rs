//! The client across failures, against a real broker behind a proxy that can cut every open
//! connection: a subscription reconnects and resumes with no gap and no duplicate (plain
//! and durable); a publish retried after a cut stores its event once; acks queued in the
//! background are sent in few requests and flushed when the subscription is dropped.

use std::time::Duration;

use tokio::time::timeout;

use bus_client::{AckMode, Client, ConnectOptions, ReconnectPolicy, Start, SubscribeOptions};
use bus_testkit::{ClientBroker, Proxy, WAIT, next_message};

/// A client of the broker through `proxy`, reconnecting quickly.
async fn client_via(proxy: &Proxy) -> Client {
    let options = ConnectOptions::new().reconnect(
        ReconnectPolicy::new()
            .initial_delay(Duration::from_millis(10))
            .max_delay(Duration::from_millis(100)),
    );
    timeout(WAIT, options.connect(&proxy.url()))
        .await
        .unwrap()
        .unwrap()
}

async fn publish_n(client: &Client, subject: &str, from: usize, to: usize) {
    for i in from..to {
        timeout(WAIT, client.publish(subject.to_owned(), format!("e{i}")))
            .await
            .unwrap()
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_stream_resumes_with_no_gap_and_no_duplicate() {
    let b = ClientBroker::start().await;
    let proxy = Proxy::start(b.addr).await;
    let c = client_via(&proxy).await;
    publish_n(&b.client, "cut.x", 0, 50).await;
    let mut sub = c.subscribe("cut.>", Start::Oldest).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..20 {
        seen.push(next_message(&mut sub).await.sequence);
    }
    proxy.cut();
    // Published while (or after) the connection is down.
    publish_n(&b.client, "cut.x", 50, 100).await;
    for _ in 20..100 {
        seen.push(next_message(&mut sub).await.sequence);
    }
    assert_eq!(seen, (1..=100).collect::<Vec<u64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_from_newest_cut_before_its_first_event_misses_nothing() {
    let b = ClientBroker::start().await;
    let proxy = Proxy::start(b.addr).await;
    let c = client_via(&proxy).await;
    publish_n(&b.client, "new.x", 0, 3).await; // before the subscription: not wanted
    let mut sub = c.subscribe("new.>", Start::Newest).await.unwrap();
    proxy.down();
    // Published while the subscription cannot reconnect.
    publish_n(&b.client, "new.x", 3, 8).await;
    proxy.up();
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(next_message(&mut sub).await.sequence);
    }
    assert_eq!(seen, [4, 5, 6, 7, 8]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_durable_member_resumes_from_the_consumer_and_loses_nothing() {
    let b = ClientBroker::start().await;
    let proxy = Proxy::start(b.addr).await;
    let c = client_via(&proxy).await;
    publish_n(&b.client, "dur.x", 0, 40).await;
    let options = SubscribeOptions::new()
        .durable("resilient")
        .ack(AckMode::Manual)
        .from(Start::Oldest);
    let mut sub = c.subscribe_with("dur.>", options).await.unwrap();
    let mut acked = std::collections::BTreeSet::new();
    for _ in 0..10 {
        let m = next_message(&mut sub).await;
        m.double_ack().await.unwrap();
        acked.insert(m.sequence);
    }
    proxy.cut();
    publish_n(&b.client, "dur.x", 40, 60).await;
    // Everything not acked comes (again, if it was in flight at the cut); nothing acked does.
    let mut rest = std::collections::BTreeSet::new();
    while rest.len() < 50 {
        let m = next_message(&mut sub).await;
        assert!(
            !acked.contains(&m.sequence),
            "acked {} came back",
            m.sequence
        );
        m.ack().await.unwrap();
        rest.insert(m.sequence);
    }
    assert_eq!(rest, (11..=60).collect());
    timeout(WAIT, sub.flush_acks()).await.unwrap().unwrap();
    let info = timeout(WAIT, b.client.consumer("resilient"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.pending, 0, "{info:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_acks_go_in_few_requests_and_flush_on_drop() {
    const N: u64 = 2000;
    let b = ClientBroker::start().await;
    let batch: Vec<_> = (0..N)
        .map(|i| bus_client::BatchItem::new("acks.x", format!("e{i}")))
        .collect();
    timeout(WAIT, b.client.publish_batch(batch))
        .await
        .unwrap()
        .unwrap();
    let options = SubscribeOptions::new()
        .durable("bulk")
        .ack(AckMode::Manual)
        .max_in_flight(N as usize)
        .from(Start::Oldest);
    let mut sub = b.client.subscribe_with("acks.>", options).await.unwrap();
    for _ in 0..N / 2 {
        next_message(&mut sub).await.ack().await.unwrap();
    }
    timeout(WAIT, sub.flush_acks()).await.unwrap().unwrap();
    assert_eq!(sub.failed_acks(), 0);
    let requests = sub.ack_requests();
    assert!(
        requests * 10 <= N / 2,
        "{requests} requests for {} acks: not batched",
        N / 2
    );
    let info = b.client.consumer("bulk").await.unwrap();
    assert_eq!(info.pending as u64, N / 2, "{info:?}");

    // The other half: acked, then everything dropped at once without waiting.
    let mut last = None;
    for _ in 0..N / 2 {
        let m = next_message(&mut sub).await;
        m.ack().await.unwrap();
        last = Some(m);
    }
    let flushed = sub.ack_flushed();
    drop(sub);
    drop(last);
    timeout(WAIT, flushed).await.unwrap();
    let info = b.client.consumer("bulk").await.unwrap();
    assert_eq!(
        info.pending, 0,
        "dropping flushed the queued acks: {info:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_cut_mid_flight_is_retried_and_stored_once() {
    let b = ClientBroker::start().await;
    let proxy = Proxy::start(b.addr).await;
    let c = client_via(&proxy).await;
    // Cut every connection while publishes are in flight; each is retried with its dedup id.
    let publishes: Vec<_> = (0..20)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move { c.publish("once.x", format!("p{i}")).await })
        })
        .collect();
    proxy.cut();
    for p in publishes {
        timeout(WAIT, p).await.unwrap().unwrap().unwrap();
    }
    let page = b
        .client
        .pull("once.>", Start::Oldest, 1000, Duration::ZERO)
        .await
        .unwrap();
    let mut payloads: Vec<String> = page
        .events
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    payloads.sort();
    let mut want: Vec<String> = (0..20).map(|i| format!("p{i}")).collect();
    want.sort();
    assert_eq!(payloads, want, "every publish stored exactly once");
}
