//! Export into a regular file: every worker reads, verifies and writes its own blocks at their
//! offsets, so reading, hashing and writing overlap on all cores and no thread funnels the
//! bytes. A local block file is mapped, hashed in the page cache and written direct from
//! there (no copy into a buffer, none into the output's page cache); writes are page-aligned
//! where the filesystem allows it; zero blocks are never read nor written (the file is
//! sparse from the start).
//!
//! Ordering: a block's bytes are written only after it was verified, so a corrupt block stops
//! the export before any of its bytes reach the file; the caller (an atomic write: temporary
//! name, one fsync, rename) makes the whole file durable once, at the end.
//!
//! Memory bound: one block (mapped, or read into a buffer when the backend cannot map) per
//! worker ([`io_threads`]), 16 MiB with 4 MiB blocks on 2 cores, whatever the size of the
//! resource.

use super::backend::Backend;
use super::direct::{ALIGN, AlignedBuf, DirectFile};
use super::export::BlockFault;
use super::hash::BlockHash;
use super::ingest::io_threads;
use super::map::BlockMap;
use super::mapped::BlockMapping;
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
/// aligned and goes direct. A block file the backend can map is hashed and written straight
/// from the page cache (see [`write_mapped`]); otherwise it is read into `buf` first.
fn write_one(shared: &Shared<'_>, job: &Job, buf: &mut AlignedBuf) -> Result<()> {
    let offset = job.block * shared.block_size;
    match write_mapped(shared, job, offset, buf) {
        Ok(true) => return Ok(()),
        Ok(false) => {}
        Err(fault) => return Err(fault.with_location(&job.hash, offset, shared.resource)),
    }
    let stored = read_into(shared.backend, &job.hash, job.len, shared.verify, buf)
        .map_err(|e| e.with_location(&job.hash, offset, shared.resource))?;
    let end = stored.next_multiple_of(ALIGN).min(job.len);
    buf[stored..end].fill(0);
    shared
        .out
        .write_all_at(&buf[..end], offset)
        .map_err(|e| Error::io("write", "output file", e))
}

/// The copy-free path: the block file is mapped (its pages are the page cache's), hashed
/// there, and its page-aligned part is written direct from the mapping, so the device reads
/// the page cache and no CPU copy is made. The last partial page (at most 4 KiB) is copied
/// into `tail`, zero-padded, so that it goes direct too and nothing past the stored bytes is
/// taken from the mapping. False when the backend cannot map (nothing was written).
///
/// Invariant: what is written is what was hashed, because a stored block file is sealed
/// (see [`super::mapped`]: arch never writes to or shortens one, and gc, which unlinks,
/// cannot run while this reader holds the shared data lock).
fn write_mapped(
    shared: &Shared<'_>,
    job: &Job,
    offset: u64,
    tail: &mut AlignedBuf,
) -> Result<bool, BlockFault> {
    if job.hash.is_zero() {
        return Ok(true); // a hole: the file holds its zeros already
    }
    let map = match shared.backend.map_block(&job.hash, job.len) {
        Ok(BlockMapping::Mapped(m)) => m,
        Ok(BlockMapping::Unsupported) => return Ok(false),
        Ok(BlockMapping::Missing) => return Err(BlockFault::Missing),
        Ok(BlockMapping::TooLong(_)) | Err(Error::Corrupt { .. }) => {
            return Err(BlockFault::Corrupt);
        }
        Err(e) => return Err(BlockFault::Other(e)),
    };
    if shared.verify && BlockHash::of_bytes(&map) != job.hash {
        return Err(BlockFault::Corrupt);
    }
    let stored = map.len();
    let whole = stored / ALIGN * ALIGN;
    let write = |data: &[u8], at: u64| {
        shared
            .out
            .write_all_at(data, at)
            .map_err(|e| BlockFault::Other(Error::io("write", "output file", e)))
    };
    if whole > 0 {
        write(&map[..whole], offset)?;
    }
    let end = stored.next_multiple_of(ALIGN).min(job.len);
    if end > whole {
        tail.resize(end - whole);
        tail[..stored - whole].copy_from_slice(&map[whole..]);
        tail[stored - whole..].fill(0);
        write(&tail[..], offset + whole as u64)?;
    }
    Ok(true)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;
    use crate::storage::export::{Sink, export};
    use crate::storage::ingest::{Source, ingest};
    use crate::storage::local::LocalBackend;

    const BS: u32 = 64 * 1024;

    /// Blocks of every shape the mapped path distinguishes: whole pages only, pages plus a
    /// partial page (trailing zeros stripped mid-page), under one page, all zeros, and a short
    /// last block that ends mid-page.
    fn shaped() -> Vec<u8> {
        let bs = BS as usize;
        let mut data: Vec<u8> = (0..6 * bs + 5000).map(|i| (i % 253) as u8 + 1).collect();
        data[2 * bs - 3 * ALIGN..2 * bs].fill(0); // block 1: 13 whole pages
        data[3 * bs - ALIGN - 100..3 * bs].fill(0); // block 2: a partial last page
        data[3 * bs + 700..4 * bs].fill(0); // block 3: 700 bytes
        data[4 * bs..5 * bs].fill(0); // block 4: a hole
        data
    }

    #[test]
    fn mapped_export_writes_every_shape_byte_for_byte_and_stops_at_a_corrupt_block() {
        let dir = tempfile::tempdir().unwrap();
        LocalBackend::create_layout(dir.path()).unwrap();
        let b = LocalBackend::new(dir.path());
        let data = shaped();
        let src = Source::Stream {
            reader: Box::new(std::io::Cursor::new(data.clone())),
            label: "t".into(),
        };
        let map = ingest(&b, BS, src, &NoProgress).unwrap().map;
        let out = dir.path().join("out");
        for verify in [true, false] {
            let f = File::create(&out).unwrap();
            export(&b, &map, "t", verify, Sink::File(&f), &NoProgress).unwrap();
            assert_eq!(std::fs::read(&out).unwrap(), data, "verify {verify}");
        }
        // One byte of block 2 changed on disk: a verified export names that block and its
        // offset; an unverified one copies what is stored.
        let (_, hash) = map.entries()[2];
        let path = b.block_path(&hash);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut stored = std::fs::read(&path).unwrap();
        stored[10] ^= 1;
        std::fs::write(&path, &stored).unwrap();
        let f = File::create(&out).unwrap();
        let err = export(&b, &map, "t", true, Sink::File(&f), &NoProgress).unwrap_err();
        assert!(
            matches!(&err, Error::CorruptBlock { offset, .. } if *offset == 2 * BS as u64),
            "{err}"
        );
        let f = File::create(&out).unwrap();
        export(&b, &map, "t", false, Sink::File(&f), &NoProgress).unwrap();
        let mut want = data.clone();
        want[2 * BS as usize + 10] ^= 1;
        assert_eq!(std::fs::read(&out).unwrap(), want);
        // A stored block longer than a block is corrupt, verified or not.
        stored.resize(BS as usize + 1, 1);
        std::fs::write(&path, &stored).unwrap();
        for verify in [true, false] {
            let f = File::create(&out).unwrap();
            let err = export(&b, &map, "t", verify, Sink::File(&f), &NoProgress).unwrap_err();
            assert!(matches!(err, Error::CorruptBlock { .. }), "{err}");
        }
        std::fs::remove_file(&path).unwrap();
        let f = File::create(&out).unwrap();
        let err = export(&b, &map, "t", true, Sink::File(&f), &NoProgress).unwrap_err();
        assert!(matches!(err, Error::MissingBlock { .. }), "{err}");
    }
}
