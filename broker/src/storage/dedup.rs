//! The dedup table: dedup ids (`Bus-Msg-Id`) seen within the window, per namespace.
//!
//! Bounded: at most `max_entries` ids are remembered; past that the oldest are forgotten
//! first (so a repeat of a forgotten id is stored again). Ids older than the window expire.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// What a dedup id maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupEntry {
    /// The original event's sequence.
    pub sequence: u64,
    /// The original event's time (ns since the epoch).
    pub time_ns: u64,
}

/// Dedup ids within the window, oldest first.
#[derive(Debug)]
pub struct DedupTable {
    map: HashMap<String, DedupEntry>,
    /// Ids in insertion (and so time) order, for expiry.
    order: VecDeque<String>,
    window_ns: u64,
    max_entries: usize,
}

impl DedupTable {
    /// An empty table.
    pub fn new(window: Duration, max_entries: usize) -> Self {
        DedupTable {
            map: HashMap::new(),
            order: VecDeque::new(),
            window_ns: window.as_nanos().min(u64::MAX as u128) as u64,
            max_entries,
        }
    }

    /// The entry for `id` if it is still within the window at `now_ns`.
    pub fn get(&self, id: &str, now_ns: u64) -> Option<DedupEntry> {
        self.map
            .get(id)
            .copied()
            .filter(|e| now_ns.saturating_sub(e.time_ns) < self.window_ns)
    }

    /// Remembers `id`, first forgetting what expired by `entry.time_ns` and what exceeds the
    /// bound.
    pub fn insert(&mut self, id: &str, entry: DedupEntry) {
        if self.window_ns == 0 || self.max_entries == 0 {
            return;
        }
        self.expire(entry.time_ns);
        while self.order.len() >= self.max_entries {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
        if self.map.insert(id.to_owned(), entry).is_none() {
            self.order.push_back(id.to_owned());
        }
    }

    /// Forgets `id` (used when the append that added it failed).
    pub fn remove(&mut self, id: &str) {
        if self.map.remove(id).is_some() {
            self.order.retain(|o| o != id);
        }
    }

    fn expire(&mut self, now_ns: u64) {
        while let Some(front) = self.order.front() {
            let live = self
                .map
                .get(front)
                .is_some_and(|e| now_ns.saturating_sub(e.time_ns) < self.window_ns);
            if live {
                break;
            }
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }

    /// Live entries, oldest first (for the checkpoint).
    pub fn entries(&self) -> impl Iterator<Item = (&str, DedupEntry)> {
        self.order
            .iter()
            .filter_map(|id| self.map.get(id).map(|e| (id.as_str(), *e)))
    }

    /// Ids remembered.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn remembers_within_the_window_only() {
        let mut t = DedupTable::new(Duration::from_secs(120), 10);
        t.insert(
            "a",
            DedupEntry {
                sequence: 1,
                time_ns: 10 * S,
            },
        );
        assert_eq!(t.get("a", 100 * S).map(|e| e.sequence), Some(1));
        assert_eq!(t.get("a", 130 * S), None);
        t.insert(
            "b",
            DedupEntry {
                sequence: 2,
                time_ns: 131 * S,
            },
        );
        assert_eq!(t.len(), 1, "expired id kept");
    }

    #[test]
    fn forgets_the_oldest_past_the_bound() {
        let mut t = DedupTable::new(Duration::from_secs(120), 2);
        for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
            t.insert(
                id,
                DedupEntry {
                    sequence: i as u64 + 1,
                    time_ns: S,
                },
            );
        }
        assert_eq!(t.get("a", S), None);
        assert!(t.get("b", S).is_some() && t.get("c", S).is_some());
        t.remove("b");
        assert_eq!(t.entries().map(|(id, _)| id).collect::<Vec<_>>(), ["c"]);
    }
}
