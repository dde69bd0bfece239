//! Rollback of a volume to a snapshot: the volume's content (and size) becomes the
//! snapshot's. Metadata and private-block deletion only: no block is copied.
//!
//! Crash safety: one catalog commit switches the volume's base map to the snapshot's map, its
//! size to the snapshot's and its epoch to a new, empty one (so none of its private blocks is
//! read any more); the old epoch directory is deleted after the commit (garbage for gc if a
//! crash comes first). Before the commit the volume reads as it did; after it, as the snapshot.

use super::{creating, find, served};
use crate::error::{Error, Result};
use crate::repo::Repository;
use crate::repo::records::next_counter;
use crate::services::images::{Among, resolve};
use crate::services::objects::load_map;
use crate::time::now_rfc3339;
use serde::Serialize;

/// What [`rollback`] did.
#[derive(Debug, Clone, Serialize)]
pub struct RollbackReport {
    pub volume: String,
    /// The snapshot object the volume now reads as.
    pub snapshot: String,
    pub old_size: u64,
    pub new_size: u64,
    /// Private blocks written since the last snapshot, now dropped.
    pub private_blocks_dropped: u64,
    /// The volume's epoch from now on.
    pub epoch: u64,
    /// True when the snapshot was not taken from this volume (allowed by `--force`).
    pub forced: bool,
}

/// Rolls volume `name` back to `snapshot` (an object name or image reference). Refused
/// unless the snapshot was taken from this volume (its `SOURCE_VOLUME_ID`), except with
/// `force`, which accepts any object of the repository's block size. Refused while the
/// volume is served read-write, being created, or in use by any other arch process (reader
/// or writer): it never waits for them.
pub fn rollback(
    repo: &Repository,
    name: &str,
    snapshot: &str,
    force: bool,
) -> Result<RollbackReport> {
    let cat = repo.catalog()?;
    let rec = find(&cat, name)?;
    let object = resolve(&cat, snapshot, Among::Resources)?;
    drop(cat);
    if rec.status == super::STATUS_CREATING {
        let running = creating::creator_running(repo, &rec.id)?;
        return Err(creating::refusal(name, &rec, running));
    }
    let id = rec.id.clone();
    let serve_guard = served::refuse_if_served(repo, name, &id)?;
    let _lock = repo
        .try_lock_volume_exclusive(&id)?
        .ok_or_else(|| Error::Busy {
            resource: format!("volume '{name}' (read, written or snapshot right now)"),
        })?;
    drop(serve_guard);
    let _data = repo.lock_data_shared()?;
    let old = find(&repo.catalog()?, name)?;
    let store = repo.private_store();
    let dropped = store
        .open_epoch(&id, old.epoch, old.block_size as u64, name)?
        .indexes()?
        .len() as u64;
    let (old_size, new_size, epoch, forced) = repo.transact(|cat| {
        let mut v = find(cat, name)?;
        if v.id != id || v.status == super::STATUS_CREATING {
            return Err(Error::Busy {
                resource: format!("volume '{name}' (replaced while waiting)"),
            });
        }
        let snap = cat.object(&object)?.ok_or_else(|| Error::NotFound {
            kind: "snapshot",
            name: object.clone(),
            suggestion: None,
        })?;
        let taken_from = snap
            .image
            .as_ref()
            .filter(|i| i.is_snapshot)
            .and_then(|i| i.properties.get("SOURCE_VOLUME_ID"));
        let ours = taken_from == Some(&v.id);
        if !ours && !force {
            let why = match taken_from {
                Some(other) => format!("it was taken from volume {other}"),
                None => "it is not a snapshot of a volume".into(),
            };
            return Err(Error::invalid(format!(
                "'{object}' was not taken from volume '{name}' ({why}); nothing was changed. \
                 Pass --force to give '{name}' its content anyway"
            )));
        }
        // The snapshot's map must be the one its record describes.
        load_map(repo, &object, &snap)?;
        let old_size = v.size;
        v.base_map = snap.map;
        v.size = snap.bytes;
        v.epoch = next_counter(&format!("epoch of volume {name}"), v.epoch)?;
        v.modified_at = now_rfc3339();
        cat.put_volume(name, &v)?;
        Ok((old_size, v.size, v.epoch, !ours))
    })?;
    // Nothing reads the old epoch any more.
    super::private::drop_retired_epoch(
        store.as_ref(),
        &id,
        old.epoch,
        &format!("rollback of {name}"),
    );
    Ok(RollbackReport {
        volume: name.to_string(),
        snapshot: object,
        old_size,
        new_size,
        private_blocks_dropped: dropped,
        epoch,
        forced,
    })
}
