//! Copy-on-write block I/O of one volume: reads through private blocks, then the base map,
//! then zeros; writes copy a shared block into a private one once, then go in place.
//!
//! A private block is a file `volumes/<id>/<epoch>/<index>` of exactly one block. It appears
//! atomically (written to `tmp/`, fsynced, renamed), so its existence is the whole state: no
//! metadata is rewritten per write. In-place writes are fsynced before the command returns.

use crate::error::{Error, Result};
use crate::storage::export::read_one;
use crate::storage::{Backend, BlockHash, BlockMap};
use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

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
    /// Private files written in place, by index, to fsync at [`VolumeBlocks::finish`] (one
    /// descriptor per block, reused by later writes to it until then).
    dirty: std::collections::BTreeMap<u64, File>,
    /// True when a private file was created: the epoch directory needs an fsync.
    created: bool,
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
            dirty: Default::default(),
            created: false,
        }
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

    /// Where block `index` reads from.
    pub fn source(&self, index: u64) -> Result<BlockSource> {
        let path = self.private_path(index);
        match fs::symlink_metadata(&path) {
            Ok(_) => return Ok(BlockSource::Private(path)),
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
            match self.source(index)? {
                BlockSource::Zero => buf[done..done + n].fill(0),
                BlockSource::Private(p) => read_exact_at(&p, &mut buf[done..done + n], within)?,
                BlockSource::Shared(_) => {
                    self.read_block(index, &mut block)?;
                    buf[done..done + n].copy_from_slice(&block[within..within + n]);
                }
            }
            done += n;
        }
        Ok(())
    }

    /// Writes `data` at `offset`, copying shared blocks on first write. The caller keeps the
    /// range inside the volume. Durable once [`VolumeBlocks::finish`] returns.
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<WriteStats> {
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
        &mut self,
        index: u64,
        within: usize,
        chunk: &[u8],
        stats: &mut WriteStats,
    ) -> Result<()> {
        match self.source(index)? {
            BlockSource::Private(p) => {
                let f = match self.dirty.entry(index) {
                    std::collections::btree_map::Entry::Occupied(f) => f.into_mut(),
                    std::collections::btree_map::Entry::Vacant(v) => v.insert(
                        crate::storage::fsutil::open_regular_rw(&p)?
                            .ok_or_else(|| Error::io("open", &p, ErrorKind::NotFound.into()))?,
                    ),
                };
                f.write_all_at(chunk, within as u64)
                    .map_err(|e| Error::io("write", &p, e))?;
                stats.blocks_in_place += 1;
            }
            BlockSource::Zero if chunk.iter().all(|&b| b == 0) => stats.blocks_skipped += 1,
            BlockSource::Zero => {
                self.create_private(index, |f| f.write_all_at(chunk, within as u64))?;
                stats.blocks_allocated += 1;
            }
            BlockSource::Shared(_) => {
                let mut block = Vec::new();
                self.read_block(index, &mut block)?;
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
    pub fn zero_block(&mut self, index: u64) -> Result<()> {
        // A descriptor kept for in-place writes would name the replaced file.
        self.dirty.remove(&index);
        if self.base.hash_at(index).is_zero() {
            let path = self.private_path(index);
            match fs::remove_file(&path) {
                Ok(()) => self.created = true,
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
        &mut self,
        index: u64,
        fill: impl FnOnce(&File) -> std::io::Result<()>,
    ) -> Result<()> {
        if !self.created {
            let modes = crate::storage::fsutil::Modes::of_dir(&self.tmp_dir);
            crate::storage::fsutil::create_dir_all(&self.epoch_dir, modes)?;
            if let Some(parent) = self.epoch_dir.parent() {
                crate::storage::fsutil::sync_parent(parent)?;
                crate::storage::fsutil::sync_dir(parent)?;
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
        self.created = true;
        result
    }

    /// Makes every write durable: in-place writes fsynced, new private files' directory
    /// entries fsynced.
    pub fn finish(&mut self) -> Result<()> {
        for f in std::mem::take(&mut self.dirty).into_values() {
            f.sync_data()
                .map_err(|e| Error::io("fsync", &self.epoch_dir, e))?;
        }
        if self.created {
            crate::storage::fsutil::sync_dir(&self.epoch_dir)?;
            self.created = false;
        }
        Ok(())
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
