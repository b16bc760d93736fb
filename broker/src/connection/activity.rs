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
#[derive(Debug)]
pub struct Activity {
    /// The state the rule reads.
    state: Mutex<State>,
    /// Woken when a deadline may have moved earlier, so the watchdog looks again.
    changed: Notify,
}

/// The facts the rule is made of.
#[derive(Debug, Clone)]
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
}

impl Activity {
    /// A connection accepted at `now`.
    pub fn new(now: Instant) -> Activity {
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
            }),
            changed: Notify::new(),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        // A panic while holding this lock leaves only plain values behind; keep using them.
        f(&mut crate::sync::lock(&self.state))
    }

    /// Bytes `first` were read at `now` (`first`: the start of what was read).
    pub fn on_read(&self, now: Instant, first: &[u8]) {
        let woke = self.with(|s| {
            if !s.read_any {
                s.read_any = true;
                let n = first.len().min(H2_PREFACE_START.len());
                if n > 0 && first[..n] == H2_PREFACE_START[..n] {
                    s.h2 = true;
                }
            }
            if s.open == 0 && s.head_since.is_none() && s.started > 0 && !s.h2 {
                s.head_since = Some(now);
                return true;
            }
            false
        });
        if woke {
            self.changed.notify_waiters();
        }
    }

    /// The connection speaks HTTP/2 (negotiated by ALPN).
    pub fn set_h2(&self) {
        self.with(|s| s.h2 = true);
    }

    /// The socket accepted output (`accepted`) or refused it for now, at `now`.
    pub fn on_write(&self, now: Instant, accepted: bool) {
        let woke = self.with(|s| match (accepted, s.blocked_since) {
            (true, Some(_)) => {
                s.blocked_since = None;
                false
            }
            (false, None) => {
                s.blocked_since = Some(now);
                true
            }
            _ => false,
        });
        if woke {
            self.changed.notify_waiters();
        }
    }

    /// A request started (its head was read whole).
    pub fn request_started(&self) {
        let woke = self.with(|s| {
            s.open += 1;
            s.started += 1;
            s.head_since = None;
            s.open == 1
        });
        if woke {
            self.changed.notify_waiters();
        }
    }

    /// A request's response ended (written whole, or dropped), at `now`.
    pub fn request_ended(&self, now: Instant) {
        let woke = self.with(|s| {
            s.open = s.open.saturating_sub(1);
            if s.open == 0 {
                s.idle_since = now;
                return true;
            }
            false
        });
        if woke {
            self.changed.notify_waiters();
        }
    }

    /// The rule at `now`: `Err` with the reason when the connection must close, otherwise
    /// the next instant at which it might (`None`: not before something changes).
    pub fn check(&self, now: Instant, t: &Timeouts) -> Result<Option<Instant>, Reason> {
        let s = self.with(|s| s.clone());
        let mut next: Option<Instant> = None;
        if let Some(since) = s.blocked_since {
            let at = since + t.stalled;
            if now >= at {
                return Err(Reason::Stalled);
            }
            next = Some(at);
        }
        if s.open == 0 {
            let (at, reason) = if s.started == 0 {
                (s.accepted + t.header, Reason::NoRequest)
            } else if let Some(h) = s.head_since {
                (h + t.header, Reason::SlowHeader)
            } else {
                (s.idle_since + t.idle, Reason::Idle)
            };
            if now >= at {
                return Err(reason);
            }
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        Ok(next)
    }
}

/// Resolves with the reason once `activity` must be closed under `timeouts`.
pub async fn watch(activity: &Activity, timeouts: Timeouts) -> Reason {
    loop {
        let changed = activity.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        match activity.check(Instant::now(), &timeouts) {
            Err(reason) => return reason,
            Ok(Some(at)) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = &mut changed => {}
                }
            }
            Ok(None) => changed.await,
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
        let a = Activity::new(t0);
        assert_eq!(a.check(t0, &T), Ok(Some(t0 + secs(10))));
        // Half a head changes nothing: the head must be whole by then.
        a.on_read(t0 + secs(9), b"GET / HT");
        assert_eq!(a.check(t0 + secs(10), &T), Err(Reason::NoRequest));
    }

    #[test]
    fn an_idle_keep_alive_closes_after_the_idle_timeout() {
        let t0 = Instant::now();
        let a = Activity::new(t0);
        a.request_started();
        assert_eq!(
            a.check(t0 + secs(1000), &T),
            Ok(None),
            "open requests are not timed"
        );
        a.request_ended(t0 + secs(1));
        assert_eq!(a.check(t0 + secs(60), &T), Ok(Some(t0 + secs(61))));
        assert_eq!(a.check(t0 + secs(61), &T), Err(Reason::Idle));
    }

    #[test]
    fn a_later_head_must_be_whole_within_the_header_timeout() {
        let t0 = Instant::now();
        let a = Activity::new(t0);
        a.request_started();
        a.request_ended(t0);
        a.on_read(t0 + secs(5), b"GET /");
        assert_eq!(a.check(t0 + secs(15), &T), Err(Reason::SlowHeader));
        // Once the head is whole, the request is open and not timed.
        a.request_started();
        assert_eq!(a.check(t0 + secs(15), &T), Ok(None));
    }

    #[test]
    fn http2_frames_between_requests_are_not_a_head() {
        let t0 = Instant::now();
        let a = Activity::new(t0);
        a.on_read(t0, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        a.request_started();
        a.request_ended(t0);
        a.on_read(t0 + secs(5), b"\0\0\x08\x06");
        assert_eq!(a.check(t0 + secs(15), &T), Ok(Some(t0 + secs(60))));
    }

    #[test]
    fn a_stalled_socket_closes_even_with_a_request_open() {
        let t0 = Instant::now();
        let a = Activity::new(t0);
        a.request_started();
        a.on_write(t0 + secs(1), false);
        // Refused again later: the stall counts from the first refusal.
        a.on_write(t0 + secs(100), false);
        assert_eq!(a.check(t0 + secs(300), &T), Ok(Some(t0 + secs(301))));
        assert_eq!(a.check(t0 + secs(301), &T), Err(Reason::Stalled));
        // Progress resets it.
        a.on_write(t0 + secs(301), true);
        assert_eq!(a.check(t0 + secs(301), &T), Ok(None));
    }

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_wakes_when_a_deadline_moves_earlier() {
        let a = std::sync::Arc::new(Activity::new(Instant::now()));
        a.request_started();
        let start = Instant::now();
        let w = tokio::spawn({
            let a = a.clone();
            async move { watch(&a, T).await }
        });
        tokio::task::yield_now().await;
        a.request_ended(Instant::now());
        assert_eq!(w.await.unwrap(), Reason::Idle);
        assert_eq!(start.elapsed(), secs(60));
    }
}
