//! [`AuthFailures`]: failed authentications per client address, so that guessing tokens
//! costs time.
//!
//! A client address (an IPv4 address, or an IPv6 /64, as for the connection limit) may fail
//! [`MAX_FAILURES`] times within [`WINDOW`]; past that, every credential it presents is
//! refused with `429 too_many_auth_failures` and `Retry-After` until its window ends, valid
//! or not (so a guess that would have been right teaches nothing). Requests without any
//! credential are not counted: they fail without guessing.
//!
//! Bound: at most [`MAX_ADDRESSES`] addresses are remembered. When the table is full,
//! expired windows are dropped first; if none has expired, the address with the fewest
//! failures is forgotten (an attacker spreading guesses over more addresses than that gets
//! at most `MAX_FAILURES` guesses per address per window, as before).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures an address may have within one window.
pub const MAX_FAILURES: u32 = 20;
/// The window over which failures count.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most.
pub const MAX_ADDRESSES: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// The failure table.
#[derive(Debug, Default)]
pub struct AuthFailures {
    table: Mutex<HashMap<IpAddr, Window>>,
}

impl AuthFailures {
    /// `Some(wait)` when `ip` is blocked at `now` for `wait` more.
    pub fn blocked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let key = crate::connection::client_limits::key(ip);
        let table = crate::sync::lock(&self.table);
        let w = table.get(&key)?;
        let ends = w.started + WINDOW;
        (w.failures >= MAX_FAILURES && now < ends).then(|| ends - now)
    }

    /// Counts one failure of `ip` at `now`.
    pub fn record(&self, ip: IpAddr, now: Instant) {
        let key = crate::connection::client_limits::key(ip);
        let mut table = crate::sync::lock(&self.table);
        if !table.contains_key(&key) && table.len() >= MAX_ADDRESSES {
            table.retain(|_, w| now < w.started + WINDOW);
            if table.len() >= MAX_ADDRESSES
                && let Some(k) = table
                    .iter()
                    .min_by_key(|(_, w)| w.failures)
                    .map(|(k, _)| *k)
            {
                table.remove(&k);
            }
        }
        let w = table.entry(key).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now >= w.started + WINDOW {
            *w = Window {
                started: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
    }

    /// Addresses remembered now.
    pub fn len(&self) -> usize {
        crate::sync::lock(&self.table).len()
    }

    /// Whether no address is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_blocked_after_its_failures_until_the_window_ends() {
        let f = AuthFailures::default();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..MAX_FAILURES - 1 {
            f.record(ip, t0);
        }
        assert_eq!(f.blocked(ip, t0), None);
        f.record(ip, t0);
        assert_eq!(f.blocked(ip, t0), Some(WINDOW));
        assert_eq!(f.blocked(other, t0), None);
        let later = t0 + WINDOW;
        assert_eq!(f.blocked(ip, later), None);
        f.record(ip, later);
        assert_eq!(f.blocked(ip, later), None, "a new window starts afresh");
    }

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        let f = AuthFailures::default();
        let t0 = Instant::now();
        for i in 0..MAX_FAILURES {
            let ip: IpAddr = format!("2001:db8:1:2::{i:x}").parse().unwrap();
            f.record(ip, t0);
        }
        assert!(
            f.blocked("2001:db8:1:2::ffff".parse().unwrap(), t0)
                .is_some()
        );
        assert!(f.blocked("2001:db8:1:3::1".parse().unwrap(), t0).is_none());
    }

    #[test]
    fn the_table_is_bounded() {
        let f = AuthFailures::default();
        let t0 = Instant::now();
        for i in 0..(MAX_ADDRESSES as u32 + 50) {
            f.record(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert_eq!(f.len(), MAX_ADDRESSES);
    }
}
