//! The invariants of the catalog itself (docs/FORMAT.md "Invariants"), for fsck: every record
//! valid, object uuids and volume ids unique, each volume's base map consistent with it. Only
//! volumes whose records pass may then be used to build paths or divide by a block size.

use super::fsck::Problem;
use super::volume_files::{VolumeScan, disk_usage};
use crate::repo::catalog::Catalog;
use crate::repo::records::is_uuid;
use crate::repo::{LOCKS_DIR, Repository, VOLUMES_DIR};
use crate::services::names::escape_control;
use crate::storage::{BlockMap, MapId};
use std::collections::{BTreeMap, BTreeSet};

/// What [`check_catalog`] found.
pub struct CatalogCheck {
    /// One problem per violation, in catalog order.
    pub problems: Vec<Problem>,
    /// The catalog without the volumes that broke a rule: the only volumes fsck may scan.
    /// Objects all stay: fsck only compares their fields, never uses one as a path.
    pub sound: Catalog,
    /// Ids (uuids, so safe file names) of the volumes left out of `sound`: their files are
    /// not garbage, since the record may still be repaired by hand.
    pub(crate) withheld_ids: BTreeSet<String>,
}

/// Checks every record of `catalog` against a repository of `block_size`.
pub fn check_catalog(catalog: &Catalog, block_size: u32) -> CatalogCheck {
    let problems = catalog
        .violations(block_size)
        .into_iter()
        .map(|v| Problem {
            kind: v.kind.into(),
            subject: v.resources.join(" "),
            resources: v.resources,
            message: v.message,
        })
        .collect();
    let mut ids: BTreeMap<&str, usize> = BTreeMap::new();
    for rec in catalog.volumes.values() {
        *ids.entry(rec.id.as_str()).or_default() += 1;
    }
    let mut sound = catalog.clone();
    let mut withheld_ids = BTreeSet::new();
    sound.volumes.retain(|name, rec| {
        let ok = ids[rec.id.as_str()] == 1 && rec.faults(name, block_size).is_empty();
        if !ok && is_uuid(&rec.id) {
            withheld_ids.insert(rec.id.clone());
        }
        ok
    });
    CatalogCheck {
        problems,
        sound,
        withheld_ids,
    }
}

impl CatalogCheck {
    /// Removes from `scan` the directories and lock files of withheld volumes, which the
    /// scan (seeing no sound record for them) counted as garbage.
    pub fn spare(&self, repo: &Repository, scan: &mut VolumeScan) {
        let volumes = repo.root().join(VOLUMES_DIR);
        let locks = repo.root().join(LOCKS_DIR);
        let withheld = |id: Option<&str>| id.is_some_and(|id| self.withheld_ids.contains(id));
        let mut spared_bytes = 0;
        scan.garbage.retain(|path| {
            let id = path
                .strip_prefix(&volumes)
                .ok()
                .and_then(|rel| rel.iter().next())
                .and_then(|c| c.to_str());
            if withheld(id) {
                spared_bytes += disk_usage(path);
                return false;
            }
            true
        });
        scan.garbage_bytes = scan.garbage_bytes.saturating_sub(spared_bytes);
        scan.stale_locks.retain(|path| {
            let id = path
                .strip_prefix(&locks)
                .ok()
                .and_then(|p| p.to_str())
                .and_then(|f| f.strip_prefix("volume-"))
                .and_then(|f| f.strip_suffix(".lock"));
            !withheld(id)
        });
    }
}

/// Checks each sound volume against its loaded base map: the map's block size is the
/// volume's, and it lists at most `ceil(size / block_size)` blocks (docs/VOLUMES.md).
pub fn check_volume_maps(sound: &Catalog, maps: &BTreeMap<MapId, &BlockMap>) -> Vec<Problem> {
    let mut out = Vec::new();
    for (name, rec) in &sound.volumes {
        let Some(map) = maps.get(&rec.base_map) else {
            continue; // missing or corrupt: reported with the maps
        };
        let blocks = rec.size.div_ceil(rec.block_size as u64);
        let reason = if map.block_size() != rec.block_size {
            format!(
                "its base map {} has block size {}, the volume {}",
                rec.base_map,
                map.block_size(),
                rec.block_size
            )
        } else if map.block_count() > blocks {
            format!(
                "its base map {} lists {} blocks, more than the volume's {blocks} ({} bytes)",
                rec.base_map,
                map.block_count(),
                rec.size
            )
        } else {
            continue;
        };
        let name = escape_control(name);
        out.push(Problem {
            kind: "volume_map_mismatch".into(),
            subject: rec.base_map.to_hex(),
            resources: vec![format!("volume:{name}")],
            message: format!("volume '{name}': {reason}"),
        });
    }
    out
}
