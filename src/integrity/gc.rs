//! `gc`: mark and sweep. Marks every block of every map the catalog references, then
//! removes unreferenced blocks, maps and temporary files.
//!
//! Safety with concurrent commands: gc holds the data lock exclusively from before it reads
//! the catalog until the sweep ends. Every command that writes blocks or maps holds that lock
//! shared for its whole run, so no block is in flight while gc runs. Metadata-only commands
//! (cp, mv, rm, meta, image ...) may commit meanwhile, but they only add references to maps
//! that were already referenced when gc read the catalog, so nothing they need is swept.
//! Memory: the live set costs 32 bytes per distinct referenced block (32 MiB per million).

use super::du::add;
use super::refs::{live_blocks, load_maps, referenced_map_ids, temp_entries, volumes_only};
use super::volume_files;
use crate::error::{Error, Result};
use crate::repo::{CATALOG_LOCK, Repository, lock};
use crate::storage::MapId;
use crate::storage::fsutil::remove_path;
use serde::Serialize;

/// What gc removed (or, with `dry_run`, would remove).
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    pub blocks_freed: u64,
    pub bytes_freed: u64,
    pub maps_freed: u64,
    pub temp_entries_removed: u64,
    /// Private-block files and directories no volume reads.
    pub volume_entries_removed: u64,
    pub volume_bytes_freed: u64,
    pub stale_locks_removed: u64,
    pub blocks_kept: u64,
    pub bytes_kept: u64,
    /// Volumes left `creating` by a creator that is gone (never usable), removed first.
    pub unfinished_volumes_removed: Vec<String>,
}

/// Collects garbage. Refuses to run when a referenced map is missing or damaged (its blocks
/// could not be marked): run `arch fsck` first.
pub fn gc(repo: &Repository, dry_run: bool) -> Result<GcReport> {
    // Before the exclusive data lock: removing a volume takes that lock shared.
    let unfinished_volumes_removed =
        crate::services::volumes::creating::reap_all_abandoned(repo, dry_run)?;
    let _data = repo.lock_data_exclusive()?;
    // One read transaction: the maps and volumes are of the same committed state.
    let (maps, catalog) = repo
        .catalog()?
        .read(|db| Ok((referenced_map_ids(db)?, volumes_only(db)?)))?;
    let (loaded, bad) = load_maps(repo, maps.iter());
    if let Some((id, why)) = bad.first() {
        return Err(Error::Corrupt {
            path: repo.local_backend().map_path(id),
            reason: format!(
                "referenced map {id} is {why}; gc cannot tell which blocks it needs (run `arch fsck`)"
            ),
        });
    }
    let live = live_blocks(&loaded);
    let mut report = GcReport {
        dry_run,
        unfinished_volumes_removed,
        ..GcReport::default()
    };
    let mut doomed_maps: Vec<MapId> = Vec::new();
    repo.backend().for_each_map(&mut |id| {
        if !maps.contains(&id) {
            doomed_maps.push(id);
        }
        Ok(())
    })?;
    // Maps first: a map is what makes blocks reachable, so removing it before its blocks
    // never leaves a referenced-looking map with missing blocks.
    for id in &doomed_maps {
        if !dry_run {
            repo.backend().delete_map(id)?;
        }
        report.maps_freed += 1;
    }
    let backend = repo.backend();
    backend.for_each_block(&mut |h, len| {
        crate::interrupt::check()?;
        if live.contains(&h) {
            report.blocks_kept += 1;
            report.bytes_kept = add(report.bytes_kept, len)?;
        } else {
            if !dry_run {
                backend.delete_block(&h)?;
            }
            report.blocks_freed += 1;
            report.bytes_freed = add(report.bytes_freed, len)?;
        }
        Ok(())
    })?;
    // Volume garbage: decided on the catalog read above; volume operations that could make
    // new private files all hold the shared data lock, which our exclusive lock keeps out.
    let volumes = volume_files::scan(repo, &catalog)?;
    for path in &volumes.garbage {
        if !dry_run {
            remove_path(path)?;
        }
        report.volume_entries_removed += 1;
    }
    report.volume_bytes_freed = volumes.garbage_bytes;
    for path in &volumes.stale_locks {
        if dry_run || volume_files::remove_stale_lock(path)? {
            report.stale_locks_removed += 1;
        }
    }
    {
        let _cat = lock::lock_exclusive(&repo.root().join(CATALOG_LOCK))?;
        if !dry_run {
            // A customization killed with its fusermount3 leaves its disk mounted in tmp/.
            crate::customize::fuse::unmount_leftovers(&repo.tmp_dir());
        }
        for entry in temp_entries(repo)? {
            if !dry_run {
                remove_path(&entry)?;
            }
            report.temp_entries_removed += 1;
        }
    }
    Ok(report)
}
