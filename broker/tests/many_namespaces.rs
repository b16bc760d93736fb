//! Many namespaces on bounded resources: opening, serving, closing and reopening 2,000
//! namespaces keeps the process's threads within the shared pools' bounds (no thread per
//! namespace) and its open files within the bound on open segment files (set low here), and
//! every namespace keeps its order and its events across the restart. One test in this file, so that no other test's
//! threads are counted.

use std::sync::Arc;

use bus_broker::storage::open_files;
use bus_broker::storage::pool::{self, ThreadPools};
use bus_broker::storage::{
    DiskStorage, EventLog, NewEvent, ReadItem, Start, Storage, StorageOptions,
};
use futures::future::join_all;

/// Namespaces the test opens.
const NAMESPACES: usize = 2_000;
/// The bound on open segment files in this test, far below one per namespace.
const MAX_OPEN: usize = 200;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn name(i: usize) -> String {
    format!("ns{i:05}")
}

fn ev(ns: &str, n: usize) -> NewEvent {
    NewEvent::new(format!("{ns}.e"), format!("{ns}-{n}").into_bytes())
}

async fn payloads(log: &Arc<dyn EventLog>) -> Vec<(u64, String)> {
    let mut r = log.reader(Start::Oldest).await.unwrap();
    let mut out = Vec::new();
    while let Some(item) = r.try_next().unwrap() {
        let ReadItem::Event(e) = item else {
            panic!("gap in {}", log.name())
        };
        out.push((e.sequence, String::from_utf8(e.payload.to_vec()).unwrap()));
    }
    out
}

fn expected(ns: &str) -> Vec<(u64, String)> {
    (0..3)
        .map(|n| (n as u64 + 1, format!("{ns}-{n}")))
        .collect()
}

// A current-thread runtime: opening a namespace runs inline (no blocking-pool thread is
// lent), so every thread counted beyond the start is the storage's own.
#[tokio::test(flavor = "current_thread")]
async fn two_thousand_namespaces_use_bounded_threads_and_keep_order_across_a_restart() {
    open_files::set_max_open_files(MAX_OPEN);
    let bounds = ThreadPools::current();
    let (threads_before, files_before) = (threads(), open_files());
    let dir = tempfile::tempdir().unwrap();
    let (disk, _) = DiskStorage::open(StorageOptions::new(dir.path())).unwrap();
    let mut logs = Vec::new();
    for i in 0..NAMESPACES {
        logs.push(disk.namespace(&name(i), true).await.unwrap().unwrap());
    }
    // Every namespace at once: a batch of two, then one more behind it, concurrently
    // across namespaces (and a third append racing the second within each).
    join_all(logs.iter().map(|log| async move {
        let ns = log.name().to_owned();
        let r = log.append(vec![ev(&ns, 0), ev(&ns, 1)]).await.unwrap();
        assert_eq!(r.iter().map(|r| r.sequence).collect::<Vec<_>>(), [1, 2]);
        let r = log.append(vec![ev(&ns, 2)]).await.unwrap();
        assert_eq!(r[0].sequence, 3);
    }))
    .await;
    let (threads_peak, files_peak) = (threads(), open_files());
    let (w, s) = (pool::writer_stats(), pool::sync_stats());
    // The pools' own counts, and the process's: pools, the timer thread, nothing per
    // namespace.
    assert!(w.peak_threads <= bounds.writers, "{w:?}");
    assert!(s.peak_threads <= bounds.syncers, "{s:?}");
    // Writer steps this short may all run on the appending thread (see "On the appender's
    // thread" in storage/writer.rs), so the writers' pool may not have run at all; the
    // syncers' has, for every namespace syncs.
    assert!(s.peak_running >= 1, "{w:?} {s:?}");
    assert!(
        threads_peak <= threads_before + bounds.writers + bounds.syncers + 1,
        "{threads_peak} threads for {NAMESPACES} namespaces (from {threads_before})"
    );
    // Idle, synced segment files are closed past the bound: the descriptors stay near it
    // (plus the data directory's lock and a few opened and closed on the spot), far below
    // one per namespace.
    let files = open_files::open_file_stats();
    assert!(files.closed > 0, "{files:?}");
    assert!(
        files_peak <= files_before + MAX_OPEN + 16,
        "{files_peak} open files for {NAMESPACES} namespaces (from {files_before}), {files:?}"
    );
    for log in &logs {
        assert_eq!(payloads(log).await, expected(log.name()));
    }
    drop(logs);
    disk.close().await.unwrap();
    drop(disk);
    assert_eq!(pool::writer_stats().users, 0);
    assert_eq!(pool::sync_stats().users, 0);
    assert!(
        open_files() <= files_before + 2,
        "files left open after close"
    );

    // Restart: every namespace is found, clean, with its events in order.
    let (disk, reports) = DiskStorage::open(StorageOptions::new(dir.path())).unwrap();
    assert_eq!(reports.len(), NAMESPACES);
    assert!(reports.iter().all(|r| r.clean_shutdown && r.events == 3));
    assert!(threads() <= threads_before + bounds.writers + bounds.syncers + 1);
    for i in (0..NAMESPACES).step_by(97) {
        let log = disk.namespace(&name(i), false).await.unwrap().unwrap();
        assert_eq!(payloads(&log).await, expected(&name(i)));
        let r = log.append(vec![ev(&name(i), 3)]).await.unwrap();
        assert_eq!(r[0].sequence, 4);
    }
    disk.close().await.unwrap();
}
