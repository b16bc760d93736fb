//! Shared by the HTTP benchmarks: a broker served in this process on `127.0.0.1:0` over a
//! fresh data directory under `target/bench-tmp` (a real disk, so `fdatasync` costs what it
//! costs), and the HTTP client the benchmarks drive it with.

#![allow(dead_code)] // each benchmark uses its own part

use bus_broker::broker::Broker;
use bus_broker::config::Config;
use bus_broker::storage::FsyncPolicy;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The benchmarks' HTTP/1.1 client.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A pooled HTTP/1.1 client with Nagle off, as a latency-minded client would be.
pub fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// A broker and its server.
pub struct Server {
    pub broker: Broker,
    pub addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts a broker whose namespaces use `fsync`.
    pub async fn start(fsync: FsyncPolicy) -> Server {
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-tmp");
        std::fs::create_dir_all(&base).expect("bench-tmp");
        let dir = tempfile::tempdir_in(&base).expect("tempdir");
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0u16))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut config = Config {
            addr,
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        config.log.fsync = fsync;
        let (broker, _) = Broker::open(config).await.expect("open");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(bus_broker::server::run(
            listener,
            broker.clone(),
            async move {
                let _ = rx.await;
            },
        ));
        Server {
            broker,
            addr,
            stop: Some(tx),
            task,
            _dir: dir,
        }
    }

    /// `http://<addr>`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server and closes the broker.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
        self.broker.close().await;
    }
}

/// Opens the SSE stream at `url` and calls `on_line` with each line (without its `\n`) until
/// the stream ends or `on_line` returns false.
pub async fn sse_lines(client: &HttpClient, url: String, mut on_line: impl FnMut(&[u8]) -> bool) {
    let req = hyper::Request::get(url)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = client.request(req).await.expect("stream");
    assert_eq!(resp.status(), 200, "stream refused");
    let mut body = resp.into_body();
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return };
        let Some(data) = frame.data_ref() else {
            continue;
        };
        buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(pos) = buf[start..].iter().position(|b| *b == b'\n') {
            if !on_line(&buf[start..start + pos]) {
                return;
            }
            start += pos + 1;
        }
        buf.drain(..start);
    }
}

/// Whether a case named `name` runs: the bench's arguments (cargo's own `--` flags aside) are
/// words, and a case runs when its name holds one of them, or when there are none.
pub fn wanted() -> impl Fn(&str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    move |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}

/// The runtime the HTTP benches run on: two workers, as the machine has two cores.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}
