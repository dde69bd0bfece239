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
mod reading;
mod relay;
mod serving;

pub use control::{answer_control, snapshot_by_server};
pub use reading::BlockRange;
use reading::SharedBlocks;
pub use relay::answer_relayed;
pub use serving::{Control, ServerInfo, forget, refuse_if_served, server_of, this_machine};
use serving::{ServeSite, take_serve_lock};

use super::SnapshotReport;
use super::{OpenVolume, find, open};
use crate::error::{Error, Result};
use crate::repo::Repository;
use crate::repo::lock::FileLock;
use crate::services::images::{Among, resolve, resource_kind};
use crate::services::names::ObjectName;
use crate::storage::{BlockHash, BlockMap};
use std::sync::{Arc, RwLock};

/// Holds block `index` of a volume for reading (no write tears it meanwhile); a resource's
/// blocks never change.
fn hold_block<'c>(
    content: &'c Content<'_>,
    index: u64,
) -> Option<std::sync::RwLockReadGuard<'c, ()>> {
    match content {
        Content::Volume(v) => Some(v.blocks.lock_block_shared(index)),
        Content::Resource { .. } => None,
    }
}

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
    /// Shared blocks: verified once per stored copy, cached, read ahead (see [`reading`]).
    shared: SharedBlocks,
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
        control: Control,
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
                shared: SharedBlocks::new(vol.record.block_size),
                content: RwLock::new(Content::Volume(Box::new(vol))),
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
            shared: SharedBlocks::new(rec.block_size),
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
            let _hold = hold_block(&content, index);
            match shared_hash(&content, index)? {
                Err(()) => match &*content {
                    Content::Volume(v) => v.blocks.read_private_at(index, within as u64, out)?,
                    Content::Resource { .. } => unreachable!("resources have no private blocks"),
                },
                Ok(h) if h.is_zero() => out.fill(0),
                Ok(h) => self.shared_block(&h, index)?.copy_to(within, out, &|| {
                    format!("{} {} block {index}", self.kind, self.name)
                })?,
            }
            done += n;
        }
        Ok(())
    }

    /// The `len` bytes at `offset` as a range of one verified shared block, to be sent as
    /// they are (no copy), when they all lie in the stored bytes of one shared block; None
    /// otherwise (private, zero, spanning blocks or the block's zero tail: use
    /// [`Served::read`]).
    pub fn read_shared(&self, offset: u64, len: usize) -> Result<Option<BlockRange>> {
        self.check_range(offset, len as u64)?;
        let bs = self.block_size as u64;
        let (index, within) = (offset / bs, (offset % bs) as usize);
        if len == 0 || within + len > bs as usize {
            return Ok(None);
        }
        let content = self.content.read().expect("served volume lock");
        // Held while the block's source is decided; the bytes of a shared block never change.
        let _hold = hold_block(&content, index);
        let hash = match shared_hash(&content, index)? {
            Ok(h) if !h.is_zero() => h,
            _ => return Ok(None),
        };
        Ok(self.shared_block(&hash, index)?.range(within, within + len))
    }

    /// Loads and verifies the shared blocks a sequential reader will ask for next (see
    /// [`reading`]); called by an idle server thread. Nothing fails here: a block that does
    /// not load fails the read that needs it.
    pub fn read_ahead(&self) {
        // A snapshot holds the volume: no read-ahead meanwhile.
        let Ok(content) = self.content.try_read() else {
            return;
        };
        let bs = self.block_size as u64;
        for index in self.shared.ahead() {
            if index.saturating_mul(bs) >= self.size {
                break;
            }
            if let Ok(Ok(h)) = shared_hash(&content, index) {
                if !h.is_zero() {
                    self.shared.prefetch(self.repo.backend(), &h);
                }
            }
        }
    }

    /// Shared block `hash` at `index`, verified, noting the read for read-ahead.
    fn shared_block(&self, hash: &BlockHash, index: u64) -> Result<Arc<reading::Block>> {
        self.shared.note_read(index);
        let resource = format!("{} {}", self.kind, self.name);
        self.shared.get(self.repo.backend(), hash, index, &resource)
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
    /// blocks and all-hole private blocks are zeros; at most 4096 blocks are looked at, and
    /// at most `most` runs returned, the last one whole (the caller asks again for the
    /// rest: a client wanting one run, as qemu's, does not pay a look at every block to the
    /// end of the volume each time).
    pub fn allocation(&self, offset: u64, len: u64, most: usize) -> Result<Vec<(u64, bool)>> {
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
            let runs = out.len();
            match out.last_mut() {
                Some(last) if last.1 == zero => last.0 += n,
                _ if runs >= most => break,
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
