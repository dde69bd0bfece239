//! A volume (or a read-only resource) opened for serving to a VM: block I/O with the
//! semantics of a disk with a volatile write cache. Knows nothing of any network protocol.
//!
//! - A write is applied at once (private block created atomically or written in place) and
//!   durable after the next [`Served::flush`] or its own `fua`: fsyncs are batched until then.
//! - Reads, writes, zeroing and flushes run in parallel: each block is held through the
//!   volume's striped block locks ([`super::blockio`]), shared by readers and exclusively by
//!   writers, so writes to different blocks proceed together and a read never sees a torn
//!   block; a flush covers every write that returned before it. Only a snapshot holds the
//!   whole volume exclusively (it switches the volume to a new epoch).
//! - Zeroing a whole block leaves no private data: its private file goes (zero base block)
//!   or becomes an all-hole block file, which a snapshot stores as the zero hash.
//!
//! While a volume is served read-write the server holds its serve lock exclusively and the
//! volume lock *shared*: readers (`volume read`, `export`) still work, and writers check the
//! serve lock first and are refused with the serving process and host named (see
//! [`refuse_if_served`]). The serve lock and the server's description live where every
//! user of the repository sees them: `locks/serve-<id>.lock` and `locks/serve-<id>.json`
//! in the directory, or, with the catalog on PostgreSQL, the session advisory lock
//! `serve-<id>` and the catalog's `servers` row (every host; see
//! [`crate::repo::db::pg::servers`]). Either lock dies with its holder.

mod control;
mod serving;

pub use control::{answer_control, snapshot_by_server};
use serving::{ServeSite, take_serve_lock};
pub use serving::{ServerInfo, forget, refuse_if_served, server_of, this_machine};

use super::SnapshotReport;
use super::{OpenVolume, find, open};
use crate::error::{Error, Result};
use crate::repo::Repository;
use crate::repo::lock::FileLock;
use crate::services::images::{Among, resolve, resource_kind};
use crate::services::names::ObjectName;
use crate::storage::backend::BlockVersion;
use crate::storage::export_file::read_block_checked;
use crate::storage::{BlockHash, BlockMap};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

/// A cached shared block: empty while being loaded, None when its load failed.
type Slot = OnceLock<Option<Arc<Vec<u8>>>>;

/// Where block `index` reads from: `Ok(hash)` (zero or shared), or `Err(())` for a private
/// block of the volume.
fn shared_hash(content: &Content, index: u64) -> Result<std::result::Result<BlockHash, ()>> {
    Ok(match content {
        Content::Resource { map, .. } => Ok(map.hash_at(index)),
        Content::Volume(v) => match v.blocks.source(index)? {
            super::BlockSource::Private => Err(()),
            super::BlockSource::Zero => Ok(BlockHash::ZERO),
            super::BlockSource::Shared(h) => Ok(h),
        },
    })
}

/// Shared blocks kept decoded (4 MiB each by default): sequential reads of small requests
/// read and verify each shared block once, not once per request.
const CACHED_BLOCKS: usize = 8;

/// Verified stored copies remembered at most (~64 bytes each); past it they are forgotten
/// and verified again when next read.
const VERIFIED_BLOCKS: usize = 1 << 16;

enum Content<'a> {
    Volume(Box<OpenVolume<'a>>),
    /// An object, image or snapshot: its map, with the data lock held.
    Resource {
        map: BlockMap,
        _data: FileLock,
    },
}

/// One served resource.
pub struct Served<'a> {
    repo: &'a Repository,
    pub name: String,
    /// volume | object | image | snapshot.
    pub kind: String,
    pub size: u64,
    pub block_size: u32,
    pub read_only: bool,
    content: RwLock<Content<'a>>,
    cache: Mutex<Vec<(BlockHash, Arc<Slot>)>>,
    /// Shared blocks whose stored copy was verified, with the version then (see `load`).
    verified: Mutex<HashMap<BlockHash, BlockVersion>>,
    serving: Option<(FileLock, ServeSite)>,
}

impl<'a> Served<'a> {
    /// Opens `name` for serving: a volume read-write unless `read_only`; an object, image or
    /// snapshot always read-only. `address` is recorded for writers that get refused.
    pub fn open(
        repo: &'a Repository,
        name: &str,
        read_only: bool,
        address: &str,
        control: Option<&Path>,
    ) -> Result<Served<'a>> {
        let cat = repo.catalog()?;
        if cat.has_volume(name)? {
            let id = find(&cat, name)?.id;
            let serving = if read_only {
                None
            } else {
                Some(take_serve_lock(repo, name, &id, address, control)?)
            };
            let vol = open(repo, name, false)?;
            if vol.record.id != id {
                return Err(Error::Busy {
                    resource: format!("volume '{name}' (replaced while opening it)"),
                });
            }
            if serving.is_some() {
                // The volume's one writer now: staged files of it are a killed server's.
                super::staged::remove_leftovers(&repo.tmp_dir(), &id)?;
            }
            return Ok(Served {
                repo,
                name: name.to_string(),
                kind: "volume".into(),
                size: vol.record.size,
                block_size: vol.record.block_size,
                read_only,
                content: RwLock::new(Content::Volume(Box::new(vol))),
                cache: Mutex::new(Vec::new()),
                verified: Mutex::new(HashMap::new()),
                serving,
            });
        }
        let object = resolve(&cat, name, Among::Resources)?;
        let rec = cat.object(&object)?.ok_or_else(|| Error::NotFound {
            kind: "object",
            name: object.clone(),
            suggestion: None,
        })?;
        drop(cat);
        let data = repo.lock_data_shared()?;
        let map = crate::services::objects::load_map(repo, &object, &rec)?;
        Ok(Served {
            repo,
            name: name.to_string(),
            kind: resource_kind(&rec).to_string(),
            size: rec.bytes,
            block_size: rec.block_size,
            read_only: true,
            content: RwLock::new(Content::Resource { map, _data: data }),
            cache: Mutex::new(Vec::new()),
            verified: Mutex::new(HashMap::new()),
            serving: None,
        })
    }

    /// Fills `out` with the `out.len()` bytes at `offset` (inside the resource).
    pub fn read(&self, offset: u64, out: &mut [u8]) -> Result<()> {
        let len = out.len();
        self.check_range(offset, len as u64)?;
        let content = self.content.read().expect("served volume lock");
        let bs = self.block_size as u64;
        let mut done = 0usize;
        while done < len {
            let pos = offset + done as u64;
            let (index, within) = (pos / bs, (pos % bs) as usize);
            let n = (bs as usize - within).min(len - done);
            let out = &mut out[done..done + n];
            let _hold = match &*content {
                Content::Volume(v) => Some(v.blocks.lock_block_shared(index)),
                Content::Resource { .. } => None,
            };
            match shared_hash(&content, index)? {
                Err(()) => match &*content {
                    Content::Volume(v) => v.blocks.read_private_at(index, within as u64, out)?,
                    Content::Resource { .. } => unreachable!("resources have no private blocks"),
                },
                Ok(h) if h.is_zero() => out.fill(0),
                // A whole block not in the cache goes straight into the reply (a short last
                // block goes through the cache, which reads up to the block size as before).
                Ok(h) if n as u64 == bs && !self.cached(&h) => self.load_into(&h, index, out)?,
                Ok(h) => {
                    // While another reader loads this block, load the next one meanwhile:
                    // sequential readers then hash two blocks at once.
                    let next = || {
                        if (index + 1) * bs < self.size {
                            if let Ok(Ok(h)) = shared_hash(&content, index + 1) {
                                self.prefetch(&h, index + 1);
                            }
                        }
                    };
                    let block = self.shared_block(&h, index, next)?;
                    out.copy_from_slice(&block[within..within + n]);
                }
            }
            done += n;
        }
        Ok(())
    }

    /// Whether shared block `hash` is in the cache, loaded.
    fn cached(&self, hash: &BlockHash) -> bool {
        let cache = self.cache.lock().expect("cache lock");
        cache
            .iter()
            .any(|(h, slot)| h == hash && matches!(slot.get(), Some(Some(_))))
    }

    /// The cache slot of shared block `hash`, and whether it was just made (empty).
    fn slot(&self, hash: &BlockHash) -> (Arc<Slot>, bool) {
        let mut cache = self.cache.lock().expect("cache lock");
        if let Some(pos) = cache.iter().position(|(h, _)| h == hash) {
            let hit = cache.remove(pos);
            cache.push(hit.clone());
            return (hit.1, false);
        }
        if cache.len() >= CACHED_BLOCKS {
            cache.remove(0);
        }
        let slot = Arc::new(Slot::new());
        cache.push((*hash, slot.clone()));
        (slot, true)
    }

    /// Refuses a range that does not lie inside the export (the protocol layer checks it
    /// first; this keeps the service safe for any caller, without overflow).
    fn check_range(&self, offset: u64, len: u64) -> Result<()> {
        if offset.checked_add(len).is_none_or(|end| end > self.size) {
            return Err(Error::invalid(format!(
                "range {offset}+{len} is past the end of {} ({} bytes)",
                self.name, self.size
            )));
        }
        Ok(())
    }

    /// Drops the cache slot of `hash`.
    fn forget(&self, hash: &BlockHash) {
        self.cache
            .lock()
            .expect("cache lock")
            .retain(|(h, _)| h != hash);
    }

    /// Reads shared block `hash` from the store (zero-padded to the block size).
    fn load(&self, hash: &BlockHash, index: u64) -> Result<Arc<Vec<u8>>> {
        let mut buf = vec![0u8; self.block_size as usize];
        self.load_into(hash, index, &mut buf)?;
        Ok(Arc::new(buf))
    }

    /// Reads shared block `hash` into `out` (its length, zero-padded). Its hash is verified
    /// once per stored copy: the copy's version is taken before and after the read, and a
    /// read between two equal versions that were verified before is not hashed again (a
    /// copy replaced or rewritten since has another version, and is verified). On an error
    /// `out` holds anything: the caller sends none of it.
    fn load_into(&self, hash: &BlockHash, index: u64, out: &mut [u8]) -> Result<()> {
        let backend = self.repo.backend();
        let located = |f: crate::storage::export::BlockFault| {
            let at = index * self.block_size as u64;
            f.with_location(hash, at, &format!("{} {}", self.kind, self.name))
        };
        let before = backend.block_version(hash)?;
        let known = before.is_some()
            && self.verified.lock().expect("verified").get(hash) == before.as_ref();
        let mut stored = read_block_checked(backend, hash, !known, out).map_err(located)?;
        let after = backend.block_version(hash)?;
        if before != after {
            // Changed under the read: read (and verify) it again.
            stored = read_block_checked(backend, hash, true, out).map_err(located)?;
        } else if let (false, Some(v)) = (known, after) {
            let mut verified = self.verified.lock().expect("verified");
            if verified.len() >= VERIFIED_BLOCKS {
                verified.clear();
            }
            verified.insert(*hash, v);
        }
        out[stored..].fill(0);
        Ok(())
    }

    /// Starts nothing, waits for nothing: loads block `hash` only when nobody has yet.
    fn prefetch(&self, hash: &BlockHash, index: u64) {
        if hash.is_zero() {
            return;
        }
        let (slot, fresh) = self.slot(hash);
        if fresh {
            slot.get_or_init(|| self.load(hash, index).ok());
        }
    }

    /// A shared block, decoded and verified, from the cache or the store (loaded once however
    /// many readers want it at the same time; `meanwhile` runs while waiting for another's
    /// load). A block that failed to load is loaded again by the next reader.
    fn shared_block(
        &self,
        hash: &BlockHash,
        index: u64,
        meanwhile: impl FnOnce(),
    ) -> Result<Arc<Vec<u8>>> {
        let (slot, fresh) = self.slot(hash);
        if !fresh && slot.get().is_none() {
            meanwhile();
        }
        match slot.get_or_init(|| self.load(hash, index).ok()) {
            Some(block) => Ok(block.clone()),
            None => {
                // The failed slot is dropped, so the next reader loads again instead of
                // finding an empty slot forever; this reader loads again for its error.
                self.forget(hash);
                self.load(hash, index)
            }
        }
    }

    fn refuse_read_only(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::invalid(format!(
                "{} '{}' is served read-only",
                self.kind, self.name
            )));
        }
        Ok(())
    }

    /// Runs a write `f` on the volume beside other reads and writes (each holds its blocks).
    fn volume<T>(&self, f: impl FnOnce(&OpenVolume<'a>) -> Result<T>) -> Result<T> {
        self.refuse_read_only()?;
        match &*self.content.read().expect("served volume lock") {
            Content::Volume(v) => f(v),
            Content::Resource { .. } => unreachable!("resources are read-only"),
        }
    }

    /// Runs `f` on the volume alone: every other request waits.
    fn volume_exclusive<T>(&self, f: impl FnOnce(&mut OpenVolume<'a>) -> Result<T>) -> Result<T> {
        self.refuse_read_only()?;
        match &mut *self.content.write().expect("served volume lock") {
            Content::Volume(v) => f(v),
            Content::Resource { .. } => unreachable!("resources are read-only"),
        }
    }

    /// Writes `data` at `offset`; durable before returning with `fua`, else at the next flush.
    pub fn write(&self, offset: u64, data: &[u8], fua: bool) -> Result<()> {
        self.volume(|v| {
            v.check_range(offset, data.len() as u64)?;
            v.blocks.write_at(offset, data)?;
            if fua {
                v.blocks.finish()?;
            }
            Ok(())
        })
    }

    /// Makes every write that returned durable.
    pub fn flush(&self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.volume(|v| v.blocks.finish())
    }

    /// After a client's disconnect: flushes, so what it wrote is seen by other processes
    /// (blocks staged in `tmp/` are placed; a remote store's write-back cache is uploaded, so
    /// other hosts see it).
    pub fn flush_on_disconnect(&self) -> Result<()> {
        self.flush()
    }

    /// Makes `[offset, offset + len)` read as zeros: whole blocks keep no private data. With
    /// `only_whole_blocks` (a discard), partial blocks at the edges are left as they are.
    pub fn zero(&self, offset: u64, len: u64, only_whole_blocks: bool, fua: bool) -> Result<()> {
        let bs = self.block_size as u64;
        self.volume(|v| {
            v.check_range(offset, len)?;
            let end = offset + len;
            let mut pos = offset;
            while pos < end {
                let index = pos / bs;
                let block_end = ((index + 1) * bs).min(end);
                // The last block of a volume whose size is not a multiple of the block size
                // is whole when the range reaches the end of the volume.
                let whole =
                    pos == index * bs && (block_end == (index + 1) * bs || end == v.record.size);
                if whole {
                    v.blocks.zero_block(index)?;
                } else if !only_whole_blocks {
                    v.blocks
                        .write_at(pos, &vec![0u8; (block_end - pos) as usize])?;
                }
                pos = block_end;
            }
            if fua {
                v.blocks.finish()?;
            }
            Ok(())
        })
    }

    /// Allocation of `[offset, offset + len)` as runs of `(length, reads_as_zeros)`: zero
    /// blocks and all-hole private blocks are zeros; at most 4096 blocks are looked at (the
    /// caller asks again for the rest).
    pub fn allocation(&self, offset: u64, len: u64) -> Result<Vec<(u64, bool)>> {
        self.check_range(offset, len)?;
        let content = self.content.read().expect("served volume lock");
        let bs = self.block_size as u64;
        let end = offset + len;
        let mut out: Vec<(u64, bool)> = Vec::new();
        let mut pos = offset;
        let mut looked = 0;
        while pos < end && looked < 4096 {
            let index = pos / bs;
            let n = ((index + 1) * bs).min(end) - pos;
            let zero = match &*content {
                Content::Resource { map, .. } => map.hash_at(index).is_zero(),
                Content::Volume(v) => match v.blocks.source(index)? {
                    super::BlockSource::Zero => true,
                    super::BlockSource::Shared(_) => false,
                    super::BlockSource::Private => v.blocks.private_is_hole(index)?,
                },
            };
            match out.last_mut() {
                Some(last) if last.1 == zero => last.0 += n,
                _ => out.push((n, zero)),
            }
            pos += n;
            looked += 1;
        }
        Ok(out)
    }
}

impl Served<'_> {
    /// Snapshots this served volume as `target` under its own lock: I/O pauses, every
    /// acknowledged write is flushed, the snapshot is committed, and serving goes on in the
    /// volume's new epoch.
    pub fn snapshot(&self, target: &ObjectName) -> Result<SnapshotReport> {
        let repo = self.repo;
        self.volume_exclusive(|v| {
            v.blocks.finish()?;
            let report = super::snapshot::snapshot_open(repo, v, target)?;
            let record = find(&repo.catalog()?, &v.name)?;
            v.blocks = super::blocks_of(repo, &v.name, &record)?;
            v.record = record;
            Ok(report)
        })
    }
}

impl Drop for Served<'_> {
    fn drop(&mut self) {
        if let Some((_, site)) = &self.serving {
            // Removed before the lock is released; a stale one is ignored (lock free).
            let _ = site.remove_info();
        }
    }
}
