//! Where a volume comes from and what was taken from it, by what those resources are now: its
//! source found by id (so a renamed source shows its new name and a removed one says so, never
//! another object that took the old name), and the snapshots whose `SOURCE_VOLUME_ID` is the
//! volume's id (so they follow a renamed volume too).

use crate::error::Result;
use crate::repo::Repository;
use crate::repo::db::Db;
use crate::repo::records::VolumeRecord;
use crate::services::images::{self, Kinds, ListFilter};
use serde::Serialize;

/// Image property naming the id of the volume a snapshot was taken from.
pub const SOURCE_VOLUME_ID: &str = "SOURCE_VOLUME_ID";

/// The source of a clone as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceNow {
    /// Imported, not cloned: no source.
    None,
    /// The source object is now named `name` (the clone-time name when it was not renamed).
    Present { name: String },
    /// The source object was removed (the volume keeps reading its blocks).
    Removed,
}

/// The uuid of a record's `source` (`object:<uuid>`, `image:<uuid>`, `snapshot:<uuid>`).
pub fn source_uuid(rec: &VolumeRecord) -> Option<&str> {
    rec.source.as_deref()?.split_once(':').map(|(_, id)| id)
}

/// Looks up the source of `rec` by its uuid.
pub fn source_now(cat: &Db, rec: &VolumeRecord) -> Result<SourceNow> {
    let Some(uuid) = source_uuid(rec) else {
        return Ok(SourceNow::None);
    };
    // The clone-time name first (one indexed lookup): the usual case.
    if let Some(name) = &rec.source_object {
        if cat.object(name)?.is_some_and(|o| o.uuid == uuid) {
            return Ok(SourceNow::Present { name: name.clone() });
        }
    }
    let mut found = None;
    // No image has an empty display name, so only the id range matches.
    cat.objects_by_id_or_display(uuid, "", &mut |name, o| {
        if o.uuid == uuid {
            found = Some(name);
            return Ok(false);
        }
        Ok(true)
    })?;
    Ok(match found {
        Some(name) => SourceNow::Present { name },
        None => SourceNow::Removed,
    })
}

/// A snapshot taken from a volume.
#[derive(Debug, Clone, Serialize)]
pub struct TakenSnapshot {
    /// The object `container/object`.
    pub object: String,
    /// Its image id.
    pub id: String,
    /// Whether it is still a Snapshot (false once marked as an Image).
    pub is_snapshot: bool,
    pub created_at: String,
}

/// The images and snapshots taken from volume `id`, in object-name order.
pub fn snapshots_of(repo: &Repository, id: &str) -> Result<Vec<TakenSnapshot>> {
    let filter = ListFilter {
        kinds: Kinds::All,
        properties: vec![(SOURCE_VOLUME_ID.into(), id.into())],
        status: None,
    };
    let mut out = Vec::new();
    images::list(repo, &filter, &mut |e| {
        out.push(TakenSnapshot {
            object: e.object,
            id: e.image.id,
            is_snapshot: e.image.is_snapshot,
            created_at: e.image.created_at,
        });
        Ok(())
    })?;
    Ok(out)
}

/// The volumes cloned from the object with uuid `uuid` (any version of it), in name order.
pub fn volumes_cloned_from(cat: &Db, uuid: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    cat.for_each_volume(&mut |name, rec| {
        if source_uuid(&rec) == Some(uuid) {
            out.push(name);
        }
        Ok(true)
    })?;
    Ok(out)
}
