//! A write-back cache of private blocks in local scratch, in front of a remote store: what a
//! volume opened for I/O on an object store reads and writes (`arch serve`, `volume write`,
//! customization), so that small writes are local `pwrite`s and not one read-modify-write of
//! a whole remote block each.
//!
//! - Blocks are kept whole in files `tmp/wb-<pid>-<uuid>/<index>` (sparse), at most `limit`
//!   of them: past that the oldest is evicted (a clean one is dropped, a dirty one uploaded
//!   first). A block read from the store is kept clean; a block written is dirty.
//! - [`WriteBack::flush`] (NBD FLUSH, FUA, a client's disconnect, the server's stop, the end
//!   of `volume write`) uploads every dirty block with one PUT each (atomic per block) and
//!   pushes removals; when it returns Ok they are durable in the store.
//! - The scratch is never trusted after a crash: it is discarded, not recovered. A write that
//!   was not flushed is lost, exactly as with a disk's volatile cache; the store holds, block
//!   by block, the last flushed (or evicted) content, never a torn block. The directory is
//!   removed when the volume is closed, and a killed process's one is garbage in `tmp/` for
//!   `arch gc`.
//!
//! Concurrency: callers hold the volume's block stripe around calls about one block (see
//! [`super::PrivateEpoch`]). Each cached block has its own mutex, held for its local I/O and
//! its upload; the map of entries has another, never held while waiting for an entry (it
//! only `try_lock`s them), so flush, eviction and I/O on other blocks never deadlock.

use super::PrivateEpoch;
use crate::error::{Error, Result};
use crate::services::volumes::blockio::write_nonzero_pages;
use crate::storage::fsutil;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

/// Blocks kept locally at most by default (256 MiB of 4 MiB blocks, less where sparse).
pub const DEFAULT_CACHED_BLOCKS: usize = 64;

/// Uploads a flush runs at once.
const UPLOADERS: usize = 4;

/// What the local copy of a block is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing local: the store has the truth.
    Unknown,
    /// A local copy equal to the store's block.
    Clean,
    /// A local copy newer than the store's block: uploaded at the next flush.
    Dirty,
    /// Removed here; the store's block goes at the next flush.
    Removed,
}

struct Entry {
    state: State,
    /// Evicted: this entry is no longer in the map; whoever holds it looks again.
    gone: bool,
}

#[derive(Default)]
struct Cache {
    entries: HashMap<u64, Arc<Mutex<Entry>>>,
    /// Indexes in insertion order (eviction order); may name entries since gone.
    order: VecDeque<u64>,
}

/// A write-back cache over `inner`.
pub struct WriteBack {
    inner: Box<dyn PrivateEpoch>,
    dir: PathBuf,
    block_size: u64,
    limit: usize,
    modes: fsutil::Modes,
    cache: Mutex<Cache>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl WriteBack {
    /// A cache of at most `limit` blocks of `block_size` bytes over `inner`, in a new
    /// directory under `tmp_dir`.
    pub fn new(
        inner: Box<dyn PrivateEpoch>,
        tmp_dir: &std::path::Path,
        block_size: u64,
        limit: usize,
    ) -> Result<WriteBack> {
        let dir = tmp_dir.join(format!(
            "wb-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let modes = fsutil::Modes::of_dir(tmp_dir);
        fsutil::create_dir_all(&dir, modes)?;
        Ok(WriteBack {
            inner,
            dir,
            block_size,
            limit: limit.max(1),
            modes,
            cache: Mutex::new(Cache::default()),
        })
    }

    fn path(&self, index: u64) -> PathBuf {
        self.dir.join(index.to_string())
    }

    /// The entry of `index`, if cached.
    fn lookup(&self, index: u64) -> Option<Arc<Mutex<Entry>>> {
        lock(&self.cache).entries.get(&index).cloned()
    }

    /// Runs `f` on the entry of `index` (made when missing, evicting another past the
    /// limit), locked.
    fn with_entry<T>(&self, index: u64, mut f: impl FnMut(&mut Entry) -> Result<T>) -> Result<T> {
        loop {
            let (entry, fresh) = {
                let mut cache = lock(&self.cache);
                match cache.entries.get(&index) {
                    Some(e) => (e.clone(), false),
                    None => {
                        let e = Arc::new(Mutex::new(Entry {
                            state: State::Unknown,
                            gone: false,
                        }));
                        cache.entries.insert(index, e.clone());
                        cache.order.push_back(index);
                        (e, true)
                    }
                }
            };
            if fresh {
                self.evict(index)?;
            }
            let mut held = lock(&entry);
            if held.gone {
                continue;
            }
            return f(&mut held);
        }
    }

    /// Brings the cache back to its limit, sparing `keep`: clean blocks are dropped first;
    /// when every candidate is dirty (or busy), the oldest dirty one is written out and
    /// dropped.
    fn evict(&self, keep: u64) -> Result<()> {
        loop {
            let victim = {
                let mut cache = lock(&self.cache);
                if cache.entries.len() <= self.limit {
                    return Ok(());
                }
                let mut dirty = None;
                let mut dropped = false;
                let mut i = 0;
                while i < cache.order.len() {
                    let index = cache.order[i];
                    let Some(e) = cache.entries.get(&index).cloned() else {
                        cache.order.remove(i);
                        continue;
                    };
                    if index != keep {
                        if let Ok(mut held) = e.try_lock() {
                            if matches!(held.state, State::Unknown | State::Clean) {
                                held.gone = true;
                                let _ = fs::remove_file(self.path(index));
                                drop(held);
                                cache.entries.remove(&index);
                                cache.order.remove(i);
                                dropped = true;
                                break;
                            }
                        }
                        dirty.get_or_insert((index, e));
                    }
                    i += 1;
                }
                if dropped {
                    continue;
                }
                match dirty {
                    Some(v) => v,
                    // Everything else is busy: go over the limit for now.
                    None => return Ok(()),
                }
            };
            let (index, entry) = victim;
            {
                let mut held = lock(&entry);
                if held.gone {
                    continue;
                }
                self.write_out(index, &mut held)?;
                held.gone = true;
                let _ = fs::remove_file(self.path(index));
            }
            let mut cache = lock(&self.cache);
            if cache
                .entries
                .get(&index)
                .is_some_and(|e| Arc::ptr_eq(e, &entry))
            {
                cache.entries.remove(&index);
            }
        }
    }

    /// Makes the store hold what `entry` (block `index`, locked) holds: a dirty block is
    /// uploaded (one whole-block write), a removal pushed.
    fn write_out(&self, index: u64, entry: &mut Entry) -> Result<()> {
        match entry.state {
            State::Dirty => {
                let mut buf = vec![0u8; self.block_size as usize];
                self.read_local(index, 0, &mut buf)?;
                self.inner.create(index, 0, &buf)?;
                entry.state = State::Clean;
            }
            State::Removed => {
                self.inner.remove(index)?;
                entry.state = State::Unknown;
            }
            State::Unknown | State::Clean => {}
        }
        Ok(())
    }

    /// Gives `entry` (block `index`, locked) a local copy, read from the store when it has
    /// none; false when the block does not exist.
    fn load(&self, index: u64, entry: &mut Entry) -> Result<bool> {
        match entry.state {
            State::Clean | State::Dirty => return Ok(true),
            State::Removed => return Ok(false),
            State::Unknown => {}
        }
        if !self.inner.contains(index)? {
            return Ok(false);
        }
        let mut buf = Vec::new();
        self.inner
            .read_block(index, self.block_size as usize, &mut buf)?;
        self.write_local(index, 0, &buf)?;
        entry.state = State::Clean;
        Ok(true)
    }

    /// Replaces the local copy of block `index` with a zero block holding `data` at `within`.
    fn write_local(&self, index: u64, within: u64, data: &[u8]) -> Result<()> {
        let tmp = self.dir.join(format!("{index}.new"));
        // Left by a failed write of this block (its entry lock is held: no one else writes it).
        let _ = fs::remove_file(&tmp);
        let f = fsutil::create_file(&tmp, self.modes.file())
            .map_err(|e| Error::io("create", &tmp, e))?;
        f.set_len(self.block_size)
            .map_err(|e| Error::io("size", &tmp, e))?;
        write_nonzero_pages(&f, data, within).map_err(|e| Error::io("write", &tmp, e))?;
        let dest = self.path(index);
        fs::rename(&tmp, &dest).map_err(|e| Error::io("rename to", &dest, e))
    }

    fn read_local(&self, index: u64, offset: u64, buf: &mut [u8]) -> Result<()> {
        crate::services::volumes::blockio::read_exact_at(&self.path(index), buf, offset as usize)
    }

    fn missing(&self, index: u64) -> Error {
        Error::Corrupt {
            path: self.inner.location(index),
            reason: format!("private block {index} is gone"),
        }
    }
}

impl PrivateEpoch for WriteBack {
    fn contains(&self, index: u64) -> Result<bool> {
        if let Some(e) = self.lookup(index) {
            let held = lock(&e);
            if !held.gone {
                match held.state {
                    State::Clean | State::Dirty => return Ok(true),
                    State::Removed => return Ok(false),
                    State::Unknown => {}
                }
            }
        }
        self.inner.contains(index)
    }

    fn read_at(&self, index: u64, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.with_entry(index, |e| {
            if !self.load(index, e)? {
                return Err(self.missing(index));
            }
            self.read_local(index, offset, buf)
        })
    }

    fn create(&self, index: u64, within: u64, data: &[u8]) -> Result<()> {
        self.with_entry(index, |e| {
            self.write_local(index, within, data)?;
            e.state = State::Dirty;
            Ok(())
        })
    }

    fn write_in_place(&self, index: u64, offset: u64, data: &[u8]) -> Result<()> {
        self.with_entry(index, |e| {
            if !self.load(index, e)? {
                return Err(self.missing(index));
            }
            let p = self.path(index);
            let f = fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .map_err(|e| Error::io("open", &p, e))?;
            f.write_all_at(data, offset)
                .map_err(|e| Error::io("write", &p, e))?;
            e.state = State::Dirty;
            Ok(())
        })
    }

    fn remove(&self, index: u64) -> Result<()> {
        if self.lookup(index).is_none() && !self.inner.contains(index)? {
            // Neither here nor in the store: nothing to remember (a TRIM of zero blocks).
            return Ok(());
        }
        self.with_entry(index, |e| {
            match fs::remove_file(self.path(index)) {
                Err(err) if err.kind() != ErrorKind::NotFound => {
                    return Err(Error::io("remove", self.path(index), err));
                }
                _ => {}
            }
            e.state = State::Removed;
            Ok(())
        })
    }

    fn indexes(&self) -> Result<BTreeSet<u64>> {
        let mut out = self.inner.indexes()?;
        let entries: Vec<(u64, Arc<Mutex<Entry>>)> = lock(&self.cache)
            .entries
            .iter()
            .map(|(i, e)| (*i, e.clone()))
            .collect();
        for (index, e) in entries {
            let held = lock(&e);
            match (held.gone, held.state) {
                (false, State::Clean | State::Dirty) => {
                    out.insert(index);
                }
                (false, State::Removed) => {
                    out.remove(&index);
                }
                _ => {}
            }
        }
        Ok(out)
    }

    fn is_hole(&self, index: u64) -> Result<bool> {
        if let Some(e) = self.lookup(index) {
            let held = lock(&e);
            if !held.gone && matches!(held.state, State::Clean | State::Dirty) {
                use std::os::unix::fs::MetadataExt;
                let p = self.path(index);
                let m = fs::metadata(&p).map_err(|e| Error::io("stat", &p, e))?;
                return Ok(m.blocks() == 0);
            }
        }
        self.inner.is_hole(index)
    }

    fn flush(&self) -> Result<()> {
        let work: Vec<(u64, Arc<Mutex<Entry>>)> = lock(&self.cache)
            .entries
            .iter()
            .map(|(i, e)| (*i, e.clone()))
            .collect();
        let next = Mutex::new(work.into_iter());
        let failed: Mutex<Option<Error>> = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..UPLOADERS {
                s.spawn(|| {
                    loop {
                        let Some((index, e)) = lock(&next).next() else {
                            return;
                        };
                        let mut held = lock(&e);
                        if held.gone {
                            continue;
                        }
                        if let Err(err) = self.write_out(index, &mut held) {
                            lock(&failed).get_or_insert(err);
                            return;
                        }
                    }
                });
            }
        });
        if let Some(e) = failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return Err(e);
        }
        self.inner.flush()
    }

    fn location(&self, index: u64) -> PathBuf {
        self.inner.location(index)
    }
}

impl Drop for WriteBack {
    fn drop(&mut self) {
        // Unflushed writes are dropped with the scratch, as a crash would drop them.
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::volumes::private::local::LocalEpoch;

    /// A write-back cache of `limit` 4 KiB blocks over a local epoch: `(dir, cache)`.
    fn cache(limit: usize) -> (tempfile::TempDir, WriteBack) {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("tmp")).unwrap();
        let inner = LocalEpoch::new(
            dir.path().join("store"),
            dir.path().join("tmp"),
            4096,
            "t".into(),
        );
        let wb = WriteBack::new(Box::new(inner), &dir.path().join("tmp"), 4096, limit).unwrap();
        (dir, wb)
    }

    #[test]
    fn writes_reach_the_store_only_at_flush() {
        let (dir, wb) = cache(8);
        let stored = dir.path().join("store/2");
        wb.create(2, 0, &[1; 10]).unwrap();
        wb.write_in_place(2, 5, &[2; 2]).unwrap();
        assert!(!stored.exists());
        assert!(wb.contains(2).unwrap());
        let mut buf = [0u8; 8];
        wb.read_at(2, 0, &mut buf).unwrap();
        assert_eq!(buf, [1, 1, 1, 1, 1, 2, 2, 1]);
        wb.flush().unwrap();
        let on_store = fs::read(&stored).unwrap();
        assert_eq!(&on_store[..8], &buf);
        assert_eq!(on_store.len(), 4096);
        // A removal is pushed at the next flush too.
        wb.remove(2).unwrap();
        assert!(!wb.contains(2).unwrap() && stored.exists());
        assert!(wb.indexes().unwrap().is_empty());
        wb.flush().unwrap();
        assert!(!stored.exists());
    }

    #[test]
    fn past_its_limit_the_cache_writes_out_and_drops_blocks() {
        let (dir, wb) = cache(2);
        for i in 0..5u8 {
            wb.create(i as u64, 0, &[i + 1]).unwrap();
        }
        // At most two blocks are local: the other three were uploaded to make room.
        let local = fs::read_dir(&wb.dir).unwrap().count();
        assert!(local <= 2, "{local} local blocks");
        let stored = fs::read_dir(dir.path().join("store")).unwrap().count();
        assert_eq!(stored, 3);
        for i in 0..5u8 {
            let mut b = [0u8; 2];
            wb.read_at(i as u64, 0, &mut b).unwrap();
            assert_eq!(b, [i + 1, 0]);
        }
        wb.flush().unwrap();
        assert_eq!(fs::read_dir(dir.path().join("store")).unwrap().count(), 5);
    }

    #[test]
    fn writers_flushes_and_evictions_together_lose_nothing() {
        let (dir, wb) = cache(3);
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let wb = &wb;
                s.spawn(move || {
                    // Each thread owns blocks t, t + 4 (as the volume's stripes would).
                    for round in 0..30u8 {
                        let index = t + 4 * (round as u64 % 2);
                        if round < 2 {
                            wb.create(index, 0, &[0; 16]).unwrap();
                        }
                        wb.write_in_place(index, round as u64 % 16, &[round + 1])
                            .unwrap();
                    }
                });
            }
            let wb = &wb;
            s.spawn(move || {
                for _ in 0..20 {
                    wb.flush().unwrap();
                }
            });
        });
        wb.flush().unwrap();
        drop(wb);
        // Block t + 4 * k got rounds r with r % 2 == k, each byte r % 16 = r + 1, last wins.
        for t in 0..4u64 {
            for k in 0..2u64 {
                let got = fs::read(dir.path().join(format!("store/{}", t + 4 * k))).unwrap();
                let mut want = [0u8; 16];
                for round in (0..30u8).filter(|r| *r as u64 % 2 == k) {
                    want[round as usize % 16] = round + 1;
                }
                assert_eq!(&got[..16], &want[..], "block {}", t + 4 * k);
            }
        }
    }

    #[test]
    fn unflushed_writes_are_dropped_with_the_cache_and_leave_the_store_as_flushed() {
        let (dir, wb) = cache(8);
        wb.create(0, 0, &[1]).unwrap();
        wb.flush().unwrap();
        wb.write_in_place(0, 0, &[9]).unwrap();
        wb.create(1, 0, &[9]).unwrap();
        let scratch = wb.dir.clone();
        drop(wb);
        assert!(!scratch.exists());
        assert_eq!(fs::read(dir.path().join("store/0")).unwrap()[0], 1);
        assert!(!dir.path().join("store/1").exists());
    }
}
