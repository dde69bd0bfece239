//! Copy-on-write block I/O of one volume: reads through private blocks, then the base map,
//! then zeros; writes copy a shared block into a private one once, then go in place.
//!
//! Private blocks live in a [`PrivateEpoch`] (files `volumes/<id>/<epoch>/<index>`, or
//! objects; see [`super::private`]). A private block appears atomically, so its existence is
//! the whole state: no metadata is rewritten per write. Writes are durable once
//! [`VolumeBlocks::finish`] returns.
//!
//! Concurrency: every method takes `&self`. Each block is guarded by one of [`STRIPES`]
//! striped locks: writes to a block (copy-on-write, in place, zeroing) hold its stripe
//! exclusively, reads hold it shared, so writes to different blocks proceed in parallel and a
//! read never sees a torn block. [`VolumeBlocks::finish`] covers every write that returned
//! before it was called.

use super::copying::{Hasher, Origin};
use super::private::PrivateEpoch;
use crate::error::{Error, Result};
use crate::storage::export::{BlockFault, read_one};
use crate::storage::{Backend, BlockHash, BlockMap};
use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Number of striped block locks of a volume (block `i` is guarded by stripe `i % STRIPES`).
pub const STRIPES: usize = 64;

pub use super::private::local::MAX_DIRTY_FILES;

/// Where block `i` of a volume reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockSource {
    /// A private block of the volume's current epoch.
    Private,
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
    private: Box<dyn PrivateEpoch>,
    resource: String,
    block_size: u64,
    stripes: Vec<RwLock<()>>,
    /// Verifies the origins of copies while they are written.
    hasher: Hasher,
}

impl<'a> VolumeBlocks<'a> {
    /// I/O over `base` plus the private blocks `private` (see [`super::private`]); new
    /// blocks are staged until the next [`VolumeBlocks::finish`] where the store allows it
    /// (see [`super::staged`]). `resource` names the volume in errors.
    pub fn new(
        backend: &'a dyn Backend,
        base: BlockMap,
        private: Box<dyn PrivateEpoch>,
        resource: String,
    ) -> VolumeBlocks<'a> {
        let block_size = base.block_size() as u64;
        VolumeBlocks {
            backend,
            block_size,
            base,
            private: super::staged::wrap(private, block_size),
            resource,
            stripes: (0..STRIPES).map(|_| RwLock::new(())).collect(),
            hasher: Hasher::default(),
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

    /// Where private block `index` of this epoch is (a path or URL), for messages.
    pub fn private_location(&self, index: u64) -> std::path::PathBuf {
        self.private.location(index)
    }

    /// Where block `index` reads from. Anything but a private block at its place (a
    /// directory, a link, a FIFO) is refused as damage, as [`list_private`] does not count it
    /// as a private block either.
    pub fn source(&self, index: u64) -> Result<BlockSource> {
        if self.private.contains(index)? {
            return Ok(BlockSource::Private);
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
        self.private.indexes()
    }

    /// Reads the whole private block `index` (`block_size` bytes) into `buf`.
    pub fn read_private(&self, index: u64, buf: &mut Vec<u8>) -> Result<()> {
        let _hold = self.lock_block_shared(index);
        self.private
            .read_block(index, self.block_size as usize, buf)
    }

    /// Fills `out` with the bytes at `within` of private block `index`; the caller holds the
    /// block's stripe (see [`VolumeBlocks::lock_block_shared`]) so no write tears it.
    pub fn read_private_at(&self, index: u64, within: u64, out: &mut [u8]) -> Result<()> {
        self.private.read_at(index, within, out)
    }

    /// True when private block `index` stores no data (reads as zeros).
    pub fn private_is_hole(&self, index: u64) -> Result<bool> {
        self.private.is_hole(index)
    }

    /// Removes private block `index` (absent: nothing). Durable once
    /// [`VolumeBlocks::finish`] returns.
    pub fn remove_private(&self, index: u64) -> Result<()> {
        let _hold = self.lock_block(index);
        self.private.remove(index)
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
            BlockSource::Private => self.private.read_block(index, bs, buf)?,
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
                BlockSource::Private => {
                    self.private
                        .read_at(index, within as u64, &mut buf[done..done + n])?
                }
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
            BlockSource::Private => {
                self.private.write_in_place(index, within as u64, chunk)?;
                stats.blocks_in_place += 1;
            }
            BlockSource::Zero if chunk.iter().all(|&b| b == 0) => stats.blocks_skipped += 1,
            BlockSource::Zero => {
                self.private.create(index, within as u64, chunk)?;
                stats.blocks_allocated += 1;
            }
            BlockSource::Shared(h) => {
                self.copy_on_write(index, &h, within, chunk)?;
                stats.blocks_copied += 1;
            }
        }
        Ok(())
    }

    /// Makes shared block `index` (hash `hash`) private with `chunk` at `within`; the caller
    /// holds the block's stripe exclusively. The stored block (mapped where the store has
    /// files) is hashed by the volume's hasher while its copy is written from it: a copy whose
    /// origin fails verification is removed before the stripe is released (nobody has read
    /// it) and the write fails.
    fn copy_on_write(
        &self,
        index: u64,
        hash: &BlockHash,
        within: usize,
        chunk: &[u8],
    ) -> Result<()> {
        let bs = self.block_size as usize;
        let fault = |f: BlockFault| f.with_location(hash, index * self.block_size, &self.resource);
        let origin = Arc::new(Origin::load(self.backend, hash, bs).map_err(fault)?);
        let pending = self.hasher.offer(origin.clone());
        let created = self.private.create_copy(index, bs, &origin, within, chunk);
        if pending.digest() != *hash {
            if created.is_ok() {
                self.private.remove(index)?;
            }
            return Err(fault(BlockFault::Corrupt));
        }
        created
    }

    /// Makes block `index` read as zeros with no private data: its private block goes when
    /// the base block is zero, else it becomes an empty (all-hole) private block. Durable once
    /// [`VolumeBlocks::finish`] returns.
    pub fn zero_block(&self, index: u64) -> Result<()> {
        let _hold = self.lock_block(index);
        if self.base.hash_at(index).is_zero() {
            return self.private.remove(index);
        }
        self.private.create(index, 0, &[])
    }

    /// Makes every write that returned before this call durable (the private store's
    /// barrier: fsyncs of a local epoch, uploads of a write-back cache).
    pub fn finish(&self) -> Result<()> {
        self.private.flush()
    }
}

/// Writes the non-zero 4 KiB pages of `data` at `offset` of a file that reads as zeros there,
/// leaving the zero pages as holes.
pub fn write_nonzero_pages(f: &File, data: &[u8], offset: u64) -> std::io::Result<()> {
    write_nonzero_runs(data, offset, |run, at| f.write_all_at(run, at))
}

/// [`write_nonzero_pages`] through `write(bytes, offset)`: each run of consecutive non-zero
/// pages of `data` goes out as one call, the zero pages not at all.
pub fn write_nonzero_runs(
    data: &[u8],
    offset: u64,
    write: impl Fn(&[u8], u64) -> std::io::Result<()>,
) -> std::io::Result<()> {
    const PAGE: usize = 4096;
    let mut run: Option<usize> = None;
    for (i, page) in data.chunks(PAGE).enumerate() {
        let zero = page.iter().all(|&b| b == 0);
        match (zero, run) {
            (false, None) => run = Some(i * PAGE),
            (true, Some(start)) => {
                write(&data[start..i * PAGE], offset + start as u64)?;
                run = None;
            }
            _ => {}
        }
    }
    match run {
        Some(start) => write(&data[start..], offset + start as u64),
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
    use crate::services::volumes::private::local::LocalEpoch;
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
        let private = LocalEpoch::new(dir.join("epoch"), dir.join("tmp"), 4096, "t".into());
        VolumeBlocks::new(backend, base, Box::new(private), "volume test".into())
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
        v.finish().unwrap();
        fs::create_dir(dir.path().join("epoch/2")).unwrap();
        assert!(matches!(v.source(0), Ok(BlockSource::Private)));
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
