//! [`Shared`]: the state one namespace's [`Log`](super::log::Log) handle, its writer, its
//! syncer and its readers share, and the methods through which each of them uses it.
//!
//! **The queue.** Appenders put [`Request`]s in it ([`Shared::enqueue`]), after taking room
//! in the byte bound ([`Shared::acquire_room`]); the writer takes everything queued at once
//! ([`Shared::take_work`]). Queueing notifies the namespace's writer job on the shared
//! [`WRITERS`](super::pool::WRITERS) pool, which runs it if it is not queued or running;
//! an idle writer whose next step is short runs it on the appender's thread instead
//! ([`Pool::notify_or_run_here`](super::pool::Pool::notify_or_run_here)), taking
//! [`Shared::take_short_work`]. Under `interval` and `never` the first append queued leads
//! a group: it lets the tasks ready on its thread run, whose appends join the group without
//! notifying anyone, and then notifies the writer for all of them ([`Shared::end_lead`]).
//! After a group led with fewer than four appends, the next appends notify at once for a
//! while (light load).
//!
//! **The view.** What readers consult: which segments hold which sequences, and what is
//! visible. It sits behind a `RwLock` held only for a few instructions by every method here;
//! no method returns while holding it, so readers read the files without it and never
//! block the writer. Only the writer and the syncer change it, each through a method named
//! for its step (make groups visible, seal the active segment, drop the oldest segment).
//!
//! **Failure.** Why the namespace is read-only, while it is, and whether that was a failed
//! sync; healing clears it and bumps the heal count.
//!
//! Nothing here does I/O but [`Shared::sync_file`]; this file uses no other file of the
//! disk engine's writing path, so that the writer, the syncer and the readers all build on it.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, Weak};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::answers::Reply;
use super::config::{FsyncPolicy, LogConfig};
use super::dedup::DedupTable;
use super::error::Corruption;
use super::io::DataFile;
use super::pool::{Job, WRITERS};
use super::segment::SealedSegment;
use super::stats::{LogStats, Metrics};
use super::{IdLookup, NewEvent, StorageError, parse_event_id};
use crate::sync::lock;

/// The active segment as readers see it.
#[derive(Debug)]
pub(crate) struct ActiveView {
    /// The first sequence it holds (its name).
    first_seq: u64,
    /// Its file's path, for errors.
    path: PathBuf,
    /// The open file readers read it through.
    file: Arc<dyn DataFile>,
    /// Offsets of the visible records.
    offsets: Vec<u32>,
    /// Times of the visible records.
    times: Vec<u64>,
    /// End of the visible records.
    len: u64,
}

impl ActiveView {
    /// The active segment `path` starting at `first_seq`, with its visible records.
    pub(crate) fn new(
        first_seq: u64,
        path: PathBuf,
        file: Arc<dyn DataFile>,
        offsets: Vec<u32>,
        times: Vec<u64>,
        len: u64,
    ) -> ActiveView {
        ActiveView {
            first_seq,
            path,
            file,
            offsets,
            times,
            len,
        }
    }
}

/// What readers consult: which segments hold which sequences, and what is visible.
#[derive(Debug)]
pub(crate) struct View {
    /// The sealed segments, oldest first.
    sealed: VecDeque<Arc<SealedSegment>>,
    /// The segment being written.
    active: ActiveView,
    /// Oldest retained sequence.
    first_seq: u64,
    /// One past the newest visible sequence.
    next_seq: u64,
    /// Time of the newest visible event.
    last_time: u64,
    /// Bytes in sealed segments.
    sealed_bytes: u64,
    /// Sequences of the sealed segments that hold no record (see
    /// [`SealedSegment::counted_events`]), which counting leaves out.
    uncounted: u64,
    /// Set when the writer has stopped.
    closed: bool,
}

impl View {
    /// Events held, as counting goes: the retained sequences but those of sealed segments
    /// holding no record.
    fn counted(&self) -> u64 {
        self.next_seq - self.first_seq - self.uncounted
    }

    /// The view of a log just opened.
    pub(crate) fn new(
        sealed: VecDeque<Arc<SealedSegment>>,
        sealed_bytes: u64,
        active: ActiveView,
        first_seq: u64,
        next_seq: u64,
        last_time: u64,
    ) -> View {
        let uncounted = sealed.iter().map(|s| s.events() - s.counted_events()).sum();
        View {
            sealed,
            active,
            first_seq,
            next_seq,
            last_time,
            sealed_bytes,
            uncounted,
            closed: false,
        }
    }
}

/// How a writer stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Finish queued appends, sync, write a clean checkpoint.
    Clean,
    /// Stop now (drop without close): fail queued appends, write nothing more.
    Abort,
}

/// One append waiting in the queue.
pub(crate) struct Request {
    /// The events, in order.
    pub events: Vec<NewEvent>,
    /// Where the appender waits for its answer.
    pub tx: Reply,
    /// Room in the queue, released when the request is answered.
    pub permit: OwnedSemaphorePermit,
    /// The appender's runtime, where its answer is sent from.
    pub runtime: Option<tokio::runtime::Handle>,
    /// Encoded bytes of its events, at most (duplicates write nothing).
    pub bytes: usize,
}

/// What the writer takes from the queue at once.
pub(crate) struct Work {
    /// Every request queued.
    pub reqs: Vec<Request>,
    /// Set once the log is asked to stop.
    pub stop: Option<Stop>,
    /// Set when a probe was asked for ([`Shared::request_probe`]).
    pub probe: bool,
}

#[derive(Default)]
struct Queue {
    /// Appends waiting for the writer, oldest first.
    reqs: Vec<Request>,
    /// Their encoded bytes, at most.
    bytes: usize,
    /// Their events, at most.
    events: u64,
    /// Set once the log is asked to stop; the first request wins.
    stop: Option<Stop>,
    /// Set by [`Shared::request_probe`]: a read-only log probes at once, not at its next tick.
    probe: bool,
    /// Set while an appender leads the group being queued ([`Shared::enqueue`]): it notifies
    /// the writer for everything queued by then, so those who queue meanwhile do not.
    led: bool,
    /// Appends still to hand to the writer at once, without leading a group: set to
    /// [`ALONE_SKIP`] when a group was led with fewer than [`MIN_COMPANY`] appends.
    alone: u32,
}

/// A led group of fewer appends than this was not worth its wait ([`Shared::enqueue`]).
const MIN_COMPANY: usize = 4;

/// Appends handed to the writer at once after a group was led with fewer than
/// [`MIN_COMPANY`] appends ([`Shared::enqueue`]): under light load, waiting for company
/// costs a scheduler pass for little or nothing, behind whatever else is ready (streams,
/// deliveries). The next one after them leads again, so a burst groups again within this
/// many appends.
const ALONE_SKIP: u32 = 32;

/// What [`Shared::enqueue`] made of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Queued {
    /// It leads its group: its caller must call [`Shared::end_lead`].
    Lead,
    /// It joined a group another appender leads.
    Joined,
    /// The writer was notified of it (under `always`, and while appends come few at once).
    Notified,
}

/// Where the next sequence a reader asks for is.
pub(crate) enum Located {
    /// Retention deleted it; the oldest retained sequence is this.
    Deleted(u64),
    /// Not visible yet.
    NotYet,
    /// In a sealed segment.
    Sealed(Arc<SealedSegment>),
    /// In the active segment.
    Active {
        /// The active segment's file.
        file: Arc<dyn DataFile>,
        /// Its path, for errors.
        path: PathBuf,
        /// The record's offset.
        offset: u64,
        /// The end of the visible records.
        end: u64,
    },
}

/// What is visible of the active segment: after a failed sync, where the writer cuts back to.
pub(crate) struct Synced {
    /// End of the visible (synced) records.
    pub len: u64,
    /// Visible records in the active segment.
    pub count: u64,
    /// One past the newest visible sequence.
    pub next_seq: u64,
    /// Time of the newest visible event.
    pub last_time: u64,
}

/// The figures retention decides on, with the oldest sealed segment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Totals {
    /// Bytes in all segments.
    pub bytes: u64,
    /// Events held.
    pub events: u64,
}

/// What [`Shared::remove_oldest_if`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Removal {
    /// The segment was dropped from the view.
    Removed,
    /// Retention keeps it.
    Kept,
    /// Another segment is the oldest by now: look again.
    Moved,
}

/// State shared by the log handle, its writer and its readers.
pub(crate) struct Shared {
    /// The namespace.
    name: Arc<str>,
    /// The namespace's directory.
    dir: PathBuf,
    /// Its settings.
    config: LogConfig,
    /// Fixed when the namespace was created; part of every event id.
    incarnation: u32,
    /// The active segment's format version, given to every new segment: 1 until a repair
    /// left holes in the namespace, then 2.
    segment_version: u16,
    /// Appends waiting for the writer.
    queue: Mutex<Queue>,
    /// The namespace's writer job, notified when work is queued (set once it starts).
    writer: OnceLock<Weak<dyn Job>>,
    /// The byte bound on appends from queueing until answered.
    permits: Arc<Semaphore>,
    /// The most permits one append takes (the bound itself, at most `u32::MAX`).
    permit_cap: usize,
    /// What readers consult.
    view: RwLock<View>,
    /// The newest visible sequence; readers wait on it. Bumped once more at close.
    tail: watch::Sender<u64>,
    /// Dedup ids within the window.
    dedup: Mutex<DedupTable>,
    /// Why the namespace is read-only, while it is.
    failure: Mutex<Option<String>>,
    /// Set when the failure was a failed sync (healing then cuts to the last good sync).
    sync_failed: AtomicBool,
    /// Counts heals; [`Shared::request_probe`] returns a receiver of it.
    healed: watch::Sender<u64>,
    /// Damage a reader found (a sealed segment that does not verify): from then on the
    /// namespace is set aside, appends are refused (see [`Shared::damage_error`]).
    damage: Mutex<Option<Corruption>>,
    /// Counters.
    metrics: Metrics,
}

impl Shared {
    /// The state of a log just opened, with `view` as recovery found it.
    pub(crate) fn new(
        name: &str,
        dir: &Path,
        config: LogConfig,
        incarnation: u32,
        segment_version: u16,
        view: View,
        dedup: DedupTable,
    ) -> Shared {
        let permit_cap = config.queue_bytes.min(u32::MAX as usize);
        let tail = watch::Sender::new(view.next_seq - 1);
        Shared {
            name: Arc::from(name),
            dir: dir.to_owned(),
            incarnation,
            segment_version,
            queue: Mutex::new(Queue::default()),
            writer: OnceLock::new(),
            permits: Arc::new(Semaphore::new(permit_cap)),
            permit_cap,
            view: RwLock::new(view),
            tail,
            dedup: Mutex::new(dedup),
            failure: Mutex::new(None),
            sync_failed: AtomicBool::new(false),
            healed: watch::Sender::new(0),
            damage: Mutex::new(None),
            metrics: Metrics::default(),
            config,
        }
    }

    /// The namespace.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's name, to share (each receipt holds it).
    pub(crate) fn name_shared(&self) -> &Arc<str> {
        &self.name
    }

    /// The namespace's directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The namespace's settings.
    pub(crate) fn config(&self) -> &LogConfig {
        &self.config
    }

    /// The incarnation, part of every event id.
    pub(crate) fn incarnation(&self) -> u32 {
        self.incarnation
    }

    /// The format version new segments are created with (the active segment's).
    pub(crate) fn segment_version(&self) -> u16 {
        self.segment_version
    }

    /// The counters.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The dedup table. Held for a few instructions only, never across an await.
    pub(crate) fn dedup(&self) -> MutexGuard<'_, DedupTable> {
        lock(&self.dedup)
    }

    fn read_view(&self) -> std::sync::RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_view(&self) -> std::sync::RwLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(|e| e.into_inner())
    }

    // The queue.

    /// Makes `job` the writer notified when work is queued, a stop or a probe asked for.
    pub(crate) fn set_writer(&self, job: Weak<dyn Job>) {
        let _ = self.writer.set(job);
    }

    /// Notifies the writer job on its pool.
    pub(crate) fn wake_writer(&self) {
        if let Some(job) = self.writer.get().and_then(Weak::upgrade) {
            WRITERS.notify(job);
        }
    }

    /// Notifies the writer job, which runs its step on this thread if it is idle and the
    /// step short (see [`Shared::take_short_work`]).
    fn wake_writer_here(&self) {
        if let Some(job) = self.writer.get().and_then(Weak::upgrade) {
            WRITERS.notify_or_run_here(job);
        }
    }

    /// Takes room for `bytes` of encoded events in the queue's bound, waiting for it;
    /// fails with [`StorageError::Closed`] once the log stops.
    pub(crate) async fn acquire_room(
        &self,
        bytes: usize,
    ) -> Result<OwnedSemaphorePermit, StorageError> {
        let want = bytes.min(self.permit_cap) as u32;
        self.permits
            .clone()
            .acquire_many_owned(want)
            .await
            .map_err(|_| StorageError::Closed)
    }

    /// Queues an append for the writer; fails with [`StorageError::Closed`] once the log is
    /// asked to stop. Under `interval` and `never`, the first append queued while no group is
    /// led becomes its leader ([`Queued::Lead`]): the caller lets other ready tasks run (they
    /// queue behind it) and then calls [`Shared::end_lead`], which notifies the writer once
    /// for all of them. One `pwrite` then covers what would have been a `pwrite` each, and
    /// the group is answered as soon as it is written. An append queued while a group is led
    /// only joins it ([`Queued::Joined`]). A group led with fewer than [`MIN_COMPANY`]
    /// appends makes the next [`ALONE_SKIP`] appends notify the writer at once
    /// ([`Queued::Notified`]). Under `always` every append notifies the writer at once:
    /// groups written while a sync runs are synced together anyway, and a write held back
    /// could miss the next sync's start.
    pub(crate) fn enqueue(&self, req: Request) -> Result<Queued, StorageError> {
        let queued = {
            let mut q = lock(&self.queue);
            if q.stop.is_some() {
                return Err(StorageError::Closed);
            }
            q.bytes += req.bytes;
            q.events += req.events.len() as u64;
            q.reqs.push(req);
            if self.config.fsync == FsyncPolicy::Always {
                Queued::Notified
            } else if q.led {
                Queued::Joined
            } else if q.alone > 0 {
                q.alone -= 1;
                Queued::Notified
            } else {
                q.led = true;
                Queued::Lead
            }
        };
        if queued == Queued::Notified {
            self.wake_writer_here();
        }
        Ok(queued)
    }

    /// Ends the group led by the caller of [`Shared::enqueue`] and notifies the writer, which
    /// runs its step on this thread if it is idle and the step short (see
    /// [`Shared::take_short_work`]). `here` false leaves the step to the pool (a leader
    /// dropped before it ended its group: dropping is no place for a write).
    pub(crate) fn end_lead(&self, here: bool) {
        {
            let mut q = lock(&self.queue);
            q.led = false;
            if q.reqs.len() < MIN_COMPANY {
                q.alone = ALONE_SKIP;
            }
        }
        if here {
            self.wake_writer_here();
        } else {
            self.wake_writer();
        }
    }

    /// Asks the writer to stop (the first request wins) and refuses further room.
    pub(crate) fn request_stop(&self, how: Stop) {
        lock(&self.queue).stop.get_or_insert(how);
        self.permits.close();
        self.wake_writer();
    }

    /// Asks a read-only log to probe its disk now. Returns a receiver of the heal count and
    /// the count as it was before the probe was asked for.
    pub(crate) fn request_probe(&self) -> (watch::Receiver<u64>, u64) {
        let mut rx = self.healed.subscribe();
        let seen = *rx.borrow_and_update();
        lock(&self.queue).probe = true;
        self.wake_writer();
        (rx, seen)
    }

    /// What is queued now, whether a stop or a probe was asked for; never waits.
    pub(crate) fn take_work(&self) -> Work {
        let mut q = lock(&self.queue);
        let probe = std::mem::take(&mut q.probe);
        q.bytes = 0;
        q.events = 0;
        Work {
            reqs: std::mem::take(&mut q.reqs),
            stop: q.stop,
            probe,
        }
    }

    /// What is queued now, if it is only appends of fewer than `below_bytes` bytes and
    /// `below_events` events in all: no stop and no probe asked for. `None` leaves the queue
    /// as it is.
    pub(crate) fn take_short_work(&self, below_bytes: u64, below_events: u64) -> Option<Work> {
        let mut q = lock(&self.queue);
        if q.stop.is_some() || q.probe || q.bytes as u64 >= below_bytes || q.events >= below_events
        {
            return None;
        }
        q.bytes = 0;
        q.events = 0;
        Some(Work {
            reqs: std::mem::take(&mut q.reqs),
            stop: None,
            probe: false,
        })
    }

    // Failure and healing.

    /// Why appends are refused, while the namespace is read-only.
    pub(crate) fn read_only_error(&self) -> Option<StorageError> {
        lock(&self.failure)
            .clone()
            .map(|cause| StorageError::ReadOnly {
                namespace: self.name.to_string(),
                cause,
            })
    }

    /// Records damage a reader found; the first is the one kept. From then on appends are
    /// refused: nothing is written after damage the log cannot read past.
    pub(crate) fn set_damage(&self, c: &Corruption) {
        let mut d = lock(&self.damage);
        if d.is_none() {
            tracing::error!(namespace = %self.name, damage = %c, "damaged log: the namespace is set aside until `bus inspect --repair`");
            *d = Some(c.clone());
        }
    }

    /// The error appends get once a reader found damage.
    pub(crate) fn damage_error(&self) -> Option<StorageError> {
        lock(&self.damage).clone().map(|c| StorageError::Damaged {
            namespace: self.name.to_string(),
            corruption: Box::new(c),
            data_dir: self.dir.parent().unwrap_or(&self.dir).to_owned(),
        })
    }

    /// Whether the namespace is read-only.
    pub(crate) fn has_failed(&self) -> bool {
        lock(&self.failure).is_some()
    }

    /// Whether the failure was a failed `fdatasync`.
    pub(crate) fn sync_failed(&self) -> bool {
        self.sync_failed.load(Ordering::SeqCst)
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
    pub(crate) fn clear_failure(&self) {
        self.sync_failed.store(false, Ordering::SeqCst);
        *lock(&self.failure) = None;
        self.metrics.heals.fetch_add(1, Ordering::Relaxed);
        self.healed.send_modify(|n| *n += 1);
    }

    /// The number of heals so far, changing at each one.
    pub(crate) fn heals(&self) -> watch::Receiver<u64> {
        self.healed.subscribe()
    }

    /// `fdatasync`s a segment, counting the call and its time in the metrics.
    pub(crate) fn sync_file(&self, file: &dyn DataFile, path: &Path) -> Result<(), StorageError> {
        let t = Instant::now();
        file.sync_data()
            .map_err(|e| StorageError::io("fdatasync", path, e))?;
        let m = &self.metrics;
        m.syncs.fetch_add(1, Ordering::Relaxed);
        m.sync_ns
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        Ok(())
    }

    // What readers ask.

    /// A receiver of the newest visible sequence, which changes once more at close.
    pub(crate) fn subscribe_tail(&self) -> watch::Receiver<u64> {
        self.tail.subscribe()
    }

    /// The oldest retained sequence.
    pub(crate) fn first_seq(&self) -> u64 {
        self.read_view().first_seq
    }

    /// One past the newest visible sequence.
    pub(crate) fn next_seq(&self) -> u64 {
        self.read_view().next_seq
    }

    /// Whether the writer has stopped.
    pub(crate) fn is_closed(&self) -> bool {
        self.read_view().closed
    }

    /// Where the record with sequence `seq` is.
    pub(crate) fn locate(&self, seq: u64) -> Located {
        let v = self.read_view();
        if seq < v.first_seq {
            return Located::Deleted(v.first_seq);
        }
        if seq >= v.next_seq {
            return Located::NotYet;
        }
        if seq >= v.active.first_seq {
            let i = (seq - v.active.first_seq) as usize;
            Located::Active {
                file: v.active.file.clone(),
                path: v.active.path.clone(),
                offset: u64::from(v.active.offsets[i]),
                end: v.active.len,
            }
        } else {
            // Sealed segments are in order: binary search the one holding `seq`.
            let i = v.sealed.partition_point(|s| s.last_seq < seq);
            Located::Sealed(v.sealed[i].clone())
        }
    }

    /// For a seek by time `t`: the sealed segments, the first visible sequence of the active
    /// segment at or after `t` if any, and one past the newest visible sequence.
    pub(crate) fn time_index(&self, t: u64) -> (Vec<Arc<SealedSegment>>, Option<u64>, u64) {
        let v = self.read_view();
        let sealed: Vec<_> = v.sealed.iter().cloned().collect();
        let i = v.active.times.partition_point(|&x| x < t);
        let hit = (i < v.active.times.len()).then(|| v.active.first_seq + i as u64);
        (sealed, hit, v.next_seq)
    }

    /// Resolves an event id against the view.
    pub(crate) fn lookup_id(&self, id: &str) -> IdLookup {
        let Some((ns, sequence, inc)) = parse_event_id(id) else {
            return IdLookup::Unknown;
        };
        if ns != &*self.name || inc != self.incarnation || sequence == 0 {
            return IdLookup::Unknown;
        }
        let v = self.read_view();
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

    /// The figures of the namespace, from memory.
    pub(crate) fn stats(&self) -> LogStats {
        let v = self.read_view();
        let m = &self.metrics;
        LogStats {
            events: v.counted(),
            bytes: v.sealed_bytes + v.active.len,
            first_seq: v.first_seq,
            last_seq: v.next_seq - 1,
            last_time_ns: v.last_time,
            segments: v.sealed.len() as u64 + 1,
            read_only: lock(&self.failure).clone(),
            damaged: self.damage_error().map(|e| e.to_string()),
            appended: m.appended.load(Ordering::Relaxed),
            groups: m.groups.load(Ordering::Relaxed),
            syncs: m.syncs.load(Ordering::Relaxed),
            sync_ns: m.sync_ns.load(Ordering::Relaxed),
            corrupt_reads: m.corrupt_reads.load(Ordering::Relaxed),
            heals: m.heals.load(Ordering::Relaxed),
        }
    }

    // What the writer and the syncer change.

    /// Makes written records visible: appends each `(offsets, times)` part to the active
    /// segment's, in order, then moves the visible end to `end`, `next_seq` and `last_time`.
    pub(crate) fn show<'a>(
        &self,
        parts: impl Iterator<Item = (&'a [u32], &'a [u64])>,
        end: u64,
        next_seq: u64,
        last_time: u64,
    ) {
        let mut v = self.write_view();
        for (offsets, times) in parts {
            v.active.offsets.extend_from_slice(offsets);
            v.active.times.extend_from_slice(times);
        }
        v.active.len = end;
        v.next_seq = next_seq;
        v.last_time = last_time;
    }

    /// Tells waiting readers that `newest` is visible. With no reader the value is stored
    /// and nobody is woken (a wake costs a lock per shard of the channel's waiters): a reader
    /// subscribes before it first looks at the view, and the view shows `newest` before
    /// this is called, so a reader counted after this check finds `newest` in the view.
    pub(crate) fn notify_tail(&self, newest: u64) {
        let readers = self.tail.receiver_count();
        self.tail.send_if_modified(|tail| {
            *tail = newest;
            readers > 0
        });
    }

    /// Marks the log closed and wakes every waiting reader.
    pub(crate) fn mark_closed(&self) {
        self.write_view().closed = true;
        self.tail.send_modify(|_| {});
    }

    /// The visible end of the active segment, which is also its last synced end under
    /// `always`.
    pub(crate) fn synced(&self) -> Synced {
        let v = self.read_view();
        Synced {
            len: v.active.len,
            count: v.active.offsets.len() as u64,
            next_seq: v.next_seq,
            last_time: v.last_time,
        }
    }

    /// Offsets of the active segment's visible records (for its index at seal).
    pub(crate) fn active_offsets(&self) -> Vec<u32> {
        self.read_view().active.offsets.clone()
    }

    /// Readers read the active segment through `file` from now on (it was reopened).
    pub(crate) fn replace_active_file(&self, file: Arc<dyn DataFile>) {
        self.write_view().active.file = file;
    }

    /// Seals the active segment as `sealed` and makes `active` the segment being written.
    pub(crate) fn seal_active(&self, sealed: SealedSegment, active: ActiveView) {
        let mut v = self.write_view();
        v.sealed_bytes += sealed.bytes;
        v.uncounted += sealed.events() - sealed.counted_events();
        v.sealed.push_back(Arc::new(sealed));
        v.active = active;
    }

    /// The oldest sealed segment, if any.
    pub(crate) fn oldest_sealed(&self) -> Option<Arc<SealedSegment>> {
        self.read_view().sealed.front().cloned()
    }

    /// The oldest sealed segment, if any, with the figures retention decides on.
    pub(crate) fn oldest_with_totals(&self) -> Option<(Arc<SealedSegment>, Totals)> {
        let v = self.read_view();
        let oldest = v.sealed.front()?.clone();
        Some((
            oldest,
            Totals {
                bytes: v.sealed_bytes + v.active.len,
                events: v.counted(),
            },
        ))
    }

    /// Drops `oldest` from the view if it is still the oldest sealed segment and `remove`,
    /// asked with the figures as they are, says so. Deletes no file.
    pub(crate) fn remove_oldest_if(
        &self,
        oldest: &Arc<SealedSegment>,
        remove: impl FnOnce(Totals) -> bool,
    ) -> Removal {
        let mut v = self.write_view();
        if !v.sealed.front().is_some_and(|f| Arc::ptr_eq(f, oldest)) {
            return Removal::Moved;
        }
        let totals = Totals {
            bytes: v.sealed_bytes + v.active.len,
            events: v.counted(),
        };
        if !remove(totals) {
            return Removal::Kept;
        }
        v.sealed.pop_front();
        v.sealed_bytes -= oldest.bytes;
        v.uncounted -= oldest.events() - oldest.counted_events();
        v.first_seq = oldest.last_seq + 1;
        Removal::Removed
    }
}
