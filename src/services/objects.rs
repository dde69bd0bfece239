//! The object service (Swift/Pithos semantics): put, get, list, info, metadata, copy, move,
//! remove and the Pithos hashmap of `container/object` resources.

use super::images::{ImageView, image_view, resource_kind};
use super::names::{ObjectName, closest};
use super::versions::find_at;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::repo::db::{Db, ObjectFilter};
use crate::repo::records::ObjectRecord;
use crate::repo::records::next_counter;
use crate::storage::export::{Sink, export};
use crate::storage::ingest::{Source, ingest};
use crate::storage::{BlockMap, MapId};
use crate::time::now_rfc3339;
use serde::Serialize;
use std::collections::BTreeMap;

/// Content type when none is given.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// Options of [`put`].
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    pub content_type: Option<String>,
    pub meta: Vec<(String, String)>,
}

/// What [`put`] did.
#[derive(Debug, Clone, Serialize)]
pub struct PutReport {
    pub name: String,
    pub uuid: String,
    pub version: u64,
    pub bytes: u64,
    pub hash: String,
    pub blocks: u64,
    /// Blocks that were new to the store and written.
    pub blocks_written: u64,
    pub bytes_written: u64,
    pub zero_blocks: u64,
    /// False when an existing object was replaced.
    pub created: bool,
    /// What the put replaced, when the object existed: the uuid, creation time and image
    /// registration are kept; data, content type and user metadata are replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced: Option<Replaced>,
}

/// The version a put over an existing object replaced (it stays in the history).
#[derive(Debug, Clone, Serialize)]
pub struct Replaced {
    pub version: u64,
    pub hash: String,
    pub content_type: String,
    /// The user metadata keys it had (replaced by the put's `--meta`).
    pub meta_keys: Vec<String>,
    /// `image` or `snapshot` when the object is registered (the registration is kept).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registered_as: Option<String>,
}

/// Full description of an object (`arch info`).
#[derive(Debug, Clone, Serialize)]
pub struct ObjectInfo {
    pub name: String,
    pub container: String,
    pub object: String,
    /// object | image | snapshot.
    pub kind: String,
    pub uuid: String,
    pub bytes: u64,
    pub hash: String,
    pub block_size: u32,
    pub blocks: u64,
    pub content_type: String,
    pub version: u64,
    pub created: String,
    pub modified: String,
    pub meta: BTreeMap<String, String>,
    /// Written by `cmd::json::Object` in the image shape shared with `image info`.
    #[serde(skip)]
    pub image: Option<ImageView>,
}

/// A container and what it holds.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerEntry {
    pub name: String,
    pub count: u64,
    pub bytes: u64,
}

/// One object in a listing.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectEntry {
    pub name: String,
    pub kind: String,
    pub bytes: u64,
    pub hash: String,
    pub content_type: String,
    pub modified: String,
    pub uuid: String,
}

/// The Pithos hashmap document, field for field as kamaki prints it
/// (`block_hash`, `block_size`, `bytes`, `hashes`). Serializing it streams the hashes, zero
/// blocks included, one at a time: no list of every hash is built in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashmap {
    pub block_hash: String,
    pub map: BlockMap,
}

impl Serialize for Hashmap {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        struct Hashes<'a>(&'a BlockMap);
        impl Serialize for Hashes<'_> {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                s.collect_seq(self.0.all_hashes().map(|h| h.to_hex()))
            }
        }
        let mut st = s.serialize_struct("Hashmap", 4)?;
        st.serialize_field("block_hash", &self.block_hash)?;
        st.serialize_field("block_size", &self.map.block_size())?;
        st.serialize_field("bytes", &self.map.size())?;
        st.serialize_field("hashes", &Hashes(&self.map))?;
        st.end()
    }
}

/// Validates a metadata key (non-empty, no `=`, no control character).
pub fn validate_meta_key(key: &str) -> Result<()> {
    if key.is_empty() || key.contains('=') || key.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "invalid metadata key '{}': keys are non-empty and contain no `=` or control character",
            super::names::escape_control(key)
        )));
    }
    Ok(())
}

/// Validates a content type: printable text (no control character, no edge whitespace).
pub fn validate_content_type(value: &str) -> Result<()> {
    let reason = if value.is_empty() {
        "it is empty".to_string()
    } else if let Err(why) = super::names::check_printable(value) {
        why
    } else {
        return Ok(());
    };
    Err(Error::invalid(format!(
        "invalid content type '{}': {reason}; e.g. application/octet-stream",
        super::names::escape_control(value)
    )))
}

/// Looks up an object, with a closest-name suggestion when it is missing.
pub fn find(catalog: &Db, name: &ObjectName) -> Result<ObjectRecord> {
    let full = name.full();
    match catalog.object(&full)? {
        Some(rec) => Ok(rec),
        None => Err(not_found(catalog, &full)?),
    }
}

/// Most names a not-found suggestion is chosen among (from the same container).
const SUGGESTION_CANDIDATES: usize = 10_000;

fn not_found(catalog: &Db, full: &str) -> Result<Error> {
    let mut names = Vec::new();
    let filter = ObjectFilter {
        container: full.split_once('/').map(|(c, _)| c.to_string()),
        ..Default::default()
    };
    catalog.for_each_object(&filter, &mut |n, _| {
        names.push(n);
        Ok(names.len() < SUGGESTION_CANDIDATES)
    })?;
    Ok(Error::NotFound {
        kind: "object",
        name: full.to_string(),
        suggestion: closest(full, names.iter().map(String::as_str)),
    })
}

/// Imports `source` as object `name`. Over an existing object: replaces data, content type
/// and user metadata; keeps uuid, creation time and image registration; bumps the version.
///
/// Crash safety: blocks, then the map, are durable before the catalog names them; the catalog
/// switches to the new version in one atomic rename, so a reader sees the old or new version.
pub fn put(
    repo: &Repository,
    source: Source,
    name: &ObjectName,
    opts: &PutOptions,
    progress: &dyn Progress,
) -> Result<PutReport> {
    for (k, _) in &opts.meta {
        validate_meta_key(k)?;
    }
    if let Some(ct) = &opts.content_type {
        validate_content_type(ct)?;
    }
    // A damaged catalog refuses the put before any block is written (the commit would
    // refuse it after, leaving blocks that gc cannot collect until the catalog is fixed).
    if let Some(p) = repo.catalog()?.object(&name.full())? {
        next_counter(&format!("version of {}", p.uuid), p.version)?;
    }
    let _data = repo.lock_data_shared()?;
    let ingested = ingest(repo.backend(), repo.block_size(), source, progress)?;
    progress.finish();
    let full = name.full();
    let now = now_rfc3339();
    let meta: BTreeMap<String, String> = opts
        .meta
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .cloned()
        .collect();
    let hash = ingested.map.top_hash().to_hex();
    let (uuid, version, replaced) = repo.transact(|cat| {
        let previous = cat.object(&full)?;
        let record = ObjectRecord {
            uuid: previous
                .as_ref()
                .map(|p| p.uuid.clone())
                .unwrap_or_else(new_uuid),
            bytes: ingested.map.size(),
            hash: hash.clone(),
            map: ingested.map_id,
            block_size: repo.block_size(),
            content_type: opts
                .content_type
                .clone()
                .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.into()),
            version: match &previous {
                Some(p) => next_counter(&format!("version of {}", p.uuid), p.version)?,
                None => 1,
            },
            created: previous
                .as_ref()
                .map_or_else(|| now.clone(), |p| p.created.clone()),
            modified: now.clone(),
            meta: meta.clone(),
            image: previous.as_ref().and_then(|p| p.image.clone()),
        };
        let replaced = previous.as_ref().map(|p| Replaced {
            version: p.version,
            hash: p.hash.clone(),
            content_type: p.content_type.clone(),
            meta_keys: p.meta.keys().cloned().collect(),
            registered_as: p
                .image
                .as_ref()
                .map(|i| if i.is_snapshot { "snapshot" } else { "image" }.to_string()),
        });
        let out = (record.uuid.clone(), record.version, replaced);
        cat.put_object(&full, &record)?;
        Ok(out)
    })?;
    Ok(PutReport {
        name: full,
        uuid,
        version,
        bytes: ingested.map.size(),
        hash,
        blocks: ingested.map.block_count(),
        blocks_written: ingested.blocks_written,
        bytes_written: ingested.bytes_written,
        zero_blocks: ingested.zero_blocks,
        created: replaced.is_none(),
        replaced,
    })
}

/// Reads the map of an object record, refused as damage unless it is the map the record
/// describes: its size, block size and object hash are the record's (a map is
/// self-verifying, but a damaged record could name another valid map). O(data blocks).
pub fn load_map(repo: &Repository, full: &str, rec: &ObjectRecord) -> Result<BlockMap> {
    let map = read_map_of(repo, full, &rec.map)?;
    let mismatch = if map.size() != rec.bytes {
        Some(format!("{} bytes, the record {}", map.size(), rec.bytes))
    } else if map.block_size() != rec.block_size {
        Some(format!(
            "blocks of {}, the record {}",
            map.block_size(),
            rec.block_size
        ))
    } else {
        let top = map.top_hash().to_hex();
        (top != rec.hash).then(|| format!("object hash {top}, the record {}", rec.hash))
    };
    match mismatch {
        None => Ok(map),
        Some(what) => Err(Error::Corrupt {
            path: repo.backend().map_location(&rec.map),
            reason: format!(
                "map {} of {full} does not match its record ({what})",
                rec.map
            ),
        }),
    }
}

/// Reads a map that `resource` references; a missing map is repository damage.
pub fn read_map_of(repo: &Repository, resource: &str, id: &MapId) -> Result<BlockMap> {
    repo.backend().read_map(id)?.ok_or_else(|| Error::Corrupt {
        path: repo.backend().map_location(id),
        reason: format!("map of {resource} is missing"),
    })
}

/// What [`get`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct GetReport {
    pub name: String,
    pub bytes: u64,
    pub hash: String,
    pub verified: bool,
}

/// Writes the content of object `name` to `sink`, verifying every block unless `verify` is
/// false.
pub fn get(
    repo: &Repository,
    name: &ObjectName,
    version: Option<u64>,
    sink: Sink<'_>,
    verify: bool,
    progress: &dyn Progress,
) -> Result<GetReport> {
    // Lock before reading the catalog, so gc cannot drop blocks of the version we read.
    let _data = repo.lock_data_shared()?;
    let rec = find_at(&repo.catalog()?, name, version)?;
    let full = name.full();
    let map = load_map(repo, &full, &rec)?;
    progress.set_total(map.size());
    export(repo.backend(), &map, &full, verify, sink, progress)?;
    progress.finish();
    Ok(GetReport {
        name: full,
        bytes: rec.bytes,
        hash: rec.hash.clone(),
        verified: verify,
    })
}

/// Containers with their object counts and sizes (containers exist while they hold objects).
pub fn list_containers(repo: &Repository) -> Result<Vec<ContainerEntry>> {
    let catalog = repo.catalog()?;
    let mut out: BTreeMap<String, ContainerEntry> = BTreeMap::new();
    catalog.for_each_object(&ObjectFilter::default(), &mut |full, rec| {
        let container = full.split('/').next().unwrap_or_default().to_string();
        let e = out.entry(container.clone()).or_insert(ContainerEntry {
            name: container,
            count: 0,
            bytes: 0,
        });
        e.count += 1;
        e.bytes += rec.bytes;
        Ok(true)
    })?;
    Ok(out.into_values().collect())
}

/// Describes one object.
pub fn info(repo: &Repository, name: &ObjectName, version: Option<u64>) -> Result<ObjectInfo> {
    let rec = find_at(&repo.catalog()?, name, version)?;
    Ok(describe(name, &rec))
}

/// The [`ObjectInfo`] of a record.
pub fn describe(name: &ObjectName, rec: &ObjectRecord) -> ObjectInfo {
    let full = name.full();
    ObjectInfo {
        kind: resource_kind(rec).into(),
        image: image_view(&full, rec),
        name: full,
        container: name.container.clone(),
        object: name.object.clone(),
        uuid: rec.uuid.clone(),
        bytes: rec.bytes,
        hash: rec.hash.clone(),
        block_size: rec.block_size,
        blocks: rec.bytes.div_ceil(rec.block_size as u64),
        content_type: rec.content_type.clone(),
        version: rec.version,
        created: rec.created.clone(),
        modified: rec.modified.clone(),
        meta: rec.meta.clone(),
    }
}

/// Sets (empty value: deletes) and unsets user metadata; returns the resulting metadata.
pub fn update_meta(
    repo: &Repository,
    name: &ObjectName,
    set: &[(String, String)],
    unset: &[String],
) -> Result<BTreeMap<String, String>> {
    for (k, _) in set {
        validate_meta_key(k)?;
    }
    for k in unset {
        validate_meta_key(k)?;
    }
    repo.transact(|cat| {
        let full = name.full();
        let mut rec = find(cat, name)?;
        if set.is_empty() && unset.is_empty() {
            return Ok(rec.meta.clone());
        }
        for (k, v) in set {
            if v.is_empty() {
                rec.meta.remove(k);
            } else {
                rec.meta.insert(k.clone(), v.clone());
            }
        }
        for k in unset {
            rec.meta.remove(k);
        }
        rec.modified = now_rfc3339();
        cat.put_object(&full, &rec)?;
        Ok(rec.meta)
    })
}

/// What [`copy`] or [`rename`] did.
#[derive(Debug, Clone, Serialize)]
pub struct TransferReport {
    pub source: String,
    pub destination: String,
    pub uuid: String,
    pub bytes: u64,
    pub hash: String,
    /// True when an existing destination was replaced (`--force`).
    pub replaced: bool,
}

fn check_destination(cat: &Db, dst: &str, force: bool, verb: &str) -> Result<bool> {
    let exists = cat.has_object(dst)?;
    if exists && !force {
        return Err(Error::AlreadyExists {
            kind: "object",
            name: dst.to_string(),
            fix: format!("pass --force to {verb} over it, or choose another name"),
        });
    }
    Ok(exists)
}

/// Copies `src` to `dst` by sharing its map: no block and no map is written.
///
/// A new destination gets a new uuid and no image registration. Copying over an existing
/// destination (`force`) is an overwrite of it: the destination keeps its uuid and image
/// registration and its version is bumped, as with `put`.
pub fn copy(
    repo: &Repository,
    src: &ObjectName,
    version: Option<u64>,
    dst: &ObjectName,
    force: bool,
) -> Result<TransferReport> {
    let (s, d) = (src.full(), dst.full());
    repo.transact(|cat| {
        let source = find_at(cat, src, version)?;
        if s == d {
            return Err(Error::invalid(format!(
                "source and destination are both '{s}'; choose another destination"
            )));
        }
        let replaced = check_destination(cat, &d, force, "copy")?;
        let now = now_rfc3339();
        let previous = cat.object(&d)?;
        let record = ObjectRecord {
            uuid: previous.as_ref().map_or_else(new_uuid, |p| p.uuid.clone()),
            version: match &previous {
                Some(p) => next_counter(&format!("version of {}", p.uuid), p.version)?,
                None => 1,
            },
            created: previous
                .as_ref()
                .map_or_else(|| now.clone(), |p| p.created.clone()),
            modified: now,
            image: previous.and_then(|p| p.image),
            ..source
        };
        let report = TransferReport {
            source: s.clone(),
            destination: d.clone(),
            uuid: record.uuid.clone(),
            bytes: record.bytes,
            hash: record.hash.clone(),
            replaced,
        };
        cat.put_object(&d, &record)?;
        Ok(report)
    })
}

/// Renames `src` to `dst`, keeping its uuid and image registration. With `force`, an existing
/// destination is replaced (its record is dropped; its blocks are left to gc).
pub fn rename(
    repo: &Repository,
    src: &ObjectName,
    dst: &ObjectName,
    force: bool,
) -> Result<TransferReport> {
    let (s, d) = (src.full(), dst.full());
    repo.transact(|cat| {
        find(cat, src)?;
        if s == d {
            return Err(Error::invalid(format!(
                "source and destination are both '{s}'; choose another destination"
            )));
        }
        let replaced = check_destination(cat, &d, force, "move")?;
        let mut record = find(cat, src)?;
        cat.rename_object(&s, &d)?;
        record.modified = now_rfc3339();
        let report = TransferReport {
            source: s.clone(),
            destination: d.clone(),
            uuid: record.uuid.clone(),
            bytes: record.bytes,
            hash: record.hash.clone(),
            replaced,
        };
        cat.put_object(&d, &record)?;
        Ok(report)
    })
}

/// What [`remove`] did.
#[derive(Debug, Clone, Serialize)]
pub struct RemoveReport {
    pub name: String,
    pub uuid: String,
    pub kind: String,
    pub bytes: u64,
}

/// Removes an object record (and with it any image registration). Its blocks stay until
/// `arch gc` finds them unreferenced.
pub fn remove(repo: &Repository, name: &ObjectName) -> Result<RemoveReport> {
    repo.transact(|cat| {
        let rec = find(cat, name)?;
        cat.remove_object(&name.full())?;
        Ok(RemoveReport {
            name: name.full(),
            uuid: rec.uuid.clone(),
            kind: resource_kind(&rec).into(),
            bytes: rec.bytes,
        })
    })
}

/// The Pithos hashmap of an object.
pub fn hashmap(repo: &Repository, name: &ObjectName, version: Option<u64>) -> Result<Hashmap> {
    let rec = find_at(&repo.catalog()?, name, version)?;
    let map = load_map(repo, &name.full(), &rec)?;
    Ok(Hashmap {
        block_hash: repo.config().hash.clone(),
        map,
    })
}

/// A fresh random (v4) uuid.
pub fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}
