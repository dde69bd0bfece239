//! What the catalog references: every map of every resource, and from them the set of live
//! blocks, kept as a sorted vector (32 bytes per block, no per-entry allocation).

use crate::error::Result;
use crate::repo::Repository;
use crate::repo::catalog::Catalog;
use crate::repo::db::Db;
use crate::storage::{BlockHash, BlockMap, MapId};
use std::collections::{BTreeMap, BTreeSet};

/// A resource that references a map: `object:<name>` or `volume:<name>`.
pub type ResourceName = String;

/// Every referenced map id, read in one pass of `catalog` (call it inside a read transaction
/// for a consistent view): the maps of every kept object version and of every volume, without
/// the resources holding them (memory grows with the distinct maps, not with the records): see [`holders`] for the few maps a report must name users of.
pub fn referenced_map_ids(catalog: &Db) -> Result<BTreeSet<MapId>> {
    let mut out = BTreeSet::new();
    catalog.for_each_map_reference(&mut |map, _| {
        out.insert(map);
        Ok(())
    })?;
    Ok(out)
}

/// The resources holding each map of `wanted` (one more pass over the references, keeping
/// only those).
pub fn holders(
    catalog: &Db,
    wanted: &BTreeSet<MapId>,
) -> Result<BTreeMap<MapId, Vec<ResourceName>>> {
    let mut out: BTreeMap<MapId, Vec<ResourceName>> = BTreeMap::new();
    catalog.for_each_map_reference(&mut |map, holder| {
        if wanted.contains(&map) {
            out.entry(map).or_default().push(holder);
        }
        Ok(())
    })?;
    Ok(out)
}

/// The volumes of `catalog` as an in-memory catalog without objects (for the volume scan).
pub fn volumes_only(catalog: &Db) -> Result<Catalog> {
    let mut out = Catalog::default();
    catalog.for_each_volume(&mut |name, rec| {
        out.volumes.insert(name, rec);
        Ok(true)
    })?;
    Ok(out)
}

/// A sorted, deduplicated set of block hashes.
#[derive(Default)]
pub struct HashSet32(Vec<BlockHash>);

impl HashSet32 {
    /// Builds the set from any hashes (zero hashes excluded: they are never stored).
    pub fn from_iter(hashes: impl IntoIterator<Item = BlockHash>) -> HashSet32 {
        let mut v: Vec<BlockHash> = hashes.into_iter().filter(|h| !h.is_zero()).collect();
        v.sort_unstable();
        v.dedup();
        HashSet32(v)
    }

    pub fn contains(&self, h: &BlockHash) -> bool {
        self.0.binary_search(h).is_ok()
    }
}

/// Maps that were read and decoded, with their ids.
pub type LoadedMaps = Vec<(MapId, BlockMap)>;

/// Loads each referenced map that is present and decodes; missing or damaged ones are
/// returned apart so callers can report them.
pub fn load_maps<'a>(
    repo: &Repository,
    maps: impl IntoIterator<Item = &'a MapId>,
) -> (LoadedMaps, Vec<(MapId, String)>) {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for id in maps {
        match repo.backend().read_map(id) {
            Ok(Some(m)) => ok.push((*id, m)),
            Ok(None) => bad.push((*id, "missing".to_string())),
            Err(e) => bad.push((*id, e.to_string())),
        }
    }
    (ok, bad)
}

/// The live blocks: every non-zero hash of every referenced, readable map.
pub fn live_blocks(maps: &[(MapId, BlockMap)]) -> HashSet32 {
    HashSet32::from_iter(
        maps.iter()
            .flat_map(|(_, m)| m.entries().iter().map(|e| e.1)),
    )
}

/// Lists the entries of `tmp/` (leftovers of interrupted operations, or in use right now).
pub fn temp_entries(repo: &Repository) -> Result<Vec<std::path::PathBuf>> {
    let dir = repo.tmp_dir();
    let mut out = Vec::new();
    match std::fs::read_dir(&dir) {
        Ok(entries) => {
            for e in entries.flatten() {
                out.push(e.path());
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(crate::Error::io("list", &dir, e)),
    }
    out.sort();
    Ok(out)
}
