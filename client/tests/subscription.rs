//! The client against a canned HTTP/1.1 responder on a loopback port: a subscription yields
//! what the stream sends, and dropping it closes its connection.

use std::time::Duration;

use futures::StreamExt as _;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::timeout;

use bus_client::{Client, ErrorKind, Start, StreamItem};
use bus_testkit::WAIT;

const EVENT: &str = r#"{"id":"user-1-0","subject":"user.created","namespace":"user","sequence":1,"time":"2026-11-23T13:22:11.123456789Z","headers":{},"payload":"hi"}"#;

/// Serves `/healthz`, an error for `/v1/stream?pattern=bad`, and for other streams a
/// confirmation and one event, then waits for the client to close; reports each stream
/// connection's close on the channel.
async fn fake_broker() -> (String, mpsc::UnboundedReceiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (closed_tx, closed_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let closed_tx = closed_tx.clone();
            tokio::spawn(async move {
                let (r, mut w) = conn.into_split();
                let mut r = BufReader::new(r);
                loop {
                    let mut request = String::new();
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        request.push_str(&line);
                    }
                    if request.starts_with("GET /healthz") {
                        let body = r#"{"status":"ok"}"#;
                        let head =
                            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
                        let _ = w.write_all((head + body).as_bytes()).await;
                    } else if request.starts_with("GET /v1/stream?pattern=bad") {
                        let body = r#"{"error":{"code":"invalid_pattern","message":"bad"}}"#;
                        let head = format!(
                            "HTTP/1.1 400 Bad Request\r\ncontent-length: {}\r\n\r\n",
                            body.len()
                        );
                        let _ = w.write_all((head + body).as_bytes()).await;
                    } else {
                        assert!(request.contains("accept: text/event-stream"), "{request}");
                        let stream = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n{}",
                            chunk(&format!(
                                "event: subscribed\ndata: {{\"subscription\":\"s-1\",\"pattern\":\"user.>\",\"from\":\"oldest\"}}\n\nretry: 1000\nid: user-1-0\ndata: {EVENT}\n\n"
                            ))
                        );
                        let _ = w.write_all(stream.as_bytes()).await;
                        // Wait for the client to close the connection.
                        let mut buf = [0u8; 64];
                        while r.read(&mut buf).await.unwrap_or(0) > 0 {}
                        let _ = closed_tx.send(());
                        return;
                    }
                }
            });
        }
    });
    (url, closed_rx)
}

fn chunk(s: &str) -> String {
    format!("{:x}\r\n{s}\r\n", s.len())
}

#[tokio::test]
async fn yields_the_stream_and_closes_the_connection_when_dropped() {
    let (url, mut closed) = fake_broker().await;
    let client = timeout(WAIT, Client::connect(&url)).await.unwrap().unwrap();
    let mut sub = timeout(WAIT, client.subscribe("user.>", Start::Oldest))
        .await
        .unwrap()
        .unwrap();
    let first = timeout(WAIT, sub.next()).await.unwrap().unwrap().unwrap();
    assert!(matches!(first, StreamItem::Subscribed(s) if s.pattern == "user.>"));
    let second = timeout(WAIT, sub.next()).await.unwrap().unwrap().unwrap();
    let StreamItem::Event(m) = second else {
        panic!("not an event: {second:?}")
    };
    assert_eq!(&m.payload[..], b"hi");
    assert_eq!(sub.cursor(), Some("user-1-0"));
    assert_eq!(sub.retry(), Some(Duration::from_secs(1)));
    drop(sub);
    timeout(WAIT, closed.recv())
        .await
        .expect("the connection closes when the subscription is dropped")
        .unwrap();
}

#[tokio::test]
async fn a_refused_stream_is_an_api_error() {
    let (url, _closed) = fake_broker().await;
    let client = timeout(WAIT, Client::connect(&url)).await.unwrap().unwrap();
    let e = timeout(WAIT, client.subscribe("bad", Start::Newest))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        e.kind(),
        &ErrorKind::Api {
            status: 400,
            code: "invalid_pattern".into()
        }
    );
    assert_eq!(e.api_error().unwrap().message, "bad");
}
