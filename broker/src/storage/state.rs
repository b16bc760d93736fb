//! [`LogStateStore`]: the broker's own durable key-value state (consumer positions, ...),
//! kept in a [`Log`] of its own so that it shares the log's framing, group commit and
//! recovery.
//!
//! Each write is [`COPIES`] identical records in one append: the key as their subject, the
//! value as their payload, a deletion marked by the header `op: del`. The map is rebuilt at
//! open by reading the log. When the log holds more than twice the records of the live
//! entries (plus [`COMPACT_SLACK`]), the live entries are appended again, each twice, as one
//! batch and the segments before it are deleted: the log stays proportional to the live
//! state.
//!
//! **One bad byte loses nothing acknowledged.** A flipped byte damages at most one record;
//! its copy still holds the write, so no consumer's acknowledged position rolls back:
//! - a bad *last* record is cut as a torn tail (7.5 of `log-format.md`), and the log is
//!   opened with [`LogConfig::keep_partial_batch`], so the copy before it is kept (the state
//!   log needs no batch atomicity: a write's copies are the same write, and a compaction
//!   only repeats current values);
//! - damage anywhere else (a record, a segment header, a sealed segment) is **salvaged**
//!   instead of refusing the start: every record that still verifies is read past the damage
//!   ([`salvage`](super::salvage)), the map they give is written into a new segment, the
//!   damaged segments are kept whole in `.state/quarantine/`, and the older segments are
//!   deleted. It is logged at `error` with the files and byte ranges.
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
use super::{
    EventLog, LogConfig, LogReader, NewEvent, ReadItem, Start, StateStore, StorageError,
    quarantine, record, salvage, segment,
};
use crate::sync::lock;

/// Records beyond twice those of the live entries tolerated before compaction.
pub const COMPACT_SLACK: u64 = 4096;
/// Records written for each write (and each live key at compaction): one bad byte damages
/// at most one record, so the other still holds the write.
pub const COPIES: u64 = 2;
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
    /// Damage beyond a torn tail does not refuse the open: the state is salvaged (see the
    /// module docs, and "The state log" in `proto-docs/log-format.md`).
    pub fn open(
        dir: &Path,
        fs: Arc<dyn FileSystem>,
    ) -> Result<(LogStateStore, OpenReport), StorageError> {
        let config = LogConfig {
            segment_bytes: 1024 * 1024,
            max_payload_bytes: 16 * 1024 * 1024,
            dedup_window: std::time::Duration::ZERO,
            keep_partial_batch: true,
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
        let (log, map, records, report) = match read_log(dir, config.clone(), fs.clone()) {
            Ok(read) => read,
            Err(StorageError::Corrupt(corruption)) => {
                salvage_dir(dir, &*fs, &corruption).map_err(damaged)?;
                read_log(dir, config, fs).map_err(damaged)?
            }
            Err(e) => return Err(e),
        };
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
        let events = copies_of(key, value.as_ref());
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
                let receipts = match log.append(events).await {
                    Err(e) if e.is_disk_full() && release_reserve(&reserve) => {
                        let (mut healed, seen) = log.probe_now();
                        let _ =
                            tokio::time::timeout(RESERVE_HEAL_WAIT, healed.wait_for(|n| *n > seen))
                                .await;
                        // Built again: the one-time retry, not every write, pays for it.
                        log.append(copies_of(&key, value.as_ref())).await?
                    }
                    r => r?,
                };
                let seq = receipts.last().map_or(0, |r| r.sequence);
                lock(&map).apply(&key, seq, value);
            }
            let n = records.fetch_add(COPIES, Ordering::Relaxed) + COPIES;
            let live = lock(&map).live;
            if n > compact_above(live) {
                compact(&log, &map, &records, &gate).await?;
            }
            Ok(())
        })
    }
}

/// The records of one write, [`COPIES`] of them: the key as their subject, the value as their
/// payload, a deletion marked by the header `op: del`.
fn copies_of(key: &str, value: Option<&Bytes>) -> Vec<NewEvent> {
    let mut event = NewEvent::new(key, value.cloned().unwrap_or_default());
    if value.is_none() {
        event.headers.push((OP_HEADER.into(), OP_DELETE.into()));
    }
    vec![event.clone(), event]
}

/// Records in the log past which it is compacted, with `live` live keys.
fn compact_above(live: u64) -> u64 {
    2 * COPIES * live + COMPACT_SLACK
}

/// True for a record that deletes its key.
fn is_delete<'a>(mut headers: impl Iterator<Item = (&'a str, &'a str)>) -> bool {
    headers.any(|(n, v)| n == OP_HEADER && v == OP_DELETE)
}

/// Opens the state log in `dir` and reads it whole: the log, the map, the records read, and
/// what recovery cut. Damage is [`StorageError::Corrupt`].
fn read_log(
    dir: &Path,
    config: LogConfig,
    fs: Arc<dyn FileSystem>,
) -> Result<(Log, Map, u64, OpenReport), StorageError> {
    let (log, report) = Log::open(dir, STATE_NAMESPACE, config, fs)?;
    let mut map = Map::default();
    let mut reader = log.open_reader(Start::Oldest)?;
    let mut records = 0;
    while let Some(item) = reader.try_next()? {
        if let ReadItem::Event(e) = item {
            let delete = is_delete(e.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
            map.apply(&e.subject, e.sequence, (!delete).then_some(e.payload));
            records += 1;
        }
    }
    Ok((log, map, records, report))
}

/// Salvages a damaged state log in `dir` (see the module docs): every record that still
/// verifies in any segment is read, in order; the live map they give is written, each key
/// [`COPIES`] times, into a new segment numbered above every sequence found; every segment
/// with damage is kept whole in `quarantine/`; then the older segments are deleted. The new
/// segment is synced (with the directory) before anything is deleted, so a crash meanwhile
/// salvages again at the next start.
fn salvage_dir(
    dir: &Path,
    fs: &dyn FileSystem,
    found: &super::Corruption,
) -> Result<(), StorageError> {
    let mut logs = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(|e| StorageError::io("list", dir, e))? {
        let entry = entry.map_err(|e| StorageError::io("list", dir, e))?;
        if let Some((first, false)) = entry.file_name().to_str().and_then(segment::parse_name) {
            logs.insert(first, entry.path());
        }
    }
    // A segment of a newer format is not salvaged over: the start is refused, naming it.
    for (&first, path) in &logs {
        let mut h = [0u8; segment::SEGMENT_HEADER_BYTES];
        let read = std::fs::File::open(path)
            .and_then(|f| std::os::unix::fs::FileExt::read_exact_at(&f, &mut h, 0));
        if read.is_ok()
            && let Err(reason) = segment::check_header(&h, first)
            && segment::unknown_version(&h).is_some()
        {
            return Err(StorageError::corrupt(path, 0, first, reason));
        }
    }
    let mut map = Map::default();
    let mut highest = 0;
    let mut incarnation = None;
    let mut damaged = Vec::new();
    let firsts: Vec<u64> = logs.keys().copied().collect();
    for (i, (&first, path)) in logs.iter().enumerate() {
        let data = std::fs::read(path).map_err(|e| StorageError::io("read", path, e))?;
        let end = firsts.get(i + 1).copied().unwrap_or(u64::MAX);
        let found = salvage::scan(&data, first..end);
        for (_, r) in &found.records {
            let delete = is_delete(r.headers.iter().copied());
            let value = (!delete).then(|| Bytes::copy_from_slice(r.payload));
            map.apply(r.subject, r.sequence, value);
            highest = highest.max(r.sequence);
        }
        highest = highest.max(first);
        if let Ok(inc) = segment::decode_header(&data, first) {
            incarnation = Some(inc);
        }
        if !found.damaged.is_empty() {
            let kept = quarantine::keep(path, 0, &data)
                .map_err(|e| tracing::warn!(file = %path.display(), error = %e, "could not keep a damaged state segment in quarantine"))
                .ok();
            damaged.push((path.clone(), found.damaged, kept));
        }
    }
    let inc = incarnation.unwrap_or_else(|| (uuid::Uuid::new_v4().as_u128() >> 96) as u32);
    let next = highest + 1;
    let path = dir.join(segment::segment_name(next));
    let file = segment::create(fs, dir, &path, segment::SEGMENT_VERSION, inc, next)?;
    let live: Vec<(&String, &Bytes)> = map
        .entries
        .iter()
        .filter_map(|(k, (_, v))| v.as_ref().map(|v| (k, v)))
        .collect();
    let total = live.len() as u64 * COPIES;
    let mut buf = Vec::new();
    let now = super::now_ns();
    for (i, (key, value)) in live.iter().enumerate() {
        for copy in 0..COPIES {
            let n = i as u64 * COPIES + copy;
            let id = super::EventIdRef {
                namespace: STATE_NAMESPACE,
                sequence: next + n,
                incarnation: inc,
            };
            let event = NewEvent::new(key.as_str(), (*value).clone());
            let left = (total - n - 1) as u32;
            record::encode(&mut buf, &event, next + n, now, left, id);
        }
    }
    file.write_all_at(&buf, segment::SEGMENT_HEADER_BYTES as u64)
        .and_then(|()| file.sync_data())
        .map_err(|e| StorageError::io("write", &path, e))?;
    for old in logs.values() {
        for p in [old.clone(), segment::index_path_for(old)] {
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(StorageError::io("delete", &p, e));
                }
                _ => {}
            }
        }
    }
    fs.sync_dir(dir)
        .map_err(|e| StorageError::io("fsync", dir, e))?;
    for (file, ranges, kept) in &damaged {
        tracing::error!(
            file = %file.display(),
            damaged = ?ranges,
            quarantined = ?kept,
            "the state log was damaged: every record that still verifies was salvaged (each write is kept twice, so one bad byte loses no acknowledged position)"
        );
    }
    tracing::error!(
        first_damage = %found,
        keys = live.len(),
        segment = %path.display(),
        "salvaged the damaged state log into a new segment; the damaged segments are kept in .state/quarantine/"
    );
    Ok(())
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
    if records.load(Ordering::Relaxed) <= compact_above(live) {
        return Ok(()); // another writer compacted meanwhile
    }
    let snapshot: Vec<NewEvent> = lock(map)
        .entries
        .iter()
        .filter_map(|(k, (_, v))| v.as_ref().map(|v| NewEvent::new(k.clone(), v.clone())))
        .flat_map(|e| std::iter::repeat_n(e, COPIES as usize))
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
        for ((_, entry), r) in m.entries.iter_mut().zip(receipts.chunks(COPIES as usize)) {
            entry.0 = r.last().map_or(entry.0, |r| r.sequence);
        }
        drop(m);
        log.delete_before(first)?;
    }
    records.store(COPIES * live, Ordering::Relaxed);
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
