//! The volume blocks the overlay keeps in memory: the few most recently used ones (reads of a
//! block that is only read are served from here, never copied to disk), the ones being
//! loaded right now (so two requests for one block load it once), and a couple of spare
//! buffers (a 4 MiB allocation per load would fault in every page again).
//!
//! Invariants: at most `capacity` blocks are kept (plus those in flight, one per loading
//! thread, and at most [`SPARE`] spare buffers), so memory never follows the volume's size; an
//! index is never both kept and in flight.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

/// Spare buffers kept for the next loads.
const SPARE: usize = 2;

/// Recently loaded blocks, least recently used first.
pub struct Recent {
    kept: VecDeque<(u64, Arc<Vec<u8>>)>,
    loading: BTreeSet<u64>,
    spare: Vec<Vec<u8>>,
    capacity: usize,
}

impl Recent {
    /// Keeps at most `capacity` (at least 2) blocks.
    pub fn new(capacity: usize) -> Recent {
        Recent {
            kept: VecDeque::new(),
            loading: BTreeSet::new(),
            spare: Vec::new(),
            capacity: capacity.max(2),
        }
    }

    /// Block `index` when it is kept (it becomes the most recently used).
    pub fn get(&mut self, index: u64) -> Option<Arc<Vec<u8>>> {
        let at = self.kept.iter().position(|(i, _)| *i == index)?;
        let entry = self.kept.remove(at)?;
        let block = entry.1.clone();
        self.kept.push_back(entry);
        Some(block)
    }

    /// True while some thread loads block `index`.
    pub fn is_loading(&self, index: u64) -> bool {
        self.loading.contains(&index)
    }

    /// Marks block `index` as being loaded by the caller, and hands it a buffer to load into.
    pub fn start_loading(&mut self, index: u64) -> Vec<u8> {
        self.loading.insert(index);
        self.spare.pop().unwrap_or_default()
    }

    /// The load of block `index` ended (with `block` when it succeeded and is still wanted).
    pub fn finish_loading(&mut self, index: u64, block: Option<Arc<Vec<u8>>>) {
        self.loading.remove(&index);
        if let Some(block) = block {
            self.kept.retain(|(i, _)| *i != index);
            self.kept.push_back((index, block));
            while self.kept.len() > self.capacity {
                if let Some((_, old)) = self.kept.pop_front() {
                    self.recycle(old);
                }
            }
        }
    }

    /// Returns a buffer no longer needed (a failed load's, or an evicted block's).
    pub fn recycle(&mut self, block: Arc<Vec<u8>>) {
        // Still shared with a reader copying out of it: let that reader free it.
        if let Ok(buf) = Arc::try_unwrap(block)
            && self.spare.len() < SPARE
        {
            self.spare.push(buf);
        }
    }

    /// Drops block `index` (it is in the cache file, or cut, from now).
    pub fn forget(&mut self, index: u64) {
        if let Some(at) = self.kept.iter().position(|(i, _)| *i == index)
            && let Some((_, old)) = self.kept.remove(at)
        {
            self.recycle(old);
        }
    }

    /// Drops every block at or past `from` (a truncation).
    pub fn forget_from(&mut self, from: u64) {
        let cut: Vec<u64> = self
            .kept
            .iter()
            .map(|(i, _)| *i)
            .filter(|&i| i >= from)
            .collect();
        for i in cut {
            self.forget(i);
        }
    }

    /// How many blocks are kept.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.kept.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_most_recently_used_and_reuses_evicted_buffers() {
        let mut r = Recent::new(2);
        for i in 0..3u64 {
            let buf = r.start_loading(i);
            assert!(r.is_loading(i));
            r.finish_loading(i, Some(Arc::new(buf)));
            assert!(!r.is_loading(i));
        }
        assert_eq!(r.len(), 2);
        assert!(r.get(0).is_none(), "the least recently used went");
        assert!(r.get(1).is_some());
        // 1 is now the most recent: a new block evicts 2.
        let buf = r.start_loading(3);
        r.finish_loading(3, Some(Arc::new(buf)));
        assert!(r.get(2).is_none());
        assert!(r.get(1).is_some() && r.get(3).is_some());
        assert_eq!(
            r.spare.len(),
            1,
            "0's buffer went to the load of 3; 2's is kept for the next"
        );
    }

    #[test]
    fn a_block_still_read_is_not_recycled_and_a_failed_load_keeps_nothing() {
        let mut r = Recent::new(2);
        let buf = r.start_loading(7);
        r.finish_loading(7, Some(Arc::new(buf)));
        let held = r.get(7).unwrap();
        r.forget(7);
        assert!(r.get(7).is_none());
        assert!(r.spare.is_empty(), "a reader still holds it");
        drop(held);
        let _ = r.start_loading(8);
        r.finish_loading(8, None);
        assert!(r.get(8).is_none() && !r.is_loading(8));
        r.finish_loading(9, Some(Arc::new(vec![1])));
        r.finish_loading(10, Some(Arc::new(vec![2])));
        r.forget_from(10);
        assert!(r.get(9).is_some() && r.get(10).is_none());
    }
}
