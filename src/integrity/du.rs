//! `du`: per resource, its logical size, the bytes it keeps stored, the bytes only it uses
//! (what deleting it would free) and the bytes it shares; repository totals and the
//! deduplication ratio.
//!
//! Cost follows the data: only the blocks maps list as holding data are visited. Every byte
//! counter is checked: the sum of logical sizes is a u128 (many 64 TiB resources exceed u64),
//! every other sum is of bytes on one disk and overflowing u64 is reported, never wrapped.

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
    /// Sum of logical sizes of all resources (u128: it may exceed 2^64 - 1).
    pub logical_bytes: u128,
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
    let db = repo.catalog()?;
    let (catalog, maps, history) = db.read(|db| {
        let mut history = Vec::new();
        db.for_each_version(None, &mut |name, rec| {
            history.push((name, rec));
            Ok(true)
        })?;
        Ok((db.load(true)?, referenced_maps(db)?, history))
    })?;
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
    // Kept old versions hold their blocks too: each is a resource of its own.
    for (name, rec) in &history {
        if catalog
            .objects
            .get(name)
            .is_some_and(|c| c.version != rec.version)
        {
            let set = distinct(by_id[&rec.map]);
            resources.push((format!("object:{name}@{}", rec.version), rec.bytes, set));
        }
    }
    let volumes = super::volume_files::scan(repo, &catalog)?;
    let mut private_bytes: HashMap<String, u64> = HashMap::new();
    for (name, vol) in &catalog.volumes {
        // The blocks a volume still reads through its base map: not overridden by a private
        // block, inside the volume.
        let private = volumes.private.get(name).cloned().unwrap_or_default();
        let blocks = vol.size.div_ceil(vol.block_size as u64);
        let set = by_id[&vol.base_map]
            .entries()
            .iter()
            .filter(|(i, _)| *i < blocks && !private.indexes.contains(i))
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
            stored = add(stored, len)?;
            if refcount[h] == 1 {
                unique = add(unique, len)?;
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
    let referenced = sum(refcount.keys().map(|h| sizes.get(h).copied().unwrap_or(0)))?;
    let all_private = sum(private_bytes.values().copied())?;
    let referenced = add(referenced, all_private)?;
    let stored_total = sum(sizes
        .values()
        .copied()
        .chain([all_private, volumes.garbage_bytes]))?;
    let logical: u128 = resources.iter().map(|(_, l, _)| *l as u128).sum();
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
    map.entries().iter().map(|e| e.1).collect()
}

/// `a + b`, or an error instead of a wrapped total.
pub(super) fn add(a: u64, b: u64) -> Result<u64> {
    a.checked_add(b).ok_or_else(|| {
        Error::invalid(format!(
            "a byte total exceeds {} bytes ({a} + {b}); the stored sizes are \
             implausible, run `arch fsck`",
            u64::MAX
        ))
    })
}

/// Checked sum of byte counts.
fn sum(values: impl IntoIterator<Item = u64>) -> Result<u64> {
    values.into_iter().try_fold(0, add)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_refuse_to_wrap() {
        assert_eq!(sum([1, 2, 3]).unwrap(), 6);
        assert!(add(u64::MAX, 1).is_err());
        assert!(sum([u64::MAX - 1, 1, 1]).is_err());
    }
}
