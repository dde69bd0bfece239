//! Streaming export: reads a map's blocks on all cores, verifies each against its hash, and
//! writes them in order. Zero blocks cost no read; into a file they become holes, so the
//! work follows the blocks that hold data (a stream still gets every zero byte). A file is
//! written by the workers themselves, out of order (see [`super::export_file`]).
//!
//! Memory bound: at most `2 * threads + 2` blocks are in flight, as for ingest.

use super::backend::Backend;
use super::hash::BlockHash;
use super::ingest::{pipeline_depth, worker_threads};
use super::map::BlockMap;
use crate::error::{Error, Result};
use crate::progress::Progress;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};

/// Where exported bytes go.
pub enum Sink<'a> {
    /// A regular file written with positional writes; zero blocks are left as holes and the
    /// file is sized first. The file must hold only zeros (be empty or sparse) when export
    /// starts: nothing is written where the content is zero.
    File(&'a File),
    /// A stream (stdout, a pipe): every byte is written, zeros included.
    Stream(&'a mut dyn Write),
}

struct Job {
    /// Position in the map's entries (the order of output).
    index: usize,
    /// Block index in the resource.
    block: u64,
    hash: BlockHash,
    len: usize,
    buf: Vec<u8>,
}

/// Writes the content described by `map` to `sink`. `resource` names it in error messages.
///
/// With `verify`, each block is hashed before any of its bytes are written: a corrupt block
/// stops the export with [`Error::CorruptBlock`] naming its hash and offset.
pub fn export(
    backend: &dyn Backend,
    map: &BlockMap,
    resource: &str,
    verify: bool,
    mut sink: Sink<'_>,
    progress: &dyn Progress,
) -> Result<()> {
    let threads = super::s3::pipeline_threads(backend, worker_threads());
    let window = pipeline_depth(threads);
    let bs = map.block_size() as u64;
    let entries = map.entries();
    let n = entries.len();
    let (job_tx, job_rx) = channel::<Job>();
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (done_tx, done_rx) = channel::<(usize, Result<Vec<u8>>)>();
    let mut free: Vec<Vec<u8>> = Vec::new();
    let zeros = vec![0u8; map.block_size() as usize];
    if let Sink::File(f) = &sink {
        // Size the file first: a destination that cannot hold the size fails before any work.
        f.set_len(map.size())
            .map_err(|e| too_large_for_destination(e, map.size()))?;
        return super::export_file::export_to_file(backend, map, resource, verify, f, progress);
    }

    std::thread::scope(|scope| -> Result<()> {
        for _ in 0..threads {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            scope.spawn(move || read_worker(job_rx, done_tx, backend, verify, bs, resource));
        }
        drop(done_tx);
        let result = (|| -> Result<()> {
            // Only data blocks are read; `k` indexes `entries`, `written` is the byte offset
            // up to which the output is complete.
            let mut pending: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
            let mut next_dispatch = 0usize;
            let mut in_flight = 0usize;
            let mut written = 0u64;
            for (k, &(index, _)) in entries.iter().enumerate() {
                crate::interrupt::check()?;
                while next_dispatch < n && in_flight < window {
                    let (i, hash) = entries[next_dispatch];
                    job_tx
                        .send(Job {
                            index: next_dispatch,
                            block: i,
                            hash,
                            len: map.block_len(i),
                            buf: free.pop().unwrap_or_default(),
                        })
                        .expect("readers alive");
                    in_flight += 1;
                    next_dispatch += 1;
                }
                let offset = index * bs;
                write_zeros(&mut sink, &zeros, written, offset, progress)?;
                let len = map.block_len(index);
                let buf = loop {
                    if let Some(buf) = pending.remove(&k) {
                        break buf;
                    }
                    let (j, res) = done_rx.recv().expect("readers alive");
                    in_flight -= 1;
                    pending.insert(j, res?);
                };
                match &mut sink {
                    Sink::File(f) => f
                        .write_all_at(&buf[..len], offset)
                        .map_err(|e| Error::io("write", "output file", e))?,
                    Sink::Stream(w) => w
                        .write_all(&buf[..len])
                        .map_err(|e| stream_error(e, offset))?,
                }
                progress.advance(len as u64);
                written = offset + len as u64;
                free.push(buf);
            }
            write_zeros(&mut sink, &zeros, written, map.size(), progress)?;
            match &mut sink {
                Sink::File(_) => Ok(()),
                Sink::Stream(w) => w.flush().map_err(|e| stream_error(e, map.size())),
            }
        })();
        drop(job_tx);
        result
    })
}

/// Zeros for `[from, to)`: written to a stream, left as a hole in a file.
fn write_zeros(
    sink: &mut Sink<'_>,
    zeros: &[u8],
    from: u64,
    to: u64,
    progress: &dyn Progress,
) -> Result<()> {
    if let Sink::File(_) = sink {
        progress.advance(to.saturating_sub(from));
        return Ok(());
    }
    let mut at = from;
    while at < to {
        let n = (to - at).min(zeros.len() as u64);
        if let Sink::Stream(w) = sink {
            w.write_all(&zeros[..n as usize])
                .map_err(|e| stream_error(e, at))?;
        }
        progress.advance(n);
        at += n;
    }
    Ok(())
}

/// The error for an output file the destination filesystem cannot make `size` bytes long.
fn too_large_for_destination(e: std::io::Error, size: u64) -> Error {
    if e.raw_os_error() == Some(libc::EFBIG) || e.raw_os_error() == Some(libc::EINVAL) {
        Error::invalid(format!(
            "cannot make a {size}-byte sparse file on this filesystem (ext4 files stop at \
             16 TiB); use a filesystem that holds such files (xfs, btrfs) for the output \
             (customization works in the repository's tmp/)"
        ))
    } else {
        Error::io("resize", "output file", e)
    }
}

fn stream_error(e: std::io::Error, offset: u64) -> Error {
    Error::io(
        "write output at offset",
        std::path::PathBuf::from(offset.to_string()),
        e,
    )
}

fn read_worker(
    jobs: Arc<Mutex<Receiver<Job>>>,
    done: std::sync::mpsc::Sender<(usize, Result<Vec<u8>>)>,
    backend: &dyn Backend,
    verify: bool,
    block_size: u64,
    resource: &str,
) {
    loop {
        let job = match jobs.lock().unwrap().recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        let mut buf = job.buf;
        let offset = job.block * block_size;
        let result = read_one(backend, &job.hash, job.len, verify, &mut buf)
            .map_err(|e| e.with_location(&job.hash, offset, resource))
            .map(|()| buf);
        let _ = done.send((job.index, result));
    }
}

/// Why a block could not be read whole.
pub enum BlockFault {
    Missing,
    Corrupt,
    Other(Error),
}

impl BlockFault {
    /// The user-facing error for this fault at `offset` of `resource`.
    pub fn with_location(self, hash: &BlockHash, offset: u64, resource: &str) -> Error {
        match self {
            BlockFault::Missing => Error::MissingBlock {
                hash: hash.to_hex(),
                offset,
                resource: resource.to_string(),
            },
            BlockFault::Corrupt => Error::CorruptBlock {
                hash: hash.to_hex(),
                offset,
                resource: resource.to_string(),
            },
            BlockFault::Other(e) => e,
        }
    }
}

/// Reads block `hash` into `buf`, zero-padded to `len` bytes, verifying it when asked.
pub fn read_one(
    backend: &dyn Backend,
    hash: &BlockHash,
    len: usize,
    verify: bool,
    buf: &mut Vec<u8>,
) -> Result<(), BlockFault> {
    if hash.is_zero() {
        buf.clear();
        buf.resize(len, 0);
        return Ok(());
    }
    match backend.read_block(hash, buf) {
        Ok(true) => {}
        Ok(false) => return Err(BlockFault::Missing),
        // A block file that is not a regular file (a FIFO, a symlink) is a corrupt block.
        Err(Error::Corrupt { .. }) => return Err(BlockFault::Corrupt),
        Err(e) => return Err(BlockFault::Other(e)),
    }
    if buf.len() > len || (verify && BlockHash::of_bytes(buf) != *hash) {
        return Err(BlockFault::Corrupt);
    }
    buf.resize(len, 0);
    Ok(())
}
