//! The client against a real broker served in-process on a loopback port: consumer
//! subscriptions, the acknowledgement methods of a delivered message, ack batches, publish
//! confirmation, and managing consumers. Every await is bounded by a timeout.

use std::time::Duration;

use futures::StreamExt as _;
use tokio::time::timeout;

use bus_client::{
    AckItem, AckMode, AckOp, AckStatus, Client, ConsumerKind, ErrorKind, Start, StreamItem,
    SubscribeOptions,
};

use bus_testkit::{ClientBroker, WAIT, next_message};

async fn publish(client: &Client, subject: &str, payload: &str) -> String {
    timeout(WAIT, client.publish(subject.to_owned(), payload.to_owned()))
        .await
        .unwrap()
        .unwrap()
        .id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_message_acknowledges_itself() {
    let b = ClientBroker::start().await;
    let c = &b.client;
    let options = SubscribeOptions::new()
        .from(Start::Oldest)
        .durable("orders")
        .ack(AckMode::Manual)
        .ack_wait(Duration::from_secs(30))
        .max_deliver(5);
    let mut sub = timeout(WAIT, c.subscribe_with("order.>", options))
        .await
        .unwrap()
        .unwrap();
    // The consumer is known before the first event.
    assert_eq!(sub.consumer(), Some("orders"));
    let s = sub.subscribed().unwrap();
    assert_eq!(s.kind, Some(ConsumerKind::Durable));
    assert_eq!(s.ack, Some(AckMode::Manual));
    assert_eq!(s.max_deliver, Some(5));
    assert!(matches!(
        timeout(WAIT, sub.next()).await.unwrap(),
        Some(Ok(StreamItem::Subscribed(_)))
    ));

    let ids = [
        publish(c, "order.placed", "1").await,
        publish(c, "order.placed", "2").await,
        publish(c, "order.placed", "3").await,
    ];
    let m1 = next_message(&mut sub).await;
    assert_eq!(
        (m1.id.as_str(), m1.delivery_count),
        (ids[0].as_str(), Some(1))
    );
    assert_eq!(m1.consumer(), Some("orders"));
    assert_eq!(m1.double_ack().await.unwrap(), AckStatus::Acked);
    // Acking again is safe.
    assert_eq!(m1.double_ack().await.unwrap(), AckStatus::AlreadyAcked);

    let m2 = next_message(&mut sub).await;
    assert_eq!(m2.in_progress().await.unwrap(), AckStatus::InProgress);
    assert_eq!(m2.term().await.unwrap(), AckStatus::Terminated);
    assert_eq!(m2.nack().await.unwrap(), AckStatus::AlreadyAcked);

    let m3 = next_message(&mut sub).await;
    assert_eq!(m3.nack().await.unwrap(), AckStatus::Nacked);
    let again = next_message(&mut sub).await;
    assert_eq!(
        (again.id.as_str(), again.delivery_count),
        (ids[2].as_str(), Some(2))
    );
    // By id, through the client, the same.
    assert_eq!(
        c.acknowledge("orders", &again.id, AckOp::Ack)
            .await
            .unwrap(),
        AckStatus::Acked
    );

    // The terminated event is a dead letter, with headers naming where it came from.
    let mut dead = timeout(WAIT, c.subscribe("_bus_.dead.>", Start::Oldest))
        .await
        .unwrap()
        .unwrap();
    let d = next_message(&mut dead).await;
    assert_eq!(d.subject, "_bus_.dead.order.placed");
    assert_eq!(d.headers["bus-original-id"], ids[1]);
    assert_eq!(d.headers["bus-reason"], "terminated");
    assert_eq!(d.headers["bus-consumer"], "orders");
    // A plain subscription's message has nothing to acknowledge.
    assert_eq!(d.delivery_count, None);
    assert_eq!(d.ack().await.unwrap_err().kind(), &ErrorKind::InvalidInput);

    let info = c.consumer("orders").await.unwrap();
    assert_eq!((info.pending, info.members), (0, 1));
    assert_eq!(info.ack_wait, Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_answer_each_entry() {
    let b = ClientBroker::start().await;
    let c = &b.client;
    let options = SubscribeOptions::new()
        .from(Start::Oldest)
        .durable("batch")
        .ack(AckMode::Manual);
    publish(c, "b.x", "1").await;
    publish(c, "b.x", "2").await;
    let mut sub = c.subscribe_with("b.>", options).await.unwrap();
    let m1 = next_message(&mut sub).await;
    let m2 = next_message(&mut sub).await;
    let never = m1.id.replacen("b-1-", "b-9-", 1);
    let results = timeout(
        WAIT,
        c.ack_batch(
            "batch",
            [
                AckItem::from(m1.id.as_str()),
                AckItem::nack_with_delay(m2.id.clone(), Duration::from_secs(60)),
                AckItem::ack(never.clone()),
                AckItem::ack(m1.id.clone()),
            ],
        ),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(results.len(), 4);
    assert_eq!(results[0].result.as_ref().unwrap(), &AckStatus::Acked);
    assert_eq!(results[1].result.as_ref().unwrap(), &AckStatus::Nacked);
    assert_eq!(results[2].id, never);
    assert!(matches!(
        results[2].result.as_ref().unwrap_err().kind(),
        ErrorKind::Api { status: 404, .. }
    ));
    assert_eq!(
        results[3].result.as_ref().unwrap(),
        &AckStatus::AlreadyAcked
    );
    // An empty batch sends nothing; an unknown consumer fails the whole batch.
    assert!(
        c.ack_batch("batch", Vec::<AckItem>::new())
            .await
            .unwrap()
            .is_empty()
    );
    let e = c.ack_batch("nobody", [m1.id.as_str()]).await.unwrap_err();
    assert_eq!(
        e.kind(),
        &ErrorKind::Api {
            status: 404,
            code: "unknown_consumer".into()
        }
    );
    assert!(e.to_string().contains("consumer nobody"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmation_waits_for_acks() {
    let b = ClientBroker::start().await;
    let c = b.client.clone();
    let options = SubscribeOptions::new()
        .group("handlers")
        .ack(AckMode::Manual);
    let mut sub = c.subscribe_with("conf.>", options).await.unwrap();
    assert_eq!(sub.consumer(), Some("handlers"));
    let handler = tokio::spawn(async move {
        let m = next_message(&mut sub).await;
        m.ack().await.unwrap();
        sub
    });
    let r = timeout(
        WAIT,
        c.publish("conf.x", "x").confirm(1, Duration::from_secs(10)),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!((r.confirmed, r.required), (Some(1), Some(1)));
    assert!(r.is_confirmed());
    let sub = timeout(WAIT, handler).await.unwrap().unwrap();
    // Two asked for, one consumer: the publish succeeds after the timeout with 1 of 2 (or
    // 0 of 2, the handler no longer acking).
    let r = timeout(
        WAIT,
        c.publish("conf.x", "y")
            .confirm(2, Duration::from_millis(200)),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(r.required, Some(2));
    assert!(!r.is_confirmed());
    drop(sub);
    // Out of range: the broker refuses before storing.
    let e = c
        .publish("conf.x", "z")
        .confirm(0, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Api { status: 400, .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_are_listed_moved_and_deleted() {
    let b = ClientBroker::start().await;
    let c = &b.client;
    for i in 0..3 {
        publish(c, "m.x", &i.to_string()).await;
    }
    let options = SubscribeOptions::new()
        .from(Start::Oldest)
        .durable("mover")
        .ack(AckMode::Manual)
        .backoff([Duration::from_secs(1), Duration::from_secs(5)])
        .max_in_flight(10);
    let mut sub = c.subscribe_with("m.>", options).await.unwrap();
    for _ in 0..3 {
        next_message(&mut sub).await;
    }
    let list = c.consumers().await.unwrap();
    let info = list.iter().find(|i| i.name == "mover").unwrap();
    assert_eq!(info.kind, ConsumerKind::Durable);
    assert_eq!(info.pattern, "m.>");
    assert_eq!(
        info.backoff,
        [Duration::from_secs(1), Duration::from_secs(5)]
    );
    assert_eq!((info.max_in_flight, info.pending), (10, 3));
    assert_eq!(info.positions["m"], 4);

    // Reading restarts at the first event: its pending deliveries are dropped, so it comes
    // as a first delivery. (The answer may already count the member's new deliveries.)
    let moved = c.seek_consumer("mover", Start::Oldest).await.unwrap();
    assert_eq!(moved.name, "mover");
    let first = next_message(&mut sub).await;
    assert_eq!((first.sequence, first.delivery_count), (1, Some(1)));

    c.delete_consumer("mover").await.unwrap();
    // The member's stream ends with the broker's error.
    let end = loop {
        match timeout(WAIT, sub.next()).await.unwrap() {
            Some(Ok(_)) => continue,
            other => break other,
        }
    };
    let Some(Err(e)) = end else {
        panic!("the stream should end with an error: {end:?}")
    };
    assert_eq!(
        e.kind(),
        &ErrorKind::Stream {
            code: "unknown_consumer".into()
        }
    );
    let e = c.delete_consumer("mover").await.unwrap_err();
    assert_eq!(
        e.kind(),
        &ErrorKind::Api {
            status: 404,
            code: "unknown_consumer".into()
        }
    );
    assert_eq!(e.to_string(), "cannot delete consumer mover");
    let e = c.consumer("mover").await.unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Api { status: 404, .. }));
    // Attaching to a durable with another pattern is a conflict.
    let _holder = c
        .subscribe_with(
            "p.>",
            SubscribeOptions::new().durable("held").ack(AckMode::Manual),
        )
        .await
        .unwrap();
    let e = c
        .subscribe_with(
            "q.>",
            SubscribeOptions::new().durable("held").ack(AckMode::Manual),
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.kind(),
        &ErrorKind::Api {
            status: 409,
            code: "consumer_conflict".into()
        }
    );
}
