//! Export into a regular file: every worker reads, verifies and writes its own blocks at their
//! offsets, so reading, hashing and writing overlap on all cores and no thread funnels the
//! bytes. Writes are direct and page-aligned where the filesystem allows it (no page-cache
//! copy); zero blocks are never read nor written (the file is sparse from the start).
//!
//! Ordering: a block's bytes are written only after it was verified, so a corrupt block stops
//! the export before any of its bytes reach the file; the caller (an atomic write: temporary
//! name, one fsync, rename) makes the whole file durable once, at the end.
//!
//! Memory bound: one block buffer per worker ([`io_threads`]), 16 MiB with 4 MiB blocks on 2
//! cores, whatever the size of the resource.

use super::backend::Backend;
use super::direct::{ALIGN, AlignedBuf, DirectFile};
use super::export::BlockFault;
use super::hash::BlockHash;
use super::ingest::io_threads;
use super::map::BlockMap;
use crate::error::{Error, Result};
use crate::progress::Progress;
use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel, sync_channel};
use std::sync::{Arc, Mutex};

struct Job {
    block: u64,
    hash: BlockHash,
    len: usize,
}

/// What every worker shares.
struct Shared<'a> {
    backend: &'a dyn Backend,
    out: DirectFile<'a>,
    verify: bool,
    block_size: u64,
    resource: &'a str,
    /// Set on the first error: the workers drop their remaining jobs.
    failed: AtomicBool,
}

/// Writes the data blocks of `map` into `file`, which is already `map.size()` bytes of zeros.
pub fn export_to_file(
    backend: &dyn Backend,
    map: &BlockMap,
    resource: &str,
    verify: bool,
    file: &File,
    progress: &dyn Progress,
) -> Result<()> {
    let threads = io_threads();
    let bs = map.block_size() as u64;
    let shared = Shared {
        backend,
        out: DirectFile::new(file),
        verify,
        block_size: bs,
        resource,
        failed: AtomicBool::new(false),
    };
    let (job_tx, job_rx) = sync_channel::<Job>(2 * threads);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (done_tx, done_rx) = channel::<Result<u64>>();
    std::thread::scope(|scope| -> Result<()> {
        for _ in 0..threads {
            let (jobs, done, shared) = (Arc::clone(&job_rx), done_tx.clone(), &shared);
            scope.spawn(move || worker(&jobs, &done, shared));
        }
        drop(done_tx);
        let mut first_error = None;
        let mut note = |r: Result<u64>| match r {
            Ok(n) => progress.advance(n),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        };
        let mut covered = 0u64;
        for &(index, hash) in map.entries() {
            if shared.failed.load(Ordering::Relaxed) {
                break;
            }
            if let Err(e) = crate::interrupt::check() {
                shared.failed.store(true, Ordering::Relaxed);
                note(Err(e));
                break;
            }
            // Holes before this block: nothing to do but count them.
            progress.advance((index * bs).saturating_sub(covered));
            let len = map.block_len(index);
            covered = index * bs + len as u64;
            let job = Job {
                block: index,
                hash,
                len,
            };
            job_tx.send(job).expect("workers alive while jobs are sent");
            while let Ok(r) = done_rx.try_recv() {
                note(r);
            }
        }
        drop(job_tx);
        for r in done_rx.iter() {
            note(r);
        }
        match first_error {
            Some(e) => Err(e),
            None => {
                progress.advance(map.size().saturating_sub(covered));
                Ok(())
            }
        }
    })
}

fn worker(jobs: &Mutex<Receiver<Job>>, done: &Sender<Result<u64>>, shared: &Shared<'_>) {
    let mut buf = AlignedBuf::new();
    loop {
        let job = match jobs.lock().unwrap().recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        if shared.failed.load(Ordering::Relaxed) {
            continue;
        }
        let r = write_one(shared, &job, &mut buf);
        if r.is_err() {
            shared.failed.store(true, Ordering::Relaxed);
        }
        let _ = done.send(r.map(|()| job.len as u64));
    }
}

/// Reads, verifies and writes one block. Its stored bytes are written up to the next page
/// boundary (the padding is zeros, which the file holds there anyway) so that the write is
/// aligned and goes direct.
fn write_one(shared: &Shared<'_>, job: &Job, buf: &mut AlignedBuf) -> Result<()> {
    let offset = job.block * shared.block_size;
    let stored = read_into(shared.backend, &job.hash, job.len, shared.verify, buf)
        .map_err(|e| e.with_location(&job.hash, offset, shared.resource))?;
    let end = stored.next_multiple_of(ALIGN).min(job.len);
    buf[stored..end].fill(0);
    shared
        .out
        .write_all_at(&buf[..end], offset)
        .map_err(|e| Error::io("write", "output file", e))
}

/// Reads block `hash` into `buf` (resized to `len`, the block's full length) and returns its
/// stored length, verifying it when asked. The bytes past the stored length are unspecified.
pub fn read_into(
    backend: &dyn Backend,
    hash: &BlockHash,
    len: usize,
    verify: bool,
    buf: &mut AlignedBuf,
) -> Result<usize, BlockFault> {
    buf.resize(len);
    read_block_checked(backend, hash, verify, buf)
}

/// Reads block `hash` into `buf` (the block's full length) and returns its stored length,
/// verifying it when asked. The bytes past the stored length are unspecified.
pub fn read_block_checked(
    backend: &dyn Backend,
    hash: &BlockHash,
    verify: bool,
    buf: &mut [u8],
) -> Result<usize, BlockFault> {
    let len = buf.len();
    if hash.is_zero() {
        return Ok(0);
    }
    let stored = match backend.read_block_into(hash, buf) {
        Ok(Some(n)) => n,
        Ok(None) => return Err(BlockFault::Missing),
        // A block file that is not a regular file (a FIFO, a symlink) is a corrupt block.
        Err(Error::Corrupt { .. }) => return Err(BlockFault::Corrupt),
        Err(e) => return Err(BlockFault::Other(e)),
    };
    if stored > len || (verify && BlockHash::of_bytes(&buf[..stored]) != *hash) {
        return Err(BlockFault::Corrupt);
    }
    Ok(stored)
}
