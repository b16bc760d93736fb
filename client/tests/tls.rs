//! The client over https: a broker serving a certificate made in the test, trusted through
//! [`ConnectOptions::cacert`]; refused without it; a bad CA file is an input error.

use bus_client::{ConnectOptions, ErrorKind, Start, StreamItem};
use bus_testkit::*;
use std::future::IntoFuture as _;

use futures::StreamExt as _;

#[tokio::test]
async fn publishes_and_subscribes_over_https_with_a_ca_file() {
    let certs = TestCerts::new("client");
    let files = certs.server.clone();
    let s = TestServer::start_on(Engine::Memory, move |c| c.tls = Some(files.clone())).await;
    let url = format!("https://localhost:{}", s.addr().port());
    let client = within(
        "connect",
        ConnectOptions::new()
            .cacert(&certs.ca)
            .unwrap()
            .connect(&url),
    )
    .await
    .unwrap();
    assert_eq!(client.url(), url);
    let mut sub = within("subscribe", client.subscribe("user.>", Start::Newest))
        .await
        .unwrap();
    let receipt = within("publish", client.publish("user.a", "secret").into_future())
        .await
        .unwrap();
    assert_eq!(receipt.sequence, 1);
    loop {
        if let StreamItem::Event(m) = within("event", sub.next()).await.unwrap().unwrap() {
            assert_eq!(m.payload.as_ref(), b"secret");
            break;
        }
    }

    // The system's roots do not know the test CA.
    let e = within("connect", ConnectOptions::new().connect(&url))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::Connect, "{e}");
    // A plain-HTTP client to the TLS port gets no answer it can use.
    let e = within(
        "connect",
        ConnectOptions::new().connect(&format!("http://127.0.0.1:{}", s.addr().port())),
    )
    .await
    .unwrap_err();
    assert_ne!(e.kind(), &ErrorKind::InvalidUrl, "{e}");
}

#[test]
fn a_ca_file_that_is_missing_or_empty_is_an_input_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = ConnectOptions::new()
        .cacert(dir.path().join("none.pem"))
        .unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::InvalidInput, "{e}");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let e = ConnectOptions::new().cacert(&empty).unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::InvalidInput, "{e}");
}
