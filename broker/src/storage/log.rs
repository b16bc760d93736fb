//! [`Log`]: one namespace's durable log.
//!
//! **Writing.** One writer thread per namespace. Appenders put their events in a queue and
//! wait; the writer takes everything queued at once, encodes it into one buffer and issues
//! one `write`: that is group commit. Under `interval` and `never` the writer then makes the
//! records visible to readers and answers every appender of the group itself. Under
//! `always` it hands the written group to the namespace's [`Syncer`] thread and goes on
//! with the next group while the disk syncs: one `fdatasync` covers every group written
//! before it started, and the syncer answers them once it returns (pipelined group commit).
//! One bound in encoded bytes ([`LogConfig::queue_bytes`]) covers appends from the moment
//! they queue until they are answered; past it, appenders wait for room.
//!
//! **Visibility.** Readers see only records that are durable under the policy: under
//! `always` after their sync, under `interval` and `never` after their write. The view
//! readers consult (segments, offsets, the visible end) sits behind a `RwLock` held only for
//! a few instructions; readers read the files without holding it, so they never block the
//! writer.
//!
//! **Failure.** A failed write fails the appends of its group; a failed sync fails every
//! group it covered and every group written after it. Either turns the namespace read-only
//! (appends are answered with the cause at once), and nothing acknowledged earlier is lost.
//!
//! **Healing.** While read-only, the writer probes the disk every [`PROBE_INTERVAL`] and
//! resumes once the probe succeeds. After a failed *write* it resumes where it was: the
//! failed group's sequences are handed out again, so no append leaves a gap, and the probe
//! (zeros written past the end, then synced) shows that space is back. After a failed
//! *sync* nothing written since the last successful sync is trusted (the kernel may have
//! dropped those pages, PostgreSQL's "fsyncgate"): under `always` the writer reopens the
//! active segment and cuts it to the last synced record — everything answered was synced,
//! so nothing answered is lost — and starts a fresh syncer. Under `interval` and `never`,
//! where answered events may not have been synced, a failed sync keeps the namespace
//! read-only until a restart, whose recovery checks every record.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};

use super::answers::{Answers, Done, Reply, Slot, Stamp};
use super::checkpoint::Checkpoint;
use super::config::{FsyncPolicy, LogConfig};
use super::dedup::{DedupEntry, DedupTable};
use super::index::SegmentIndex;
use super::io::{DataFile, FileSystem};
use super::reader::Reader;
use super::record::{self, Decoded};
use super::recovery::{self, Repair, TornTail};
use super::segment::{self, SEGMENT_HEADER_BYTES, SealedSegment};
use super::syncer::Syncer;
use super::{
    EventIdRef, EventLog, IdLookup, LogReader, NewEvent, Receipt, Start, StorageError,
    check_namespace, event_id, now_ns, parse_event_id,
};

/// How often the writer applies retention when idle.
const RETENTION_TICK: Duration = Duration::from_secs(1);
/// How often a read-only namespace probes whether its disk works again.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// Zeros a probe writes past the end of the active segment (a page: on a full disk, a write
/// inside an already allocated page would succeed without proving anything). Zeros never
/// verify as a record, so a crash leaves them as a torn tail that recovery cuts.
const PROBE_BYTES: usize = 4096;
/// Largest batch, in encoded bytes (record offsets within a segment are 32-bit).
pub const MAX_BATCH_BYTES: usize = 1024 * 1024 * 1024;

pub(crate) use crate::sync::lock;

/// Counters for metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Events appended.
    pub appended: AtomicU64,
    /// Encoded bytes appended.
    pub bytes_appended: AtomicU64,
    /// Write groups made visible (one write each; under `always` one sync covers one or
    /// more of them).
    pub groups: AtomicU64,
    /// `fdatasync` calls.
    pub syncs: AtomicU64,
    /// Total time spent in `fdatasync`, in ns.
    pub sync_ns: AtomicU64,
    /// Corrupt records reported to readers.
    pub corrupt_reads: AtomicU64,
    /// Times the namespace became writable again after a storage failure.
    pub heals: AtomicU64,
}

/// Figures of one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogStats {
    /// Events held.
    pub events: u64,
    /// Bytes on disk (segments).
    pub bytes: u64,
    /// Oldest sequence held (the next one when empty).
    pub first_seq: u64,
    /// Newest sequence held (0 when nothing was ever appended).
    pub last_seq: u64,
    /// Time of the newest event, ns since the epoch (0 when none).
    pub last_time_ns: u64,
    /// Segments (sealed plus the active one).
    pub segments: u64,
    /// Why the namespace is read-only, if it is.
    pub read_only: Option<String>,
    /// Events appended since open.
    pub appended: u64,
    /// Write groups since open.
    pub groups: u64,
    /// `fdatasync` calls since open.
    pub syncs: u64,
    /// Time spent in `fdatasync` since open, ns.
    pub sync_ns: u64,
    /// Corrupt records reported to readers since open.
    pub corrupt_reads: u64,
    /// Times the namespace became writable again after a storage failure, since open.
    pub heals: u64,
}

/// What opening a namespace found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// The namespace.
    pub namespace: String,
    /// Events held.
    pub events: u64,
    /// Oldest sequence held.
    pub first_seq: u64,
    /// Newest sequence held.
    pub last_seq: u64,
    /// True when the last close was clean.
    pub clean_shutdown: bool,
    /// The active segment's file.
    pub active_segment: PathBuf,
    /// A torn tail that was cut from the active segment.
    pub torn: Option<TornTail>,
    /// Damage that repair cut from the active segment.
    pub repaired: Option<Repair>,
}

/// The active segment as readers see it.
#[derive(Debug)]
pub(crate) struct ActiveView {
    pub first_seq: u64,
    pub path: PathBuf,
    pub file: Arc<dyn DataFile>,
    /// Offsets of the visible records.
    pub offsets: Vec<u32>,
    /// Times of the visible records.
    pub times: Vec<u64>,
    /// End of the visible records.
    pub len: u64,
}

/// What readers consult: which segments hold which sequences, and what is visible.
#[derive(Debug)]
pub(crate) struct View {
    pub sealed: VecDeque<Arc<SealedSegment>>,
    pub active: ActiveView,
    /// Oldest retained sequence.
    pub first_seq: u64,
    /// One past the newest visible sequence.
    pub next_seq: u64,
    /// Time of the newest visible event.
    pub last_time: u64,
    /// Bytes in sealed segments.
    pub sealed_bytes: u64,
    /// Set when the writer has stopped.
    pub closed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Finish queued appends, sync, write a clean checkpoint.
    Clean,
    /// Stop now (drop without close): fail queued appends, write nothing more.
    Abort,
}

struct Request {
    events: Vec<NewEvent>,
    tx: Reply,
    /// Room in the queue, released when the request is answered.
    permit: OwnedSemaphorePermit,
    /// The appender's runtime, where its answer is sent from.
    runtime: Option<tokio::runtime::Handle>,
}

#[derive(Default)]
struct Queue {
    reqs: Vec<Request>,
    stop: Option<Stop>,
    /// True while the writer waits on `Shared::wake`: only then does an appender wake it
    /// (a condvar notify is a system call even when nobody waits).
    writer_waiting: bool,
    /// Set by [`Log::probe_now`]: a read-only log probes at once, not at its next tick.
    probe: bool,
}

/// State shared by the log handle, its writer and its readers.
pub(crate) struct Shared {
    pub name: String,
    pub dir: PathBuf,
    pub config: LogConfig,
    pub incarnation: u32,
    queue: Mutex<Queue>,
    wake: Condvar,
    permits: Arc<Semaphore>,
    permit_cap: usize,
    pub view: RwLock<View>,
    /// The newest visible sequence; readers wait on it. Bumped once more at close.
    pub tail: watch::Sender<u64>,
    dedup: Mutex<DedupTable>,
    /// Why the namespace is read-only, while it is.
    failure: Mutex<Option<String>>,
    /// Set when the failure was a failed sync (healing then cuts to the last good sync).
    sync_failed: std::sync::atomic::AtomicBool,
    /// Counts heals; [`Log::probe_now`] returns a receiver of it.
    healed: watch::Sender<u64>,
    pub metrics: Metrics,
}

impl Shared {
    pub(crate) fn read_view(&self) -> std::sync::RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_view(&self) -> std::sync::RwLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn read_only_error(&self) -> Option<StorageError> {
        lock(&self.failure)
            .clone()
            .map(|cause| StorageError::ReadOnly {
                namespace: self.name.clone(),
                cause,
            })
    }

    fn has_failed(&self) -> bool {
        lock(&self.failure).is_some()
    }

    /// Turns the namespace read-only; the first failure's cause is the one kept.
    pub(crate) fn set_failure(&self, err: &StorageError) {
        let cause = err.to_string();
        tracing::error!(namespace = %self.name, error = %cause, "storage failure: namespace is read-only until the disk works again");
        lock(&self.failure).get_or_insert(cause);
    }

    /// Like [`Shared::set_failure`], for a failed `fdatasync`.
    pub(crate) fn set_sync_failure(&self, err: &StorageError) {
        self.sync_failed.store(true, Ordering::SeqCst);
        self.set_failure(err);
    }

    /// The namespace healed: appends are taken again.
    fn clear_failure(&self) {
        self.sync_failed.store(false, Ordering::SeqCst);
        *lock(&self.failure) = None;
        self.metrics.heals.fetch_add(1, Ordering::Relaxed);
        self.healed.send_modify(|n| *n += 1);
    }
}

/// One namespace's log. Dropping it without [`Log::close`] stops the writer as a crash
/// would (queued appends fail, no clean checkpoint is written).
pub struct Log {
    shared: Arc<Shared>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("namespace", &self.shared.name)
            .finish()
    }
}

impl Log {
    /// Opens (creating if needed) the log of namespace `name` in directory `dir`, recovering
    /// the active segment. Reads no sealed segment after a clean close.
    pub fn open(
        dir: &Path,
        name: &str,
        config: LogConfig,
        fs: Arc<dyn FileSystem>,
    ) -> Result<(Log, OpenReport), StorageError> {
        config.validate()?;
        check_namespace(name)?;
        std::fs::create_dir_all(dir).map_err(|e| StorageError::io("create", dir, e))?;
        let (mut logs, idxs) = list_dir(dir)?;
        let first_time = logs.is_empty();
        if first_time {
            let inc = (uuid::Uuid::new_v4().as_u128() >> 96) as u32;
            let path = dir.join(segment::segment_name(1));
            create_segment(&*fs, dir, &path, inc, 1)?;
            logs.insert(1, path);
        }
        let (&active_first, active_path) = logs.last_key_value().expect("at least one segment");
        let active_path = active_path.clone();
        for (first, idx) in &idxs {
            // An index without its segment is left over from retention; one beside the
            // active segment from a seal that did not finish. Both are rewritten if needed.
            if !logs.contains_key(first) || *first == active_first {
                let _ = std::fs::remove_file(idx);
            }
        }
        let checkpoint = match Checkpoint::read(dir) {
            Ok(c) => c,
            Err(reason) => {
                tracing::warn!(namespace = name, reason, "ignoring damaged checkpoint");
                None
            }
        };

        let file = fs
            .open(&active_path)
            .map_err(|e| StorageError::io("open", &active_path, e))?;
        let mut scan = recovery::scan_active(&active_path, &file, active_first, config.repair)?;
        let incarnation = match scan.incarnation {
            Some(inc) => inc,
            None => {
                // The active segment's header was torn: rewrite it.
                let inc = previous_incarnation(&logs, active_first, checkpoint.as_ref());
                let h = segment::encode_header(inc, active_first);
                file.write_all_at(&h, 0)
                    .and_then(|()| file.sync_data())
                    .map_err(|e| StorageError::io("write", &active_path, e))?;
                scan.end = SEGMENT_HEADER_BYTES as u64;
                inc
            }
        };

        let mut sealed = VecDeque::new();
        let mut sealed_bytes = 0;
        let firsts: Vec<u64> = logs.keys().copied().collect();
        for pair in firsts.windows(2) {
            let (first, next) = (pair[0], pair[1]);
            let path = &logs[&first];
            if next <= first {
                return Err(StorageError::corrupt(
                    path,
                    0,
                    first,
                    "empty sealed segment",
                ));
            }
            let bytes = std::fs::metadata(path)
                .map_err(|e| StorageError::io("stat", path, e))?
                .len();
            sealed_bytes += bytes;
            sealed.push_back(Arc::new(SealedSegment::new(
                path.clone(),
                first,
                next - 1,
                bytes,
            )));
        }
        let first_seq = sealed.front().map_or(active_first, |s| s.first_seq);
        let next_seq = active_first + scan.offsets.len() as u64;

        let ck = checkpoint.filter(|c| c.incarnation == incarnation);
        let mut last_time = scan.times.last().copied().unwrap_or(0);
        if last_time == 0 {
            last_time = match &ck {
                Some(c) if c.last_seq + 1 == next_seq => c.last_time,
                _ => last_sealed_time(&sealed).unwrap_or(0),
            };
        }

        let mut dedup = DedupTable::new(config.dedup_window, config.dedup_max_entries);
        let covered = ck.as_ref().map_or(0, |c| c.last_seq);
        if let Some(c) = &ck {
            for (id, e) in c.dedup.iter().filter(|(_, e)| e.sequence < next_seq) {
                dedup.insert(id, *e);
            }
        }
        for seg in sealed.iter().filter(|s| s.last_seq > covered) {
            // Sealed after the checkpoint (a seal interrupted by a crash): rare and short.
            for (id, sequence, time_ns) in sealed_msg_ids(seg)? {
                dedup.insert(&id, DedupEntry { sequence, time_ns });
            }
        }
        for (id, sequence, time_ns) in &scan.msg_ids {
            dedup.insert(
                id,
                DedupEntry {
                    sequence: *sequence,
                    time_ns: *time_ns,
                },
            );
        }
        let clean_shutdown = ck
            .as_ref()
            .is_some_and(|c| c.clean && c.last_seq + 1 == next_seq);
        // From now on a crash must not look clean.
        Checkpoint::write(
            dir,
            false,
            incarnation,
            next_seq - 1,
            last_time,
            dedup.entries(),
        )
        .map_err(|e| StorageError::io("write checkpoint", dir, e))?;

        let report = OpenReport {
            namespace: name.to_owned(),
            events: next_seq - first_seq,
            first_seq,
            last_seq: next_seq - 1,
            clean_shutdown: clean_shutdown || first_time,
            active_segment: active_path.clone(),
            torn: scan.torn.clone(),
            repaired: scan.repaired.clone(),
        };
        let permit_cap = config.queue_bytes.min(u32::MAX as usize);
        let active_len = scan.end;
        let active_count = scan.offsets.len() as u64;
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            dir: dir.to_owned(),
            incarnation,
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            permits: Arc::new(Semaphore::new(permit_cap)),
            permit_cap,
            view: RwLock::new(View {
                sealed,
                active: ActiveView {
                    first_seq: active_first,
                    path: active_path.clone(),
                    file: file.clone(),
                    offsets: scan.offsets,
                    times: scan.times,
                    len: active_len,
                },
                first_seq,
                next_seq,
                last_time,
                sealed_bytes,
                closed: false,
            }),
            tail: watch::Sender::new(next_seq - 1),
            dedup: Mutex::new(dedup),
            failure: Mutex::new(None),
            sync_failed: std::sync::atomic::AtomicBool::new(false),
            healed: watch::Sender::new(0),
            metrics: Metrics::default(),
            config,
        });
        let syncer = match shared.config.fsync {
            FsyncPolicy::Always => Some(
                Syncer::spawn(shared.clone())
                    .map_err(|e| StorageError::io("spawn syncer for", dir, e))?,
            ),
            _ => None,
        };
        let writer = Writer {
            shared: shared.clone(),
            fs,
            file,
            path: Arc::from(active_path),
            active_first,
            active_count,
            write_pos: active_len,
            next_seq,
            last_time,
            buf: Vec::new(),
            offsets: Vec::new(),
            times: Vec::new(),
            syncer,
            unsynced: false,
            last_sync: Instant::now(),
            last_retention: Instant::now(),
            last_probe: Instant::now(),
            failed: false,
        };
        let handle = std::thread::Builder::new()
            .name(format!("bus-log-{name}"))
            .spawn(move || writer.run())
            .map_err(|e| StorageError::io("spawn writer for", dir, e))?;
        Ok((
            Log {
                shared,
                writer: Mutex::new(Some(handle)),
            },
            report,
        ))
    }

    /// The number of heals so far, changing at each one (see "Healing" above).
    pub fn heals(&self) -> watch::Receiver<u64> {
        self.shared.healed.subscribe()
    }

    /// Asks a read-only log to probe its disk now (space was just freed) rather than at its
    /// next [`PROBE_INTERVAL`]. The receiver's value grows by one at every heal.
    /// Returns the receiver with the heal count as it was before the probe was asked for.
    pub fn probe_now(&self) -> (watch::Receiver<u64>, u64) {
        let mut rx = self.shared.healed.subscribe();
        let seen = *rx.borrow_and_update();
        lock(&self.shared.queue).probe = true;
        self.shared.wake.notify_all();
        (rx, seen)
    }

    /// Finishes queued appends, syncs, writes a clean checkpoint and stops the writer.
    /// Appends after this fail with [`StorageError::Closed`].
    pub async fn close(&self) {
        let handle = lock(&self.writer).take();
        if let Some(h) = handle {
            self.stop(Stop::Clean);
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }

    /// Stops the writer at once, as a crash would: queued appends fail, no clean checkpoint
    /// is written, later appends fail with [`StorageError::Closed`]. Dropping the log does
    /// the same; this is for when others still hold it (tests simulating a crash).
    pub fn halt(&self) {
        if let Some(h) = lock(&self.writer).take() {
            self.stop(Stop::Abort);
            let _ = h.join();
        }
    }

    fn stop(&self, how: Stop) {
        lock(&self.shared.queue).stop.get_or_insert(how);
        self.shared.wake.notify_all();
        self.shared.permits.close();
    }

    /// The namespace's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The namespace's settings.
    pub fn config(&self) -> &LogConfig {
        &self.shared.config
    }

    /// Deletes the sealed segments that hold only sequences below `floor` (used by the state
    /// store once a snapshot has superseded them). Returns the events deleted.
    pub fn delete_before(&self, floor: u64) -> Result<u64, StorageError> {
        remove_oldest(&self.shared, floor)
    }

    /// A reader positioned at `start` (the concrete type behind [`EventLog::reader`]).
    pub fn open_reader(&self, start: Start) -> Result<Reader, StorageError> {
        Reader::new(self.shared.clone(), start)
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.halt();
    }
}

impl EventLog for Log {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn append(
        &self,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'static, Result<Vec<Receipt>, StorageError>> {
        let shared = self.shared.clone();
        Box::pin(async move {
            if events.is_empty() {
                return Err(StorageError::InvalidEvent("empty batch".into()));
            }
            let id_len = shared.name.len() + 30;
            let mut bytes = 0usize;
            for e in &events {
                if e.payload.len() > shared.config.max_payload_bytes {
                    return Err(StorageError::PayloadTooLarge {
                        size: e.payload.len(),
                        limit: shared.config.max_payload_bytes,
                    });
                }
                record::check_limits(e).map_err(StorageError::InvalidEvent)?;
                bytes += record::encoded_len(e, id_len);
            }
            if bytes > MAX_BATCH_BYTES {
                return Err(StorageError::InvalidEvent(format!(
                    "batch of {bytes} bytes exceeds {MAX_BATCH_BYTES}"
                )));
            }
            if let Some(e) = shared.read_only_error() {
                return Err(e);
            }
            let want = bytes.min(shared.permit_cap) as u32;
            let permit = shared
                .permits
                .clone()
                .acquire_many_owned(want)
                .await
                .map_err(|_| StorageError::Closed)?;
            let (tx, rx) = oneshot::channel();
            let wake = {
                let mut q = lock(&shared.queue);
                if q.stop.is_some() {
                    return Err(StorageError::Closed);
                }
                q.reqs.push(Request {
                    events,
                    tx,
                    permit,
                    runtime: tokio::runtime::Handle::try_current().ok(),
                });
                q.writer_waiting
            };
            if wake {
                shared.wake.notify_one();
            }
            let stamps = rx.await.map_err(|_| StorageError::Closed)??;
            // Receipts are built here, on the appender's task, not on the writer thread.
            Ok(stamps
                .into_iter()
                .map(|s| Receipt {
                    id: event_id(&shared.name, s.sequence, shared.incarnation),
                    namespace: shared.name.clone(),
                    sequence: s.sequence,
                    time_ns: s.time_ns,
                    duplicate: s.duplicate,
                })
                .collect())
        })
    }

    fn reader(&self, start: Start) -> BoxFuture<'_, Result<Box<dyn LogReader>, StorageError>> {
        let reader = self
            .open_reader(start)
            .map(|r| Box::new(r) as Box<dyn LogReader>);
        Box::pin(async move { reader })
    }

    fn lookup_id<'a>(&'a self, id: &'a str) -> BoxFuture<'a, IdLookup> {
        let found = lookup_id(&self.shared, id);
        Box::pin(async move { found })
    }

    fn id_of(&self, sequence: u64) -> String {
        event_id(&self.shared.name, sequence, self.shared.incarnation)
    }

    fn lookup_msg_id<'a>(&'a self, msg_id: &'a str) -> BoxFuture<'a, Option<Receipt>> {
        let entry = lock(&self.shared.dedup).get(msg_id, now_ns());
        let receipt = entry.map(|entry| Receipt {
            id: event_id(&self.shared.name, entry.sequence, self.shared.incarnation),
            namespace: self.shared.name.clone(),
            sequence: entry.sequence,
            time_ns: entry.time_ns,
            duplicate: true,
        });
        Box::pin(async move { receipt })
    }

    fn apply_retention(&self) -> BoxFuture<'_, Result<u64, StorageError>> {
        // Deleting segments is a few unlinks: done here rather than on a blocking thread.
        let deleted = apply_retention(&self.shared);
        Box::pin(async move { deleted })
    }

    fn stats(&self) -> LogStats {
        let s = &self.shared;
        let v = s.read_view();
        let m = &s.metrics;
        LogStats {
            events: v.next_seq - v.first_seq,
            bytes: v.sealed_bytes + v.active.len,
            first_seq: v.first_seq,
            last_seq: v.next_seq - 1,
            last_time_ns: v.last_time,
            segments: v.sealed.len() as u64 + 1,
            read_only: lock(&s.failure).clone(),
            appended: m.appended.load(Ordering::Relaxed),
            groups: m.groups.load(Ordering::Relaxed),
            syncs: m.syncs.load(Ordering::Relaxed),
            sync_ns: m.sync_ns.load(Ordering::Relaxed),
            corrupt_reads: m.corrupt_reads.load(Ordering::Relaxed),
            heals: m.heals.load(Ordering::Relaxed),
        }
    }
}

/// Resolves an event id against a log's view.
pub(crate) fn lookup_id(shared: &Shared, id: &str) -> IdLookup {
    let Some((ns, sequence, inc)) = parse_event_id(id) else {
        return IdLookup::Unknown;
    };
    if ns != shared.name || inc != shared.incarnation || sequence == 0 {
        return IdLookup::Unknown;
    }
    let v = shared.read_view();
    if sequence >= v.next_seq {
        IdLookup::Unknown
    } else if sequence < v.first_seq {
        IdLookup::Deleted {
            sequence,
            first_available: v.first_seq,
        }
    } else {
        IdLookup::Found(sequence)
    }
}

/// Deletes whole sealed segments, oldest first, as the retention settings ask. Returns the
/// events deleted.
pub(crate) fn apply_retention(shared: &Shared) -> Result<u64, StorageError> {
    let r = shared.config.retention;
    if r.max_age.is_none() && r.max_bytes.is_none() && r.max_events.is_none() {
        return Ok(0);
    }
    remove_oldest(shared, 0)
}

/// Deletes sealed segments, oldest first, while retention asks for it or while the segment
/// holds only sequences below `floor`.
fn remove_oldest(shared: &Shared, floor: u64) -> Result<u64, StorageError> {
    let r = shared.config.retention;
    let now = now_ns();
    let mut removed = Vec::new();
    loop {
        let Some(oldest) = shared.read_view().sealed.front().cloned() else {
            break;
        };
        // The age check needs the segment's newest time: load it without holding the view.
        let too_old = match r.max_age {
            Some(age) => match segment_last_time(&oldest) {
                Ok(t) => now.saturating_sub(t) > age.as_nanos().min(u64::MAX as u128) as u64,
                Err(e) => {
                    tracing::warn!(namespace = %shared.name, error = %e, "retention: cannot read segment age");
                    false
                }
            },
            None => false,
        };
        let mut v = shared.write_view();
        if !v.sealed.front().is_some_and(|f| Arc::ptr_eq(f, &oldest)) {
            continue;
        }
        let total_bytes = v.sealed_bytes + v.active.len;
        let total_events = v.next_seq - v.first_seq;
        let by_bytes = r.max_bytes.is_some_and(|m| total_bytes - oldest.bytes >= m);
        let by_events = r
            .max_events
            .is_some_and(|m| total_events - oldest.events() >= m);
        let below_floor = oldest.last_seq < floor;
        if !(too_old || by_bytes || by_events || below_floor) {
            break;
        }
        v.sealed.pop_front();
        v.sealed_bytes -= oldest.bytes;
        v.first_seq = oldest.last_seq + 1;
        drop(v);
        removed.push(oldest);
    }
    let mut events = 0;
    for seg in &removed {
        events += seg.events();
        for path in [seg.path.clone(), seg.index_path()] {
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(StorageError::io("delete", path, e));
            }
        }
        tracing::info!(namespace = %shared.name, segment = %seg.path.display(), events = seg.events(), "retention deleted segment");
    }
    if !removed.is_empty() {
        let _ = std::fs::File::open(&shared.dir).and_then(|d| d.sync_all());
    }
    Ok(events)
}

/// The time of a sealed segment's newest event.
pub(crate) fn segment_last_time(seg: &SealedSegment) -> Result<u64, StorageError> {
    let l = seg.load()?;
    let off = l.index.offset(l.index.len() - 1);
    record::peek_time(&l.data[off..]).ok_or_else(|| {
        StorageError::corrupt(&seg.path, off as u64, seg.last_seq, "truncated record")
    })
}

fn last_sealed_time(sealed: &VecDeque<Arc<SealedSegment>>) -> Option<u64> {
    segment_last_time(sealed.back()?).ok()
}

fn sealed_msg_ids(seg: &SealedSegment) -> Result<Vec<(String, u64, u64)>, StorageError> {
    let l = seg.load()?;
    let mut out = Vec::new();
    for i in 0..l.index.len() {
        let off = l.index.offset(i);
        match record::decode(&l.data[off..]) {
            Decoded::Record(r, _) => {
                if let Some(m) = r.msg_id {
                    out.push((m.to_owned(), r.sequence, r.time_ns));
                }
            }
            _ => {
                let seq = seg.first_seq + i as u64;
                return Err(StorageError::corrupt(
                    &seg.path,
                    off as u64,
                    seq,
                    "damaged record",
                ));
            }
        }
    }
    Ok(out)
}

/// The incarnation to give an active segment whose header was torn.
fn previous_incarnation(
    logs: &BTreeMap<u64, PathBuf>,
    active: u64,
    ck: Option<&Checkpoint>,
) -> u32 {
    let prev = logs.range(..active).next_back().and_then(|(first, path)| {
        let mut h = [0u8; SEGMENT_HEADER_BYTES];
        let f = std::fs::File::open(path).ok()?;
        std::os::unix::fs::FileExt::read_exact_at(&f, &mut h, 0).ok()?;
        segment::decode_header(&h, *first).ok()
    });
    prev.or(ck.map(|c| c.incarnation))
        .unwrap_or_else(|| (uuid::Uuid::new_v4().as_u128() >> 96) as u32)
}

type Listing = (BTreeMap<u64, PathBuf>, Vec<(u64, PathBuf)>);

/// Segments and index files of a namespace directory; removes leftover temporary files.
fn list_dir(dir: &Path) -> Result<Listing, StorageError> {
    let mut logs = BTreeMap::new();
    let mut idxs = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| StorageError::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io("list", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("tmp.") {
            let _ = std::fs::remove_file(entry.path());
            continue;
        }
        match segment::parse_name(name) {
            Some((first, false)) => {
                logs.insert(first, entry.path());
            }
            Some((first, true)) => idxs.push((first, entry.path())),
            None => {}
        }
    }
    Ok((logs, idxs))
}

/// Creates a segment file with its header, durably (file and directory entry).
fn create_segment(
    fs: &dyn FileSystem,
    dir: &Path,
    path: &Path,
    incarnation: u32,
    first: u64,
) -> Result<Arc<dyn DataFile>, StorageError> {
    let file = fs
        .create(path)
        .map_err(|e| StorageError::io("create", path, e))?;
    file.write_all_at(&segment::encode_header(incarnation, first), 0)
        .map_err(|e| StorageError::io("write", path, e))?;
    file.sync_data()
        .map_err(|e| StorageError::io("fdatasync", path, e))?;
    fs.sync_dir(dir)
        .map_err(|e| StorageError::io("fsync", dir, e))?;
    Ok(file)
}

/// A written group that waits to be made visible and answered: at once under `interval`
/// and `never`, after a sync that started after its write under `always`.
pub(crate) struct Written {
    /// The segment it was written to, which a sync must cover.
    pub file: Arc<dyn DataFile>,
    /// That segment's path, for errors.
    pub path: Arc<Path>,
    /// Encoded bytes written (0 for a group of duplicates only, which writes nothing).
    pub bytes: u64,
    /// End of the segment's written bytes after this group.
    end: u64,
    /// Offsets of its records in the segment.
    offsets: Vec<u32>,
    /// Times of its records.
    times: Vec<u64>,
    /// One past its newest sequence.
    next_seq: u64,
    /// Its newest time.
    last_time: u64,
    /// Its requests, in order.
    done: Vec<Done>,
    /// Dedup ids it inserted, removed again if it fails.
    inserted: Vec<String>,
}

impl Written {
    /// Makes the groups (consecutive, oldest first) visible to readers and answers their
    /// appenders.
    pub(crate) fn publish(shared: &Shared, groups: Vec<Written>) {
        let Some(last) = groups.last() else { return };
        let (end, next_seq, last_time) = (last.end, last.next_seq, last.last_time);
        let (mut events, mut bytes, mut writes) = (0, 0, 0);
        {
            let mut v = shared.write_view();
            for g in &groups {
                v.active.offsets.extend_from_slice(&g.offsets);
                v.active.times.extend_from_slice(&g.times);
                events += g.offsets.len() as u64;
                bytes += g.bytes;
                writes += u64::from(g.bytes > 0);
            }
            v.active.len = end;
            v.next_seq = next_seq;
            v.last_time = last_time;
        }
        let m = &shared.metrics;
        m.appended.fetch_add(events, Ordering::Relaxed);
        m.bytes_appended.fetch_add(bytes, Ordering::Relaxed);
        m.groups.fetch_add(writes, Ordering::Relaxed);
        if events > 0 {
            shared.tail.send_replace(next_seq - 1);
        }
        Answers::send(groups.into_iter().flat_map(|g| g.done).collect());
    }

    /// Fails every request of the groups and forgets the dedup ids they inserted.
    pub(crate) fn fail(shared: &Shared, err: &StorageError, groups: Vec<Written>) {
        {
            let mut dedup = lock(&shared.dedup);
            for m in groups.iter().flat_map(|g| &g.inserted) {
                dedup.remove(m);
            }
        }
        for d in groups.into_iter().flat_map(|g| g.done) {
            let _ = d.tx.send(Err(answer_error(shared, err)));
        }
    }
}

/// What the appenders of a failed group are told: disk full and closed as such, any other
/// failure as the namespace being read-only because of it.
fn answer_error(shared: &Shared, err: &StorageError) -> StorageError {
    match err {
        StorageError::DiskFull { path } => StorageError::DiskFull { path: path.clone() },
        StorageError::Closed => StorageError::Closed,
        StorageError::ReadOnly { namespace, cause } => StorageError::ReadOnly {
            namespace: namespace.clone(),
            cause: cause.clone(),
        },
        _ => StorageError::ReadOnly {
            namespace: shared.name.clone(),
            cause: err.to_string(),
        },
    }
}

/// `fdatasync`s a segment, counting the call and its time in the metrics.
pub(crate) fn sync_file(
    shared: &Shared,
    file: &dyn DataFile,
    path: &Path,
) -> Result<(), StorageError> {
    let t = Instant::now();
    file.sync_data()
        .map_err(|e| StorageError::io("fdatasync", path, e))?;
    let m = &shared.metrics;
    m.syncs.fetch_add(1, Ordering::Relaxed);
    m.sync_ns
        .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
    Ok(())
}

/// The writer thread's own state.
struct Writer {
    shared: Arc<Shared>,
    fs: Arc<dyn FileSystem>,
    file: Arc<dyn DataFile>,
    path: Arc<Path>,
    active_first: u64,
    /// Records written to the active segment (visible or not yet).
    active_count: u64,
    /// End of what was written to the active segment.
    write_pos: u64,
    /// Next sequence to assign.
    next_seq: u64,
    last_time: u64,
    /// The group being encoded.
    buf: Vec<u8>,
    offsets: Vec<u32>,
    times: Vec<u64>,
    /// Under `always`, syncs and answers the written groups while this thread writes on;
    /// `None` under the other policies, where this thread answers after the write.
    syncer: Option<Syncer>,
    /// Written but not yet synced by this thread (interval and never policies).
    unsynced: bool,
    last_sync: Instant,
    last_retention: Instant,
    /// Set while the namespace is read-only (this thread's failure or the syncer's).
    failed: bool,
    /// When the disk was last probed while read-only.
    last_probe: Instant,
}

impl Writer {
    fn run(mut self) {
        let stop = loop {
            let (reqs, stop, probe) = {
                let mut q = lock(&self.shared.queue);
                while q.reqs.is_empty() && q.stop.is_none() && !q.probe {
                    let timeout = self.next_timer_in();
                    q.writer_waiting = true;
                    let (g, res) = self
                        .shared
                        .wake
                        .wait_timeout(q, timeout)
                        .unwrap_or_else(|e| e.into_inner());
                    q = g;
                    q.writer_waiting = false;
                    if res.timed_out() {
                        break;
                    }
                }
                let probe = std::mem::take(&mut q.probe);
                (std::mem::take(&mut q.reqs), q.stop, probe)
            };
            if probe && (self.failed || self.shared.has_failed()) {
                self.failed = true;
                self.heal();
            }
            if stop == Some(Stop::Abort) {
                for r in reqs {
                    let _ = r.tx.send(Err(StorageError::Closed));
                }
                break Stop::Abort;
            }
            if !reqs.is_empty() {
                self.process(reqs);
            }
            self.on_timers();
            if let Some(stop) = stop {
                break stop;
            }
        };
        if stop == Stop::Clean && (self.failed || self.shared.has_failed()) {
            // A last probe: a clean close leaves only what was answered (after a failed
            // sync, the unanswered tail is cut rather than found valid at the next start).
            self.failed = true;
            self.heal();
        }
        if let Some(syncer) = self.syncer.take() {
            // Clean: sync and answer everything written. Abort: fail what no sync covers yet.
            syncer.stop(stop);
        }
        self.failed |= self.shared.has_failed();
        if stop == Stop::Clean && !self.failed {
            self.close_cleanly();
        }
        self.shared.write_view().closed = true;
        self.shared.tail.send_modify(|_| {});
    }

    fn next_timer_in(&self) -> Duration {
        let mut t = RETENTION_TICK.saturating_sub(self.last_retention.elapsed());
        if self.failed || self.shared.has_failed() {
            t = t.min(PROBE_INTERVAL.saturating_sub(self.last_probe.elapsed()));
        }
        if let (true, FsyncPolicy::Interval(every)) = (self.unsynced, self.shared.config.fsync) {
            t = t.min(every.saturating_sub(self.last_sync.elapsed()));
        }
        t.max(Duration::from_micros(100))
    }

    fn on_timers(&mut self) {
        if !self.failed && self.shared.has_failed() {
            // The syncer failed: the probes start from now.
            self.failed = true;
            self.last_probe = Instant::now();
        }
        if self.failed && self.last_probe.elapsed() >= PROBE_INTERVAL {
            self.heal();
        }
        if let (true, FsyncPolicy::Interval(every)) = (self.unsynced, self.shared.config.fsync)
            && self.last_sync.elapsed() >= every
            && !self.failed
            && let Err(e) = self.sync()
        {
            self.fail(e, &mut Vec::new(), &mut Vec::new());
        }
        if self.last_retention.elapsed() >= RETENTION_TICK {
            self.last_retention = Instant::now();
            if let Err(e) = apply_retention(&self.shared) {
                tracing::warn!(namespace = %self.shared.name, error = %e, "retention failed");
            }
        }
    }

    fn process(&mut self, reqs: Vec<Request>) {
        let now = now_ns();
        let mut done: Vec<Done> = Vec::with_capacity(reqs.len());
        let mut inserted: Vec<String> = Vec::new();
        let id_len = self.shared.name.len() + 30;
        self.failed |= self.shared.has_failed();
        for Request {
            events,
            tx,
            permit,
            runtime,
        } in reqs
        {
            if self.failed {
                self.refuse(tx);
                continue;
            }
            // Which events are duplicates, and how many bytes the others need.
            let mut slots = Vec::with_capacity(events.len());
            let mut bytes = 0;
            let mut seen: HashMap<&str, usize> = HashMap::new();
            {
                let dedup = lock(&self.shared.dedup);
                for (i, e) in events.iter().enumerate() {
                    if let Some(m) = e.msg_id.as_deref() {
                        if let Some(d) = dedup.get(m, now) {
                            slots.push(Slot::Duplicate(Stamp {
                                sequence: d.sequence,
                                time_ns: d.time_ns,
                                duplicate: true,
                            }));
                            continue;
                        }
                        if let Some(&first) = seen.get(m) {
                            slots.push(Slot::SameAs(first));
                            continue;
                        }
                        seen.insert(m, i);
                    }
                    bytes += record::encoded_len(e, id_len);
                    slots.push(Slot::Write(None));
                }
            }
            let writes = slots.iter().filter(|s| matches!(s, Slot::Write(_))).count();
            // A batch never straddles segments: roll first if it would overflow this one.
            let pending = self.active_count + self.offsets.len() as u64;
            let end = self.write_pos + (self.buf.len() + bytes) as u64;
            if writes > 0 && pending > 0 && end > self.shared.config.segment_bytes {
                self.flush(&mut done, &mut inserted);
                // Barrier: the segment is sealed only once everything in it is synced and
                // visible, and nothing is written to the next one before that.
                self.drain();
                if !self.failed
                    && let Err(e) = self.roll()
                {
                    self.fail(e, &mut done, &mut inserted);
                }
                if self.failed {
                    self.refuse(tx);
                    continue;
                }
            }
            let mut left = writes as u32;
            let mut dedup = lock(&self.shared.dedup);
            for (e, slot) in events.iter().zip(slots.iter_mut()) {
                let Slot::Write(receipt) = slot else { continue };
                left -= 1;
                let seq = self.next_seq;
                self.next_seq += 1;
                let time = now.max(self.last_time);
                self.last_time = time;
                let id = EventIdRef {
                    namespace: &self.shared.name,
                    sequence: seq,
                    incarnation: self.shared.incarnation,
                };
                self.offsets
                    .push((self.write_pos + self.buf.len() as u64) as u32);
                self.times.push(time);
                record::encode(&mut self.buf, e, seq, time, left, id);
                if let Some(m) = &e.msg_id {
                    dedup.insert(
                        m,
                        DedupEntry {
                            sequence: seq,
                            time_ns: time,
                        },
                    );
                    inserted.push(m.clone());
                }
                *receipt = Some(Stamp {
                    sequence: seq,
                    time_ns: time,
                    duplicate: false,
                });
            }
            drop(dedup);
            done.push(Done {
                tx,
                slots,
                permit,
                runtime,
            });
        }
        self.flush(&mut done, &mut inserted);
    }

    /// Answers a request the writer cannot take: the namespace failed.
    fn refuse(&self, tx: Reply) {
        let err = self
            .shared
            .read_only_error()
            .unwrap_or(StorageError::Closed);
        let _ = tx.send(Err(err));
    }

    /// Writes the encoded group; under `always` hands it to the syncer, otherwise makes it
    /// visible and answers its appenders at once.
    fn flush(&mut self, done: &mut Vec<Done>, inserted: &mut Vec<String>) {
        // The syncer may have failed since this group was encoded: write nothing more.
        self.failed |= self.shared.has_failed();
        if self.failed {
            let err = self
                .shared
                .read_only_error()
                .unwrap_or(StorageError::Closed);
            return self.drop_group(&err, done, inserted);
        }
        if done.is_empty() {
            return;
        }
        if !self.buf.is_empty() {
            if let Err(e) = self.file.write_all_at(&self.buf, self.write_pos) {
                let err = StorageError::io("write", &*self.path, e);
                return self.fail(err, done, inserted);
            }
            self.write_pos += self.buf.len() as u64;
            self.active_count += self.offsets.len() as u64;
            self.unsynced = self.syncer.is_none();
        }
        let group = Written {
            file: self.file.clone(),
            path: self.path.clone(),
            bytes: self.buf.len() as u64,
            end: self.write_pos,
            offsets: std::mem::take(&mut self.offsets),
            times: std::mem::take(&mut self.times),
            next_seq: self.next_seq,
            last_time: self.last_time,
            done: std::mem::take(done),
            inserted: std::mem::take(inserted),
        };
        self.buf.clear();
        match &self.syncer {
            Some(syncer) => syncer.submit(group),
            None => Written::publish(&self.shared, vec![group]),
        }
    }

    /// Waits until every written group is synced and answered (or failed).
    fn drain(&mut self) {
        if let Some(syncer) = &self.syncer {
            syncer.drain();
        }
        self.failed |= self.shared.has_failed();
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        if let Err(e) = sync_file(&self.shared, &*self.file, &self.path) {
            self.shared.set_sync_failure(&e);
            return Err(e);
        }
        self.unsynced = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Turns the namespace read-only and fails the group being written.
    fn fail(&mut self, err: StorageError, done: &mut Vec<Done>, inserted: &mut Vec<String>) {
        self.shared.set_failure(&err);
        if !self.failed {
            self.last_probe = Instant::now();
        }
        self.failed = true;
        self.drop_group(&err, done, inserted);
    }

    /// Probes the disk of a read-only namespace and, when it works again, resumes: after a
    /// failed write from where it was, after a failed sync (under `always`) from the last
    /// successful sync. See "Healing" in the module docs.
    fn heal(&mut self) {
        self.last_probe = Instant::now();
        // Everything handed to the syncer is answered first (synced, or failed).
        if let Some(syncer) = &self.syncer {
            syncer.drain();
        }
        let sync_failed = self.shared.sync_failed.load(Ordering::SeqCst);
        if sync_failed && self.syncer.is_none() {
            return; // interval / never: answered events may be unsynced; restart to recover
        }
        let probe = if sync_failed {
            self.cut_to_last_sync()
        } else {
            // The zeros are cut again at once (the active segment is never memory-mapped;
            // readers see only up to the visible end, which is at most `write_pos`).
            let (file, path, pos) = (&self.file, &*self.path, self.write_pos);
            file.write_all_at(&[0; PROBE_BYTES], pos)
                .map_err(|e| StorageError::io("write (probe)", path, e))
                .and_then(|()| {
                    // A failed sync here may have lost answered but unsynced pages (under
                    // `interval` and `never`): it counts as a sync failure.
                    sync_file(&self.shared, &**file, path).inspect_err(|e| {
                        self.shared.set_sync_failure(e);
                    })
                })
                .and_then(|()| {
                    file.set_len(pos)
                        .map_err(|e| StorageError::io("truncate (probe)", path, e))
                })
        };
        match probe {
            Ok(()) => {
                self.shared.clear_failure();
                self.failed = false;
                tracing::info!(namespace = %self.shared.name, after_sync_failure = sync_failed, next_sequence = self.next_seq, "storage works again: namespace is writable");
            }
            Err(e) => {
                tracing::debug!(namespace = %self.shared.name, error = %e, "probe failed: namespace stays read-only");
            }
        }
    }

    /// After a failed sync under `always`: reopens the active segment, cuts it to the end of
    /// the last synced record (what readers see), syncs it, and starts a fresh syncer.
    fn cut_to_last_sync(&mut self) -> Result<(), StorageError> {
        let (len, count, next_seq, last_time) = {
            let v = self.shared.read_view();
            (
                v.active.len,
                v.active.offsets.len() as u64,
                v.next_seq,
                v.last_time,
            )
        };
        let file = self
            .fs
            .open(&self.path)
            .map_err(|e| StorageError::io("reopen", &*self.path, e))?;
        file.set_len(len)
            .map_err(|e| StorageError::io("truncate", &*self.path, e))?;
        sync_file(&self.shared, &*file, &self.path)?;
        let syncer = Syncer::spawn(self.shared.clone())
            .map_err(|e| StorageError::io("spawn syncer for", &self.shared.dir, e))?;
        if let Some(old) = self.syncer.replace(syncer) {
            old.stop(Stop::Clean);
        }
        let cut = self.write_pos.saturating_sub(len);
        self.shared.write_view().active.file = file.clone();
        self.file = file;
        self.write_pos = len;
        self.active_count = count;
        self.next_seq = next_seq;
        self.last_time = self.last_time.max(last_time);
        tracing::warn!(namespace = %self.shared.name, path = %self.path.display(), offset = len, bytes = cut, "after a failed sync, cut what was written since the last successful one");
        Ok(())
    }

    /// Fails the group being written (not written, or its write failed). Its sequences are
    /// handed out again, so that the log never has a gap.
    fn drop_group(&mut self, err: &StorageError, done: &mut Vec<Done>, inserted: &mut Vec<String>) {
        self.next_seq -= self.offsets.len() as u64;
        let group = Written {
            file: self.file.clone(),
            path: self.path.clone(),
            bytes: 0,
            end: self.write_pos,
            offsets: Vec::new(),
            times: Vec::new(),
            next_seq: self.next_seq,
            last_time: self.last_time,
            done: std::mem::take(done),
            inserted: std::mem::take(inserted),
        };
        Written::fail(&self.shared, err, vec![group]);
        self.buf.clear();
        self.offsets.clear();
        self.times.clear();
    }

    /// Seals the active segment (synced, indexed) and starts a new one. Under `always` the
    /// caller has drained the syncer first.
    fn roll(&mut self) -> Result<(), StorageError> {
        if self.unsynced {
            self.sync()?;
        }
        let offsets = self.shared.read_view().active.offsets.clone();
        let idx = segment::index_path_for(&self.path);
        if let Err(e) = SegmentIndex::write(&idx, self.active_first, self.write_pos, &offsets) {
            // Not fatal: a missing index is rebuilt when the segment is first read.
            tracing::warn!(index = %idx.display(), error = %e, "could not write segment index");
        }
        let dir = self.shared.dir.clone();
        let new_first = self.next_seq;
        let new_path = dir.join(segment::segment_name(new_first));
        let created = create_segment(
            &*self.fs,
            &dir,
            &new_path,
            self.shared.incarnation,
            new_first,
        )
        .and_then(|file| {
            let dedup = lock(&self.shared.dedup);
            Checkpoint::write(
                &dir,
                false,
                self.shared.incarnation,
                new_first - 1,
                self.last_time,
                dedup.entries(),
            )
            .map_err(|e| StorageError::io("write checkpoint", &dir, e))?;
            Ok(file)
        });
        let file = match created {
            Ok(file) => file,
            Err(e) => {
                // The namespace heals and writes on in the old segment: a new segment left
                // behind would be taken as the active one at the next start.
                if let Err(rm) = std::fs::remove_file(&new_path)
                    && rm.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::error!(path = %new_path.display(), error = %rm, "could not remove the segment of a failed roll");
                }
                return Err(e);
            }
        };
        {
            let mut v = self.shared.write_view();
            let sealed = SealedSegment::new(
                self.path.to_path_buf(),
                self.active_first,
                new_first - 1,
                self.write_pos,
            );
            v.sealed.push_back(Arc::new(sealed));
            v.sealed_bytes += self.write_pos;
            v.active = ActiveView {
                first_seq: new_first,
                path: new_path.clone(),
                file: file.clone(),
                offsets: Vec::new(),
                times: Vec::new(),
                len: SEGMENT_HEADER_BYTES as u64,
            };
        }
        self.file = file;
        self.path = Arc::from(new_path);
        self.active_first = new_first;
        self.active_count = 0;
        self.write_pos = SEGMENT_HEADER_BYTES as u64;
        if let Err(e) = apply_retention(&self.shared) {
            tracing::warn!(namespace = %self.shared.name, error = %e, "retention failed");
        }
        Ok(())
    }

    /// Syncs what is left and writes the clean checkpoint. Under `always` the syncer has
    /// synced and answered everything before this.
    fn close_cleanly(&mut self) {
        if self.unsynced
            && let Err(e) = self.sync()
        {
            tracing::error!(namespace = %self.shared.name, error = %e, "final sync failed");
            return;
        }
        let dedup = lock(&self.shared.dedup);
        let res = Checkpoint::write(
            &self.shared.dir,
            true,
            self.shared.incarnation,
            self.next_seq - 1,
            self.last_time,
            dedup.entries(),
        );
        if let Err(e) = res {
            tracing::error!(namespace = %self.shared.name, error = %e, "could not write checkpoint");
        }
    }
}
