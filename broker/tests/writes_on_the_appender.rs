//! Where a namespace's writer step runs: a short append finding its writer idle is written
//! on the appending thread (no hand-over to the writers' pool, see "On the appender's thread"
//! in `storage/writer.rs`), while one larger than that path takes goes to the pool. One test
//! in this file, so that no other test's appends move the pool's process-wide figures.

use bus_broker::storage::pool;
use bus_broker::storage::{
    DiskStorage, FsyncPolicy, NewEvent, ReadItem, Start, Storage, StorageOptions,
};

/// More than the most a step on the appending thread writes (`HERE_MAX_BYTES`, 256 KiB).
const LONG_BATCH: usize = 320;
const LONG_PAYLOAD: usize = 1024;

#[tokio::test(flavor = "current_thread")]
async fn short_appends_run_on_the_appender_and_long_ones_on_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = StorageOptions::new(dir.path());
    options.defaults.fsync = FsyncPolicy::Never;
    let (disk, _) = DiskStorage::open(options).unwrap();
    let log = disk.namespace("user", true).await.unwrap().unwrap();

    // The first append reserves sequences (a synced write, log format 2.4): on the pool.
    let r = log
        .append(vec![NewEvent::new("user.created", b"1".to_vec())])
        .await
        .unwrap();
    assert_eq!(r[0].sequence, 1);
    let steps = pool::writer_stats().steps;
    // One at a time: every append finds the writer idle, and the mark ahead.
    for n in 2..=100u64 {
        let r = log
            .append(vec![NewEvent::new(
                "user.created",
                format!("{n}").into_bytes(),
            )])
            .await
            .unwrap();
        assert_eq!(r[0].sequence, n);
    }
    let w = pool::writer_stats();
    assert_eq!(w.steps, steps, "short appends went to the pool: {w:?}");

    // Past the bound of that path: the pool writes it.
    let batch = (0..LONG_BATCH)
        .map(|_| NewEvent::new("user.big", vec![b'x'; LONG_PAYLOAD]))
        .collect();
    let r = log.append(batch).await.unwrap();
    assert_eq!(r[0].sequence, 101);
    let w = pool::writer_stats();
    assert!(w.steps > steps, "a long append ran off the pool: {w:?}");

    // Both paths wrote what they answered, in order.
    let mut reader = log.reader(Start::Oldest).await.unwrap();
    let mut seen = Vec::new();
    while let Some(item) = reader.try_next().unwrap() {
        let ReadItem::Event(e) = item else {
            panic!("gap")
        };
        seen.push((e.sequence, e.payload.len()));
    }
    assert_eq!(seen.len(), 100 + LONG_BATCH);
    assert!(seen.iter().zip(1..).all(|((s, _), n)| *s == n));
    assert!(seen[100..].iter().all(|(_, len)| *len == LONG_PAYLOAD));
}
