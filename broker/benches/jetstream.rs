//! bus on JetStream against JetStream used directly, as ratios measured in one run.
//!
//! Run with `cargo bench -p bus-broker --bench jetstream` (needs `nats-server` on `PATH` or
//! in `BUS_NATS_SERVER`; without one it says so and exits). One `nats-server -js` on
//! loopback serves both sides. Cases, each [`RUNS`] times, reporting the median:
//!
//! - **publish**: [`EVENTS`] events published one after another, each answered before the
//!   next: through bus (`POST /v1/events/{subject}` over one kept-alive connection, answered
//!   after the PubAck) against a NATS client's JetStream publish awaiting its PubAck.
//! - **catch-up**: the same [`EVENTS`] read from the oldest: through bus (pull pages of
//!   1,000 over HTTP) against a NATS pull consumer fetching batches of 1,000.
//!
//! Client, bus and nats-server share the machine's cores.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use bus_testkit::{Engine, NatsServer, TestServer};
use futures::StreamExt;

/// Runs per case.
const RUNS: usize = 3;
/// Events per run.
const EVENTS: usize = 2_000;
/// Payload of each event.
const PAYLOAD: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Err(why) = NatsServer::binary() {
        eprintln!("jetstream bench skipped: {why}");
        return;
    }
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f));
    println!("case      bus events/s   nats events/s   bus/nats");
    if wanted("publish") {
        let (mut b, mut n) = (Vec::new(), Vec::new());
        for run in 0..RUNS {
            let s = TestServer::start_default_on(Engine::JetStream).await;
            let js = direct(&s).await;
            let t = Instant::now();
            for _ in 0..EVENTS {
                s.publish("bench.e", PAYLOAD).await;
            }
            b.push(rate(EVENTS, t.elapsed()));
            let t = Instant::now();
            for _ in 0..EVENTS {
                js.publish(format!("direct{run}.e"), PAYLOAD.into())
                    .await
                    .expect("publish")
                    .await
                    .expect("ack");
            }
            n.push(rate(EVENTS, t.elapsed()));
        }
        report("publish", median(b), median(n));
    }
    if wanted("catch") {
        let (mut b, mut n) = (Vec::new(), Vec::new());
        for run in 0..RUNS {
            let s = TestServer::start_default_on(Engine::JetStream).await;
            let js = direct(&s).await;
            let batch: Vec<serde_json::Value> = (0..1000)
                .map(|_| serde_json::json!({"subject": "bench.e", "payload": PAYLOAD}))
                .collect();
            let body = serde_json::Value::Array(batch).to_string();
            for _ in 0..EVENTS / 1000 {
                assert!(s.publish_batch(body.clone()).await.status.is_success());
            }
            let subject = format!("direct{run}.e");
            let mut acks = Vec::new();
            for _ in 0..EVENTS {
                acks.push(
                    js.publish(subject.clone(), PAYLOAD.into())
                        .await
                        .expect("publish"),
                );
            }
            for a in acks {
                a.await.expect("ack");
            }
            let t = Instant::now();
            let got = s.pull_all("bench.>").await.len();
            b.push(rate(got, t.elapsed()));
            assert_eq!(got, EVENTS);
            let t = Instant::now();
            let stream = js.get_stream(format!("DIRECT{run}")).await.expect("stream");
            let c = stream
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
                    .max_messages(1000)
                    .messages()
                    .await
                    .expect("fetch");
                while let Some(m) = msgs.next().await {
                    m.expect("message");
                    read += 1;
                }
            }
            n.push(rate(read, t.elapsed()));
        }
        report("catch-up", median(b), median(n));
    }
}

/// A NATS client on `s`'s server with a stream of its own per run (`DIRECT<n>`).
async fn direct(s: &TestServer) -> jetstream::Context {
    let client = async_nats::connect(s.nats_url().expect("nats url"))
        .await
        .expect("connect");
    let js = jetstream::new(client);
    for run in 0..RUNS {
        js.get_or_create_stream(jetstream::stream::Config {
            name: format!("DIRECT{run}"),
            subjects: vec![format!("direct{run}.>")],
            ..Default::default()
        })
        .await
        .expect("stream");
    }
    js
}

fn report(case: &str, bus: f64, nats: f64) {
    println!("{case:<9} {bus:>12.0} {nats:>15.0} {:>10.2}", bus / nats);
}
