//! The packed blocks of a local store (`packs/<id>`, see `storage::pack`): opening a packed
//! block for the read methods of [`super::local::LocalBackend`], and the packs side of a
//! local batch (blocks appended to packs in the batch's directory, renamed into `packs/`
//! at commit once durable).
//!
//! Invariants:
//! - a pack is immutable once in `packs/`: a packed block's identity is its pack's file and
//!   its offset there, and gc replaces a pack by writing another one, never by changing it;
//! - a pack that gc renamed or removed under a reader is looked up again
//!   ([`PackSet::locate`] with `recheck`), so a block that is still stored is found;
//! - a pack whose index is damaged holds no blocks for readers: they are missing, and the
//!   callers report them as such (`arch fsck` names the pack).

use super::backend::BlockVersion;
use super::fsutil::{Modes, create_dir, open_regular};
use super::hash::BlockHash;
use super::pack::{FinishedPack, Located, PACK_TARGET, PackSet, PackWriter};
use crate::error::{Error, Result};
use std::fs::{self, File};
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// How often a lookup follows a pack that vanished between the lookup and the open (each
/// time gc replaced it again) before giving up.
const RELOCATE_TRIES: usize = 4;

/// Packed block `hash`, its pack open: None when no pack holds it.
pub fn open_packed(packs: &PackSet, hash: &BlockHash) -> Result<Option<(File, Located)>> {
    let mut recheck = false;
    for _ in 0..RELOCATE_TRIES {
        let Some(at) = packs.locate(hash, recheck)? else {
            return Ok(None);
        };
        match open_regular(&at.path)? {
            Some(f) => return Ok(Some((f, at))),
            // Renamed away (gc rewrote it) since it was listed: look again.
            None => recheck = true,
        }
    }
    Err(replaced(hash))
}

/// Reads the stored bytes of the packed block `at` from `file` into `out` (at most its
/// length; a shorter `out` gets the first bytes).
pub fn read_entry(file: &File, at: &Located, out: &mut [u8]) -> Result<()> {
    let n = out.len().min(at.len as usize);
    file.read_exact_at(&mut out[..n], at.offset)
        .map_err(|e| match e.kind() {
            // The index said the bytes are there: a pack shortened outside arch.
            ErrorKind::UnexpectedEof => Error::Corrupt {
                path: at.path.clone(),
                reason: format!(
                    "shorter than its index says (block at byte {} of {} bytes)",
                    at.offset, at.len
                ),
            },
            _ => Error::io("read", &at.path, e),
        })
}

/// The version of packed block `hash`, None when no pack holds it: its pack file (device,
/// inode, size, change times, so a pack replaced or written to outside arch is another
/// version) and its offset there. One `lstat`, as for a loose block.
pub fn packed_version(packs: &PackSet, hash: &BlockHash) -> Result<Option<BlockVersion>> {
    let mut recheck = false;
    for _ in 0..RELOCATE_TRIES {
        let Some(at) = packs.locate(hash, recheck)? else {
            return Ok(None);
        };
        let m = match fs::symlink_metadata(&at.path) {
            Ok(m) => m,
            // Renamed away (gc rewrote it) since it was listed: look again.
            Err(e) if e.kind() == ErrorKind::NotFound => {
                recheck = true;
                continue;
            }
            Err(e) => return Err(Error::io("stat", &at.path, e)),
        };
        return Ok(Some(BlockVersion([
            m.dev() as i64,
            m.ino() as i64,
            m.size() as i64,
            m.mtime()
                .wrapping_mul(1_000_000_000)
                .wrapping_add(m.mtime_nsec()),
            m.ctime()
                .wrapping_mul(1_000_000_000)
                .wrapping_add(m.ctime_nsec()),
            at.offset as i64,
            i64::from(at.len),
        ])));
    }
    Err(replaced(hash))
}

fn replaced(hash: &BlockHash) -> Error {
    Error::Busy {
        resource: format!(
            "the pack holding block {hash} (replaced {RELOCATE_TRIES} times while being opened)"
        ),
    }
}

/// The packs a batch writes: blocks appended in its temporary directory, published by
/// [`BatchPacks::publish`].
pub struct BatchPacks {
    writer: PackWriter,
    dir: PathBuf,
}

impl BatchPacks {
    /// Packs written into the batch directory `dir`, sealed with `modes` from the start
    /// (writing through the open descriptor is still allowed).
    pub fn new(dir: &Path, modes: Modes) -> BatchPacks {
        BatchPacks {
            writer: PackWriter::new(dir, modes.sealed(), PACK_TARGET),
            dir: dir.to_path_buf(),
        }
    }

    /// Appends one block's stored bytes to the batch's current pack.
    pub fn append(&self, hash: &BlockHash, stored: &[u8]) -> Result<()> {
        self.writer
            .append(hash, stored)
            .map_err(|e| Error::io("write pack in", &self.dir, e))
    }

    /// Closes the packs (index and footer written): the caller syncs them before
    /// [`publish`] makes them visible.
    pub fn finish(self) -> Result<Vec<FinishedPack>> {
        let dir = self.dir;
        self.writer
            .finish()
            .map_err(|e| Error::io("write pack index in", &dir, e))
    }
}

/// Renames the closed, durable `packs` into `packs_dir` (created with `modes` when missing).
/// Each rename publishes one whole pack; the caller syncs the file system afterwards.
pub fn publish(packs: &[FinishedPack], packs_dir: &Path, modes: Modes) -> Result<()> {
    if packs.is_empty() {
        return Ok(());
    }
    create_dir(packs_dir, modes)?;
    for p in packs {
        let dest = packs_dir.join(p.id.to_hex());
        // The same name means the same index, hence the same bytes: replacing it is harmless.
        fs::rename(&p.path, &dest).map_err(|e| Error::io("rename pack into", &dest, e))?;
    }
    Ok(())
}

/// `err`, with the pack that holds the block named when it is a corrupt packed block: a
/// damaged pack is then found without a scan (`packs/<id>`; `arch fsck --read-data` lists
/// every damaged entry). Other errors are returned as they are.
pub fn name_pack_of_corrupt_block(backend: &dyn super::Backend, err: Error) -> Error {
    let Error::CorruptBlock {
        hash,
        offset,
        resource,
    } = err
    else {
        return err;
    };
    let packed = backend
        .as_local()
        .and_then(|l| l.packs())
        .and_then(|packs| {
            let h: BlockHash = hash.parse().ok()?;
            packs.locate(&h, false).ok().flatten()
        });
    let resource = match packed {
        Some(at) => format!(
            "{resource} (stored at byte {} of pack {})",
            at.offset,
            at.path.display()
        ),
        None => resource,
    };
    Error::CorruptBlock {
        hash,
        offset,
        resource,
    }
}

#[cfg(test)]
mod tests {
    use super::super::backend::Backend;
    use super::super::local::LocalBackend;
    use super::super::mapped::{BlockMapping, OpenedBlock};
    use super::super::pack::PACKS_DIR;
    use super::super::pack::index::list_pack_names;
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const BS: u64 = 4096;

    /// A packed store and `n` distinct blocks of 1..=BS bytes, committed in one batch.
    fn packed_store(n: usize) -> (tempfile::TempDir, LocalBackend, Vec<Vec<u8>>) {
        let dir = tempfile::tempdir().unwrap();
        LocalBackend::create_layout(dir.path()).unwrap();
        let b = LocalBackend::with_packs(dir.path(), BS);
        let blocks: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let len = 1 + (i * 977) % BS as usize;
                (0..len).map(|j| (i * 31 + j * 7 % 251) as u8 | 1).collect()
            })
            .collect();
        let batch = b.begin_batch().unwrap();
        for blk in &blocks {
            assert!(batch.stage(&BlockHash::of_bytes(blk), blk).unwrap());
        }
        batch.commit().unwrap();
        (dir, b, blocks)
    }

    #[test]
    fn a_batch_publishes_whole_sealed_packs_at_commit_only() {
        let dir = tempfile::tempdir().unwrap();
        LocalBackend::create_layout(dir.path()).unwrap();
        let b = LocalBackend::with_packs(dir.path(), BS);
        let (one, two) = (b"one".as_slice(), b"two".as_slice());
        let (h1, h2) = (BlockHash::of_bytes(one), BlockHash::of_bytes(two));
        // Dropped without commit: nothing visible, nothing left in tmp/.
        let batch = b.begin_batch().unwrap();
        assert!(batch.stage(&h1, one).unwrap());
        drop(batch);
        assert!(!b.has_block(&h1).unwrap());
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        let batch = b.begin_batch().unwrap();
        assert!(batch.stage(&h1, one).unwrap());
        assert!(!batch.stage(&h1, one).unwrap(), "staged twice in one batch");
        assert!(batch.stage(&h2, two).unwrap());
        assert!(!b.has_block(&h1).unwrap(), "invisible before commit");
        assert!(
            list_pack_names(&dir.path().join(PACKS_DIR))
                .unwrap()
                .is_empty()
        );
        batch.commit().unwrap();
        assert!(b.has_block(&h1).unwrap() && b.has_block(&h2).unwrap());
        assert_eq!(batch_dirs(dir.path()), 0, "the batch directory is removed");
        let names = list_pack_names(&dir.path().join(PACKS_DIR)).unwrap();
        assert_eq!(names.len(), 1);
        let p = dir.path().join(PACKS_DIR).join(names[0].to_hex());
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o400, "sealed like a block file");
        assert!(
            fs::read_dir(dir.path().join("blocks/00")).unwrap().count() == 0,
            "no loose file"
        );
        // Already stored: a later batch stages nothing and makes no pack.
        let batch = b.begin_batch().unwrap();
        assert!(!batch.stage(&h1, one).unwrap());
        batch.commit().unwrap();
        assert_eq!(
            list_pack_names(&dir.path().join(PACKS_DIR)).unwrap().len(),
            1
        );
        // A loose file (arch writes none here) is read, but a batch does not look for one:
        // the block is packed beside it, and either copy serves.
        let three = b"three".as_slice();
        let h3 = BlockHash::of_bytes(three);
        fs::write(b.block_path(&h3), three).unwrap();
        assert!(b.has_block(&h3).unwrap());
        let batch = b.begin_batch().unwrap();
        assert!(batch.stage(&h3, three).unwrap());
        batch.commit().unwrap();
        assert!(b.packs().unwrap().locate(&h3, false).unwrap().is_some());
        fs::remove_file(b.block_path(&h3)).unwrap();
        let mut v = Vec::new();
        assert!(b.read_block(&h3, &mut v).unwrap() && v == three);
    }

    fn batch_dirs(root: &Path) -> usize {
        fs::read_dir(root.join("tmp")).unwrap().count()
    }

    #[test]
    fn every_read_method_reads_a_packed_block() {
        let (_dir, b, blocks) = packed_store(40);
        let mut seen = Vec::new();
        b.for_each_block(&mut |h, len| {
            seen.push((h, len));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen.len(), blocks.len());
        for blk in &blocks {
            let h = BlockHash::of_bytes(blk);
            assert!(b.has_block(&h).unwrap());
            assert!(seen.contains(&(h, blk.len() as u64)));
            let mut v = Vec::new();
            assert!(b.read_block(&h, &mut v).unwrap());
            assert_eq!(&v, blk);
            let mut full = vec![0u8; BS as usize];
            assert_eq!(b.read_block_into(&h, &mut full).unwrap(), Some(blk.len()));
            assert_eq!(&full[..blk.len()], &blk[..]);
            if blk.len() > 1 {
                // Shorter than the entry: filled, and the longer length reported.
                let mut short = vec![0u8; blk.len() - 1];
                assert_eq!(b.read_block_into(&h, &mut short).unwrap(), Some(blk.len()));
                assert_eq!(&short[..], &blk[..blk.len() - 1]);
                assert!(matches!(
                    b.map_block(&h, blk.len() - 1).unwrap(),
                    BlockMapping::TooLong(n) if n == blk.len() as u64
                ));
            }
            assert_eq!(b.block_len(&h).unwrap(), Some(blk.len() as u64));
            let BlockMapping::Mapped(m) = b.map_block(&h, BS as usize).unwrap() else {
                panic!("not mapped");
            };
            assert_eq!(&*m, &blk[..]);
            let OpenedBlock::File(f) = b.open_block(&h, BS as usize).unwrap() else {
                panic!("not opened");
            };
            let mut out = vec![0u8; blk.len()];
            f.read_at(0, &mut out).unwrap();
            assert_eq!(&out, blk);
            let at = b.packs().unwrap().locate(&h, false).unwrap().unwrap();
            assert_eq!(f.offset(), at.offset);
            assert_eq!(b.block_location(&h), at.path);
            assert!(b.block_version(&h).unwrap().is_some());
            let err = b.delete_block(&h).unwrap_err().to_string();
            assert!(err.contains("removed with its pack"), "{err}");
        }
        let absent = BlockHash::of_bytes(b"absent");
        assert!(!b.has_block(&absent).unwrap());
        assert!(!b.read_block(&absent, &mut Vec::new()).unwrap());
        assert_eq!(b.block_len(&absent).unwrap(), None);
        assert!(matches!(
            b.open_block(&absent, 9).unwrap(),
            OpenedBlock::Missing
        ));
        assert!(b.block_version(&absent).unwrap().is_none());
        b.delete_block(&absent).unwrap();
    }

    #[test]
    fn a_large_packed_block_is_mapped_from_its_unaligned_offset() {
        let dir = tempfile::tempdir().unwrap();
        LocalBackend::create_layout(dir.path()).unwrap();
        let b = LocalBackend::with_packs(dir.path(), 1 << 20);
        let small = b"12345".to_vec();
        let large: Vec<u8> = (0..(300u32 << 10)).map(|i| (i % 253) as u8 | 1).collect();
        let batch = b.begin_batch().unwrap();
        for blk in [&small, &large] {
            assert!(batch.stage(&BlockHash::of_bytes(blk), blk).unwrap());
        }
        batch.commit().unwrap();
        let h = BlockHash::of_bytes(&large);
        assert_eq!(
            b.packs()
                .unwrap()
                .locate(&h, false)
                .unwrap()
                .unwrap()
                .offset,
            5
        );
        let BlockMapping::Mapped(m) = b.map_block(&h, 1 << 20).unwrap() else {
            panic!("a large packed block is mapped");
        };
        assert_eq!(&*m, &large[..]);
    }

    #[test]
    fn a_pack_rewritten_under_a_reader_is_found_again_and_a_damaged_one_is_missing() {
        let (dir, b, blocks) = packed_store(3);
        let h = BlockHash::of_bytes(&blocks[1]);
        let old = b.packs().unwrap().locate(&h, false).unwrap().unwrap();
        let v1 = b.block_version(&h).unwrap();
        // gc's way: a new pack holding the live blocks, then the old one removed. The reader's
        // index still names the old pack.
        let batch_dir = dir.path().join("tmp/gc");
        fs::create_dir(&batch_dir).unwrap();
        let w = BatchPacks::new(&batch_dir, Modes::PRIVATE);
        w.append(&h, &blocks[1]).unwrap();
        let made = w.finish().unwrap();
        publish(&made, &dir.path().join(PACKS_DIR), Modes::PRIVATE).unwrap();
        fs::remove_file(&old.path).unwrap();
        let mut v = Vec::new();
        assert!(b.read_block(&h, &mut v).unwrap(), "found in the new pack");
        assert_eq!(v, blocks[1]);
        assert_ne!(b.block_version(&h).unwrap(), v1, "another stored copy");
        assert!(!b.has_block(&BlockHash::of_bytes(&blocks[0])).unwrap());
        // A damaged index: the pack's blocks are missing, never a panic.
        let p = dir.path().join(PACKS_DIR).join(made[0].id.to_hex());
        let mut bytes = fs::read(&p).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 0x40;
        fs::remove_file(&p).unwrap();
        fs::write(&p, bytes).unwrap();
        let fresh = LocalBackend::with_packs(dir.path(), BS);
        assert!(!fresh.read_block(&h, &mut v).unwrap());
        assert!(matches!(
            fresh.open_block(&h, 9).unwrap(),
            OpenedBlock::Missing
        ));
    }
}
