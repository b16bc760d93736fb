//! Publishing with the client against a real broker: JSON payloads, the dedup id every
//! publish gets by default (and `no_msg_id`), and the authorization header every request
//! carries. Every await is bounded.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::time::timeout;

use bus_client::{ConnectOptions, Start};
use bus_testkit::{ClientBroker, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_publishes_carry_their_content_type_and_a_dedup_id() {
    let b = ClientBroker::start().await;
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Signup {
        name: String,
    }
    let ada = Signup { name: "ada".into() };
    let first = timeout(WAIT, b.client.publish_json("user.created", &ada).unwrap())
        .await
        .unwrap()
        .unwrap();
    let plain = timeout(WAIT, b.client.publish("user.raw", "x").no_msg_id())
        .await
        .unwrap()
        .unwrap();
    let page = b
        .client
        .pull("user.>", Start::Oldest, 10, Duration::ZERO)
        .await
        .unwrap();
    let [m, raw] = &page.events[..] else {
        panic!("two events: {:?}", page.events)
    };
    assert_eq!(m.id, first.id);
    assert_eq!(m.content_type.as_deref(), Some("application/json"));
    assert_eq!(m.payload_json::<Signup>().unwrap(), ada);
    let id = m.msg_id.clone().expect("a default dedup id");
    assert_eq!(id.len(), 32, "{id}");
    assert_eq!(
        (raw.id.as_str(), raw.msg_id.as_deref()),
        (plain.id.as_str(), None)
    );

    // The same dedup id again is a duplicate of the first: a retry cannot store twice.
    let again = timeout(WAIT, b.client.publish("user.created", "other").msg_id(id))
        .await
        .unwrap()
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.id, first.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_carries_the_authorization_header() {
    // A canned server that answers /healthz and reports the request head it received.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<String>();
    tokio::spawn(async move {
        let (conn, _) = listener.accept().await.unwrap();
        let (r, mut w) = conn.into_split();
        let mut r = BufReader::new(r);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).await.unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let body = r#"{"status":"ok"}"#;
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let _ = w.write_all(answer.as_bytes()).await;
        let _ = tx.send(head);
    });
    let options = ConnectOptions::new()
        .authorization("Bearer s3cret")
        .unwrap();
    timeout(WAIT, options.connect(&url)).await.unwrap().unwrap();
    let head = timeout(WAIT, rx)
        .await
        .unwrap()
        .unwrap()
        .to_ascii_lowercase();
    assert!(head.contains("authorization: bearer s3cret"), "{head}");
    assert!(ConnectOptions::new().authorization("bad\nvalue").is_err());
}
