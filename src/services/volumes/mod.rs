//! The volume service (Cinder/Archipelago semantics): thin copy-on-write clones of read-only
//! resources, their block I/O, snapshots back into read-only resources, resize, removal,
//! import and export.
//!
//! Lock order, everywhere: volume lock, then the shared data lock, then the catalog lock.

pub mod blockio;
mod copying;
pub mod creating;
pub mod customize;
pub mod format;
pub mod lineage;
mod partial;
pub mod private;
mod rename;
mod resize;
pub mod rollback;
pub mod served;
mod snapshot;
mod staged;
pub mod transfer;
mod untrusted;

pub use rename::{RenameReport, rename};
pub use resize::{NewSize, resize, resize_to};
pub use snapshot::{SnapshotReport, snapshot};

use crate::error::{Error, Result};
use crate::repo::Repository;
use crate::repo::db::Db;
use crate::repo::lock::FileLock;
use crate::repo::records::{CreationRecord, TaskRecord, VolumeRecord};
use crate::services::images::{Among, resolve, resource_kind};
use crate::services::names::closest;
pub use crate::services::names::validate_volume_name;
use crate::services::objects::{new_uuid, read_map_of};
use crate::storage::ingest::worker_threads;
use crate::storage::ordered::read_in_order;
use crate::storage::s3::pipeline_threads;
use crate::time::now_rfc3339;
use blockio::{BlockSource, VolumeBlocks, WriteStats};
use serde::Serialize;

/// Status of a volume ready for use.
pub const STATUS_AVAILABLE: &str = "available";
/// Status of a volume whose creation (clone + customization) has not finished: refused by
/// every command that would use its content, cleaned up once its creator is gone.
pub const STATUS_CREATING: &str = "creating";

/// Looks up a volume by name, suggesting the closest one when missing.
pub fn find(cat: &Db, name: &str) -> Result<VolumeRecord> {
    if let Some(rec) = cat.volume(name)? {
        return Ok(rec);
    }
    if cat.has_object(name)? {
        return Err(Error::invalid(format!(
            "'{name}' is a read-only object, not a volume; clone it into a volume first: \
             arch clone {name} NEW_VOLUME"
        )));
    }
    let mut names = Vec::new();
    cat.for_each_volume(&mut |n, _| {
        names.push(n);
        Ok(names.len() < 10_000)
    })?;
    Err(Error::NotFound {
        kind: "volume",
        name: name.to_string(),
        suggestion: closest(name, names.iter().map(String::as_str)),
    })
}

/// A volume opened for I/O, with its lock held (by itself, or by the caller that created it).
pub struct OpenVolume<'a> {
    pub name: String,
    pub record: VolumeRecord,
    pub blocks: VolumeBlocks<'a>,
    _lock: Option<FileLock>,
    _data: FileLock,
}

impl OpenVolume<'_> {
    /// Number of blocks of the volume.
    pub fn block_count(&self) -> u64 {
        self.record.size.div_ceil(self.record.block_size as u64)
    }

    /// Indexes of the private blocks the volume reads (current epoch, inside the volume).
    pub fn live_private(&self) -> Result<Vec<u64>> {
        let blocks = self.block_count();
        Ok(self
            .blocks
            .private_indexes()?
            .range(..blocks)
            .copied()
            .collect())
    }

    /// The base map's blocks with data inside the volume, `(index, hash)` by index (memory
    /// follows the data, not the volume's size).
    pub fn base_entries(&self) -> &[(u64, crate::storage::BlockHash)] {
        let entries = self.blocks.base().entries();
        let blocks = self.block_count();
        &entries[..entries.partition_point(|e| e.0 < blocks)]
    }

    /// Refuses a range that does not lie inside the volume.
    pub fn check_range(&self, offset: u64, len: u64) -> Result<()> {
        let size = self.record.size;
        if offset > size || len > size - offset {
            return Err(Error::invalid(format!(
                "range {offset}..{} is past the end of volume '{}' ({size} bytes); \
                 keep offset + length <= {size}, or grow it with `arch volume resize`",
                offset.saturating_add(len),
                self.name
            )));
        }
        Ok(())
    }
}

/// Opens volume `name` for I/O: exclusive lock for writers, shared for readers. A volume
/// still `creating` is refused (see [`creating`]).
pub fn open<'a>(repo: &'a Repository, name: &str, write: bool) -> Result<OpenVolume<'a>> {
    open_as(repo, name, write, false)
}

/// [`open`]; with `finish_creating`, a `creating` volume whose creator is gone is opened too
/// (exclusively), for `arch customize` to finish it. One still being created is always refused.
fn open_as<'a>(
    repo: &'a Repository,
    name: &str,
    write: bool,
    finish_creating: bool,
) -> Result<OpenVolume<'a>> {
    let rec = find(&repo.catalog()?, name)?;
    if rec.status == STATUS_CREATING {
        let running = creating::creator_running(repo, &rec.id)?;
        if running || !finish_creating {
            return Err(creating::refusal(name, &rec, running));
        }
    }
    let id = rec.id.clone();
    let serve_guard = if write || finish_creating {
        Some(served::refuse_if_served(repo, name, &id)?)
    } else {
        None
    };
    let lock = if write || finish_creating {
        repo.lock_volume_exclusive(&id)?
    } else {
        repo.lock_volume_shared(&id)?
    };
    drop(serve_guard);
    let data = repo.lock_data_shared()?;
    // Re-read under the lock: the record may have changed (snapshot, resize) while we waited.
    let record = find(&repo.catalog()?, name)?;
    if record.id != id {
        return Err(Error::Busy {
            resource: format!("volume '{name}' (replaced while waiting)"),
        });
    }
    if record.status == STATUS_CREATING && !finish_creating {
        // We hold its lock, so its creator is gone.
        return Err(creating::refusal(name, &record, false));
    }
    if write || finish_creating {
        // Its one writer now: staged files of the volume are a killed writer's.
        staged::remove_leftovers(&repo.tmp_dir(), &id)?;
    }
    assemble(repo, name, record, Some(lock), data)
}

/// Opens volume `name`, whose exclusive lock the caller holds (a volume it is creating).
fn open_locked<'a>(repo: &'a Repository, name: &str, id: &str) -> Result<OpenVolume<'a>> {
    let data = repo.lock_data_shared()?;
    let record = find(&repo.catalog()?, name)?;
    if record.id != id {
        return Err(Error::Busy {
            resource: format!("volume '{name}' (replaced while creating it)"),
        });
    }
    assemble(repo, name, record, None, data)
}

fn assemble<'a>(
    repo: &'a Repository,
    name: &str,
    record: VolumeRecord,
    lock: Option<FileLock>,
    data: FileLock,
) -> Result<OpenVolume<'a>> {
    let blocks = blocks_of(repo, name, &record)?;
    Ok(OpenVolume {
        name: name.to_string(),
        record,
        blocks,
        _lock: lock,
        _data: data,
    })
}

/// Block I/O over the current epoch of volume `name` (`record`): its base map and its private
/// blocks as a volume opened for I/O uses them ([`private::open_for_io`]).
pub(crate) fn blocks_of<'a>(
    repo: &'a Repository,
    name: &str,
    record: &VolumeRecord,
) -> Result<VolumeBlocks<'a>> {
    let base = load_base_map(repo, name, record)?;
    let resource = format!("volume {name}");
    let private = private::open_for_io(
        repo,
        &record.id,
        record.epoch,
        record.block_size as u64,
        &resource,
    )?;
    Ok(VolumeBlocks::new(repo.backend(), base, private, resource))
}

/// Options of [`clone`].
#[derive(Debug, Clone, Default)]
pub struct CloneOptions {
    /// Volume size; defaults to the source size and may not be smaller.
    pub size: Option<u64>,
    /// Customize the clone when its source is an Image (not a Snapshot, not a plain object).
    pub customize: Option<crate::customize::CustomizeOptions>,
    /// Clone this version of the source object instead of its current one.
    pub version: Option<u64>,
}

/// The read-only resource a clone starts from.
#[derive(Debug, Clone, Serialize)]
pub struct CloneSource {
    /// The object `container/object`.
    pub object: String,
    /// object | image | snapshot.
    pub kind: String,
    /// `image:<id>` | `snapshot:<id>` | `object:<uuid>`.
    pub source: String,
    /// Image properties (empty for a plain object).
    #[serde(skip)]
    pub properties: std::collections::BTreeMap<String, String>,
}

/// What [`clone`] did.
#[derive(Debug, Clone, Serialize)]
pub struct CloneReport {
    pub volume: String,
    pub id: String,
    pub size: u64,
    pub source: CloneSource,
    /// The customization, when the source was an Image and customization was asked for.
    #[serde(skip)]
    pub customization: Option<customize::CustomizeReport>,
    /// An unfinished volume of the same name, left by a dead creator, that was removed first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed_unfinished: Option<CreationRecord>,
}

/// Resolves a clone SOURCE to a read-only resource; a volume gets the fix (snapshot first).
pub fn resolve_source(cat: &Db, source: &str) -> Result<CloneSource> {
    if cat.has_volume(source)? && !cat.has_object(source)? {
        return Err(Error::invalid(format!(
            "'{source}' is a volume; volumes are not cloned directly. Snapshot it first: \
             arch snapshot {source} NAME && arch clone snapshots/NAME NEW_VOLUME"
        )));
    }
    let object = resolve(cat, source, Among::Resources)?;
    let rec = source_record(cat, &object)?;
    let kind = resource_kind(&rec);
    Ok(CloneSource {
        source: format!("{kind}:{}", rec.uuid),
        kind: kind.to_string(),
        properties: rec
            .image
            .as_ref()
            .map(|i| i.properties.clone())
            .unwrap_or_default(),
        object,
    })
}

/// The record of a resolved clone source (gone only if removed since).
fn source_record(cat: &Db, object: &str) -> Result<crate::repo::records::ObjectRecord> {
    cat.object(object)?.ok_or_else(|| Error::NotFound {
        kind: "object",
        name: object.to_string(),
        suggestion: None,
    })
}

/// Creates volume `name` as a thin clone of `source` (an object name or an image REF).
/// Cost: one catalog commit; no block and no map is written (the volume reads through the
/// source's immutable map).
///
/// A clone of an Image with `opts.customize` is committed `creating` while this process holds
/// its lock, customized, and made `available` in one commit once the changed blocks are
/// durable; any failure (error, interrupt, panic) removes it, and a kill leaves it `creating`,
/// which every command refuses (see [`creating`]). A `creating` volume of the same name whose
/// creator is gone is removed first.
pub fn clone(
    repo: &Repository,
    source: &str,
    name: &str,
    opts: &CloneOptions,
) -> Result<CloneReport> {
    validate_volume_name(name)?;
    if let Some(c) = &opts.customize {
        crate::customize::validate(c)?;
    }
    let removed_unfinished = creating::reap_if_abandoned(repo, name)?;
    let id = new_uuid();
    // The data lock first (an exception to the lock order that cannot deadlock: nobody else
    // knows `id`, so its lock never waits): it keeps gc, which removes lock files of ids no
    // record names, away until the record is committed. The volume lock is held from before
    // the commit until the volume is available or removed.
    let _data = repo.lock_data_shared()?;
    let lock = repo.lock_volume_exclusive(&id)?;
    let committed = repo.transact(|cat| {
        let src = resolve_source(cat, source)?;
        if cat.has_volume(name)? {
            return Err(Error::AlreadyExists {
                kind: "volume",
                name: name.to_string(),
                fix: "choose another name, or remove it with `arch volume rm`".into(),
            });
        }
        let rec = match opts.version {
            None => source_record(cat, &src.object)?,
            Some(v) => crate::services::versions::find_at(
                cat,
                &crate::services::names::ObjectName::parse(&src.object)?,
                Some(v),
            )?,
        };
        // The source's map must be the one its record describes (a damaged record could
        // give the volume a size that does not cover its base map).
        crate::services::objects::load_map(repo, &src.object, &rec)?;
        let size = opts.size.unwrap_or(rec.bytes);
        crate::storage::map::check_resource_size("--size", size)?;
        if size < rec.bytes {
            return Err(Error::invalid(format!(
                "--size {size} is smaller than the source '{}' ({} bytes); a clone may only be \
                 the same size or larger",
                src.object, rec.bytes
            )));
        }
        let creation = opts
            .customize
            .as_ref()
            .filter(|_| src.kind == "image")
            .map(|c| creating::new_record(format!("clone of {}", src.object), c));
        let now = now_rfc3339();
        let record = VolumeRecord {
            id: id.clone(),
            size,
            block_size: rec.block_size,
            source: Some(src.source.clone()),
            source_object: Some(src.object.clone()),
            base_map: rec.map,
            epoch: 1,
            created_at: now.clone(),
            modified_at: now,
            status: if creation.is_some() {
                STATUS_CREATING
            } else {
                STATUS_AVAILABLE
            }
            .into(),
            customization: Vec::new(),
            creation,
        };
        let customizing = record.creation.is_some();
        let report = CloneReport {
            volume: name.to_string(),
            id: record.id.clone(),
            size,
            source: src,
            customization: None,
            removed_unfinished: removed_unfinished.clone(),
        };
        cat.put_volume(name, &record)?;
        Ok((report, customizing))
    });
    let (mut report, customizing) = match committed {
        Ok(r) => r,
        Err(e) => {
            if let Ok(lock_file) = repo.volume_lock_path(&id) {
                let _ = crate::storage::fsutil::remove_path(&lock_file);
            }
            return Err(e);
        }
    };
    if customizing {
        // From here any exit but `finished` removes the volume (the guard's Drop covers a
        // panic; errors and interrupts are reported after an explicit removal).
        let creation = creating::Creation::adopt(repo, name, &id, lock);
        let result = open_locked(repo, name, &id).and_then(|mut vol| {
            customize::customize_open(
                repo,
                &mut vol,
                &report.source.properties,
                opts.customize.as_ref().expect("customizing"),
                false,
            )
        });
        match result {
            Ok(c) => {
                creation.finished();
                report.customization = Some(c);
            }
            Err(e) => {
                let removed = creation.abort();
                return Err(match (e, removed) {
                    (e @ Error::Interrupted { .. }, _) => e,
                    (e, Ok(())) => Error::invalid(format!(
                        "customization of '{name}' failed, the volume was removed: {e}"
                    )),
                    (e, Err(r)) => Error::invalid(format!(
                        "customization of '{name}' failed: {e}; removing the half-made volume \
                         failed too ({r}): it stays `creating` and refused, remove it with \
                         `arch volume rm {name}`"
                    )),
                });
            }
        }
    }
    Ok(report)
}

/// Records the customization outcome of volume `name` (id `id`, locked by the caller); a
/// `creating` volume becomes `available` in the same commit.
pub fn record_customization(
    repo: &Repository,
    name: &str,
    id: &str,
    tasks: Vec<TaskRecord>,
) -> Result<()> {
    repo.transact(|cat| {
        let mut v = cat
            .volume(name)?
            .filter(|v| v.id == id)
            .ok_or_else(|| Error::invalid(format!("volume '{name}' vanished")))?;
        v.customization = tasks;
        v.status = STATUS_AVAILABLE.into();
        v.creation = None;
        v.modified_at = now_rfc3339();
        cat.put_volume(name, &v)
    })
}

/// One volume in a listing or `info`.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeInfo {
    pub name: String,
    pub id: String,
    pub size: u64,
    pub block_size: u32,
    pub status: String,
    /// While `status` is `creating`: who creates it and whether that process still runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creation: Option<creating::CreationState>,
    /// Written by `cmd::json::Volume` as one `source` object (shared with `clone`).
    #[serde(skip)]
    pub source: Option<String>,
    /// The source object by its current name (found by id: a renamed source shows its new
    /// name); None when imported or when the source was removed.
    /// Written by `cmd::json::Volume` in the one `source` shape.
    #[serde(skip)]
    pub source_object: Option<String>,
    /// True when the source object was removed since the clone (the volume keeps its data).
    /// Written by `cmd::json::Volume` as the source's `removed`.
    #[serde(skip)]
    pub source_removed: bool,
    pub created_at: String,
    pub modified_at: String,
    pub epoch: u64,
    pub blocks: u64,
    /// Blocks held privately by the volume (written since its clone or last snapshot).
    pub private_blocks: u64,
    /// Blocks read through the shared base map.
    pub shared_blocks: u64,
    /// Blocks that read as zeros and are stored nowhere.
    pub zero_blocks: u64,
    /// Written by `cmd::json::Volume` in the `customization` shape shared with `clone`.
    #[serde(skip)]
    pub customization: Vec<TaskRecord>,
    /// The snapshots taken from the volume (`volume info` only: absent from listings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshots: Option<Vec<lineage::TakenSnapshot>>,
}

/// Reads the base map of volume `name`, refused as damage unless it fits the record: the
/// volume's block size, and no more blocks than the volume has (docs/VOLUMES.md).
pub fn load_base_map(
    repo: &Repository,
    name: &str,
    rec: &VolumeRecord,
) -> Result<crate::storage::BlockMap> {
    let map = read_map_of(repo, &format!("volume {name}"), &rec.base_map)?;
    let blocks = rec.size.div_ceil(rec.block_size as u64);
    let mismatch = if map.block_size() != rec.block_size {
        Some(format!(
            "blocks of {}, the volume {}",
            map.block_size(),
            rec.block_size
        ))
    } else if map.block_count() > blocks {
        Some(format!("{} blocks, the volume {blocks}", map.block_count()))
    } else {
        None
    };
    match mismatch {
        None => Ok(map),
        Some(what) => Err(Error::Corrupt {
            path: repo.backend().map_location(&rec.base_map),
            reason: format!(
                "base map {} of volume {name} does not fit its record ({what})",
                rec.base_map
            ),
        }),
    }
}

fn describe(repo: &Repository, cat: &Db, name: &str, rec: &VolumeRecord) -> Result<VolumeInfo> {
    let source_now = lineage::source_now(cat, rec)?;
    let base = load_base_map(repo, name, rec)?;
    let blocks = rec.size.div_ceil(rec.block_size as u64);
    let private = repo
        .private_store()
        .open_epoch(&rec.id, rec.epoch, rec.block_size as u64, name)?
        .indexes()?;
    let private_blocks = private.range(..blocks).count() as u64;
    // Only the base's data blocks are visited: the cost follows the data.
    let shared_blocks = base
        .entries()
        .iter()
        .filter(|&&(i, _)| i < blocks && !private.contains(&i))
        .count() as u64;
    Ok(VolumeInfo {
        name: name.to_string(),
        id: rec.id.clone(),
        size: rec.size,
        block_size: rec.block_size,
        status: rec.status.clone(),
        creation: creating::state(repo, rec)?,
        source: rec.source.clone(),
        source_object: match &source_now {
            lineage::SourceNow::Present { name } => Some(name.clone()),
            _ => None,
        },
        source_removed: source_now == lineage::SourceNow::Removed,
        created_at: rec.created_at.clone(),
        modified_at: rec.modified_at.clone(),
        epoch: rec.epoch,
        blocks,
        private_blocks,
        shared_blocks,
        zero_blocks: blocks - private_blocks - shared_blocks,
        customization: rec.customization.clone(),
        snapshots: None,
    })
}

/// Every volume, in name order, each described and passed to `f` as it is read (streamed:
/// nothing is collected).
pub fn list(repo: &Repository, f: &mut dyn FnMut(VolumeInfo) -> Result<()>) -> Result<()> {
    let cat = repo.catalog()?;
    cat.for_each_volume(&mut |name, rec| {
        f(describe(repo, &cat, &name, &rec)?)?;
        Ok(true)
    })
}

/// One volume (its `snapshots` are left to [`lineage::snapshots_of`]).
pub fn info(repo: &Repository, name: &str) -> Result<VolumeInfo> {
    let cat = repo.catalog()?;
    describe(repo, &cat, name, &find(&cat, name)?)
}

/// Reads `len` bytes at `offset` of volume `name`, handing them to `sink` in pieces of at
/// most one block, in order. The blocks are read (and shared ones verified) on several
/// threads ahead of `sink`: one per core, at least [`crate::storage::s3::CONCURRENT_REQUESTS`]
/// on an object store, where each block is a request.
pub fn read(
    repo: &Repository,
    name: &str,
    offset: u64,
    len: u64,
    sink: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let vol = open(repo, name, false)?;
    vol.check_range(offset, len)?;
    let bs = vol.blocks.block_size();
    let end = offset + len;
    // The pieces: (position, length), each inside one block.
    let pieces = std::iter::successors(Some(offset), |&pos| Some(pos + (bs - pos % bs)))
        .take_while(|&pos| pos < end)
        .map(|pos| (pos, (bs - pos % bs).min(end - pos) as usize));
    let threads = pipeline_threads(vol.blocks.backend(), worker_threads());
    let read = |&(pos, n): &(u64, usize), buf: &mut Vec<u8>| {
        buf.resize(n, 0);
        vol.blocks.read_at(pos, buf)
    };
    read_in_order(threads, pieces, &read, &mut |_, bytes| sink(bytes))
}

/// Counts a write's blocks once each, however many pieces of the input reached a block (an
/// input read in chunks splits a block at each chunk boundary): a block counts as what its
/// first piece that changed it did (copied, allocated, in place), or as skipped when no
/// piece changed it. Pieces of one block arrive one after another.
#[derive(Debug, Default)]
struct BlockTally {
    current: Option<(u64, WriteStats)>,
}

impl BlockTally {
    fn add(&mut self, index: u64, piece: WriteStats, total: &mut WriteStats) {
        match &mut self.current {
            Some((i, first)) if *i == index => {
                if first.blocks_skipped > 0 && piece.blocks_skipped == 0 {
                    *first = piece;
                }
            }
            _ => {
                self.flush(total);
                self.current = Some((index, piece));
            }
        }
    }

    fn flush(&mut self, total: &mut WriteStats) {
        if let Some((_, s)) = self.current.take() {
            total.blocks_copied += s.blocks_copied;
            total.blocks_allocated += s.blocks_allocated;
            total.blocks_in_place += s.blocks_in_place;
            total.blocks_skipped += s.blocks_skipped;
        }
    }
}

/// What [`write`] did.
#[derive(Debug, Clone, Serialize)]
pub struct WriteReport {
    pub volume: String,
    pub offset: u64,
    pub bytes: u64,
    #[serde(flatten)]
    pub stats: WriteStats,
}

/// Writes the bytes `next_chunk` yields at `offset` of volume `name`, `total` bytes in all
/// (checked against the volume's end before anything is written).
pub fn write(
    repo: &Repository,
    name: &str,
    offset: u64,
    total: u64,
    next_chunk: &mut dyn FnMut(&mut Vec<u8>) -> Result<usize>,
) -> Result<WriteReport> {
    let vol = open(repo, name, true)?;
    vol.check_range(offset, total)?;
    let bs = vol.blocks.block_size();
    let mut changes = partial::Changes::new(bs, offset, offset + total);
    let mut stats = WriteStats::default();
    let mut per_block = BlockTally::default();
    let mut buf = Vec::new();
    let mut pos = offset;
    // Block by block, so that a failure knows exactly which blocks already changed.
    let mut write_all = || -> Result<()> {
        while pos < offset + total {
            crate::interrupt::check()?;
            let n = next_chunk(&mut buf)?;
            if n == 0 {
                break;
            }
            let n = n.min((offset + total - pos) as usize);
            let mut done = 0;
            while done < n {
                let at = pos + done as u64;
                let (index, len) = (at / bs, ((bs - at % bs) as usize).min(n - done));
                let s = vol
                    .blocks
                    .write_at(at, &buf[done..done + len])
                    .inspect_err(|_| {
                        // A new private block appears atomically, so a failed one is absent; a
                        // block that is private after the failure was being written in place.
                        if matches!(vol.blocks.source(index), Ok(BlockSource::Private)) {
                            changes.partly(index, at + len as u64);
                        }
                    })?;
                if s.blocks_skipped == 0 {
                    changes.changed(index, at + len as u64);
                }
                per_block.add(index, s, &mut stats);
                done += len;
            }
            pos += n as u64;
        }
        Ok(())
    };
    let written = write_all();
    per_block.flush(&mut stats);
    // What did change is made durable before any error returns, so that its account holds
    // after a crash (or says that it may not).
    let synced = vol.blocks.finish();
    match (written, synced) {
        (Ok(()), Ok(())) => {}
        (Err(e), Ok(())) => return Err(changes.into_error(name, e)),
        (written, Err(sync)) => {
            changes.not_durable(&sync);
            return Err(changes.into_error(name, written.err().unwrap_or(sync)));
        }
    }
    if pos > offset {
        touch(repo, name, &vol.record.id)?;
    }
    Ok(WriteReport {
        volume: name.to_string(),
        offset,
        bytes: pos - offset,
        stats,
    })
}

/// Sets the `modified_at` of volume `name` (id `id`, locked by the caller) to now: its
/// content changed.
pub fn touch(repo: &Repository, name: &str, id: &str) -> Result<()> {
    repo.transact(|cat| {
        let mut v = find(cat, name)?;
        if v.id != id {
            return Err(Error::Busy {
                resource: format!("volume '{name}' (replaced while writing)"),
            });
        }
        v.modified_at = now_rfc3339();
        cat.put_volume(name, &v)
    })
}

/// What [`remove`] did.
#[derive(Debug, Clone, Serialize)]
pub struct RemoveReport {
    pub volume: String,
    pub id: String,
    pub private_blocks_freed: u64,
}

/// Removes a volume: its record, then its private blocks. Shared blocks stay for gc.
///
/// Crash safety: the record goes first (one atomic commit); a crash before the directory is
/// gone leaves an orphan directory that fsck reports as garbage and gc removes.
pub fn remove(repo: &Repository, name: &str) -> Result<RemoveReport> {
    let id = find(&repo.catalog()?, name)?.id;
    let serve_guard = served::refuse_if_served(repo, name, &id)?;
    let _lock = repo.lock_volume_exclusive(&id)?;
    drop(serve_guard);
    let freed = remove_locked(repo, name, &id)?;
    Ok(RemoveReport {
        volume: name.to_string(),
        id,
        private_blocks_freed: freed,
    })
}

/// [`remove`] for a caller holding the exclusive lock of volume `id`; returns the number of
/// private block files freed. Fails, changing nothing, unless `name` is still volume `id`.
fn remove_locked(repo: &Repository, name: &str, id: &str) -> Result<u64> {
    let _data = repo.lock_data_shared()?;
    // Paths first: a damaged one refuses the removal before the record goes.
    repo.volume_dir(id)?;
    let lock_file = repo.volume_lock_path(id)?;
    repo.transact(|cat| {
        if find(cat, name)?.id != id {
            return Err(Error::Busy {
                resource: format!("volume '{name}' (replaced while waiting)"),
            });
        }
        cat.remove_volume(name)?;
        Ok(())
    })?;
    let freed = repo.private_store().remove_volume(id)?;
    // Safe while we hold it: every locker re-checks the record after locking.
    crate::storage::fsutil::remove_path(&lock_file)?;
    served::forget(repo, id)?;
    Ok(freed)
}

#[cfg(test)]
mod model_tests;
