//! [`Writer`]: what writes one namespace's log, run as a [`WriterJob`] on the shared
//! [`WRITERS`] pool (one step at a time per namespace, never a thread of its own).
//!
//! **Writing.** Appenders put their events in the queue and notify the writer job; a step
//! takes everything queued at once, encodes it into one buffer and issues one `write`: that
//! is group commit. Under `interval` and `never`, the first appender of a group yields once
//! to the other tasks ready on its thread before it notifies the writer, and those that
//! append meanwhile join its group ([`Shared::enqueue`]): under load, single-event
//! publishes arrive one per connection, and the group then takes all of them rather than
//! the one or two a step would find otherwise. (Under `always` the syncs group them.) Under
//! `interval` and `never` the writer then makes the records visible to readers and answers
//! every appender of the group itself. Under `always` it hands the written group to the
//! namespace's [`Syncer`] (whose syncs run on the sync pool) and goes on with the next
//! group while the disk syncs: one `fdatasync` covers every group written before it
//! started, and the syncer answers them once it returns (pipelined group commit). One bound
//! in encoded bytes ([`LogConfig::queue_bytes`](super::LogConfig::queue_bytes)) covers
//! appends from the moment they queue until they are answered; past it, appenders wait for
//! room.
//!
//! **On the appender's thread.** When an append finds its writer idle, and the step would
//! only encode and write what is queued (no roll, no sync or retention due, no stop or probe,
//! at most [`HERE_MAX_BYTES`]), the step runs on the appender's own thread
//! ([`Pool::notify_or_run_here`](super::pool::Pool::notify_or_run_here)), taking every append
//! queued by then: under `interval` and `never` the appender then has its answer without
//! waiting (so do the others of its group, answered on that thread), and under `always`
//! it hands the group to the syncer without a writer thread's wake. That thread is usually
//! a runtime worker, which such a step holds for one `pwrite` into the page cache; what
//! may take longer (a roll's syncs, retention's deletes, an `interval` sync, healing,
//! closing) always runs on the pool. So the namespaces writing at once are at most the
//! pool's threads plus the threads appending.
//!
//! **Rolling.** A batch never straddles segments: when it would overflow the active segment,
//! the writer drains the syncer, seals the segment (synced, indexed, checkpointed) and starts
//! the next one, then applies retention.
//!
//! **Reservation.** Under `interval` and `never`, where a group is answered before it is
//! synced, no sequence is handed out above the [`Reservation`]'s mark, which is synced
//! ahead: once less than half a block is left, a step on the pool (armed like a timer, never
//! on an appender's thread, whose steps take only what the mark covers) moves the mark a
//! block ahead. A group that would pass the mark (the first after open, or a burst faster
//! than the steps ahead) answers what was encoded before it, then waits for the mark to move.
//! A failed reservation a group needs fails it as a failed write does.
//!
//! **Timers.** Nothing runs for an idle namespace. What is due later — an `interval` sync,
//! a read-only namespace's probe, the time its oldest segment becomes too old for age
//! retention — is armed on the one [`TIMERS`] thread, which notifies the job then. Size and
//! count retention are checked as each group becomes visible, before it is answered.
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
//! so nothing answered is lost — and starts a fresh syncer.
//!
//! **Stopping.** A stop asked for is taken by the next step, which finishes as below and
//! marks the job finished ([`WriterJob::wait`], [`WriterJob::finished`]). Under `interval` and `never`,
//! where answered events may not have been synced, a failed sync keeps the namespace
//! read-only until a restart, whose recovery checks every record.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::answers::{Done, Reply, Slot, Stamp};
use super::checkpoint::Checkpoint;
use super::config::FsyncPolicy;
use super::dedup::DedupEntry;
use super::io::{DataFile, FileSystem};
use super::pool::{Job, Schedule, WRITERS};
use super::record;
use super::reservation::Reservation;
use super::retention;
use super::segment::{self, SEGMENT_HEADER_BYTES, SealedSegment};
use super::shared::{ActiveView, Request, Shared, Stop, Synced, Work};
use super::syncer::Syncer;
use super::timers::TIMERS;
use super::written::{GroupEnd, Written};
use super::{EventIdRef, StorageError, now_ns};
use crate::sync::lock;

/// When age retention first looks at a log after it opens (then at the time its oldest
/// segment becomes too old), and how soon it looks again when it cannot read a segment's age.
const RETENTION_FIRST: Duration = Duration::from_secs(1);
/// The earliest a timer is armed after a step (so a due time never makes a busy loop).
const MIN_TIMER: Duration = Duration::from_micros(100);
/// How often a read-only namespace probes whether its disk works again.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// Most encoded bytes a step run on an appender's thread writes (more goes to the pool:
/// a longer `pwrite` would hold a runtime worker for longer).
pub const HERE_MAX_BYTES: usize = 256 * 1024;
/// Zeros a probe writes past the end of the active segment (a page: on a full disk, a write
/// inside an already allocated page would succeed without proving anything). Zeros never
/// verify as a record, so a crash leaves them as a torn tail that recovery cuts.
const PROBE_BYTES: usize = 4096;

/// Where a writer starts: the active segment as recovery left it.
pub(crate) struct Resume {
    /// The active segment's file, open for writing.
    pub file: Arc<dyn DataFile>,
    /// Its path.
    pub path: PathBuf,
    /// Its first sequence.
    pub first_seq: u64,
    /// Records it holds.
    pub count: u64,
    /// End of its valid records, where the next write goes.
    pub end: u64,
    /// The next sequence to assign.
    pub next_seq: u64,
    /// Time of the newest event (times never go backwards).
    pub last_time: u64,
    /// The sequences reserved (under `interval` and `never`; `None` under `always`).
    pub reservation: Option<Reservation>,
}

/// The writer thread's own state.
pub(crate) struct Writer {
    /// What the handle, the syncer and the readers share.
    shared: Arc<Shared>,
    /// The file layer segments are created and reopened through.
    fs: Arc<dyn FileSystem>,
    /// The active segment.
    file: Arc<dyn DataFile>,
    /// Its path.
    path: Arc<Path>,
    /// Its first sequence.
    active_first: u64,
    /// Records written to the active segment (visible or not yet).
    active_count: u64,
    /// End of what was written to the active segment.
    write_pos: u64,
    /// Next sequence to assign.
    next_seq: u64,
    /// Time of the newest event assigned (times never go backwards).
    last_time: u64,
    /// The group being encoded.
    buf: Vec<u8>,
    /// Offsets of the group's records in the segment.
    offsets: Vec<u32>,
    /// Times of the group's records.
    times: Vec<u64>,
    /// Under `always`, syncs and answers the written groups while this thread writes on;
    /// `None` under the other policies, where this thread answers after the write.
    syncer: Option<Syncer>,
    /// Written but not yet synced by this thread (interval and never policies).
    unsynced: bool,
    /// When this thread last synced (for `interval`).
    last_sync: Instant,
    /// When age retention is due next, if the log has age retention.
    retention_due: Option<Instant>,
    /// The time armed on [`TIMERS`], if any.
    armed: Option<Instant>,
    /// This writer's job, which the timers notify.
    job: Weak<dyn Job>,
    /// Set while the namespace is read-only (this thread's failure or the syncer's).
    failed: bool,
    /// When the disk was last probed while read-only.
    last_probe: Instant,
    /// Set while a step runs on an appender's thread: its answers are sent there.
    here: bool,
    /// Under `interval` and `never`, the mark no sequence handed out may pass; `None` under
    /// `always`, where nothing is visible or answered before it is synced.
    reservation: Option<Reservation>,
    /// When a reservation ahead that failed is tried again (the one a group needs is tried
    /// at once, and its failure fails the group).
    reserve_retry: Option<Instant>,
}

/// A namespace's writer as a job of the [`WRITERS`] pool, until it finishes.
pub(crate) struct WriterJob {
    /// Its place in the pool's queue.
    schedule: Schedule,
    /// The writer; `None` once it has finished. Locked only by the step running it.
    writer: Mutex<Option<Writer>>,
    /// Set when the writer has finished.
    finished: Mutex<bool>,
    /// Signalled when it finishes (for [`WriterJob::wait`]).
    finished_cv: Condvar,
    /// True once it finished (for [`WriterJob::finished`]).
    finished_tx: watch::Sender<bool>,
}

impl Job for WriterJob {
    fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    fn run(&self) {
        let mut slot = lock(&self.writer);
        let Some(w) = slot.as_mut() else { return };
        if !w.step() {
            return;
        }
        *slot = None;
        drop(slot);
        self.mark_finished();
    }

    fn run_here(&self) -> bool {
        let mut slot = lock(&self.writer);
        let Some(w) = slot.as_mut() else { return false };
        w.step_here()
    }
}

impl WriterJob {
    /// Marks the writer finished and wakes whoever waits for that.
    fn mark_finished(&self) {
        WRITERS.detach();
        *lock(&self.finished) = true;
        self.finished_cv.notify_all();
        self.finished_tx.send_replace(true);
    }

    /// Blocks until the writer has finished.
    pub(crate) fn wait(&self) {
        let mut done = lock(&self.finished);
        while !*done {
            done = self
                .finished_cv
                .wait(done)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Waits until the writer has finished.
    pub(crate) async fn finished(&self) {
        let mut rx = self.finished_tx.subscribe();
        let _ = rx.wait_for(|done| *done).await;
    }
}

impl Writer {
    /// Starts the writer of the log `shared` at `at`, as a job on the [`WRITERS`] pool (and,
    /// under `always`, its syncer on the sync pool).
    pub(crate) fn start(
        shared: Arc<Shared>,
        fs: Arc<dyn FileSystem>,
        at: Resume,
    ) -> Result<Arc<WriterJob>, StorageError> {
        let syncer = match shared.config().fsync {
            FsyncPolicy::Always => Some(Syncer::new(shared.clone())),
            _ => None,
        };
        let retention_due = shared
            .config()
            .retention
            .max_age
            .map(|_| Instant::now() + RETENTION_FIRST);
        WRITERS.attach();
        let job = Arc::new_cyclic(|me: &Weak<WriterJob>| {
            let job: Weak<dyn Job> = me.clone();
            let writer = Writer {
                shared,
                fs,
                file: at.file,
                path: Arc::from(at.path),
                active_first: at.first_seq,
                active_count: at.count,
                write_pos: at.end,
                next_seq: at.next_seq,
                last_time: at.last_time,
                buf: Vec::new(),
                offsets: Vec::new(),
                times: Vec::new(),
                syncer,
                unsynced: false,
                last_sync: Instant::now(),
                retention_due,
                armed: None,
                job: job.clone(),
                last_probe: Instant::now(),
                failed: false,
                here: false,
                reservation: at.reservation,
                reserve_retry: None,
            };
            WriterJob {
                schedule: Schedule::default(),
                writer: Mutex::new(Some(writer)),
                finished: Mutex::new(false),
                finished_cv: Condvar::new(),
                finished_tx: watch::Sender::new(false),
            }
        });
        let weak: Weak<dyn Job> = Arc::downgrade(&job) as Weak<dyn Job>;
        if let Some(w) = lock(&job.writer).as_mut() {
            w.shared.set_writer(weak);
            w.arm_timer();
        }
        Ok(job)
    }

    /// One step: takes what is queued, writes it, does what is due, and arms the next time
    /// something is due. Returns true once the writer has finished (a stop was asked for).
    fn step(&mut self) -> bool {
        let work = self.shared.take_work();
        self.step_with(work)
    }

    /// A step on an appender's thread, if it only writes (see "On the appender's thread" in
    /// the module docs): returns whether it ran.
    fn step_here(&mut self) -> bool {
        if self.failed || self.shared.has_failed() {
            return false;
        }
        if self.next_due().is_some_and(|due| due <= Instant::now()) {
            return false;
        }
        // What fits in the active segment is written without a roll, and what leaves the
        // retention limits unreached deletes nothing.
        let in_segment = self
            .shared
            .config()
            .segment_bytes
            .saturating_sub(self.write_pos);
        let (bytes_left, events_left) = retention::room_by_size(&self.shared);
        // What needs a new reservation waits for the pool: its sync never runs here.
        let events_left = match &self.reservation {
            Some(r) => events_left.min(r.left(self.next_seq)),
            None => events_left,
        };
        let below_bytes = (in_segment.saturating_add(1))
            .min(bytes_left)
            .min(HERE_MAX_BYTES as u64 + 1);
        let Some(work) = self.shared.take_short_work(below_bytes, events_left) else {
            return false;
        };
        self.here = true;
        // No stop in `work`: the step cannot finish the writer.
        let finished = self.step_with(work);
        self.here = false;
        debug_assert!(!finished);
        true
    }

    /// One step over `work`; see [`Writer::step`].
    fn step_with(&mut self, work: Work) -> bool {
        let Work { reqs, stop, probe } = work;
        if probe && (self.failed || self.shared.has_failed()) {
            self.failed = true;
            self.heal();
        }
        if stop == Some(Stop::Abort) {
            for r in reqs {
                let _ = r.tx.send(Err(StorageError::Closed));
            }
            self.finish(Stop::Abort);
            return true;
        }
        if !reqs.is_empty() {
            self.process(reqs);
        }
        self.on_timers();
        if let Some(stop) = stop {
            self.finish(stop);
            return true;
        }
        self.arm_timer();
        false
    }

    /// Arms the next time something is due on [`TIMERS`], unless an earlier time is armed.
    fn arm_timer(&mut self) {
        let Some(due) = self.next_due() else { return };
        let now = Instant::now();
        let due = due.max(now + MIN_TIMER);
        if self.armed.is_none_or(|a| a <= now || due < a) {
            self.armed = Some(due);
            TIMERS.arm(due, self.job.clone());
        }
    }

    /// What the step after a stop does: a last probe, the syncer stopped, the clean checkpoint.
    fn finish(&mut self, stop: Stop) {
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
        self.shared.mark_closed();
    }

    /// The earliest time something is due: a probe while read-only, an `interval` sync of
    /// written records, age retention. `None` when nothing is.
    fn next_due(&self) -> Option<Instant> {
        let failed = self.failed || self.shared.has_failed();
        let probe = failed.then(|| self.last_probe + PROBE_INTERVAL);
        let sync = match (self.unsynced && !failed, self.shared.config().fsync) {
            (true, FsyncPolicy::Interval(every)) => Some(self.last_sync + every),
            _ => None,
        };
        let reserve = self
            .reserve_due()
            .then(|| self.reserve_retry.unwrap_or_else(Instant::now));
        [probe, sync, reserve, self.retention_due]
            .into_iter()
            .flatten()
            .min()
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
        if let (true, FsyncPolicy::Interval(every)) = (self.unsynced, self.shared.config().fsync)
            && self.last_sync.elapsed() >= every
            && !self.failed
            && let Err(e) = self.sync()
        {
            self.fail(e, &mut Vec::new(), &mut Vec::new());
        }
        if self.retention_due.is_some_and(|d| d <= Instant::now()) {
            self.apply_retention();
        }
        // Never on an appender's thread: armed below, it runs on the pool's next step.
        if !self.here
            && self.reserve_due()
            && self.reserve_retry.is_none_or(|t| t <= Instant::now())
        {
            self.reserve_retry = match self.reserve(self.next_seq - 1) {
                Ok(()) => None,
                Err(e) => {
                    tracing::warn!(namespace = %self.shared.name(), error = %e, "could not reserve sequences ahead; trying again later");
                    Some(Instant::now() + PROBE_INTERVAL)
                }
            };
        }
    }

    /// Whether a reservation ahead is due: sequences were handed out since the writer
    /// started (an idle namespace makes none), and less than half a block is left.
    fn reserve_due(&self) -> bool {
        !self.failed
            && self
                .reservation
                .as_ref()
                .is_some_and(|r| r.handed_out(self.next_seq) && r.due(self.next_seq))
    }

    /// Durably reserves sequences up to at least `need` (see [`Reservation::extend`]).
    fn reserve(&mut self, need: u64) -> Result<(), StorageError> {
        match &mut self.reservation {
            Some(r) => r.extend(&*self.fs, need),
            None => Ok(()),
        }
    }

    fn process(&mut self, reqs: Vec<Request>) {
        let now = now_ns();
        let mut done: Vec<Done> = Vec::with_capacity(reqs.len());
        let mut inserted: Vec<String> = Vec::new();
        let id_len = self.shared.name().len() + 30;
        self.failed |= self.shared.has_failed();
        for Request {
            events,
            tx,
            permit,
            runtime,
            ..
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
                let dedup = self.shared.dedup();
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
            if writes > 0 && pending > 0 && end > self.shared.config().segment_bytes {
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
            // Never a sequence above the reservation's mark: the group written so far is
            // answered first (it is below it), then the mark moves ahead, synced.
            let last = self.next_seq + writes as u64 - 1;
            if writes > 0
                && self
                    .reservation
                    .as_ref()
                    .is_some_and(|r| r.left(self.next_seq) < writes as u64)
            {
                self.flush(&mut done, &mut inserted);
                if !self.failed
                    && let Err(e) = self.reserve(last)
                {
                    self.fail(e, &mut done, &mut inserted);
                }
                if self.failed {
                    self.refuse(tx);
                    continue;
                }
            }
            let mut left = writes as u32;
            // Both are handed on with each group, so they start empty: sized once here
            // rather than grown record by record.
            self.offsets.reserve(writes);
            self.times.reserve(writes);
            let mut dedup = self.shared.dedup();
            for (e, slot) in events.iter().zip(slots.iter_mut()) {
                let Slot::Write(receipt) = slot else { continue };
                left -= 1;
                let seq = self.next_seq;
                self.next_seq += 1;
                let time = now.max(self.last_time);
                self.last_time = time;
                let id = EventIdRef {
                    namespace: self.shared.name(),
                    sequence: seq,
                    incarnation: self.shared.incarnation(),
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
        let group = Written::new(
            self.file.clone(),
            self.path.clone(),
            GroupEnd {
                bytes: self.buf.len() as u64,
                end: self.write_pos,
                next_seq: self.next_seq,
                last_time: self.last_time,
            },
            std::mem::take(&mut self.offsets),
            std::mem::take(&mut self.times),
            std::mem::take(done),
            std::mem::take(inserted),
        );
        self.buf.clear();
        match &self.syncer {
            Some(syncer) => syncer.submit(group),
            None => Written::publish_then(&self.shared, vec![group], self.here, || {
                retention::apply_if_due_by_size(&self.shared)
            }),
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
        if let Err(e) = self.shared.sync_file(&*self.file, &self.path) {
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
        let sync_failed = self.shared.sync_failed();
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
                    self.shared.sync_file(&**file, path).inspect_err(|e| {
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
                tracing::info!(namespace = %self.shared.name(), after_sync_failure = sync_failed, next_sequence = self.next_seq, "storage works again: namespace is writable");
            }
            Err(e) => {
                tracing::debug!(namespace = %self.shared.name(), error = %e, "probe failed: namespace stays read-only");
            }
        }
    }

    /// After a failed sync under `always`: reopens the active segment, cuts it to the end of
    /// the last synced record (what readers see), syncs it, and starts a fresh syncer.
    fn cut_to_last_sync(&mut self) -> Result<(), StorageError> {
        let Synced {
            len,
            count,
            next_seq,
            last_time,
        } = self.shared.synced();
        let file = self
            .fs
            .open(&self.path)
            .map_err(|e| StorageError::io("reopen", &*self.path, e))?;
        file.set_len(len)
            .map_err(|e| StorageError::io("truncate", &*self.path, e))?;
        self.shared.sync_file(&*file, &self.path)?;
        let syncer = Syncer::new(self.shared.clone());
        if let Some(old) = self.syncer.replace(syncer) {
            old.stop(Stop::Clean);
        }
        let cut = self.write_pos.saturating_sub(len);
        self.shared.replace_active_file(file.clone());
        self.file = file;
        self.write_pos = len;
        self.active_count = count;
        self.next_seq = next_seq;
        self.last_time = self.last_time.max(last_time);
        tracing::warn!(namespace = %self.shared.name(), path = %self.path.display(), offset = len, bytes = cut, "after a failed sync, cut what was written since the last successful one");
        Ok(())
    }

    /// Fails the group being written (not written, or its write failed). Its sequences are
    /// handed out again, so that the log never has a gap.
    fn drop_group(&mut self, err: &StorageError, done: &mut Vec<Done>, inserted: &mut Vec<String>) {
        self.next_seq -= self.offsets.len() as u64;
        let group = Written::new(
            self.file.clone(),
            self.path.clone(),
            GroupEnd {
                bytes: 0,
                end: self.write_pos,
                next_seq: self.next_seq,
                last_time: self.last_time,
            },
            Vec::new(),
            Vec::new(),
            std::mem::take(done),
            std::mem::take(inserted),
        );
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
        let offsets = self.shared.active_offsets();
        // In the segment's own version: a version-2 one (after a repair or a hole) gets a
        // version-2 index, not one its first reader would refuse and rebuild.
        segment::write_sealed_index(
            &self.path,
            self.active_first,
            self.shared.segment_version(),
            self.write_pos,
            &offsets,
        );
        let dir = self.shared.dir().to_owned();
        let new_first = self.next_seq;
        let new_path = dir.join(segment::segment_name(new_first));
        let created = segment::create(
            &*self.fs,
            &dir,
            &new_path,
            self.shared.segment_version(),
            self.shared.incarnation(),
            new_first,
        )
        .and_then(|file| {
            let dedup = self.shared.dedup();
            Checkpoint::write(
                &dir,
                false,
                self.shared.incarnation(),
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
        self.shared.seal_active(
            SealedSegment::new(
                self.path.to_path_buf(),
                self.active_first,
                new_first - 1,
                self.write_pos,
            ),
            ActiveView::new(
                new_first,
                new_path.clone(),
                file.clone(),
                Vec::new(),
                Vec::new(),
                SEGMENT_HEADER_BYTES as u64,
            ),
        );
        self.file = file;
        self.path = Arc::from(new_path);
        self.active_first = new_first;
        self.active_count = 0;
        self.write_pos = SEGMENT_HEADER_BYTES as u64;
        self.apply_retention();
        Ok(())
    }

    /// Applies retention, then finds when age retention is due next.
    fn apply_retention(&mut self) {
        if let Err(e) = retention::apply(&self.shared) {
            tracing::warn!(namespace = %self.shared.name(), error = %e, "retention failed");
        }
        if self.shared.config().retention.max_age.is_some() {
            self.retention_due = Some(
                retention::next_age_due(&self.shared)
                    .unwrap_or_else(|| Instant::now() + RETENTION_FIRST),
            );
        }
    }

    /// Syncs what is left and writes the clean checkpoint. Under `always` the syncer has
    /// synced and answered everything before this.
    fn close_cleanly(&mut self) {
        if self.unsynced
            && let Err(e) = self.sync()
        {
            tracing::error!(namespace = %self.shared.name(), error = %e, "final sync failed");
            return;
        }
        let dedup = self.shared.dedup();
        let res = Checkpoint::write(
            self.shared.dir(),
            true,
            self.shared.incarnation(),
            self.next_seq - 1,
            self.last_time,
            dedup.entries(),
        );
        if let Err(e) = res {
            tracing::error!(namespace = %self.shared.name(), error = %e, "could not write checkpoint");
        }
    }
}
