//! Helpers shared by the end-to-end tests of the HTTP server: a real broker on port 0 over a
//! temporary data directory, a small HTTP client, and an incremental Server-Sent Events reader.
//!
//! Every network await is bounded by [`WAIT`] so that a bug fails the test fast instead of
//! hanging it; no helper sleeps in the hope that something has happened.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bus_broker::broker::Broker;
use bus_broker::config::Config;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode, Version};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Bound on every single await on the network or the broker.
pub const WAIT: Duration = Duration::from_secs(10);

/// The HTTP client every test uses (HTTP/1.1, or HTTP/2 prior knowledge when asked).
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Awaits `fut` for at most [`WAIT`], panicking with `what` when it takes longer.
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {WAIT:?}: {what}"),
    }
}

/// Checks `condition` every 20 ms until it holds, panicking with `what` when it still does
/// not after [`WAIT`]. For state the server reaches on its own (a disconnect noticed, a
/// consumer dropped), never instead of waiting for an event that can be awaited.
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !condition().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {WAIT:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

type Tweak = Arc<dyn Fn(&mut Config) + Send + Sync>;

/// One running incarnation of the server.
struct Running {
    addr: SocketAddr,
    broker: Broker,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// A broker and its HTTP server on `127.0.0.1:<ephemeral>`, over a data directory that lives
/// as long as this value, so that [`TestServer::restart`] reopens the same data.
pub struct TestServer {
    /// The data directory, kept across restarts and deleted on drop.
    pub dir: tempfile::TempDir,
    tweak: Tweak,
    running: Option<Running>,
    /// HTTP/1.1 client shared by the helpers.
    pub client: HttpClient,
}

impl TestServer {
    /// Starts a server with the default configuration.
    pub async fn start_default() -> TestServer {
        TestServer::start(|_| {}).await
    }

    /// Starts a server whose configuration is the default changed by `tweak` (applied again on
    /// every restart).
    pub async fn start(tweak: impl Fn(&mut Config) + Send + Sync + 'static) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = TestServer {
            dir,
            tweak: Arc::new(tweak),
            running: None,
            client: Client::builder(TokioExecutor::new()).build_http(),
        };
        s.launch().await;
        s
    }

    async fn launch(&mut self) {
        let listener = within("bind", tokio::net::TcpListener::bind(("127.0.0.1", 0u16)))
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let mut config = Config {
            addr,
            data_dir: self.dir.path().join("data"),
            ..Config::default()
        };
        (self.tweak)(&mut config);
        let (broker, _reports) = within("Broker::open", Broker::open(config))
            .await
            .expect("Broker::open");
        let (tx, rx) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = rx.await;
        };
        let task = tokio::spawn(bus_broker::server::run(listener, broker.clone(), shutdown));
        self.running = Some(Running {
            addr,
            broker,
            shutdown: Some(tx),
            task: Some(task),
        });
    }

    fn running(&self) -> &Running {
        self.running.as_ref().expect("server is not running")
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.running().addr
    }

    /// The broker behind the server.
    pub fn broker(&self) -> &Broker {
        &self.running().broker
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr(), path)
    }

    /// Fires the shutdown trigger given to `server::run`, without waiting.
    pub fn trigger_shutdown(&mut self) {
        let r = self.running.as_mut().expect("server is not running");
        if let Some(tx) = r.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Waits (at most [`WAIT`]) for `server::run` to return after the trigger, checks it
    /// returned `Ok`, closes the broker, and says how long `run` took to return.
    pub async fn wait_stopped(&mut self) -> Duration {
        let started = Instant::now();
        let mut r = self.running.take().expect("server is not running");
        let task = r.task.take().expect("server task");
        let result = within("server::run to return after shutdown", task)
            .await
            .expect("server task panicked");
        let took = started.elapsed();
        result.expect("server::run returned an error");
        within("Broker::close", r.broker.close()).await;
        took
    }

    /// Stops the server gracefully (trigger, drain, close the broker).
    pub async fn stop(&mut self) {
        self.trigger_shutdown();
        self.wait_stopped().await;
    }

    /// Stops the server and starts a new one over the same data directory (on a new port).
    pub async fn restart(&mut self) {
        self.stop().await;
        self.launch().await;
    }

    /// Sends one request with this server's HTTP/1.1 client.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Resp {
        send(&self.client, method, &self.url(path), headers, body.into()).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.request(Method::GET, path, &[], Bytes::new()).await
    }

    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.request(Method::GET, path, headers, Bytes::new()).await
    }

    pub async fn post(&self, path: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Resp {
        self.request(Method::POST, path, headers, body).await
    }

    /// `GET path`, asserting `200`, returning the JSON body.
    pub async fn get_json(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert_eq!(r.status, StatusCode::OK, "GET {path}: {}", r.text());
        r.json()
    }

    /// Publishes `body` on `subject` with extra request headers, asserting `201`; returns the
    /// receipt.
    pub async fn publish_with(
        &self,
        subject: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Value {
        let path = format!("/v1/events/{}", enc(subject));
        let r = self.post(&path, headers, body).await;
        assert_eq!(r.status, StatusCode::CREATED, "POST {path}: {}", r.text());
        r.json()
    }

    /// Publishes a text payload (`text/plain`), asserting `201`; returns the receipt.
    pub async fn publish(&self, subject: &str, text: &str) -> Value {
        self.publish_with(
            subject,
            &[("content-type", "text/plain")],
            Bytes::copy_from_slice(text.as_bytes()),
        )
        .await
    }

    /// Publishes a batch body (JSON array or NDJSON), returning the raw response.
    pub async fn publish_batch(&self, body: impl Into<Bytes>) -> Resp {
        self.post("/v1/events", &[("content-type", "application/json")], body)
            .await
    }

    /// `GET /v1/events?<query>`, asserting `200`; returns the page.
    pub async fn pull(&self, query: &str) -> Value {
        let path = format!("/v1/events?{query}");
        let r = self.get(&path).await;
        assert_eq!(r.status, StatusCode::OK, "GET {path}: {}", r.text());
        let page = r.json();
        assert!(page["events"].is_array(), "page without events: {page}");
        assert!(page["cursor"].is_string(), "page without cursor: {page}");
        page
    }

    /// Every retained event matching `pattern`, read with pull pages from the oldest.
    pub async fn pull_all(&self, pattern: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut from = "oldest".to_owned();
        loop {
            let page = self
                .pull(&format!(
                    "pattern={}&from={}&limit=1000",
                    enc(pattern),
                    enc(&from)
                ))
                .await;
            let events = page["events"].as_array().expect("events").clone();
            if events.is_empty() {
                return out;
            }
            out.extend(events);
            from = page["cursor"].as_str().expect("cursor").to_owned();
        }
    }

    /// Opens `GET /v1/stream?<query>` and returns the reader, whatever the status.
    pub async fn stream(&self, query: &str, headers: &[(&str, &str)]) -> SseReader {
        sse(
            &self.client,
            &self.url(&format!("/v1/stream?{query}")),
            headers,
        )
        .await
    }

    /// Opens a stream, asserts `200 text/event-stream`, and reads its `subscribed` message,
    /// so that the subscription is live when this returns.
    pub async fn subscribe(&self, query: &str) -> SseReader {
        self.subscribe_with(query, &[]).await
    }

    /// Like [`TestServer::subscribe`], with request headers (`Last-Event-ID`).
    pub async fn subscribe_with(&self, query: &str, headers: &[(&str, &str)]) -> SseReader {
        let mut s = self.stream(query, headers).await;
        s.expect_subscribed().await;
        s
    }

    /// Opens a consumer stream (`GET /v1/stream?<query>` with `durable`, `group` or
    /// `ack=manual`), reads its `subscribed` message, and returns the reader with that
    /// message's data (which names the consumer).
    pub async fn attach(&self, query: &str) -> (SseReader, Value) {
        let mut s = self.stream(query, &[]).await;
        let hello = s.expect_subscribed().await;
        assert!(
            hello["consumer"].as_str().is_some_and(|c| !c.is_empty()),
            "a consumer stream's `subscribed` names its consumer: {hello}"
        );
        (s, hello)
    }

    /// `POST /v1/consumers/{consumer}/events/{id}/{op}`; `op` may carry a query
    /// (`nack?delay=1s`). Returns the raw response.
    pub async fn ack_op(&self, consumer: &str, id: &str, op: &str) -> Resp {
        let path = format!("/v1/consumers/{}/events/{}/{op}", enc(consumer), enc(id));
        self.post(&path, &[], Bytes::new()).await
    }

    /// Like [`TestServer::ack_op`], asserting `200 {"id": id, "status": status}`.
    pub async fn expect_ack(&self, consumer: &str, id: &str, op: &str, status: &str) {
        let r = self.ack_op(consumer, id, op).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{op} of {id} by {consumer}: {}",
            r.text()
        );
        assert_eq!(
            r.json(),
            serde_json::json!({"id": id, "status": status}),
            "{op} of {id} by {consumer}"
        );
    }

    /// `POST /v1/consumers/{consumer}/acks` with `body`; returns the raw response.
    pub async fn ack_batch(&self, consumer: &str, body: impl Into<Bytes>) -> Resp {
        let path = format!("/v1/consumers/{}/acks", enc(consumer));
        self.post(&path, &[("content-type", "application/json")], body)
            .await
    }

    /// `GET /v1/consumers/{name}`, asserting `200`; returns the consumer as listed.
    pub async fn consumer(&self, name: &str) -> Value {
        self.get_json(&format!("/v1/consumers/{}", enc(name))).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Resp {
        self.request(Method::DELETE, path, &[], Bytes::new()).await
    }
}

/// Builds an HTTP/2 prior-knowledge (h2c) client.
pub fn h2c_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// A response read in full.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts this is the documented error response: `status`, a JSON body
    /// `{"error":{"code":code,"message":<non-empty string>}}`; returns the message.
    #[track_caller]
    pub fn assert_error(&self, status: StatusCode, code: &str) -> String {
        assert_eq!(
            self.status,
            status,
            "expected {status} {code}, got {} {}",
            self.status,
            self.text()
        );
        let ct = self.header("content-type").unwrap_or("");
        assert!(
            ct.starts_with("application/json"),
            "error content-type {ct:?}, body {}",
            self.text()
        );
        let v = self.json();
        let obj = v.as_object().expect("error body is an object");
        assert_eq!(obj.len(), 1, "error body has exactly one key: {v}");
        let err = v["error"].as_object().expect("error.error is an object");
        assert_eq!(v["error"]["code"], code, "error code in {v}");
        let msg = v["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("error.message is a string in {v}"));
        assert!(!msg.is_empty(), "empty error message in {v}");
        assert!(
            err.keys().all(|k| k == "code" || k == "message"),
            "error object holds only code and message: {v}"
        );
        msg.to_owned()
    }
}

fn build_request(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Request<Full<Bytes>> {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(
            HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            HeaderValue::from_str(v).expect("header value"),
        );
    }
    req.body(Full::new(body)).expect("request")
}

/// Sends one request with `client` and reads the whole response.
pub async fn send(
    client: &HttpClient,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Resp {
    let what = format!("{method} {url}");
    let req = build_request(method, url, headers, body);
    let res = within(&what, client.request(req))
        .await
        .unwrap_or_else(|e| panic!("{what}: {e:?}"));
    let (parts, body) = res.into_parts();
    let body = within(&format!("body of {what}"), body.collect())
        .await
        .unwrap_or_else(|e| panic!("body of {what}: {e:?}"))
        .to_bytes();
    Resp {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body,
    }
}

/// Opens an SSE stream at `url` with `client` (status and headers are read, the body is left
/// to the reader).
pub async fn sse(client: &HttpClient, url: &str, headers: &[(&str, &str)]) -> SseReader {
    let mut all: Vec<(&str, &str)> = vec![("accept", "text/event-stream")];
    all.extend_from_slice(headers);
    let what = format!("GET {url}");
    let req = build_request(Method::GET, url, &all, Bytes::new());
    let res = within(&what, client.request(req))
        .await
        .unwrap_or_else(|e| panic!("{what}: {e:?}"));
    let (parts, body) = res.into_parts();
    SseReader {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body,
        buf: Vec::new(),
        ended: false,
        body_error: None,
        retry: None,
        comments: Vec::new(),
        pending: Pending::default(),
    }
}

/// One dispatched SSE message.
#[derive(Debug, Clone)]
pub struct SseMessage {
    /// The `event:` field, `None` for the default type (`message`).
    pub event: Option<String>,
    /// The `id:` field of this message, if it had one.
    pub id: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// How many `data:` lines the message had.
    pub data_lines: usize,
}

impl SseMessage {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("SSE data is not JSON ({e}): {:?}", self.data))
    }
}

#[derive(Debug, Default)]
struct Pending {
    event: Option<String>,
    id: Option<String>,
    data: Vec<String>,
}

enum Item {
    Message(SseMessage),
    Comment,
}

/// Reads a `text/event-stream` body incrementally: lines may be split across chunks in any
/// way; `\n`, `\r\n` and `\r` end lines; comments are counted, not returned.
pub struct SseReader {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    body: Incoming,
    buf: Vec<u8>,
    ended: bool,
    /// The error that ended the body, if it did not end cleanly.
    pub body_error: Option<String>,
    /// The last `retry:` value received.
    pub retry: Option<u64>,
    /// Every comment line received (without the leading `:`).
    pub comments: Vec<String>,
    pending: Pending,
}

impl SseReader {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Takes one complete line out of the buffer, if there is one.
    fn take_line(&mut self) -> Option<String> {
        let i = self.buf.iter().position(|&b| b == b'\n' || b == b'\r')?;
        let consumed = if self.buf[i] == b'\r' {
            match self.buf.get(i + 1) {
                Some(b'\n') => i + 2,
                Some(_) => i + 1,
                // A `\r` at the end may be the first half of `\r\n`: wait for more.
                None if !self.ended => return None,
                None => i + 1,
            }
        } else {
            i + 1
        };
        let line: Vec<u8> = self.buf.drain(..consumed).take(i).collect();
        Some(String::from_utf8(line).expect("SSE line is UTF-8"))
    }

    fn process_line(&mut self, line: String) -> Option<Item> {
        if line.is_empty() {
            let p = std::mem::take(&mut self.pending);
            if p.data.is_empty() {
                return None;
            }
            return Some(Item::Message(SseMessage {
                event: p.event,
                id: p.id,
                data_lines: p.data.len(),
                data: p.data.join("\n"),
            }));
        }
        if let Some(c) = line.strip_prefix(':') {
            self.comments.push(c.to_owned());
            return Some(Item::Comment);
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f.to_owned(), v.strip_prefix(' ').unwrap_or(v).to_owned()),
            None => (line, String::new()),
        };
        match field.as_str() {
            "event" => self.pending.event = Some(value),
            "data" => self.pending.data.push(value),
            "id" if !value.contains('\0') => self.pending.id = Some(value),
            "retry" => {
                if let Ok(ms) = value.parse() {
                    self.retry = Some(ms);
                }
            }
            _ => {}
        }
        None
    }

    /// The next message or comment; `None` once the body has ended.
    async fn next_item(&mut self) -> Option<Item> {
        loop {
            while let Some(line) = self.take_line() {
                if let Some(item) = self.process_line(line) {
                    return Some(item);
                }
            }
            if self.ended {
                return None;
            }
            match within("the next SSE chunk", self.body.frame()).await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => {
                    self.body_error = Some(e.to_string());
                    self.ended = true;
                }
                None => self.ended = true,
            }
        }
    }

    /// The next message (of any event type), skipping comments; `None` once the stream ended.
    /// Panics when no message arrives within [`WAIT`], also while keep-alive comments do.
    pub async fn next_event(&mut self) -> Option<SseMessage> {
        within("the next SSE message", async {
            loop {
                match self.next_item().await? {
                    Item::Message(m) => return Some(m),
                    Item::Comment => {}
                }
            }
        })
        .await
    }

    /// Reads until a comment line arrives (panics on a message or the end of the stream).
    pub async fn expect_comment(&mut self) -> String {
        match self.next_item().await {
            Some(Item::Comment) => self.comments.last().cloned().expect("comment"),
            Some(Item::Message(m)) => panic!("expected a comment, got {m:?}"),
            None => panic!("stream ended while waiting for a comment"),
        }
    }

    /// Asserts the status and framing of a stream and reads its first message, which must be
    /// `subscribed`; returns its data.
    pub async fn expect_subscribed(&mut self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "stream status");
        let ct = self.header("content-type").unwrap_or("").to_owned();
        assert!(
            ct.starts_with("text/event-stream"),
            "stream content-type {ct:?}"
        );
        let m = self
            .next_event()
            .await
            .expect("stream ended before `subscribed`");
        assert_eq!(
            m.event.as_deref(),
            Some("subscribed"),
            "first message: {m:?}"
        );
        m.json()
    }

    /// The next message, which must be an event (default type, with an `id:`); returns it.
    pub async fn expect_event(&mut self) -> SseMessage {
        let m = self
            .next_event()
            .await
            .expect("stream ended while waiting for an event");
        assert!(
            m.event.is_none(),
            "expected a default-type event, got {m:?}"
        );
        assert!(m.id.is_some(), "event without an SSE id: {m:?}");
        m
    }

    /// The next `n` events (see [`SseReader::expect_event`]).
    pub async fn expect_events(&mut self, n: usize) -> Vec<SseMessage> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.expect_event().await);
        }
        out
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, for paths and queries.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The payload field of each event, as text (panics when one is not a string).
pub fn texts(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            e["payload"]
                .as_str()
                .unwrap_or_else(|| panic!("payload is not a string in {e}"))
                .to_owned()
        })
        .collect()
}

/// Parses the JSON data of each SSE message.
pub fn jsons(messages: &[SseMessage]) -> Vec<Value> {
    messages.iter().map(SseMessage::json).collect()
}

/// Asserts `s` is an RFC 3339 UTC time with nanoseconds: `2026-11-23T13:22:11.123456789Z`.
#[track_caller]
pub fn assert_time(s: &str) {
    let b = s.as_bytes();
    let ok = b.len() == 30
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'.',
            29 => c == b'Z',
            _ => c.is_ascii_digit(),
        });
    assert!(ok, "{s:?} is not RFC 3339 UTC with nanoseconds");
}

/// Asserts `v` is a publish receipt for `subject` and returns its sequence.
#[track_caller]
pub fn assert_receipt(v: &Value, subject: &str) -> u64 {
    assert_eq!(v["subject"], subject, "receipt {v}");
    let ns = subject.split('.').next().expect("namespace");
    assert_eq!(v["namespace"], ns, "receipt {v}");
    assert!(
        v["id"].as_str().is_some_and(|s| !s.is_empty()),
        "receipt id {v}"
    );
    assert_time(v["time"].as_str().expect("receipt time"));
    v["sequence"].as_u64().expect("receipt sequence")
}

/// The value of the Prometheus sample whose name-and-labels part is exactly `series`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let rest = l.strip_prefix(series)?;
        let rest = rest.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

// Consumer deliveries, for the delivery and consumer tests.

/// `(payload, delivery_count)` of a consumer delivery; also checks that its SSE id is the
/// event id.
pub fn delivery(m: &SseMessage) -> (String, u64) {
    let e = m.json();
    assert_eq!(
        m.id.as_deref(),
        e["id"].as_str(),
        "a consumer delivery's SSE id is the event id: {m:?}"
    );
    (
        e["payload"]
            .as_str()
            .unwrap_or_else(|| panic!("text payload in {e}"))
            .to_owned(),
        e["delivery_count"]
            .as_u64()
            .unwrap_or_else(|| panic!("delivery_count in {e}")),
    )
}

/// The next delivery as `(payload, delivery_count)`.
pub async fn next(st: &mut SseReader) -> (String, u64) {
    delivery(&st.expect_event().await)
}

/// The next `n` deliveries as `(payload, delivery_count)`.
pub async fn next_n(st: &mut SseReader, n: usize) -> Vec<(String, u64)> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(next(st).await);
    }
    out
}

pub fn d(payload: &str, count: u64) -> (String, u64) {
    (payload.to_owned(), count)
}

/// Publishes `payload` on `subject` and returns the event id.
pub async fn put(s: &TestServer, subject: &str, payload: &str) -> String {
    s.publish(subject, payload).await["id"]
        .as_str()
        .expect("receipt id")
        .to_owned()
}

pub fn name_of(hello: &Value) -> String {
    hello["consumer"]
        .as_str()
        .expect("consumer name")
        .to_owned()
}

/// A response read off a raw connection: the status code, the header block as text, and
/// the body (what follows the blank line, not de-chunked).
#[derive(Debug)]
pub struct RawResp {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl RawResp {
    /// Asserts a JSON error body `{"error":{"code":code,...}}` with status `status`.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}\n\n{}", self.head, self.body);
        let start = self
            .body
            .find('{')
            .unwrap_or_else(|| panic!("no JSON body: {}\n\n{:?}", self.head, self.body));
        let end = self.body.rfind('}').map_or(self.body.len(), |i| i + 1);
        let v: Value = serde_json::from_str(&self.body[start..end])
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body));
        assert_eq!(v["error"]["code"], code, "{v}");
    }
}

/// Writes `bytes` on a new connection to `addr` and reads the first response until the
/// connection closes or the response is complete (by Content-Length), within [`WAIT`].
/// For requests the HTTP client cannot send: malformed framing, oversized heads.
pub async fn raw_http(addr: SocketAddr, bytes: &[u8]) -> RawResp {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    within("raw HTTP exchange", async {
        let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
        // The server may answer (and close) before it read everything: ignore write errors.
        let _ = c.write_all(bytes).await;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let n = match c.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf);
            if let Some(h) = text.find("\r\n\r\n") {
                let head = &text[..h];
                let len = head.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                });
                if len.is_some_and(|len| text.len() >= h + 4 + len) {
                    break;
                }
            }
        }
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {text:?}"));
        RawResp {
            status,
            head: head.to_owned(),
            body: body.to_owned(),
        }
    })
    .await
}
