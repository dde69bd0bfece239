//! First-touch copies (copy-on-write of a shared block): the origin of a copy (the stored
//! block mapped, or read where the store has no local files), the long-lived [`Hasher`] that
//! verifies an origin while its copy is written, and [`write_copy`], the write of a copy into a
//! new file straight from the origin (`O_DIRECT` from the page-aligned mapping, so no second
//! copy in the page cache and a flush's fdatasync has only metadata left).
//!
//! Invariants: a copy's file is the origin's bytes, zeros after them up to the block size, with
//! the write that caused the copy laid over them; its zero pages are holes. The caller checks
//! the origin's hash before the write that caused the copy returns, and removes the copy when
//! it does not match (see `blockio.rs`): nothing reads a staged copy before that.

use crate::error::{Error, Result};
use crate::storage::direct::{ALIGN, AlignedBuf, DirectFile};
use crate::storage::export::BlockFault;
use crate::storage::mapped::{BlockMapping, Mapped};
use crate::storage::{Backend, BlockHash};
use std::fs::File;
use std::io;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The stored bytes of a shared block (trailing zeros stripped, at most a block).
pub enum Origin {
    /// Mapped from the store's file (page-aligned: written with `O_DIRECT` as it is).
    Mapped(Mapped),
    /// Read from a store without local files.
    Read(Vec<u8>),
}

impl std::ops::Deref for Origin {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Origin::Mapped(m) => m,
            Origin::Read(v) => v,
        }
    }
}

impl Origin {
    /// The stored bytes of block `hash` (at most `block_size` of them), not verified yet.
    /// The caller holds the shared data lock (see `storage::mapped`).
    pub fn load(
        backend: &dyn Backend,
        hash: &BlockHash,
        block_size: usize,
    ) -> Result<Origin, BlockFault> {
        match backend.map_block(hash, block_size) {
            Ok(BlockMapping::Mapped(m)) => return Ok(Origin::Mapped(m)),
            Ok(BlockMapping::Missing) => return Err(BlockFault::Missing),
            Ok(BlockMapping::TooLong(_)) | Err(Error::Corrupt { .. }) => {
                return Err(BlockFault::Corrupt);
            }
            Err(e) => return Err(BlockFault::Other(e)),
            Ok(BlockMapping::Unsupported) => {}
        }
        let mut block = Vec::with_capacity(block_size);
        match backend.read_block(hash, &mut block) {
            Ok(true) if block.len() <= block_size => Ok(Origin::Read(block)),
            Ok(true) | Err(Error::Corrupt { .. }) => Err(BlockFault::Corrupt),
            Ok(false) => Err(BlockFault::Missing),
            Err(e) => Err(BlockFault::Other(e)),
        }
    }
}

/// A job for the hasher: the bytes to hash and where the digest goes.
type Job = (Arc<Origin>, SyncSender<BlockHash>);

/// One long-lived thread that hashes an origin while the calling thread writes its copy;
/// started at the first copy, ended when dropped. A copy that finds it busy (another client's
/// copy) is hashed on its own thread after the write.
#[derive(Default)]
pub struct Hasher {
    worker: Mutex<Option<(SyncSender<Job>, JoinHandle<()>)>>,
}

/// The digest of an origin handed to the hasher, or the origin to hash here.
pub enum Pending {
    Offered(Receiver<BlockHash>, Arc<Origin>),
    Here(Arc<Origin>),
}

impl Pending {
    /// The sha256 of the origin (hashed here when the hasher gave no answer).
    pub fn digest(self) -> BlockHash {
        match self {
            Pending::Offered(rx, origin) => {
                rx.recv().unwrap_or_else(|_| BlockHash::of_bytes(&origin))
            }
            Pending::Here(origin) => BlockHash::of_bytes(&origin),
        }
    }
}

impl Hasher {
    /// Hands `origin` to the hasher thread when it is waiting for work (a rendezvous: never
    /// queued behind another copy), else leaves it to the caller.
    pub fn offer(&self, origin: Arc<Origin>) -> Pending {
        let mut worker = self.worker.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = worker.is_none();
        if fresh {
            let (tx, rx) = sync_channel::<Job>(0);
            let spawned = std::thread::Builder::new()
                .name("arch-cow-hash".into())
                .spawn(move || {
                    while let Ok((origin, reply)) = rx.recv() {
                        let _ = reply.send(BlockHash::of_bytes(&origin));
                    }
                });
            match spawned {
                Ok(handle) => *worker = Some((tx, handle)),
                Err(_) => return Pending::Here(origin),
            }
        }
        let Some((tx, _)) = worker.as_ref() else {
            return Pending::Here(origin);
        };
        let (reply, rx) = sync_channel(1);
        // A thread just started has nothing to do but take this one: wait for it to.
        let sent = if fresh {
            tx.send((origin.clone(), reply)).is_ok()
        } else {
            tx.try_send((origin.clone(), reply)).is_ok()
        };
        if sent {
            Pending::Offered(rx, origin)
        } else {
            Pending::Here(origin)
        }
    }

    /// Whether the hasher thread is running (for tests).
    #[cfg(test)]
    fn started(&self) -> bool {
        self.worker.lock().unwrap().is_some()
    }
}

impl Drop for Hasher {
    fn drop(&mut self) {
        let worker = self
            .worker
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some((tx, handle)) = worker {
            drop(tx);
            let _ = handle.join();
        }
    }
}

/// Writes the copy of a shared block into `file` (new, `block_size` bytes long, all holes):
/// `origin` with `chunk` at `within`. The runs of non-zero pages go out with `O_DIRECT` where
/// their memory and offset are page-aligned (a mapped origin; the pages around `chunk` and a
/// partial last page from an aligned buffer), buffered otherwise; zero pages stay holes.
pub fn write_copy(
    file: &File,
    block_size: usize,
    origin: &[u8],
    within: usize,
    chunk: &[u8],
) -> io::Result<()> {
    let direct = DirectFile::new(file);
    let write = |data: &[u8], offset: u64| direct.write_all_at(data, offset);
    let origin = &origin[..origin.len().min(block_size)];
    // The pages `chunk` touches, built in an aligned buffer: origin bytes, then chunk.
    let patch_start = within / ALIGN * ALIGN;
    let patch_end = (within + chunk.len())
        .next_multiple_of(ALIGN)
        .min(block_size);
    let mut patch = AlignedBuf::new();
    patch.resize(patch_end - patch_start);
    if origin.len() > patch_start {
        let n = origin.len().min(patch_end) - patch_start;
        patch[..n].copy_from_slice(&origin[patch_start..patch_start + n]);
    }
    patch[within - patch_start..within - patch_start + chunk.len()].copy_from_slice(chunk);
    for (lo, hi) in [(0, patch_start), (patch_end, block_size)] {
        write_origin_range(origin, lo, hi, &write)?;
    }
    crate::services::volumes::blockio::write_nonzero_runs(&patch, patch_start as u64, write)
}

/// Writes the non-zero pages of `origin[lo..hi]` (zeros past its end) at `lo`: the whole
/// pages from `origin` itself, a last partial page of it from an aligned buffer.
fn write_origin_range(
    origin: &[u8],
    lo: usize,
    hi: usize,
    write: &impl Fn(&[u8], u64) -> io::Result<()>,
) -> io::Result<()> {
    use crate::services::volumes::blockio::write_nonzero_runs;
    if origin.len() <= lo {
        return Ok(());
    }
    let whole = (origin.len() / ALIGN * ALIGN).clamp(lo, hi);
    write_nonzero_runs(&origin[lo..whole], lo as u64, write)?;
    if whole < hi && whole < origin.len() {
        let mut tail = AlignedBuf::new();
        tail.resize(ALIGN.min(hi - whole));
        let n = (origin.len() - whole).min(tail.len());
        tail[..n].copy_from_slice(&origin[whole..whole + n]);
        write_nonzero_runs(&tail, whole as u64, write)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
