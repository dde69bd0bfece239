//! Writing packs: blocks appended by many threads at once into pack files in a temporary
//! directory, closed with their index at the end. The caller makes them durable and renames
//! them into `packs/` (see [`FinishedPack`]).

use super::format::{MAX_ENTRIES, encode_tail, pack_id};
use crate::storage::fsutil::create_file;
use crate::storage::hash::BlockHash;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Data bytes after which a pack is closed and the next block starts a new one. Packs make
/// removing garbage cost one unlink per pack rather than one per block; smaller packs leave
/// less live data to copy when part of a pack is garbage. 16 MiB: 4096 blocks of 4 KiB.
pub const PACK_TARGET: u64 = 16 << 20;

/// A pack written and closed, not yet durable nor visible: `path` in the temporary directory,
/// to be renamed to `packs/<id>` after the file system is synced.
#[derive(Debug)]
pub struct FinishedPack {
    pub path: PathBuf,
    pub id: BlockHash,
    pub blocks: usize,
}

/// Packs being written into one temporary directory. `append` may be called from many
/// threads; `finish` after every `append` returned.
pub struct PackWriter {
    dir: PathBuf,
    mode: u32,
    target: u64,
    state: Mutex<WriterState>,
}

#[derive(Default)]
struct WriterState {
    current: Option<OpenPack>,
    closed: Vec<OpenPack>,
    made: usize,
    /// The first write that failed: the packs are then unusable, and `finish` says so.
    failed: Option<io::Error>,
}

struct OpenPack {
    path: PathBuf,
    file: Arc<File>,
    /// (hash, stored length) in data order: entry i starts where entry i-1 ends.
    entries: Vec<(BlockHash, u32)>,
    len: u64,
}

impl PackWriter {
    /// Packs of about `target` data bytes, created in `dir` (which exists) with `mode`.
    pub fn new(dir: &Path, mode: u32, target: u64) -> PackWriter {
        PackWriter {
            dir: dir.to_path_buf(),
            mode,
            target,
            state: Mutex::new(WriterState::default()),
        }
    }

    /// Appends one block's stored bytes (1 to 2^32-1 of them). The space is reserved under
    /// the lock and written outside it, so threads write their blocks in parallel.
    pub fn append(&self, hash: &BlockHash, stored: &[u8]) -> io::Result<()> {
        let len = u32::try_from(stored.len())
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "pack entry size"))?;
        let (file, at) = {
            let mut st = self.state.lock().unwrap();
            if let Some(e) = &st.failed {
                return Err(copy_error(e));
            }
            let full = st.current.as_ref().is_some_and(|p| {
                let count = p.entries.len() as u64;
                count == MAX_ENTRIES || (count > 0 && p.len + u64::from(len) > self.target)
            });
            if full {
                let done = st.current.take().unwrap();
                st.closed.push(done);
            }
            if st.current.is_none() {
                let path = self.dir.join(format!("pack-{}", st.made));
                let file = create_file(&path, self.mode)?;
                st.made += 1;
                st.current = Some(OpenPack {
                    path,
                    file: Arc::new(file),
                    entries: Vec::new(),
                    len: 0,
                });
            }
            let p = st.current.as_mut().unwrap();
            let at = p.len;
            p.entries.push((*hash, len));
            p.len += u64::from(len);
            (Arc::clone(&p.file), at)
        };
        file.write_all_at(stored, at).inspect_err(|e| {
            let mut st = self.state.lock().unwrap();
            st.failed.get_or_insert(copy_error(e));
        })
    }

    /// Writes each pack's index and footer and returns the packs (none when nothing was
    /// appended). Not synced: the caller syncs before renaming them into place.
    pub fn finish(self) -> io::Result<Vec<FinishedPack>> {
        let mut st = self.state.into_inner().unwrap();
        if let Some(e) = st.failed {
            return Err(e);
        }
        st.closed.extend(st.current.take());
        let mut finished = Vec::with_capacity(st.closed.len());
        for p in st.closed {
            let tail = encode_tail(&p.entries);
            p.file.write_all_at(&tail, p.len)?;
            finished.push(FinishedPack {
                id: pack_id(&tail),
                path: p.path,
                blocks: p.entries.len(),
            });
        }
        Ok(finished)
    }
}

/// A copy of `e` for another caller: the OS error number is kept (the caller's
/// [`crate::error::Error::io`] turns ENOSPC into `NoSpace`, whichever thread reports first).
fn copy_error(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(errno) => io::Error::from_raw_os_error(errno),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::format::read_index;
    use super::*;

    #[test]
    fn packs_close_at_the_target_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let w = PackWriter::new(dir.path(), 0o400, 10);
        let blocks: Vec<Vec<u8>> = (0..7u8).map(|i| vec![i + 1; 4]).collect();
        std::thread::scope(|s| {
            for b in &blocks {
                let w = &w;
                s.spawn(move || w.append(&BlockHash::of_bytes(b), b).unwrap());
            }
        });
        let packs = w.finish().unwrap();
        // 4-byte blocks, 10-byte target: two per pack, so four packs hold seven blocks.
        assert_eq!(packs.len(), 4);
        let mut seen = Vec::new();
        for p in &packs {
            let f = File::open(&p.path).unwrap();
            let entries = read_index(&f, &p.id, 4).unwrap().unwrap();
            assert_eq!(entries.len(), p.blocks);
            for e in entries {
                let mut buf = vec![0; e.len as usize];
                f.read_exact_at(&mut buf, e.offset).unwrap();
                assert_eq!(BlockHash::of_bytes(&buf), e.hash);
                seen.push(buf);
            }
            let mode = std::fs::metadata(&p.path).unwrap();
            assert_eq!(
                std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
                0o400
            );
        }
        seen.sort();
        assert_eq!(seen, blocks);
    }

    #[test]
    fn a_failed_write_is_reported_to_every_caller_with_its_os_error() {
        let dir = tempfile::tempdir().unwrap();
        let w = PackWriter::new(dir.path(), 0o600, PACK_TARGET);
        // As if a thread's write had run out of space: later appends and finish say so too,
        // as ENOSPC (the typed error `NoSpace`), not as an untyped copy of its text.
        w.state
            .lock()
            .unwrap()
            .failed
            .get_or_insert(io::Error::from_raw_os_error(libc::ENOSPC));
        let again = w.append(&BlockHash::of_bytes(b"x"), b"x").unwrap_err();
        let at_finish = w.finish().unwrap_err();
        for e in [again, at_finish] {
            assert!(matches!(
                crate::error::Error::io("write pack in", dir.path(), e),
                crate::error::Error::NoSpace { .. }
            ));
        }
    }

    #[test]
    fn nothing_appended_makes_no_pack_and_an_empty_block_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let w = PackWriter::new(dir.path(), 0o600, PACK_TARGET);
        assert!(w.append(&BlockHash::ZERO, b"").is_err());
        assert!(w.finish().unwrap().is_empty());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
