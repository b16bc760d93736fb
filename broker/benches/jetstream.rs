//! bus on JetStream against JetStream used directly, as ratios measured in one run.
//!
//! Run with `cargo bench -p bus-broker --bench jetstream` (needs `nats-server` on `PATH` or
//! in `BUS_NATS_SERVER`; without one it says so and exits); pass words to run only the
//! cases whose names hold one (`publish`, `catch-up/sse`, `ack`). Each run starts bus on
//! `--storage nats://` in this process over a fresh `nats-server -js` on loopback, and the
//! NATS client does the same work on that server, on a stream of its own (`DIRECT`). Cases:
//!
//! - **publish/1**: events published one after another, each answered before the next:
//!   through bus (`POST /v1/events/{subject}` over one kept-alive connection, answered
//!   after the PubAck) against a NATS client's JetStream publish awaiting its PubAck.
//! - **publish/64**: the same with [`IN_FLIGHT`] publishers at once, each awaiting its own
//!   answer before its next: for bus [`IN_FLIGHT`] HTTP connections, for NATS [`IN_FLIGHT`]
//!   tasks on the client's one connection (as a NATS application would).
//! - **publish/batch**: batches of [`BATCH`] one after another: for bus one
//!   `POST /v1/events` (an atomic JetStream batch, answered after its commit), for NATS
//!   [`BATCH`] publishes sent and their PubAcks then awaited together.
//! - **catch-up/pull**: events read from the oldest: through bus (HTTP pull pages of
//!   1,000) against a NATS pull consumer without acks fetching batches of 1,000.
//! - **catch-up/sse**: the same read as one stream: through bus (an SSE subscription from
//!   `oldest`) against a NATS ordered consumer (what a NATS application streams with).
//! - **consume+ack**: a durable consumer with acks drained from the oldest: through bus
//!   (an SSE member of durable `bench`, `ack=manual`, `max_in_flight` 1,000, and a task
//!   acking what it received in batches of up to 1,000 ids, one request in flight, as the
//!   `delivery` bench does; the consumer is a JetStream durable consumer) against a NATS
//!   durable pull consumer with explicit acks (`max_ack_pending` 1,000, pulls of 1,000,
//!   every message acked, the last one with a double ack so that the run ends when the
//!   server has taken every ack).
//! - **consume+ack/kv**: the same with `--jetstream-consumers false`: bus's own delivery
//!   engine over the stream, the consumer state in the KV bucket.
//!
//! Each case runs [`RUNS`] times; which side goes first alternates from run to run. A run
//! gives both rates and their ratio; reported are the median and min–max of each over the
//! runs, the ratio's median being the median of the per-run ratios. Every measured part is
//! bounded by [`RUN_LIMIT`]. Client, bus and nats-server share the machine's cores.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use bus_testkit::{Engine, HttpClient, NatsServer, TestServer};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use tokio::sync::mpsc;

mod common;
// Most ids per bus ack request, and events per NATS pull.
use common::{ACK_BATCH, acker, member};

/// Runs per case.
const RUNS: usize = 5;
/// Events published one at a time per run (publish/1).
const SERIAL_EVENTS: usize = 2_000;
/// Events per run of every other case.
const EVENTS: usize = 10_000;
/// Publishers at once in publish/64.
const IN_FLIGHT: usize = 64;
/// Events per batch in publish/batch.
const BATCH: usize = 100;
/// Bound on one side of one run.
const RUN_LIMIT: Duration = Duration::from_secs(120);
/// Payload of each event.
const PAYLOAD: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// The subject bus publishes on (namespace `bench`, stream `BUS_bench`).
const BUS_SUBJECT: &str = "bench.e";
/// The subject the NATS client publishes on (stream `DIRECT`).
const NATS_SUBJECT: &str = "direct.e";

/// The cases, in the order they run.
const CASES: [&str; 7] = [
    "publish/1",
    "publish/64",
    "publish/batch",
    "catch-up/pull",
    "catch-up/sse",
    "consume+ack",
    "consume+ack/kv",
];

/// One side's measurement of one run.
struct Side {
    /// Events done.
    events: usize,
    /// How long they took.
    took: Duration,
}

impl Side {
    fn rate(&self) -> f64 {
        self.events as f64 / self.took.as_secs_f64()
    }
}

/// A run's bus server, its HTTP client and the NATS client on the same `nats-server`.
struct Bench {
    server: TestServer,
    http: HttpClient,
    js: jetstream::Context,
}

impl Bench {
    /// A run's bench; `jetstream_consumers` as `--jetstream-consumers`.
    async fn start(jetstream_consumers: bool) -> Bench {
        let server = TestServer::start_on(Engine::JetStream, move |c| {
            c.jetstream_consumers = jetstream_consumers
        })
        .await;
        let client = async_nats::connect(server.nats_url().expect("nats url"))
            .await
            .expect("connect");
        let js = jetstream::new(client);
        js.get_or_create_stream(jetstream::stream::Config {
            name: "DIRECT".into(),
            subjects: vec!["direct.>".into()],
            ..Default::default()
        })
        .await
        .expect("stream");
        Bench {
            server,
            http: common::http_client(),
            js,
        }
    }

    /// `POST path` with `body`; returns the status and the body.
    async fn post(&self, path: &str, content_type: &str, body: Bytes) -> (u16, Bytes) {
        post(&self.http, &self.server.url(path), content_type, body).await
    }

    /// Stores `n` events on both sides (not measured): bus in batches of 1,000, NATS in
    /// groups of 1,000 publishes sent before their PubAcks are awaited.
    async fn fill(&self, n: usize) {
        let body = batch_body(ACK_BATCH);
        for _ in 0..n / ACK_BATCH {
            let (status, text) = self
                .post("/v1/events", "application/json", body.clone())
                .await;
            assert_eq!(status, 201, "batch refused: {text:?}");
        }
        // In groups of 1,000: the client holds at most 5,000 PubAcks outstanding.
        for _ in 0..n / ACK_BATCH {
            let mut acks = Vec::with_capacity(ACK_BATCH);
            for _ in 0..ACK_BATCH {
                acks.push(
                    self.js
                        .publish(NATS_SUBJECT, PAYLOAD.into())
                        .await
                        .expect("publish"),
                );
            }
            for a in acks {
                a.await.expect("ack");
            }
        }
    }

    async fn bus(&self, case: &str) -> Side {
        match case {
            "publish/1" => {
                let t = Instant::now();
                for _ in 0..SERIAL_EVENTS {
                    self.bus_publish_one().await;
                }
                side(SERIAL_EVENTS, t)
            }
            "publish/64" => {
                let t = Instant::now();
                let mut tasks = Vec::new();
                for _ in 0..IN_FLIGHT {
                    let http = self.http.clone();
                    let url = self.server.url(&format!("/v1/events/{BUS_SUBJECT}"));
                    tasks.push(tokio::spawn(async move {
                        for _ in 0..EVENTS / IN_FLIGHT {
                            let (status, text) = post(
                                &http,
                                &url,
                                "text/plain",
                                Bytes::from_static(PAYLOAD.as_bytes()),
                            )
                            .await;
                            assert_eq!(status, 201, "publish refused: {text:?}");
                        }
                    }));
                }
                for task in tasks {
                    task.await.expect("publisher");
                }
                side(EVENTS / IN_FLIGHT * IN_FLIGHT, t)
            }
            "publish/batch" => {
                let body = batch_body(BATCH);
                let t = Instant::now();
                for _ in 0..EVENTS / BATCH {
                    let (status, text) = self
                        .post("/v1/events", "application/json", body.clone())
                        .await;
                    assert_eq!(status, 201, "batch refused: {text:?}");
                }
                side(EVENTS / BATCH * BATCH, t)
            }
            "catch-up/pull" => {
                let t = Instant::now();
                let got = self.server.pull_all("bench.>").await.len();
                assert_eq!(got, EVENTS);
                side(got, t)
            }
            "catch-up/sse" => {
                let t = Instant::now();
                let url = self.server.url("/v1/stream?pattern=bench.%3E&from=oldest");
                let stream = bus_testkit::sse(&self.http, &url, &[]).await;
                assert_eq!(stream.status, 200, "stream refused");
                let mut got = 0;
                // Lines, not parsed messages: the reader shares the cores with the broker.
                stream
                    .for_each_line(|line| {
                        if line.starts_with(b"id: ") {
                            got += 1;
                        }
                        got < EVENTS
                    })
                    .await;
                assert_eq!(got, EVENTS, "the stream ended early");
                side(got, t)
            }
            "consume+ack" | "consume+ack/kv" => self.bus_consume_ack().await,
            other => unreachable!("no case {other}"),
        }
    }

    async fn bus_publish_one(&self) {
        let url = self.server.url(&format!("/v1/events/{BUS_SUBJECT}"));
        let (status, text) = post(
            &self.http,
            &url,
            "text/plain",
            Bytes::from_static(PAYLOAD.as_bytes()),
        )
        .await;
        assert_eq!(status, 201, "publish refused: {text:?}");
    }

    async fn bus_consume_ack(&self) -> Side {
        let acked = Arc::new(AtomicU64::new(0));
        let done = Arc::new(tokio::sync::Notify::new());
        let (tx, rx) = mpsc::unbounded_channel();
        let t = Instant::now();
        let url = self.server.url(
            "/v1/stream?pattern=bench.%3E&from=oldest&durable=bench&ack=manual&ack_wait=60s&max_in_flight=1000",
        );
        let member = tokio::spawn(member(self.http.clone(), url, tx));
        let acker = tokio::spawn(acker(
            self.http.clone(),
            self.server.url("/v1/consumers/bench/acks"),
            rx,
            acked.clone(),
            done.clone(),
            EVENTS as u64,
        ));
        done.notified().await;
        let took = t.elapsed();
        member.abort();
        acker.abort();
        Side {
            events: acked.load(Ordering::Acquire) as usize,
            took,
        }
    }

    async fn nats(&self, case: &str) -> Side {
        match case {
            "publish/1" => {
                let t = Instant::now();
                for _ in 0..SERIAL_EVENTS {
                    self.js
                        .publish(NATS_SUBJECT, PAYLOAD.into())
                        .await
                        .expect("publish")
                        .await
                        .expect("ack");
                }
                side(SERIAL_EVENTS, t)
            }
            "publish/64" => {
                let t = Instant::now();
                let mut tasks = Vec::new();
                for _ in 0..IN_FLIGHT {
                    let js = self.js.clone();
                    tasks.push(tokio::spawn(async move {
                        for _ in 0..EVENTS / IN_FLIGHT {
                            js.publish(NATS_SUBJECT, PAYLOAD.into())
                                .await
                                .expect("publish")
                                .await
                                .expect("ack");
                        }
                    }));
                }
                for task in tasks {
                    task.await.expect("publisher");
                }
                side(EVENTS / IN_FLIGHT * IN_FLIGHT, t)
            }
            "publish/batch" => {
                let t = Instant::now();
                for _ in 0..EVENTS / BATCH {
                    let mut acks = Vec::with_capacity(BATCH);
                    for _ in 0..BATCH {
                        acks.push(
                            self.js
                                .publish(NATS_SUBJECT, PAYLOAD.into())
                                .await
                                .expect("publish"),
                        );
                    }
                    for a in acks {
                        a.await.expect("ack");
                    }
                }
                side(EVENTS / BATCH * BATCH, t)
            }
            "catch-up/pull" => {
                let t = Instant::now();
                let c = self
                    .direct()
                    .await
                    .create_consumer(consumer::pull::Config {
                        ack_policy: consumer::AckPolicy::None,
                        ..Default::default()
                    })
                    .await
                    .expect("consumer");
                let mut read = 0;
                while read < EVENTS {
                    let mut msgs = c
                        .fetch()
                        .max_messages(ACK_BATCH)
                        .messages()
                        .await
                        .expect("fetch");
                    while let Some(m) = msgs.next().await {
                        m.expect("message");
                        read += 1;
                    }
                }
                side(read, t)
            }
            "catch-up/sse" => {
                let t = Instant::now();
                let mut msgs = self
                    .direct()
                    .await
                    .create_consumer(consumer::pull::OrderedConfig::default())
                    .await
                    .expect("consumer")
                    .messages()
                    .await
                    .expect("messages");
                let mut read = 0;
                while read < EVENTS {
                    msgs.next().await.expect("stream ended").expect("message");
                    read += 1;
                }
                side(read, t)
            }
            "consume+ack" | "consume+ack/kv" => {
                let t = Instant::now();
                let c = self
                    .direct()
                    .await
                    .create_consumer(consumer::pull::Config {
                        durable_name: Some("bench".into()),
                        ack_policy: consumer::AckPolicy::Explicit,
                        ack_wait: Duration::from_secs(60),
                        max_ack_pending: ACK_BATCH as i64,
                        ..Default::default()
                    })
                    .await
                    .expect("consumer");
                let mut msgs = c
                    .stream()
                    .max_messages_per_batch(ACK_BATCH)
                    .messages()
                    .await
                    .expect("messages");
                let mut read = 0;
                while read < EVENTS {
                    let m = msgs.next().await.expect("stream ended").expect("message");
                    read += 1;
                    if read < EVENTS {
                        m.ack().await.expect("ack");
                    } else {
                        m.double_ack().await.expect("double ack");
                    }
                }
                side(read, t)
            }
            other => unreachable!("no case {other}"),
        }
    }

    async fn direct(&self) -> jetstream::stream::Stream {
        self.js.get_stream("DIRECT").await.expect("stream")
    }
}

fn side(events: usize, started: Instant) -> Side {
    Side {
        events,
        took: started.elapsed(),
    }
}

/// A JSON array of `n` events on [`BUS_SUBJECT`].
fn batch_body(n: usize) -> Bytes {
    let batch: Vec<serde_json::Value> = (0..n)
        .map(|_| serde_json::json!({"subject": BUS_SUBJECT, "payload": PAYLOAD}))
        .collect();
    Bytes::from(serde_json::Value::Array(batch).to_string())
}

/// `POST url` with `body`; returns the status and the body.
async fn post(http: &HttpClient, url: &str, content_type: &str, body: Bytes) -> (u16, Bytes) {
    let req = hyper::Request::post(url)
        .header("content-type", content_type)
        .body(Full::new(body))
        .expect("request");
    let resp = http.request(req).await.expect("request sent");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, body)
}

/// Median, min and max.
fn spread(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

async fn bounded(what: &str, side: impl Future<Output = Side>) -> Side {
    tokio::time::timeout(RUN_LIMIT, side)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {RUN_LIMIT:?}"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Err(why) = NatsServer::binary() {
        eprintln!("jetstream bench skipped: {why}");
        return;
    }
    let wanted = common::wanted();
    println!(
        "{RUNS} runs per case; events/s as median (min-max); ratio = median of per-run bus/nats"
    );
    println!(
        "{:<14} {:>24} {:>26} {:>18}",
        "case", "bus", "nats", "bus/nats"
    );
    for case in CASES {
        if !wanted(case) {
            continue;
        }
        let (mut b, mut n, mut r) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..RUNS {
            let bench = Bench::start(case != "consume+ack/kv").await;
            if case.starts_with("catch-up") || case.starts_with("consume+ack") {
                bench.fill(EVENTS).await;
            }
            let (bus, nats) = if run % 2 == 0 {
                let bus = bounded(case, bench.bus(case)).await;
                (bus, bounded(case, bench.nats(case)).await)
            } else {
                let nats = bounded(case, bench.nats(case)).await;
                (bounded(case, bench.bus(case)).await, nats)
            };
            b.push(bus.rate());
            n.push(nats.rate());
            r.push(bus.rate() / nats.rate());
            let mut server = bench.server;
            server.stop().await;
        }
        let (bm, bl, bh) = spread(b);
        let (nm, nl, nh) = spread(n);
        let (rm, rl, rh) = spread(r);
        println!(
            "{case:<14} {bm:>8.0} ({bl:>6.0}-{bh:<6.0}) {nm:>9.0} ({nl:>7.0}-{nh:<7.0}) {rm:>6.2} ({rl:.2}-{rh:.2})"
        );
    }
}
