//! [`Timers`]: the one thread that wakes namespaces' writers when something is due — an
//! `interval` sync, a read-only namespace's probe, or age retention — so that an idle
//! namespace costs no periodic work.
//!
//! **Flow.** A writer step that leaves something due later arms its time with
//! [`Timers::arm`]; the thread sleeps until the earliest armed time, then notifies those
//! writers on the [`WRITERS`](super::pool::WRITERS) pool, where their next step does what is
//! due. A namespace with nothing pending arms nothing; age retention arms the time its oldest
//! segment becomes too old, not a tick.
//!
//! **Bound.** A writer arms a time only when it is earlier than the one it has armed (or that
//! one has passed), so each namespace has at most one entry per kind of timer waiting; an
//! entry whose writer has closed is dropped when it comes due.
//!
//! **Shutdown.** The thread is started by the first arm and exits once no entry is left.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::{Condvar, Mutex, Weak};
use std::time::Instant;

use super::pool::{Job, WRITERS};
use crate::sync::lock;

/// The process's timers.
pub(crate) static TIMERS: Timers = Timers::new();

/// One armed time.
struct Entry {
    /// When it is due.
    due: Instant,
    /// Order of arming, to break ties.
    seq: u64,
    /// The writer to wake.
    job: Weak<dyn Job>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    /// Reversed: the heap's top is the earliest entry.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

struct State {
    /// Armed times, earliest on top.
    heap: BinaryHeap<Entry>,
    /// Entries armed so far (tie-breaker).
    seq: u64,
    /// Whether the thread runs.
    running: bool,
}

/// The timer thread's state (see the module docs).
pub(crate) struct Timers {
    /// The armed times.
    state: Mutex<State>,
    /// Wakes the thread when an earlier time is armed.
    changed: Condvar,
}

impl Timers {
    const fn new() -> Timers {
        Timers {
            state: Mutex::new(State {
                heap: BinaryHeap::new(),
                seq: 0,
                running: false,
            }),
            changed: Condvar::new(),
        }
    }

    /// Wakes `job` on the writer pool at `due`.
    pub(crate) fn arm(&'static self, due: Instant, job: Weak<dyn Job>) {
        let (earliest, start) = {
            let mut st = lock(&self.state);
            st.seq += 1;
            let seq = st.seq;
            let earliest = st.heap.peek().is_none_or(|e| due < e.due);
            st.heap.push(Entry { due, seq, job });
            let start = !st.running;
            st.running = true;
            (earliest, start)
        };
        if start {
            let started = std::thread::Builder::new()
                .name("bus-timers".to_owned())
                .spawn(move || self.run());
            if let Err(e) = started {
                lock(&self.state).running = false;
                tracing::error!(error = %e, "could not start the storage timer thread");
            }
        } else if earliest {
            self.changed.notify_one();
        }
    }

    /// Entries waiting.
    pub(crate) fn len(&self) -> usize {
        lock(&self.state).heap.len()
    }

    fn run(&'static self) {
        let mut st = lock(&self.state);
        loop {
            let now = Instant::now();
            let mut due = Vec::new();
            while st.heap.peek().is_some_and(|e| e.due <= now) {
                if let Some(e) = st.heap.pop() {
                    due.push(e.job);
                }
            }
            if !due.is_empty() {
                drop(st);
                for job in due.into_iter().filter_map(|j| j.upgrade()) {
                    WRITERS.notify(job);
                }
                st = lock(&self.state);
                continue;
            }
            let Some(next) = st.heap.peek().map(|e| e.due) else {
                // Shutdown arm: nothing armed.
                st.running = false;
                return;
            };
            st = self
                .changed
                .wait_timeout(st, next.saturating_duration_since(now))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}
