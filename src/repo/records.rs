//! The persistent metadata records kept in the catalog: objects (with their optional image
//! registration) and volumes. Services give them meaning; this module defines their shape and
//! the rules every record read from disk must meet before any of its values is used
//! ([`ObjectRecord::faults`], [`VolumeRecord::faults`]; the list is docs/FORMAT.md
//! "Invariants").

use crate::services::names::{
    ObjectName, check_display_name, check_printable, escape_control, validate_volume_name,
};
use crate::storage::MapId;
use crate::storage::map::MAX_RESOURCE_SIZE;
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

/// Largest epoch and version: 2^53 - 1, the largest integer every JSON reader holds exactly
/// (and far from overflowing when incremented).
pub const MAX_COUNTER: u64 = (1 << 53) - 1;

/// `value + 1` for the counter `what` (an object's version, a volume's epoch), refused once
/// it would pass [`MAX_COUNTER`], so arch never commits a record it would then refuse to read.
pub fn next_counter(what: &str, value: u64) -> crate::error::Result<u64> {
    value
        .checked_add(1)
        .filter(|v| *v <= MAX_COUNTER)
        .ok_or_else(|| {
            crate::error::Error::invalid(format!(
                "{what} {value} is the largest arch keeps ({MAX_COUNTER}); nothing was changed. \
                 Copy the data to a new name (a new object or volume starts at 1)"
            ))
        })
}

/// Statuses a volume record may have.
const VOLUME_STATUSES: &[&str] = &[
    crate::services::volumes::STATUS_AVAILABLE,
    crate::services::volumes::STATUS_CREATING,
];

/// Collects the reasons a record breaks the format, each naming the field and its value
/// (escaped: the value may come from a hostile file).
#[derive(Default)]
struct Faults(Vec<String>);

impl Faults {
    fn check(&mut self, ok: bool, reason: impl FnOnce() -> String) {
        if !ok {
            self.0.push(reason());
        }
    }

    fn uuid(&mut self, field: &str, value: &str) {
        self.check(is_uuid(value), || {
            format!(
                "{field} '{}' is not a uuid (36 characters: 8-4-4-4-12 lower-case hex digits)",
                escape_control(value)
            )
        });
    }

    fn size(&mut self, field: &str, value: u64) {
        self.check(value <= MAX_RESOURCE_SIZE, || {
            format!("{field} {value} exceeds the limit of {MAX_RESOURCE_SIZE} bytes (64 TiB)")
        });
    }

    fn block_size(&mut self, value: u32, repo_block_size: u32) {
        self.check(value == repo_block_size, || {
            format!("block_size {value} is not the repository's block size {repo_block_size}")
        });
    }

    fn counter(&mut self, field: &str, value: u64) {
        self.check((1..=MAX_COUNTER).contains(&value), || {
            format!("{field} {value} is outside 1..={MAX_COUNTER}")
        });
    }

    fn timestamp(&mut self, field: &str, value: &str) {
        self.check(humantime::parse_rfc3339(value).is_ok(), || {
            format!(
                "{field} '{}' is not an RFC 3339 UTC timestamp (e.g. 2026-01-31T12:00:00Z)",
                escape_control(value)
            )
        });
    }

    fn printable(&mut self, field: &str, value: &str) {
        if value.is_empty() {
            self.0.push(format!("{field} is empty"));
        } else if let Err(why) = check_printable(value) {
            self.0.push(format!(
                "{field} '{}' is invalid: {why}",
                escape_control(value)
            ));
        }
    }

    fn one_of(&mut self, field: &str, value: &str, allowed: &[&str]) {
        self.check(allowed.contains(&value), || {
            format!(
                "{field} '{}' is not one of {}",
                escape_control(value),
                allowed.join(", ")
            )
        });
    }
}

/// True for the textual form of a uuid as arch writes it: `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`
/// with lower-case hex digits. Such a string is a safe file-name component (no `/`, no `.`).
pub fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => matches!(b, b'0'..=b'9' | b'a'..=b'f'),
        })
}

/// True for 64 lower-case hex digits (a sha256 as text).
fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl ObjectRecord {
    /// Every rule of docs/FORMAT.md this record (stored under `name`) breaks, one precise
    /// reason each; empty when it is valid. `repo_block_size` is the repository's block size.
    /// Uniqueness of uuids is a property of the whole catalog, checked there.
    pub fn faults(&self, name: &str, repo_block_size: u32) -> Vec<String> {
        let mut f = Faults::default();
        if let Err(e) = ObjectName::split_valid(name) {
            f.0.push(invalid_name_reason(e));
        }
        f.uuid("uuid", &self.uuid);
        f.size("bytes", self.bytes);
        f.check(is_hex64(&self.hash), || {
            format!(
                "hash '{}' is not 64 lower-case hex digits",
                escape_control(&self.hash)
            )
        });
        f.block_size(self.block_size, repo_block_size);
        f.printable("content_type", &self.content_type);
        f.counter("version", self.version);
        f.timestamp("created", &self.created);
        f.timestamp("modified", &self.modified);
        for key in self.meta.keys() {
            f.check(
                crate::services::objects::validate_meta_key(key).is_ok(),
                || {
                    format!(
                        "metadata key '{}' is empty or holds `=` or a control character",
                        escape_control(key)
                    )
                },
            );
        }
        if let Some(image) = &self.image {
            image.faults_into(&mut f);
        }
        f.0
    }
}

impl ImageRecord {
    fn faults_into(&self, f: &mut Faults) {
        use crate::services::images::properties::{
            EXCLUDE_ALL_TASKS, canonical_value, normalize_key,
        };
        use crate::services::images::{CONTAINER_FORMATS, DISK_FORMATS, STATUSES};
        if let Err(why) = check_display_name(&self.name) {
            f.0.push(format!(
                "image name '{}' is invalid: {why}",
                escape_control(&self.name)
            ));
        }
        f.printable("image owner", &self.owner);
        f.one_of("image status", &self.status, STATUSES);
        f.one_of("image disk_format", &self.disk_format, DISK_FORMATS);
        f.one_of(
            "image container_format",
            &self.container_format,
            CONTAINER_FORMATS,
        );
        f.timestamp("image created_at", &self.created_at);
        f.timestamp("image updated_at", &self.updated_at);
        for (key, value) in &self.properties {
            f.check(normalize_key(key).is_ok_and(|k| &k == key), || {
                format!(
                    "image property key '{}' is not upper-case, or holds `=`, whitespace or a control character",
                    escape_control(key)
                )
            });
            // The values customization acts on (USERS, ROOT_PARTITION, booleans...) follow
            // the same rules as `image modify`, so a hand-edited value never silently
            // changes what a clone does.
            if let Err(e) = canonical_value(key, value) {
                f.0.push(escape_control(&e.to_string()).into_owned());
            }
        }
        let excluded = self.properties.get(EXCLUDE_ALL_TASKS).map(String::as_str) == Some("yes");
        f.check(self.is_snapshot == excluded, || {
            format!(
                "is_snapshot is {} but {EXCLUDE_ALL_TASKS} is {}set to yes (they go together)",
                self.is_snapshot,
                if excluded { "" } else { "not " }
            )
        });
    }
}

impl VolumeRecord {
    /// Every rule of docs/FORMAT.md and docs/VOLUMES.md this record (stored under `name`)
    /// breaks, one precise reason each; empty when it is valid. Only a record without faults
    /// may name a path (`volumes/<id>/<epoch>`) or divide by its block size.
    pub fn faults(&self, name: &str, repo_block_size: u32) -> Vec<String> {
        let mut f = Faults::default();
        if let Err(e) = validate_volume_name(name) {
            f.0.push(invalid_name_reason(e));
        }
        f.uuid("id", &self.id);
        f.size("size", self.size);
        f.block_size(self.block_size, repo_block_size);
        if let Some(source) = &self.source {
            let ok = source.split_once(':').is_some_and(|(kind, id)| {
                matches!(kind, "image" | "snapshot" | "object") && is_uuid(id)
            });
            f.check(ok, || {
                format!(
                    "source '{}' is not image:<uuid>, snapshot:<uuid> or object:<uuid>",
                    escape_control(source)
                )
            });
        }
        if let Some(object) = &self.source_object {
            f.check(ObjectName::split_valid(object).is_ok(), || {
                format!(
                    "source_object '{}' is not a valid object name",
                    escape_control(object)
                )
            });
        }
        f.counter("epoch", self.epoch);
        f.timestamp("created_at", &self.created_at);
        f.timestamp("modified_at", &self.modified_at);
        f.one_of("status", &self.status, VOLUME_STATUSES);
        for t in &self.customization {
            f.printable("customization task", &t.task);
            f.printable("customization status", &t.status);
        }
        if let Some(c) = &self.creation {
            f.check(self.status == "creating", || {
                format!(
                    "has a creation record but status '{}' (only a 'creating' volume has one)",
                    escape_control(&self.status)
                )
            });
            f.printable("creation host", &c.host);
            f.printable("creation operation", &c.operation);
            f.timestamp("creation started", &c.started);
            for o in &c.options {
                f.printable("creation option", o);
            }
        }
        f.0
    }
}

/// The reason part of a name error (the name itself is already in the record's label).
fn invalid_name_reason(e: crate::error::Error) -> String {
    match e {
        crate::error::Error::InvalidName { reason, .. } => format!("invalid name: {reason}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
pub(crate) mod tests;
