//! End to end: the HTTP/1 direct path for streams (`connection/first_head.rs`,
//! `connection/response_writer.rs`), byte by byte through raw sockets, and through `curl -N`
//! over TLS: the stream's framing (chunked to HTTP/1.1, close-delimited to HTTP/1.0),
//! resumption with `Last-Event-ID`, keep-alive comments, the shutdown event, JSON errors
//! with their `content-length` and the connection kept after them (or closed when asked),
//! pipelined requests, heads the direct path leaves to hyper (too many headers, too large),
//! and a client that goes away freeing its subscription.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;

use bus_broker::auth::Auth;
use bus_broker::auth::bearer_token::TokenHash;
use bus_testkit::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A raw connection with what was read from it and not consumed yet.
struct Raw {
    /// The socket.
    c: TcpStream,
    /// Bytes read, not consumed.
    buf: Vec<u8>,
}

impl Raw {
    async fn open(addr: SocketAddr, request: &str) -> Raw {
        let mut c = within("connect", TcpStream::connect(addr))
            .await
            .expect("connect");
        c.write_all(request.as_bytes()).await.expect("write");
        Raw { c, buf: Vec::new() }
    }

    /// Reads more; false at the end of input.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        match within("bytes from the broker", self.c.read(&mut chunk)).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The response head, up to and without its blank line.
    async fn head(&mut self) -> String {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8(self.buf[..i].to_vec()).expect("ASCII head");
                self.buf.drain(..i + 4);
                return head;
            }
            assert!(self.fill().await, "no whole head: {:?}", self.buf);
        }
    }

    /// Exactly `n` bytes.
    async fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill().await, "ended before {n} bytes: {:?}", self.buf);
        }
        self.buf.drain(..n).collect()
    }

    /// One chunk of a chunked body (empty: the last one), checking its framing.
    async fn chunk(&mut self) -> String {
        let line = loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let line = String::from_utf8(self.buf[..i].to_vec()).expect("size line");
                self.buf.drain(..i + 2);
                break line;
            }
            assert!(self.fill().await, "no chunk size line: {:?}", self.buf);
        };
        assert_eq!(line, line.to_uppercase(), "upper-case hex, as hyper writes");
        let n = usize::from_str_radix(&line, 16).unwrap_or_else(|_| panic!("size {line:?}"));
        let data = self.take(n).await;
        assert_eq!(self.take(2).await, b"\r\n", "chunk end");
        String::from_utf8(data).expect("UTF-8 chunk")
    }

    /// Chunks until their text holds `what`; returns the text.
    async fn chunks_until(&mut self, what: &str) -> String {
        let mut text = String::new();
        while !text.contains(what) {
            let c = self.chunk().await;
            assert!(!c.is_empty(), "the stream ended before {what:?}: {text}");
            text.push_str(&c);
        }
        text
    }

    /// A response with a `content-length`: its head and body.
    async fn response(&mut self) -> (String, String) {
        let head = self.head().await;
        let len = header(&head, "content-length")
            .unwrap_or_else(|| panic!("no content-length: {head}"))
            .parse()
            .expect("length");
        let body = String::from_utf8(self.take(len).await).expect("UTF-8 body");
        (head, body)
    }

    /// Reads to the end of input (the broker closed the connection); returns what came.
    async fn until_closed(&mut self) -> String {
        while self.fill().await {}
        String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The value of header `name` in `head` (names compared without case).
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// The `id:` lines of SSE text.
fn ids(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(str::to_owned)
        .collect()
}

fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n{extra}\r\n")
}

#[tokio::test]
async fn a_stream_is_chunked_sse_and_resumes_after_its_last_event_id() {
    let s = TestServer::start_default().await;
    put(&s, "user.a", "one").await;
    put(&s, "user.a", "two").await;
    let mut r = Raw::open(
        s.addr(),
        &get(
            "/v1/stream?pattern=user.a&from=oldest",
            "accept: text/event-stream\r\n",
        ),
    )
    .await;
    let head = r.head().await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(header(&head, "content-type"), Some("text/event-stream"));
    assert_eq!(header(&head, "cache-control"), Some("no-cache"));
    assert_eq!(header(&head, "transfer-encoding"), Some("chunked"));
    assert!(
        header(&head, "date").is_some_and(|d| d.ends_with(" GMT")),
        "{head}"
    );
    assert_eq!(header(&head, "content-length"), None);
    let text = r.chunks_until("\"two\"").await;
    assert!(
        text.starts_with("event: subscribed\nretry: 1000\n"),
        "{text}"
    );
    let seen = ids(&text);
    assert_eq!(seen.len(), 2, "{text}");
    drop(r);
    // Resuming after the first event's id gives the second only.
    let mut r = Raw::open(
        s.addr(),
        &get(
            "/v1/stream?pattern=user.a&from=oldest",
            &format!("last-event-id: {}\r\n", seen[0]),
        ),
    )
    .await;
    assert!(r.head().await.starts_with("HTTP/1.1 200 OK"));
    put(&s, "user.a", "three").await;
    let text = r.chunks_until("\"three\"").await;
    assert_eq!(ids(&text)[0], seen[1], "{text}");
    assert!(!text.contains("\"one\""), "{text}");
}

#[tokio::test]
async fn silences_get_keep_alive_comments() {
    let s = TestServer::start_default().await;
    let mut r = Raw::open(s.addr(), &get("/v1/stream?pattern=user.a&heartbeat=1s", "")).await;
    r.head().await;
    r.chunks_until("event: subscribed").await;
    assert_eq!(r.chunk().await, ": keep-alive\n\n");
}

#[tokio::test]
async fn shutdown_ends_the_stream_with_its_event_and_closes_the_connection() {
    let mut s = TestServer::start_default().await;
    let mut r = Raw::open(s.addr(), &get("/v1/stream?pattern=user.a", "")).await;
    r.head().await;
    r.chunks_until("event: subscribed").await;
    s.trigger_shutdown();
    assert_eq!(r.chunk().await, "event: shutdown\ndata: {}\n\n");
    assert_eq!(r.chunk().await, "", "the last chunk");
    assert_eq!(r.until_closed().await, "", "closed after the stream");
    s.wait_stopped().await;
}

#[tokio::test]
async fn an_error_is_json_with_its_length_and_the_connection_serves_the_next_request() {
    let s = TestServer::start_default().await;
    // Both requests in one write: the second is read past the first head and replayed.
    let mut r = Raw::open(
        s.addr(),
        &format!("{}{}", get("/v1/stream", ""), get("/healthz", "")),
    )
    .await;
    let (head, body) = r.response().await;
    assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
    assert_eq!(header(&head, "content-type"), Some("application/json"));
    assert_eq!(header(&head, "connection"), None, "kept alive");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["error"]["code"], "invalid_parameter", "{v}");
    let (head, body) = r.response().await;
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(body.contains("\"status\""), "{body}");
    // A third one, sent after the answers, on the same connection.
    r.c.write_all(get("/v1/stream?pattern=bad..pattern", "").as_bytes())
        .await
        .unwrap();
    let (head, body) = r.response().await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(body.contains("invalid_pattern"), "{body}");
}

#[tokio::test]
async fn connection_close_gets_its_answer_then_the_close() {
    let s = TestServer::start_default().await;
    let mut r = Raw::open(s.addr(), &get("/v1/stream", "connection: close\r\n")).await;
    let (head, body) = r.response().await;
    assert_eq!(header(&head, "connection"), Some("close"), "{head}");
    assert!(body.contains("invalid_parameter"), "{body}");
    assert_eq!(r.until_closed().await, "");
}

#[tokio::test]
async fn auth_errors_on_the_stream_route_are_the_same_json() {
    let yaml = format!(
        "principals:\n  - name: reader\n    tokens: [\"{}\"]\n    permissions: {{subscribe: {{allow: [\"user.>\"]}}}}\n",
        TokenHash::of("secret-token").to_stored()
    );
    let s = TestServer::start(move |c| {
        c.auth = Some(Arc::new(Auth::from_yaml(&yaml).expect("auth file")));
    })
    .await;
    let r = raw_http(s.addr(), get("/v1/stream?pattern=user.a", "").as_bytes()).await;
    r.assert_error(401, "unauthorized");
    assert!(r.head.contains("\r\ncontent-length: "), "{}", r.head);
    let r = raw_http(
        s.addr(),
        get("/v1/stream?pattern=user.a", "host: evil.example\r\n").as_bytes(),
    )
    .await;
    assert_ne!(r.status, 200, "{}", r.head);
    // With the token: a stream; on a pattern it may not read: 403.
    let auth = "authorization: Bearer secret-token\r\n";
    let r = raw_http(s.addr(), get("/v1/stream?pattern=other.a", auth).as_bytes()).await;
    r.assert_error(403, "forbidden");
    let mut r = Raw::open(s.addr(), &get("/v1/stream?pattern=user.a", auth)).await;
    assert!(r.head().await.starts_with("HTTP/1.1 200 OK"));
    r.chunks_until("event: subscribed").await;
}

#[tokio::test]
async fn heads_past_the_direct_path_go_to_hyper_and_get_todays_answers() {
    let s = TestServer::start_default().await;
    let many: String = (0..=100).map(|i| format!("x-{i}: v\r\n")).collect();
    let r = raw_http(s.addr(), get("/v1/stream?pattern=user.a", &many).as_bytes()).await;
    r.assert_error(431, "headers_too_large");
    let huge = format!("x-big: {}\r\n", "a".repeat(70 * 1024));
    let r = raw_http(s.addr(), get("/v1/stream?pattern=user.a", &huge).as_bytes()).await;
    r.assert_error(431, "headers_too_large");
    // Longer than the direct path reads, within the broker's limits: hyper streams it.
    let long = format!("x-long: {}\r\n", "a".repeat(12 * 1024));
    let mut r = Raw::open(s.addr(), &get("/v1/stream?pattern=user.a", &long)).await;
    assert!(r.head().await.starts_with("HTTP/1.1 200 OK"));
    r.chunks_until("event: subscribed").await;
    // HEAD is hyper's too: 405 (with a content-length and no body).
    let mut r = Raw::open(
        s.addr(),
        "HEAD /v1/stream HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n",
    )
    .await;
    let head = r.head().await;
    assert!(
        head.starts_with("HTTP/1.1 405 Method Not Allowed"),
        "{head}"
    );
}

#[tokio::test]
async fn an_http_1_0_client_gets_a_close_delimited_stream() {
    let mut s = TestServer::start_default().await;
    let mut r = Raw::open(
        s.addr(),
        "GET /v1/stream?pattern=user.a HTTP/1.0\r\nhost: 127.0.0.1\r\n\r\n",
    )
    .await;
    let head = r.head().await;
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    assert_eq!(header(&head, "transfer-encoding"), None, "{head}");
    assert_eq!(header(&head, "content-length"), None, "{head}");
    while find(&r.buf, b"event: subscribed").is_none() {
        assert!(r.fill().await);
    }
    put(&s, "user.a", "hi").await;
    while find(&r.buf, b"\"hi\"").is_none() {
        assert!(r.fill().await);
    }
    s.trigger_shutdown();
    let rest = r.until_closed().await;
    assert!(rest.ends_with("event: shutdown\ndata: {}\n\n"), "{rest:?}");
    // An error to HTTP/1.0: its length, then the close.
    let s = TestServer::start_default().await;
    let mut r = Raw::open(s.addr(), "GET /v1/stream HTTP/1.0\r\n\r\n").await;
    let (head, body) = r.response().await;
    assert!(head.starts_with("HTTP/1.0 400 Bad Request\r\n"), "{head}");
    assert!(body.contains("invalid_parameter"), "{body}");
    assert_eq!(r.until_closed().await, "");
}

#[tokio::test]
async fn a_client_that_goes_away_frees_its_subscription() {
    let s = TestServer::start_default().await;
    let mut r = Raw::open(s.addr(), &get("/v1/stream?pattern=user.gone", "")).await;
    r.head().await;
    r.chunks_until("event: subscribed").await;
    let listed = async || {
        s.get_json("/v1/subscriptions")
            .await
            .as_array()
            .expect("a list")
            .iter()
            .filter(|x| x["pattern"] == "user.gone")
            .count()
    };
    assert_eq!(listed().await, 1);
    drop(r);
    eventually("the subscription to go", async || listed().await == 0).await;
}

#[tokio::test]
async fn a_stream_over_tls_with_curl() {
    let certs = TestCerts::new("direct");
    let files = certs.server.clone();
    let s = TestServer::start_on(Engine::Memory, move |c| c.tls = Some(files.clone())).await;
    let url = format!(
        "https://127.0.0.1:{}/v1/stream?pattern=user.a",
        s.addr().port()
    );
    let mut child = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "-N",
            "--http1.1",
            "--max-time",
            "10",
            "-i",
            "--cacert",
        ])
        .arg(&certs.ca)
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("curl is installed (the TLS tests need it)");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut seen = String::new();
    while !seen.contains("event: subscribed") {
        let mut line = String::new();
        let n = within("a line from curl", out.read_line(&mut line))
            .await
            .expect("read");
        assert!(n > 0, "curl ended: {seen}");
        seen.push_str(&line);
    }
    assert!(seen.starts_with("HTTP/1.1 200 OK\r\n"), "{seen}");
    assert!(
        seen.contains("\r\ncontent-type: text/event-stream\r\n"),
        "{seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// A connection that never sent its first head does not hold up a graceful shutdown: with a
/// header timeout far past the wait, the server still stops at once.
async fn a_silent_connection_does_not_hold_up_shutdown() {
    let mut s =
        TestServer::start(|c| c.header_timeout = std::time::Duration::from_secs(3600)).await;
    let silent = TcpStream::connect(s.addr()).await.unwrap();
    // Served: a request on another connection is answered, so the silent one was accepted.
    assert_eq!(s.get("/healthz").await.status, 200);
    s.trigger_shutdown();
    s.wait_stopped().await;
    drop(silent);
}
