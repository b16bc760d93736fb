//! [`TokenTable`]: the hash map the subject trie keeps a node's many literal children in.
//!
//! Open addressing with linear probing over a power-of-two array of `u64` slots, each slot
//! the index (plus one; 0 is empty) of an entry in a dense `Vec` of (key, value) pairs, with the
//! high half of the key's hash as a tag, so that a lookup compares only the key whose tag
//! matches (and a collision in the slots costs no read of another entry). It exists, rather
//! than `std`'s map, for one reason: matching a batch of subjects must be able to *start* the
//! memory loads of many lookups before finishing any of them. [`TokenTable::candidate`] reads
//! only a lookup's slots and [`TokenTable::entry`] only the entry they name, each one
//! independent load; a caller that does them for a whole batch first has those cache misses in
//! flight together, then finds everything in cache in [`TokenTable::get_by`], which also lets
//! the caller compare keys its own (faster) way.
//!
//! The slot array is kept at most half full, so probes are short; removal shifts the following
//! run of slots back (no tombstones) and moves the last entry into the hole. Keys are hashed
//! with the table's own [`BuildHasher`] (keyed per table, as keys come from clients).

use std::borrow::Borrow;
use std::hash::BuildHasher;

/// Slots of an empty table that holds something (a power of two).
const MIN_SLOTS: usize = 16;

/// The tag a slot keeps for `hash`: its high half, so it is independent of the slot's place
/// (the low bits).
#[inline]
fn tag(hash: u64) -> u64 {
    hash >> 32
}

/// A full slot: `tag` in the high half, entry `index` + 1 in the low.
#[inline]
fn full_slot(hash: u64, index: usize) -> u64 {
    // Entries are far fewer than u32::MAX: a node's children are subscriptions' distinct
    // tokens, bounded by memory long before.
    (tag(hash) << 32) | u64::from(u32::try_from(index + 1).unwrap_or(u32::MAX))
}

/// The entry index a slot names, or `None` for an empty slot.
#[inline]
fn slot_index(slot: u64) -> Option<usize> {
    (slot as u32 as usize).checked_sub(1)
}

/// A map from byte-string keys to values; see the module documentation.
pub struct TokenTable<K, V, S> {
    /// Each slot holds 0 when empty, else the high half of its key's hash (a tag) over entry
    /// index + 1. The length is a power of two, at least twice the number of entries.
    slots: Box<[u64]>,
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

    /// The entry a lookup of `hash` would compare its key with: the first slot on its probe
    /// run whose tag matches, read from the slots alone (the lookup's first memory access).
    /// `None` when no slot matches, so the key is surely missing.
    #[inline]
    pub fn candidate(&self, hash: u64) -> Option<usize> {
        let mask = self.mask();
        let mut i = hash as usize & mask;
        loop {
            let slot = self.slots[i];
            let index = slot_index(slot)?;
            if slot >> 32 == tag(hash) {
                return Some(index);
            }
            i = (i + 1) & mask;
        }
    }

    /// The entry at `index` (from [`candidate`](Self::candidate)), whatever its key: reading
    /// it is the lookup's second memory access.
    #[inline]
    pub fn entry(&self, index: usize) -> Option<&(K, V)> {
        self.entries.get(index)
    }

    /// The slot index holding the key `is_key` accepts (whose hash is `hash`), or the empty
    /// slot where it would go. Compares keys only in slots whose tag matches.
    #[inline]
    fn find_by(&self, hash: u64, is_key: impl Fn(&K) -> bool) -> (usize, Option<usize>) {
        let mask = self.mask();
        let mut i = hash as usize & mask;
        loop {
            let slot = self.slots[i];
            let Some(index) = slot_index(slot) else {
                return (i, None);
            };
            if slot >> 32 == tag(hash) && is_key(&self.entries[index].0) {
                return (i, Some(index));
            }
            i = (i + 1) & mask;
        }
    }

    /// The slot index holding `key` (whose hash is `hash`), or the empty slot where it would go.
    #[inline]
    fn find(&self, hash: u64, key: &[u8]) -> (usize, Option<usize>) {
        self.find_by(hash, |k| k.borrow() == key)
    }

    /// The value for the key whose hash is `hash` and that `is_key` accepts: for callers with
    /// a faster comparison than the bytes'.
    #[inline]
    pub fn get_by(&self, hash: u64, is_key: impl Fn(&K) -> bool) -> Option<&V> {
        let (_, index) = self.find_by(hash, is_key);
        index.map(|i| &self.entries[i].1)
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
                self.slots[slot] = full_slot(hash, self.entries.len() - 1);
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
        while let Some(moved) = slot_index(self.slots[i]) {
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
            let hash = self.hash(self.entries[index].0.borrow());
            let mut i = hash as usize & mask;
            while slot_index(self.slots[i]) != Some(last) {
                i = (i + 1) & mask;
            }
            self.slots[i] = full_slot(hash, index);
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
            let hash = self.hasher.hash_one(key.borrow());
            let mut i = hash as usize & mask;
            while self.slots[i] != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = full_slot(hash, index);
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
        self.slots[slot] = full_slot(hash, self.entries.len() - 1);
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
                let candidate = table.candidate(hash).and_then(|i| table.entry(i));
                prop_assert!(candidate.is_some(), "a present key has a candidate");
                prop_assert_eq!(table.get_by(hash, |key| key == k), Some(v));
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
        assert_eq!(t.candidate(t.hash(b"x")), None);
    }
}
