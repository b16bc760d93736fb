//! The testkit's own check of [`SseReader`]: against a canned chunked response on a loopback
//! port, messages and comments come out in the order they were sent however the bytes are
//! chunked (a CRLF split across chunks ends one line), with their fields, and the end of the
//! body is `None`.

use bus_testkit::{HttpClient, sse, within};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Serves one response (after reading the request head) whose body is `pieces`, each sent
/// as its own HTTP chunk, then closes.
async fn canned(pieces: &'static [&'static str]) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (mut c, _) = listener.accept().await.expect("accept");
        // Answer only once the request head is in, as a server does.
        let mut request = Vec::new();
        while !request.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            c.read_exact(&mut b).await.expect("request head");
            request.push(b[0]);
        }
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                    transfer-encoding: chunked\r\nconnection: close\r\n\r\n";
        c.write_all(head.as_bytes()).await.expect("head");
        for p in pieces {
            let chunk = format!("{:x}\r\n{p}\r\n", p.len());
            c.write_all(chunk.as_bytes()).await.expect("chunk");
            c.flush().await.expect("flush");
        }
        c.write_all(b"0\r\n\r\n").await.expect("end");
    });
    format!("http://{addr}/")
}

#[tokio::test]
async fn messages_and_comments_come_out_in_order_however_chunked() {
    let url = canned(&[
        "retry: 1000\n: keep-",
        "alive\r",
        "\ndata: a\r\n\r\n:second\n",
        "id: 7\nevent: gap\ndata: x\nda",
        "ta: y\n\ndata: z\n\n",
    ])
    .await;
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let mut st = sse(&client, &url, &[]).await;
    assert_eq!(st.status, 200);
    assert_eq!(st.expect_comment().await, " keep-alive");
    let a = st.next_event().await.expect("message a");
    assert_eq!(
        (a.event.as_deref(), a.data.as_str(), a.id),
        (None, "a", None)
    );
    assert_eq!(st.retry(), Some(1000));
    assert_eq!(st.expect_comment().await, "second");
    let gap = st.next_event().await.expect("message x y");
    assert_eq!(gap.event.as_deref(), Some("gap"));
    assert_eq!((gap.data.as_str(), gap.data_lines), ("x\ny", 2));
    assert_eq!(gap.id.as_deref(), Some("7"));
    // The last event id stays in force, as a browser's `lastEventId` does.
    let z = st.expect_event().await;
    assert_eq!((z.data.as_str(), z.id.as_deref()), ("z", Some("7")));
    assert!(
        within("the end of the body", st.next_event())
            .await
            .is_none()
    );
    assert_eq!(st.comments(), [" keep-alive", "second"]);
    assert!(st.body_error.is_none(), "{:?}", st.body_error);
}
