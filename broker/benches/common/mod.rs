//! Bench-only helpers shared by the HTTP benchmarks: where their broker keeps its data (a
//! `bus_testkit::TestServer` under `target/bench-tmp`, a real disk, so `fdatasync` costs what
//! it costs), the HTTP client they drive it with, case filtering and their runtime. Streams
//! are read with `bus_testkit::sse`.

#![allow(dead_code)] // each benchmark uses its own part

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bus_broker::storage::FsyncPolicy;
use bus_testkit::TestServer;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;

/// The benchmarks' HTTP/1.1 client (the testkit's client type).
pub use bus_testkit::HttpClient;

/// A pooled HTTP/1.1 client with Nagle off, as a latency-minded client would be.
pub fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Starts a broker (disk engine) whose namespaces use `fsync`, over a fresh data directory
/// under `target/bench-tmp`: a real disk, so `fdatasync` costs what it costs.
pub async fn start(fsync: FsyncPolicy) -> TestServer {
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-tmp");
    TestServer::builder()
        .config(move |c| c.log.fsync = fsync)
        .dir_in(base)
        .start()
        .await
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

/// Most ids one ack request carries (the broker's limit per request).
pub const ACK_BATCH: usize = 1000;

/// Reads one member's stream, sending every event id to `ids`, until `ids` closes.
pub async fn member(client: HttpClient, url: String, ids: mpsc::UnboundedSender<String>) {
    let stream = bus_testkit::sse(&client, &url, &[]).await;
    assert_eq!(stream.status, 200, "stream refused");
    // Lines, not parsed messages: the member shares the cores with the broker it measures.
    // Every event carries its own `id:` line; the `subscribed` message has none.
    stream
        .for_each_line(|line| match line.strip_prefix(b"id: ") {
            Some(id) => ids.send(String::from_utf8_lossy(id).into_owned()).is_ok(),
            None => true,
        })
        .await;
}

/// Acks everything received, in batches of up to [`ACK_BATCH`] ids, one request at a time;
/// counts answered acks and notifies `done` once `total` were.
pub async fn acker(
    client: HttpClient,
    url: String,
    mut ids: mpsc::UnboundedReceiver<String>,
    acked: Arc<AtomicU64>,
    done: Arc<tokio::sync::Notify>,
    total: u64,
) {
    let mut batch = Vec::with_capacity(ACK_BATCH);
    while let Some(id) = ids.recv().await {
        batch.push(id);
        while batch.len() < ACK_BATCH {
            match ids.try_recv() {
                Ok(id) => batch.push(id),
                Err(_) => break,
            }
        }
        let body = serde_json::to_vec(&batch).expect("json");
        let req = hyper::Request::post(&url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("request");
        let resp = client.request(req).await.expect("ack");
        assert_eq!(resp.status(), 200, "ack refused");
        let answer = resp
            .into_body()
            .collect()
            .await
            .expect("ack body")
            .to_bytes();
        // Counting the answers' statuses is enough to check them (and cheaper than parsing:
        // the client shares the cores with the broker).
        let text = String::from_utf8_lossy(&answer);
        let ok = text.matches("\"status\":\"acked\"").count();
        assert_eq!(ok, batch.len(), "every ack succeeds: {text}");
        let answered = acked.fetch_add(ok as u64, Ordering::AcqRel) + ok as u64;
        if answered >= total {
            done.notify_one();
        }
        batch.clear();
    }
}
