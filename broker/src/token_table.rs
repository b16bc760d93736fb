//! [`TokenTable`]: the hash map the subject trie keeps a node's many literal children in.
//!
//! Open addressing with linear probing over a power-of-two array of `u32` slots, each slot the
//! index (plus one; 0 is empty) of an entry in a dense `Vec` of (key, value) pairs. It exists,
//! rather than `std`'s map, for one reason: matching a batch of subjects must be able to *start*
//! the memory loads of many lookups before finishing any of them. [`TokenTable::slot`] reads
//! only a lookup's first slot and [`TokenTable::touch_entry`] only the entry it names, each a
//! single independent load; a caller that does them for a whole batch first has those cache
//! misses in flight together, then finds everything in cache in
//! [`TokenTable::get_with_hash`].
//!
//! The slot array is kept at most half full, so probes are short; removal shifts the following
//! run of slots back (no tombstones) and moves the last entry into the hole. Keys are hashed
//! with the table's own [`BuildHasher`] (keyed per table, as keys come from clients).

use std::borrow::Borrow;
use std::hash::BuildHasher;

/// Slots of an empty table that holds something (a power of two).
const MIN_SLOTS: usize = 16;

/// A map from byte-string keys to values; see the module documentation.
pub struct TokenTable<K, V, S> {
    /// Entry index + 1, or 0 for an empty slot. The length is a power of two, at least twice
    /// the number of entries.
    slots: Box<[u32]>,
    /// The entries, in no particular order.
    entries: Vec<(K, V)>,
    /// Hashes keys.
    hasher: S,
}

impl<K, V, S> TokenTable<K, V, S>
where
    K: Borrow<[u8]>,
    S: BuildHasher,
{
    /// An empty table with room for `capacity` entries before it grows.
    pub fn with_capacity_and_hasher(capacity: usize, hasher: S) -> Self {
        let slots = (capacity.max(1) * 2).next_power_of_two().max(MIN_SLOTS);
        TokenTable {
            slots: vec![0; slots].into_boxed_slice(),
            entries: Vec::with_capacity(capacity),
            hasher,
        }
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The hash of `key`.
    #[inline]
    pub fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    #[inline]
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// The first slot a lookup of `hash` reads: loading it is the lookup's first memory access.
    #[inline]
    pub fn slot(&self, hash: u64) -> u32 {
        self.slots[hash as usize & self.mask()]
    }

    /// Reads the first byte of the key of the entry `slot` names (0 when it names none): the
    /// lookup's second memory access.
    #[inline]
    pub fn touch_entry(&self, slot: u32) -> u8 {
        let Some(index) = (slot as usize).checked_sub(1) else {
            return 0;
        };
        self.entries
            .get(index)
            .and_then(|(k, _)| k.borrow().first().copied())
            .unwrap_or(0)
    }

    /// The slot index holding `key` (whose hash is `hash`), or the empty slot where it would go.
    #[inline]
    fn find(&self, hash: u64, key: &[u8]) -> (usize, Option<usize>) {
        let mask = self.mask();
        let mut i = hash as usize & mask;
        loop {
            let Some(index) = (self.slots[i] as usize).checked_sub(1) else {
                return (i, None);
            };
            if self.entries[index].0.borrow() == key {
                return (i, Some(index));
            }
            i = (i + 1) & mask;
        }
    }

    /// The value for `key`, whose hash is `hash`.
    #[inline]
    pub fn get_with_hash(&self, hash: u64, key: &[u8]) -> Option<&V> {
        let (_, index) = self.find(hash, key);
        index.map(|i| &self.entries[i].1)
    }

    /// The value for `key`.
    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<&V> {
        self.get_with_hash(self.hash(key), key)
    }

    /// The value for `key`, to change.
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut V> {
        let (_, index) = self.find(self.hash(key), key);
        index.map(|i| &mut self.entries[i].1)
    }

    /// The value for `key`, inserted with `make` (its key from `make_key`) if missing.
    pub fn get_or_insert_with(
        &mut self,
        key: &[u8],
        make_key: impl FnOnce() -> K,
        make: impl FnOnce() -> V,
    ) -> &mut V {
        let hash = self.hash(key);
        let index = match self.find(hash, key) {
            (_, Some(index)) => index,
            (mut slot, None) => {
                if (self.entries.len() + 1) * 2 > self.slots.len() {
                    self.resize(self.slots.len() * 2);
                    slot = self.find(hash, key).0;
                }
                self.entries.push((make_key(), make()));
                // Entries are far fewer than u32::MAX: a node's children are subscriptions'
                // distinct tokens, bounded by memory long before.
                self.slots[slot] = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
                self.entries.len() - 1
            }
        };
        &mut self.entries[index].1
    }

    /// Removes `key`; returns whether it was there. Gives back memory when mostly empty.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        let (mut hole, Some(index)) = self.find(self.hash(key), key) else {
            return false;
        };
        // Backward-shift deletion: move later slots of the run into the hole when their home
        // is at or before it, so no lookup meets a gap before its key.
        let mask = self.mask();
        let mut i = (hole + 1) & mask;
        while let Some(moved) = (self.slots[i] as usize).checked_sub(1) {
            let home = self.hash(self.entries[moved].0.borrow()) as usize & mask;
            // Whether `home` lies cyclically in (hole, i]: then the entry stays.
            let stays = if hole <= i {
                hole < home && home <= i
            } else {
                hole < home || home <= i
            };
            if !stays {
                self.slots[hole] = self.slots[i];
                hole = i;
            }
            i = (i + 1) & mask;
        }
        self.slots[hole] = 0;
        // Fill the entry's place with the last entry, and point that one's slot at it.
        let last = self.entries.len() - 1;
        self.entries.swap_remove(index);
        if index != last {
            let key = self.entries[index].0.borrow();
            let mut i = self.hash(key) as usize & mask;
            while self.slots[i] as usize != last + 1 {
                i = (i + 1) & mask;
            }
            self.slots[i] = u32::try_from(index + 1).unwrap_or(u32::MAX);
        }
        if self.entries.len() * 8 < self.slots.len() && self.slots.len() > MIN_SLOTS {
            self.resize((self.entries.len() * 2).next_power_of_two().max(MIN_SLOTS));
            self.entries.shrink_to_fit();
        }
        true
    }

    /// Rebuilds the slots with `slots` of them.
    fn resize(&mut self, slots: usize) {
        self.slots = vec![0; slots].into_boxed_slice();
        let mask = slots - 1;
        for (index, (key, _)) in self.entries.iter().enumerate() {
            let mut i = self.hasher.hash_one(key.borrow()) as usize & mask;
            while self.slots[i] != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = u32::try_from(index + 1).unwrap_or(u32::MAX);
        }
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &(K, V)> {
        self.entries.iter()
    }

    /// Inserts `key` with `value`, replacing the value of an equal key.
    pub fn insert(&mut self, key: K, value: V) {
        let hash = self.hash(key.borrow());
        if let (_, Some(index)) = self.find(hash, key.borrow()) {
            self.entries[index].1 = value;
            return;
        }
        if (self.entries.len() + 1) * 2 > self.slots.len() {
            self.resize(self.slots.len() * 2);
        }
        let slot = self.find(hash, key.borrow()).0;
        self.entries.push((key, value));
        self.slots[slot] = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
    }

    /// Takes every entry out, leaving the table empty.
    pub fn drain(&mut self) -> Vec<(K, V)> {
        self.slots.fill(0);
        std::mem::take(&mut self.entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// Hashes a key to its first byte modulo 4: almost every key collides, so probe runs are
    /// long and removal's backward shift is exercised across the wrap-around.
    #[derive(Clone, Default)]
    struct Colliding;

    impl BuildHasher for Colliding {
        type Hasher = FirstByte;
        fn build_hasher(&self) -> FirstByte {
            FirstByte(0)
        }
    }

    struct FirstByte(u64);

    impl std::hash::Hasher for FirstByte {
        fn write(&mut self, bytes: &[u8]) {
            if self.0 == 0 {
                // `[u8]` hashes its length first; take the first content byte after it.
                self.0 = u64::from(bytes.first().copied().unwrap_or(0)) % 4 + 13;
            }
        }
        fn write_usize(&mut self, _: usize) {}
        fn finish(&self) -> u64 {
            self.0
        }
    }

    fn check<S: BuildHasher>(ops: &[(bool, u8, u16)], hasher: S) -> Result<(), TestCaseError> {
        let mut table: TokenTable<Vec<u8>, u16, S> =
            TokenTable::with_capacity_and_hasher(0, hasher);
        let mut model = BTreeMap::new();
        for &(insert, key, value) in ops {
            let key = vec![key % 40, key];
            if insert {
                *table.get_or_insert_with(&key, || key.clone(), || value) = value;
                model.insert(key.clone(), value);
            } else {
                prop_assert_eq!(table.remove(&key), model.remove(&key).is_some());
            }
            prop_assert_eq!(table.len(), model.len());
            prop_assert!(table.slots.len() >= table.len() * 2);
            for (k, v) in &model {
                prop_assert_eq!(table.get(k), Some(v));
                let hash = table.hash(k);
                prop_assert_eq!(table.get_with_hash(hash, k), Some(v));
            }
            prop_assert_eq!(table.get(&[200, 200]), None);
        }
        let mut all: Vec<(Vec<u8>, u16)> = table.iter().cloned().collect();
        all.sort();
        prop_assert_eq!(all, model.into_iter().collect::<Vec<_>>());
        Ok(())
    }

    proptest! {
        #[test]
        fn behaves_like_a_map(ops in prop::collection::vec((any::<bool>(), any::<u8>(), any::<u16>()), 0..300)) {
            check(&ops, std::collections::hash_map::RandomState::new())?;
        }

        #[test]
        fn behaves_like_a_map_when_every_key_collides(ops in prop::collection::vec((any::<bool>(), any::<u8>(), any::<u16>()), 0..300)) {
            check(&ops, Colliding)?;
        }
    }

    #[test]
    fn grows_then_gives_memory_back() {
        let mut t: TokenTable<Vec<u8>, u32, _> =
            TokenTable::with_capacity_and_hasher(0, std::collections::hash_map::RandomState::new());
        for i in 0..1000u32 {
            t.insert(i.to_le_bytes().to_vec(), i);
        }
        assert_eq!(t.len(), 1000);
        assert!(t.slots.len() >= 2000);
        for i in 0..1000u32 {
            assert!(t.remove(&i.to_le_bytes()));
        }
        assert!(t.is_empty());
        assert_eq!(t.slots.len(), MIN_SLOTS);
        let slot = t.slot(t.hash(b"x"));
        assert_eq!((slot, t.touch_entry(slot)), (0, 0));
    }
}
