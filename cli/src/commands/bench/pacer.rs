//! [`Pacer`]: lets an open loop's requests go at their due times, with a timer finer than the
//! async runtime's.
//!
//! An open loop's latency runs from when a request was due, not from when it was sent, so
//! that time spent waiting for a free connection counts (no coordinated omission). That
//! makes the pacing part of every figure. tokio's timer fires on millisecond ticks and
//! rounds each deadline up to the next one: requests paced by `sleep_until` would leave up
//! to a millisecond late, and the lateness would count as the broker's latency.
//!
//! Flow: one thread of its own sleeps with the operating system's timer (`nanosleep`, late by
//! the thread's timer slack, which on Linux it lowers from the default 50 µs to 1 µs, and by
//! the time it takes to be scheduled) until the next request is due. It then releases every
//! request due by then as permits of a semaphore that the connections wait on
//! ([`Pacer::wait`]), which wakes as many of them as were released. Which number a
//! connection sends is still claimed from the load loop's counter after its permit, so the
//! numbers sent stay `0, 1, 2, ...` in order, and none goes before it is due.
//!
//! End: once the next request would be due at `stop` or later, or all `requests` were
//! released, the pacer releases one permit more per connection, so that every connection
//! claims a number past the end and stops; then its thread ends. Dropping the [`Pacer`]
//! (a failed run) ends the thread within [`MAX_NAP`].
//!
//! Bound: one thread per run, and at most `requests` + `connections` permits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::error::CliError;

/// The longest the pacer sleeps before it looks whether it was dropped.
const MAX_NAP: Duration = Duration::from_millis(20);

/// How late the kernel may end the pacer's sleeps, in nanoseconds: at Linux's default of
/// 50 µs, an open loop's median latency read about 50 µs higher than at this.
#[cfg(target_os = "linux")]
const TIMER_SLACK_NS: u64 = 1_000;

/// When each request of an open loop is due.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// When request 0 is due.
    pub start: Instant,
    /// Seconds between two requests (1 / rate).
    pub interval: f64,
    /// No request due at or after this is sent.
    pub stop: Instant,
    /// Requests at most.
    pub requests: u64,
}

impl Schedule {
    /// When request `j` is due, if it is sent at all: `None` past `requests`, at or after
    /// `stop`, or past any time the clock can name (a tiny `--rate`).
    pub fn due(&self, j: u64) -> Option<Instant> {
        if j >= self.requests {
            return None;
        }
        let after = Duration::try_from_secs_f64(self.interval * j as f64).ok()?;
        self.start.checked_add(after).filter(|&due| due < self.stop)
    }
}

/// The thread that releases requests as they fall due; see the module's documentation.
pub struct Pacer {
    schedule: Schedule,
    permits: Arc<Semaphore>,
    dropped: Arc<AtomicBool>,
}

impl Pacer {
    /// Starts pacing `schedule` for `connections` connections.
    pub fn start(schedule: Schedule, connections: usize) -> Result<Pacer, CliError> {
        let permits = Arc::new(Semaphore::new(0));
        let dropped = Arc::new(AtomicBool::new(false));
        let (p, d) = (permits.clone(), dropped.clone());
        std::thread::Builder::new()
            .name("bench-pacer".into())
            .spawn(move || pace(schedule, connections, &p, &d))
            .map_err(|e| CliError::with_cause("cannot start the bench's pacer", e))?;
        Ok(Pacer {
            schedule,
            permits,
            dropped,
        })
    }

    /// What it paces.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// Waits until the next request may go.
    pub async fn wait(&self) {
        // The semaphore is never closed, so acquiring fails only if it was: then go at once.
        if let Ok(p) = self.permits.acquire().await {
            p.forget();
        }
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::Relaxed);
    }
}

/// The pacer's thread: releases request `j` once `schedule.due(j)` has passed, and one more
/// permit per connection at the end.
fn pace(schedule: Schedule, connections: usize, permits: &Semaphore, dropped: &AtomicBool) {
    tighten_timer_slack();
    let mut next = 0u64;
    while let Some(due) = schedule.due(next) {
        if dropped.load(Ordering::Relaxed) {
            return;
        }
        let now = Instant::now();
        if due > now {
            std::thread::sleep((due - now).min(MAX_NAP));
            continue;
        }
        let first = next;
        while schedule.due(next).is_some_and(|d| d <= now) {
            next += 1;
        }
        permits.add_permits((next - first) as usize);
    }
    permits.add_permits(connections);
}

/// Lowers this thread's timer slack to [`TIMER_SLACK_NS`] (Linux; elsewhere nothing).
fn tighten_timer_slack() {
    #[cfg(target_os = "linux")]
    {
        let slack = std::num::NonZeroU64::new(TIMER_SLACK_NS);
        if let Err(e) = rustix::thread::set_current_timer_slack(slack) {
            tracing::debug!(error = %e, "the bench's pacer keeps the default timer slack");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Far longer than any of these schedules: reached only if the pacer left a waiter.
    const GUARD: Duration = Duration::from_secs(30);

    fn schedule(interval: f64, requests: u64, stop_after: Duration) -> Schedule {
        let start = Instant::now();
        Schedule {
            start,
            interval,
            stop: start + stop_after,
            requests,
        }
    }

    #[test]
    fn a_schedule_sends_what_is_due_before_stop_and_within_the_count() {
        let s = schedule(0.001, 100, Duration::from_millis(10));
        assert_eq!(s.due(3).unwrap() - s.start, Duration::from_millis(3));
        assert!(s.due(9).is_some());
        assert_eq!(s.due(10), None, "due at stop");
        let s = schedule(0.001, 5, Duration::from_secs(1));
        assert!(s.due(4).is_some());
        assert_eq!(s.due(5), None, "past the count");
        // --rate 1e-300: the second request is due past any time there is.
        let s = schedule(1e300, 5, Duration::from_secs(1));
        assert_eq!(s.due(0), Some(s.start));
        assert_eq!(s.due(1), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_pacer_thread_asks_for_a_tight_timer_slack() {
        let slack = std::thread::spawn(|| {
            tighten_timer_slack();
            rustix::thread::current_timer_slack()
        });
        assert_eq!(slack.join().unwrap().unwrap(), TIMER_SLACK_NS);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_request_goes_before_it_is_due_and_every_connection_stops() {
        // 30 requests, one every 200 µs; 3 connections claim numbers as the load loop does.
        let s = schedule(0.0002, 30, Duration::from_secs(10));
        let pacer = Arc::new(Pacer::start(s, 3).unwrap());
        let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..3 {
            let (pacer, next) = (pacer.clone(), next.clone());
            tasks.spawn(async move {
                let mut sent = Vec::new();
                loop {
                    pacer.wait().await;
                    let j = next.fetch_add(1, Ordering::Relaxed);
                    let Some(due) = s.due(j) else {
                        return sent;
                    };
                    assert!(Instant::now() >= due, "request {j} went before it was due");
                    sent.push(j);
                }
            });
        }
        let mut all = Vec::new();
        // Bounded so that a connection left waiting fails the test instead of hanging it.
        let joined = tokio::time::timeout(GUARD, async {
            while let Some(sent) = tasks.join_next().await {
                all.extend(sent.unwrap());
            }
        });
        joined.await.expect("a connection was never released");
        all.sort_unstable();
        assert_eq!(all, (0..30).collect::<Vec<_>>());
        // One past-the-end number claimed per connection, and nothing more released.
        assert_eq!(next.load(Ordering::Relaxed), 33);
        assert_eq!(pacer.permits.available_permits(), 0);
    }

    #[tokio::test]
    async fn a_run_that_ends_at_its_stop_releases_the_connections() {
        // Due every 10 ms, stopped after 25 ms: 0, 1 and 2 go, then the end.
        let s = schedule(0.01, u64::MAX, Duration::from_millis(25));
        let pacer = Pacer::start(s, 1).unwrap();
        let mut j = 0;
        loop {
            let waited = tokio::time::timeout(GUARD, pacer.wait()).await;
            waited.expect("the connection was never released");
            let Some(due) = s.due(j) else {
                break;
            };
            assert!(Instant::now() >= due);
            j += 1;
        }
        assert_eq!(j, 3);
    }
}
