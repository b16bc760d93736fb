//! [`Activity`]: what one connection is doing (requests open, when bytes last moved, whether
//! the socket refuses output), shared by its I/O wrapper, its request counter and its
//! watchdog; [`Timeouts`] and the rule ([`Activity::check`]) that says when a silent, slow,
//! idle or stalled connection is closed; and [`watch`], the watchdog that applies it.
//!
//! The rule, for a connection with no request open:
//! - one that never sent a whole request head is closed `header` after it was accepted
//!   (a socket that sends nothing, or half a head);
//! - one that served requests and then started sending the next head (HTTP/1) is closed
//!   `header` after that head's first byte;
//! - otherwise it is idle, and closed `idle` after its last request ended.
//!
//! And for any connection: one whose socket accepted no byte of pending output for
//! `stalled` is closed (a subscriber that stopped reading; it slows only itself). A request
//! that is open and whose output flows (an SSE stream, a long pull) is never timed out here;
//! its body has its own timeout (`http/body_deadline.rs`).
//!
//! Time is tokio's, so tests may pause it.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// The connection timeouts (`--header-timeout`, `--idle-timeout`,
/// `--stalled-stream-timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// From accepting a connection, or from the first byte of a later request head, to the
    /// whole head.
    pub header: Duration,
    /// From the end of the last request to the next one.
    pub idle: Duration,
    /// Longest time the socket may accept no byte while output waits.
    pub stalled: Duration,
}

/// How far off a deadline is put when its timeout is too long to add to an instant: a
/// century, beyond any connection's life.
const FAR_OFF: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The instant `timeout` after `since`. A timeout too long for the clock (`--idle-timeout
/// 500000000000d` parses) gives an instant far off instead of overflowing.
pub fn deadline_after(since: Instant, timeout: Duration) -> Instant {
    since
        .checked_add(timeout)
        .unwrap_or_else(|| since + FAR_OFF)
}

/// Why the watchdog closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No whole request head within the header timeout of accepting the connection.
    NoRequest,
    /// A later request head did not arrive whole within the header timeout.
    SlowHeader,
    /// No request within the idle timeout of the last one.
    Idle,
    /// The socket accepted no byte of pending output within the stalled-stream timeout.
    Stalled,
}

impl Reason {
    /// For the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoRequest => "no request within the header timeout",
            Reason::SlowHeader => "request head not complete within the header timeout",
            Reason::Idle => "idle past the idle timeout",
            Reason::Stalled => "output stalled past the stalled-stream timeout",
        }
    }
}

/// The start of an HTTP/2 connection preface.
const H2_PREFACE_START: &[u8] = b"PRI * HTTP/2.0";

/// What one connection is doing. Every method takes the lock for a few assignments only.
///
/// The watchdog is woken only when a change brings the closing deadline earlier than the
/// instant it sleeps until. A later deadline waits for the watchdog's own wake-up, which
/// looks again: so a busy keep-alive connection, whose deadlines only move later, does not
/// wake it (nor re-arm its timer) for every request. A look that finds no deadline (a
/// request open) still sleeps until a next look, the shortest timeout away, so that the
/// end of that request, which gives the connection its idle deadline, need not wake it.
#[derive(Debug)]
pub struct Activity {
    /// The state the rule reads.
    state: Mutex<State>,
    /// Woken when the deadline moved earlier than the one the watchdog waits for.
    changed: Notify,
    /// The timeouts the rule applies.
    timeouts: Timeouts,
}

/// The facts the rule is made of.
#[derive(Debug)]
struct State {
    /// When the connection was accepted.
    accepted: Instant,
    /// Requests (HTTP/2 streams) whose response is not finished.
    open: usize,
    /// Requests ever started on the connection.
    started: u64,
    /// When `open` last became 0 (or `accepted`).
    idle_since: Instant,
    /// When bytes of a next request head started to arrive while none was open (HTTP/1).
    head_since: Option<Instant>,
    /// Since when the socket has refused pending output, if it does.
    blocked_since: Option<Instant>,
    /// Whether any byte was read yet (the first read tells HTTP/2 by its preface).
    read_any: bool,
    /// HTTP/2: frames between requests (pings, settings) are not a request head.
    h2: bool,
    /// The instant the watchdog sleeps until, from its last look (the deadline, or with
    /// none its next look, [`Activity::look_again`]); `None` before its first look.
    armed: Option<Instant>,
}

impl State {
    /// The deadlines that apply, each with the reason it closes the connection for (the
    /// stall first). A timeout too long to add to an instant sets no deadline.
    fn deadlines(&self, t: &Timeouts) -> [Option<(Instant, Reason)>; 2] {
        let after = |since: Instant, timeout: Duration, reason: Reason| {
            since.checked_add(timeout).map(|at| (at, reason))
        };
        let stalled = self
            .blocked_since
            .and_then(|since| after(since, t.stalled, Reason::Stalled));
        let quiet = if self.open > 0 {
            None
        } else if self.started == 0 {
            after(self.accepted, t.header, Reason::NoRequest)
        } else if let Some(h) = self.head_since {
            after(h, t.header, Reason::SlowHeader)
        } else {
            after(self.idle_since, t.idle, Reason::Idle)
        };
        [stalled, quiet]
    }

    /// The earliest deadline that applies.
    fn next_deadline(&self, t: &Timeouts) -> Option<Instant> {
        self.deadlines(t)
            .into_iter()
            .flatten()
            .map(|(at, _)| at)
            .min()
    }

    /// Whether the watchdog must look again: the deadline is now earlier than the one it
    /// sleeps until, or it has none.
    fn needs_wake(&self, t: &Timeouts) -> bool {
        match (self.next_deadline(t), self.armed) {
            (Some(next), Some(armed)) => next < armed,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

impl Activity {
    /// A connection accepted at `now`, closed under `timeouts`.
    pub fn new(now: Instant, timeouts: Timeouts) -> Activity {
        Activity {
            state: Mutex::new(State {
                accepted: now,
                open: 0,
                started: 0,
                idle_since: now,
                head_since: None,
                blocked_since: None,
                read_any: false,
                h2: false,
                armed: None,
            }),
            changed: Notify::new(),
            timeouts,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        // A panic while holding this lock leaves only plain values behind; keep using them.
        f(&mut crate::sync::lock(&self.state))
    }

    /// Applies `change`, then wakes the watchdog if the deadline moved earlier.
    fn change(&self, change: impl FnOnce(&mut State)) {
        let wake = self.with(|s| {
            change(s);
            s.needs_wake(&self.timeouts)
        });
        if wake {
            self.changed.notify_waiters();
        }
    }

    /// Bytes `first` were read at `now` (`first`: the start of what was read).
    pub fn on_read(&self, now: Instant, first: &[u8]) {
        self.change(|s| {
            if !s.read_any {
                s.read_any = true;
                let n = first.len().min(H2_PREFACE_START.len());
                if n > 0 && first[..n] == H2_PREFACE_START[..n] {
                    s.h2 = true;
                }
            }
            if s.open == 0 && s.head_since.is_none() && s.started > 0 && !s.h2 {
                s.head_since = Some(now);
            }
        });
    }

    /// The connection speaks HTTP/2 (negotiated by ALPN).
    pub fn set_h2(&self) {
        self.with(|s| s.h2 = true);
    }

    /// The socket accepted output (`accepted`) or refused it for now, at `now`.
    pub fn on_write(&self, now: Instant, accepted: bool) {
        self.change(|s| match (accepted, s.blocked_since) {
            (true, Some(_)) => s.blocked_since = None,
            (false, None) => s.blocked_since = Some(now),
            _ => {}
        });
    }

    /// A request started (its head was read whole).
    pub fn request_started(&self) {
        self.change(|s| {
            s.open += 1;
            s.started += 1;
            s.head_since = None;
        });
    }

    /// A request's response ended (written whole, or dropped), at `now`.
    pub fn request_ended(&self, now: Instant) {
        self.change(|s| {
            s.open = s.open.saturating_sub(1);
            if s.open == 0 {
                s.idle_since = now;
            }
        });
    }

    /// The watchdog's look at `now`: `Err` with the reason when the connection must close,
    /// otherwise the next instant at which it might (`None`: not before something changes).
    /// The watchdog sleeps until that instant, or with none until [`Activity::look_again`],
    /// and that is recorded as the instant it is armed for.
    pub fn check(&self, now: Instant) -> Result<Option<Instant>, Reason> {
        self.with(|s| {
            let deadlines = s.deadlines(&self.timeouts);
            if let Some((_, reason)) = deadlines.iter().flatten().find(|(at, _)| now >= *at) {
                return Err(*reason);
            }
            let next = s.next_deadline(&self.timeouts);
            s.armed = Some(next.unwrap_or_else(|| self.look_again(now)));
            Ok(next)
        })
    }

    /// When a watchdog whose look at `now` found no deadline looks again: the shortest
    /// timeout away, so that no deadline a later change sets can come before it unseen
    /// (each is at least that far from the change).
    pub fn look_again(&self, now: Instant) -> Instant {
        let t = &self.timeouts;
        deadline_after(now, t.header.min(t.idle).min(t.stalled))
    }
}

/// Resolves with the reason once `activity` must be closed under its timeouts.
pub async fn watch(activity: &Activity) -> Reason {
    loop {
        let changed = activity.changed.notified();
        tokio::pin!(changed);
        // Enabled before the look: a change made after it still wakes this wait.
        changed.as_mut().enable();
        let now = Instant::now();
        let at = match activity.check(now) {
            Err(reason) => return reason,
            Ok(at) => at.unwrap_or_else(|| activity.look_again(now)),
        };
        tokio::select! {
            () = tokio::time::sleep_until(at) => {}
            () = &mut changed => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        header: Duration::from_secs(10),
        idle: Duration::from_secs(60),
        stalled: Duration::from_secs(300),
    };

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_connection_that_sends_no_request_closes_after_the_header_timeout() {
        let t0 = Instant::now();
        let a = Activity::new(t0, T);
        assert_eq!(a.check(t0), Ok(Some(t0 + secs(10))));
        // Half a head changes nothing: the head must be whole by then.
        a.on_read(t0 + secs(9), b"GET / HT");
        assert_eq!(a.check(t0 + secs(10)), Err(Reason::NoRequest));
    }

    #[test]
    fn an_idle_keep_alive_closes_after_the_idle_timeout() {
        let t0 = Instant::now();
        let a = Activity::new(t0, T);
        a.request_started();
        assert_eq!(
            a.check(t0 + secs(1000)),
            Ok(None),
            "open requests are not timed"
        );
        a.request_ended(t0 + secs(1));
        assert_eq!(a.check(t0 + secs(60)), Ok(Some(t0 + secs(61))));
        assert_eq!(a.check(t0 + secs(61)), Err(Reason::Idle));
    }

    #[test]
    fn a_later_head_must_be_whole_within_the_header_timeout() {
        let t0 = Instant::now();
        let a = Activity::new(t0, T);
        a.request_started();
        a.request_ended(t0);
        a.on_read(t0 + secs(5), b"GET /");
        assert_eq!(a.check(t0 + secs(15)), Err(Reason::SlowHeader));
        // Once the head is whole, the request is open and not timed.
        a.request_started();
        assert_eq!(a.check(t0 + secs(15)), Ok(None));
    }

    #[test]
    fn http2_frames_between_requests_are_not_a_head() {
        let t0 = Instant::now();
        let a = Activity::new(t0, T);
        a.on_read(t0, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        a.request_started();
        a.request_ended(t0);
        a.on_read(t0 + secs(5), b"\0\0\x08\x06");
        assert_eq!(a.check(t0 + secs(15)), Ok(Some(t0 + secs(60))));
    }

    #[test]
    fn a_stalled_socket_closes_even_with_a_request_open() {
        let t0 = Instant::now();
        let a = Activity::new(t0, T);
        a.request_started();
        a.on_write(t0 + secs(1), false);
        // Refused again later: the stall counts from the first refusal.
        a.on_write(t0 + secs(100), false);
        assert_eq!(a.check(t0 + secs(300)), Ok(Some(t0 + secs(301))));
        assert_eq!(a.check(t0 + secs(301)), Err(Reason::Stalled));
        // Progress resets it.
        a.on_write(t0 + secs(301), true);
        assert_eq!(a.check(t0 + secs(301)), Ok(None));
    }

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_wakes_when_a_deadline_moves_earlier() {
        let a = std::sync::Arc::new(Activity::new(Instant::now(), T));
        a.request_started();
        let start = Instant::now();
        let w = tokio::spawn({
            let a = a.clone();
            async move { watch(&a).await }
        });
        tokio::task::yield_now().await;
        a.request_ended(Instant::now());
        assert_eq!(w.await.unwrap(), Reason::Idle);
        assert_eq!(start.elapsed(), secs(60));
    }

    /// The watchdog's wait for a change, enabled as `watch` enables it before a look.
    fn watchdog_wait(a: &Activity) -> std::pin::Pin<Box<tokio::sync::futures::Notified<'_>>> {
        let mut wait = Box::pin(a.changed.notified());
        wait.as_mut().enable();
        wait
    }

    /// Whether the watchdog's wait has been woken since it was enabled.
    fn woken(wait: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>) -> bool {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        wait.poll(&mut cx).is_ready()
    }

    #[test]
    fn a_busy_connection_does_not_wake_its_watchdog_for_every_request() {
        let t0 = Instant::now();
        let a = Activity::new(t0, T);
        a.request_started();
        a.request_ended(t0);
        a.on_read(t0, b"GET /");
        assert_eq!(a.check(t0), Ok(Some(t0 + secs(10))));
        let mut wait = watchdog_wait(&a);
        // Request after request: every deadline they set is later than the one armed.
        for ms in 1..=5 {
            let t = t0 + Duration::from_millis(ms);
            a.request_started();
            a.request_ended(t);
            a.on_read(t, b"GET /");
        }
        a.on_write(t0 + secs(1), false);
        assert!(!woken(wait.as_mut()), "no deadline moved earlier");
        // Its own wake-up finds the deadlines as they are now.
        assert_eq!(
            a.check(t0 + secs(10)),
            Ok(Some(t0 + Duration::from_millis(5) + secs(10)))
        );
        assert_eq!(
            a.check(t0 + Duration::from_millis(5) + secs(10)),
            Err(Reason::SlowHeader)
        );
    }

    #[test]
    fn the_end_of_a_request_open_at_the_last_look_does_not_wake_the_watchdog() {
        let t0 = Instant::now();
        let a = Activity::new(t0, T);
        a.request_started();
        // No deadline while the request is open: the next look is a header timeout away.
        assert_eq!(a.check(t0), Ok(None));
        assert_eq!(a.look_again(t0), t0 + secs(10));
        let mut wait = watchdog_wait(&a);
        // Its end sets the idle deadline, later than that look.
        a.request_ended(t0 + secs(1));
        assert!(
            !woken(wait.as_mut()),
            "the idle deadline is after the next look"
        );
        assert_eq!(a.check(t0 + secs(10)), Ok(Some(t0 + secs(61))));
        assert_eq!(a.check(t0 + secs(61)), Err(Reason::Idle));
    }

    #[test]
    fn a_slow_head_after_a_request_open_at_the_last_look_closes_on_time() {
        let t0 = Instant::now();
        let a = Activity::new(t0, T);
        a.request_started();
        assert_eq!(a.check(t0), Ok(None));
        let mut wait = watchdog_wait(&a);
        // The request ends and half of the next head arrives: its deadline (t0 + 11 s)
        // comes after the next look (t0 + 10 s), which finds it.
        a.request_ended(t0 + secs(1));
        a.on_read(t0 + secs(1), b"GET /");
        assert!(!woken(wait.as_mut()));
        assert_eq!(a.check(t0 + secs(10)), Ok(Some(t0 + secs(11))));
        assert_eq!(a.check(t0 + secs(11)), Err(Reason::SlowHeader));
    }

    #[test]
    fn a_timeout_too_long_for_an_instant_sets_no_deadline() {
        let t0 = Instant::now();
        let forever = Timeouts {
            header: Duration::MAX,
            idle: Duration::MAX,
            stalled: Duration::MAX,
        };
        let a = Activity::new(t0, forever);
        a.on_write(t0, false);
        a.request_started();
        a.request_ended(t0);
        a.on_read(t0, b"GET /");
        assert_eq!(a.check(t0 + secs(1_000_000)), Ok(None));
    }

    #[test]
    fn a_deadline_earlier_than_the_armed_one_wakes_the_watchdog() {
        let t0 = Instant::now();
        let a = Activity::new(t0, T);
        a.request_started();
        a.request_ended(t0);
        // Armed for the idle timeout; the next head's own timeout is sooner.
        assert_eq!(a.check(t0), Ok(Some(t0 + secs(60))));
        let mut wait = watchdog_wait(&a);
        a.on_read(t0 + secs(1), b"GET /");
        assert!(woken(wait.as_mut()));
        assert_eq!(a.check(t0 + secs(1)), Ok(Some(t0 + secs(11))));
    }
}
