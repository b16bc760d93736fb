//! Helpers shared by the storage integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bus_broker::storage::LogReader as _;
use bus_broker::storage::io::{FileSystem, StdFs};
use bus_broker::storage::{
    Event, EventLog, Log, LogConfig, NewEvent, OpenReport, ReadItem, Start, StorageError,
};

/// Every await on the network or a writer is bounded, so a bug fails fast instead of hanging.
pub const WAIT: Duration = Duration::from_secs(20);

pub fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        ..LogConfig::default()
    }
}

pub fn open(dir: &Path, config: LogConfig) -> (Log, OpenReport) {
    open_fs(dir, config, Arc::new(StdFs)).expect("open")
}

pub fn open_fs(
    dir: &Path,
    config: LogConfig,
    fs: Arc<dyn FileSystem>,
) -> Result<(Log, OpenReport), StorageError> {
    Log::open(dir, "user", config, fs)
}

pub fn ev(i: u64) -> NewEvent {
    NewEvent::new(format!("user.e{i}"), format!("payload-{i}").into_bytes())
}

pub async fn append(log: &Log, events: Vec<NewEvent>) -> Vec<u64> {
    let r = tokio::time::timeout(WAIT, log.append(events))
        .await
        .expect("append timed out");
    r.expect("append").into_iter().map(|r| r.sequence).collect()
}

pub async fn append_n(log: &Log, n: u64) -> Vec<u64> {
    let mut seqs = Vec::new();
    for i in 0..n {
        seqs.extend(append(log, vec![ev(i)]).await);
    }
    seqs
}

/// Everything readable now, from `start`.
pub fn read_all(log: &Log, start: Start) -> Vec<Event> {
    let mut r = log.open_reader(start).expect("reader");
    let mut out = Vec::new();
    while let Some(item) = r.try_next().expect("read") {
        match item {
            ReadItem::Event(e) => out.push(e),
            ReadItem::Gap { .. } => {}
        }
    }
    out
}

pub fn seqs(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.sequence).collect()
}

/// The only segment file in `dir` with the highest first sequence.
pub fn last_segment(dir: &Path) -> std::path::PathBuf {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    logs.pop().expect("a segment")
}

pub fn files_with_ext(dir: &Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    v
}

/// Copies every file of `from` into a fresh `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Offsets of the records of a segment file, found by decoding it.
pub fn record_offsets(segment: &Path) -> Vec<(usize, usize)> {
    use bus_broker::storage::record::{Decoded, decode};
    use bus_broker::storage::segment::SEGMENT_HEADER_BYTES;
    let data = std::fs::read(segment).unwrap();
    let mut pos = SEGMENT_HEADER_BYTES;
    let mut out = Vec::new();
    while let Decoded::Record(_, n) = decode(&data[pos..]) {
        out.push((pos, pos + n));
        pos += n;
    }
    out
}
