//! The client's request/reply against a real broker served in-process: a responder built from
//! `subscribe` + `reply` answers `request`; no responders, timeout and error replies come back
//! as their own error kinds; a late reply is refused. Every await is bounded by a timeout.

use std::time::Duration;

use tokio::time::timeout;

use bus_client::{Client, ErrorKind, Start};
use bus_testkit::{ClientBroker, WAIT, next_message};

/// Sends a request from a task, so that the test can play the responder meanwhile.
fn spawn_request(
    client: &Client,
    subject: &str,
    payload: &'static str,
    wait: Duration,
) -> tokio::task::JoinHandle<Result<bus_client::Reply, bus_client::RequestError>> {
    let client = client.clone();
    let subject = subject.to_owned();
    tokio::spawn(async move {
        client
            .request(subject, payload)
            .content_type("application/json")
            .header("trace", "t-9")
            .timeout(wait)
            .await
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_gets_the_reply_with_its_headers() {
    let b = ClientBroker::start().await;
    let mut responder = b.client.subscribe("rpc.>", Start::Newest).await.unwrap();
    let caller = spawn_request(&b.client, "rpc.user.get", r#"{"id":7}"#, WAIT);
    let req = next_message(&mut responder).await;
    assert_eq!(req.headers.get("trace").map(String::as_str), Some("t-9"));
    let inbox = req.reply_to.clone().expect("a request carries reply_to");
    timeout(
        WAIT,
        b.client
            .reply(&inbox, r#"{"name":"ada"}"#)
            .content_type("application/json")
            .header("source", "users"),
    )
    .await
    .unwrap()
    .unwrap();
    let reply = timeout(WAIT, caller).await.unwrap().unwrap().unwrap();
    assert_eq!(reply.request_id, req.id);
    assert_eq!(reply.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        reply.headers.get("source").map(String::as_str),
        Some("users")
    );
    #[derive(serde::Deserialize)]
    struct User {
        name: String,
    }
    assert_eq!(reply.json::<User>().unwrap().name, "ada");

    // The inbox closed with the answer: a second reply is refused.
    let e = timeout(WAIT, b.client.reply(&inbox, "again"))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        e.kind(),
        &ErrorKind::Api {
            status: 404,
            code: "unknown_inbox".into()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_responders_timeout_and_error_replies_have_their_kinds() {
    let b = ClientBroker::start().await;
    let e = timeout(WAIT, b.client.request("rpc.none", "x"))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::NoResponders, "{e:?}");
    assert_eq!(e.subject(), "rpc.none");

    let mut responder = b.client.subscribe("rpc.>", Start::Newest).await.unwrap();
    let e = timeout(
        WAIT,
        b.client
            .request("rpc.slow", "x")
            .timeout(Duration::from_millis(50)),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::Timeout, "{e:?}");
    let late = next_message(&mut responder).await;

    let caller = spawn_request(&b.client, "rpc.user.get", "{}", WAIT);
    let req = next_message(&mut responder).await;
    timeout(
        WAIT,
        b.client
            .reply(req.reply_to.as_deref().unwrap(), "")
            .error("user 7 not found")
            .header("code", "404"),
    )
    .await
    .unwrap()
    .unwrap();
    let e = timeout(WAIT, caller).await.unwrap().unwrap().unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::ReplyError);
    assert_eq!(e.api_error().unwrap().message, "user 7 not found");
    assert_eq!(
        e.reply_headers().get("code").map(String::as_str),
        Some("404")
    );
    assert_eq!(e.request_id(), Some(req.id.as_str()));

    // The timed-out request's inbox is closed: its late reply is refused.
    let e = timeout(
        WAIT,
        b.client.reply(late.reply_to.as_deref().unwrap(), "late"),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert_eq!(
        e.api_error().map(|a| a.code.as_str()),
        Some("unknown_inbox")
    );
}
