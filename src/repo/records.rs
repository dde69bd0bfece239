//! The persistent metadata records kept in the catalog: objects (with their optional image
//! registration) and volumes. Services give them meaning; this module only defines their shape.

use crate::storage::MapId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A read-only resource as the object service sees it.
///
/// Invariants: `map` names a stored map whose size is `bytes` and whose top hash is `hash`;
/// `uuid` is unique among objects and is kept on overwrite and move.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ObjectRecord {
    pub uuid: String,
    pub bytes: u64,
    /// Pithos object hash (hex).
    pub hash: String,
    pub map: MapId,
    pub block_size: u32,
    pub content_type: String,
    /// 1 on create; +1 each time the data is replaced.
    pub version: u64,
    /// RFC 3339 UTC.
    pub created: String,
    /// RFC 3339 UTC; changes with data or metadata.
    pub modified: String,
    /// User metadata (free key/value pairs).
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    /// Image-service metadata; present when the object is registered as an Image or Snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageRecord>,
}

/// Image-service (Glance/Plankton) metadata of an object. Id, size and checksum are not stored:
/// they are the object's uuid, bytes and hash, so they can never disagree with the data.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageRecord {
    /// Display name.
    pub name: String,
    pub owner: String,
    /// SAVING | AVAILABLE | ERROR (images), CREATING | AVAILABLE | ERROR (snapshots).
    pub status: String,
    /// diskdump | extdump | ntfsdump.
    pub disk_format: String,
    /// aki | ari | ami | bare | ovf.
    pub container_format: String,
    pub is_public: bool,
    /// The snapshot marker (set together with the EXCLUDE_ALL_TASKS=yes property).
    pub is_snapshot: bool,
    pub created_at: String,
    pub updated_at: String,
    /// Properties, keys upper-case.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// A read-write thin copy-on-write clone of a read-only resource.
///
/// Its content at block `i` is: the private block file `volumes/<id>/<epoch>/<i>` when it
/// exists, else block `i` of `base_map` (zeros past the map's end). Invariants: `base_map` is
/// an immutable stored map with at most `ceil(size / block_size)` blocks, none of them holding
/// data at or past `size`; private files of other epochs, or at indexes past the end, are
/// garbage that no read consults.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VolumeRecord {
    /// Random uuid; names the volume's private directory, so it never changes.
    pub id: String,
    pub size: u64,
    pub block_size: u32,
    /// `image:<id>` | `snapshot:<id>` | `object:<uuid>`; None for an imported volume.
    pub source: Option<String>,
    /// The source object's name at clone time (informational; the object may move or go).
    pub source_object: Option<String>,
    /// The immutable map the volume reads through where it has no private block.
    pub base_map: MapId,
    /// Private blocks live under the current epoch; each snapshot starts a new one.
    pub epoch: u64,
    pub created_at: String,
    pub modified_at: String,
    /// `available`, or `creating` while a clone is being customized (see `creation`).
    pub status: String,
    /// Customization tasks run when the volume was cloned or customized, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub customization: Vec<TaskRecord>,
    /// Present exactly while `status` is `creating`: who is creating the volume. The creator
    /// holds the volume lock exclusively the whole time, so a free lock means it is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation: Option<CreationRecord>,
}

/// The process creating a volume, for messages and for finishing it after a crash. The
/// customization options are recorded by name only: their values (a password above all) are
/// never stored, so finishing a crashed creation needs them given again.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CreationRecord {
    pub pid: u32,
    pub host: String,
    /// RFC 3339 UTC.
    pub started: String,
    /// What is being done, e.g. `clone of images/debian.raw`.
    pub operation: String,
    /// The customization options that were given, e.g. `["--hostname", "--ssh-key"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// What happened to one customization task.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TaskRecord {
    pub task: String,
    /// `ran` | `excluded` | `skipped`.
    pub status: String,
    pub detail: String,
}
