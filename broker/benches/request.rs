//! Request/reply benchmark: round-trip latency (p50, p99) and requests/s of
//! `POST /v1/requests/{subject}` answered by a responder over Server-Sent Events.
//!
//! Run with `cargo bench -p bus-broker --bench request`; pass words to run only the cases
//! whose name holds one (`never`, `always`, `c1`, `c64`). Each case: a broker in this process
//! (see `common`) with the request namespace at fsync `never` or `always`, one responder (a
//! plain SSE subscription to `rpc.>` that answers each request by publishing its payload to
//! the request's `reply_to`, each reply sent from its own task), and 1 or 64 callers, each
//! sending requests back to back over its own kept-alive connection. [`WARMUP`] requests
//! first (not measured), then [`REQUESTS`] measured ones per run; latency is from sending a
//! request to having its whole answer. Reported: the median and min–max over [`RUNS`] runs
//! of each run's p50, p99 and requests/s. Client, responder and broker share the machine's
//! two cores, as NATS's `nats bench` client and server did for the comparison figure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bus_broker::storage::FsyncPolicy;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};

mod common;
use common::HttpClient;

/// Runs per case.
const RUNS: usize = 5;
/// Unmeasured requests before each run.
const WARMUP: usize = 500;
/// Measured requests per run (all callers together).
const REQUESTS: usize = 10_000;
/// Payload of each request and reply.
const PAYLOAD: usize = 128;
/// Bound on one run.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// Answers every request on the stream of `rpc.>` with its own payload.
async fn responder(client: HttpClient, base: String) {
    let url = format!("{base}/v1/stream?pattern=rpc.%3E&from=newest");
    let replier = client.clone();
    let mut stream = bus_testkit::sse(&client, &url, &[]).await;
    assert_eq!(stream.status, 200, "stream refused");
    while let Some(m) = stream.next_event().await {
        if let Ok(event) = serde_json::from_str::<serde_json::Value>(&m.data)
            && let Some(inbox) = event["reply_to"].as_str()
        {
            let payload = Bytes::from(event["payload"].as_str().unwrap_or("").to_owned());
            let url = format!("{base}/v1/events/{inbox}");
            let client = replier.clone();
            tokio::spawn(async move {
                let req = hyper::Request::post(url)
                    .body(Full::new(payload))
                    .expect("reply");
                let resp = client.request(req).await.expect("reply sent");
                assert_eq!(resp.status(), 200, "reply refused");
                let _ = resp.into_body().collect().await;
            });
        }
    }
}

/// One caller: `n` requests back to back; the latency of each.
async fn caller(client: HttpClient, url: Arc<str>, n: usize) -> Vec<Duration> {
    let payload = Bytes::from(vec![b'x'; PAYLOAD]);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let req = hyper::Request::post(&*url)
            .body(Full::new(payload.clone()))
            .expect("request");
        let resp = client.request(req).await.expect("request sent");
        assert_eq!(resp.status(), 200, "request failed");
        let body = resp.into_body().collect().await.expect("reply").to_bytes();
        assert_eq!(body.len(), PAYLOAD, "the reply echoes the request");
        out.push(started.elapsed());
    }
    out
}

/// `n` requests over `callers` callers: every latency, and the wall time.
async fn round(
    client: &HttpClient,
    url: &Arc<str>,
    callers: usize,
    n: usize,
) -> (Vec<Duration>, Duration) {
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|_| tokio::spawn(caller(client.clone(), url.clone(), n / callers)))
        .collect();
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await.expect("caller"));
    }
    (all, started.elapsed())
}

/// One run: (p50 µs, p99 µs, requests/s).
async fn run_once(fsync: FsyncPolicy, callers: usize) -> (f64, f64, f64) {
    let mut server = common::start(fsync).await;
    let client = common::http_client();
    let base = server.base();
    let responder = tokio::spawn(responder(common::http_client(), base.clone()));
    let subject = bus_broker::subject::Subject::parse("rpc.echo").expect("subject");
    while !server.broker().has_subscribers(&subject) {
        tokio::task::yield_now().await;
    }
    let url: Arc<str> = format!("{base}/v1/requests/rpc.echo").into();
    let measured = async {
        round(&client, &url, callers, WARMUP.max(callers)).await;
        round(&client, &url, callers, REQUESTS).await
    };
    let (mut lat, wall) = tokio::time::timeout(RUN_LIMIT, measured)
        .await
        .expect("run finished in time");
    responder.abort();
    server.stop().await;
    lat.sort();
    let us = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)].as_secs_f64() * 1e6;
    (us(0.50), us(0.99), lat.len() as f64 / wall.as_secs_f64())
}

fn median_range(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn main() {
    let wanted = common::wanted();
    let rt = common::runtime();
    for (policy, fsync) in [
        ("never", FsyncPolicy::Never),
        ("always", FsyncPolicy::Always),
    ] {
        for callers in [1, 64] {
            let name = format!("request/{policy}/c{callers}");
            if !wanted(&name) {
                continue;
            }
            let runs: Vec<_> = (0..RUNS)
                .map(|_| rt.block_on(run_once(fsync, callers)))
                .collect();
            let (p50, p50_lo, p50_hi) = median_range(runs.iter().map(|r| r.0).collect());
            let (p99, p99_lo, p99_hi) = median_range(runs.iter().map(|r| r.1).collect());
            let (rps, rps_lo, rps_hi) = median_range(runs.iter().map(|r| r.2).collect());
            println!(
                "{name} ({REQUESTS} x {PAYLOAD} B, {RUNS} runs): p50 {p50:.0} µs ({p50_lo:.0}–{p50_hi:.0}), \
                 p99 {p99:.0} µs ({p99_lo:.0}–{p99_hi:.0}), {rps:.0} req/s ({rps_lo:.0}–{rps_hi:.0})"
            );
        }
    }
}
