//! `du`: per resource, its logical size, the bytes it keeps stored, the bytes only it uses
//! (what deleting it would free) and the bytes it shares; repository totals and the
//! deduplication ratio.

use super::refs::{load_maps, referenced_maps};
use crate::error::{Error, Result};
use crate::repo::Repository;
use crate::storage::{BlockHash, BlockMap, MapId};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Space used by one resource.
#[derive(Debug, Clone, Serialize)]
pub struct ResourceUsage {
    /// `object:<name>` or `volume:<name>`.
    pub resource: String,
    pub logical_bytes: u64,
    /// Stored bytes of the distinct blocks it references.
    pub stored_bytes: u64,
    /// Stored bytes referenced by no other resource.
    pub unique_bytes: u64,
    pub shared_bytes: u64,
}

/// The `du` report.
#[derive(Debug, Clone, Serialize)]
pub struct DuReport {
    pub resources: Vec<ResourceUsage>,
    /// Sum of logical sizes of all resources.
    pub logical_bytes: u64,
    /// Bytes of all stored blocks and private volume blocks (garbage included).
    pub stored_bytes: u64,
    /// Bytes of the volumes' private blocks (included in `stored_bytes`).
    pub private_bytes: u64,
    /// Bytes no resource references: blocks and private-block files (gc frees them).
    pub garbage_bytes: u64,
    /// logical / stored (referenced) bytes; zero blocks count as logical but not stored.
    pub dedup_ratio: f64,
}

/// Usage of the resources named (`names` empty: all). Names are `container/object` or
/// volume names.
pub fn du(repo: &Repository, names: &[String]) -> Result<DuReport> {
    let _data = repo.lock_data_shared()?;
    let catalog = repo.read_catalog()?;
    let maps = referenced_maps(&catalog);
    let (loaded, bad) = load_maps(repo, &maps);
    if let Some((id, why)) = bad.first() {
        return Err(Error::Corrupt {
            path: repo.local_backend().map_path(id),
            reason: format!("referenced map {id} is {why}; run `arch fsck`"),
        });
    }
    let by_id: BTreeMap<MapId, &BlockMap> = loaded.iter().map(|(id, m)| (*id, m)).collect();
    let mut sizes: HashMap<BlockHash, u64> = HashMap::new();
    repo.backend().for_each_block(&mut |h, len| {
        sizes.insert(h, len);
        Ok(())
    })?;
    // Every resource with its logical size and distinct blocks.
    let mut resources: Vec<(String, u64, HashSet<BlockHash>)> = Vec::new();
    for (name, rec) in &catalog.objects {
        let set = distinct(by_id[&rec.map]);
        resources.push((format!("object:{name}"), rec.bytes, set));
    }
    let volumes = super::volume_files::scan(repo, &catalog)?;
    let mut private_bytes: HashMap<String, u64> = HashMap::new();
    for (name, vol) in &catalog.volumes {
        // The blocks a volume still reads through its base map: not overridden by a private
        // block, inside the volume.
        let private = volumes.private.get(name).cloned().unwrap_or_default();
        let blocks = vol.size.div_ceil(vol.block_size as u64) as usize;
        let set = by_id[&vol.base_map]
            .hashes
            .iter()
            .take(blocks)
            .enumerate()
            .filter(|(i, h)| !h.is_zero() && !private.indexes.contains(&(*i as u64)))
            .map(|(_, h)| *h)
            .collect();
        resources.push((format!("volume:{name}"), vol.size, set));
        private_bytes.insert(format!("volume:{name}"), private.bytes);
    }
    let mut refcount: HashMap<BlockHash, u32> = HashMap::new();
    for (_, _, set) in &resources {
        for h in set {
            *refcount.entry(*h).or_default() += 1;
        }
    }
    let wanted = |r: &str| {
        names.is_empty()
            || names
                .iter()
                .any(|n| r == format!("object:{n}") || r == format!("volume:{n}"))
    };
    for n in names {
        if !resources
            .iter()
            .any(|(r, _, _)| r == &format!("object:{n}") || r == &format!("volume:{n}"))
        {
            return Err(Error::NotFound {
                kind: "resource",
                name: n.clone(),
                suggestion: crate::services::names::closest(
                    n,
                    catalog
                        .objects
                        .keys()
                        .chain(catalog.volumes.keys())
                        .map(String::as_str),
                ),
            });
        }
    }
    let mut out = Vec::new();
    for (resource, logical, set) in &resources {
        if !wanted(resource) {
            continue;
        }
        // Private blocks belong to their volume alone.
        let own = private_bytes.get(resource).copied().unwrap_or(0);
        let mut stored = own;
        let mut unique = own;
        for h in set {
            let len = sizes.get(h).copied().unwrap_or(0);
            stored += len;
            if refcount[h] == 1 {
                unique += len;
            }
        }
        out.push(ResourceUsage {
            resource: resource.clone(),
            logical_bytes: *logical,
            stored_bytes: stored,
            unique_bytes: unique,
            shared_bytes: stored - unique,
        });
    }
    let referenced: u64 = refcount
        .keys()
        .map(|h| sizes.get(h).copied().unwrap_or(0))
        .sum();
    let all_private: u64 = private_bytes.values().sum();
    let referenced = referenced + all_private;
    let stored_total: u64 = sizes.values().sum::<u64>() + all_private + volumes.garbage_bytes;
    let logical: u64 = resources.iter().map(|(_, l, _)| l).sum();
    Ok(DuReport {
        resources: out,
        logical_bytes: logical,
        stored_bytes: stored_total,
        garbage_bytes: stored_total - referenced,
        private_bytes: all_private,
        dedup_ratio: if referenced == 0 {
            1.0
        } else {
            logical as f64 / referenced as f64
        },
    })
}

fn distinct(map: &BlockMap) -> HashSet<BlockHash> {
    map.hashes
        .iter()
        .filter(|h| !h.is_zero())
        .copied()
        .collect()
}
