//! [`Pool`]: a bounded set of threads shared by every namespace's log, on which each log's
//! writing and syncing run as [`Job`]s, so that the broker's thread count does not grow with
//! its namespaces.
//!
//! **Flow.** A job is a namespace's writer (or its syncer's hand-over). Whoever gives it work
//! calls [`Pool::notify`]; the job is queued once, however often it is notified, and a worker
//! runs it: one step that takes everything queued for that namespace. Notified while it runs,
//! it is queued again (at the back, so busy namespaces take turns) once the step returns.
//!
//! **One worker per job.** A job's [`Schedule`] is idle, queued, running, or running and
//! notified again; only the worker that took it from the queue runs it, so a namespace's
//! appends are written in order and grouped as before, by one thread at a time.
//!
//! **Bound.** [`WRITERS`] has at most [`ThreadPools::writers`] threads, [`SYNCERS`] at most
//! [`ThreadPools::syncers`] (defaults [`DEFAULT_WRITE_THREADS`], [`DEFAULT_SYNC_THREADS`]):
//! up to that many namespaces write, or `fdatasync`, in parallel; others wait in the queue
//! (unbounded in jobs, but holding each namespace at most once). A worker is started when a
//! job is queued and no worker is idle, up to the bound.
//!
//! **Shutdown.** Each log registers with the pools it uses while it is open
//! ([`Pool::attach`], [`Pool::detach`]); a worker that finds the queue empty and no log
//! registered exits, so a process with no open log has no pool thread.
//!
//! **Who may wait for whom.** A writer step may wait for its namespace's syncs
//! ([`Syncer::drain`](super::syncer::Syncer::drain)); a sync step never waits for a writer.
//! The pools are separate, so a sync always has a thread to run on.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::sync::lock;

/// Default bound on writer threads: appends are encoded and written (`pwrite`) by at most this
/// many namespaces at a time.
pub const DEFAULT_WRITE_THREADS: usize = 4;
/// Default bound on sync threads: at most this many namespaces `fdatasync` at a time under
/// `fsync = always`.
pub const DEFAULT_SYNC_THREADS: usize = 8;
/// The largest bound either pool accepts.
pub const MAX_POOL_THREADS: usize = 256;

/// The sizes of the shared pools, set once at start ([`ThreadPools::apply`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadPools {
    /// Writer threads. Default: [`DEFAULT_WRITE_THREADS`].
    pub writers: usize,
    /// Sync threads. Default: [`DEFAULT_SYNC_THREADS`].
    pub syncers: usize,
}

impl Default for ThreadPools {
    fn default() -> Self {
        ThreadPools {
            writers: DEFAULT_WRITE_THREADS,
            syncers: DEFAULT_SYNC_THREADS,
        }
    }
}

impl ThreadPools {
    /// Sets the bounds of [`WRITERS`] and [`SYNCERS`] for the whole process (each between 1
    /// and [`MAX_POOL_THREADS`]; values outside are clamped). Workers already running above a
    /// lowered bound finish their step and exit when idle.
    pub fn apply(self) {
        WRITERS.set_max(self.writers);
        SYNCERS.set_max(self.syncers);
    }

    /// The bounds in force.
    pub fn current() -> ThreadPools {
        ThreadPools {
            writers: WRITERS.max(),
            syncers: SYNCERS.max(),
        }
    }
}

/// The writer pool: every namespace's writer steps run here.
pub(crate) static WRITERS: Pool = Pool::new("bus-write", DEFAULT_WRITE_THREADS);
/// The sync pool: every namespace's `fdatasync`s under `always` run here.
pub(crate) static SYNCERS: Pool = Pool::new("bus-sync", DEFAULT_SYNC_THREADS);

/// Work a pool runs: one step of one namespace.
pub(crate) trait Job: Send + Sync + 'static {
    /// Where the job's place in the queue is kept.
    fn schedule(&self) -> &Schedule;
    /// One step: takes what is there to do now and does it. Never waits for a job of the
    /// same pool.
    fn run(&self);
    /// One step on the thread that gave the job work ([`Pool::notify_or_run_here`]), if
    /// this step is cheap enough to run there; returns false, doing nothing, if it is not
    /// (the pool then runs it). By default a job never runs outside its pool.
    fn run_here(&self) -> bool {
        false
    }
}

/// Most steps [`Pool::notify_or_run_here`] runs in a row on the notifying thread (work
/// queued by others while a step ran is taken by the next one: flat combining), before it
/// leaves the rest to the pool.
const HERE_STEPS: usize = 3;

const IDLE: u8 = 0;
const QUEUED: u8 = 1;
const RUNNING: u8 = 2;
const NOTIFIED: u8 = 3;

/// A job's scheduling state: idle, queued, running, or running and notified again.
#[derive(Debug, Default)]
pub(crate) struct Schedule(AtomicU8);

/// Figures of a pool, for tests and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Threads running now.
    pub threads: usize,
    /// The most threads that ever ran at once.
    pub peak_threads: usize,
    /// The most jobs that ever ran at once.
    pub peak_running: usize,
    /// Job steps run in all.
    pub steps: u64,
    /// Logs registered now.
    pub users: usize,
}

struct State {
    /// Jobs waiting for a worker, each at most once.
    queue: VecDeque<Arc<dyn Job>>,
    /// Worker threads alive.
    threads: usize,
    /// Workers waiting for a job.
    idle: usize,
    /// Jobs running now.
    running: usize,
    /// Logs registered.
    users: usize,
    /// The most threads alive at once.
    peak_threads: usize,
    /// The most jobs running at once.
    peak_running: usize,
    /// Job steps run in all.
    steps: u64,
}

/// A bounded set of worker threads running [`Job`]s (see the module docs).
pub(crate) struct Pool {
    /// Thread name prefix.
    name: &'static str,
    /// The bound on threads.
    max: AtomicUsize,
    /// The queue and the counts.
    state: Mutex<State>,
    /// Wakes an idle worker.
    work: Condvar,
}

impl Pool {
    const fn new(name: &'static str, max: usize) -> Pool {
        Pool {
            name,
            max: AtomicUsize::new(max),
            state: Mutex::new(State {
                queue: VecDeque::new(),
                threads: 0,
                idle: 0,
                running: 0,
                users: 0,
                peak_threads: 0,
                peak_running: 0,
                steps: 0,
            }),
            work: Condvar::new(),
        }
    }

    fn set_max(&self, max: usize) {
        self.max
            .store(max.clamp(1, MAX_POOL_THREADS), Ordering::Relaxed);
    }

    fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }

    /// Registers an open log: workers stay while one is registered.
    pub(crate) fn attach(&self) {
        lock(&self.state).users += 1;
    }

    /// Unregisters a log; idle workers exit once none is left.
    pub(crate) fn detach(&self) {
        let none_left = {
            let mut st = lock(&self.state);
            st.users = st.users.saturating_sub(1);
            st.users == 0
        };
        if none_left {
            self.work.notify_all();
        }
    }

    /// The pool's figures now.
    pub(crate) fn stats(&self) -> PoolStats {
        let st = lock(&self.state);
        PoolStats {
            threads: st.threads,
            peak_threads: st.peak_threads,
            peak_running: st.peak_running,
            steps: st.steps,
            users: st.users,
        }
    }

    /// Gives `job` work: queues it unless it is queued already; a running job is queued again
    /// when its step returns.
    pub(crate) fn notify(&'static self, job: Arc<dyn Job>) {
        let s = &job.schedule().0;
        loop {
            match s.load(Ordering::Acquire) {
                IDLE => {
                    if s.compare_exchange(IDLE, QUEUED, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        return self.push(job);
                    }
                }
                RUNNING => {
                    if s.compare_exchange(RUNNING, NOTIFIED, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        return;
                    }
                }
                _ => return,
            }
        }
    }

    /// Like [`Pool::notify`], but an idle job runs its step on this thread at once, when it
    /// agrees to ([`Job::run_here`]): the hand-over to a worker and back (a wake, two context
    /// switches) cost more than a short step. Work that arrives while the step runs is taken
    /// by up to [`HERE_STEPS`] steps in all; then, or when the job declines, it is queued
    /// for the pool as [`Pool::notify`] would. A job running or queued already is only
    /// notified.
    pub(crate) fn notify_or_run_here(&'static self, job: Arc<dyn Job>) {
        let s = &job.schedule().0;
        if s.compare_exchange(IDLE, RUNNING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return self.notify(job);
        }
        for _ in 0..HERE_STEPS {
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run_here()));
            match ran {
                Ok(true) => {}
                Ok(false) => break,
                Err(_) => {
                    tracing::error!(
                        pool = self.name,
                        "a storage step panicked; its namespace stops writing"
                    );
                    break;
                }
            }
            if s.compare_exchange(RUNNING, IDLE, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return;
            }
            // Notified while it ran: it is RUNNING again for the next step.
            s.store(RUNNING, Ordering::Release);
        }
        // Declined, or still notified after the last step: the pool takes it from here.
        s.store(QUEUED, Ordering::Release);
        self.push(job);
    }

    fn push(&'static self, job: Arc<dyn Job>) {
        let spawn = {
            let mut st = lock(&self.state);
            st.queue.push_back(job);
            if st.queue.len() <= st.idle || st.threads >= self.max() {
                false
            } else {
                st.threads += 1;
                st.peak_threads = st.peak_threads.max(st.threads);
                true
            }
        };
        if !spawn {
            self.work.notify_one();
            return;
        }
        let started = std::thread::Builder::new()
            .name(self.name.to_owned())
            .spawn(move || self.work_loop());
        if let Err(e) = started {
            let mut st = lock(&self.state);
            st.threads -= 1;
            tracing::error!(pool = self.name, threads = st.threads, error = %e, "could not start a storage thread");
            drop(st);
            self.work.notify_one();
        }
    }

    fn work_loop(&'static self) {
        let mut st = lock(&self.state);
        loop {
            let Some(job) = st.queue.pop_front() else {
                // Shutdown arm: no log registered, nothing queued. A lowered bound also
                // retires idle workers above it.
                if st.users == 0 || st.threads > self.max() {
                    st.threads -= 1;
                    return;
                }
                st.idle += 1;
                st = self.work.wait(st).unwrap_or_else(|e| e.into_inner());
                st.idle -= 1;
                continue;
            };
            st.running += 1;
            st.steps += 1;
            st.peak_running = st.peak_running.max(st.running);
            drop(st);
            let s = &job.schedule().0;
            s.store(RUNNING, Ordering::Release);
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run())).is_err() {
                tracing::error!(
                    pool = self.name,
                    "a storage step panicked; its namespace stops writing"
                );
            }
            let again = s
                .compare_exchange(RUNNING, IDLE, Ordering::AcqRel, Ordering::Acquire)
                .is_err();
            st = lock(&self.state);
            st.running -= 1;
            if again {
                s.store(QUEUED, Ordering::Release);
                st.queue.push_back(job);
            }
        }
    }
}

/// Figures of the writer pool.
pub fn writer_stats() -> PoolStats {
    WRITERS.stats()
}

/// Figures of the sync pool.
pub fn sync_stats() -> PoolStats {
    SYNCERS.stats()
}

/// Times armed on the timer thread and not yet due (stale ones included).
pub fn timer_entries() -> usize {
    super::timers::TIMERS.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    struct Counter {
        schedule: Schedule,
        runs: AtomicU64,
        done: Mutex<u64>,
        cv: Condvar,
    }

    impl Job for Counter {
        fn schedule(&self) -> &Schedule {
            &self.schedule
        }
        fn run(&self) {
            let n = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
            *lock(&self.done) = n;
            self.cv.notify_all();
        }
    }

    static TEST_POOL: Pool = Pool::new("bus-test", 2);

    #[test]
    fn a_job_notified_while_queued_runs_once_and_threads_leave_when_unused() {
        TEST_POOL.attach();
        let job = Arc::new(Counter {
            schedule: Schedule::default(),
            runs: AtomicU64::new(0),
            done: Mutex::new(0),
            cv: Condvar::new(),
        });
        // Queued, not yet run: further notifications do not queue it twice.
        job.schedule.0.store(QUEUED, Ordering::SeqCst);
        TEST_POOL.notify(job.clone());
        assert_eq!(lock(&TEST_POOL.state).queue.len(), 0);
        job.schedule.0.store(IDLE, Ordering::SeqCst);
        for _ in 0..100 {
            TEST_POOL.notify(job.clone());
        }
        let mut done = lock(&job.done);
        while *done == 0 {
            done = job.cv.wait(done).unwrap();
        }
        drop(done);
        assert!(TEST_POOL.stats().peak_threads <= 2);
        TEST_POOL.detach();
        // Without users, the workers leave once idle.
        let mut st = lock(&TEST_POOL.state);
        while st.threads > 0 {
            st = TEST_POOL
                .work
                .wait_timeout(st, std::time::Duration::from_millis(10))
                .unwrap()
                .0;
        }
        assert!(job.runs.load(Ordering::SeqCst) >= 1);
    }
}
