//! Snapshot of a volume: its private blocks are hashed into the content-addressed store, a new
//! map freezes the volume's content as a new object registered as a Snapshot, and the volume
//! moves to a new epoch so its next write to any block is copy-on-write again.
//!
//! Crash safety: blocks (one batch), then the map, are durable before the single catalog
//! commit that adds the object and switches the volume to the new map and epoch. Until that
//! commit the volume still reads its old epoch; after it, the old epoch directory is garbage,
//! removed at once (or by gc after a crash).

use super::{OpenVolume, open, served};
use crate::error::{Error, Result};
use crate::repo::Repository;
use crate::repo::records::{ImageRecord, ObjectRecord};
use crate::services::images::properties::{EXCLUDE_ALL_TASKS, SOURCE_VOLUME};
use crate::services::images::{self, CONTAINER_FORMATS, DISK_FORMATS, current_owner};
use crate::services::names::ObjectName;
use crate::services::objects::{DEFAULT_CONTENT_TYPE, new_uuid};
use crate::storage::ingest::worker_threads;
use crate::storage::{BlockHash, BlockMap};
use crate::time::now_rfc3339;
use serde::Serialize;
use std::sync::Mutex;

/// What [`snapshot`] did.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SnapshotReport {
    pub volume: String,
    /// The new object `container/name`.
    pub object: String,
    /// Image id of the snapshot (= the object's uuid).
    pub id: String,
    pub bytes: u64,
    pub hash: String,
    /// Private blocks hashed (those written since the last snapshot).
    pub blocks_hashed: u64,
    /// Of those, blocks new to the store (the rest were deduplicated).
    pub blocks_stored: u64,
    /// The volume's epoch from now on.
    pub epoch: u64,
}

/// Freezes volume `name` as object `container/snapshot_name`, registered as a Snapshot whose
/// properties name the source volume (and carry the source image's properties). A volume
/// served read-write is snapshot by its server (see [`served::snapshot_by_server`]).
pub fn snapshot(repo: &Repository, name: &str, target: &ObjectName) -> Result<SnapshotReport> {
    let id = super::find(&repo.catalog()?, name)?.id;
    if let Some(server) = served::server_of(repo, &id)? {
        return served::snapshot_by_server(&server, name, target);
    }
    let vol = open(repo, name, true)?;
    snapshot_open(repo, &vol, target)
}

/// [`snapshot`] of a volume the caller holds open for writing (exclusively, or as its server
/// with every write of it finished and flushed).
pub(super) fn snapshot_open(
    repo: &Repository,
    vol: &OpenVolume,
    target: &ObjectName,
) -> Result<SnapshotReport> {
    let name = vol.name.as_str();
    let full = target.full();
    let exists = |cat: &crate::repo::db::Db| -> Result<Option<Error>> {
        Ok(cat.has_object(&full)?.then(|| Error::AlreadyExists {
            kind: "object",
            name: full.clone(),
            fix: "choose another snapshot name".into(),
        }))
    };
    if let Some(e) = exists(&repo.catalog()?)? {
        return Err(e);
    }
    let rec = vol.record.clone();
    let bs = rec.block_size as u64;
    let private = vol.live_private()?;

    // The snapshot's data blocks: the base's, overridden by the private ones (sorted below).
    let mut entries: std::collections::BTreeMap<u64, BlockHash> =
        vol.base_entries().iter().copied().collect();
    let batch = repo.backend().begin_batch()?;
    let stored = Mutex::new(0u64);
    let next = Mutex::new(0usize);
    let results = Mutex::new(Vec::with_capacity(private.len()));
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..worker_threads().min(private.len().max(1)))
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    let mut buf = Vec::new();
                    loop {
                        crate::interrupt::check()?;
                        let i = {
                            let mut n = next.lock().unwrap();
                            let i = *n;
                            *n += 1;
                            i
                        };
                        let Some(&index) = private.get(i) else {
                            return Ok(());
                        };
                        vol.blocks.read_private(index, &mut buf)?;
                        // Only the bytes inside the volume belong to the snapshot.
                        let len = (rec.size - index * bs).min(bs) as usize;
                        let data = crate::storage::hash::strip_trailing_zeros(&buf[..len]);
                        let hash = BlockHash::of_bytes(data);
                        if !hash.is_zero() && batch.stage(&hash, data)? {
                            *stored.lock().unwrap() += 1;
                        }
                        results.lock().unwrap().push((index, hash));
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("hash worker panicked")?;
        }
        Ok(())
    })?;
    batch.commit()?;
    for (index, hash) in results.into_inner().unwrap() {
        entries.insert(index, hash);
    }
    let map = BlockMap::from_entries(rec.block_size, rec.size, entries.into_iter().collect())
        .map_err(|e| Error::invalid(format!("snapshot of volume '{name}': {e}")))?;
    let map_id = repo.backend().put_map(&map)?;
    let hash = map.top_hash().to_hex();
    let now = now_rfc3339();
    let (id, epoch) = repo.transact(|cat| {
        if let Some(e) = exists(cat)? {
            return Err(e);
        }
        let source = match &rec.source_object {
            Some(o) => cat.object(o)?,
            None => None,
        };
        let mut properties = source
            .and_then(|o| o.image)
            .map(|i| i.properties)
            .unwrap_or_default();
        properties.insert(SOURCE_VOLUME.into(), name.to_string());
        properties.insert(super::lineage::SOURCE_VOLUME_ID.into(), rec.id.clone());
        properties.insert(EXCLUDE_ALL_TASKS.into(), "yes".into());
        let uuid = new_uuid();
        cat.put_object(
            &full,
            &ObjectRecord {
                uuid: uuid.clone(),
                bytes: rec.size,
                hash: hash.clone(),
                map: map_id,
                block_size: rec.block_size,
                content_type: DEFAULT_CONTENT_TYPE.into(),
                version: 1,
                created: now.clone(),
                modified: now.clone(),
                meta: Default::default(),
                image: Some(ImageRecord {
                    name: target.object.clone(),
                    owner: current_owner(),
                    status: images::STATUS_AVAILABLE.into(),
                    disk_format: DISK_FORMATS[0].into(),
                    container_format: CONTAINER_FORMATS[3].into(),
                    is_public: false,
                    is_snapshot: true,
                    created_at: now.clone(),
                    updated_at: now.clone(),
                    properties,
                }),
            },
        )?;
        let mut v = super::find(cat, name)?;
        let epoch =
            crate::repo::records::next_counter(&format!("epoch of volume {name}"), v.epoch)?;
        v.base_map = map_id;
        v.epoch = epoch;
        v.modified_at = now.clone();
        cat.put_volume(name, &v)?;
        Ok((uuid, v.epoch))
    })?;
    // The old epoch is now garbage: nothing reads it any more.
    super::private::drop_retired_epoch(
        repo.private_store().as_ref(),
        &rec.id,
        rec.epoch,
        &format!("snapshot {full}"),
    );
    Ok(SnapshotReport {
        volume: name.to_string(),
        object: full,
        id,
        bytes: rec.size,
        hash,
        blocks_hashed: private.len() as u64,
        blocks_stored: stored.into_inner().unwrap(),
        epoch,
    })
}
