//! [`LogStateStore`]: the broker's own durable key-value state (consumer positions, ...),
//! kept in a [`Log`] of its own so that it shares the log's framing, group commit and
//! recovery.
//!
//! Each write is one record: the key as its subject, the value as its payload, a deletion
//! marked by the header `op: del`. The map is rebuilt at open by reading the log. When the
//! log holds more than twice the live entries (plus [`COMPACT_SLACK`]), the live entries are
//! appended again as one atomic batch and the segments before it are deleted: the log stays
//! proportional to the live state.
//!
//! **Reserve.** Acks must keep working when publishes have filled the disk, so the store
//! keeps [`RESERVE_BYTES`] of real blocks in a file of its own ([`RESERVE_FILE`], made at
//! open when missing). A write that finds the disk full deletes that file, has the state log
//! probe at once (it heals when the probe succeeds) and tries once more. The reserve is made
//! again at the next start, when there is room.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::BoxFuture;

use super::disk::STATE_DIR;
use super::io::FileSystem;
use super::log::Log;
use super::open::OpenReport;
use super::{EventLog, LogConfig, LogReader, NewEvent, ReadItem, Start, StateStore, StorageError};
use crate::sync::lock;

/// Records beyond twice the live entries tolerated before compaction.
pub const COMPACT_SLACK: u64 = 4096;
const STATE_NAMESPACE: &str = "state";
const OP_HEADER: &str = "op";
const OP_DELETE: &str = "del";
/// Bytes kept in reserve for the state log on a full disk.
pub const RESERVE_BYTES: u64 = 8 * 1024 * 1024;
/// Name of the reserve file in the state directory.
pub const RESERVE_FILE: &str = "reserve";
/// Longest wait for the state log to heal once the reserve was released.
const RESERVE_HEAL_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Default)]
struct Map {
    /// Key → (sequence of the write, value; `None` for a deletion not yet compacted away).
    entries: BTreeMap<String, (u64, Option<Bytes>)>,
    live: u64,
}

impl Map {
    fn apply(&mut self, key: &str, seq: u64, value: Option<Bytes>) {
        let is_live = value.is_some();
        match self.entries.get_mut(key) {
            Some(e) if e.0 >= seq => {}
            Some(e) => {
                self.live = self.live + u64::from(is_live) - u64::from(e.1.is_some());
                *e = (seq, value);
            }
            None => {
                self.live += u64::from(is_live);
                self.entries.insert(key.to_owned(), (seq, value));
            }
        }
    }
}

/// Durable key-value state in a log.
pub struct LogStateStore {
    log: Arc<Log>,
    map: Arc<Mutex<Map>>,
    /// Records in the log since the last compaction.
    records: Arc<AtomicU64>,
    /// Puts hold it shared; compaction exclusively, so no write is in flight while the
    /// snapshot is taken and the older segments are deleted.
    gate: Arc<tokio::sync::RwLock<()>>,
    /// The reserve file (see the module docs).
    reserve: Arc<Path>,
}

impl std::fmt::Debug for LogStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStateStore")
            .field("dir", &self.log.dir())
            .finish()
    }
}

impl LogStateStore {
    /// Opens (or creates) the state in `dir`, reading it whole; the report says what
    /// recovery cut.
    ///
    /// Damage beyond a torn tail refuses the open (see "The state log" in
    /// `proto-docs/log-format.md`): the error names the file and offset and the repair command.
    pub fn open(
        dir: &Path,
        fs: Arc<dyn FileSystem>,
    ) -> Result<(LogStateStore, OpenReport), StorageError> {
        let config = LogConfig {
            segment_bytes: 1024 * 1024,
            max_payload_bytes: 16 * 1024 * 1024,
            dedup_window: std::time::Duration::ZERO,
            ..LogConfig::default()
        };
        let damaged = |e: StorageError| match e {
            StorageError::Corrupt(corruption) => StorageError::Damaged {
                namespace: STATE_DIR.to_owned(),
                corruption,
                data_dir: dir.parent().unwrap_or(dir).to_owned(),
            },
            other => other,
        };
        let (log, report) = Log::open(dir, STATE_NAMESPACE, config, fs).map_err(damaged)?;
        let mut map = Map::default();
        let mut reader = log.open_reader(Start::Oldest).map_err(damaged)?;
        let mut records = 0;
        while let Some(item) = reader.try_next().map_err(damaged)? {
            if let ReadItem::Event(e) = item {
                let delete = e
                    .headers
                    .iter()
                    .any(|(n, v)| n == OP_HEADER && v == OP_DELETE);
                map.apply(&e.subject, e.sequence, (!delete).then_some(e.payload));
                records += 1;
            }
        }
        let reserve: Arc<Path> = Arc::from(dir.join(RESERVE_FILE));
        if let Err(e) = make_reserve(&reserve) {
            tracing::warn!(path = %reserve.display(), error = %e, "could not keep disk space in reserve for the state log");
        }
        Ok((
            LogStateStore {
                log: Arc::new(log),
                map: Arc::new(Mutex::new(map)),
                records: Arc::new(AtomicU64::new(records)),
                gate: Arc::new(tokio::sync::RwLock::new(())),
                reserve,
            },
            report,
        ))
    }

    /// Figures of the state log (read-only state, heals) for health and metrics.
    pub fn stats(&self) -> super::LogStats {
        self.log.stats()
    }

    /// Syncs and closes the state log.
    pub async fn close(&self) {
        self.log.close().await;
    }

    fn write(
        &self,
        key: &str,
        value: Option<Bytes>,
    ) -> BoxFuture<'static, Result<(), StorageError>> {
        let event = record_of(key, value.as_ref());
        let (log, map, records, gate, reserve) = (
            self.log.clone(),
            self.map.clone(),
            self.records.clone(),
            self.gate.clone(),
            self.reserve.clone(),
        );
        let key = key.to_owned();
        Box::pin(async move {
            {
                let _shared = gate.read().await;
                let receipts = match log.append(vec![event]).await {
                    Err(e) if e.is_disk_full() && release_reserve(&reserve) => {
                        let (mut healed, seen) = log.probe_now();
                        let _ =
                            tokio::time::timeout(RESERVE_HEAL_WAIT, healed.wait_for(|n| *n > seen))
                                .await;
                        // Built again: the one-time retry, not every write, pays for it.
                        log.append(vec![record_of(&key, value.as_ref())]).await?
                    }
                    r => r?,
                };
                let seq = receipts.first().map_or(0, |r| r.sequence);
                lock(&map).apply(&key, seq, value);
            }
            let n = records.fetch_add(1, Ordering::Relaxed) + 1;
            let live = lock(&map).live;
            if n > 2 * live + COMPACT_SLACK {
                compact(&log, &map, &records, &gate).await?;
            }
            Ok(())
        })
    }
}

/// The record of one write: the key as its subject, the value as its payload, a deletion
/// marked by the header `op: del`.
fn record_of(key: &str, value: Option<&Bytes>) -> NewEvent {
    let mut event = NewEvent::new(key, value.cloned().unwrap_or_default());
    if value.is_none() {
        event.headers.push((OP_HEADER.into(), OP_DELETE.into()));
    }
    event
}

/// Makes the reserve file when it is missing: real blocks (zeros written, then synced), not a
/// sparse file, so that deleting it frees space.
fn make_reserve(path: &Path) -> std::io::Result<()> {
    use std::io::Write;
    if path.exists() {
        return Ok(());
    }
    let tmp = path.with_extension("tmp");
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        let chunk = vec![0u8; 64 * 1024];
        for _ in 0..RESERVE_BYTES / chunk.len() as u64 {
            f.write_all(&chunk)?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Deletes the reserve file; false when there was none left to free.
fn release_reserve(path: &Path) -> bool {
    match std::fs::remove_file(path) {
        Ok(()) => {
            tracing::warn!(path = %path.display(), bytes = RESERVE_BYTES, "disk full: released the state log's reserve so that acks keep working; free space and restart to restore it");
            true
        }
        Err(_) => false,
    }
}

async fn compact(
    log: &Log,
    map: &Mutex<Map>,
    records: &AtomicU64,
    gate: &tokio::sync::RwLock<()>,
) -> Result<(), StorageError> {
    let _exclusive = gate.write().await;
    let live = lock(map).live;
    if records.load(Ordering::Relaxed) <= 2 * live + COMPACT_SLACK {
        return Ok(()); // another writer compacted meanwhile
    }
    let snapshot: Vec<NewEvent> = lock(map)
        .entries
        .iter()
        .filter_map(|(k, (_, v))| v.as_ref().map(|v| NewEvent::new(k.clone(), v.clone())))
        .collect();
    if snapshot.is_empty() {
        // Nothing live: a single deletion marker keeps the sequence moving past the old ones.
        let mut m = NewEvent::new("_", Bytes::new());
        m.headers.push((OP_HEADER.into(), OP_DELETE.into()));
        let r = log.append(vec![m]).await?;
        log.delete_before(r[0].sequence)?;
    } else {
        let receipts = log.append(snapshot).await?;
        let first = receipts.first().map_or(0, |r| r.sequence);
        let mut m = lock(map);
        m.entries.retain(|_, (_, v)| v.is_some());
        for ((_, entry), r) in m.entries.iter_mut().zip(&receipts) {
            entry.0 = r.sequence;
        }
        drop(m);
        log.delete_before(first)?;
    }
    records.store(live, Ordering::Relaxed);
    Ok(())
}

/// Reads are served from the map kept in memory (the log is read once, at open).
impl StateStore for LogStateStore {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, StorageError>> {
        let value = lock(&self.map)
            .entries
            .get(key)
            .and_then(|(_, v)| v.clone());
        Box::pin(async move { Ok(value) })
    }

    fn list<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, Bytes)>, StorageError>> {
        let entries = lock(&self.map)
            .entries
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter_map(|(k, (_, v))| v.clone().map(|v| (k.clone(), v)))
            .collect();
        Box::pin(async move { Ok(entries) })
    }

    fn read_only(&self) -> Option<String> {
        self.stats().read_only
    }

    fn put(&self, key: &str, value: Bytes) -> BoxFuture<'static, Result<(), StorageError>> {
        self.write(key, Some(value))
    }

    fn delete(&self, key: &str) -> BoxFuture<'static, Result<(), StorageError>> {
        self.write(key, None)
    }
}
