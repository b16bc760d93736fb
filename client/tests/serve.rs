//! `Client::serve` against a real broker: answering requests (replies and error replies),
//! working through jobs with acks and delayed retries, the concurrency limit, and a graceful
//! shutdown that finishes the work in flight. Every await is bounded.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, Semaphore, oneshot};
use tokio::time::timeout;

use bus_client::{AckMode, ErrorKind, HandlerError, ServeOptions, Start, SubscribeOptions};
use bus_testkit::{ClientBroker, WAIT, next_message};

/// Waits until `cond` holds, re-checking whenever `changed` is notified.
async fn until(changed: &Notify, cond: impl Fn() -> bool) {
    timeout(WAIT, async {
        loop {
            let notified = changed.notified();
            if cond() {
                return;
            }
            notified.await;
        }
    })
    .await
    .expect("condition in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_requests_and_turns_errors_into_error_replies() {
    let b = ClientBroker::start().await;
    let (stop, stopped) = oneshot::channel::<()>();
    let server = {
        let c = b.client.clone();
        let options = ServeOptions::new().shutdown(async {
            let _ = stopped.await;
        });
        tokio::spawn(async move {
            c.serve("rpc.>", options, |m| async move {
                match m.text() {
                    Some("boom") => Err(HandlerError::new("it went boom\n(second line)")),
                    Some(t) => Ok(Bytes::from(t.to_uppercase())),
                    None => Err("not text".into()),
                }
            })
            .await
        })
    };
    // Requests find the responder once its group is attached.
    let reply = timeout(WAIT, async {
        loop {
            match b.client.request("rpc.up", "hello").await {
                Err(e) if e.kind() == &ErrorKind::NoResponders => tokio::task::yield_now().await,
                other => return other,
            }
        }
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(reply.text(), Some("HELLO"));
    let e = timeout(WAIT, b.client.request("rpc.up", "boom"))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::ReplyError);
    assert_eq!(e.api_error().unwrap().message, "it went boom?(second line)");
    stop.send(()).unwrap();
    timeout(WAIT, server).await.unwrap().unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_acks_work_and_retries_failures_after_their_delay() {
    let b = ClientBroker::start().await;
    for i in 0..10 {
        b.client.publish("job.x", format!("{i}")).await.unwrap();
    }
    let done = Arc::new(AtomicUsize::new(0));
    let changed = Arc::new(Notify::new());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = {
        let c = b.client.clone();
        let options = ServeOptions::new()
            .subscribe(SubscribeOptions::new().durable("jobs").from(Start::Oldest))
            .shutdown(async {
                let _ = stopped.await;
            });
        let (done, changed) = (done.clone(), changed.clone());
        tokio::spawn(async move {
            c.serve("job.>", options, move |m| {
                let (done, changed) = (done.clone(), changed.clone());
                async move {
                    // Job 3 fails on its first delivery and is retried after 50 ms.
                    if m.text() == Some("3") && m.delivery_count == Some(1) {
                        return Err(
                            HandlerError::new("not yet").retry_after(Duration::from_millis(50))
                        );
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                    changed.notify_waiters();
                    Ok(Bytes::new())
                }
            })
            .await
        })
    };
    until(&changed, || done.load(Ordering::SeqCst) == 10).await;
    stop.send(()).unwrap();
    timeout(WAIT, server).await.unwrap().unwrap().unwrap();
    let info = b.client.consumer("jobs").await.unwrap();
    assert_eq!(info.pending, 0, "every job acked: {info:?}");
    assert_eq!(info.redelivered, 1, "only job 3 came again: {info:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_at_most_its_concurrency_and_finishes_work_in_flight_on_shutdown() {
    let b = ClientBroker::start().await;
    for i in 0..10 {
        b.client.publish("slow.x", format!("{i}")).await.unwrap();
    }
    let gate = Arc::new(Semaphore::new(0));
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let changed = Arc::new(Notify::new());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = {
        let c = b.client.clone();
        let options = ServeOptions::new()
            .concurrency(3)
            .subscribe(
                SubscribeOptions::new()
                    .durable("slow")
                    .ack(AckMode::Manual)
                    .from(Start::Oldest),
            )
            .shutdown(async {
                let _ = stopped.await;
            });
        let (gate, running, most, finished, changed) = (
            gate.clone(),
            running.clone(),
            most.clone(),
            finished.clone(),
            changed.clone(),
        );
        tokio::spawn(async move {
            c.serve("slow.>", options, move |_m| {
                let (gate, running, most, finished, changed) = (
                    gate.clone(),
                    running.clone(),
                    most.clone(),
                    finished.clone(),
                    changed.clone(),
                );
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    changed.notify_waiters();
                    gate.acquire().await.unwrap().forget();
                    running.fetch_sub(1, Ordering::SeqCst);
                    finished.fetch_add(1, Ordering::SeqCst);
                    Ok(Bytes::new())
                }
            })
            .await
        })
    };
    until(&changed, || running.load(Ordering::SeqCst) == 3).await;
    // The broker hands the consumer no more than its 3 in flight.
    let info = b.client.consumer("slow").await.unwrap();
    assert_eq!(info.max_in_flight, 3, "{info:?}");
    assert_eq!(info.pending, 3, "{info:?}");
    // Shut down with 3 in flight: they finish and are acked; nothing new starts.
    stop.send(()).unwrap();
    gate.add_permits(3);
    timeout(WAIT, server).await.unwrap().unwrap().unwrap();
    assert_eq!(finished.load(Ordering::SeqCst), 3);
    assert_eq!(most.load(Ordering::SeqCst), 3);
    // The finished work was acked; what the broker handed out meanwhile (up to 3 more) was
    // released when serve disconnected: a new member gets exactly the other 7 jobs.
    let options = SubscribeOptions::new().durable("slow").ack(AckMode::Manual);
    let mut sub = b.client.subscribe_with("slow.>", options).await.unwrap();
    let mut rest = Vec::new();
    for _ in 0..7 {
        let m = next_message(&mut sub).await;
        m.ack().await.unwrap(); // the consumer keeps at most 3 in flight
        rest.push(m.text().unwrap().to_owned());
    }
    rest.sort();
    assert_eq!(rest, ["3", "4", "5", "6", "7", "8", "9"]);
}
