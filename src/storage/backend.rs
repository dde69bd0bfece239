//! The storage trait: content-addressed blocks and immutable maps, nothing else.
//!
//! Services (objects, images, volumes) talk to storage only through [`Backend`], so a remote
//! object-store backend can replace the local directory without touching them.

use super::hash::BlockHash;
use super::map::{BlockMap, MapId};
use super::mapped::{BlockMapping, OpenedBlock};
use crate::error::Result;
use std::path::PathBuf;

/// A store of content-addressed blocks and maps.
///
/// Invariants every implementation keeps:
/// - a block is stored as its bytes with trailing zeros stripped, under the sha256 of those
///   bytes; the all-zero block is never stored;
/// - a stored block or map is never modified, only deleted (by garbage collection);
/// - a block or map becomes visible only once it is durable.
pub trait Backend: Send + Sync {
    /// True when the block is present.
    fn has_block(&self, hash: &BlockHash) -> Result<bool>;
    /// Reads the stored (stripped) bytes of a block into `buf` (cleared first).
    /// Returns false when the block is missing.
    fn read_block(&self, hash: &BlockHash, buf: &mut Vec<u8>) -> Result<bool>;
    /// Reads the stored bytes of a block into the start of `buf` (sized for the block's full
    /// length) and returns the stored length: more than `buf.len()` (with `buf` full) when the
    /// stored block is longer than it may be, None when the block is missing. The default
    /// goes through [`Backend::read_block`] and one copy.
    fn read_block_into(&self, hash: &BlockHash, buf: &mut [u8]) -> Result<Option<usize>> {
        let mut v = Vec::new();
        if !self.read_block(hash, &mut v)? {
            return Ok(None);
        }
        let n = v.len().min(buf.len());
        buf[..n].copy_from_slice(&v[..n]);
        Ok(Some(v.len()))
    }

    /// The stored (stripped) length of a block, None when it is missing. The default reads
    /// the block; a backend that can ask for the length alone (a stat) should.
    fn block_len(&self, hash: &BlockHash) -> Result<Option<u64>> {
        let mut buf = Vec::new();
        Ok(self.read_block(hash, &mut buf)?.then_some(buf.len() as u64))
    }
    /// Maps block `hash` read-only when its stored form is at most `max` bytes long (see
    /// `storage::mapped`: for readers that hold the shared data lock). The default, for a
    /// backend without local files, is [`BlockMapping::Unsupported`]: read the block instead.
    fn map_block(&self, _hash: &BlockHash, _max: usize) -> Result<BlockMapping> {
        Ok(BlockMapping::Unsupported)
    }
    /// Opens block `hash`'s stored file without mapping it, as [`Backend::map_block`] (a
    /// server sends it from the page cache; the same conditions). The default:
    /// [`OpenedBlock::Unsupported`].
    fn open_block(&self, _hash: &BlockHash, _max: usize) -> Result<OpenedBlock> {
        Ok(OpenedBlock::Unsupported)
    }
    /// Starts a batch of block writes that become visible together, at [`BlockBatch::commit`].
    fn begin_batch(&self) -> Result<Box<dyn BlockBatch>>;
    /// Removes a block (garbage collection only).
    fn delete_block(&self, hash: &BlockHash) -> Result<()>;
    /// Calls `f` for every stored block with its stored length.
    fn for_each_block(&self, f: &mut dyn FnMut(BlockHash, u64) -> Result<()>) -> Result<()>;

    /// Stores a map durably and returns its id (sha256 of its encoding). Idempotent.
    fn put_map(&self, map: &BlockMap) -> Result<MapId>;
    /// Reads and decodes a map; returns None when it is missing.
    fn read_map(&self, id: &MapId) -> Result<Option<BlockMap>>;
    /// Removes a map (garbage collection only).
    fn delete_map(&self, id: &MapId) -> Result<()>;
    /// Calls `f` for every stored map id.
    fn for_each_map(&self, f: &mut dyn FnMut(MapId) -> Result<()>) -> Result<()>;

    /// An identity of the stored copy of a block that changes whenever the copy is replaced
    /// or rewritten; None when the backend cannot tell (or the block is missing). Lets a
    /// long-running reader (`arch serve`) verify a block's hash once per stored copy.
    fn block_version(&self, _hash: &BlockHash) -> Result<Option<BlockVersion>> {
        Ok(None)
    }

    /// Where a block is stored (a file path, or `s3://BUCKET/KEY`), for messages.
    fn block_location(&self, hash: &BlockHash) -> PathBuf;
    /// Where a map is stored, for messages.
    fn map_location(&self, id: &MapId) -> PathBuf;
    /// This backend as the local directory, when it is one (quarantine and layout checks).
    fn as_local(&self) -> Option<&super::local::LocalBackend> {
        None
    }
    /// This backend as an object store, when it is one.
    fn as_s3(&self) -> Option<&super::s3::S3Backend> {
        None
    }
}

/// See [`Backend::block_version`]: equal versions mean the same, unmodified stored copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockVersion(pub [i64; 7]);

/// Blocks staged for one operation. Dropping a batch without committing discards them.
pub trait BlockBatch: Send + Sync {
    /// Stages the stripped bytes of a block. Returns false, writing nothing, when the block is
    /// already stored or already staged in this batch.
    fn stage(&self, hash: &BlockHash, stored: &[u8]) -> Result<bool>;
    /// Makes every staged block durable, then visible. After an error nothing staged is visible.
    fn commit(self: Box<Self>) -> Result<()>;
    /// Waits until no write of this batch is in flight (aborting none; an error one met is
    /// kept for [`BlockBatch::commit`]) and returns the blocks this batch made visible in the
    /// store that were absent before it: those it, and nobody else, created. A batch whose
    /// blocks become visible only at commit (the local one: staged files in `tmp/`) has
    /// none. Lets a caller that gives up take back exactly what it added (`receive`).
    fn created(&self) -> Vec<BlockHash> {
        Vec::new()
    }
}
