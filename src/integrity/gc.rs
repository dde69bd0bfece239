//! `gc`: mark and sweep. Marks every block of every map the catalog references, then
//! removes unreferenced blocks, maps and temporary files.
//!
//! Safety with concurrent commands: gc holds the data lock exclusively from before it reads
//! the catalog until the sweep ends. Every command that writes blocks or maps holds that lock
//! shared for its whole run, so no block is in flight while gc runs. Metadata-only commands
//! (cp, mv, rm, meta, image ...) may commit meanwhile, but they only add references to maps
//! that were already referenced when gc read the catalog, so nothing they need is swept.
//! Memory: the live set costs 32 bytes per distinct referenced block (32 MiB per million).
//!
//! Speed and durability: maps, then blocks, are swept shard by shard on many threads
//! ([`crate::storage::sweep`]): types come from the listing, each removal is relative to its
//! open shard, and the touched shards are fsynced once each, after all removals of that
//! sweep. Ordering: the map sweep (removals and its shard fsyncs) completes before the block
//! sweep starts, so even across a crash a block is never gone while a map naming it is still
//! there; the block sweep's fsyncs complete before gc reports.
//!
//! Packs (`packs/`, local store) are swept last, whole packs at a time
//! ([`super::gc_packs`]): a pack is removed when all its entries are dead, rewritten (live
//! entries copied into a new pack first) when some are.
//!
//! Private volume blocks, files or objects in a store, are garbage by the rules of
//! [`super::volume_objects`] (the same for both), under the same exclusive lock.

use super::gc_packs::{PackSweepPlace, sweep_packs};
use super::refs::{live_blocks, load_maps, referenced_map_ids, temp_entries, volumes_only};
use super::volume_files;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::repo::{CATALOG_LOCK, Repository, lock};
use crate::storage::fsutil::remove_path;
use crate::storage::local::{BLOCKS_DIR, MAPS_DIR};
use crate::storage::s3::{BLOCKS, MAPS};
use crate::storage::sweep::{SWEEP_THREADS, sweep};
use serde::Serialize;

/// How gc runs.
#[derive(Debug, Clone, Default)]
pub struct GcOptions {
    /// Report what would be freed, remove nothing.
    pub dry_run: bool,
    /// Packs with some unused entries may stay while the unused bytes they hold are at most
    /// this percentage of the bytes kept in packs (0: every unused entry is freed).
    pub max_unused_percent: u32,
}

/// What gc removed (or, with `dry_run`, would remove).
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    pub blocks_freed: u64,
    pub bytes_freed: u64,
    pub maps_freed: u64,
    pub temp_entries_removed: u64,
    /// Private-block files and directories (objects, in a store) no volume reads.
    pub volume_entries_removed: u64,
    pub volume_bytes_freed: u64,
    pub stale_locks_removed: u64,
    pub blocks_kept: u64,
    pub bytes_kept: u64,
    /// Packs unlinked: all their entries dead, or rewritten (`packs/`, local store).
    pub packs_removed: u64,
    /// Packs whose live entries were copied into new packs before they were removed.
    pub packs_rewritten: u64,
    /// Bytes of live entries copied into new packs.
    pub bytes_rewritten: u64,
    /// Packs left holding unused entries (`--max-unused`), and the bytes of those entries.
    pub packs_kept_partial: u64,
    pub bytes_unused_kept: u64,
    /// What gc left alone and why (packs whose index is damaged: `arch fsck` reports them).
    pub warnings: Vec<String>,
    /// Volumes left `creating` by a creator that is gone (never usable), removed first.
    pub unfinished_volumes_removed: Vec<String>,
}

/// Collects garbage. Refuses to run when a referenced map is missing or damaged (its blocks
/// could not be marked): run `arch fsck` first. `progress` counts the bytes of the blocks
/// looked at.
pub fn gc(repo: &Repository, opts: &GcOptions, progress: &dyn Progress) -> Result<GcReport> {
    let dry_run = opts.dry_run;
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
            path: repo.backend().map_location(id),
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
    // Maps first, durably: a map is what makes blocks reachable, so removing it before its
    // blocks never leaves a referenced-looking map with missing blocks.
    let threads = SWEEP_THREADS;
    let root = repo.root();
    let no_progress = crate::progress::NoProgress;
    if let Some(s3) = repo.backend().as_s3() {
        crate::repo::check_sole_store_user(repo, s3)?;
    }
    let swept = match repo.backend().as_s3() {
        Some(s3) => s3.sweep(MAPS, &|id| maps.contains(id), dry_run, &no_progress)?,
        None => sweep(
            &root.join(MAPS_DIR),
            &|id| maps.contains(id),
            dry_run,
            threads,
            &no_progress,
        )?,
    };
    report.maps_freed = swept.removed;
    let swept = match repo.backend().as_s3() {
        Some(s3) => s3.sweep(BLOCKS, &|h| live.contains(h), dry_run, progress)?,
        None => sweep(
            &root.join(BLOCKS_DIR),
            &|h| live.contains(h),
            dry_run,
            threads,
            progress,
        )?,
    };
    report.blocks_kept = swept.kept;
    report.bytes_kept = swept.kept_bytes;
    report.blocks_freed = swept.removed;
    report.bytes_freed = swept.removed_bytes;
    // Packs after loose blocks (the same live set; the map sweep is already durable).
    if repo.backend().as_s3().is_none() {
        let packs = sweep_packs(
            &PackSweepPlace {
                root,
                tmp_dir: &repo.tmp_dir(),
                modes: repo.modes(),
                max_entry: u64::from(repo.block_size()),
                max_unused_percent: opts.max_unused_percent,
            },
            &|h| live.contains(h),
            dry_run,
            progress,
        )?;
        report.blocks_kept += packs.blocks_kept;
        report.bytes_kept += packs.bytes_kept;
        report.blocks_freed += packs.blocks_freed;
        report.bytes_freed += packs.bytes_freed;
        report.packs_removed = packs.packs_removed;
        report.packs_rewritten = packs.packs_rewritten;
        report.bytes_rewritten = packs.bytes_rewritten;
        report.packs_kept_partial = packs.packs_kept_partial;
        report.bytes_unused_kept = packs.bytes_unused_kept;
        for (path, why) in packs.damaged {
            report.warnings.push(format!(
                "left pack {} alone: its index is damaged ({why}); its blocks may be live: \
                 run `arch fsck --repair`",
                path.display()
            ));
        }
    }
    // Volume garbage: decided on the catalog read above; volume operations that could make
    // new private files all hold the shared data lock, which our exclusive lock keeps out.
    // Private objects in a store are deleted as they are listed (volume_objects).
    let volumes = volume_files::scan_with(repo, &catalog, &Default::default(), !dry_run)?;
    report.volume_entries_removed = volumes.garbage_objects;
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
    // Left by a killed arch serve (counted as stale locks): removed only when no server
    // holds them.
    for left in super::serve_files::scan_against(repo, &catalog)? {
        if dry_run || super::serve_files::remove(&left)? {
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
