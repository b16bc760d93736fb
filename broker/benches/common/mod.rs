//! Bench-only helpers shared by the HTTP benchmarks: where their broker keeps its data (a
//! `bus_testkit::TestServer` under `target/bench-tmp`, a real disk, so `fdatasync` costs what
//! it costs), the HTTP client they drive it with, case filtering and their runtime. Streams
//! are read with `bus_testkit::sse`.

#![allow(dead_code)] // each benchmark uses its own part

use bus_broker::storage::FsyncPolicy;
use bus_testkit::TestServer;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

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
