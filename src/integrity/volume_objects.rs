//! The volumes' private blocks on an object store (`PREFIX/volumes/<id>/<epoch>/<index>`,
//! docs/VOLUMES.md "Private blocks on an object store"), classified against the catalog by
//! the rules [`super::volume_files`] applies to the local files: live, damaged or garbage.
//!
//! Streamed: the store's listing is read page by page (never the whole bucket in memory);
//! what is kept is what the local scan keeps, the live indexes of each volume, plus counts.
//! Garbage, when the caller asks, is deleted in batches as it is listed.
//!
//! Garbage (as on local disk):
//! - every object under an id no catalog record names: a removed volume (`volume rm` killed
//!   between its commit and its deletions), a receive killed before its commit, a name that
//!   is not a volume id at all;
//! - every object of an epoch other than the record's: left by a snapshot or a rollback
//!   killed between its commit (which moves the volume to the next epoch) and its deletion of
//!   the old epoch;
//! - in the current epoch, every object that is not a private block inside the volume: an
//!   index past the volume's end (a shrink killed after its commit), a name that is not a
//!   canonical index, a key deeper or shallower than `<id>/<epoch>/<index>`.
//!
//! A live object longer than a block is damage: reported, never deleted.
//!
//! Why deleting garbage is safe, the invariant local gc relies on (docs/VOLUMES.md
//! "Garbage"): every command that creates or writes private blocks holds the shared data
//! lock from before it creates the first one until the catalog names them (its commit) or
//! it has deleted them again; gc (and `fsck --repair`) take the exclusive data lock before
//! reading the catalog and hold it until the deletions are done. That lock is cross-host
//! when the catalog is in PostgreSQL (an advisory lock), so while gc lists, no writer runs on
//! any host: every object listed was made by a command that finished (its commit is in the
//! catalog gc read, so the object is live by the rules above) or that died or failed (its
//! objects are named by no committed record, or by an epoch the record has left). Objects
//! made later cannot exist before gc releases the lock. A store shared with another DIR
//! that has a catalog (and locks) of its own is the one case the lock cannot cover: gc is
//! refused there ([`crate::repo::check_sole_store_user`]), and fsck --repair keeps them.

use super::volume_files::VolumeScan;
use crate::error::Result;
use crate::repo::catalog::Catalog;
use crate::repo::records::VolumeRecord;
use crate::services::volumes::blockio::parse_block_index;
use crate::services::volumes::private::object::{ListedObject, ObjectPrivate};
use std::collections::{BTreeSet, HashMap};

/// Garbage keys deleted per round while the listing goes on (one DeleteObjects request).
const DELETE_BATCH: usize = 1000;

/// Adds the private objects of `store` to `out`, classified against `catalog`'s volumes.
/// Objects of the volumes in `keep_ids` are skipped (records fsck withheld as invalid: their
/// blocks are neither checked nor garbage). With `remove`, garbage is deleted as it is
/// listed: the caller holds the exclusive data lock (see the module documentation).
pub fn scan(
    store: &ObjectPrivate,
    catalog: &Catalog,
    keep_ids: &BTreeSet<String>,
    remove: bool,
    out: &mut VolumeScan,
) -> Result<()> {
    let by_id: HashMap<&str, (&String, &VolumeRecord)> = catalog
        .volumes
        .iter()
        .map(|(name, v)| (v.id.as_str(), (name, v)))
        .collect();
    let mut doomed = Vec::new();
    store.for_each_object(&mut |obj| {
        let id = obj.parts.first().map_or("", String::as_str);
        if keep_ids.contains(id) {
            return Ok(());
        }
        if let Some((name, rec)) = by_id.get(id)
            && let Some(index) = block_index(&obj, rec)
        {
            let name = (*name).clone();
            if obj.size > rec.block_size as u64 {
                let reason = format!(
                    "private block {index} is {} bytes, longer than a block of {}",
                    obj.size, rec.block_size
                );
                out.damaged.push((name, obj.location, reason));
            } else {
                let live = out.private.entry(name).or_default();
                live.indexes.insert(index);
                live.bytes += obj.size;
            }
            return Ok(());
        }
        out.garbage_objects += 1;
        out.garbage_bytes += obj.size;
        if remove {
            doomed.push(obj.key);
            if doomed.len() >= DELETE_BATCH {
                store.delete_objects(std::mem::take(&mut doomed))?;
            }
        }
        Ok(())
    })?;
    store.delete_objects(doomed)
}

/// The index of the private block `obj` is for volume `rec`: its key is
/// `<id>/<current epoch>/<canonical index inside the volume>`. None: not a block it reads.
fn block_index(obj: &ListedObject, rec: &VolumeRecord) -> Option<u64> {
    let [_, epoch, index] = obj.parts.as_slice() else {
        return None;
    };
    if *epoch != rec.epoch.to_string() {
        return None;
    }
    let blocks = rec.size.div_ceil(rec.block_size as u64);
    parse_block_index(index).filter(|i| *i < blocks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;
    use object_store::path::Path as Key;
    use std::sync::Arc;

    const ID: &str = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9";
    const GONE: &str = "11111111-2222-4333-8444-555555555555";

    fn volume(epoch: u64, size: u64) -> VolumeRecord {
        let mut rec = crate::repo::records::tests::volume();
        rec.id = ID.into();
        rec.epoch = epoch;
        rec.size = size;
        rec.block_size = 4096;
        rec
    }

    fn store(rt: &tokio::runtime::Runtime, keys: &[(&str, usize)]) -> ObjectPrivate {
        let mem = Arc::new(InMemory::new());
        for (key, len) in keys {
            let path = Key::parse(format!("pre/volumes/{key}")).unwrap();
            rt.block_on(mem.put(&path, vec![7u8; *len].into())).unwrap();
        }
        ObjectPrivate::new(mem, Key::from("pre"), rt.handle().clone(), "s3://b/pre")
    }

    fn listed(s: &ObjectPrivate) -> Vec<String> {
        let mut out = Vec::new();
        s.for_each_object(&mut |o| {
            out.push(o.parts.join("/"));
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn objects_are_live_damaged_or_garbage_by_the_local_rules() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let keys = [
            (format!("{ID}/3/0"), 4096),
            (format!("{ID}/3/2"), 10),
            (format!("{ID}/3/1"), 4097),   // longer than a block: damage
            (format!("{ID}/3/4"), 1),      // past the end of a 4-block volume
            (format!("{ID}/3/01"), 1),     // not a canonical index
            (format!("{ID}/3/2/x"), 1),    // deeper than a block
            (format!("{ID}/2/0"), 100),    // an old epoch
            (format!("{ID}/3"), 1),        // an epoch that is an object
            (format!("{GONE}/1/0"), 1000), // a removed volume
            ("not-an-id/1/0".to_string(), 5),
        ];
        let keys: Vec<(&str, usize)> = keys.iter().map(|(k, l)| (k.as_str(), *l)).collect();
        let s = store(&rt, &keys);
        let mut catalog = Catalog::default();
        catalog.volumes.insert("vm".into(), volume(3, 4 * 4096 - 5));
        let mut out = VolumeScan::default();
        scan(&s, &catalog, &BTreeSet::new(), false, &mut out).unwrap();
        let live = &out.private["vm"];
        assert_eq!(live.indexes.iter().copied().collect::<Vec<_>>(), [0, 2]);
        assert_eq!(live.bytes, 4106);
        assert_eq!(out.damaged.len(), 1);
        assert_eq!(
            out.damaged[0].1,
            std::path::PathBuf::from(format!("s3://b/pre/volumes/{ID}/3/1"))
        );
        assert_eq!(out.garbage_objects, 7);
        assert_eq!(out.garbage_bytes, 1 + 1 + 1 + 100 + 1 + 1000 + 5);
        assert_eq!(listed(&s).len(), keys.len(), "a scan alone deletes nothing");

        // A withheld volume's objects are neither live nor garbage.
        let mut kept = VolumeScan::default();
        let withheld = BTreeSet::from([GONE.to_string()]);
        scan(&s, &catalog, &withheld, false, &mut kept).unwrap();
        assert_eq!(kept.garbage_objects, 6);

        // Removing deletes exactly the garbage; a second pass finds none.
        let mut removed = VolumeScan::default();
        scan(&s, &catalog, &BTreeSet::new(), true, &mut removed).unwrap();
        assert_eq!(removed.garbage_objects, 7);
        let mut left = listed(&s);
        left.sort();
        let mut want = vec![
            format!("{ID}/3/0"),
            format!("{ID}/3/1"),
            format!("{ID}/3/2"),
        ];
        want.sort();
        assert_eq!(left, want);
        let mut again = VolumeScan::default();
        scan(&s, &catalog, &BTreeSet::new(), true, &mut again).unwrap();
        assert_eq!((again.garbage_objects, again.garbage_bytes), (0, 0));
    }

    #[test]
    fn garbage_is_deleted_in_batches_while_the_listing_goes_on() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let n = DELETE_BATCH * 2 + 17;
        let keys: Vec<String> = (0..n).map(|i| format!("{GONE}/1/{i}")).collect();
        let keys: Vec<(&str, usize)> = keys.iter().map(|k| (k.as_str(), 3)).collect();
        let s = store(&rt, &keys);
        let mut out = VolumeScan::default();
        scan(&s, &Catalog::default(), &BTreeSet::new(), true, &mut out).unwrap();
        assert_eq!(out.garbage_objects, n as u64);
        assert_eq!(out.garbage_bytes, 3 * n as u64);
        assert!(listed(&s).is_empty());
        assert_eq!(
            s.traffic()
                .deletes
                .load(std::sync::atomic::Ordering::Relaxed),
            n as u64
        );
    }
}
