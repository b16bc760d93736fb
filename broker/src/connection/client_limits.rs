//! [`ClientLimits`]: at most `--max-connections-per-client` connections (or, behind a
//! trusted proxy, open requests) per client address, so that one client cannot hold every
//! slot of `--max-connections`.
//!
//! An IPv6 client is counted by its /64 (one host usually holds a whole /64), an IPv4
//! client by its address. Loopback clients are not limited unless asked
//! (`--limit-loopback`), so local benchmarks and tests are unaffected.
//!
//! Bound: the table holds one entry per address with at least one slot held, so it is no
//! larger than the connections (or requests) open, itself bounded by `--max-connections`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

/// The per-client counts.
#[derive(Debug)]
pub struct ClientLimits {
    /// Slots per client address at most.
    max: usize,
    /// Whether loopback clients are counted too.
    limit_loopback: bool,
    /// Slots held per client key. A `std` mutex: held for one map update, never across an
    /// await.
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// One slot of one client, given back on drop. Holds nothing for a client that is not
/// limited.
#[derive(Debug)]
pub struct ClientPermit {
    /// The table and the key counted, if counted.
    slot: Option<(Arc<ClientLimits>, IpAddr)>,
}

impl ClientLimits {
    /// At most `max` slots per client; loopback clients only when `limit_loopback`.
    pub fn new(max: usize, limit_loopback: bool) -> Arc<ClientLimits> {
        Arc::new(ClientLimits {
            max: max.max(1),
            limit_loopback,
            held: Mutex::new(HashMap::new()),
        })
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.max
    }

    /// A slot for `ip`, or `None` when it holds `max` already.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<ClientPermit> {
        let ip = ip.to_canonical();
        if ip.is_loopback() && !self.limit_loopback {
            return Some(ClientPermit { slot: None });
        }
        let key = key(ip);
        let mut held = self.lock();
        let n = held.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ClientPermit {
            slot: Some((self.clone(), key)),
        })
    }

    /// Slots held by `ip` now.
    pub fn held(&self, ip: IpAddr) -> usize {
        self.lock()
            .get(&key(ip.to_canonical()))
            .copied()
            .unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        crate::sync::lock(&self.held)
    }
}

/// The key a client is counted under: its IPv4 address, or its IPv6 /64.
pub(crate) fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

impl Drop for ClientPermit {
    fn drop(&mut self) {
        if let Some((limits, key)) = self.slot.take() {
            let mut held = limits.lock();
            if let Some(n) = held.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    held.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_each_client_and_gives_slots_back() {
        let l = ClientLimits::new(2, false);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let p1 = l.try_acquire(a).unwrap();
        let _p2 = l.try_acquire(a).unwrap();
        assert!(l.try_acquire(a).is_none());
        assert!(l.try_acquire(b).is_some(), "another client is not affected");
        drop(p1);
        assert!(l.try_acquire(a).is_some());
    }

    #[test]
    fn loopback_is_free_unless_asked_and_ipv6_counts_by_64() {
        let free = ClientLimits::new(1, false);
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let _held: Vec<_> = (0..5).map(|_| free.try_acquire(lo).unwrap()).collect();
        assert_eq!(free.held(lo), 0);
        let strict = ClientLimits::new(1, true);
        let _p = strict.try_acquire(lo).unwrap();
        assert!(strict.try_acquire(lo).is_none());
        let _q = strict.try_acquire("2001:db8::1".parse().unwrap()).unwrap();
        assert!(
            strict
                .try_acquire("2001:db8::ffff".parse().unwrap())
                .is_none()
        );
        assert!(
            strict
                .try_acquire("2001:db8:0:1::1".parse().unwrap())
                .is_some()
        );
        assert!(
            strict
                .try_acquire("::ffff:127.0.0.1".parse().unwrap())
                .is_none(),
            "a mapped address counts as the IPv4 one"
        );
    }
}
