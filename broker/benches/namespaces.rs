//! Many namespaces on shared pools: what 10,000 small namespaces cost, and whether busy
//! namespaces still `fdatasync` in parallel.
//!
//! Run with `cargo bench -p bus-broker --bench namespaces`; pass words to run only the cases
//! whose name contains one of them (`many`, `parallel`).
//!
//! - **many**: a fresh data directory; 10,000 namespaces created, 3 events appended to each
//!   (all namespaces at once, one event per call, `fsync = always`) and read back; closed;
//!   reopened (start-up time), served again (one more event appended and all 4 read back per
//!   namespace), closed. Threads (`/proc/self/task`) and open files (`/proc/self/fd`) at
//!   their peak, which is after serving. Once: the case is bounded by its 10,000 namespaces.
//! - **parallel/N**: N namespaces, each with 64 tasks looping `append(one 128 B event)` under
//!   `always` for 1.5 s (after 0.25 s warm-up), 3 samples: events/s and `fdatasync`/s summed
//!   over the namespaces. Syncs that ran one at a time would cap the fdatasync/s near one
//!   namespace's.
//!
//! Data goes under `target/bench-tmp` on the workspace's file system, as in `log`.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bus_broker::storage::{
    DiskStorage, EventLog, NewEvent, ReadItem, Start, Storage, StorageOptions, ThreadPools,
};
use futures::future::join_all;
use tempfile::TempDir;

/// Namespaces of the `many` case.
const MANY: usize = 10_000;
/// Events appended to each namespace at first.
const FIRST_EVENTS: usize = 3;
/// Appending tasks per namespace in the `parallel` cases.
const APPENDERS: usize = 64;
/// Measured window of a `parallel` sample.
const WINDOW: Duration = Duration::from_millis(1500);
/// Warm-up before it.
const WARMUP: Duration = Duration::from_millis(250);
/// Samples per `parallel` case.
const REPS: usize = 3;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn ev(ns: &str, n: usize) -> Vec<NewEvent> {
    vec![NewEvent::new(
        format!("{ns}.e"),
        format!("{n}").into_bytes(),
    )]
}

async fn read_count(log: &Arc<dyn EventLog>) -> usize {
    let mut r = log.reader(Start::Oldest).await.expect("reader");
    let mut n = 0;
    while let Some(ReadItem::Event(_)) = r.try_next().expect("read") {
        n += 1;
    }
    n
}

async fn serve(disk: &DiskStorage, names: &[String], from: usize, to: usize) -> usize {
    let logs: Vec<_> = join_all(names.iter().map(|n| disk.namespace(n, true)))
        .await
        .into_iter()
        .map(|l| l.expect("namespace").expect("created"))
        .collect();
    join_all(logs.iter().map(|log| async move {
        for i in from..to {
            log.append(ev(log.name(), i)).await.expect("append");
        }
        read_count(log).await
    }))
    .await
    .into_iter()
    .sum()
}

fn secs(t: Instant) -> String {
    format!("{:.2}", t.elapsed().as_secs_f64())
}

async fn many_case(base: &Path) {
    let dir = TempDir::with_prefix_in("many-", base).unwrap();
    let names: Vec<String> = (0..MANY).map(|i| format!("ns{i:05}")).collect();
    let (t0, f0) = (threads(), open_files());
    println!("| phase | seconds | threads (before {t0}) | open files (before {f0}) |");
    println!("|---|---:|---:|---:|");
    let t = Instant::now();
    let (disk, _) = DiskStorage::open(StorageOptions::new(dir.path())).expect("open");
    let read = serve(&disk, &names, 0, FIRST_EVENTS).await;
    assert_eq!(read, MANY * FIRST_EVENTS);
    println!(
        "| create {MANY}, append {FIRST_EVENTS} each, read back | {} | {} | {} |",
        secs(t),
        threads(),
        open_files()
    );
    let t = Instant::now();
    disk.close().await.expect("close");
    drop(disk);
    println!("| close | {} | {} | {} |", secs(t), threads(), open_files());
    let t = Instant::now();
    let (disk, reports) = DiskStorage::open(StorageOptions::new(dir.path())).expect("reopen");
    assert_eq!(reports.len(), MANY);
    println!(
        "| start-up: open {MANY} | {} | {} | {} |",
        secs(t),
        threads(),
        open_files()
    );
    let t = Instant::now();
    let read = serve(&disk, &names, FIRST_EVENTS, FIRST_EVENTS + 1).await;
    assert_eq!(read, MANY * (FIRST_EVENTS + 1));
    println!(
        "| serve: append 1 and read {} each | {} | {} | {} |",
        FIRST_EVENTS + 1,
        secs(t),
        threads(),
        open_files()
    );
    let t = Instant::now();
    disk.close().await.expect("close");
    drop(disk);
    println!("| close | {} | {} | {} |", secs(t), threads(), open_files());
}

async fn parallel_once(base: &Path, namespaces: usize) -> (f64, f64) {
    let dir = TempDir::with_prefix_in("parallel-", base).unwrap();
    let (disk, _) = DiskStorage::open(StorageOptions::new(dir.path())).expect("open");
    let mut logs = Vec::new();
    for i in 0..namespaces {
        logs.push(
            disk.namespace(&format!("busy{i}"), true)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for log in &logs {
        for _ in 0..APPENDERS {
            let (log, stop, acked) = (log.clone(), stop.clone(), acked.clone());
            tasks.spawn(async move {
                let body = bytes::Bytes::from(vec![0xa5; 128]);
                while !stop.load(Ordering::Relaxed) {
                    log.append(vec![NewEvent::new("busy.x", body.clone())])
                        .await
                        .expect("append");
                    acked.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    }
    let syncs = |logs: &[Arc<dyn EventLog>]| logs.iter().map(|l| l.stats().syncs).sum::<u64>();
    tokio::time::sleep(WARMUP).await;
    let (n0, s0, t0) = (acked.load(Ordering::Relaxed), syncs(&logs), Instant::now());
    tokio::time::sleep(WINDOW).await;
    let (n1, s1) = (acked.load(Ordering::Relaxed), syncs(&logs));
    let secs = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    while let Some(r) = tasks.join_next().await {
        r.expect("appender");
    }
    disk.close().await.expect("close");
    ((n1 - n0) as f64 / secs, (s1 - s0) as f64 / secs)
}

fn median_spread(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    format!("{:.0} ({:.0}–{:.0})", v[v.len() / 2], v[0], v[v.len() - 1])
}

fn main() {
    let words: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |case: &str| words.is_empty() || words.iter().any(|w| case.contains(w.as_str()));
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-tmp");
    std::fs::create_dir_all(&base).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pools = ThreadPools::current();
    println!(
        "pools: {} writer threads, {} sync threads at most",
        pools.writers, pools.syncers
    );
    if wants("many") {
        println!("\n### {MANY} namespaces\n");
        rt.block_on(many_case(&base));
    }
    if wants("parallel") {
        println!("\n### Busy namespaces at once (`always`, 128 B, {APPENDERS} appenders each)\n");
        println!("| namespaces | events/s median (min–max) | fdatasync/s median (min–max) |");
        println!("|---:|---:|---:|");
        for n in [1, 2, 4, 8] {
            if !wants(&format!("parallel/{n}")) {
                continue;
            }
            let mut ev = Vec::new();
            let mut sy = Vec::new();
            for _ in 0..REPS {
                let (e, s) = rt.block_on(parallel_once(&base, n));
                ev.push(e);
                sy.push(s);
            }
            println!("| {n} | {} | {} |", median_spread(ev), median_spread(sy));
        }
    }
}
