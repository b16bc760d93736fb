//! [`Syncer`]: what makes a namespace's writes durable under `fsync = always`, so that the
//! writer can encode and write the next group while the disk syncs the previous ones
//! (pipelined group commit). Its syncs run on the shared [`SYNCERS`] pool, never on a thread
//! of the namespace's own: up to the pool's bound, busy namespaces sync in parallel.
//!
//! **Flow.** The writer writes a group and hands it over with [`Syncer::submit`], which
//! queues the namespace's sync job on the pool. A sync step takes every group handed over so
//! far, issues one `fdatasync` that covers them all (each was written before the sync
//! started), then makes them visible to readers and answers their appenders, oldest first, so
//! visibility follows sequence order. Groups handed over while a sync runs wait for the next
//! step (the job is queued again when this one returns); meanwhile the writer keeps writing.
//! Only one step of a namespace runs at a time.
//!
//! **Bound.** A group holds its appenders' queue permits until it is answered, so the bytes
//! queued, written-but-not-synced and waiting here together stay within
//! [`LogConfig::queue_bytes`](super::LogConfig::queue_bytes); past it, appenders wait for room.
//!
//! **Failure.** A failed `fdatasync` fails every group it covered and every group handed over
//! after it, turns the namespace read-only, and is never retried: after it this syncer syncs
//! nothing more (a later successful sync would not prove the earlier data reached the disk);
//! healing starts a fresh one.
//!
//! **Barrier.** [`Syncer::drain`] returns once everything handed over is synced and answered
//! (or failed): the writer calls it before sealing a segment, and [`Syncer::stop`] drains
//! (or, for a crash-like stop, fails) what is left before the writer writes its clean
//! checkpoint.

use std::sync::{Arc, Condvar, Mutex};

use super::StorageError;
use super::pool::{Job, SYNCERS, Schedule};
use super::retention;
use super::shared::{Shared, Stop};
use super::written::Written;
use crate::sync::lock;

/// What the writer and the sync steps share.
#[derive(Default)]
struct State {
    /// Groups written and waiting for a sync, oldest first.
    waiting: Vec<Written>,
    /// True while a sync step holds groups it took from `waiting` (syncing or answering them).
    busy: bool,
    /// Set when the writer stops.
    stop: Option<Stop>,
    /// Set after a failed sync: nothing is synced again.
    failed: bool,
}

/// The hand-over between the writer and the sync steps: the namespace's job on [`SYNCERS`].
struct Pipe {
    /// The namespace's shared state.
    shared: Arc<Shared>,
    /// Its place in the pool's queue.
    schedule: Schedule,
    /// What they share.
    state: Mutex<State>,
    /// Signalled when a step has answered everything it took.
    idle: Condvar,
}

/// The writer's handle on its namespace's syncs.
pub(crate) struct Syncer {
    /// The hand-over.
    pipe: Arc<Pipe>,
    /// False once stopped.
    live: bool,
}

impl Syncer {
    /// A namespace's syncer, registered with the sync pool until stopped.
    pub(crate) fn new(shared: Arc<Shared>) -> Syncer {
        SYNCERS.attach();
        Syncer {
            pipe: Arc::new(Pipe {
                shared,
                schedule: Schedule::default(),
                state: Mutex::new(State::default()),
                idle: Condvar::new(),
            }),
            live: true,
        }
    }

    /// Hands over a written group; it is answered once a sync started after this covers it.
    pub(crate) fn submit(&self, group: Written) {
        lock(&self.pipe.state).waiting.push(group);
        SYNCERS.notify(self.pipe.clone());
    }

    /// Waits until every group handed over so far is synced and answered, or failed.
    pub(crate) fn drain(&self) {
        let mut st = lock(&self.pipe.state);
        while st.busy || !st.waiting.is_empty() {
            st = self.pipe.idle.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Stops: after a clean stop it first syncs and answers what is waiting; after an abort
    /// it fails what is waiting (a sync already running still completes and answers).
    pub(crate) fn stop(mut self, how: Stop) {
        self.finish(how);
    }

    fn finish(&mut self, how: Stop) {
        if !self.live {
            return;
        }
        self.live = false;
        lock(&self.pipe.state).stop.get_or_insert(how);
        SYNCERS.notify(self.pipe.clone());
        self.drain();
        SYNCERS.detach();
    }
}

impl Drop for Syncer {
    /// Without [`Syncer::stop`] (the writer failed to start, or panicked), stops as a crash
    /// would, so that nothing waits here after its writer.
    fn drop(&mut self) {
        self.finish(Stop::Abort);
    }
}

impl Job for Pipe {
    fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    fn run(&self) {
        let (groups, stop, failed) = {
            let mut st = lock(&self.state);
            if st.waiting.is_empty() {
                return;
            }
            st.busy = true;
            (std::mem::take(&mut st.waiting), st.stop, st.failed)
        };
        let failed_now = if stop == Some(Stop::Abort) {
            Written::fail(&self.shared, &StorageError::Closed, groups);
            false
        } else {
            self.settle(groups, failed)
        };
        {
            let mut st = lock(&self.state);
            st.failed |= failed_now;
            st.busy = false;
        }
        self.idle.notify_all();
    }
}

impl Pipe {
    /// Syncs the groups (one `fdatasync` for all), then publishes and answers them; or fails
    /// them all. Returns true when the sync failed.
    fn settle(&self, groups: Vec<Written>, failed: bool) -> bool {
        if failed {
            let err = self
                .shared
                .read_only_error()
                .unwrap_or(StorageError::Closed);
            Written::fail(&self.shared, &err, groups);
            return false;
        }
        // Every group was written to the same segment: the writer drains before it rolls. A
        // group of duplicates only writes nothing and needs no sync of its own: whatever it
        // refers to was written earlier, so is synced by now or in this batch.
        if let Some(g) = groups.iter().rev().find(|g| g.wrote())
            && let Err(e) = g.sync(&self.shared)
        {
            self.shared.set_sync_failure(&e);
            Written::fail(&self.shared, &e, groups);
            // The writer learns of it at its next step, which arms its probes.
            self.shared.wake_writer();
            return true;
        }
        Written::publish_then(&self.shared, groups, false, || {
            retention::apply_if_due_by_size(&self.shared)
        });
        false
    }
}
