//! Copy-on-write block I/O of one volume: reads through private blocks, then the base map,
//! then zeros; writes copy a shared block into a private one once, then go in place.
//!
//! A private block is a file `volumes/<id>/<epoch>/<index>` of exactly one block. It appears
//! atomically (written to `tmp/`, fsynced, renamed), so its existence is the whole state: no
//! metadata is rewritten per write. In-place writes are fsynced before the command returns.
//!
//! Concurrency: every method takes `&self`. Each block is guarded by one of [`STRIPES`]
//! striped locks: writes to a block (copy-on-write, in place, zeroing) hold its stripe
//! exclusively, reads hold it shared, so writes to different blocks proceed in parallel and a
//! read never sees a torn block. [`VolumeBlocks::finish`] covers every write that returned
//! before it was called.

use crate::error::{Error, Result};
use crate::storage::export::read_one;
use crate::storage::{Backend, BlockHash, BlockMap};
use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Number of striped block locks of a volume (block `i` is guarded by stripe `i % STRIPES`).
pub const STRIPES: usize = 64;

/// Private files written in place and not yet fsynced, at most this many: past it they are
/// fsynced early and their descriptors closed, so a long run of writes without a flush holds
/// a bounded number of descriptors.
pub const MAX_DIRTY_FILES: usize = 256;

/// Where block `i` of a volume reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockSource {
    Private(PathBuf),
    Shared(BlockHash),
    Zero,
}

/// What a write did, block by block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WriteStats {
    /// Shared blocks copied into new private blocks.
    pub blocks_copied: u64,
    /// Zero blocks that became private (nothing copied).
    pub blocks_allocated: u64,
    /// Private blocks written in place.
    pub blocks_in_place: u64,
    /// Zero data written over zero blocks: nothing to do.
    pub blocks_skipped: u64,
}

/// Block I/O over one volume epoch.
pub struct VolumeBlocks<'a> {
    backend: &'a dyn Backend,
    base: BlockMap,
    epoch_dir: PathBuf,
    tmp_dir: PathBuf,
    resource: String,
    block_size: u64,
    stripes: Vec<RwLock<()>>,
    pending: Mutex<Pending>,
}

/// What [`VolumeBlocks::finish`] still has to make durable.
#[derive(Default)]
struct Pending {
    /// Private files written in place, by index (one descriptor per block, reused by later
    /// writes to it until the next finish; at most [`MAX_DIRTY_FILES`]).
    dirty: std::collections::BTreeMap<u64, Arc<File>>,
    /// A private file was created or removed: the epoch directory needs an fsync.
    created: bool,
    /// The epoch directory exists (made by this writer or found).
    dir_ready: bool,
}

impl<'a> VolumeBlocks<'a> {
    /// I/O over `base` plus the private blocks in `epoch_dir`. `resource` names the volume in
    /// errors; temporary files go to `tmp_dir` (same filesystem as `epoch_dir`).
    pub fn new(
        backend: &'a dyn Backend,
        base: BlockMap,
        epoch_dir: PathBuf,
        tmp_dir: PathBuf,
        resource: String,
    ) -> VolumeBlocks<'a> {
        VolumeBlocks {
            backend,
            block_size: base.block_size() as u64,
            base,
            epoch_dir,
            tmp_dir,
            resource,
            stripes: (0..STRIPES).map(|_| RwLock::new(())).collect(),
            pending: Mutex::new(Pending::default()),
        }
    }

    /// Holds block `index` for reading: no write to it runs meanwhile.
    pub fn lock_block_shared(&self, index: u64) -> RwLockReadGuard<'_, ()> {
        let stripe = &self.stripes[(index % STRIPES as u64) as usize];
        stripe.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds block `index` for writing: no other read or write of it runs meanwhile.
    fn lock_block(&self, index: u64) -> RwLockWriteGuard<'_, ()> {
        let stripe = &self.stripes[(index % STRIPES as u64) as usize];
        stripe.write().unwrap_or_else(|e| e.into_inner())
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The block store shared blocks are read from.
    pub fn backend(&self) -> &'a dyn Backend {
        self.backend
    }

    pub fn block_size(&self) -> u64 {
        self.block_size
    }

    pub fn base(&self) -> &BlockMap {
        &self.base
    }

    /// Path of private block `index` in this epoch.
    pub fn private_path(&self, index: u64) -> PathBuf {
        self.epoch_dir.join(index.to_string())
    }

    /// Where block `index` reads from. Anything but a regular file at the private block's
    /// path (a directory, a link, a FIFO) is refused as damage, as [`list_private`] does not
    /// count it as a private block either.
    pub fn source(&self, index: u64) -> Result<BlockSource> {
        let path = self.private_path(index);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => return Ok(BlockSource::Private(path)),
            Ok(_) => {
                return Err(Error::Corrupt {
                    path,
                    reason: format!(
                        "private block {index} of {} is not a regular file; `arch fsck` \
                         reports it",
                        self.resource
                    ),
                });
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("stat", &path, e)),
        }
        let h = self.base.hash_at(index);
        Ok(if h.is_zero() {
            BlockSource::Zero
        } else {
            BlockSource::Shared(h)
        })
    }

    /// Indexes of the private blocks of this epoch (all of them, even past the end).
    pub fn private_indexes(&self) -> Result<BTreeSet<u64>> {
        list_private(&self.epoch_dir)
    }

    /// Reads block `index` (whole, `block_size` bytes) into `buf`, verifying shared blocks.
    pub fn read_block(&self, index: u64, buf: &mut Vec<u8>) -> Result<()> {
        let _hold = self.lock_block_shared(index);
        self.read_block_held(index, buf)
    }

    /// [`VolumeBlocks::read_block`] with the block's stripe already held.
    fn read_block_held(&self, index: u64, buf: &mut Vec<u8>) -> Result<()> {
        let bs = self.block_size as usize;
        match self.source(index)? {
            BlockSource::Zero => {
                buf.clear();
                buf.resize(bs, 0);
            }
            BlockSource::Shared(h) => read_one(self.backend, &h, bs, true, buf)
                .map_err(|f| f.with_location(&h, index * self.block_size, &self.resource))?,
            BlockSource::Private(p) => read_private(&p, bs, buf)?,
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes at `offset`. The caller keeps the range inside the volume.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let mut block = Vec::new();
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let (index, within) = (pos / self.block_size, (pos % self.block_size) as usize);
            let n = (self.block_size as usize - within).min(buf.len() - done);
            let _hold = self.lock_block_shared(index);
            match self.source(index)? {
                BlockSource::Zero => buf[done..done + n].fill(0),
                BlockSource::Private(p) => read_exact_at(&p, &mut buf[done..done + n], within)?,
                BlockSource::Shared(_) => {
                    self.read_block_held(index, &mut block)?;
                    buf[done..done + n].copy_from_slice(&block[within..within + n]);
                }
            }
            done += n;
        }
        Ok(())
    }

    /// Writes `data` at `offset`, copying shared blocks on first write. The caller keeps the
    /// range inside the volume. Durable once [`VolumeBlocks::finish`] returns.
    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<WriteStats> {
        let mut stats = WriteStats::default();
        let mut done = 0usize;
        while done < data.len() {
            let pos = offset + done as u64;
            let (index, within) = (pos / self.block_size, (pos % self.block_size) as usize);
            let n = (self.block_size as usize - within).min(data.len() - done);
            self.write_in_block(index, within, &data[done..done + n], &mut stats)?;
            done += n;
        }
        Ok(stats)
    }

    fn write_in_block(
        &self,
        index: u64,
        within: usize,
        chunk: &[u8],
        stats: &mut WriteStats,
    ) -> Result<()> {
        let _hold = self.lock_block(index);
        match self.source(index)? {
            BlockSource::Private(p) => {
                let kept = self.pending().dirty.get(&index).cloned();
                let f = match kept {
                    Some(f) => f,
                    None => Arc::new(
                        crate::storage::fsutil::open_regular_rw(&p)?
                            .ok_or_else(|| Error::io("open", &p, ErrorKind::NotFound.into()))?,
                    ),
                };
                f.write_all_at(chunk, within as u64)
                    .map_err(|e| Error::io("write", &p, e))?;
                // Recorded after the write, so a finish that starts later fsyncs it.
                self.keep_dirty(index, f)?;
                stats.blocks_in_place += 1;
            }
            BlockSource::Zero if chunk.iter().all(|&b| b == 0) => stats.blocks_skipped += 1,
            BlockSource::Zero => {
                self.create_private(index, |f| f.write_all_at(chunk, within as u64))?;
                stats.blocks_allocated += 1;
            }
            BlockSource::Shared(_) => {
                let mut block = Vec::new();
                self.read_block_held(index, &mut block)?;
                block[within..within + chunk.len()].copy_from_slice(chunk);
                self.create_private(index, |f| write_nonzero_pages(f, &block, 0))?;
                stats.blocks_copied += 1;
            }
        }
        Ok(())
    }

    /// Makes block `index` read as zeros with no private data: its private file goes when the
    /// base block is zero, else it becomes an empty (all-hole) private block. Durable once
    /// [`VolumeBlocks::finish`] returns.
    pub fn zero_block(&self, index: u64) -> Result<()> {
        let _hold = self.lock_block(index);
        // A descriptor kept for in-place writes would name the replaced file.
        self.pending().dirty.remove(&index);
        if self.base.hash_at(index).is_zero() {
            let path = self.private_path(index);
            match fs::remove_file(&path) {
                Ok(()) => self.pending().created = true,
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove", &path, e)),
            }
            return Ok(());
        }
        self.create_private(index, |_| Ok(()))
    }

    /// Makes private block `index` appear atomically with the content `fill` writes into a
    /// zero block-sized file.
    fn create_private(
        &self,
        index: u64,
        fill: impl FnOnce(&File) -> std::io::Result<()>,
    ) -> Result<()> {
        {
            // Under the lock: two writers never race to create the directory.
            let mut pending = self.pending();
            if !pending.dir_ready {
                let modes = crate::storage::fsutil::Modes::of_dir(&self.tmp_dir);
                crate::storage::fsutil::create_dir_all(&self.epoch_dir, modes)?;
                if let Some(parent) = self.epoch_dir.parent() {
                    crate::storage::fsutil::sync_parent(parent)?;
                    crate::storage::fsutil::sync_dir(parent)?;
                }
                pending.dir_ready = true;
            }
        }
        let tmp = self.tmp_dir.join(format!(
            "vol-{}-{index}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let result = (|| {
            let modes = crate::storage::fsutil::Modes::of_dir(&self.tmp_dir);
            let f = crate::storage::fsutil::create_file(&tmp, modes.file())
                .map_err(|e| Error::io("create", &tmp, e))?;
            f.set_len(self.block_size)
                .map_err(|e| Error::io("size", &tmp, e))?;
            fill(&f).map_err(|e| Error::io("write", &tmp, e))?;
            f.sync_data().map_err(|e| Error::io("fsync", &tmp, e))?;
            let dest = self.private_path(index);
            fs::rename(&tmp, &dest).map_err(|e| Error::io("rename to", &dest, e))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        self.pending().created = true;
        result
    }

    /// Records `f` (private block `index`, just written in place) for the next finish; past
    /// [`MAX_DIRTY_FILES`] descriptors, the recorded ones are fsynced now and closed.
    fn keep_dirty(&self, index: u64, f: Arc<File>) -> Result<()> {
        let early = {
            let mut pending = self.pending();
            pending.dirty.entry(index).or_insert(f);
            if pending.dirty.len() < MAX_DIRTY_FILES {
                return Ok(());
            }
            std::mem::take(&mut pending.dirty)
        };
        self.sync_files(early)
    }

    fn sync_files(&self, files: std::collections::BTreeMap<u64, Arc<File>>) -> Result<()> {
        for (index, f) in files {
            f.sync_data()
                .map_err(|e| Error::io("fsync", self.private_path(index), e))?;
        }
        Ok(())
    }

    /// Makes every write that returned before this call durable: in-place writes fsynced, new
    /// private files' directory entries fsynced.
    pub fn finish(&self) -> Result<()> {
        let (files, created) = {
            let mut pending = self.pending();
            (
                std::mem::take(&mut pending.dirty),
                std::mem::take(&mut pending.created),
            )
        };
        let synced = self.sync_files(files).and_then(|()| {
            if created {
                crate::storage::fsutil::sync_dir(&self.epoch_dir)?;
            }
            Ok(())
        });
        if synced.is_err() && created {
            // Not durable yet: the next finish tries the directory again.
            self.pending().created = true;
        }
        synced
    }

    /// Number of in-place written files waiting for [`VolumeBlocks::finish`].
    #[cfg(test)]
    fn dirty_files(&self) -> usize {
        self.pending().dirty.len()
    }
}

/// Writes the non-zero 4 KiB pages of `data` at `offset` of a file that reads as zeros there,
/// leaving the zero pages as holes.
pub fn write_nonzero_pages(f: &File, data: &[u8], offset: u64) -> std::io::Result<()> {
    const PAGE: usize = 4096;
    // Runs of consecutive non-zero pages go out as one write each.
    let mut run: Option<usize> = None;
    for (i, page) in data.chunks(PAGE).enumerate() {
        let zero = page.iter().all(|&b| b == 0);
        match (zero, run) {
            (false, None) => run = Some(i * PAGE),
            (true, Some(start)) => {
                f.write_all_at(&data[start..i * PAGE], offset + start as u64)?;
                run = None;
            }
            _ => {}
        }
    }
    match run {
        Some(start) => f.write_all_at(&data[start..], offset + start as u64),
        None => Ok(()),
    }
}

/// The block index a private file named `name` holds: canonical decimal only (no sign, no
/// leading zero), since only `volumes/<id>/<epoch>/<i>` with `i` written so is ever read.
pub fn parse_block_index(name: &str) -> Option<u64> {
    let canonical = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_digit())
        && (name == "0" || !name.starts_with('0'));
    canonical.then(|| name.parse().ok()).flatten()
}

/// Indexes of the private blocks in `epoch_dir`: regular files with canonical names.
pub fn list_private(epoch_dir: &Path) -> Result<BTreeSet<u64>> {
    let mut out = BTreeSet::new();
    let entries = match fs::read_dir(epoch_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io("list", epoch_dir, e)),
    };
    for e in entries {
        let e = e.map_err(|e| Error::io("list", epoch_dir, e))?;
        // Anything else in the directory (other names, directories, links) is garbage that
        // no read consults; fsck reports it and gc removes it.
        let regular = e.file_type().is_ok_and(|t| t.is_file());
        if let Some(i) = e.file_name().to_str().and_then(parse_block_index) {
            if regular {
                out.insert(i);
            }
        }
    }
    Ok(out)
}

/// Reads a whole private block file (exactly `len` bytes) into `buf`.
pub fn read_private(path: &Path, len: usize, buf: &mut Vec<u8>) -> Result<()> {
    buf.clear();
    buf.resize(len, 0);
    read_exact_at(path, buf, 0)
}

/// Appends `len` bytes at `offset` of a private block file to `out` (no zero-fill first).
pub fn append_exact_at(path: &Path, offset: u64, len: usize, out: &mut Vec<u8>) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = crate::storage::fsutil::open_regular(path)?
        .ok_or_else(|| Error::io("open", path, ErrorKind::NotFound.into()))?;
    f.seek(SeekFrom::Start(offset))
        .map_err(|e| Error::io("seek", path, e))?;
    out.reserve(len);
    let got = f
        .take(len as u64)
        .read_to_end(out)
        .map_err(|e| Error::io("read", path, e))?;
    if got != len {
        return Err(Error::Corrupt {
            path: path.to_path_buf(),
            reason: "private block is shorter than a block".into(),
        });
    }
    Ok(())
}

/// Reads `buf.len()` bytes at `offset` of a private block file.
pub fn read_exact_at(path: &Path, buf: &mut [u8], offset: usize) -> Result<()> {
    let f = crate::storage::fsutil::open_regular(path)?
        .ok_or_else(|| Error::io("open", path, ErrorKind::NotFound.into()))?;
    f.read_exact_at(buf, offset as u64).map_err(|e| {
        if e.kind() == ErrorKind::UnexpectedEof {
            Error::Corrupt {
                path: path.to_path_buf(),
                reason: "private block is shorter than a block".into(),
            }
        } else {
            Error::io("read", path, e)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::local::LocalBackend;

    /// Blocks of 4 KiB over an all-zero base in a temp directory: `(dir, backend)`.
    fn scratch() -> (tempfile::TempDir, LocalBackend) {
        let dir = tempfile::tempdir().unwrap();
        LocalBackend::create_layout(dir.path()).unwrap();
        let backend = LocalBackend::new(dir.path());
        (dir, backend)
    }

    fn blocks<'a>(dir: &Path, backend: &'a LocalBackend, count: u64) -> VolumeBlocks<'a> {
        let base = BlockMap::zeros(4096, count * 4096).unwrap();
        fs::create_dir_all(dir.join("tmp")).unwrap();
        VolumeBlocks::new(
            backend,
            base,
            dir.join("epoch"),
            dir.join("tmp"),
            "volume test".into(),
        )
    }

    #[test]
    fn in_place_writes_hold_a_bounded_number_of_descriptors() {
        let (dir, backend) = scratch();
        let count = MAX_DIRTY_FILES as u64 + 40;
        let v = blocks(dir.path(), &backend, count);
        for i in 0..count {
            v.write_at(i * 4096, &[1]).unwrap();
        }
        v.finish().unwrap();
        // Now every block is private: the second pass writes in place.
        for i in 0..count {
            v.write_at(i * 4096 + 1, &[2]).unwrap();
            assert!(v.dirty_files() < MAX_DIRTY_FILES, "block {i}");
        }
        assert!(v.dirty_files() > 0);
        v.finish().unwrap();
        assert_eq!(v.dirty_files(), 0);
        let mut buf = [0u8; 3];
        v.read_at((count - 1) * 4096, &mut buf).unwrap();
        assert_eq!(buf, [1, 2, 0]);
    }

    #[test]
    fn writers_of_different_blocks_run_together_and_reads_never_see_a_torn_block() {
        let (dir, backend) = scratch();
        let v = blocks(dir.path(), &backend, 8);
        // Block 0 is held for writing: a writer of block 1 still completes meanwhile.
        let held = v.lock_block(0);
        std::thread::scope(|s| {
            s.spawn(|| v.write_at(4096, &[7; 4096]).unwrap())
                .join()
                .unwrap();
        });
        drop(held);
        // Writers fill whole blocks with one byte value each time; readers must always see
        // a block of one value.
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let v = &v;
                s.spawn(move || {
                    for round in 0..40u8 {
                        let value = t * 50 + round + 1;
                        let block = ((t as u64) + round as u64) % 4;
                        v.write_at(block * 4096, &[value; 4096]).unwrap();
                    }
                });
            }
            for _ in 0..2 {
                let v = &v;
                s.spawn(move || {
                    let mut buf = vec![0u8; 4096];
                    for round in 0..200u64 {
                        v.read_at((round % 4) * 4096, &mut buf).unwrap();
                        assert!(buf.iter().all(|&b| b == buf[0]), "torn block");
                    }
                });
            }
        });
        v.finish().unwrap();
    }

    #[test]
    fn a_non_regular_entry_at_a_private_path_is_refused() {
        let (dir, backend) = scratch();
        let v = blocks(dir.path(), &backend, 4);
        v.write_at(0, &[1]).unwrap();
        fs::create_dir(v.private_path(2)).unwrap();
        assert!(matches!(v.source(0), Ok(BlockSource::Private(_))));
        assert!(matches!(v.source(2), Err(Error::Corrupt { .. })));
        assert!(v.write_at(2 * 4096, &[1]).is_err());
        assert_eq!(
            v.private_indexes().unwrap().into_iter().collect::<Vec<_>>(),
            [0]
        );
    }

    #[test]
    fn only_canonical_names_of_regular_files_are_private_blocks() {
        for (name, want) in [
            ("0", Some(0)),
            ("17", Some(17)),
            ("18446744073709551615", Some(u64::MAX)),
            ("0001", None),
            ("+3", None),
            ("-1", None),
            ("", None),
            (" 1", None),
            ("1a", None),
            ("18446744073709551616", None),
        ] {
            assert_eq!(parse_block_index(name), want, "{name:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        for name in ["0", "0001", "+3", "7"] {
            fs::write(dir.path().join(name), b"").unwrap();
        }
        fs::create_dir(dir.path().join("5")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("9")).unwrap();
        let found: Vec<u64> = list_private(dir.path()).unwrap().into_iter().collect();
        assert_eq!(found, vec![0, 7]);
    }

    #[test]
    fn nonzero_pages_land_in_runs_and_zero_pages_stay_holes() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        // Pages: data, data, zero, data(short tail) -- at an offset of one page.
        let mut data = vec![0u8; 3 * 4096 + 100];
        data[..2 * 4096].fill(1);
        data[3 * 4096 + 99] = 2;
        let p = dir.path().join("f");
        let f = File::create(&p).unwrap();
        f.set_len(8 * 4096).unwrap();
        write_nonzero_pages(&f, &data, 4096).unwrap();
        let got = fs::read(&p).unwrap();
        assert!(got[..4096].iter().all(|&b| b == 0));
        assert_eq!(&got[4096..4096 + data.len()], &data[..]);
        assert!(got[4096 + data.len()..].iter().all(|&b| b == 0));
        // Three pages written (two in one run, the tail's page), the zero page a hole.
        assert!(fs::metadata(&p).unwrap().blocks() * 512 <= 3 * 4096);
    }
}
