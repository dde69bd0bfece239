//! `du`: per resource, its logical size, the bytes it keeps stored, the bytes only it uses
//! (what deleting it would free) and the bytes it shares; repository totals and the
//! deduplication ratio.
//!
//! Cost follows the data: only the blocks maps list as holding data are visited. Every byte
//! counter is checked: the sum of logical sizes is a u128 (many 64 TiB resources exceed u64),
//! every other sum is of bytes on one disk and overflowing u64 is reported, never wrapped.
//!
//! Streamed: the catalog is read twice inside one read transaction (one consistent view),
//! never held whole. The first pass counts, per map, the kept object versions that use it,
//! which gives every block's reference count; the second pass hands each resource's row to
//! the caller as it is read. Memory grows with the distinct maps and blocks (and the
//! volumes, whose private-block files are scanned), not with the object records.

use super::refs::{load_maps, volumes_only};
use crate::error::{Error, Result};
use crate::repo::Repository;
use crate::repo::db::{Db, ObjectFilter};
use crate::repo::records::VolumeRecord;
use crate::storage::{BlockHash, BlockHashMap, BlockMap, MapId};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Space used by one resource.
#[derive(Debug, Clone, Serialize)]
pub struct ResourceUsage {
    /// `object:<name>`, `object:<name>@<version>` for a kept old version, or
    /// `volume:<name>`.
    pub resource: String,
    pub logical_bytes: u64,
    /// Stored bytes of the distinct blocks it references.
    pub stored_bytes: u64,
    /// Stored bytes referenced by no other resource.
    pub unique_bytes: u64,
    pub shared_bytes: u64,
}

/// The repository totals of the `du` report.
#[derive(Debug, Clone, Serialize)]
pub struct DuTotals {
    /// Sum of logical sizes of all resources (u128: it may exceed 2^64 - 1).
    pub logical_bytes: u128,
    /// Bytes of all stored blocks and private volume blocks (garbage included).
    pub stored_bytes: u64,
    /// Bytes of the volumes' private blocks (included in `stored_bytes`).
    pub private_bytes: u64,
    /// Bytes no resource references: blocks, private-block files and extra copies of packed
    /// blocks (gc frees them).
    pub garbage_bytes: u64,
    /// logical / stored (referenced) bytes; zero blocks count as logical but not stored.
    pub dedup_ratio: f64,
    /// Where the blocks and maps counted here live.
    pub data: crate::repo::DataLocation,
}

/// Usage of the resources named (`names` empty: all, kept old object versions included).
/// Names are `container/object` or volume names. Each resource's row is passed to `row` as
/// it is computed, in name order (an object followed by its old versions, newest first, then
/// the volumes); the totals are returned at the end. A name that does not exist, or a
/// referenced map that cannot be read, fails before any row.
pub fn du(
    repo: &Repository,
    names: &[String],
    row: &mut dyn FnMut(ResourceUsage) -> Result<()>,
) -> Result<DuTotals> {
    let _data = repo.lock_data_shared()?;
    repo.catalog()?.read(|db| du_in(repo, db, names, row))
}

fn du_in(
    repo: &Repository,
    db: &Db,
    names: &[String],
    row: &mut dyn FnMut(ResourceUsage) -> Result<()>,
) -> Result<DuTotals> {
    for n in names {
        if !db.has_object(n)? && !db.has_volume(n)? {
            return Err(not_found(db, n));
        }
    }
    // Pass 1: the kept object versions using each map, and the logical total.
    let mut uses: BTreeMap<MapId, u32> = BTreeMap::new();
    let mut logical: u128 = 0;
    db.for_each_version(None, &mut |_, rec| {
        *uses.entry(rec.map).or_default() += 1;
        logical += rec.bytes as u128;
        Ok(true)
    })?;
    let volumes = volumes_only(db)?;
    let mut ids: BTreeSet<MapId> = uses.keys().copied().collect();
    ids.extend(volumes.volumes.values().map(|v| v.base_map));
    let (loaded, bad) = load_maps(repo, ids.iter());
    if let Some((id, why)) = bad.first() {
        return Err(Error::Corrupt {
            path: repo.backend().map_location(id),
            reason: format!("referenced map {id} is {why}; run `arch fsck`"),
        });
    }
    let by_id: HashMap<MapId, &BlockMap> = loaded.iter().map(|(id, m)| (*id, m)).collect();
    let mut sizes: BlockHashMap<u64> = BlockHashMap::default();
    repo.backend().for_each_block(&mut |h, len| {
        sizes.insert(h, len);
        Ok(())
    })?;
    let scan = super::volume_files::scan(repo, &volumes)?;
    let mut refcount: BlockHashMap<u32> = BlockHashMap::default();
    for (id, n) in &uses {
        for h in distinct(by_id[id]) {
            *refcount.entry(h).or_default() += n;
        }
    }
    for (name, vol) in &volumes.volumes {
        for h in volume_set(&scan, &by_id, name, vol) {
            *refcount.entry(h).or_default() += 1;
        }
        logical += vol.size as u128;
    }
    let all_private = sum(scan.private.values().map(|p| p.bytes))?;
    let referenced = sum(refcount.keys().map(|h| sizes.get(h).copied().unwrap_or(0)))?;
    let referenced = add(referenced, all_private)?;
    // Extra copies of packed blocks (two puts at once) take space until gc removes them.
    let extra_copies = match repo.backend().as_local().and_then(|l| l.packs()) {
        Some(packs) => packs.duplicates()?.bytes,
        None => 0,
    };
    let stored_total =
        sum(sizes
            .values()
            .copied()
            .chain([all_private, scan.garbage_bytes, extra_copies]))?;
    // Pass 2: one row per wanted resource.
    let usage = |resource: String,
                 logical_bytes: u64,
                 set: HashSet<BlockHash>,
                 own: u64|
     -> Result<ResourceUsage> {
        // Private blocks belong to their volume alone.
        let mut stored = own;
        let mut unique = own;
        for h in &set {
            let len = sizes.get(h).copied().unwrap_or(0);
            stored = add(stored, len)?;
            if refcount[h] == 1 {
                unique = add(unique, len)?;
            }
        }
        Ok(ResourceUsage {
            resource,
            logical_bytes,
            stored_bytes: stored,
            unique_bytes: unique,
            shared_bytes: stored - unique,
        })
    };
    let wanted = |n: &str| names.is_empty() || names.iter().any(|w| w == n);
    db.for_each_object(&ObjectFilter::default(), &mut |name, cur| {
        if wanted(&name) {
            let set = distinct(by_id[&cur.map]);
            row(usage(format!("object:{name}"), cur.bytes, set, 0)?)?;
        }
        // Kept old versions hold their blocks too: each is a resource of its own, listed
        // when every resource is.
        if names.is_empty() {
            db.for_each_version(Some(&name), &mut |_, rec| {
                if rec.version != cur.version {
                    let set = distinct(by_id[&rec.map]);
                    let r = format!("object:{name}@{}", rec.version);
                    row(usage(r, rec.bytes, set, 0)?)?;
                }
                Ok(true)
            })?;
        }
        Ok(true)
    })?;
    for (name, vol) in &volumes.volumes {
        if wanted(name) {
            let set = volume_set(&scan, &by_id, name, vol);
            let own = scan.private.get(name).map_or(0, |p| p.bytes);
            row(usage(format!("volume:{name}"), vol.size, set, own)?)?;
        }
    }
    Ok(DuTotals {
        logical_bytes: logical,
        stored_bytes: stored_total,
        garbage_bytes: stored_total - referenced,
        private_bytes: all_private,
        dedup_ratio: if referenced == 0 {
            1.0
        } else {
            logical as f64 / referenced as f64
        },
        data: repo.data_location(),
    })
}

/// The blocks a volume still reads through its base map: not overridden by a private block,
/// inside the volume.
fn volume_set(
    scan: &super::volume_files::VolumeScan,
    by_id: &HashMap<MapId, &BlockMap>,
    name: &str,
    vol: &VolumeRecord,
) -> HashSet<BlockHash> {
    let private = scan.private.get(name);
    let blocks = vol.size.div_ceil(vol.block_size as u64);
    by_id[&vol.base_map]
        .entries()
        .iter()
        .filter(|(i, _)| *i < blocks && !private.is_some_and(|p| p.indexes.contains(i)))
        .map(|(_, h)| *h)
        .collect()
}

/// The error for a resource `name` that does not exist, with the closest existing name.
/// Only this failure reads every name (to suggest one).
fn not_found(db: &Db, name: &str) -> Error {
    let mut all: Vec<String> = Vec::new();
    let _ = db.for_each_object(&ObjectFilter::default(), &mut |n, _| {
        all.push(n);
        Ok(true)
    });
    let _ = db.for_each_volume(&mut |n, _| {
        all.push(n);
        Ok(true)
    });
    Error::NotFound {
        kind: "resource",
        name: name.to_string(),
        suggestion: crate::services::names::closest(name, all.iter().map(String::as_str)),
    }
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
