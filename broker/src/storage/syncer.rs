//! [`Syncer`]: the thread that makes a namespace's writes durable under `fsync = always`, so
//! that the writer can encode and write the next group while the disk syncs the previous
//! ones (pipelined group commit).
//!
//! **Flow.** The writer writes a group and hands it over with [`Syncer::submit`]. The syncer
//! takes every group handed over so far, issues one `fdatasync` that covers them all (each
//! was written before the sync started), then makes them visible to readers and answers
//! their appenders, oldest first, so visibility follows sequence order. Groups handed over
//! while a sync runs wait for the next one; meanwhile the writer keeps writing.
//!
//! **Bound.** A group holds its appenders' queue permits until it is answered, so the bytes
//! queued, written-but-not-synced and waiting here together stay within
//! [`LogConfig::queue_bytes`](super::LogConfig::queue_bytes); past it, appenders wait for room.
//!
//! **Failure.** A failed `fdatasync` fails every group it covered and every group handed over
//! after it, turns the namespace read-only, and is never retried: after it the syncer syncs
//! nothing more (a later successful sync would not prove the earlier data reached the disk).
//!
//! **Barrier.** [`Syncer::drain`] returns once everything handed over is synced and answered
//! (or failed): the writer calls it before sealing a segment, and [`Syncer::stop`] drains
//! (or, for a crash-like stop, fails) what is left before the writer writes its clean
//! checkpoint.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use super::StorageError;
use super::shared::{Shared, Stop};
use super::written::Written;
use crate::sync::lock;

/// What the writer and the syncer share.
#[derive(Default)]
struct State {
    /// Groups written and waiting for a sync, oldest first.
    waiting: Vec<Written>,
    /// True while the syncer holds groups it took from `waiting` (syncing or answering them).
    busy: bool,
    /// Set when the writer stops.
    stop: Option<Stop>,
    /// True while the syncer waits for work: only then does `submit` wake it (a condvar
    /// notify is a system call even when nobody waits).
    syncer_waiting: bool,
}

/// The hand-over between the writer and the syncer thread.
struct Pipe {
    /// What they share.
    state: Mutex<State>,
    /// Signalled when groups arrive or the writer stops.
    work: Condvar,
    /// Signalled when the syncer has answered everything it took.
    idle: Condvar,
}

/// The writer's handle on its namespace's syncer thread.
pub(crate) struct Syncer {
    /// The hand-over.
    pipe: Arc<Pipe>,
    /// The syncer thread, until stopped.
    thread: Option<JoinHandle<()>>,
}

impl Syncer {
    /// Starts the syncer thread of a namespace.
    pub(crate) fn spawn(shared: Arc<Shared>) -> std::io::Result<Syncer> {
        let pipe = Arc::new(Pipe {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            idle: Condvar::new(),
        });
        let name = format!("bus-sync-{}", shared.name());
        let worker = Worker {
            shared,
            pipe: pipe.clone(),
            failed: false,
        };
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || worker.run())?;
        Ok(Syncer {
            pipe,
            thread: Some(thread),
        })
    }

    /// Hands over a written group; it is answered once a sync started after this covers it.
    pub(crate) fn submit(&self, group: Written) {
        let wake = {
            let mut st = lock(&self.pipe.state);
            st.waiting.push(group);
            st.syncer_waiting
        };
        if wake {
            self.pipe.work.notify_one();
        }
    }

    /// Waits until every group handed over so far is synced and answered, or failed.
    pub(crate) fn drain(&self) {
        let mut st = lock(&self.pipe.state);
        while st.busy || !st.waiting.is_empty() {
            st = self.pipe.idle.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Stops the thread: after a clean stop it first syncs and answers what is waiting; after
    /// an abort it fails what is waiting (a sync already running still completes and answers).
    pub(crate) fn stop(mut self, how: Stop) {
        self.finish(how);
    }

    fn finish(&mut self, how: Stop) {
        lock(&self.pipe.state).stop.get_or_insert(how);
        self.pipe.work.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Syncer {
    /// Without [`Syncer::stop`] (the writer failed to start, or panicked), stops as a crash
    /// would, so that the thread never outlives its writer.
    fn drop(&mut self) {
        self.finish(Stop::Abort);
    }
}

/// The syncer thread's own state.
struct Worker {
    /// The namespace's shared state.
    shared: Arc<Shared>,
    /// The hand-over.
    pipe: Arc<Pipe>,
    /// Set after a failed sync: nothing is synced again.
    failed: bool,
}

impl Worker {
    fn run(mut self) {
        loop {
            let (groups, stop) = {
                let mut st = lock(&self.pipe.state);
                while st.waiting.is_empty() && st.stop.is_none() {
                    st.syncer_waiting = true;
                    st = self.pipe.work.wait(st).unwrap_or_else(|e| e.into_inner());
                    st.syncer_waiting = false;
                }
                if st.waiting.is_empty() {
                    return;
                }
                st.busy = true;
                (std::mem::take(&mut st.waiting), st.stop)
            };
            if stop == Some(Stop::Abort) {
                Written::fail(&self.shared, &StorageError::Closed, groups);
            } else {
                self.settle(groups);
            }
            lock(&self.pipe.state).busy = false;
            self.pipe.idle.notify_all();
        }
    }

    /// Syncs the groups (one `fdatasync` for all), then publishes and answers them; or fails
    /// them all.
    fn settle(&mut self, groups: Vec<Written>) {
        if self.failed {
            let err = self
                .shared
                .read_only_error()
                .unwrap_or(StorageError::Closed);
            return Written::fail(&self.shared, &err, groups);
        }
        // Every group was written to the same segment: the writer drains before it rolls. A
        // group of duplicates only writes nothing and needs no sync of its own: whatever it
        // refers to was written earlier, so is synced by now or in this batch.
        if let Some(g) = groups.iter().rev().find(|g| g.wrote())
            && let Err(e) = g.sync(&self.shared)
        {
            self.failed = true;
            self.shared.set_sync_failure(&e);
            return Written::fail(&self.shared, &e, groups);
        }
        Written::publish(&self.shared, groups);
    }
}
