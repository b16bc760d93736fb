//! Queued acks at the end of a subscription (issue 13): inside a live runtime every queued
//! ack reaches the broker, by `Subscription::close` or by dropping the handles; when the
//! runtime stops first, the acks it cancelled are counted in `Statistics::acks_lost` and
//! nothing panics. The broker runs on a runtime of its own so that it outlives the
//! client's; every await is bounded by a timeout, and no test sleeps.

use tokio::time::timeout;

use bus_client::{AckMode, Client, Message, Start, SubscribeOptions, Subscription};

use bus_testkit::{ClientBroker, WAIT, next_message};

/// Events published and acked in each test.
const EVENTS: usize = 20;

/// Publishes [`EVENTS`] events on `job.<i>`, then attaches to the durable consumer `name`
/// with manual acks and reads them all (none acked yet).
async fn deliveries(client: &Client, name: &str) -> (Subscription, Vec<Message>) {
    for i in 0..EVENTS {
        timeout(WAIT, client.publish(format!("job.{i}"), "x"))
            .await
            .expect("publish in time")
            .expect("published");
    }
    let options = SubscribeOptions::new()
        .from(Start::Oldest)
        .durable(name)
        .ack(AckMode::Manual);
    let mut sub = timeout(WAIT, client.subscribe_with("job.>", options))
        .await
        .expect("subscribe in time")
        .expect("subscribed");
    let mut got = Vec::with_capacity(EVENTS);
    for _ in 0..EVENTS {
        got.push(next_message(&mut sub).await);
    }
    (sub, got)
}

/// Queues an ack of each message (sent in the background).
async fn queue_acks(messages: &[Message]) {
    for m in messages {
        timeout(WAIT, m.ack())
            .await
            .expect("queued in time")
            .expect("queued");
    }
}

async fn pending(client: &Client, name: &str) -> u64 {
    timeout(WAIT, client.consumer(name))
        .await
        .expect("consumer in time")
        .expect("consumer listed")
        .pending
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_sends_every_queued_ack_before_returning() {
    let b = ClientBroker::start().await;
    let (sub, messages) = deliveries(&b.client, "closer").await;
    assert_eq!(pending(&b.client, "closer").await, EVENTS as u64);
    queue_acks(&messages).await;
    drop(messages);
    timeout(WAIT, sub.close())
        .await
        .expect("closed in time")
        .expect("every ack answered");
    // No waiting: once `close` returned, the broker holds every ack.
    assert_eq!(pending(&b.client, "closer").await, 0);
    let stats = b.client.statistics();
    assert_eq!((stats.acks_lost, stats.acks_failed), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_handles_in_a_live_runtime_sends_every_queued_ack() {
    let b = ClientBroker::start().await;
    let (sub, messages) = deliveries(&b.client, "dropper").await;
    queue_acks(&messages).await;
    // The acknowledger ends once every handle is gone, after sending what was queued.
    let flushed = sub.ack_flushed();
    drop(messages);
    drop(sub);
    timeout(WAIT, flushed).await.expect("flushed in time");
    assert_eq!(pending(&b.client, "dropper").await, 0);
    assert_eq!(b.client.statistics().acks_lost, 0);
}

#[test]
fn acks_cancelled_by_a_runtime_shutdown_are_counted_as_lost() {
    let broker_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("broker runtime");
    let b = broker_rt.block_on(ClientBroker::start());
    let url = format!("http://{}", b.addr);

    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let client = client_rt.block_on(async {
        let client = timeout(WAIT, Client::connect(&url))
            .await
            .expect("connect in time")
            .expect("connected");
        let (sub, messages) = deliveries(&client, "stopper").await;
        // Queued without yielding to the acknowledger (one thread): none is sent yet.
        queue_acks(&messages).await;
        drop(messages);
        drop(sub);
        client
    });
    // The runtime stops with every ack still queued: its acknowledger is cancelled.
    drop(client_rt);

    assert_eq!(client.statistics().acks_lost, EVENTS as u64);
    // The broker indeed has none of them: the events are still pending.
    let still = broker_rt.block_on(pending(&b.client, "stopper"));
    assert_eq!(still, EVENTS as u64);
    drop(b);
}
