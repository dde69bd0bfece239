//! New private blocks staged until the next flush: the copy-on-write of a first write (and a
//! whole-block zeroing) writes the new block into a file in the store's staging directory
//! (`tmp/stage-<volume id>-<index>-<random>`, see [`PrivateEpoch::staging`]) and serves it
//! from there; the flush makes every staged file durable (fdatasync, several at once) and only
//! then moves it into place ([`PrivateEpoch::adopt`]: a rename), then runs the store's own
//! flush (the epoch directory's fsync). So a first touch costs no fsync on the write path, and
//! a flush pays for all of them together.
//!
//! Invariants:
//! - a block is staged (its file in `tmp/`), placed (in the store), or both for a moment
//!   during its flush: [`Staged::contains`] never misses it;
//! - a staged file is never placed before it is durable, so a crash leaves each block as of
//!   the last flush that covered it (old or new, never torn): a staged file is unflushed data,
//!   garbage in `tmp/` after a crash, and is removed when the epoch is dropped unflushed;
//! - only the one writer of a volume (its server, or a command holding its exclusive lock)
//!   stages files of that volume, so the files with its prefix that such a writer finds when
//!   it opens the volume are a killed writer's: [`remove_leftovers`] deletes them (and gc,
//!   which runs with no writer, deletes every entry of `tmp/`; fsck counts them as garbage);
//! - callers hold the volume's block stripe around calls about one block (see
//!   [`PrivateEpoch`]); a flush runs beside them and takes each block's own mutex to place it,
//!   after which writes to that block go to the store (which tracks them for the next flush).

use super::copying;
use super::private::PrivateEpoch;
use crate::error::{Error, Result};
use crate::services::volumes::blockio::write_nonzero_pages;
use crate::storage::fsutil;
use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// fdatasyncs a flush runs at once (the disk and the journal batch them).
const SYNCERS: usize = 8;

/// Blocks staged at most (each holds a descriptor): a creation past it places the staged
/// blocks first, as a flush would (they become durable early, which is allowed).
pub const MAX_STAGED: usize = 256;

/// Private blocks of `inner` with new blocks staged until the next flush.
pub struct Staged {
    inner: Box<dyn PrivateEpoch>,
    dir: PathBuf,
    /// Name prefix of this volume's staged files ([`prefix`]).
    prefix: String,
    block_size: u64,
    mode: u32,
    blocks: Mutex<HashMap<u64, Arc<Block>>>,
}

/// One staged block: its file in the staging directory.
struct Block {
    path: PathBuf,
    file: File,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// In-place writes to the staged file so far.
    writes: u64,
    /// Moved into the store by a flush: later writes go to the store.
    placed: bool,
    /// Replaced or removed before it was placed: its file is gone.
    dropped: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `inner` with new blocks staged until the next flush when its store can take in files
/// (local files); else `inner` as it is.
pub fn wrap(inner: Box<dyn PrivateEpoch>, block_size: u64) -> Box<dyn PrivateEpoch> {
    let Some((dir, prefix)) = inner.staging() else {
        return inner;
    };
    let mode = fsutil::Modes::of_dir(&dir).file();
    Box::new(Staged {
        inner,
        dir,
        prefix,
        block_size,
        mode,
        blocks: Mutex::new(HashMap::new()),
    })
}

/// The name prefix of the staged files of volume `id` in the staging directory.
pub fn prefix(id: &str) -> String {
    format!("stage-{id}-")
}

/// Removes the staged files of volume `id` from `dir` (the repository's `tmp/`) and returns how
/// many there were. Only for the volume's one writer, when it opens the volume: any file found
/// then was left by a writer that was killed (unflushed writes, lost as a disk's cache is).
pub fn remove_leftovers(dir: &Path, id: &str) -> Result<u64> {
    let prefix = prefix(id);
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io("list", dir, e)),
    };
    let mut removed = 0;
    for e in entries {
        let e = e.map_err(|e| Error::io("list", dir, e))?;
        let ours = e
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(&prefix));
        if ours && e.file_type().is_ok_and(|t| t.is_file()) {
            let path = e.path();
            match fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove", &path, e)),
            }
        }
    }
    Ok(removed)
}

impl Staged {
    /// The staged block `index`, while it is not placed yet.
    fn staged(&self, index: u64) -> Option<Arc<Block>> {
        lock(&self.blocks).get(&index).cloned()
    }

    /// Forgets the staged block `index` (replaced or removed), deleting its file unless a
    /// flush placed it already.
    fn drop_block(block: &Block) {
        let mut st = lock(&block.state);
        if !st.placed && !st.dropped {
            st.dropped = true;
            let _ = fs::remove_file(&block.path);
        }
    }

    /// Writes a new whole block (zeros, with `data` at `within`) into a fresh staged file.
    fn write_file(&self, index: u64, within: u64, data: &[u8]) -> Result<Block> {
        self.new_file(index, |file| {
            // A whole block keeps its zero pages as holes.
            if within == 0 && data.len() as u64 == self.block_size {
                write_nonzero_pages(file, data, 0)
            } else {
                file.write_all_at(data, within)
            }
        })
    }

    /// A fresh staged file for block `index`, `block_size` bytes of holes, then `fill`ed;
    /// removed again when `fill` fails.
    fn new_file(
        &self,
        index: u64,
        fill: impl FnOnce(&File) -> std::io::Result<()>,
    ) -> Result<Block> {
        let path = self.dir.join(format!(
            "{}{index}-{}",
            self.prefix,
            uuid::Uuid::new_v4().simple()
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(self.mode)
            .open(&path)
            .map_err(|e| Error::io("create", &path, e))?;
        if let Err(e) = file.set_len(self.block_size).and_then(|()| fill(&file)) {
            let _ = fs::remove_file(&path);
            return Err(Error::io("write", &path, e));
        }
        Ok(Block {
            path,
            file,
            state: Mutex::new(State::default()),
        })
    }

    /// Stages `block` as block `index` (replacing a staged one), placing the staged blocks
    /// first when [`MAX_STAGED`] are there.
    fn stage(&self, index: u64, block: impl FnOnce() -> Result<Block>) -> Result<()> {
        if lock(&self.blocks).len() >= MAX_STAGED {
            self.place_all()?;
        }
        let block = Arc::new(block()?);
        if let Some(old) = lock(&self.blocks).insert(index, block) {
            Self::drop_block(&old);
        }
        Ok(())
    }

    /// Places every block staged when it was called: fdatasync of all of them (several at
    /// once), then each moved into the store under its own mutex.
    fn place_all(&self) -> Result<()> {
        let staged: Vec<(u64, Arc<Block>)> = lock(&self.blocks)
            .iter()
            .map(|(i, b)| (*i, b.clone()))
            .collect();
        if staged.is_empty() {
            return Ok(());
        }
        // The writes each file had before its fdatasync started: later ones are synced again
        // under the block's mutex before it is placed.
        let seen: Vec<u64> = staged.iter().map(|(_, b)| lock(&b.state).writes).collect();
        let next = AtomicUsize::new(0);
        let failure: Mutex<Option<Error>> = Mutex::new(None);
        let sync = || {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let Some((_, b)) = staged.get(n) else { return };
                if let Err(e) = b.file.sync_data() {
                    // A block dropped meanwhile has no file to care about.
                    let mut first = lock(&failure);
                    if first.is_none() && !lock(&b.state).dropped {
                        *first = Some(Error::io("fsync", &b.path, e));
                    }
                }
            }
        };
        // This thread syncs too: a flush after every write (a writethrough client) has one
        // staged file and starts no thread.
        std::thread::scope(|scope| {
            for _ in 1..SYNCERS.min(staged.len()) {
                scope.spawn(sync);
            }
            sync();
        });
        if let Some(e) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return Err(e);
        }
        for ((index, b), seen) in staged.iter().zip(seen) {
            let mut st = lock(&b.state);
            if st.dropped || st.placed {
                continue;
            }
            if st.writes != seen {
                b.file
                    .sync_data()
                    .map_err(|e| Error::io("fsync", &b.path, e))?;
            }
            self.inner.adopt(*index, &b.path)?;
            st.placed = true;
            drop(st);
            let mut blocks = lock(&self.blocks);
            if blocks.get(index).is_some_and(|now| Arc::ptr_eq(now, b)) {
                blocks.remove(index);
            }
        }
        Ok(())
    }
}

impl PrivateEpoch for Staged {
    fn contains(&self, index: u64) -> Result<bool> {
        // Staged first: a flush places a block before it forgets it.
        if self.staged(index).is_some() {
            return Ok(true);
        }
        self.inner.contains(index)
    }

    fn read_at(&self, index: u64, offset: u64, buf: &mut [u8]) -> Result<()> {
        let Some(b) = self.staged(index) else {
            return self.inner.read_at(index, offset, buf);
        };
        // The descriptor reads the same file after a flush moved it into place.
        b.file.read_exact_at(buf, offset).map_err(|e| {
            if e.kind() == ErrorKind::UnexpectedEof {
                Error::Corrupt {
                    path: b.path.clone(),
                    reason: "staged private block is shorter than a block".into(),
                }
            } else {
                Error::io("read", &b.path, e)
            }
        })
    }

    fn append_at(&self, index: u64, offset: u64, len: usize, out: &mut Vec<u8>) -> Result<()> {
        if self.staged(index).is_none() {
            return self.inner.append_at(index, offset, len, out);
        }
        let start = out.len();
        out.resize(start + len, 0);
        self.read_at(index, offset, &mut out[start..])
            .inspect_err(|_| out.truncate(start))
    }

    fn create(&self, index: u64, within: u64, data: &[u8]) -> Result<()> {
        self.stage(index, || self.write_file(index, within, data))
    }

    /// The copy goes from `origin` into the staged file with `O_DIRECT` (see
    /// [`copying::write_copy`]): no second copy in the page cache, and the flush's fdatasync
    /// finds the data on the device already.
    fn create_copy(
        &self,
        index: u64,
        block_size: usize,
        origin: &[u8],
        within: usize,
        chunk: &[u8],
    ) -> Result<()> {
        self.stage(index, || {
            self.new_file(index, |file| {
                copying::write_copy(file, block_size, origin, within, chunk)
            })
        })
    }

    fn write_in_place(&self, index: u64, offset: u64, data: &[u8]) -> Result<()> {
        if let Some(b) = self.staged(index) {
            let mut st = lock(&b.state);
            if !st.placed && !st.dropped {
                b.file
                    .write_all_at(data, offset)
                    .map_err(|e| Error::io("write", &b.path, e))?;
                st.writes += 1;
                return Ok(());
            }
        }
        self.inner.write_in_place(index, offset, data)
    }

    fn remove(&self, index: u64) -> Result<()> {
        let staged = lock(&self.blocks).remove(&index);
        if let Some(b) = staged {
            Self::drop_block(&b);
        }
        self.inner.remove(index)
    }

    fn indexes(&self) -> Result<BTreeSet<u64>> {
        let staged: Vec<u64> = lock(&self.blocks).keys().copied().collect();
        let mut all = self.inner.indexes()?;
        all.extend(staged);
        Ok(all)
    }

    fn is_hole(&self, index: u64) -> Result<bool> {
        use std::os::unix::fs::MetadataExt;
        let Some(b) = self.staged(index) else {
            return self.inner.is_hole(index);
        };
        let m = b
            .file
            .metadata()
            .map_err(|e| Error::io("stat", &b.path, e))?;
        Ok(m.blocks() == 0)
    }

    fn flush(&self) -> Result<()> {
        self.place_all()?;
        self.inner.flush()
    }

    fn location(&self, index: u64) -> PathBuf {
        self.inner.location(index)
    }

    fn adopt(&self, index: u64, file: &Path) -> Result<()> {
        if let Some(b) = lock(&self.blocks).remove(&index) {
            Self::drop_block(&b);
        }
        self.inner.adopt(index, file)
    }
}

impl Drop for Staged {
    /// Blocks never flushed are unflushed writes: lost, as with a disk's volatile cache.
    fn drop(&mut self) {
        for b in lock(&self.blocks).values() {
            Self::drop_block(b);
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::services::volumes::private::local::LocalEpoch;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const BS: u64 = 64;

    fn local(dir: &Path) -> Box<dyn PrivateEpoch> {
        fs::create_dir_all(dir.join("tmp")).unwrap();
        Box::new(LocalEpoch::new(
            dir.join("epoch"),
            dir.join("tmp"),
            BS,
            "volume t".into(),
        ))
    }

    /// The sorted names in `dir` (none when it does not exist).
    pub(in crate::services::volumes) fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().into_string().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    #[test]
    fn new_blocks_stay_in_tmp_until_the_flush_places_them() {
        let dir = tempfile::tempdir().unwrap();
        let e = wrap(local(dir.path()), BS);
        e.create(3, 10, &[7; 5]).unwrap();
        e.write_in_place(3, 0, &[1]).unwrap();
        e.create(4, 0, &[]).unwrap();
        // Served from the staged files, nothing in the epoch yet.
        assert!(e.contains(3).unwrap() && e.contains(4).unwrap() && !e.contains(5).unwrap());
        assert_eq!(e.indexes().unwrap().into_iter().collect::<Vec<_>>(), [3, 4]);
        assert!(e.is_hole(4).unwrap() && !e.is_hole(3).unwrap());
        assert!(names(&dir.path().join("epoch")).is_empty());
        assert_eq!(names(&dir.path().join("tmp")).len(), 2);
        e.flush().unwrap();
        assert_eq!(names(&dir.path().join("epoch")), ["3", "4"]);
        assert!(names(&dir.path().join("tmp")).is_empty());
        let mut want = vec![0u8; BS as usize];
        want[0] = 1;
        want[10..15].fill(7);
        assert_eq!(fs::read(dir.path().join("epoch/3")).unwrap(), want);
        // Placed blocks are written in place through the store, and stay after a reopen.
        e.write_in_place(3, 1, &[2]).unwrap();
        e.flush().unwrap();
        drop(e);
        want[1] = 2;
        let mut buf = Vec::new();
        local(dir.path())
            .read_block(3, BS as usize, &mut buf)
            .unwrap();
        assert_eq!(buf, want);
    }

    #[test]
    fn unflushed_new_blocks_are_dropped_and_the_flushed_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let e = wrap(local(dir.path()), BS);
        e.create(1, 0, &[1; 4]).unwrap();
        e.flush().unwrap();
        // Replaced, created and removed after the flush: none of it reaches the epoch.
        e.create(1, 0, &[9; 4]).unwrap();
        e.create(2, 0, &[2; 4]).unwrap();
        e.create(3, 0, &[3; 4]).unwrap();
        e.remove(3).unwrap();
        let mut b = [0u8; 4];
        e.read_at(1, 0, &mut b).unwrap();
        assert_eq!(b, [9; 4]);
        drop(e);
        assert!(names(&dir.path().join("tmp")).is_empty());
        let e = local(dir.path());
        assert_eq!(e.indexes().unwrap().into_iter().collect::<Vec<_>>(), [1]);
        e.read_at(1, 0, &mut b).unwrap();
        assert_eq!(b, [1; 4]);
    }

    #[test]
    fn writers_and_flushes_together_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let e = wrap(local(dir.path()), BS);
        // One mutex per block stands for the volume's block stripes.
        let stripes: Vec<Mutex<()>> = (0..8).map(|_| Mutex::new(())).collect();
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let (e, stripes) = (&e, &stripes);
                s.spawn(move || {
                    for round in 0..60u64 {
                        let index = (t * 2 + round % 2) % 8;
                        let _hold = lock(&stripes[index as usize]);
                        let value = (t * 60 + round) as u8;
                        match round % 3 {
                            0 => e.create(index, 0, &[value; BS as usize]).unwrap(),
                            _ if e.contains(index).unwrap() => {
                                e.write_in_place(index, 0, &[value; BS as usize]).unwrap()
                            }
                            _ => e.create(index, 0, &[value; BS as usize]).unwrap(),
                        }
                        let mut buf = vec![0u8; BS as usize];
                        e.read_at(index, 0, &mut buf).unwrap();
                        assert!(buf.iter().all(|&b| b == value), "block {index}");
                    }
                });
            }
            s.spawn(|| {
                for _ in 0..30 {
                    e.flush().unwrap();
                }
            });
        });
        // What each writer wrote last is what a reopened epoch reads.
        let mut last = BTreeMap::new();
        for t in 0..4u64 {
            for round in 58..60u64 {
                last.insert((t * 2 + round % 2) % 8, (t * 60 + round) as u8);
            }
        }
        e.flush().unwrap();
        drop(e);
        assert!(names(&dir.path().join("tmp")).is_empty());
        let e = local(dir.path());
        for (index, value) in last {
            let mut buf = vec![0u8; BS as usize];
            e.read_at(index, 0, &mut buf).unwrap();
            assert!(buf.iter().all(|&b| b == value), "block {index}");
        }
    }

    #[test]
    fn staged_blocks_are_bounded_and_placed_early_past_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let e = wrap(local(dir.path()), BS);
        let count = MAX_STAGED as u64 + 10;
        for i in 0..count {
            e.create(i, 0, &[(i % 200) as u8 + 1]).unwrap();
            assert!(
                names(&dir.path().join("tmp")).len() <= MAX_STAGED,
                "block {i}"
            );
        }
        // The first MAX_STAGED were placed when the next one came.
        assert_eq!(names(&dir.path().join("epoch")).len(), MAX_STAGED);
        for i in 0..count {
            let mut b = [0u8; 2];
            e.read_at(i, 0, &mut b).unwrap();
            assert_eq!(b, [(i % 200) as u8 + 1, 0]);
        }
        e.flush().unwrap();
        assert_eq!(e.indexes().unwrap().len() as u64, count);
        assert!(names(&dir.path().join("tmp")).is_empty());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Create(u64, u64, Vec<u8>),
        Write(u64, u64, Vec<u8>),
        Remove(u64),
        Flush,
        /// The process dies: the epoch is dropped unflushed and opened again.
        Crash,
    }

    fn op() -> impl Strategy<Value = Op> {
        let data = |max: u64| {
            proptest::collection::vec(prop_oneof![Just(0u8), any::<u8>()], 0..max as usize)
        };
        prop_oneof![
            (0..5u64, 0..BS).prop_flat_map(move |(i, w)| data(BS - w + 1)
                .prop_map(move |d| Op::Create(i, w, d))),
            (0..5u64, 0..BS).prop_flat_map(move |(i, o)| data(BS - o + 1)
                .prop_map(move |d| Op::Write(i, o, d))),
            (0..5u64).prop_map(Op::Remove),
            Just(Op::Flush),
            Just(Op::Crash),
        ]
    }

    /// The whole-block model: per block, what the store's file holds and what is staged.
    #[derive(Default)]
    struct Model {
        placed: BTreeMap<u64, Vec<u8>>,
        staged: BTreeMap<u64, Vec<u8>>,
    }

    impl Model {
        fn current(&self, index: u64) -> Option<&Vec<u8>> {
            self.staged.get(&index).or(self.placed.get(&index))
        }
    }

    proptest! {
        /// Every read agrees with the whole-block model; a crash keeps the placed blocks
        /// (with the in-place writes that reached their files) and loses the staged ones,
        /// and leaves nothing in tmp/ once the epoch is dropped.
        #[test]
        fn staged_blocks_agree_with_the_whole_block_model(
            ops in proptest::collection::vec(op(), 1..40)
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut e = wrap(local(dir.path()), BS);
            let mut m = Model::default();
            for op in &ops {
                match op {
                    Op::Create(i, w, d) => {
                        let mut b = vec![0u8; BS as usize];
                        b[*w as usize..*w as usize + d.len()].copy_from_slice(d);
                        e.create(*i, *w, d).unwrap();
                        m.staged.insert(*i, b);
                    }
                    Op::Write(i, o, d) => {
                        let Some(b) = m.staged.get_mut(i).or(m.placed.get_mut(i)) else {
                            continue;
                        };
                        b[*o as usize..*o as usize + d.len()].copy_from_slice(d);
                        e.write_in_place(*i, *o, d).unwrap();
                    }
                    Op::Remove(i) => {
                        m.staged.remove(i);
                        m.placed.remove(i);
                        e.remove(*i).unwrap();
                    }
                    Op::Flush => {
                        e.flush().unwrap();
                        let staged = std::mem::take(&mut m.staged);
                        m.placed.extend(staged);
                    }
                    Op::Crash => {
                        drop(e);
                        prop_assert!(names(&dir.path().join("tmp")).is_empty());
                        e = wrap(local(dir.path()), BS);
                        m.staged.clear();
                    }
                }
                for i in 0..5u64 {
                    prop_assert_eq!(e.contains(i).unwrap(), m.current(i).is_some());
                    if let Some(want) = m.current(i) {
                        let mut buf = Vec::new();
                        e.read_block(i, BS as usize, &mut buf).unwrap();
                        prop_assert_eq!(&buf, want, "block {} after {:?}", i, op);
                        if e.is_hole(i).unwrap() {
                            prop_assert!(want.iter().all(|&b| b == 0));
                        }
                    }
                }
                let want: Vec<u64> = m.placed.keys().chain(m.staged.keys()).copied()
                    .collect::<BTreeSet<_>>().into_iter().collect();
                prop_assert_eq!(e.indexes().unwrap().into_iter().collect::<Vec<_>>(), want);
            }
        }
    }
}
