//! [`TestServer`]: a real broker and its HTTP server on `127.0.0.1:<ephemeral>`, over a
//! temporary directory, on the [`Engine`] a test asks for; and [`ClientBroker`], the same with
//! a connected `bus_client::Client`.
//!
//! The server is given its listener (bound to port 0) and its shutdown trigger, as `main`
//! gives its own (`bus_broker::server::run(listener, broker, shutdown)`). Dropping a
//! `TestServer` fires the trigger; [`TestServer::stop`] also waits for `run` to return and
//! closes the broker. The data directory lives as long as the value, so that
//! [`TestServer::restart`] reopens the same data (on the disk engine; the memory engine
//! starts empty by design).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bus_broker::broker::Broker;
use bus_broker::config::Config;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::http::{HttpClient, Resp, enc, send};
use crate::nats::NatsServer;
use crate::sse::{SseReader, sse};
use crate::wait::within;
use bus_broker::storage::JetStreamOptions;

/// The storage engine a test server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// `Broker::open`: segment files, fsync, recovery, under the data directory.
    Disk,
    /// `Broker::in_memory`: nothing touches the disk; a restart starts empty.
    Memory,
    /// `Broker::on_jetstream`: a `nats-server -js` of the test server's own (started with
    /// it, kept across restarts, killed with it); a restart keeps the data.
    JetStream,
}

impl Engine {
    /// The local engines, disk first.
    pub const ALL: [Engine; 2] = [Engine::Disk, Engine::Memory];

    /// `disk`, `memory` or `jetstream`, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Disk => "disk",
            Engine::Memory => "memory",
            Engine::JetStream => "jetstream",
        }
    }

    /// Whether a restart keeps what was stored (not on the memory engine).
    pub fn persists(self) -> bool {
        self != Engine::Memory
    }
}

/// A change to the default configuration, applied again on every restart.
type Tweak = Arc<dyn Fn(&mut Config) + Send + Sync>;

/// One running incarnation of the server.
struct Running {
    /// Where it listens.
    addr: SocketAddr,
    /// The broker it serves.
    broker: Broker,
    /// The trigger given to `server::run`; taken when fired.
    shutdown: Option<oneshot::Sender<()>>,
    /// The task running `server::run`; taken when awaited.
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// How to start a [`TestServer`]: engine, configuration, where the data directory lives.
pub struct TestServerBuilder {
    /// The engine. Default: [`Engine::Disk`].
    engine: Engine,
    /// The configuration change. Default: none.
    tweak: Tweak,
    /// The folder the temporary data directory is made in. Default: the system's.
    dir_in: Option<PathBuf>,
}

impl TestServerBuilder {
    /// The engine to run on. Default: [`Engine::Disk`].
    pub fn engine(mut self, engine: Engine) -> Self {
        self.engine = engine;
        self
    }

    /// Changes the default configuration with `tweak`, again on every restart. Default: no
    /// change (besides the address and data directory the server always sets).
    pub fn config(mut self, tweak: impl Fn(&mut Config) + Send + Sync + 'static) -> Self {
        self.tweak = Arc::new(tweak);
        self
    }

    /// Makes the temporary data directory inside `base` (created if missing), e.g. on a real
    /// disk for a benchmark. Default: the system's temporary folder.
    pub fn dir_in(mut self, base: impl Into<PathBuf>) -> Self {
        self.dir_in = Some(base.into());
        self
    }

    /// Starts the server.
    pub async fn start(self) -> TestServer {
        let dir = match &self.dir_in {
            Some(base) => {
                std::fs::create_dir_all(base).expect("create the base of the data directory");
                tempfile::tempdir_in(base).expect("tempdir")
            }
            None => tempfile::tempdir().expect("tempdir"),
        };
        let mut s = TestServer {
            dir,
            nats: None,
            engine: self.engine,
            tweak: self.tweak,
            running: None,
            client: Client::builder(TokioExecutor::new()).build_http(),
        };
        s.launch().await;
        s
    }
}

/// A broker and its HTTP server on `127.0.0.1:<ephemeral>`, over a data directory that lives
/// as long as this value. See the module docs.
pub struct TestServer {
    /// The data directory, kept across restarts and deleted on drop. The broker's
    /// `data_dir` is its `data` subfolder.
    pub dir: tempfile::TempDir,
    /// The NATS server of [`Engine::JetStream`], started at the first launch and kept
    /// across restarts.
    nats: Option<NatsServer>,
    /// The engine every incarnation runs on.
    engine: Engine,
    /// The configuration change, applied on every (re)start.
    tweak: Tweak,
    /// The current incarnation, `None` once stopped.
    running: Option<Running>,
    /// HTTP/1.1 client shared by the helpers.
    pub client: HttpClient,
}

impl TestServer {
    /// How to start a server with more than an engine and a tweak.
    pub fn builder() -> TestServerBuilder {
        TestServerBuilder {
            engine: Engine::Disk,
            tweak: Arc::new(|_| {}),
            dir_in: None,
        }
    }

    /// Starts a server on the disk engine with the default configuration.
    pub async fn start_default() -> TestServer {
        TestServer::builder().start().await
    }

    /// Starts a server on the disk engine whose configuration is the default changed by
    /// `tweak` (applied again on every restart).
    pub async fn start(tweak: impl Fn(&mut Config) + Send + Sync + 'static) -> TestServer {
        TestServer::builder().config(tweak).start().await
    }

    /// Starts a server on `engine` with the default configuration.
    pub async fn start_default_on(engine: Engine) -> TestServer {
        TestServer::builder().engine(engine).start().await
    }

    /// Starts a server on `engine` with the default configuration changed by `tweak`.
    pub async fn start_on(
        engine: Engine,
        tweak: impl Fn(&mut Config) + Send + Sync + 'static,
    ) -> TestServer {
        TestServer::builder()
            .engine(engine)
            .config(tweak)
            .start()
            .await
    }

    async fn launch(&mut self) {
        self.launch_at(SocketAddr::from(([127, 0, 0, 1], 0))).await;
    }

    async fn launch_at(&mut self, at: SocketAddr) {
        let listener = within("bind", tokio::net::TcpListener::bind(at))
            .await
            .unwrap_or_else(|e| panic!("bind {at}: {e}"));
        let addr = listener.local_addr().expect("local addr");
        let mut config = Config {
            addr,
            data_dir: self.dir.path().join("data"),
            ..Config::default()
        };
        (self.tweak)(&mut config);
        let broker = match self.engine {
            Engine::Disk => {
                within("Broker::open", Broker::open(config))
                    .await
                    .expect("Broker::open")
                    .0
            }
            Engine::Memory => within("Broker::in_memory", Broker::in_memory(config))
                .await
                .expect("Broker::in_memory"),
            Engine::JetStream => {
                // Tweaks set an fsync policy for the disk engine's speed; JetStream refuses
                // one (its durability is the server's), so the harness drops it here.
                config.log.fsync = bus_broker::storage::FsyncPolicy::Always;
                for o in config.overrides.values_mut() {
                    o.fsync = None;
                }
                let nats = self.nats.get_or_insert_with(NatsServer::start);
                let options = JetStreamOptions::new(vec![nats.url().to_owned()]);
                within(
                    "Broker::on_jetstream",
                    Broker::on_jetstream(config, options),
                )
                .await
                .expect("Broker::on_jetstream")
            }
        };
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

    /// `nats://127.0.0.1:<port>` of the NATS server under [`Engine::JetStream`] (once
    /// launched), for tests that look at the streams directly.
    pub fn nats_url(&self) -> Option<&str> {
        self.nats.as_ref().map(NatsServer::url)
    }

    /// The engine the server runs on.
    pub fn engine(&self) -> Engine {
        self.engine
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

    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        self.url("")
    }

    /// Fires the shutdown trigger given to `server::run`, without waiting.
    pub fn trigger_shutdown(&mut self) {
        let r = self.running.as_mut().expect("server is not running");
        if let Some(tx) = r.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Waits (at most [`WAIT`](crate::WAIT)) for `server::run` to return after the trigger,
    /// checks it returned `Ok`, closes the broker, and says how long `run` took to return.
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

    /// Starts a stopped server again over the same data directory (on a new port), so a
    /// test can change its files in between (damage, truncate, repair).
    pub async fn start_again(&mut self) {
        assert!(self.running.is_none(), "the server is still running");
        self.launch().await;
    }

    /// Stops the server and starts a new one over the same data directory (on a new port).
    /// On the memory engine the new broker starts empty.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.launch().await;
    }

    /// Stops the server and starts a new one over the same data directory on the same
    /// address, so that clients that know the address (a browser page, whose origin it is)
    /// reconnect by themselves.
    pub async fn restart_in_place(&mut self) {
        let addr = self.addr();
        self.stop().await;
        self.launch_at(addr).await;
    }

    /// A `bus_client::Client` connected to this server (connecting is bounded).
    pub async fn connect(&self) -> bus_client::Client {
        within("Client::connect", bus_client::Client::connect(&self.base()))
            .await
            .expect("Client::connect")
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

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Resp {
        self.request(Method::GET, path, &[], Bytes::new()).await
    }

    /// `GET path` with request headers.
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.request(Method::GET, path, headers, Bytes::new()).await
    }

    /// `POST path` with request headers and a body.
    pub async fn post(&self, path: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Resp {
        self.request(Method::POST, path, headers, body).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Resp {
        self.request(Method::DELETE, path, &[], Bytes::new()).await
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
}

impl Drop for TestServer {
    /// Fires the shutdown trigger (without waiting), so that a server outlives no test.
    fn drop(&mut self) {
        if let Some(tx) = self.running.as_mut().and_then(|r| r.shutdown.take()) {
            let _ = tx.send(());
        }
    }
}

/// A [`TestServer`] and a `bus_client::Client` connected to it: what the client's tests
/// start from.
pub struct ClientBroker {
    /// The client, connected to [`ClientBroker::server`].
    pub client: bus_client::Client,
    /// Where the broker listens.
    pub addr: SocketAddr,
    /// The server (dropped, and so shut down, with this value).
    pub server: TestServer,
}

impl ClientBroker {
    /// A server on the disk engine with the default configuration, and a client of it.
    pub async fn start() -> ClientBroker {
        ClientBroker::start_on(Engine::Disk).await
    }

    /// A server on `engine` with the default configuration, and a client of it.
    pub async fn start_on(engine: Engine) -> ClientBroker {
        let server = TestServer::start_default_on(engine).await;
        let client = server.connect().await;
        ClientBroker {
            client,
            addr: server.addr(),
            server,
        }
    }
}
