//! Live fan-out benchmark (issue 15): what it costs the broker to hand each published event to
//! the live subscriptions it matches, as their number grows, in CPU, latency and memory.
//!
//! Run with `cargo bench -p bus-broker --bench fanout`; pass `sparse`, `dense`, `idle` or
//! `many` to run only that case. `BUS_BENCH_RUNS` (default 5) and `BUS_BENCH_SECS` (seconds of
//! load per run, default 5) change the size; `BUS_FANOUT_ENGINE=memory` runs the broker child on
//! the memory engine instead of the disk.
//!
//! **Processes.** The broker's CPU must be the broker's alone, and the load generator shares
//! the machine's two cores with it, so the broker runs in a child process: this binary
//! re-executes itself with `BUS_FANOUT_ROLE=broker` (the disk engine over a fresh directory
//! under `target/bench-tmp`, fsync `never`, `max_connections` 20,000, keep-alives every
//! 300 s so that none fall in a measured window, `server::run` on `127.0.0.1:0`), which prints
//! its port and runs until its stdin closes. The parent reads the child's CPU as
//! Δ(utime + stime) from `/proc/<pid>/stat` (clock ticks, `getconf CLK_TCK`) and its memory as
//! `VmRSS` from `/proc/<pid>/status`. Before the load, the same CPU is read over an idle
//! window as long as the load's; it is reported and subtracted (scaled to the load window).
//! The parent's own CPU over the load window is reported as the generator's.
//!
//! **Clients.** Each subscriber is a raw `TcpStream` that writes its HTTP/1.1 `GET
//! /v1/stream?pattern=..&from=newest` by hand and reads lines (chunk-size lines are passed
//! over), so that 10,000 of them stay cheap. Publishing waits until every stream has had its
//! `event: subscribed`. The publisher is open loop: one `POST /v1/events/{subject}` per tick of
//! a `tokio::time::interval`, each on its own task (the pooled HTTP/1.1 client, at most
//! [`MAX_PUBLISHES_IN_FLIGHT`] at a time; past that the publisher falls behind, and "publishing
//! took" says by how much). A payload is 128 B and starts with `s=<seq>;`; the latency of a
//! delivery is from when its publish was sent (or, once the publisher is more than
//! [`TIMER_SLACK`] behind the rate, from when it was due, so that a backlog is not hidden) to
//! the moment its `data:` line is read.
//!
//! Cases:
//!
//! - **sparse**: N subscribers, each on its own subject `user.<i>.inbox`, N = 10, 1,000 and
//!   10,000 in the same run (alternating); 1,000 events/s, each to one random subscriber's
//!   subject (xorshift, fixed seed). Broker CPU per published event, latency, delivered.
//! - **dense**: 1,000 subscribers on `user.>`, 200 events/s: broker CPU per delivery,
//!   deliveries/s, latency; and the same load against a **baseline** child
//!   (`BUS_FANOUT_ROLE=baseline`): a bare tokio `TcpListener`, no hyper or axum, that answers
//!   the streams with minimal chunked SSE headers and writes each publish's pre-encoded frame
//!   (the broker's event JSON shape and size) to every stream.
//! - **idle**: 10,000 idle streams on distinct subjects; broker RSS before and after they are
//!   all open (each has had its hello): KiB per subscription. Beside it, the same streams held
//!   by a bare axum server on the same stack (`BUS_FANOUT_ROLE=bare-axum`, a pending SSE body
//!   and nothing else): the floor the HTTP stack sets, and bus's own share above it.
//! - **many**: no HTTP. A child (`BUS_FANOUT_ROLE=many`, a fresh process per run so that its
//!   RSS delta means something) opens `Broker::in_memory`, 100,000 (or 10) subscriptions
//!   `user.<i>.inbox` from `newest`, each driven by a task awaiting `Subscription::next()`, and
//!   publishes in a closed loop (publish, wait until the one matching subscription has it) for
//!   up to [`MANY_EVENTS`] events or [`MANY_LIMIT`]: process CPU and wall time per event, and
//!   RSS per subscription (meaningful at 100,000 only: at 10 the delta is allocator noise).
//!
//! Each case is run [`runs`] times; reported: median and min–max over the runs.

use std::io::{BufRead, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bus_broker::broker::{Broker, Publish};
use bus_broker::config::Config;
use bus_broker::storage::FsyncPolicy;
use bus_broker::subscription::Delivery;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, broadcast, mpsc};
use tokio_util::sync::CancellationToken;

mod common;
use common::HttpClient;

/// The environment variable naming the role of a child process.
const ROLE_VAR: &str = "BUS_FANOUT_ROLE";
/// The environment variable giving a `many` child its subscription count.
const SUBS_VAR: &str = "BUS_FANOUT_SUBS";
/// Payload bytes of every event.
const PAYLOAD: usize = 128;
/// Subscribers of the sparse case, in the order they alternate.
const SPARSE_NS: [usize; 3] = [10, 1_000, 10_000];
/// Publish rate of the sparse case, events/s.
const SPARSE_RATE: u64 = 1_000;
/// Subscribers of the dense case, all on `user.>`.
const DENSE_SUBS: usize = 1_000;
/// Publish rate of the dense case, events/s.
const DENSE_RATE: u64 = 200;
/// Idle streams of the idle case.
const IDLE_SUBS: usize = 10_000;
/// Subscriptions of the many case, against [`MANY_FEW`].
const MANY_SUBS: usize = 100_000;
/// The few subscriptions the many case compares with.
const MANY_FEW: usize = 10;
/// Most events the many case publishes per run.
const MANY_EVENTS: usize = 2_000;
/// Longest the many case publishes per run.
const MANY_LIMIT: Duration = Duration::from_secs(5);
/// Streams being opened at a time (connect, request, hello): under the listen backlog.
const CONNECTS_IN_FLIGHT: usize = 128;
/// Publishes in flight at most; past it the publisher waits (and falls behind its rate).
const MAX_PUBLISHES_IN_FLIGHT: usize = 256;
/// How late a tick may fire (tokio's timer has a 1 ms resolution) and the publish still count
/// as on time; past it, its latency counts from when it was due.
const TIMER_SLACK: Duration = Duration::from_millis(2);
/// Longest wait, after the last publish, for the deliveries still on their way.
const DRAIN_LIMIT: Duration = Duration::from_secs(15);
/// Longest wait for every stream's hello.
const OPEN_LIMIT: Duration = Duration::from_secs(120);
/// Read buffer of one raw subscriber.
const READ_BUF_BYTES: usize = 4096;
/// The seed of the subject choice.
const SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// Runs per case: `BUS_BENCH_RUNS`, default 5.
fn runs() -> usize {
    env_num("BUS_BENCH_RUNS", 5)
}

/// Seconds of load per run (and of the idle window before it): `BUS_BENCH_SECS`, default 5.
fn load_secs() -> u64 {
    env_num("BUS_BENCH_SECS", 5) as u64
}

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    match std::env::var(ROLE_VAR).as_deref() {
        Ok("broker") => broker_role(),
        Ok("baseline") => baseline_role(),
        Ok("many") => many_role(),
        Ok("bare-axum") => bare_axum_role(),
        Ok(other) => panic!("unknown {ROLE_VAR} {other:?}"),
        Err(_) => parent(),
    }
}

/// The bench itself: runs the cases asked for, each against children of its own.
fn parent() {
    let wanted = common::wanted();
    let open_files = max_open_files();
    assert!(
        open_files > IDLE_SUBS as u64 + 1_000,
        "the bench opens {IDLE_SUBS} sockets: raise the open-file limit (ulimit -n 20000), now {open_files}"
    );
    println!(
        "fanout: {} runs per case, {} s of load per run, CLK_TCK {}, ephemeral ports {}",
        runs(),
        load_secs(),
        clk_tck(),
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .unwrap_or_default()
            .trim()
    );
    let rt = common::runtime();
    if wanted("sparse") {
        sparse(&rt);
    }
    if wanted("dense") {
        dense(&rt);
    }
    if wanted("idle") {
        idle(&rt);
    }
    if wanted("many") {
        many();
    }
}

// ---------------------------------------------------------------------------------------------
// The cases.

/// One run's figures of an HTTP load.
struct LoadRun {
    /// Events published (answered 2xx).
    published: u64,
    /// Publishes that failed.
    failed: u64,
    /// Deliveries the subscribers read.
    delivered: u64,
    /// Deliveries expected.
    expected: u64,
    /// Broker CPU over the load window, minus idle (scaled), seconds.
    cpu: f64,
    /// Broker CPU over the idle window, seconds.
    idle_cpu: f64,
    /// Generator (this process) CPU over the load window, seconds.
    gen_cpu: f64,
    /// From the first publish to the last delivery (or the end of the drain), seconds.
    window: f64,
    /// From the first publish due to the last one answered, seconds (the rate's span when the
    /// broker keeps up).
    publish_span: f64,
    /// Latencies of the deliveries, µs, sorted.
    latencies: Vec<u32>,
}

impl LoadRun {
    fn pct(&self, p: f64) -> f64 {
        percentile(&self.latencies, p)
    }
}

fn sparse(rt: &tokio::runtime::Runtime) {
    let mut by_n: Vec<Vec<LoadRun>> = SPARSE_NS.iter().map(|_| Vec::new()).collect();
    for run in 0..runs() {
        for (k, &n) in SPARSE_NS.iter().enumerate() {
            let r = rt.block_on(load_run("broker", n, Shape::Sparse));
            println!(
                "  sparse run {} N={n}: published {} in {:.2} s, delivered {}/{} by {:.2} s, broker {:.3} s (idle {:.3}) gen {:.3} s, p50 {:.0} µs p99 {:.0} µs",
                run + 1,
                r.published,
                r.publish_span,
                r.delivered,
                r.expected,
                r.window,
                r.cpu,
                r.idle_cpu,
                r.gen_cpu,
                r.pct(50.0),
                r.pct(99.0)
            );
            by_n[k].push(r);
        }
    }
    println!(
        "sparse ({SPARSE_RATE} events/s for {} s, one subject per subscriber, {PAYLOAD} B):",
        load_secs()
    );
    let mut per_event: Vec<Vec<f64>> = Vec::new();
    for (k, &n) in SPARSE_NS.iter().enumerate() {
        let rs = &by_n[k];
        let cpu_ev: Vec<f64> = rs
            .iter()
            .map(|r| r.cpu * 1e6 / r.published.max(1) as f64)
            .collect();
        println!(
            "  N={n:>6}: published {}, delivered {}, failed publishes {}; publishing took {} s, last delivery at {} s; broker CPU/event {} µs; idle CPU {} ms; generator CPU/event {} µs; latency p50 {} µs, p99 {} µs, max {} µs",
            summary(rs.iter().map(|r| r.published as f64).collect(), 0),
            summary(rs.iter().map(|r| r.delivered as f64).collect(), 0),
            rs.iter().map(|r| r.failed).sum::<u64>(),
            summary(rs.iter().map(|r| r.publish_span).collect(), 2),
            summary(rs.iter().map(|r| r.window).collect(), 2),
            summary(cpu_ev.clone(), 1),
            summary(rs.iter().map(|r| r.idle_cpu * 1e3).collect(), 0),
            summary(
                rs.iter()
                    .map(|r| r.gen_cpu * 1e6 / r.published.max(1) as f64)
                    .collect(),
                1
            ),
            summary(rs.iter().map(|r| r.pct(50.0)).collect(), 0),
            summary(rs.iter().map(|r| r.pct(99.0)).collect(), 0),
            summary(rs.iter().map(|r| r.pct(100.0)).collect(), 0),
        );
        per_event.push(cpu_ev);
    }
    let last = SPARSE_NS.len() - 1;
    let ratios: Vec<f64> = per_event[last]
        .iter()
        .zip(&per_event[0])
        .map(|(big, small)| big / small.max(1e-9))
        .collect();
    println!(
        "  broker CPU/event N={} ÷ N={} (run by run): {}",
        SPARSE_NS[last],
        SPARSE_NS[0],
        summary(ratios, 1)
    );
}

fn dense(rt: &tokio::runtime::Runtime) {
    let mut bus = Vec::new();
    let mut base = Vec::new();
    for run in 0..runs() {
        for (role, into) in [("broker", &mut bus), ("baseline", &mut base)] {
            let r = rt.block_on(load_run(role, DENSE_SUBS, Shape::Dense));
            println!(
                "  dense run {} {role}: published {} in {:.2} s, delivered {}/{} by {:.2} s, cpu {:.3} s (idle {:.3}) gen {:.3} s, p99 {:.0} µs",
                run + 1,
                r.published,
                r.publish_span,
                r.delivered,
                r.expected,
                r.window,
                r.cpu,
                r.idle_cpu,
                r.gen_cpu,
                r.pct(99.0)
            );
            into.push(r);
        }
    }
    let per_delivery = |rs: &[LoadRun]| -> Vec<f64> {
        rs.iter()
            .map(|r| r.cpu * 1e6 / r.delivered.max(1) as f64)
            .collect()
    };
    println!(
        "dense ({DENSE_SUBS} subscribers on user.>, {DENSE_RATE} events/s for {} s, {PAYLOAD} B):",
        load_secs()
    );
    for (name, rs) in [("bus", &bus), ("baseline", &base)] {
        println!(
            "  {name:>8}: delivered {} of {}; CPU/delivery {} µs; idle CPU {} ms; deliveries/s {}; generator CPU/delivery {} µs; latency p50 {} µs, p99 {} µs, max {} µs",
            summary(rs.iter().map(|r| r.delivered as f64).collect(), 0),
            summary(rs.iter().map(|r| r.expected as f64).collect(), 0),
            summary(per_delivery(rs), 2),
            summary(rs.iter().map(|r| r.idle_cpu * 1e3).collect(), 0),
            summary(
                rs.iter().map(|r| r.delivered as f64 / r.window).collect(),
                0
            ),
            summary(
                rs.iter()
                    .map(|r| r.gen_cpu * 1e6 / r.delivered.max(1) as f64)
                    .collect(),
                2
            ),
            summary(rs.iter().map(|r| r.pct(50.0)).collect(), 0),
            summary(rs.iter().map(|r| r.pct(99.0)).collect(), 0),
            summary(rs.iter().map(|r| r.pct(100.0)).collect(), 0),
        );
    }
    let ratios: Vec<f64> = per_delivery(&bus)
        .iter()
        .zip(per_delivery(&base))
        .map(|(b, z)| b / z.max(1e-9))
        .collect();
    println!(
        "  CPU/delivery bus ÷ baseline (run by run): {}",
        summary(ratios, 2)
    );
}

fn idle(rt: &tokio::runtime::Runtime) {
    let mut per_sub = Vec::new();
    let mut bare = Vec::new();
    let mut own = Vec::new();
    let mut befores = Vec::new();
    let mut afters = Vec::new();
    for run in 0..runs() {
        let (before, after) = rt.block_on(idle_run("broker"));
        let kib = (after as f64 - before as f64) / IDLE_SUBS as f64;
        let (b0, b1) = rt.block_on(idle_run("bare-axum"));
        let bare_kib = (b1 as f64 - b0 as f64) / IDLE_SUBS as f64;
        println!(
            "  idle run {}: RSS {before} KiB -> {after} KiB, {kib:.1} KiB/subscription; bare axum {b0} -> {b1} KiB, {bare_kib:.1} KiB/stream",
            run + 1
        );
        per_sub.push(kib);
        bare.push(bare_kib);
        own.push(kib - bare_kib);
        befores.push(before as f64 / 1024.0);
        afters.push(after as f64 / 1024.0);
    }
    println!(
        "idle ({IDLE_SUBS} SSE streams on distinct subjects): RSS/subscription {} KiB; broker RSS before {} MiB, after {} MiB",
        summary(per_sub, 1),
        summary(befores, 1),
        summary(afters, 1)
    );
    println!(
        "  bare axum holding the same streams (the same hyper-util stack, a pending SSE body): {} KiB/stream; bus's own share (bus - bare): {} KiB/subscription",
        summary(bare, 1),
        summary(own, 1)
    );
}

fn many() {
    let mut rows: Vec<(usize, Vec<ManyRun>)> =
        vec![(MANY_FEW, Vec::new()), (MANY_SUBS, Vec::new())];
    for run in 0..runs() {
        for (subs, into) in rows.iter_mut() {
            let r = many_run(*subs);
            println!(
                "  many run {} subs={subs}: {} events, {:.1} µs CPU/event, {:.1} µs wall/event, {:.2} KiB/subscription, subscribe {:.0} ms",
                run + 1,
                r.events,
                r.cpu_per_event_us,
                r.wall_per_event_us,
                r.kib_per_sub,
                r.setup_ms
            );
            into.push(r);
        }
    }
    println!(
        "many (in-process, in-memory engine, closed loop: publish, await the one matching subscription):"
    );
    for (subs, rs) in &rows {
        println!(
            "  {subs:>7} subscriptions: events {}; CPU/event {} µs; wall/event {} µs; RSS/subscription {} KiB (RSS delta {} KiB); subscribing {} ms",
            summary(rs.iter().map(|r| r.events as f64).collect(), 0),
            summary(rs.iter().map(|r| r.cpu_per_event_us).collect(), 1),
            summary(rs.iter().map(|r| r.wall_per_event_us).collect(), 1),
            summary(rs.iter().map(|r| r.kib_per_sub).collect(), 2),
            summary(rs.iter().map(|r| r.kib_per_sub * *subs as f64).collect(), 0),
            summary(rs.iter().map(|r| r.setup_ms).collect(), 0),
        );
    }
    let ratios: Vec<f64> = rows[1]
        .1
        .iter()
        .zip(&rows[0].1)
        .map(|(big, few)| big.cpu_per_event_us / few.cpu_per_event_us.max(1e-9))
        .collect();
    println!(
        "  CPU/event {MANY_SUBS} ÷ {MANY_FEW} subscriptions (run by run): {}",
        summary(ratios, 1)
    );
}

// ---------------------------------------------------------------------------------------------
// An HTTP load run.

/// Which subscribers and subjects a load run uses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Subscriber i on `user.<i>.inbox`; each event to one random subscriber's subject at
    /// [`SPARSE_RATE`].
    Sparse,
    /// Every subscriber on `user.>`; events at [`DENSE_RATE`].
    Dense,
}

impl Shape {
    fn pattern(self, i: usize) -> String {
        match self {
            Shape::Sparse => format!("user.{i}.inbox"),
            Shape::Dense => "user.%3E".to_owned(),
        }
    }

    fn rate(self) -> u64 {
        match self {
            Shape::Sparse => SPARSE_RATE,
            Shape::Dense => DENSE_RATE,
        }
    }

    /// Subscribers each event reaches.
    fn fan_out(self, subs: usize) -> u64 {
        match self {
            Shape::Sparse => 1,
            Shape::Dense => subs as u64,
        }
    }
}

/// When each sequence was sent, in ns since `base`.
struct SentTimes {
    base: Instant,
    at: Vec<AtomicU64>,
}

impl SentTimes {
    fn new(events: usize) -> Self {
        SentTimes {
            base: Instant::now(),
            at: (0..events).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// What every subscriber of a run shares.
struct Sink {
    sent: SentTimes,
    /// Deliveries read so far.
    delivered: AtomicU64,
    /// Streams that have had their hello.
    ready: AtomicUsize,
    /// Ends every subscriber.
    stop: CancellationToken,
}

async fn load_run(role: &str, subs: usize, shape: Shape) -> LoadRun {
    let secs = load_secs();
    let events = (shape.rate() * secs) as usize;
    let child = Spawned::start(role);
    let port = child.port;
    let client = common::http_client();
    // The first publish creates the namespace: not in the measured window.
    publish(
        &client,
        port,
        "user.warmup",
        Bytes::from(vec![b'w'; PAYLOAD]),
    )
    .await;
    let sink = Arc::new(Sink {
        sent: SentTimes::new(events),
        delivered: AtomicU64::new(0),
        ready: AtomicUsize::new(0),
        stop: CancellationToken::new(),
    });
    let readers = open_streams(port, subs, shape, &sink).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let window = Duration::from_secs(secs);
    let idle0 = cpu_ticks(child.pid);
    tokio::time::sleep(window).await;
    let idle_cpu = ticks_to_secs(cpu_ticks(child.pid) - idle0);

    let published = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let cpu0 = cpu_ticks(child.pid);
    let gen0 = cpu_ticks_self();
    let started = Instant::now();
    let mut rng = XorShift(SEED);
    let period = Duration::from_secs(1) / shape.rate() as u32;
    let first_due = sink.sent.now_ns();
    let mut tick = tokio::time::interval(period);
    let slots = Arc::new(Semaphore::new(MAX_PUBLISHES_IN_FLIGHT));
    let mut publishes = Vec::with_capacity(events);
    for seq in 0..events {
        tick.tick().await;
        let target = match shape {
            Shape::Sparse => rng.below(subs),
            Shape::Dense => rng.below(DENSE_SUBS),
        };
        let subject = format!("user.{target}.inbox");
        let payload = payload(seq);
        // Latency counts from when the publish was due by the rate once the publisher is
        // behind, so that one held back by the in-flight bound does not hide the wait
        // (coordinated omission); within the timer's slack, from now.
        let due = first_due + seq as u64 * period.as_nanos() as u64;
        let now = sink.sent.now_ns();
        let stamp = if now > due + TIMER_SLACK.as_nanos() as u64 {
            due
        } else {
            now
        };
        sink.sent.at[seq].store(stamp, Ordering::Release);
        let permit = slots.clone().acquire_owned().await.expect("semaphore open");
        let (client, published, failed) = (client.clone(), published.clone(), failed.clone());
        publishes.push(tokio::spawn(async move {
            if publish_status(&client, port, &subject, payload).await {
                published.fetch_add(1, Ordering::AcqRel);
            } else {
                failed.fetch_add(1, Ordering::AcqRel);
            }
            drop(permit);
        }));
    }
    for p in publishes {
        p.await.expect("publish task");
    }
    let publish_span = started.elapsed().as_secs_f64();
    let expected = published.load(Ordering::Acquire) * shape.fan_out(subs);
    let drain_until = Instant::now() + DRAIN_LIMIT;
    while sink.delivered.load(Ordering::Acquire) < expected && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();
    let cpu = ticks_to_secs(cpu_ticks(child.pid) - cpu0);
    let gen_cpu = ticks_to_secs(cpu_ticks_self() - gen0);
    let delivered = sink.delivered.load(Ordering::Acquire);

    sink.stop.cancel();
    let mut latencies = Vec::new();
    for r in readers {
        latencies.extend(r.await.expect("reader task"));
    }
    latencies.sort_unstable();
    drop(client);
    child.stop();
    LoadRun {
        published: published.load(Ordering::Acquire),
        failed: failed.load(Ordering::Acquire),
        delivered,
        expected,
        cpu: cpu - idle_cpu * elapsed.as_secs_f64() / window.as_secs_f64(),
        idle_cpu,
        gen_cpu,
        window: elapsed.as_secs_f64(),
        publish_span,
        latencies,
    }
}

/// Opens `subs` streams, at most [`CONNECTS_IN_FLIGHT`] at a time, and returns once every one
/// has had its hello; each task then reads deliveries until `sink.stop`, and returns its
/// latencies (µs).
async fn open_streams(
    port: u16,
    subs: usize,
    shape: Shape,
    sink: &Arc<Sink>,
) -> Vec<tokio::task::JoinHandle<Vec<u32>>> {
    let slots = Arc::new(Semaphore::new(CONNECTS_IN_FLIGHT));
    let mut readers = Vec::with_capacity(subs);
    for i in 0..subs {
        let permit = slots.clone().acquire_owned().await.expect("semaphore open");
        let sink = sink.clone();
        let pattern = shape.pattern(i);
        readers.push(tokio::spawn(async move {
            let mut stream = open_stream(port, &pattern).await;
            drop(permit);
            sink.ready.fetch_add(1, Ordering::AcqRel);
            read_deliveries(&mut stream, &sink).await
        }));
    }
    let deadline = Instant::now() + OPEN_LIMIT;
    while sink.ready.load(Ordering::Acquire) < subs {
        assert!(
            Instant::now() < deadline,
            "only {} of {subs} streams had their hello",
            sink.ready.load(Ordering::Acquire)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    readers
}

/// Connects, asks for the stream of `pattern` from `newest`, and reads up to its hello.
async fn open_stream(port: u16, pattern: &str) -> BufReader<TcpStream> {
    let socket = TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("connect for {pattern}: {e}"));
    socket.set_nodelay(true).expect("nodelay");
    let mut r = BufReader::with_capacity(READ_BUF_BYTES, socket);
    let head = format!(
        "GET /v1/stream?pattern={pattern}&from=newest HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\naccept: text/event-stream\r\n\r\n"
    );
    r.get_mut()
        .write_all(head.as_bytes())
        .await
        .expect("write request");
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).await.expect("status line");
    assert!(
        line.starts_with(b"HTTP/1.1 200"),
        "stream {pattern} refused: {}",
        String::from_utf8_lossy(&line)
    );
    loop {
        line.clear();
        let n = r.read_until(b'\n', &mut line).await.expect("stream line");
        assert!(n > 0, "stream {pattern} ended before its hello");
        if line.starts_with(b"event: subscribed") {
            return r;
        }
    }
}

/// Reads a stream until `sink.stop`, counting `data:` lines that carry a sequence and noting
/// their latency (µs). Other lines (ids, chunk sizes, blank lines) are passed over.
async fn read_deliveries(r: &mut BufReader<TcpStream>, sink: &Sink) -> Vec<u32> {
    let mut latencies = Vec::new();
    let mut line = Vec::with_capacity(512);
    loop {
        line.clear();
        let n = tokio::select! {
            () = sink.stop.cancelled() => break,
            n = r.read_until(b'\n', &mut line) => n,
        };
        match n {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if !line.starts_with(b"data: ") {
            continue;
        }
        let Some(seq) = seq_of(&line) else { continue };
        let Some(sent) = sink.sent.at.get(seq) else {
            continue;
        };
        let now = sink.sent.now_ns();
        let us = now.saturating_sub(sent.load(Ordering::Acquire)) / 1_000;
        latencies.push(u32::try_from(us).unwrap_or(u32::MAX));
        sink.delivered.fetch_add(1, Ordering::AcqRel);
    }
    latencies
}

/// The payload of sequence `seq`: `s=<10 digits>;` and padding, [`PAYLOAD`] bytes.
fn payload(seq: usize) -> Bytes {
    let mut p = format!("s={seq:010};").into_bytes();
    p.resize(PAYLOAD, b'x');
    Bytes::from(p)
}

/// The sequence in a `data:` line, from its payload's `s=<10 digits>;`.
fn seq_of(line: &[u8]) -> Option<usize> {
    let at = line.windows(2).position(|w| w == b"s=")? + 2;
    let digits = line.get(at..at + 10)?;
    let mut n = 0usize;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + usize::from(d - b'0');
    }
    Some(n)
}

async fn publish(client: &HttpClient, port: u16, subject: &str, payload: Bytes) {
    assert!(
        publish_status(client, port, subject, payload).await,
        "publish to {subject} failed"
    );
}

/// Publishes one event; whether it was answered 2xx.
async fn publish_status(client: &HttpClient, port: u16, subject: &str, payload: Bytes) -> bool {
    let req = hyper::Request::post(format!("http://127.0.0.1:{port}/v1/events/{subject}"))
        .header("content-type", "text/plain")
        .body(Full::new(payload))
        .expect("request");
    let Ok(resp) = client.request(req).await else {
        return false;
    };
    let ok = resp.status().is_success();
    ok && resp.into_body().collect().await.is_ok()
}

async fn idle_run(role: &str) -> (u64, u64) {
    let child = Spawned::start(role);
    let client = common::http_client();
    publish(
        &client,
        child.port,
        "user.warmup",
        Bytes::from(vec![b'w'; PAYLOAD]),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(&child.pid.to_string());
    let sink = Arc::new(Sink {
        sent: SentTimes::new(0),
        delivered: AtomicU64::new(0),
        ready: AtomicUsize::new(0),
        stop: CancellationToken::new(),
    });
    let readers = open_streams(child.port, IDLE_SUBS, Shape::Sparse, &sink).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = rss_kib(&child.pid.to_string());
    sink.stop.cancel();
    for r in readers {
        r.await.expect("reader task");
    }
    drop(client);
    child.stop();
    (before, after)
}

// ---------------------------------------------------------------------------------------------
// The many case.

/// One run of the many case, as its child reports it.
struct ManyRun {
    events: u64,
    cpu_per_event_us: f64,
    wall_per_event_us: f64,
    kib_per_sub: f64,
    setup_ms: f64,
}

fn many_run(subs: usize) -> ManyRun {
    let out = Command::new(std::env::current_exe().expect("current exe"))
        .env(ROLE_VAR, "many")
        .env(SUBS_VAR, subs.to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("run the many child");
    assert!(out.status.success(), "many child failed: {}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> f64 {
        text.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("many child gave no {name}: {text}"))
    };
    let events = field("events");
    ManyRun {
        events: events as u64,
        cpu_per_event_us: ticks_to_secs(field("cpu_ticks") as u64) * 1e6 / events,
        wall_per_event_us: field("wall_ns") / 1e3 / events,
        kib_per_sub: (field("rss_after_kib") - field("rss_before_kib")) / subs as f64,
        setup_ms: field("setup_ms"),
    }
}

/// The `many` role: subscriptions in this process, a closed publish loop, one result line.
fn many_role() {
    let subs = env_num(SUBS_VAR, MANY_FEW);
    let rt = common::runtime();
    rt.block_on(async move {
        let broker = Broker::in_memory(Config::default())
            .await
            .expect("memory broker");
        let warm = Publish {
            subject: "user.warmup".to_owned(),
            payload: Bytes::from(vec![b'w'; PAYLOAD]),
            ..Publish::default()
        };
        broker.publish(warm).await.expect("warm-up publish");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = rss_kib("self");
        let setup = Instant::now();
        let (got_tx, mut got_rx) = mpsc::unbounded_channel::<usize>();
        let started = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::with_capacity(subs);
        for i in 0..subs {
            let mut sub = broker
                .subscribe(&format!("user.{i}.inbox"), "newest")
                .await
                .expect("subscribe");
            let (got_tx, started) = (got_tx.clone(), started.clone());
            tasks.push(tokio::spawn(async move {
                started.fetch_add(1, Ordering::AcqRel);
                while let Ok(Some(d)) = sub.next().await {
                    if matches!(d, Delivery::Event { .. }) && got_tx.send(i).is_err() {
                        break;
                    }
                }
            }));
        }
        while started.load(Ordering::Acquire) < subs {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let setup_ms = setup.elapsed().as_secs_f64() * 1e3;
        let after = rss_kib("self");

        let mut rng = XorShift(SEED);
        let cpu0 = cpu_ticks_self();
        let t0 = Instant::now();
        let mut events = 0u64;
        while (events as usize) < MANY_EVENTS && t0.elapsed() < MANY_LIMIT {
            let target = rng.below(subs);
            let p = Publish {
                subject: format!("user.{target}.inbox"),
                payload: payload(events as usize),
                ..Publish::default()
            };
            broker.publish(p).await.expect("publish");
            let got = tokio::time::timeout(Duration::from_secs(30), got_rx.recv())
                .await
                .expect("delivery within 30 s")
                .expect("subscribers alive");
            assert_eq!(got, target, "only the matching subscription receives");
            events += 1;
        }
        let wall = t0.elapsed();
        let cpu = cpu_ticks_self() - cpu0;
        println!(
            "events={events} cpu_ticks={cpu} wall_ns={} rss_before_kib={before} rss_after_kib={after} setup_ms={setup_ms:.0}",
            wall.as_nanos()
        );
        // Exiting is enough: nothing of the memory broker needs closing.
        std::process::exit(0);
    });
}

// ---------------------------------------------------------------------------------------------
// Child processes.

/// A child process of this binary in a serving role, stopped when its stdin closes.
struct Spawned {
    child: Child,
    stdin: Option<ChildStdin>,
    pid: u32,
    port: u16,
}

impl Spawned {
    /// Starts this binary in `role` and reads the port it prints.
    fn start(role: &str) -> Spawned {
        let mut child = Command::new(std::env::current_exe().expect("current exe"))
            .env(ROLE_VAR, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the child");
        let stdout = child.stdout.take().expect("child stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("child's port");
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{role} child printed {line:?}, not a port"));
        Spawned {
            pid: child.id(),
            stdin: child.stdin.take(),
            child,
            port,
        }
    }

    /// Closes the child's stdin and waits for it to exit (killing it after 10 s).
    fn stop(mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return;
                }
            }
        }
    }
}

/// Fires once stdin reaches its end (the parent closed it or died).
fn stdin_closed() -> tokio::sync::oneshot::Receiver<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        let _ = tx.send(());
    });
    rx
}

fn print_port(port: u16) {
    let mut out = std::io::stdout();
    writeln!(out, "{port}").expect("print the port");
    out.flush().expect("flush the port");
}

/// The `broker` role: the real broker and HTTP server, as `bus server` runs them (a
/// multi-thread runtime on every core).
fn broker_role() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-tmp");
        std::fs::create_dir_all(&base).expect("bench-tmp");
        let dir = tempfile::tempdir_in(&base).expect("data dir");
        let mut config = Config {
            data_dir: dir.path().to_owned(),
            max_connections: 20_000,
            heartbeat: Duration::from_secs(300),
            ..Config::default()
        };
        config.log.fsync = FsyncPolicy::Never;
        let broker = if std::env::var("BUS_FANOUT_ENGINE").as_deref() == Ok("memory") {
            Broker::in_memory(config).await.expect("open broker")
        } else {
            Broker::open(config).await.expect("open broker").0
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        print_port(listener.local_addr().expect("addr").port());
        let closed = stdin_closed();
        bus_broker::server::run(listener, broker.clone(), async {
            let _ = closed.await;
        })
        .await
        .expect("server");
        broker.close().await;
        drop(dir);
    });
}

/// The `bare-axum` role: the HTTP stack the broker serves with (axum on hyper-util's auto
/// builder, HTTP/1.1 and h2c), doing nothing else: `GET /v1/stream` answers an SSE body that
/// sends the `subscribed` hello and then nothing, `POST` a tiny 200. What an idle stream costs
/// there is the floor under what it costs in the broker.
fn bare_axum_role() {
    use axum::routing::{get, post};
    use futures::StreamExt as _;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        print_port(listener.local_addr().expect("addr").port());
        let app = axum::Router::new()
            .route(
                "/v1/stream",
                get(|| async {
                    let frames = futures::stream::once(async {
                        Ok::<_, std::convert::Infallible>(Bytes::from_static(
                            b"event: subscribed\ndata: {}\n\n",
                        ))
                    })
                    .chain(futures::stream::pending());
                    axum::response::Response::builder()
                        .header("content-type", "text/event-stream")
                        .body(axum::body::Body::from_stream(frames))
                        .expect("response")
                }),
            )
            .route("/v1/events/{subject}", post(|| async { "{}" }));
        let closed = stdin_closed();
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = closed.await;
            })
            .await
            .expect("serve");
        std::process::exit(0);
    });
}

// ---------------------------------------------------------------------------------------------
// The baseline: the least a tokio program must do to fan an event out over SSE.

/// The `baseline` role: a raw `TcpListener`; `GET` gets a chunked SSE stream, `POST` a tiny
/// 200, and each publish's frame is written to every stream.
fn baseline_role() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        print_port(listener.local_addr().expect("addr").port());
        let (frames, _) = broadcast::channel::<Bytes>(4096);
        let sequence = Arc::new(AtomicU64::new(1));
        let closed = stdin_closed();
        tokio::pin!(closed);
        loop {
            let (socket, _) = tokio::select! {
                _ = &mut closed => break,
                a = listener.accept() => a.expect("accept"),
            };
            let (frames, sequence) = (frames.clone(), sequence.clone());
            tokio::spawn(async move {
                let _ = baseline_connection(socket, frames, sequence).await;
            });
        }
        std::process::exit(0);
    });
}

async fn baseline_connection(
    socket: TcpStream,
    frames: broadcast::Sender<Bytes>,
    sequence: Arc<AtomicU64>,
) -> std::io::Result<()> {
    socket.set_nodelay(true)?;
    let mut r = BufReader::new(socket);
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let request = line.clone();
        let mut length = 0usize;
        loop {
            line.clear();
            if r.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            if line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        if request.starts_with("GET ") {
            let mut rx = frames.subscribe();
            let hello = chunk(
                b"event: subscribed\nretry: 1000\ndata: {\"subscription\":\"s-000001\",\"pattern\":\"user.>\",\"from\":\"newest\",\"cursor\":\"user:2\"}\n\n",
            );
            let mut out = r.into_inner();
            out.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n").await?;
            out.write_all(&hello).await?;
            loop {
                match rx.recv().await {
                    Ok(frame) => out.write_all(&frame).await?,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                }
            }
        }
        let mut body = vec![0u8; length];
        r.read_exact(&mut body).await?;
        let subject = request
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.strip_prefix("/v1/events/"))
            .unwrap_or("user.0.inbox")
            .to_owned();
        let seq = sequence.fetch_add(1, Ordering::AcqRel);
        // The broker's event JSON, of the same shape and size (the payload is ASCII text).
        let frame = format!(
            "id: user:{seq}\ndata: {{\"id\":\"user-{seq}-0000000000000001\",\"subject\":\"{subject}\",\"namespace\":\"user\",\"sequence\":{seq},\"time\":\"2026-12-02T06:00:00.000000000Z\",\"content_type\":\"text/plain\",\"payload\":\"{}\"}}\n\n",
            String::from_utf8_lossy(&body)
        );
        // No subscriber yet is not an error.
        let _ = frames.send(chunk(frame.as_bytes()));
        r.get_mut()
            .write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
            )
            .await?;
    }
}

/// `data` as one HTTP/1.1 chunk.
fn chunk(data: &[u8]) -> Bytes {
    let mut c = format!("{:x}\r\n", data.len()).into_bytes();
    c.extend_from_slice(data);
    c.extend_from_slice(b"\r\n");
    Bytes::from(c)
}

// ---------------------------------------------------------------------------------------------
// /proc, statistics, randomness.

/// Clock ticks per second of `/proc/<pid>/stat`'s times (`getconf CLK_TCK`).
fn clk_tck() -> u64 {
    static TCK: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100)
    })
}

fn ticks_to_secs(ticks: u64) -> f64 {
    ticks as f64 / clk_tck() as f64
}

/// utime + stime of process `pid` (`/proc/<pid>/stat` fields 14 and 15), clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    stat_ticks(&pid.to_string())
}

fn cpu_ticks_self() -> u64 {
    stat_ticks("self")
}

fn stat_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    // The command name (field 2) is in parentheses and may hold spaces: count from after it,
    // where field 3 is the first.
    let rest = &stat[stat.rfind(')').expect("stat comm") + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> u64 { fields[n - 3].parse().expect("stat field") };
    field(14) + field(15)
}

/// `VmRSS` of process `pid` (or `self`), KiB.
fn rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// This process's soft limit on open files.
fn max_open_files() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        .unwrap_or(0)
}

/// The `p`-th percentile of sorted `v` (0 when empty).
fn percentile(v: &[u32], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let i = ((v.len() - 1) as f64 * p / 100.0).round() as usize;
    f64::from(v[i.min(v.len() - 1)])
}

/// `median (min–max)` of `v`, with `decimals`.
fn summary(mut v: Vec<f64>, decimals: usize) -> String {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return "-".to_owned();
    }
    format!(
        "{:.d$} ({:.d$}–{:.d$})",
        v[v.len() / 2],
        v[0],
        v[v.len() - 1],
        d = decimals
    )
}

/// xorshift64: a fixed, cheap sequence of subjects.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}
