//! Fault injection for tests: a [`Backend`] wrapper whose writes fail with ENOSPC or EIO
//! after a set number of blocks, to prove that a failed import leaves nothing visible.

use super::backend::{Backend, BlockBatch};
use super::hash::BlockHash;
use super::map::{BlockMap, MapId};
use crate::error::{Error, Result};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Which error to inject.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    NoSpace,
    Io,
}

/// Wraps a backend; the `fail_after`-th staged block (0-based) and every later one fail.
pub struct FaultyBackend<B: Backend> {
    pub inner: B,
    pub fail_after: u64,
    pub fault: Fault,
    pub fail_map_writes: bool,
    staged: Arc<AtomicU64>,
}

impl<B: Backend> FaultyBackend<B> {
    pub fn new(inner: B, fail_after: u64, fault: Fault) -> Self {
        FaultyBackend {
            inner,
            fail_after,
            fault,
            fail_map_writes: false,
            staged: Arc::new(AtomicU64::new(0)),
        }
    }
}

fn injected(fault: Fault) -> Error {
    let errno = match fault {
        Fault::NoSpace => libc::ENOSPC,
        Fault::Io => libc::EIO,
    };
    Error::io(
        "write block",
        "injected",
        std::io::Error::from_raw_os_error(errno),
    )
}

struct FaultyBatch {
    inner: Box<dyn BlockBatch>,
    fail_after: u64,
    fault: Fault,
    staged: Arc<AtomicU64>,
}

impl BlockBatch for FaultyBatch {
    fn stage(&self, hash: &BlockHash, stored: &[u8]) -> Result<bool> {
        if self.staged.fetch_add(1, Ordering::SeqCst) >= self.fail_after {
            return Err(injected(self.fault));
        }
        self.inner.stage(hash, stored)
    }
    fn commit(self: Box<Self>) -> Result<()> {
        self.inner.commit()
    }
    fn created(&self) -> Vec<BlockHash> {
        self.inner.created()
    }
}

impl<B: Backend> Backend for FaultyBackend<B> {
    fn has_block(&self, hash: &BlockHash) -> Result<bool> {
        self.inner.has_block(hash)
    }
    fn block_location(&self, hash: &BlockHash) -> std::path::PathBuf {
        self.inner.block_location(hash)
    }
    fn map_location(&self, id: &MapId) -> std::path::PathBuf {
        self.inner.map_location(id)
    }
    fn read_block(&self, hash: &BlockHash, buf: &mut Vec<u8>) -> Result<bool> {
        self.inner.read_block(hash, buf)
    }
    fn begin_batch(&self) -> Result<Box<dyn BlockBatch>> {
        Ok(Box::new(FaultyBatch {
            inner: self.inner.begin_batch()?,
            fail_after: self.fail_after,
            fault: self.fault,
            staged: Arc::clone(&self.staged),
        }))
    }
    fn delete_block(&self, hash: &BlockHash) -> Result<()> {
        self.inner.delete_block(hash)
    }
    fn for_each_block(&self, f: &mut dyn FnMut(BlockHash, u64) -> Result<()>) -> Result<()> {
        self.inner.for_each_block(f)
    }
    fn put_map(&self, map: &BlockMap) -> Result<MapId> {
        if self.fail_map_writes {
            return Err(injected(self.fault));
        }
        self.inner.put_map(map)
    }
    fn read_map(&self, id: &MapId) -> Result<Option<BlockMap>> {
        self.inner.read_map(id)
    }
    fn delete_map(&self, id: &MapId) -> Result<()> {
        self.inner.delete_map(id)
    }
    fn for_each_map(&self, f: &mut dyn FnMut(MapId) -> Result<()>) -> Result<()> {
        self.inner.for_each_map(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;
    use crate::storage::ingest::{Source, ingest};
    use crate::storage::local::LocalBackend;

    /// Distinct pseudo-random bytes (no two blocks alike).
    fn data(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn count(b: &dyn Backend) -> (usize, usize) {
        let (mut blocks, mut maps) = (0, 0);
        b.for_each_block(&mut |_, _| {
            blocks += 1;
            Ok(())
        })
        .unwrap();
        b.for_each_map(&mut |_| {
            maps += 1;
            Ok(())
        })
        .unwrap();
        (blocks, maps)
    }

    fn stream(bytes: Vec<u8>) -> Source {
        Source::Stream {
            reader: Box::new(std::io::Cursor::new(bytes)),
            label: "test".into(),
        }
    }

    #[test]
    fn a_write_fault_mid_import_leaves_nothing_visible() {
        for fault in [Fault::NoSpace, Fault::Io] {
            for fail_after in [0, 1, 5, 17] {
                let dir = tempfile::tempdir().unwrap();
                LocalBackend::create_layout(dir.path()).unwrap();
                let faulty = FaultyBackend::new(LocalBackend::new(dir.path()), fail_after, fault);
                ingest(&faulty, 4096, stream(data(4096 * 32, 1)), &NoProgress).unwrap_err();
                // The first fault made nothing visible...
                let before = count(&faulty);
                assert_eq!(before, (0, 0), "{fault:?} after {fail_after}");
                // ... and left nothing in tmp/.
                assert_eq!(
                    std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
                    0
                );
            }
        }
    }

    #[test]
    fn no_space_is_reported_as_such() {
        let dir = tempfile::tempdir().unwrap();
        LocalBackend::create_layout(dir.path()).unwrap();
        let faulty = FaultyBackend::new(LocalBackend::new(dir.path()), 2, Fault::NoSpace);
        let err = ingest(&faulty, 4096, stream(data(4096 * 8, 2)), &NoProgress).unwrap_err();
        assert!(matches!(err, Error::NoSpace { .. }), "{err}");
        assert!(err.to_string().contains("no space left"));
    }

    #[test]
    fn a_map_write_fault_leaves_blocks_that_are_only_garbage() {
        let dir = tempfile::tempdir().unwrap();
        LocalBackend::create_layout(dir.path()).unwrap();
        let mut faulty = FaultyBackend::new(LocalBackend::new(dir.path()), u64::MAX, Fault::Io);
        faulty.fail_map_writes = true;
        ingest(&faulty, 4096, stream(data(4096 * 3, 3)), &NoProgress).unwrap_err();
        // Blocks are complete (a later import reuses them) but no map names them.
        assert_eq!(count(&faulty), (3, 0));
        faulty.fail_map_writes = false;
        let ok = ingest(&faulty, 4096, stream(data(4096 * 3, 3)), &NoProgress).unwrap();
        assert_eq!(ok.blocks_written, 0);
    }
}
