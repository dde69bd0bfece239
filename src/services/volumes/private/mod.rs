//! Where a volume's private blocks live: the one interface through which everything reads,
//! writes, lists and removes them (block I/O, snapshot, send/receive, resize, rollback, rm,
//! fsck). Two stores implement it: files `volumes/<id>/<epoch>/<index>` in the repository
//! ([`local`], the default) and objects `PREFIX/volumes/<id>/<epoch>/<index>` in an object
//! store ([`object`]), which a volume opened for I/O reads and writes through a local
//! write-back cache ([`writeback`]).
//!
//! Invariants every store keeps (docs/VOLUMES.md "Content rule"):
//! - a private block is whole: `block_size` bytes as read (a store may keep fewer, e.g. holes
//!   or stripped trailing zeros, but always reads them back as zeros);
//! - [`PrivateEpoch::create`] makes a block appear (or replace an existing one) atomically:
//!   after a crash it reads old or new, never a mix;
//! - everything written before a [`PrivateEpoch::flush`] that returned Ok is durable.

pub mod local;
pub mod object;
pub mod writeback;

#[cfg(test)]
mod agree_tests;

use crate::error::Result;
use crate::repo::Repository;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// The private blocks of one epoch of one volume. Callers hold the volume's block stripe
/// (see [`super::blockio`]) around every call about one block, so calls about the same index
/// never overlap; calls about different indexes and [`PrivateEpoch::flush`] may.
pub trait PrivateEpoch: Send + Sync {
    /// Whether private block `index` exists. Something at its place that is not a private
    /// block (a directory, a link) is an error: damage that `arch fsck` reports.
    fn contains(&self, index: u64) -> Result<bool>;

    /// Reads `buf.len()` bytes at `offset` of private block `index` (which exists).
    fn read_at(&self, index: u64, offset: u64, buf: &mut [u8]) -> Result<()>;

    /// Appends `len` bytes at `offset` of private block `index` to `out`.
    fn append_at(&self, index: u64, offset: u64, len: usize, out: &mut Vec<u8>) -> Result<()> {
        let start = out.len();
        out.resize(start + len, 0);
        self.read_at(index, offset, &mut out[start..])
            .inspect_err(|_| out.truncate(start))
    }

    /// Reads the whole private block `index` (`block_size` bytes) into `buf`.
    fn read_block(&self, index: u64, block_size: usize, buf: &mut Vec<u8>) -> Result<()> {
        buf.clear();
        buf.resize(block_size, 0);
        self.read_at(index, 0, buf)
    }

    /// Makes private block `index` appear (or replaces it) atomically, with the content of a
    /// zero block with `data` at `within`. Durable once [`PrivateEpoch::flush`] returns.
    fn create(&self, index: u64, within: u64, data: &[u8]) -> Result<()>;

    /// [`PrivateEpoch::create`] of the copy of a shared block (copy-on-write): `origin` (its
    /// stored bytes, zeros after them up to `block_size`) with `chunk` at `within`. The
    /// default builds the block in memory; a store with local files writes it from `origin`
    /// as it is (see `services/volumes/copying.rs`).
    fn create_copy(
        &self,
        index: u64,
        block_size: usize,
        origin: &[u8],
        within: usize,
        chunk: &[u8],
    ) -> Result<()> {
        let mut block = Vec::with_capacity(block_size);
        block.extend_from_slice(&origin[..origin.len().min(block_size)]);
        block.resize(block_size, 0);
        block[within..within + chunk.len()].copy_from_slice(chunk);
        self.create(index, 0, &block)
    }

    /// Writes `data` at `offset` of existing private block `index`, in place: after a crash
    /// before the next flush the block may show part of it. Durable once flushed.
    fn write_in_place(&self, index: u64, offset: u64, data: &[u8]) -> Result<()>;

    /// Removes private block `index` (absent: nothing to do). Durable once flushed.
    fn remove(&self, index: u64) -> Result<()>;

    /// Indexes of the private blocks of this epoch (all of them, even past the volume's end).
    fn indexes(&self) -> Result<BTreeSet<u64>>;

    /// True when private block `index` stores no data at all (reads as zeros).
    fn is_hole(&self, index: u64) -> Result<bool>;

    /// Durability barrier: every write, creation and removal that returned before this call
    /// is durable when it returns Ok.
    fn flush(&self) -> Result<()>;

    /// Where private block `index` is, for messages (a path, or a URL of an object).
    fn location(&self, index: u64) -> PathBuf;

    /// A directory on the same filesystem as the private blocks where a new block can be
    /// written whole and then taken in by [`PrivateEpoch::adopt`] (a rename), and the name
    /// prefix of this volume's files there ([`super::staged::prefix`]), or None when the
    /// store cannot take in files (the default). Block I/O stages new blocks there until the
    /// next flush (see `services/volumes/staged.rs`).
    fn staging(&self) -> Option<(PathBuf, String)> {
        None
    }

    /// Makes the file `file` (exactly one block, already durable) private block `index`,
    /// atomically replacing any block there, and consumes the file. Durable once flushed.
    /// The default reads the file and creates the block from its bytes.
    fn adopt(&self, index: u64, file: &std::path::Path) -> Result<()> {
        let data = std::fs::read(file).map_err(|e| crate::error::Error::io("read", file, e))?;
        self.create(index, 0, &data)?;
        std::fs::remove_file(file).map_err(|e| crate::error::Error::io("remove", file, e))
    }
}

/// Removes the private blocks of epoch `epoch` of volume `id`, which a commit (`what`: a
/// snapshot, a rollback) has just retired. The commit is what counts: nothing reads that epoch
/// any more and `arch gc` collects whatever is left of it, so a failure here (a store that went
/// away after the commit) is reported on stderr and the command still succeeds. Failing it
/// would tell the user the commit did not happen, and a retry would find it "already exists".
pub fn drop_retired_epoch(store: &dyn PrivateStore, id: &str, epoch: u64, what: &str) {
    if let Err(e) = store.remove_epoch(id, epoch) {
        eprintln!(
            "arch: warning: {what} is committed, but removing the private blocks it replaced \
             failed: {e}; `arch gc` removes them"
        );
    }
}

/// The private blocks of every volume of a repository.
pub trait PrivateStore: Send + Sync {
    /// The private blocks of epoch `epoch` of volume `id` (a uuid, else refused as damage),
    /// blocks of `block_size` bytes; `resource` names the volume in errors.
    fn open_epoch(
        &self,
        id: &str,
        epoch: u64,
        block_size: u64,
        resource: &str,
    ) -> Result<Box<dyn PrivateEpoch>>;

    /// Removes every private block of epoch `epoch` of volume `id`; returns how many there
    /// were.
    fn remove_epoch(&self, id: &str, epoch: u64) -> Result<u64>;

    /// Removes every private block of volume `id`, of every epoch; returns how many.
    fn remove_volume(&self, id: &str) -> Result<u64>;

    /// Whether anything is stored under volume `id` (an id whose place is taken).
    fn has_volume(&self, id: &str) -> Result<bool>;

    /// True for a store across a network: volumes opened for I/O get a local write-back
    /// cache in front of it.
    fn is_remote(&self) -> bool;
}

/// The private-block store of `repo`: the object store when `arch.toml` names one (objects
/// `PREFIX/volumes/<id>/<epoch>/<index>` beside the blocks and maps), else
/// [`local::LocalStore`], byte for byte the local layout.
pub fn for_repository(repo: &Repository) -> Box<dyn PrivateStore + '_> {
    match objects_of(repo) {
        Some(store) => Box::new(store),
        None => Box::new(local::LocalStore::new(repo)),
    }
}

/// The object store of `repo`'s private blocks, when its data is in one (None: local files).
/// gc, fsck and du list it through [`object::ObjectPrivate::for_each_object`].
pub fn objects_of(repo: &Repository) -> Option<object::ObjectPrivate> {
    let (s3, url) = (repo.backend().as_s3()?, repo.config().store.as_deref()?);
    Some(
        object::ObjectPrivate::new(
            s3.object_store(),
            s3.prefix().clone(),
            s3.runtime().handle().clone(),
            url,
        )
        .with_endpoint(s3.endpoint()),
    )
}

/// The private blocks of epoch `epoch` of volume `id` as a volume opened for I/O uses them:
/// a remote store gets a write-back cache in `repo`'s `tmp/` in front of it (see
/// [`writeback`]); a local store is used as it is.
pub fn open_for_io(
    repo: &Repository,
    id: &str,
    epoch: u64,
    block_size: u64,
    resource: &str,
) -> Result<Box<dyn PrivateEpoch>> {
    let store = repo.private_store();
    let epoch = store.open_epoch(id, epoch, block_size, resource)?;
    if !store.is_remote() {
        return Ok(epoch);
    }
    Ok(Box::new(writeback::WriteBack::new(
        epoch,
        &repo.tmp_dir(),
        block_size,
        writeback::DEFAULT_CACHED_BLOCKS,
    )?))
}
