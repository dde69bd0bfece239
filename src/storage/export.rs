//! Streaming export: reads a map's blocks on all cores, verifies each against its hash, and
//! writes them in order. Zero blocks cost no read; into a file they become holes, so the
//! work follows the blocks that hold data (a stream still gets every zero byte). A file is
//! written by the workers themselves, out of order (see [`super::export_file`]).
//!
//! Memory bound: at most `2 * threads + 2` blocks are in flight, as for ingest.

use super::backend::Backend;
use super::hash::BlockHash;
use super::ingest::worker_threads;
use super::map::BlockMap;
use super::ordered::read_in_order;
use crate::error::{Error, Result};
use crate::progress::Progress;
use std::fs::File;
use std::io::Write;

/// Where exported bytes go.
pub enum Sink<'a> {
    /// A regular file written with positional writes; zero blocks are left as holes and the
    /// file is sized first. The file must hold only zeros (be empty or sparse) when export
    /// starts: nothing is written where the content is zero.
    File(&'a File),
    /// A stream (stdout, a pipe): every byte is written, zeros included.
    Stream(&'a mut dyn Write),
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
    sink: Sink<'_>,
    progress: &dyn Progress,
) -> Result<()> {
    let out = match sink {
        Sink::File(f) => {
            // Size the file first: a destination that cannot hold the size fails before any
            // work.
            f.set_len(map.size())
                .map_err(|e| too_large_for_destination(e, map.size()))?;
            return super::export_file::export_to_file(backend, map, resource, verify, f, progress);
        }
        Sink::Stream(w) => w,
    };
    let threads = super::s3::pipeline_threads(backend, worker_threads());
    let bs = map.block_size() as u64;
    let zeros = vec![0u8; map.block_size() as usize];
    // Only data blocks are read; `written` is the byte offset up to which the output is
    // complete.
    let mut written = 0u64;
    let read = |&(index, hash): &(u64, BlockHash), buf: &mut Vec<u8>| {
        read_one(backend, &hash, map.block_len(index), verify, buf)
            .map_err(|e| e.with_location(&hash, index * bs, resource))
    };
    read_in_order(
        threads,
        map.entries().iter().copied(),
        &read,
        &mut |(index, _), buf| {
            let offset = index * bs;
            write_zeros(out, &zeros, written, offset, progress)?;
            out.write_all(buf).map_err(|e| stream_error(e, offset))?;
            progress.advance(buf.len() as u64);
            written = offset + buf.len() as u64;
            Ok(())
        },
    )?;
    write_zeros(out, &zeros, written, map.size(), progress)?;
    out.flush().map_err(|e| stream_error(e, map.size()))
}

/// Writes zeros for `[from, to)` to the stream.
fn write_zeros(
    out: &mut dyn Write,
    zeros: &[u8],
    from: u64,
    to: u64,
    progress: &dyn Progress,
) -> Result<()> {
    let mut at = from;
    while at < to {
        let n = (to - at).min(zeros.len() as u64);
        out.write_all(&zeros[..n as usize])
            .map_err(|e| stream_error(e, at))?;
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
