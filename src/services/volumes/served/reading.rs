//! The shared blocks of a served resource: loaded once, verified once per stored copy, kept
//! in a small cache, read ahead of a sequential reader, and handed out as [`Block`]s whose
//! bytes a server sends as they are.
//!
//! Invariants:
//! - Every [`Block`] handed out was verified (sha256 of its stored bytes equal to its hash)
//!   at the stored copy's current version: the copy's version is taken before and after the
//!   load; a load between two equal versions that were verified before is not hashed again
//!   (a copy rewritten or replaced since has another version, and is verified).
//! - A block file the backend can open is kept open, not mapped: it is hashed (when it has
//!   to be) through a small buffer that stays in the CPU cache, and sent by the kernel from
//!   the page cache ([`BlockRange::File`], sendfile: no copy into the socket, and no mapping
//!   to set up and tear down per block). A cached block is checked against its
//!   version again each time it is handed out, so a stored copy changed under it is loaded
//!   (and verified) again, never served. Between that check and the send only a writer
//!   outside arch (stored block files are read-only and never written in place) could change
//!   the bytes.
//! - Read-ahead only fills cache slots; a block that fails to load there leaves a failed slot
//!   that the next reader drops and loads again itself, so the error reaches the read that
//!   needs the block (as EIO), never another one.
//! - Memory: at most [`CACHED_BLOCKS`] blocks (open files, or buffers for a backend without
//!   local files), whatever the resource size.

use crate::error::{Error, Result};
use crate::storage::backend::BlockVersion;
use crate::storage::export::BlockFault;
use crate::storage::export_file::read_block_checked;
use crate::storage::mapped::{BlockFile, OpenedBlock};
use crate::storage::{Backend, BlockHash};
use std::collections::HashMap;
use std::fs::File;
use std::sync::{Arc, Mutex, OnceLock};

/// Shared blocks kept loaded (4 MiB each by default): the requests a client keeps in flight
/// plus the blocks read ahead of them.
pub const CACHED_BLOCKS: usize = 8;

/// Blocks loaded ahead of the furthest block a sequential reader asked for.
pub const READ_AHEAD: u64 = 3;

/// Verified stored copies remembered at most (~64 bytes each); past it they are forgotten
/// and verified again when next read.
const VERIFIED_BLOCKS: usize = 1 << 16;

/// A cache slot: empty while being loaded, None when its load failed.
type Slot = OnceLock<Option<Arc<Block>>>;

/// One shared block, verified: its stored bytes (the block's first bytes; the rest of the
/// block reads as zeros).
pub struct Block {
    data: Data,
    /// The stored copy's version when it was verified (None: the backend cannot tell).
    version: Option<BlockVersion>,
}

enum Data {
    /// The block file, open (see [`crate::storage::mapped::BlockFile`]).
    File(BlockFile),
    /// Read into memory (a backend without local files).
    Owned(Arc<Vec<u8>>),
}

impl Block {
    /// The length of the stored bytes (at most a block; a shorter block ends in zeros).
    pub fn stored_len(&self) -> usize {
        match &self.data {
            Data::File(f) => f.stored_len(),
            Data::Owned(v) => v.len(),
        }
    }

    /// Fills `out` with the block's bytes at `within` (zeros past the stored bytes); `at`
    /// names the block in an error (a block file shortened since it was verified, by
    /// something outside arch).
    pub fn copy_to(&self, within: usize, out: &mut [u8], at: &dyn Fn() -> String) -> Result<()> {
        let stored = self.stored_len();
        let from = within.min(stored);
        let to = (within + out.len()).min(stored);
        let (head, tail) = out.split_at_mut(to - from);
        match &self.data {
            Data::File(f) => f
                .read_at(from, head)
                .map_err(|e| Error::io("read", at(), e))?,
            Data::Owned(v) => head.copy_from_slice(&v[from..to]),
        }
        tail.fill(0);
        Ok(())
    }

    /// The stored bytes `start..end` as they are sent, None when they are not all stored
    /// bytes (the block's zero tail).
    pub fn range(&self, start: usize, end: usize) -> Option<BlockRange> {
        if start > end || end > self.stored_len() {
            return None;
        }
        Some(match &self.data {
            Data::File(f) => BlockRange::File {
                file: f.file().clone(),
                offset: f.offset() + start as u64,
                len: end - start,
            },
            Data::Owned(v) => BlockRange::Memory(MemoryRange {
                bytes: v.clone(),
                start,
                end,
            }),
        })
    }
}

/// Stored bytes of a verified block, sent as they are.
pub enum BlockRange {
    /// `len` bytes of the open block file from `offset` (sent from the page cache).
    File {
        file: Arc<File>,
        offset: u64,
        len: usize,
    },
    /// Bytes of a block held in memory.
    Memory(MemoryRange),
}

/// The bytes `start..end` of a block held in memory.
pub struct MemoryRange {
    bytes: Arc<Vec<u8>>,
    start: usize,
    end: usize,
}

impl AsRef<[u8]> for MemoryRange {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }
}

/// The shared-block cache of one served resource.
pub struct SharedBlocks {
    block_size: usize,
    slots: Mutex<Vec<(BlockHash, Arc<Slot>)>>,
    /// Shared blocks whose stored copy was verified, with the version then.
    verified: Mutex<HashMap<BlockHash, BlockVersion>>,
    /// The furthest block index read so far, and whether the last read continued a
    /// sequential run.
    pattern: Mutex<(Option<u64>, bool)>,
}

impl SharedBlocks {
    pub fn new(block_size: u32) -> SharedBlocks {
        SharedBlocks {
            block_size: block_size as usize,
            slots: Mutex::new(Vec::new()),
            verified: Mutex::new(HashMap::new()),
            pattern: Mutex::new((None, false)),
        }
    }

    /// Shared block `hash` (at block `index`, for messages), verified, from the cache or the
    /// store: loaded once however many readers want it at the same time. A failed load (by
    /// read-ahead or another reader) is dropped and loaded again here, for this reader's
    /// error. `resource` names the resource in errors.
    pub fn get(
        &self,
        backend: &dyn Backend,
        hash: &BlockHash,
        index: u64,
        resource: &str,
    ) -> Result<Arc<Block>> {
        let located =
            |f: BlockFault| f.with_location(hash, index * self.block_size as u64, resource);
        let (slot, _) = self.slot(hash);
        let mut fault = None;
        let got = slot.get_or_init(|| self.load(backend, hash).map_err(|f| fault = Some(f)).ok());
        match got {
            Some(block) if self.still_valid(backend, hash, block)? => return Ok(block.clone()),
            // This reader's own load failed: the failed slot goes, the error is this read's.
            None if fault.is_some() => {
                self.forget(hash);
                return Err(located(fault.expect("fault")));
            }
            _ => self.forget(hash),
        }
        // Changed since it was cached, or failed in another's load: load it again here.
        let (slot, _) = self.slot(hash);
        let loaded = self.load(backend, hash).map_err(located)?;
        let _ = slot.set(Some(loaded.clone()));
        Ok(loaded)
    }

    /// Loads shared block `hash` into the cache unless it is there or being loaded; a
    /// failure is kept in its slot for the reader that needs the block (see [`Self::get`]).
    pub fn prefetch(&self, backend: &dyn Backend, hash: &BlockHash) {
        let (slot, fresh) = self.slot(hash);
        if fresh {
            slot.get_or_init(|| self.load(backend, hash).ok());
        }
    }

    /// Notes a read of block `index`; true when reads look sequential so far (each block at
    /// most [`READ_AHEAD`] + 1 past the furthest one read, or at or behind it by less than a
    /// client's window), which is when [`Self::ahead`] has anything to offer.
    pub fn note_read(&self, index: u64) -> bool {
        let mut pattern = self.pattern.lock().expect("read pattern");
        let window = CACHED_BLOCKS as u64;
        let sequential = match pattern.0 {
            None => index == 0,
            Some(f) => index <= f + READ_AHEAD + 1 && index + window > f,
        };
        let furthest = match pattern.0 {
            Some(f) if sequential => f.max(index),
            // A jump: a new run may start here.
            _ => index,
        };
        *pattern = (Some(furthest), sequential);
        sequential
    }

    /// The blocks to read ahead: the [`READ_AHEAD`] after the furthest one read, while the
    /// last read continued a sequential run (none after a jump).
    pub fn ahead(&self) -> std::ops::Range<u64> {
        match *self.pattern.lock().expect("read pattern") {
            (Some(f), true) => f + 1..f + 1 + READ_AHEAD,
            _ => 0..0,
        }
    }

    /// The cache slot of `hash`, and whether it was just made (empty).
    fn slot(&self, hash: &BlockHash) -> (Arc<Slot>, bool) {
        let mut slots = self.slots.lock().expect("cache lock");
        if let Some(pos) = slots.iter().position(|(h, _)| h == hash) {
            let hit = slots.remove(pos);
            slots.push(hit.clone());
            return (hit.1, false);
        }
        if slots.len() >= CACHED_BLOCKS {
            slots.remove(0);
        }
        let slot = Arc::new(Slot::new());
        slots.push((*hash, slot.clone()));
        (slot, true)
    }

    fn forget(&self, hash: &BlockHash) {
        self.slots
            .lock()
            .expect("cache lock")
            .retain(|(h, _)| h != hash);
    }

    /// Whether a cached block may still be served: an open file only while its stored copy
    /// is the version that was verified (bytes read into memory do not change).
    fn still_valid(&self, backend: &dyn Backend, hash: &BlockHash, b: &Block) -> Result<bool> {
        Ok(match b.data {
            Data::Owned(_) => true,
            Data::File(_) => b.version.is_some() && backend.block_version(hash)? == b.version,
        })
    }

    /// Loads shared block `hash` from the store, verified (see the module's invariants).
    fn load(&self, backend: &dyn Backend, hash: &BlockHash) -> Result<Arc<Block>, BlockFault> {
        let version = |b: &dyn Backend| b.block_version(hash).map_err(BlockFault::Other);
        let before = version(backend)?;
        let known = before.is_some()
            && self.verified.lock().expect("verified").get(hash) == before.as_ref();
        let mut data = self.load_data(backend, hash, !known)?;
        let after = version(backend)?;
        if before != after {
            // Changed under the load: load (and verify) it again, remember nothing.
            data = self.load_data(backend, hash, true)?;
            return Ok(Arc::new(Block {
                data,
                version: None,
            }));
        }
        if let (false, Some(v)) = (known, after) {
            let mut verified = self.verified.lock().expect("verified");
            if verified.len() >= VERIFIED_BLOCKS {
                verified.clear();
            }
            verified.insert(*hash, v);
        }
        Ok(Arc::new(Block {
            data,
            version: after,
        }))
    }

    /// The stored bytes of `hash`, an open file when the backend can, hashed when `verify`.
    fn load_data(
        &self,
        backend: &dyn Backend,
        hash: &BlockHash,
        verify: bool,
    ) -> Result<Data, BlockFault> {
        let file = match backend.open_block(hash, self.block_size) {
            Ok(OpenedBlock::File(f)) => f,
            Ok(OpenedBlock::Missing) => return Err(BlockFault::Missing),
            Ok(OpenedBlock::TooLong(_)) | Err(Error::Corrupt { .. }) => {
                return Err(BlockFault::Corrupt);
            }
            Err(e) => return Err(BlockFault::Other(e)),
            Ok(OpenedBlock::Unsupported) => {
                let mut buf = vec![0u8; self.block_size];
                let stored = read_block_checked(backend, hash, verify, &mut buf)?;
                buf.truncate(stored);
                return Ok(Data::Owned(Arc::new(buf)));
            }
        };
        if verify {
            let got = hash_file(&file).map_err(|e| {
                BlockFault::Other(Error::io("read", backend.block_location(hash), e))
            })?;
            if got != *hash {
                return Err(BlockFault::Corrupt);
            }
        }
        Ok(Data::File(file))
    }
}

/// Bytes of a block file hashed per read: small enough to stay in the CPU's cache between
/// the copy out of the page cache and the hash.
const HASH_CHUNK: usize = 128 << 10;

thread_local! {
    /// Each server thread's chunk buffer (allocated once per thread).
    static CHUNK: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// sha256 of the stored bytes of `file`, read through a buffer that stays in the CPU cache.
/// As cheap as hashing through a mapping (populating 1024 page-table entries per 4 MiB block
/// and unmapping them, with a TLB shootdown across the server's threads: about a fifth of a
/// first pass's server CPU either way), and a file shortened under it (by something outside
/// arch) is an error instead of a fault.
fn hash_file(file: &BlockFile) -> std::io::Result<BlockHash> {
    use sha2::{Digest, Sha256};
    CHUNK.with_borrow_mut(|buf| {
        buf.resize(HASH_CHUNK, 0);
        let mut h = Sha256::new();
        let mut at = 0;
        while at < file.stored_len() {
            let n = HASH_CHUNK.min(file.stored_len() - at);
            file.read_at(at, &mut buf[..n])?;
            h.update(&buf[..n]);
            at += n;
        }
        Ok(BlockHash(h.finalize().into()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::storage::local::LocalBackend;
    use std::os::unix::fs::PermissionsExt;

    const BS: u32 = 4096;

    /// A store holding `n` distinct blocks of `BS` bytes: `(dir, backend, hashes)`.
    fn store(n: u8) -> (tempfile::TempDir, LocalBackend, Vec<BlockHash>) {
        let dir = tempfile::tempdir().unwrap();
        LocalBackend::create_layout(dir.path()).unwrap();
        let b = LocalBackend::new(dir.path());
        let batch = b.begin_batch().unwrap();
        let hashes = (0..n)
            .map(|i| {
                let data = vec![i + 1; BS as usize];
                let h = BlockHash::of_bytes(&data);
                batch.stage(&h, &data).unwrap();
                h
            })
            .collect();
        batch.commit().unwrap();
        (dir, b, hashes)
    }

    /// Flips a byte of the stored copy of `hash` in place (same file, same length).
    fn damage(b: &LocalBackend, hash: &BlockHash) {
        let p = b.block_path(hash);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[9] ^= 1;
        // Another mtime than the one verified, even on a coarse clock.
        std::thread::sleep(std::time::Duration::from_millis(20));
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.write_all(&bytes).unwrap();
    }

    #[test]
    fn a_corrupt_block_met_by_read_ahead_fails_only_the_read_that_needs_it() {
        let (_dir, b, hashes) = store(5);
        damage(&b, &hashes[2]);
        let cache = SharedBlocks::new(BS);
        assert!(cache.note_read(0));
        assert!(cache.note_read(1));
        // Read-ahead covers blocks 2..=4 and meets the damaged block 2: nothing fails yet.
        assert_eq!(cache.ahead(), 2..5);
        for i in cache.ahead() {
            cache.prefetch(&b, &hashes[i as usize]);
        }
        let failed = cache.slot(&hashes[2]).0.get().cloned();
        assert!(matches!(failed, Some(None)), "the failed load is kept");
        // The blocks around it are served; the read of block 2 gets its error, every time.
        for i in [1usize, 3, 4] {
            let got = cache.get(&b, &hashes[i], i as u64, "t").unwrap();
            assert_eq!(bytes(&got), vec![i as u8 + 1; BS as usize]);
        }
        for _ in 0..2 {
            let err = cache.get(&b, &hashes[2], 2, "volume t").err().unwrap();
            assert!(
                matches!(&err, Error::CorruptBlock { offset, .. } if *offset == 2 * BS as u64),
                "{err}"
            );
        }
        assert!(cache.get(&b, &hashes[4], 4, "t").is_ok());
    }

    #[test]
    fn a_cached_mapping_whose_copy_changed_is_verified_again_not_served() {
        let (_dir, b, hashes) = store(2);
        let cache = SharedBlocks::new(BS);
        let first = cache.get(&b, &hashes[0], 0, "t").unwrap();
        assert!(matches!(first.data, Data::File(_)));
        damage(&b, &hashes[0]);
        assert!(matches!(
            cache.get(&b, &hashes[0], 0, "t"),
            Err(Error::CorruptBlock { .. })
        ));
        // A missing copy is named as missing.
        std::fs::remove_file(b.block_path(&hashes[1])).unwrap();
        assert!(matches!(
            cache.get(&b, &hashes[1], 1, "t"),
            Err(Error::MissingBlock { .. })
        ));
    }

    #[test]
    fn reads_count_as_sequential_within_a_window_and_a_jump_starts_a_new_run() {
        let cache = SharedBlocks::new(BS);
        assert!(cache.note_read(0));
        assert!(cache.note_read(2), "out of order within the window");
        assert!(cache.note_read(1));
        assert_eq!(cache.ahead(), 3..6);
        assert!(!cache.note_read(100), "a jump");
        assert_eq!(cache.ahead(), 0..0, "no read-ahead after a jump");
        assert!(cache.note_read(101), "the new run");
        assert_eq!(cache.ahead(), 102..105);
        assert!(!cache.note_read(50));
        assert!(cache.ahead().is_empty());
    }

    /// The stored bytes of `b`, copied out.
    fn bytes(b: &Block) -> Vec<u8> {
        let mut out = vec![0u8; b.stored_len()];
        b.copy_to(0, &mut out, &|| "t".into()).unwrap();
        out
    }

    #[test]
    fn a_block_copies_out_with_zeros_past_its_stored_bytes() {
        let b = Block {
            data: Data::Owned(Arc::new(vec![7; 10])),
            version: None,
        };
        let mut out = [1u8; 8];
        b.copy_to(6, &mut out, &|| "t".into()).unwrap();
        assert_eq!(out, [7, 7, 7, 7, 0, 0, 0, 0]);
        b.copy_to(20, &mut out, &|| "t".into()).unwrap();
        assert_eq!(out, [0; 8]);
        let Some(BlockRange::Memory(m)) = b.range(2, 5) else {
            panic!("in memory")
        };
        assert_eq!(m.as_ref(), &[7, 7, 7]);
        assert!(b.range(5, 11).is_none(), "past the stored bytes");
    }

    #[test]
    fn a_stored_block_is_sent_from_its_open_file_and_copied_out_of_it() {
        let (_dir, b, hashes) = store(1);
        let cache = SharedBlocks::new(BS);
        let got = cache.get(&b, &hashes[0], 0, "t").unwrap();
        let Some(BlockRange::File { file, offset, len }) = got.range(100, 300) else {
            panic!("an open file")
        };
        let mut sent = vec![0u8; len];
        std::os::unix::fs::FileExt::read_exact_at(&*file, &mut sent, offset).unwrap();
        assert_eq!(sent, vec![1u8; 200]);
        let mut out = [9u8; 10];
        got.copy_to(BS as usize - 5, &mut out, &|| "t".into())
            .unwrap();
        assert_eq!(out, [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]);
    }
}
