//! Consume-and-ack benchmark: events/s a consumer with manual acks receives over Server-Sent
//! Events and acknowledges over HTTP, with the consumer state fsynced (`always`, the state
//! log's policy) and acks group-committed.
//!
//! Run with `cargo bench -p bus-broker --bench delivery`; pass `one` or `group` to run only
//! that case. Each run: a broker in this process on `127.0.0.1:0` over a fresh data
//! directory under `target/bench-tmp` (a real disk, so `fdatasync` costs what it costs),
//! [`EVENTS`] events of 128 B published beforehand (not measured), then a durable consumer
//! (`ack=manual`, default `max_in_flight` 1,000) reading from `oldest`:
//!
//! - **one**: one SSE member; a second task acks what it has received in batches
//!   (`POST /v1/consumers/{name}/acks`, everything received since the last batch, up to 1,000
//!   ids), one batch in flight at a time.
//! - **group**: four members of the same durable, each with its own acking task.
//!
//! Measured: from opening the stream(s) until every event's ack was answered. Reported: the
//! median and min–max of [`RUNS`] runs, because the machine is shared and noisy. The bench
//! client shares the machine's two cores with the broker.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use bus_broker::broker::{Broker, Publish};
use bus_broker::storage::FsyncPolicy;
use bytes::Bytes;
use tokio::sync::mpsc;

mod common;
use common::{acker, member};

/// Events consumed per run.
const EVENTS: usize = 200_000;
/// Runs per case.
const RUNS: usize = 5;
/// Payload size.
const PAYLOAD: usize = 128;
/// Bound on one run.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// `max_in_flight` of the consumer: `BUS_BENCH_MAX_IN_FLIGHT`, default the broker's 1,000.
fn max_in_flight() -> usize {
    std::env::var("BUS_BENCH_MAX_IN_FLIGHT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

async fn fill(broker: &Broker) {
    let payload = Bytes::from(vec![b'x'; PAYLOAD]);
    for chunk in 0..EVENTS / 1000 {
        let items = (0..1000)
            .map(|i| Publish {
                subject: format!("bench.e{}", (chunk * 1000 + i) % 16),
                payload: payload.clone(),
                ..Publish::default()
            })
            .collect();
        broker.publish_batch(items).await.expect("publish");
    }
}

/// One run with `members` members: events/s consumed and acked.
async fn run_once(members: usize) -> f64 {
    // Publishing is not measured; the consumer state is fsynced whatever the policy says.
    let mut server = common::start(FsyncPolicy::Never).await;
    fill(server.broker()).await;
    let client = common::http_client();
    let base = server.base();
    let acked = Arc::new(AtomicU64::new(0));
    let done = Arc::new(tokio::sync::Notify::new());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..members {
        let (tx, rx) = mpsc::unbounded_channel();
        let url = format!(
            "{base}/v1/stream?pattern=bench.%3E&from=oldest&durable=bench&ack=manual&ack_wait=60s&max_in_flight={}",
            max_in_flight()
        );
        tasks.push(tokio::spawn(member(client.clone(), url, tx)));
        tasks.push(tokio::spawn(acker(
            client.clone(),
            format!("{base}/v1/consumers/bench/acks"),
            rx,
            acked.clone(),
            done.clone(),
            EVENTS as u64,
        )));
    }
    tokio::time::timeout(RUN_LIMIT, done.notified())
        .await
        .expect("run finished in time");
    let elapsed = started.elapsed();
    for t in &tasks {
        t.abort();
    }
    server.stop().await;
    EVENTS as f64 / elapsed.as_secs_f64()
}

fn summary(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    format!(
        "median {:>9.0} events/s  (min {:.0}, max {:.0}, {} runs)",
        v[v.len() / 2],
        v[0],
        v[v.len() - 1],
        v.len()
    )
}

fn main() {
    let wanted = common::wanted();
    let rt = common::runtime();
    for (name, members) in [("one", 1), ("group", 4)] {
        if !wanted(name) {
            continue;
        }
        let rates: Vec<f64> = (0..RUNS).map(|_| rt.block_on(run_once(members))).collect();
        println!(
            "consume+ack/{name} ({members} member{}, {EVENTS} x {PAYLOAD} B, max_in_flight {}, state fsync always): {}",
            if members == 1 { "" } else { "s" },
            max_in_flight(),
            summary(rates)
        );
    }
}
