//! Event log benchmark: append throughput per fsync policy, sequential scans, open time and
//! the disk's own `fdatasync` rate, all in one run so the figures can be compared.
//!
//! Run with `cargo bench -p bus-broker --bench log`; pass words to run only the cases whose
//! name contains one of them, e.g. `cargo bench -p bus-broker --bench log -- append` (cases
//! are named `disk`, `append/<policy>/<payload>/<appenders>`, `batch/<policy>/128B/x100/<appenders>`,
//! `scan/<payload>` and `open`). Every case repeats a few times and reports the median and the
//! min–max spread, because the machine it runs on is shared and noisy.
//!
//! - **disk**: a plain loop of 4 KiB `pwrite` at the end of a file plus `fdatasync`, for ~2 s:
//!   what one sync costs on this disk, the yardstick for group commit.
//! - **append**: N tokio tasks (2 worker threads) each looping `append(one event).await` on one
//!   [`Log`] for a fixed time, under `always`, `interval:5` and `never`, with 128 B and 4 KiB
//!   payloads; events/s (acknowledged), payload MB/s, and from [`LogStats`] the events per
//!   write group and per `fdatasync`.
//! - **batch**: as append, but each call appends 100 events (128 B; `never` with 4 and 64
//!   appenders, `always` with 16 and 64).
//! - **scan**: writes ≥ 256 MB (default 64 MiB segments, so at least four sealed ones),
//!   closes, then repeatedly reopens and reads everything from [`Start::Oldest`] out of the page
//!   cache; MB/s of payload and of bytes on disk.
//! - **open**: builds a small (~20 MB, one segment) and a large (≥ 2 GB) data directory whose
//!   active segments hold the same records, closes both cleanly, then times `Log::open` on each
//!   several times. The large directory is deleted afterwards.
//!
//! MB and GB are decimal (10^6, 10^9 bytes). Data goes under `target/bench-tmp`, on the same
//! file system as the workspace (not a tmpfs), so that `fdatasync` reaches a disk.

use std::fs::OpenOptions;
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bus_broker::storage::io::StdFs;
use bus_broker::storage::{
    EventLog, FsyncPolicy, Log, LogConfig, LogReader as _, LogStats, NewEvent, ReadItem, Start,
};
use bytes::Bytes;
use tempfile::TempDir;

/// How long each append sample is measured.
const APPEND_WINDOW: Duration = Duration::from_millis(1500);
/// Appending before the measured window, so that every task is running when it starts.
const APPEND_WARMUP: Duration = Duration::from_millis(250);
/// Samples per append configuration.
const APPEND_REPS: usize = 5;
/// How long each disk sample loops.
const DISK_WINDOW: Duration = Duration::from_secs(2);
/// Samples of the disk's `fdatasync` rate.
const DISK_REPS: usize = 3;
/// Bytes written by the disk loop per `fdatasync`.
const DISK_WRITE_BYTES: usize = 4096;
/// Events per append call in the batch cases and when building data.
const BATCH_EVENTS: usize = 100;
/// On-disk bytes written before a scan (four full 64 MiB segments).
const SCAN_MIN_BYTES: u64 = 256 << 20;
/// Full scans per payload size.
const SCAN_REPS: usize = 5;
/// Payload of the records that fill the open-time directories.
const OPEN_PAYLOAD_BYTES: usize = 4096;
/// Batches of [`BATCH_EVENTS`] in the active segment of both open-time directories (~20 MB).
const OPEN_ACTIVE_BATCHES: usize = 48;
/// Sealed segments in the large open-time directory (32 × 64 MiB ≈ 2.1 GB).
const OPEN_LARGE_SEALED: u64 = 32;
/// Timed opens of each open-time directory.
const OPEN_REPS: usize = 9;
/// The namespace every case writes.
const NAMESPACE: &str = "bench";
/// The subject of every event.
const SUBJECT: &str = "bench.x";

/// Median, minimum and maximum of a set of samples.
#[derive(Debug, Clone, Copy)]
struct Spread {
    median: f64,
    min: f64,
    max: f64,
}

impl Spread {
    fn of(samples: &[f64]) -> Spread {
        let mut v = samples.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Spread {
            median,
            min: v[0],
            max: v[n - 1],
        }
    }

    /// `median (min–max)` with `digits` decimals.
    fn show(&self, digits: usize) -> String {
        format!(
            "{} ({}–{})",
            num(self.median, digits),
            num(self.min, digits),
            num(self.max, digits)
        )
    }
}

/// A number with thousands separators and `digits` decimals.
fn num(x: f64, digits: usize) -> String {
    let s = format!("{x:.digits$}");
    let (int, frac) = s.split_once('.').map_or((s.as_str(), ""), |(i, f)| (i, f));
    let (sign, int) = int.strip_prefix('-').map_or(("", int), |i| ("-", i));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{frac}")
    }
}

/// Which cases to run: those whose name contains one of the words given after `--`.
struct Filter(Vec<String>);

impl Filter {
    fn from_args() -> Filter {
        // Cargo passes `--bench` (and libtest-style flags) along; only plain words filter.
        Filter(
            std::env::args()
                .skip(1)
                .filter(|a| !a.starts_with('-'))
                .collect(),
        )
    }

    fn wants(&self, case: &str) -> bool {
        self.0.is_empty() || self.0.iter().any(|w| case.contains(w.as_str()))
    }
}

/// A log configuration with the given policy and the documented defaults otherwise.
fn config(fsync: FsyncPolicy) -> LogConfig {
    LogConfig {
        fsync,
        ..LogConfig::default()
    }
}

fn open(dir: &Path, fsync: FsyncPolicy) -> Log {
    Log::open(dir, NAMESPACE, config(fsync), Arc::new(StdFs))
        .expect("open log")
        .0
}

fn payload(bytes: usize) -> Bytes {
    Bytes::from(vec![0xa5; bytes])
}

fn events(payload: &Bytes, n: usize) -> Vec<NewEvent> {
    (0..n)
        .map(|_| NewEvent::new(SUBJECT, payload.clone()))
        .collect()
}

fn size_name(bytes: usize) -> String {
    if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{}KiB", bytes / 1024)
    } else {
        format!("{bytes}B")
    }
}

/// One measured window of appends.
struct AppendSample {
    events_per_s: f64,
    payload_mb_per_s: f64,
    disk_mb_per_s: f64,
    events_per_group: f64,
    /// `None` when the window held no `fdatasync`.
    events_per_sync: Option<f64>,
    sync_ms: Option<f64>,
    /// Share of the window the writer spent in `fdatasync`, in percent.
    sync_busy_pct: f64,
}

/// Runs `appenders` tasks appending `batch` events of `payload_bytes` each per call into a
/// fresh log, and measures one window.
async fn append_once(
    base: &Path,
    fsync: FsyncPolicy,
    payload_bytes: usize,
    appenders: usize,
    batch: usize,
) -> AppendSample {
    let dir = TempDir::with_prefix_in("append-", base).unwrap();
    let log = Arc::new(open(dir.path(), fsync));
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let body = payload(payload_bytes);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..appenders {
        let (log, stop, acked, body) = (log.clone(), stop.clone(), acked.clone(), body.clone());
        tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let receipts = log.append(events(&body, batch)).await.expect("append");
                acked.fetch_add(receipts.len() as u64, Ordering::Relaxed);
            }
        });
    }
    tokio::time::sleep(APPEND_WARMUP).await;
    let (n0, s0, t0) = (acked.load(Ordering::Relaxed), log.stats(), Instant::now());
    tokio::time::sleep(APPEND_WINDOW).await;
    let (n1, s1, t1) = (acked.load(Ordering::Relaxed), log.stats(), Instant::now());
    stop.store(true, Ordering::Relaxed);
    while let Some(r) = tasks.join_next().await {
        r.expect("appender task");
    }
    log.close().await;
    drop(log);
    let secs = (t1 - t0).as_secs_f64();
    let n = (n1 - n0) as f64;
    let appended = (s1.appended - s0.appended) as f64;
    let groups = (s1.groups - s0.groups) as f64;
    let syncs = s1.syncs - s0.syncs;
    AppendSample {
        events_per_s: n / secs,
        payload_mb_per_s: n * payload_bytes as f64 / secs / 1e6,
        disk_mb_per_s: (s1.bytes - s0.bytes) as f64 / secs / 1e6,
        events_per_group: appended / groups.max(1.0),
        events_per_sync: (syncs > 0).then(|| appended / syncs as f64),
        sync_ms: (syncs > 0).then(|| (s1.sync_ns - s0.sync_ns) as f64 / syncs as f64 / 1e6),
        sync_busy_pct: (s1.sync_ns - s0.sync_ns) as f64 / 1e9 / secs * 100.0,
    }
}

/// One row of the append table.
struct AppendRow {
    case: String,
    events_per_s: Spread,
}

async fn append_case(
    base: &Path,
    case: &str,
    fsync: FsyncPolicy,
    payload_bytes: usize,
    appenders: usize,
    batch: usize,
) -> AppendRow {
    let mut samples = Vec::new();
    for _ in 0..APPEND_REPS {
        samples.push(append_once(base, fsync, payload_bytes, appenders, batch).await);
    }
    let spread =
        |f: &dyn Fn(&AppendSample) -> f64| Spread::of(&samples.iter().map(f).collect::<Vec<_>>());
    let opt_spread = |f: &dyn Fn(&AppendSample) -> Option<f64>| {
        let v: Vec<f64> = samples.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| Spread::of(&v))
    };
    let events_per_s = spread(&|s| s.events_per_s);
    let per_sync = opt_spread(&|s| s.events_per_sync);
    let sync_ms = opt_spread(&|s| s.sync_ms);
    println!(
        "| {fsync} | {} | {appenders} | {batch} | {} | {} | {} | {} | {} | {} | {} |",
        size_name(payload_bytes),
        events_per_s.show(0),
        spread(&|s| s.payload_mb_per_s).show(1),
        spread(&|s| s.disk_mb_per_s).show(1),
        num(spread(&|s| s.events_per_group).median, 1),
        per_sync.map_or("–".into(), |s| num(s.median, 1)),
        sync_ms.map_or("–".into(), |s| num(s.median, 2)),
        num(spread(&|s| s.sync_busy_pct).median, 0),
    );
    AppendRow {
        case: case.to_owned(),
        events_per_s,
    }
}

fn append_header() {
    println!(
        "| policy | payload | appenders | events/call | events/s median (min–max) | payload MB/s | on-disk MB/s | events/group | events/fdatasync | ms/fdatasync | % of time in fdatasync |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
}

/// The disk's `fdatasync` rate: 4 KiB `pwrite` at the end of a file, then `fdatasync`.
fn disk_case(base: &Path) -> Spread {
    let buf = vec![0x5a; DISK_WRITE_BYTES];
    let mut rates = Vec::new();
    let mut latencies = Vec::new();
    for _ in 0..DISK_REPS {
        let dir = TempDir::with_prefix_in("disk-", base).unwrap();
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(dir.path().join("fdatasync.dat"))
            .unwrap();
        let (mut offset, mut n) = (0u64, 0u64);
        let t0 = Instant::now();
        while t0.elapsed() < DISK_WINDOW {
            file.write_all_at(&buf, offset).unwrap();
            file.sync_data().unwrap();
            offset += DISK_WRITE_BYTES as u64;
            n += 1;
        }
        let secs = t0.elapsed().as_secs_f64();
        rates.push(n as f64 / secs);
        latencies.push(secs * 1e3 / n as f64);
    }
    let rate = Spread::of(&rates);
    println!("| fdatasync/s (4 KiB pwrite at end of file + fdatasync) | ms each |");
    println!("|---:|---:|");
    println!("| {} | {} |", rate.show(0), Spread::of(&latencies).show(3));
    rate
}

/// Appends batches of `BATCH_EVENTS` events from `writers` tasks until `done` says so.
async fn fill(log: &Arc<Log>, payload_bytes: usize, writers: usize, done: fn(&LogStats) -> bool) {
    let body = payload(payload_bytes);
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..writers {
        let (log, stop, body) = (log.clone(), stop.clone(), body.clone());
        tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                log.append(events(&body, BATCH_EVENTS))
                    .await
                    .expect("append");
                if done(&log.stats()) {
                    stop.store(true, Ordering::Relaxed);
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("writer task");
    }
}

/// Scan figures for one payload size.
struct ScanRow {
    payload_bytes: usize,
    payload_gb_per_s: Spread,
}

/// Writes at least [`SCAN_MIN_BYTES`] of `payload_bytes` records, then reads them all from
/// the oldest, [`SCAN_REPS`] times, each time from a freshly opened log.
async fn scan_case(base: &Path, payload_bytes: usize) -> ScanRow {
    let dir = TempDir::with_prefix_in("scan-", base).unwrap();
    let log = Arc::new(open(dir.path(), FsyncPolicy::Never));
    fill(&log, payload_bytes, 4, |s| {
        s.bytes >= SCAN_MIN_BYTES + (1 << 20)
    })
    .await;
    let stats = log.stats();
    log.close().await;
    drop(log);
    let mut payload_rates = Vec::new();
    let mut disk_rates = Vec::new();
    let mut event_rates = Vec::new();
    for _ in 0..SCAN_REPS {
        let log = open(dir.path(), FsyncPolicy::Never);
        let t0 = Instant::now();
        let mut reader = log.open_reader(Start::Oldest).unwrap();
        let (mut n, mut bytes) = (0u64, 0u64);
        while let Some(item) = reader.try_next().unwrap() {
            let ReadItem::Event(e) = item else {
                panic!("unexpected {item:?}")
            };
            bytes += e.payload.len() as u64;
            n += 1;
            black_box(e);
        }
        let secs = t0.elapsed().as_secs_f64();
        assert_eq!(n, stats.events, "scan read every event");
        payload_rates.push(bytes as f64 / secs / 1e6);
        disk_rates.push(stats.bytes as f64 / secs / 1e6);
        event_rates.push(n as f64 / secs);
        drop(reader);
        log.close().await;
    }
    let payload_mb = Spread::of(&payload_rates);
    println!(
        "| {} | {} | {} ({} sealed) | {} | {} | {} |",
        size_name(payload_bytes),
        num(stats.events as f64, 0),
        num(stats.bytes as f64 / 1e6, 1),
        stats.segments - 1,
        payload_mb.show(0),
        Spread::of(&disk_rates).show(0),
        Spread::of(&event_rates).show(0),
    );
    ScanRow {
        payload_bytes,
        payload_gb_per_s: Spread {
            median: payload_mb.median / 1e3,
            min: payload_mb.min / 1e3,
            max: payload_mb.max / 1e3,
        },
    }
}

/// Appends `batches` batches of [`OPEN_PAYLOAD_BYTES`] records, one call at a time.
async fn append_batches(log: &Log, batches: usize) {
    let body = payload(OPEN_PAYLOAD_BYTES);
    for _ in 0..batches {
        log.append(events(&body, BATCH_EVENTS))
            .await
            .expect("append");
    }
}

/// The size of the newest segment file in `dir`.
fn active_segment_bytes(dir: &Path) -> u64 {
    let newest: PathBuf = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .max()
        .expect("a segment");
    std::fs::metadata(newest).unwrap().len()
}

/// Builds a small and a large directory with the same active segment and times opening each.
async fn open_case(base: &Path) -> (Spread, Spread) {
    let small = TempDir::with_prefix_in("open-small-", base).unwrap();
    let log = open(small.path(), FsyncPolicy::Never);
    append_batches(&log, OPEN_ACTIVE_BATCHES).await;
    log.close().await;
    drop(log);

    let large = TempDir::with_prefix_in("open-large-", base).unwrap();
    let log = open(large.path(), FsyncPolicy::Never);
    let body = payload(OPEN_PAYLOAD_BYTES);
    // One call at a time, so that the batch that rolls the last sealed segment is the first
    // of the active one, as in the small directory.
    while log.stats().segments <= OPEN_LARGE_SEALED {
        log.append(events(&body, BATCH_EVENTS))
            .await
            .expect("append");
    }
    append_batches(&log, OPEN_ACTIVE_BATCHES - 1).await;
    let large_stats = log.stats();
    log.close().await;
    drop(log);

    let (small_active, large_active) = (
        active_segment_bytes(small.path()),
        active_segment_bytes(large.path()),
    );
    // Same records; the large directory's event ids have more digits, hence a few KB more.
    assert!(
        small_active.abs_diff(large_active) * 100 < small_active,
        "active segments differ: {small_active} vs {large_active} bytes"
    );
    println!(
        "Directories: small {} MB in 1 segment; large {} MB in {} sealed segments + the active one; active segment {} MB vs {} MB ({} events of {} each).\n",
        num(small_active as f64 / 1e6, 1),
        num(large_stats.bytes as f64 / 1e6, 1),
        large_stats.segments - 1,
        num(small_active as f64 / 1e6, 2),
        num(large_active as f64 / 1e6, 2),
        OPEN_ACTIVE_BATCHES * BATCH_EVENTS,
        size_name(OPEN_PAYLOAD_BYTES),
    );

    let (mut small_ms, mut large_ms) = (Vec::new(), Vec::new());
    for _ in 0..OPEN_REPS {
        for (dir, out) in [(&small, &mut small_ms), (&large, &mut large_ms)] {
            let t0 = Instant::now();
            let (log, report) = Log::open(
                dir.path(),
                NAMESPACE,
                config(FsyncPolicy::Never),
                Arc::new(StdFs),
            )
            .expect("reopen");
            out.push(t0.elapsed().as_secs_f64() * 1e3);
            assert!(report.clean_shutdown, "clean close recognised");
            log.close().await;
        }
    }
    drop(large);
    let (s, l) = (Spread::of(&small_ms), Spread::of(&large_ms));
    println!("| directory | open ms median (min–max) |");
    println!("|---|---:|");
    println!("| small (~20 MB) | {} |", s.show(2));
    println!("| large (≥ 2 GB) | {} |", l.show(2));
    (s, l)
}

fn met(ok: bool) -> &'static str {
    if ok { "MET" } else { "MISSED" }
}

fn main() {
    let filter = Filter::from_args();
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-tmp");
    std::fs::create_dir_all(&base).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let mut targets: Vec<String> = Vec::new();

    let disk = filter.wants("disk").then(|| {
        println!("\n### Disk\n");
        disk_case(&base)
    });

    let policies = [
        FsyncPolicy::Always,
        FsyncPolicy::Interval(Duration::from_millis(5)),
        FsyncPolicy::Never,
    ];
    let mut rows: Vec<AppendRow> = Vec::new();
    let mut header = false;
    for fsync in policies {
        for payload_bytes in [128, 4096] {
            for appenders in [1, 64, 256] {
                let case = format!("append/{fsync}/{}/{appenders}", size_name(payload_bytes));
                if !filter.wants(&case) {
                    continue;
                }
                if !header {
                    println!("\n### Append (one event per call)\n");
                    append_header();
                    header = true;
                }
                rows.push(rt.block_on(append_case(
                    &base,
                    &case,
                    fsync,
                    payload_bytes,
                    appenders,
                    1,
                )));
            }
        }
    }
    header = false;
    // `always` with 16 appenders is what `bus bench pub -c 16 -b 100` compares with.
    for (fsync, appenders) in [
        (FsyncPolicy::Never, 4),
        (FsyncPolicy::Never, 64),
        (FsyncPolicy::Always, 16),
        (FsyncPolicy::Always, 64),
    ] {
        let case = format!("batch/{fsync}/128B/x{BATCH_EVENTS}/{appenders}");
        if !filter.wants(&case) {
            continue;
        }
        if !header {
            println!("\n### Append, batches of {BATCH_EVENTS} events per call\n");
            append_header();
            header = true;
        }
        rows.push(rt.block_on(append_case(
            &base,
            &case,
            fsync,
            128,
            appenders,
            BATCH_EVENTS,
        )));
    }

    let mut scans = Vec::new();
    for payload_bytes in [4096, 128] {
        let case = format!("scan/{}", size_name(payload_bytes));
        if !filter.wants(&case) {
            continue;
        }
        if scans.is_empty() {
            println!("\n### Sequential scan from Oldest (page cache, reopened before each scan)\n");
            println!(
                "| payload | events | on-disk MB | payload MB/s median (min–max) | on-disk MB/s | events/s |"
            );
            println!("|---|---:|---:|---:|---:|---:|");
        }
        scans.push(rt.block_on(scan_case(&base, payload_bytes)));
    }

    let open_times = filter.wants("open").then(|| {
        println!("\n### Open after a clean close\n");
        rt.block_on(open_case(&base))
    });

    // Targets, stated plainly.
    let find = |case: &str| rows.iter().find(|r| r.case == case).map(|r| r.events_per_s);
    let never_best = [
        "append/never/128B/256".to_owned(),
        format!("batch/never/128B/x{BATCH_EVENTS}/4"),
        format!("batch/never/128B/x{BATCH_EVENTS}/64"),
    ]
    .iter()
    .filter_map(|c| find(c).map(|s| (c.clone(), s)))
    .max_by(|a, b| a.1.median.total_cmp(&b.1.median));
    if let Some((case, s)) = never_best {
        targets.push(format!(
            "`never`, 128 B ≥ 1,000,000 events/s (256 appenders or batches of 100): best {} events/s ({case}) — {}",
            num(s.median, 0),
            met(s.median >= 1e6)
        ));
    }
    for row in &scans {
        if row.payload_bytes == 4096 {
            targets.push(format!(
                "scan of 4 KiB records ≥ 1 GB/s of payload: {} GB/s — {}",
                row.payload_gb_per_s.show(2),
                met(row.payload_gb_per_s.median >= 1.0)
            ));
        }
    }
    if let Some((small, large)) = open_times {
        targets.push(format!(
            "open of ≥ 2 GB ≤ 2× open of ~20 MB: {} ms vs {} ms = {:.2}× — {}",
            num(large.median, 2),
            num(small.median, 2),
            large.median / small.median,
            met(large.median <= 2.0 * small.median)
        ));
    }
    if let (Some(disk), Some(always)) = (disk, find("append/always/128B/256")) {
        let ratio = always.median / disk.median;
        targets.push(format!(
            "`always`, 256 appenders, 128 B ≥ 50× disk fdatasyncs/s: {} events/s ÷ {} fdatasync/s = {ratio:.1}× — {}",
            num(always.median, 0),
            num(disk.median, 0),
            met(ratio >= 50.0)
        ));
    }
    if !targets.is_empty() {
        println!("\n### Targets\n");
        for t in &targets {
            println!("- {t}");
        }
    }
    println!(
        "\nTotal bench time: {:.0} s",
        started.elapsed().as_secs_f64()
    );
}
