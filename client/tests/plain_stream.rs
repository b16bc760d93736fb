//! A plain stream (no durable, no group, no manual acks) against a real broker: consumer
//! settings given to it are not sent (the broker refuses them there with
//! `400 invalid_parameter`), and its `limit`, undocumented on a plain stream, is kept by the
//! subscription itself. Every await is bounded by a timeout.

use std::time::Duration;

use futures::StreamExt as _;
use tokio::time::timeout;

use bus_client::{Start, StreamItem, SubscribeOptions};

use bus_testkit::{ClientBroker, WAIT, next_message};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_stream_ignores_consumer_settings_and_ends_at_its_limit() {
    let b = ClientBroker::start().await;
    let c = &b.client;
    for i in 0..3 {
        timeout(WAIT, c.publish(format!("note.{i}"), "x"))
            .await
            .expect("publish in time")
            .expect("published");
    }
    let options = SubscribeOptions::new()
        .from(Start::Oldest)
        .ack_wait(Duration::from_secs(5))
        .max_deliver(2)
        .backoff([Duration::from_secs(1)])
        .max_in_flight(1)
        .limit(2);
    let mut sub = timeout(WAIT, c.subscribe_with("note.>", options))
        .await
        .expect("subscribe in time")
        .expect("a plain stream with consumer settings is accepted");
    assert_eq!(sub.consumer(), None);
    assert_eq!(next_message(&mut sub).await.subject, "note.0");
    assert_eq!(next_message(&mut sub).await.subject, "note.1");
    // The third event exists, but the limit ends the stream first.
    let end = timeout(WAIT, sub.next()).await.expect("ended in time");
    assert!(
        !matches!(end, Some(Ok(StreamItem::Event(_)))),
        "no event past the limit: {end:?}"
    );
    assert!(end.is_none(), "the stream ends: {end:?}");
    // No consumer was created.
    let consumers = timeout(WAIT, c.consumers())
        .await
        .expect("listed in time")
        .expect("listed");
    assert!(consumers.is_empty(), "{consumers:?}");
}
