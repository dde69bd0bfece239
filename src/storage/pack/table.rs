//! The in-memory table from block hash to where the block is packed: most entries in one
//! array sorted by hash (48 bytes an entry, no slack), the latest few in a hash map, merged
//! into the array when they grow. A hash table of millions of entries costs three times the
//! memory (power-of-two capacity, half empty after it doubles) and more time to fill.
//!
//! Invariants: each hash is in `sorted` or in `recent`, never both, and at most once; the
//! location kept for a hash is the one with the lowest (pack position, offset): pack
//! positions grow in load order, so it is the first pack loaded that holds it.

use crate::storage::hash::{BlockHash, BlockHashMap};

/// Where a block is: (position of its pack in load order, offset in the pack, stored length).
pub type Loc = (u32, u64, u32);

/// Entries inserted one by one stay in the map until there are this many, or a quarter of the
/// sorted array, whichever is more; then everything is sorted into the array again.
/// (Small in unit tests, so that they merge often.)
const RECENT_MIN: usize = if cfg!(test) { 64 } else { 1 << 16 };

#[derive(Default)]
pub struct BlockTable {
    sorted: Vec<(BlockHash, Loc)>,
    /// How far around its guess [`Self::position`] looks for a hash, set when `sorted` is.
    window: usize,
    recent: BlockHashMap<Loc>,
}

impl BlockTable {
    pub fn len(&self) -> usize {
        self.sorted.len() + self.recent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, hash: &BlockHash) -> Option<Loc> {
        if let Some(loc) = self.recent.get(hash) {
            return Some(*loc);
        }
        let i = self.position(hash);
        self.sorted.get(i).filter(|(h, _)| h == hash).map(|e| e.1)
    }

    pub fn contains(&self, hash: &BlockHash) -> bool {
        self.get(hash).is_some()
    }

    /// Adds the entries of one batch (packs loaded together, in load order, at pack positions
    /// after those already in the table), each kept unless its hash is already in the table
    /// or earlier in the batch. Returns the entries not kept: extra copies, with their
    /// locations.
    pub fn extend(&mut self, batch: Vec<(BlockHash, Loc)>) -> Vec<(BlockHash, Loc)> {
        if self.recent.len() + batch.len() <= RECENT_MIN.max(self.sorted.len() / 4) {
            return batch
                .into_iter()
                .filter(|&(h, loc)| !self.insert(h, loc))
                .collect();
        }
        // The batch's own buffer when the array is empty (the first load): no copy.
        let mut all = if self.sorted.is_empty() {
            batch
        } else {
            let mut all = std::mem::take(&mut self.sorted);
            all.reserve_exact(batch.len() + self.recent.len());
            all.extend(batch);
            all
        };
        all.extend(self.recent.drain());
        // In place; among equal hashes the lowest (pack position, offset) first: the pack
        // loaded first, so an entry already in the table wins over the batch's.
        all.sort_unstable_by_key(|&(h, (at, offset, _))| (h, at, offset));
        let mut extra = Vec::new();
        let mut kept = 0;
        for i in 0..all.len() {
            if kept > 0 && all[kept - 1].0 == all[i].0 {
                extra.push(all[i]);
            } else {
                all[kept] = all[i];
                kept += 1;
            }
        }
        all.truncate(kept);
        self.window = 64usize.max(4 * (all.len() as f64).sqrt() as usize);
        self.sorted = all;
        extra
    }

    /// Makes `loc` the location kept for `hash`, which the table holds (false when it does
    /// not: nothing changes).
    pub fn replace(&mut self, hash: &BlockHash, loc: Loc) -> bool {
        if let Some(kept) = self.recent.get_mut(hash) {
            *kept = loc;
            return true;
        }
        let i = self.position(hash);
        match self.sorted.get_mut(i) {
            Some((h, kept)) if h == hash => {
                *kept = loc;
                true
            }
            _ => false,
        }
    }

    /// Every entry, in no set order.
    pub fn iter(&self) -> impl Iterator<Item = (&BlockHash, &Loc)> {
        self.sorted
            .iter()
            .map(|(h, l)| (h, l))
            .chain(self.recent.iter())
    }

    /// Adds one entry unless its hash is there; true when added.
    fn insert(&mut self, hash: BlockHash, loc: Loc) -> bool {
        let i = self.position(&hash);
        if self.sorted.get(i).is_some_and(|(h, _)| *h == hash) {
            return false;
        }
        match self.recent.entry(hash) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(loc);
                true
            }
        }
    }

    /// Where `hash` is or would be in `sorted`. Hashes of stored blocks are uniform, so the
    /// first guess is proportional to the hash's leading 8 bytes; the search then narrows a
    /// window around it and falls back to a binary search of the whole array when the guess
    /// is off (as it may be for hashes a hostile pack index chose), so it is never worse than
    /// O(log n).
    fn position(&self, hash: &BlockHash) -> usize {
        let n = self.sorted.len();
        if n == 0 {
            return 0;
        }
        let lead = u64::from_be_bytes(hash.0[..8].try_into().unwrap());
        let guess = ((u128::from(lead) * n as u128) >> 64) as usize;
        let lo = guess.saturating_sub(self.window);
        let hi = (guess + self.window).min(n);
        let before = |i: usize| self.sorted[i].0 < *hash;
        // Inside the window when the entry before `lo` is smaller and the one at `hi` is not.
        if (lo == 0 || before(lo - 1)) && (hi == n || !before(hi)) {
            return lo + self.sorted[lo..hi].partition_point(|(h, _)| h < hash);
        }
        self.sorted.partition_point(|(h, _)| h < hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn hash(seed: u64) -> BlockHash {
        BlockHash::of_bytes(&seed.to_le_bytes())
    }

    proptest! {
        /// The table answers as a map keeping the first location of each hash, whatever the
        /// sizes of the batches (small ones stay in the map, large ones merge).
        #[test]
        fn behaves_as_a_first_insert_wins_map(
            batches in prop::collection::vec(
                prop::collection::vec((0u64..3000, any::<u32>()), 0..3000), 1..6),
        ) {
            let mut table = BlockTable::default();
            let mut model: HashMap<BlockHash, Loc> = HashMap::new();
            for (b, batch) in batches.iter().enumerate() {
                // Pack positions grow with the batch, offsets within it.
                let batch: Vec<(BlockHash, Loc)> = batch
                    .iter()
                    .enumerate()
                    .map(|(i, &(k, v))| (hash(k), (b as u32, i as u64, v)))
                    .collect();
                let mut want_extra = Vec::new();
                for &(h, loc) in &batch {
                    match model.entry(h) {
                        std::collections::hash_map::Entry::Occupied(_) => {
                            want_extra.push((h, loc));
                        }
                        std::collections::hash_map::Entry::Vacant(v) => {
                            v.insert(loc);
                        }
                    }
                }
                let mut extra = table.extend(batch);
                extra.sort();
                want_extra.sort();
                prop_assert_eq!(extra, want_extra);
                prop_assert_eq!(table.len(), model.len());
            }
            for k in 0..3100 {
                prop_assert_eq!(table.get(&hash(k)), model.get(&hash(k)).copied());
            }
            let mut all: Vec<(BlockHash, Loc)> = table.iter().map(|(h, l)| (*h, *l)).collect();
            all.sort();
            let mut want: Vec<(BlockHash, Loc)> = model.into_iter().collect();
            want.sort();
            prop_assert_eq!(all, want);
        }
    }

    #[test]
    fn hashes_a_hostile_index_chose_are_still_found() {
        // All with the same leading bytes: every guess lands far from them.
        let mut batch = Vec::new();
        for i in 0..200_000u32 {
            let mut h = [0u8; 32];
            h[..8].copy_from_slice(&u64::MAX.to_be_bytes());
            h[28..].copy_from_slice(&i.to_be_bytes());
            batch.push((BlockHash(h), (0, u64::from(i), i)));
        }
        let mut low = [0u8; 32];
        low[31] = 1;
        batch.push((BlockHash(low), (1, 0, 1)));
        let mut table = BlockTable::default();
        assert!(table.extend(batch.clone()).is_empty());
        for (h, loc) in batch {
            assert_eq!(table.get(&h), Some(loc));
        }
        assert_eq!(table.get(&hash(7)), None);
    }

    #[test]
    fn replace_changes_the_kept_location_of_a_held_hash_only() {
        let mut table = BlockTable::default();
        // Enough to be merged into the sorted array, then a few more in the map.
        let sorted: Vec<_> = (0..200).map(|k| (hash(k), (0, k, 1))).collect();
        table.extend(sorted);
        table.extend(vec![(hash(500), (1, 0, 1))]);
        assert!(table.replace(&hash(7), (2, 70, 7)));
        assert!(table.replace(&hash(500), (2, 50, 5)));
        assert!(!table.replace(&hash(9999), (2, 0, 1)));
        assert_eq!(table.get(&hash(7)), Some((2, 70, 7)));
        assert_eq!(table.get(&hash(500)), Some((2, 50, 5)));
        assert_eq!(table.get(&hash(9999)), None);
        assert_eq!(table.len(), 201);
    }
}
