//! Request/reply with `bus-client`: a user service answers `rpc.user.get` with
//! [`Client::serve`], and a caller asks it for users. The caller meets the four answers a
//! request can get: **no responders** (asked before the service runs: `503` at once, nothing
//! stored), a **reply**, an **error reply** (the handler's `HandlerError`, `502
//! reply_error`), and a **timeout** (the service holds the request for a slow user past the
//! caller's timeout, `504`).
//!
//! Run it with the broker of the README's first command running
//! (`cargo run --release -p bus-cli -- server`):
//!
//! ```sh
//! cargo run -p bus-example-rpc
//! BUS_URL=http://127.0.0.1:4222 cargo run -p bus-example-rpc   # another broker
//! ```
//!
//! Another responder of `rpc.user.get` already running (`bus reply rpc.user.get --echo`)
//! would change the first answers: the example expects to be the only one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bus_client::{Answer, Client, ErrorKind, HandlerError, ServeOptions};
use tokio::sync::{Notify, oneshot};

/// The subject the service answers.
const SUBJECT: &str = "rpc.user.get";
/// The user whose lookup is slow: the service holds the request until told to go on.
const SLOW_USER: u64 = 99;
/// The caller's timeout for the slow lookup.
const SHORT_TIMEOUT: Duration = Duration::from_millis(300);
/// The bound on waiting for the service to be subscribed.
const READY_WITHIN: Duration = Duration::from_secs(10);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let url = std::env::var("BUS_URL").unwrap_or_else(|_| "http://127.0.0.1:2021".into());
    for line in run(&url).await? {
        println!("{line}");
    }
    Ok(())
}

/// Runs the service and the caller against the broker at `url`; returns what the caller
/// saw, one line per request.
async fn run(url: &str) -> Result<Vec<String>, BoxError> {
    let mut seen = Vec::new();
    let caller = Client::connect(url).await?;

    // 1. Nobody serves the subject yet: the broker says so at once.
    match caller.request(SUBJECT, "7").await {
        Err(e) if e.kind() == &ErrorKind::NoResponders => {
            seen.push(format!("get 7 before the service: no responders ({e})"));
        }
        other => return Err(format!("expected no responders, got {other:?}").into()),
    }

    // 2. The service: a queue group named after the subject (serve's default), so more
    //    instances would share the requests. It stops when `stop` fires.
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let release = Arc::new(Notify::new());
    let service = Client::connect(url).await?;
    let held = release.clone();
    let options = ServeOptions::new().concurrency(4).shutdown(async {
        let _ = stop_rx.await;
    });
    let served = tokio::spawn(async move {
        service
            .serve(SUBJECT, options, move |m| {
                let held = held.clone();
                async move {
                    let id: u64 = m
                        .payload_json()
                        .map_err(|e| HandlerError::new(format!("not a user id: {e}")))?;
                    match id {
                        7 => Ok(Answer::new(r#"{"id":7,"name":"ada"}"#)
                            .content_type("application/json")),
                        SLOW_USER => {
                            held.notified().await;
                            Ok(Answer::new(r#"{"id":99,"name":"slow"}"#))
                        }
                        _ => Err(HandlerError::new(format!("user {id} not found"))),
                    }
                }
            })
            .await
    });

    // The service is answering once a request no longer finds no responders; until then,
    // ask again (bounded). Its first answer is user 7's.
    let started = Instant::now();
    let reply = loop {
        match caller.request(SUBJECT, "7").await {
            Err(e) if e.kind() == &ErrorKind::NoResponders => {
                if started.elapsed() > READY_WITHIN {
                    return Err("the service did not subscribe within 10 s".into());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => break other?,
        }
    };
    seen.push(format!(
        "get 7: {} ({})",
        reply.text().unwrap_or("(binary)"),
        reply.content_type.as_deref().unwrap_or("no content type")
    ));

    // 3. An error reply: the handler's error, with its message.
    match caller.request(SUBJECT, "8").await {
        Err(e) if e.kind() == &ErrorKind::ReplyError => {
            let message = e.api_error().map(|a| a.message.clone()).unwrap_or_default();
            seen.push(format!("get 8: error reply: {message}"));
        }
        other => return Err(format!("expected an error reply, got {other:?}").into()),
    }

    // 4. A timeout: the service holds this request past the caller's deadline.
    let slow = caller
        .request(SUBJECT, SLOW_USER.to_string())
        .timeout(SHORT_TIMEOUT)
        .await;
    match slow {
        Err(e) if e.kind() == &ErrorKind::Timeout => {
            seen.push(format!(
                "get {SLOW_USER}: timeout after {SHORT_TIMEOUT:?} (the request stays stored)"
            ));
        }
        other => return Err(format!("expected a timeout, got {other:?}").into()),
    }

    // Let the held handler go on (its late reply finds no waiting inbox), and stop the
    // service: it finishes what is in flight and returns.
    release.notify_one();
    let _ = stop_tx.send(());
    served.await??;
    seen.push("service stopped".into());
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bus_testkit::TestServer;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn meets_no_responders_a_reply_an_error_reply_and_a_timeout() {
        let server = TestServer::start_default().await;
        let seen = bus_testkit::within("the example", run(&server.base()))
            .await
            .expect("the example runs");

        assert_eq!(seen.len(), 5, "{seen:#?}");
        assert!(seen[0].starts_with("get 7 before the service: no responders"));
        assert_eq!(
            seen[1],
            r#"get 7: {"id":7,"name":"ada"} (application/json)"#
        );
        assert_eq!(seen[2], "get 8: error reply: user 8 not found");
        assert_eq!(
            seen[3],
            "get 99: timeout after 300ms (the request stays stored)"
        );
        assert_eq!(seen[4], "service stopped");

        // What was stored: the requests that found a responder (7, 8 and 99; the first 7
        // found none and was not stored), and no reply (replies are never stored).
        let events = server.pull_all("rpc.>").await;
        let payloads: Vec<_> = events
            .iter()
            .map(|e| e["payload"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(payloads, ["7", "8", "99"], "{events:#?}");
        assert!(events.iter().all(|e| e["reply_to"].as_str().is_some()));
    }
}
