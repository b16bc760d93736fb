//! [`Interest`]: the registry of live interest — every live subscription's pattern in the
//! subject trie, with what management lists about it.
//!
//! A subscription registers when it starts and holds an [`InterestGuard`]; dropping the
//! guard removes it. Request/reply asks the trie whether anyone listens
//! ([`Interest::has_subscribers`]); management lists and counts the entries.
//!
//! Bound: one entry per live SSE stream (plain or consumer member), so it grows with the
//! streams the server holds: the connection limit bounds HTTP/1.1 streams, and HTTP/2 caps
//! the streams per connection. Both maps are behind short `std` locks never held across an
//! await.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::storage::now_ns;
use crate::subject::{Pattern, Subject};
use crate::sync::lock;
use crate::trie::SharedSubjectTrie;

pub use bus_proto::SubscriptionInfo;

/// What is kept of one live subscription.
struct Entry {
    /// Its pattern.
    pattern: Pattern,
    /// When it started (ns since the epoch).
    started_ns: u64,
    /// Deliveries so far, counted by its guard.
    delivered: Arc<AtomicU64>,
    /// `stream` or `consumer`.
    kind: &'static str,
    /// Whether the reader behind it is live everywhere (set by that reader).
    live: Arc<AtomicBool>,
}

/// The live subscriptions. See the module docs.
#[derive(Default)]
pub struct Interest {
    /// Every live pattern, for matching subjects.
    trie: SharedSubjectTrie<u64>,
    /// Every live subscription by id, for listing.
    entries: Mutex<BTreeMap<u64, Entry>>,
    /// The next subscription id.
    next: AtomicU64,
}

impl std::fmt::Debug for Interest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interest")
            .field("subscriptions", &self.len())
            .finish()
    }
}

impl Interest {
    /// Registers a live subscriber of `pattern` until the guard drops.
    pub fn register(self: &Arc<Self>, pattern: &Pattern, kind: &'static str) -> InterestGuard {
        let live = Arc::new(AtomicBool::new(false));
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let delivered = Arc::new(AtomicU64::new(0));
        self.trie.insert(pattern, id);
        lock(&self.entries).insert(
            id,
            Entry {
                pattern: pattern.clone(),
                started_ns: now_ns(),
                delivered: delivered.clone(),
                kind,
                live: live.clone(),
            },
        );
        InterestGuard {
            interest: self.clone(),
            id,
            pattern: pattern.clone(),
            delivered,
            live,
        }
    }

    /// Whether any live subscription matches `subject` (for request/reply's no-responders).
    pub fn has_subscribers(&self, subject: &Subject) -> bool {
        !self.trie.matches(subject).is_empty()
    }

    /// Live subscriptions whose pattern touches namespace `name`.
    pub fn touching(&self, name: &str) -> u64 {
        lock(&self.entries)
            .values()
            .filter(|e| e.pattern.may_match_namespace(name))
            .count() as u64
    }

    /// How many subscriptions are live.
    pub fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every live subscription, by id.
    pub fn list(&self) -> Vec<SubscriptionInfo> {
        lock(&self.entries)
            .iter()
            .map(|(id, e)| SubscriptionInfo {
                id: format!("s-{id}"),
                pattern: e.pattern.as_str().to_owned(),
                started: crate::units::format_rfc3339(e.started_ns),
                delivered: e.delivered.load(Ordering::Relaxed),
                kind: e.kind.to_owned(),
                state: if e.live.load(Ordering::Relaxed) {
                    "live"
                } else {
                    "catching_up"
                }
                .to_owned(),
            })
            .collect()
    }

    fn remove(&self, id: u64, pattern: &Pattern) {
        self.trie.remove(pattern, &id);
        lock(&self.entries).remove(&id);
    }
}

/// Keeps a subscription registered; unregisters it when dropped.
pub struct InterestGuard {
    /// The registry it is listed in.
    interest: Arc<Interest>,
    /// Its id there.
    id: u64,
    /// Its pattern (the trie key).
    pattern: Pattern,
    /// Its delivery count, shared with the listing.
    delivered: Arc<AtomicU64>,
    /// Its reader's state, shared with the listing.
    live: Arc<AtomicBool>,
}

impl std::fmt::Debug for InterestGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InterestGuard")
            .field("id", &self.id)
            .finish()
    }
}

impl InterestGuard {
    /// Counts one delivery.
    pub fn delivered(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }

    /// The subscription's id (`s-<n>`).
    pub fn id(&self) -> String {
        format!("s-{}", self.id)
    }

    /// The flag its reader keeps saying whether it is live everywhere.
    pub fn live_flag(&self) -> Arc<AtomicBool> {
        self.live.clone()
    }

    /// Lists the state that `flag` says (a consumer member: its consumer's reader's).
    pub fn follow(&mut self, flag: Arc<AtomicBool>) {
        if let Some(e) = lock(&self.interest.entries).get_mut(&self.id) {
            e.live = flag.clone();
        }
        self.live = flag;
    }
}

impl Drop for InterestGuard {
    fn drop(&mut self) {
        self.interest.remove(self.id, &self.pattern);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guard_is_listed_and_matched_until_dropped() {
        let interest = Arc::new(Interest::default());
        let pattern = Pattern::parse("user.*").unwrap();
        let subject = Subject::parse("user.created").unwrap();
        let guard = interest.register(&pattern, "stream");
        guard.delivered();
        assert!(interest.has_subscribers(&subject));
        assert_eq!(interest.touching("user"), 1);
        assert_eq!(interest.touching("order"), 0);
        let listed = interest.list();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, guard.id());
        assert_eq!(listed[0].delivered, 1);
        drop(guard);
        assert!(!interest.has_subscribers(&subject));
        assert!(interest.is_empty());
    }
}
