//! Private blocks as files `volumes/<id>/<epoch>/<index>` of the repository: each exactly one
//! block long (sparse), created atomically (written in `tmp/`, fsynced, renamed), written in
//! place afterwards; in-place writes are fsynced at the next flush, as are the directory
//! entries of files created or removed since.

use super::{PrivateEpoch, PrivateStore};
use crate::error::{Error, Result};
use crate::repo::Repository;
use crate::services::volumes::blockio::{list_private, read_exact_at, write_nonzero_pages};
use crate::storage::fsutil;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

/// Private files written in place and not yet fsynced, at most this many: past it they are
/// fsynced early and their descriptors closed, so a long run of writes without a flush holds
/// a bounded number of descriptors.
pub const MAX_DIRTY_FILES: usize = 256;

/// The private blocks of a local repository (`volumes/`).
pub struct LocalStore<'a> {
    repo: &'a Repository,
}

impl<'a> LocalStore<'a> {
    pub fn new(repo: &'a Repository) -> LocalStore<'a> {
        LocalStore { repo }
    }
}

/// The directory of epoch `epoch` of volume `id`. Refused as damaged when something other
/// than a real directory stands there.
pub fn epoch_dir(repo: &Repository, id: &str, epoch: u64) -> Result<PathBuf> {
    let dir = repo.volume_dir(id)?.join(epoch.to_string());
    if let Some(found) = crate::repo::layout::not_a_directory(&dir, true) {
        return Err(Error::Corrupt {
            reason: format!(
                "the current epoch directory of volume {id} is {found}, not a directory; \
                 `arch fsck` reports it"
            ),
            path: dir,
        });
    }
    Ok(dir)
}

impl PrivateStore for LocalStore<'_> {
    fn open_epoch(
        &self,
        id: &str,
        epoch: u64,
        block_size: u64,
        resource: &str,
    ) -> Result<Box<dyn PrivateEpoch>> {
        Ok(Box::new(LocalEpoch::new(
            epoch_dir(self.repo, id, epoch)?,
            self.repo.tmp_dir(),
            block_size,
            resource.to_string(),
        )))
    }

    fn remove_epoch(&self, id: &str, epoch: u64) -> Result<u64> {
        let dir = epoch_dir(self.repo, id, epoch)?;
        let count = count_files(&dir);
        fsutil::remove_path(&dir)?;
        Ok(count)
    }

    fn remove_volume(&self, id: &str) -> Result<u64> {
        let dir = self.repo.volume_dir(id)?;
        let count = count_files(&dir);
        fsutil::remove_path(&dir)?;
        Ok(count)
    }

    fn has_volume(&self, id: &str) -> Result<bool> {
        Ok(fs::symlink_metadata(self.repo.volume_dir(id)?).is_ok())
    }

    fn is_remote(&self) -> bool {
        false
    }
}

fn count_files(dir: &std::path::Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .count() as u64
}

/// One epoch directory of private block files.
pub struct LocalEpoch {
    dir: PathBuf,
    tmp_dir: PathBuf,
    block_size: u64,
    resource: String,
    pending: Mutex<Pending>,
}

/// What [`LocalEpoch::flush`] still has to make durable.
#[derive(Default)]
struct Pending {
    /// Private files written in place, by index (one descriptor per block, reused by later
    /// writes to it until the next flush; at most [`MAX_DIRTY_FILES`]).
    dirty: BTreeMap<u64, Arc<File>>,
    /// A private file was created or removed: the epoch directory needs an fsync.
    created: bool,
    /// The epoch directory exists (made by this writer or found).
    dir_ready: bool,
}

impl LocalEpoch {
    /// The private files in `dir`; temporary files go to `tmp_dir` (same filesystem).
    pub fn new(dir: PathBuf, tmp_dir: PathBuf, block_size: u64, resource: String) -> LocalEpoch {
        LocalEpoch {
            dir,
            tmp_dir,
            block_size,
            resource,
            pending: Mutex::new(Pending::default()),
        }
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn path(&self, index: u64) -> PathBuf {
        self.dir.join(index.to_string())
    }

    /// Records `f` (private block `index`, just written in place) for the next flush; past
    /// [`MAX_DIRTY_FILES`] descriptors, the recorded ones are fsynced now and closed.
    fn keep_dirty(&self, index: u64, f: Arc<File>) -> Result<()> {
        let early = {
            let mut pending = self.pending();
            pending.dirty.entry(index).or_insert(f);
            if pending.dirty.len() < MAX_DIRTY_FILES {
                return Ok(());
            }
            std::mem::take(&mut pending.dirty)
        };
        self.sync_files(early)
    }

    fn sync_files(&self, files: BTreeMap<u64, Arc<File>>) -> Result<()> {
        for (index, f) in files {
            f.sync_data()
                .map_err(|e| Error::io("fsync", self.path(index), e))?;
        }
        Ok(())
    }

    /// Number of in-place written files waiting for the next flush.
    #[cfg(test)]
    pub(crate) fn dirty_files(&self) -> usize {
        self.pending().dirty.len()
    }
}

impl PrivateEpoch for LocalEpoch {
    fn contains(&self, index: u64) -> Result<bool> {
        let path = self.path(index);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => Ok(true),
            Ok(_) => Err(Error::Corrupt {
                path,
                reason: format!(
                    "private block {index} of {} is not a regular file; `arch fsck` reports it",
                    self.resource
                ),
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("stat", &path, e)),
        }
    }

    fn read_at(&self, index: u64, offset: u64, buf: &mut [u8]) -> Result<()> {
        read_exact_at(&self.path(index), buf, offset as usize)
    }

    fn append_at(&self, index: u64, offset: u64, len: usize, out: &mut Vec<u8>) -> Result<()> {
        crate::services::volumes::blockio::append_exact_at(&self.path(index), offset, len, out)
    }

    fn create(&self, index: u64, within: u64, data: &[u8]) -> Result<()> {
        self.prepare_dir()?;
        // A descriptor kept for in-place writes would name the replaced file.
        self.pending().dirty.remove(&index);
        let tmp = self.tmp_dir.join(format!(
            "vol-{}-{index}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let result = (|| {
            let modes = fsutil::Modes::of_dir(&self.tmp_dir);
            let f = fsutil::create_file(&tmp, modes.file())
                .map_err(|e| Error::io("create", &tmp, e))?;
            f.set_len(self.block_size)
                .map_err(|e| Error::io("size", &tmp, e))?;
            // A whole block (a copied shared block) keeps its zero pages as holes.
            let written = if within == 0 && data.len() as u64 == self.block_size {
                write_nonzero_pages(&f, data, 0)
            } else {
                f.write_all_at(data, within)
            };
            written.map_err(|e| Error::io("write", &tmp, e))?;
            f.sync_data().map_err(|e| Error::io("fsync", &tmp, e))?;
            let dest = self.path(index);
            fs::rename(&tmp, &dest).map_err(|e| Error::io("rename to", &dest, e))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        self.pending().created = true;
        result
    }

    fn write_in_place(&self, index: u64, offset: u64, data: &[u8]) -> Result<()> {
        let p = self.path(index);
        let kept = self.pending().dirty.get(&index).cloned();
        let f = match kept {
            Some(f) => f,
            None => Arc::new(
                fsutil::open_regular_rw(&p)?
                    .ok_or_else(|| Error::io("open", &p, ErrorKind::NotFound.into()))?,
            ),
        };
        f.write_all_at(data, offset)
            .map_err(|e| Error::io("write", &p, e))?;
        // Recorded after the write, so a flush that starts later fsyncs it.
        self.keep_dirty(index, f)
    }

    fn remove(&self, index: u64) -> Result<()> {
        self.pending().dirty.remove(&index);
        let path = self.path(index);
        match fs::remove_file(&path) {
            Ok(()) => self.pending().created = true,
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &path, e)),
        }
        Ok(())
    }

    fn indexes(&self) -> Result<BTreeSet<u64>> {
        list_private(&self.dir)
    }

    fn is_hole(&self, index: u64) -> Result<bool> {
        use std::os::unix::fs::MetadataExt;
        let p = self.path(index);
        Ok(fs::metadata(&p)
            .map_err(|e| Error::io("stat", &p, e))?
            .blocks()
            == 0)
    }

    fn flush(&self) -> Result<()> {
        let (files, created) = {
            let mut pending = self.pending();
            (
                std::mem::take(&mut pending.dirty),
                std::mem::take(&mut pending.created),
            )
        };
        let synced = self.sync_files(files).and_then(|()| {
            if created {
                fsutil::sync_dir(&self.dir)?;
            }
            Ok(())
        });
        if synced.is_err() && created {
            // Not durable yet: the next flush tries the directory again.
            self.pending().created = true;
        }
        synced
    }

    fn location(&self, index: u64) -> PathBuf {
        self.path(index)
    }

    fn staging(&self) -> Option<(PathBuf, String)> {
        // `volumes/<id>/<epoch>`: the staged files are named after the volume's id.
        let id = self.dir.parent()?.file_name()?.to_str()?;
        Some((
            self.tmp_dir.clone(),
            crate::services::volumes::staged::prefix(id),
        ))
    }

    fn adopt(&self, index: u64, file: &std::path::Path) -> Result<()> {
        self.prepare_dir()?;
        let dest = self.path(index);
        fs::rename(file, &dest).map_err(|e| Error::io("rename to", &dest, e))?;
        // A descriptor kept for in-place writes names the replaced file: its writes are gone.
        let mut pending = self.pending();
        pending.dirty.remove(&index);
        pending.created = true;
        Ok(())
    }
}

impl LocalEpoch {
    /// Makes the epoch directory exist (durably, once) before a block is placed in it.
    fn prepare_dir(&self) -> Result<()> {
        // Under the lock: two writers never race to create the directory.
        let mut pending = self.pending();
        if !pending.dir_ready {
            let modes = fsutil::Modes::of_dir(&self.tmp_dir);
            fsutil::create_dir_all(&self.dir, modes)?;
            if let Some(parent) = self.dir.parent() {
                fsutil::sync_parent(parent)?;
                fsutil::sync_dir(parent)?;
            }
            pending.dir_ready = true;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(dir: &std::path::Path) -> LocalEpoch {
        fs::create_dir_all(dir.join("tmp")).unwrap();
        LocalEpoch::new(dir.join("epoch"), dir.join("tmp"), 4096, "volume t".into())
    }

    #[test]
    fn in_place_writes_hold_a_bounded_number_of_descriptors() {
        let dir = tempfile::tempdir().unwrap();
        let e = epoch(dir.path());
        let count = MAX_DIRTY_FILES as u64 + 40;
        for i in 0..count {
            e.create(i, 0, &[1]).unwrap();
        }
        e.flush().unwrap();
        for i in 0..count {
            e.write_in_place(i, 1, &[2]).unwrap();
            assert!(e.dirty_files() < MAX_DIRTY_FILES, "block {i}");
        }
        assert!(e.dirty_files() > 0);
        e.flush().unwrap();
        assert_eq!(e.dirty_files(), 0);
        let mut buf = [0u8; 3];
        e.read_at(count - 1, 0, &mut buf).unwrap();
        assert_eq!(buf, [1, 2, 0]);
    }

    #[test]
    fn blocks_are_whole_sparse_files_named_by_index() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let e = epoch(dir.path());
        assert!(!e.contains(3).unwrap());
        e.create(3, 100, &[9; 10]).unwrap();
        e.create(5, 0, &[]).unwrap();
        e.flush().unwrap();
        let p = dir.path().join("epoch/3");
        let bytes = fs::read(&p).unwrap();
        assert_eq!(bytes.len(), 4096);
        assert_eq!(&bytes[100..110], &[9; 10]);
        assert!(bytes[..100].iter().chain(&bytes[110..]).all(|&b| b == 0));
        // An all-zero creation is a block of holes, which reads as a hole.
        assert_eq!(
            fs::metadata(dir.path().join("epoch/5")).unwrap().blocks(),
            0
        );
        assert!(e.is_hole(5).unwrap() && !e.is_hole(3).unwrap());
        assert_eq!(e.indexes().unwrap().into_iter().collect::<Vec<_>>(), [3, 5]);
        // Replacing a block written in place drops its kept descriptor: the new file counts.
        e.write_in_place(3, 0, &[7]).unwrap();
        e.create(3, 0, &[8]).unwrap();
        e.flush().unwrap();
        assert_eq!(fs::read(&p).unwrap()[..2], [8, 0]);
        e.remove(3).unwrap();
        e.remove(3).unwrap();
        e.flush().unwrap();
        assert!(!p.exists());
        // Nothing is left in tmp/.
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn a_directory_at_a_block_path_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        let e = epoch(dir.path());
        fs::create_dir_all(dir.path().join("epoch/2")).unwrap();
        assert!(matches!(e.contains(2), Err(Error::Corrupt { .. })));
        assert!(e.indexes().unwrap().is_empty());
    }
}
