//! The files volumes own outside the block store: private blocks under `volumes/` and the
//! per-volume lock files. Classifies each as live, damaged or garbage against the catalog.
//! With the data in an object store, the private objects there too
//! ([`super::volume_objects`]).

use crate::error::{Error, Result};
use crate::repo::catalog::Catalog;
use crate::repo::{LOCKS_DIR, Repository, VOLUMES_DIR};
use crate::services::volumes::blockio::parse_block_index;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Private blocks of one live volume.
#[derive(Debug, Clone, Default)]
pub struct PrivateBlocks {
    /// Indexes of the live private blocks (current epoch, inside the volume).
    pub indexes: BTreeSet<u64>,
    /// Bytes they occupy on disk (holes not counted).
    pub bytes: u64,
}

/// What [`scan`] found.
#[derive(Debug, Clone, Default)]
pub struct VolumeScan {
    /// Live private blocks by volume name.
    pub private: BTreeMap<String, PrivateBlocks>,
    /// Damaged live private blocks: (volume, path, reason).
    pub damaged: Vec<(String, PathBuf, String)>,
    /// Files and directories no volume reads: directories of removed volumes, epochs before
    /// the current one (left by an interrupted snapshot), blocks past a volume's end.
    pub garbage: Vec<PathBuf>,
    /// Private objects no volume reads (object store; never listed in memory: counted, and
    /// deleted as listed when the scan was asked to).
    pub garbage_objects: u64,
    /// Bytes of all the garbage, files and objects.
    pub garbage_bytes: u64,
    /// Lock files of volumes that no longer exist.
    pub stale_locks: Vec<PathBuf>,
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    // A symlinked directory is never entered, so nothing outside the repository is ever
    // classified (or removed) as garbage; fsck reports the link as not a regular file.
    if fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
        return Ok(Vec::new());
    }
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list", dir, e)),
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(|e| Error::io("list", dir, e))?;
        out.push((e.file_name().to_string_lossy().into_owned(), e.path()));
    }
    out.sort();
    Ok(out)
}

/// Bytes a file or tree occupies on disk.
pub fn disk_usage(path: &Path) -> u64 {
    walkdir::WalkDir::new(path)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.blocks().saturating_mul(512))
        .fold(0u64, u64::saturating_add)
}

impl VolumeScan {
    /// Garbage files, directories and objects.
    pub fn garbage_entries(&self) -> u64 {
        self.garbage.len() as u64 + self.garbage_objects
    }
}

/// Scans `volumes/` and the volume lock files against `catalog` (and the private objects,
/// when the data is in an object store).
pub fn scan(repo: &Repository, catalog: &Catalog) -> Result<VolumeScan> {
    scan_with(repo, catalog, &BTreeSet::new(), false)
}

/// [`scan`], skipping the private objects of the volumes `keep_ids`; with `remove_objects`,
/// garbage private objects are deleted as they are listed (the caller holds the exclusive
/// data lock; see [`super::volume_objects`]). Local garbage is only listed: the caller
/// removes it.
pub fn scan_with(
    repo: &Repository,
    catalog: &Catalog,
    keep_ids: &BTreeSet<String>,
    remove_objects: bool,
) -> Result<VolumeScan> {
    let mut out = VolumeScan::default();
    let by_id: BTreeMap<&str, (&String, &crate::repo::records::VolumeRecord)> = catalog
        .volumes
        .iter()
        .map(|(name, v)| (v.id.as_str(), (name, v)))
        .collect();
    let garbage = |out: &mut VolumeScan, p: PathBuf| {
        out.garbage_bytes += disk_usage(&p);
        out.garbage.push(p);
    };
    for (id, dir) in read_dir_sorted(&repo.root().join(VOLUMES_DIR))? {
        let Some((name, rec)) = by_id.get(id.as_str()) else {
            garbage(&mut out, dir);
            continue;
        };
        let blocks = rec.size.div_ceil(rec.block_size as u64);
        out.private.entry((*name).clone()).or_default();
        for (epoch, epoch_dir) in read_dir_sorted(&dir)? {
            if epoch != rec.epoch.to_string() {
                garbage(&mut out, epoch_dir);
                continue;
            }
            for (file, path) in read_dir_sorted(&epoch_dir)? {
                let regular = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file());
                let index = parse_block_index(&file)
                    .filter(|i| *i < blocks)
                    .filter(|_| regular);
                let Some(index) = index else {
                    garbage(&mut out, path);
                    continue;
                };
                let meta = fs::symlink_metadata(&path).map_err(|e| Error::io("stat", &path, e))?;
                if !meta.is_file() || meta.len() != rec.block_size as u64 {
                    out.damaged.push((
                        (*name).clone(),
                        path,
                        format!(
                            "private block {index} is {} bytes, not one block of {}",
                            meta.len(),
                            rec.block_size
                        ),
                    ));
                    continue;
                }
                let live = out.private.get_mut(*name).expect("inserted above");
                live.indexes.insert(index);
                live.bytes += meta.blocks() * 512;
            }
        }
    }
    for (file, path) in read_dir_sorted(&repo.root().join(LOCKS_DIR))? {
        let id = file
            .strip_prefix("volume-")
            .and_then(|f| f.strip_suffix(".lock"));
        if id.is_some_and(|id| !by_id.contains_key(id)) {
            out.stale_locks.push(path);
        }
    }
    if let Some(store) = crate::services::volumes::private::objects_of(repo) {
        super::volume_objects::scan(&store, catalog, keep_ids, remove_objects, &mut out)?;
    }
    Ok(out)
}

/// Removes a stale volume lock file unless some process holds it right now.
pub fn remove_stale_lock(path: &Path) -> Result<bool> {
    match crate::repo::lock::try_lock_exclusive(path)? {
        Some(_held) => {
            crate::storage::fsutil::remove_path(path)?;
            Ok(true)
        }
        None => Ok(false),
    }
}
