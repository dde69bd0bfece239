//! `fsck`: checks that every record references a present, consistent map, that every
//! referenced block is present (and, with `read_data`, intact), and counts the garbage that
//! gc or `--repair` removes.

use super::refs::{
    HashSet32, holders, live_blocks, load_maps, referenced_map_ids, temp_entries, volumes_only,
};
use super::{invariants, volume_files};
use crate::error::{Error, Result};
use crate::repo::catalog::Catalog;
use crate::repo::{CATALOG_LOCK, Repository, lock};
use crate::storage::fsutil::remove_path;
use crate::storage::{BlockHash, BlockMap, MapId};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Options of [`fsck`].
#[derive(Debug, Clone, Copy, Default)]
pub struct FsckOptions {
    /// Rehash every stored block.
    pub read_data: bool,
    /// Remove what is provably garbage (temporary files of interrupted operations), move
    /// corrupt blocks and maps to `quarantine/`, restrict exposed permissions.
    pub repair: bool,
}

/// One piece of damage.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Problem {
    /// missing_map | corrupt_map | map_mismatch | missing_block | corrupt_block |
    /// invalid_record | duplicate_uuid | duplicate_volume_id | volume_map_mismatch | ...
    pub kind: String,
    /// The hash or path concerned.
    pub subject: String,
    /// Resources affected (`object:<name>`, `volume:<name>`).
    pub resources: Vec<String>,
    pub message: String,
}

/// Things no resource needs: safe to delete, and removed by `arch gc`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Garbage {
    pub unreferenced_blocks: u64,
    pub unreferenced_bytes: u64,
    /// Pack entries holding a block another pack holds too (two puts at once): gc keeps
    /// one copy. Not counted in `unreferenced_blocks`.
    pub extra_copies: u64,
    pub extra_copy_bytes: u64,
    pub unreferenced_maps: u64,
    /// Entries of `tmp/`: left by interrupted operations (or in use by a running one).
    pub temp_entries: u64,
    /// Private-block files and directories (objects, in a store) no volume reads (removed
    /// volumes, old epochs, blocks past a volume's end).
    pub volume_entries: u64,
    pub volume_bytes: u64,
    /// Lock files of volumes that no longer exist.
    pub stale_locks: u64,
    /// Volumes left `creating` by a clone that died: never usable; gc removes them.
    pub unfinished_volumes: u64,
}

/// What fsck found.
#[derive(Debug, Clone, Serialize)]
pub struct FsckReport {
    pub objects: u64,
    pub volumes: u64,
    pub maps: u64,
    /// Stored blocks.
    pub blocks: u64,
    pub stored_bytes: u64,
    /// Blocks rehashed (with `read_data`): each stored block once however many copies (pack
    /// entries) were read, plus the private blocks of volumes.
    pub blocks_read: u64,
    pub problems: Vec<Problem>,
    pub garbage: Garbage,
    /// What `repair` removed or moved to quarantine. Damage it could not undo stays in
    /// `problems`.
    pub repaired: Vec<String>,
    /// Not damage, but needs attention: permissions wider than the repository's, files kept
    /// in quarantine.
    pub warnings: Vec<String>,
}

impl FsckReport {
    /// True when nothing is damaged (garbage is not damage).
    pub fn clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// A report of damage found before anything could be counted.
    fn only(problems: Vec<Problem>, repaired: Vec<String>, warnings: Vec<String>) -> Self {
        FsckReport {
            objects: 0,
            volumes: 0,
            maps: 0,
            blocks: 0,
            stored_bytes: 0,
            blocks_read: 0,
            problems,
            garbage: Garbage::default(),
            repaired,
            warnings,
        }
    }
}

/// Checks the repository. Reads only, unless `opts.repair`.
pub fn fsck(repo: &Repository, opts: FsckOptions) -> Result<FsckReport> {
    let layout = crate::repo::layout::faults_with(repo.root(), repo.config().store.is_none());
    if !layout.is_empty() {
        // Paths under a linked directory lead outside the repository: report, touch nothing.
        let problems = layout
            .iter()
            .map(|f| Problem {
                kind: "not_directory".into(),
                subject: f.path.display().to_string(),
                resources: vec![],
                message: format!(
                    "{f}; replace it with a real directory (after moving its content back), \
                     then run fsck again: nothing else was checked"
                ),
            })
            .collect();
        return Ok(FsckReport::only(problems, Vec::new(), Vec::new()));
    }
    let mut repaired = Vec::new();
    let mut kept_objects = None;
    if opts.repair {
        // Exclusive data lock: no operation has files in tmp/ in flight; the catalog lock
        // keeps metadata commits (which stage in tmp/) out while we clean.
        let _data = repo.lock_data_exclusive()?;
        let _cat = lock::lock_exclusive(&repo.root().join(CATALOG_LOCK))?;
        // A customization killed with its fusermount3 leaves its disk mounted in tmp/.
        crate::customize::fuse::unmount_leftovers(&repo.tmp_dir());
        for entry in temp_entries(repo)? {
            remove_path(&entry)?;
            repaired.push(format!("removed {}", entry.display()));
        }
        // Only validated volume records name directories (an invalid one fails the read).
        if let Ok(volumes) = repo.catalog().and_then(|db| db.read(volumes_only)) {
            // Private objects of volumes of another catalog sharing the store look like
            // garbage here: kept then (as gc refuses to run).
            let sole = match repo.backend().as_s3() {
                Some(s3) => crate::repo::check_sole_store_user(repo, s3)
                    .inspect_err(|e| kept_objects = Some(e.to_string()))
                    .is_ok(),
                None => true,
            };
            let found = volume_files::scan_with(repo, &volumes, &Default::default(), sole)?;
            if sole && found.garbage_objects > 0 {
                repaired.push(format!(
                    "removed {} private objects no volume reads from {}/volumes/",
                    found.garbage_objects,
                    repo.config().store.as_deref().unwrap_or_default()
                ));
            }
            for path in &found.garbage {
                remove_path(path)?;
                repaired.push(format!("removed {}", path.display()));
            }
            for path in &found.stale_locks {
                if volume_files::remove_stale_lock(path)? {
                    repaired.push(format!("removed stale lock {}", path.display()));
                }
            }
            for left in super::serve_files::scan_against(repo, &volumes)? {
                if super::serve_files::remove(&left)? {
                    repaired.push(format!("removed {left} (left by a killed arch serve)"));
                }
            }
        }
    }
    // Repair may move corrupt blocks to quarantine at the end: no operation may be using them.
    let _data = if opts.repair {
        repo.lock_data_exclusive()?
    } else {
        repo.lock_data_shared()?
    };
    let mut problems = Vec::new();
    let mut warnings: Vec<String> = kept_objects
        .into_iter()
        .map(|why| format!("private objects no volume here reads were kept: {why}"))
        .collect();
    // The catalog is streamed: only the volumes are held (unchecked: fsck reports each
    // invalid one), since their files are scanned against them; objects and versions are
    // checked one at a time as they are read.
    let db = match repo.catalog() {
        Ok(db) => db,
        Err(Error::Corrupt { path, reason }) => {
            return Ok(catalog_damaged(
                problems, &path, &reason, repaired, warnings,
            ));
        }
        Err(e) => return Err(e),
    };
    let mut catalog = Catalog::default();
    let read = db.read(|db| {
        db.for_each_volume_unchecked(&mut |name, rec| {
            catalog.volumes.insert(name, rec);
            Ok(true)
        })
    });
    if let Err(Error::Corrupt { path, reason }) = &read {
        return Ok(catalog_damaged(problems, path, reason, repaired, warnings));
    }
    read?;
    // The database's own consistency check (pages, indexes, constraints: it also proves
    // object uuids unique, their primary key).
    for line in db.integrity_check()? {
        problems.push(Problem {
            kind: "corrupt_catalog".into(),
            subject: db.path().display().to_string(),
            resources: vec![],
            message: format!("{}: integrity check: {line}", db.path().display()),
        });
    }
    // Invalid volume records are reported; only sound volumes are scanned below.
    let check = invariants::check_catalog(&catalog, repo.block_size());
    problems.extend(check.problems.iter().cloned());
    let maps = db.read(referenced_map_ids)?;
    // Problems that name the resources holding some maps: filled in once all are found, from
    // one more pass over the references (few maps; never every holder of every map).
    let mut needs: Vec<(usize, Vec<MapId>)> = Vec::new();
    let (loaded, bad) = load_maps(repo, maps.iter());
    for (id, why) in &bad {
        let missing = why == "missing";
        problems.push(Problem {
            kind: if missing {
                "missing_map"
            } else {
                "corrupt_map"
            }
            .into(),
            subject: id.to_hex(),
            resources: vec![],
            message: format!("map {id}: {why}"),
        });
        needs.push((problems.len() - 1, vec![*id]));
    }
    let by_id: BTreeMap<MapId, &BlockMap> = loaded.iter().map(|(id, m)| (*id, m)).collect();
    let mut objects = 0u64;
    let bs = repo.block_size();
    let read = db.read(|db| {
        db.for_each_object_unchecked(&mut |name, rec| {
            objects += 1;
            for fault in rec.faults(&name, bs) {
                problems.push(invalid_record(&name, fault));
            }
            // Kept old versions obey the object rules too.
            db.for_each_version_unchecked(Some(&name), &mut |_, old| {
                if old.version != rec.version {
                    let label = format!("{name}@{}", old.version);
                    for fault in old.faults(&name, bs) {
                        problems.push(invalid_record(&label, fault));
                    }
                }
                Ok(true)
            })?;
            if let Some(p) = map_mismatch(&name, &rec, &by_id, bs) {
                problems.push(p);
            }
            Ok(true)
        })
    });
    if let Err(Error::Corrupt { path, reason }) = &read {
        return Ok(catalog_damaged(problems, path, reason, repaired, warnings));
    }
    read?;
    problems.extend(invariants::check_volume_maps(&check.sound, &by_id));
    let live = live_blocks(&loaded);
    let mut stored: Vec<(BlockHash, u64)> = Vec::new();
    repo.backend().for_each_block(&mut |h, len| {
        stored.push((h, len));
        Ok(())
    })?;
    stored.sort_unstable();
    problems.extend(super::fsck_packs::damaged_packs(repo)?);
    let present = HashSet32::from_iter(stored.iter().map(|(h, _)| *h));
    let mut missing: Vec<BlockHash> = Vec::new();
    let mut reported_missing = std::collections::HashSet::new();
    for (_, m) in &loaded {
        for (_, h) in m.entries() {
            if !h.is_zero() && !present.contains(h) && reported_missing.insert(*h) {
                missing.push(*h);
            }
        }
    }
    let mut blocks_read = 0;
    // Loose blocks are rehashed through the backend; packed ones pack by pack, every entry
    // (all copies, dead ones too). blocks_read counts each stored block once.
    let (corrupt, bad_entries) = if opts.read_data {
        blocks_read = stored.len() as u64;
        let packed = super::fsck_packs::packed_blocks(repo)?;
        let loose: Vec<(BlockHash, u64)> = stored
            .iter()
            .filter(|(h, _)| !packed.contains(h))
            .copied()
            .collect();
        (
            rehash_all(repo, &loose)?,
            super::fsck_packs::rehash_packs(repo)?,
        )
    } else {
        (Vec::new(), Vec::new())
    };
    // The maps using each bad block, in one pass over the maps (not one pass per block).
    let mut users: std::collections::HashMap<BlockHash, Vec<MapId>> = missing
        .iter()
        .chain(&corrupt)
        .chain(bad_entries.iter().map(|b| &b.hash))
        .map(|h| (*h, Vec::new()))
        .collect();
    if !users.is_empty() {
        for (id, m) in &loaded {
            for (_, h) in m.entries() {
                if let Some(ids) = users.get_mut(h)
                    && ids.last() != Some(id)
                {
                    ids.push(*id);
                }
            }
        }
    }
    // A block with several bad copies: each problem names its users.
    for bad in &bad_entries {
        problems.push(super::fsck_packs::bad_entry_problem(repo, bad));
        needs.push((
            problems.len() - 1,
            users.get(&bad.hash).cloned().unwrap_or_default(),
        ));
    }
    let mut users_of = |h: &BlockHash| users.remove(h).unwrap_or_default();
    for h in missing {
        problems.push(Problem {
            kind: "missing_block".into(),
            subject: h.to_hex(),
            resources: vec![],
            message: format!("block {h} is referenced but missing"),
        });
        needs.push((problems.len() - 1, users_of(&h)));
    }
    for h in corrupt {
        let users = users_of(&h);
        let message = if users.is_empty() {
            format!("block {h} is corrupt (unreferenced: gc removes it)")
        } else {
            format!("block {h} is corrupt: its content does not match its hash")
        };
        problems.push(Problem {
            kind: "corrupt_block".into(),
            subject: h.to_hex(),
            resources: vec![],
            message,
        });
        needs.push((problems.len() - 1, users));
    }
    let wanted: BTreeSet<MapId> = needs.iter().flat_map(|(_, ids)| ids.clone()).collect();
    if !wanted.is_empty() {
        let holders = db.read(|db| holders(db, &wanted))?;
        for (i, ids) in needs {
            let mut names: Vec<String> = ids
                .iter()
                .flat_map(|id| holders.get(id).into_iter().flatten().cloned())
                .collect();
            names.sort();
            names.dedup();
            problems[i].resources = names;
        }
    }
    let mut garbage = Garbage::default();
    if let Some(packs) = repo.backend().as_local().and_then(|l| l.packs()) {
        let extra = packs.duplicates()?;
        garbage.extra_copies = extra.entries;
        garbage.extra_copy_bytes = extra.bytes;
    }
    for (h, len) in &stored {
        if !live.contains(h) {
            garbage.unreferenced_blocks += 1;
            garbage.unreferenced_bytes += len;
        }
    }
    let mut all_maps = 0;
    repo.backend().for_each_map(&mut |id| {
        all_maps += 1;
        if !maps.contains(&id) {
            garbage.unreferenced_maps += 1;
        }
        Ok(())
    })?;
    garbage.temp_entries = temp_entries(repo)?.len() as u64;
    let mut volumes = volume_files::scan_with(repo, &check.sound, &check.withheld_ids, false)?;
    check.spare(repo, &mut volumes);
    for (name, path, reason) in &volumes.damaged {
        problems.push(Problem {
            kind: "damaged_private_block".into(),
            subject: path.display().to_string(),
            resources: vec![format!("volume:{name}")],
            message: format!("volume {name}: {reason}"),
        });
    }
    if opts.read_data {
        for (name, private) in &volumes.private {
            let rec = &check.sound.volumes[name];
            let bs = rec.block_size as usize;
            let epoch = repo
                .private_store()
                .open_epoch(&rec.id, rec.epoch, bs as u64, name)?;
            let mut buf = Vec::new();
            for &i in &private.indexes {
                if let Err(e) = epoch.read_block(i, bs, &mut buf) {
                    problems.push(Problem {
                        kind: "unreadable_private_block".into(),
                        subject: epoch.location(i).display().to_string(),
                        resources: vec![format!("volume:{name}")],
                        message: format!("volume {name}: {e}"),
                    });
                }
                blocks_read += 1;
            }
        }
    }
    garbage.volume_entries = volumes.garbage_entries();
    garbage.volume_bytes = volumes.garbage_bytes;
    garbage.stale_locks = volumes.stale_locks.len() as u64;
    // A damaged record's volume keeps its files (as its volume lock above).
    let sound_ids: std::collections::HashSet<&str> = check
        .sound
        .volumes
        .values()
        .map(|v| v.id.as_str())
        .collect();
    let is_volume = |id: &str| sound_ids.contains(id) || check.withheld_ids.contains(id);
    for left in super::serve_files::scan(repo, &is_volume)? {
        garbage.stale_locks += 1;
        warnings.push(format!(
            "{left} was left by an arch serve that was killed (stale lock); `arch gc` removes it"
        ));
    }
    for (name, rec) in &check.sound.volumes {
        let state = crate::services::volumes::creating::state(repo, rec)?;
        if state.is_some_and(|s| !s.creator_running) {
            garbage.unfinished_volumes += 1;
            warnings.push(format!(
                "volume '{name}' was left unfinished by a clone that died (never usable); \
                 `arch gc` removes it, `arch customize {name}` finishes it"
            ));
        }
    }
    super::quarantine::check(
        repo,
        &db,
        opts.repair,
        &mut problems,
        &mut warnings,
        &mut repaired,
    )?;
    Ok(FsckReport {
        objects,
        volumes: catalog.volumes.len() as u64,
        maps: all_maps,
        blocks: stored.len() as u64,
        stored_bytes: stored.iter().map(|(_, l)| l).sum(),
        blocks_read,
        problems,
        garbage,
        repaired,
        warnings,
    })
}

/// The report of a catalog that cannot be read: nothing else can be checked.
fn catalog_damaged(
    mut problems: Vec<Problem>,
    path: &std::path::Path,
    reason: &str,
    repaired: Vec<String>,
    warnings: Vec<String>,
) -> FsckReport {
    problems.push(Problem {
        kind: "corrupt_catalog".into(),
        subject: path.display().to_string(),
        resources: vec![],
        message: format!("{}: {reason}", path.display()),
    });
    FsckReport::only(problems, repaired, warnings)
}

/// One broken rule of object (or old version) `label`'s record.
fn invalid_record(label: &str, fault: String) -> Problem {
    let shown = crate::services::names::escape_control(label);
    Problem {
        kind: "invalid_record".into(),
        subject: format!("object:{shown}"),
        resources: vec![format!("object:{shown}")],
        message: format!("object '{shown}': {fault}"),
    }
}

/// A problem when object `name`'s loaded map disagrees with its record.
fn map_mismatch(
    name: &str,
    rec: &crate::repo::records::ObjectRecord,
    by_id: &BTreeMap<MapId, &BlockMap>,
    block_size: u32,
) -> Option<Problem> {
    let map = by_id.get(&rec.map)?;
    let top = map.top_hash().to_hex();
    if map.size() == rec.bytes && top == rec.hash && map.block_size() == block_size {
        return None;
    }
    Some(Problem {
        kind: "map_mismatch".into(),
        subject: rec.map.to_hex(),
        resources: vec![format!("object:{name}")],
        message: format!(
            "object {name} records {} bytes, hash {}, but its map has {} bytes, hash {top}",
            rec.bytes,
            rec.hash,
            map.size()
        ),
    })
}

/// Rehashes every stored block on all cores; returns the corrupt ones.
fn rehash_all(repo: &Repository, stored: &[(BlockHash, u64)]) -> Result<Vec<BlockHash>> {
    let threads = crate::storage::ingest::worker_threads();
    let chunk = stored.len().div_ceil(threads).max(1);
    let max_len = repo.block_size() as usize;
    let results: Vec<Result<Vec<BlockHash>>> = std::thread::scope(|s| {
        let handles: Vec<_> = stored
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || -> Result<Vec<BlockHash>> {
                    let mut buf = Vec::with_capacity(max_len);
                    let mut bad = Vec::new();
                    for (h, _) in part {
                        crate::interrupt::check()?;
                        let present = match repo.backend().read_block(h, &mut buf) {
                            Ok(present) => present,
                            // Not a regular file: as bad as wrong content.
                            Err(Error::Corrupt { .. }) => {
                                bad.push(*h);
                                continue;
                            }
                            Err(e) => return Err(e),
                        };
                        if present && (buf.len() > max_len || BlockHash::of_bytes(&buf) != *h) {
                            bad.push(*h);
                        }
                    }
                    Ok(bad)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("rehash thread"))
            .collect()
    });
    let mut bad = Vec::new();
    for r in results {
        bad.extend(r?);
    }
    Ok(bad)
}
