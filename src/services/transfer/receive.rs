//! `receive`: checks a send stream and applies it, all or nothing.
//!
//! Order (docs/FORMAT.md "Send streams"), under the shared data lock:
//! 1. every block record is read into a page-aligned buffer and verified (the stream reader
//!    hashes it piece by piece as it arrives), then handed to writer threads that stage it in
//!    one block batch (`tmp/batch-*`, not visible) with a direct write (`stage`): an
//!    unverified byte is never staged; maps and resource records are kept in memory;
//! 2. the trailer is verified (record count, checksum, end of input): until then nothing
//!    is visible, whatever the stream holds;
//! 3. every resource is checked: its name (after `--rename`) free and valid, its record valid,
//!    its map in the stream or the repository and matching the record, every block it needs
//!    in the stream or the repository;
//! 4. the batch commits (blocks become visible: unreferenced, so garbage for gc if what
//!    follows fails), the stream's maps are written, each volume's private blocks are written
//!    under `volumes/<new id>/1/` (an id no record names yet: garbage until the commit);
//! 5. ONE catalog transaction adds every resource.
//!
//! A crash or error before 5 commits leaves the catalog as it was (plus garbage); after it,
//! the whole stream is applied. In an object store, where an upload is visible at once, an
//! error also takes back the block objects this receive created and nothing references
//! ([`super::take_back`]), so a refused stream leaves the store as it was too. No path is built from stream data: volume ids are checked
//! uuids (or new), object and volume names are validated, private indexes are numbers.

use super::stage::Stager;
use super::wire::WireResource;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::repo::db::Db;
use crate::repo::records::{VolumeRecord, is_uuid};
use crate::services::images::properties::SOURCE_VOLUME;
use crate::services::objects::new_uuid;
use crate::services::volumes::blockio::VolumeBlocks;
use crate::services::volumes::{STATUS_AVAILABLE, validate_volume_name};
use crate::storage::{BlockHash, BlockMap, MapId};
use crate::stream::{Record, StreamReader};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;

/// One resource received.
#[derive(Debug, Clone, Serialize)]
pub struct ReceivedResource {
    /// volume | object | image | snapshot.
    pub kind: String,
    /// Its name here.
    pub name: String,
    /// Its name in the stream, when `--rename` changed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renamed_from: Option<String>,
    pub bytes: u64,
}

/// What a receive applied.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReceiveReport {
    pub resources: Vec<ReceivedResource>,
    /// Blocks of the stream written to the store.
    pub blocks_received: u64,
    /// Blocks of the stream the store already had (not written again).
    pub blocks_skipped: u64,
    /// Bytes of block data written to the store.
    pub bytes_received: u64,
    pub maps_received: u64,
    /// Length of the stream.
    pub stream_bytes: u64,
}

/// Checks the stream on `input` and applies it to `repo` (see the module doc), renaming
/// resources by `renames` (stream name -> new name).
pub fn receive(
    repo: &Repository,
    input: &mut dyn Read,
    renames: &BTreeMap<String, String>,
    progress: &dyn Progress,
) -> Result<ReceiveReport> {
    let mut reader = StreamReader::new(input)?;
    if reader.block_size() != repo.block_size() {
        return Err(Error::invalid(format!(
            "the stream holds blocks of {} bytes and this repository uses {}; arch does not \
             convert block sizes (every hash would change). Receive it into a repository made \
             with `arch init --block-size {}`, or export and import the data instead",
            reader.block_size(),
            repo.block_size(),
            reader.block_size()
        )));
    }
    let data = repo.lock_data_shared()?;
    let backend = repo.backend();
    let batch = backend.begin_batch()?;
    let mut report = ReceiveReport::default();
    let flusher = super::flush::EarlyFlush::start(repo.tmp_dir());
    let checked = (|| {
        let (in_stream, maps, resources) = std::thread::scope(|scope| {
            let mut stager = Stager::start(scope, batch.as_ref(), reader.block_size(), &flusher);
            let got = read_records(&mut reader, &mut stager, progress)?;
            stager.finish()?;
            report.blocks_received = stager.written;
            report.bytes_received = stager.bytes;
            report.blocks_skipped = stager.skipped;
            Ok::<_, Error>(got)
        })?;
        report.stream_bytes = reader.bytes();
        let stored_len = |h: &BlockHash| -> Result<Option<u64>> {
            match in_stream.get(h) {
                Some(&len) => Ok(Some(len)),
                None => backend.block_len(h),
            }
        };
        let plan = plan(repo, resources, renames, &maps, &stored_len)?;
        flusher.finish()?;
        Ok((maps, plan))
    })();
    // No upload is in flight past this point: what the batch created in a store is known.
    let created = batch.created();
    let applied = checked.and_then(|(maps, plan)| {
        batch.commit()?;
        apply(repo, &maps, &plan, &mut report)?;
        Ok(plan)
    });
    let plan = match applied {
        Ok(plan) => plan,
        Err(e) => {
            // Bad input leaves the repository as it was: in a store, the blocks this receive
            // created (visible at once there) are taken back (`take_back`).
            super::take_back::take_back(repo, data, created);
            return Err(e);
        }
    };
    progress.finish();
    report.resources = plan
        .iter()
        .map(|p| ReceivedResource {
            kind: p.kind.to_string(),
            name: p.name.clone(),
            renamed_from: (p.name != p.stream_name).then(|| p.stream_name.clone()),
            bytes: p.bytes,
        })
        .collect();
    Ok(report)
}

/// Steps 4 and 5 of the module doc, once the batch committed: writes the stream's maps and
/// each volume's private blocks, then commits the catalog; a volume's private blocks are
/// removed again when that fails.
fn apply(
    repo: &Repository,
    maps: &HashMap<MapId, BlockMap>,
    plan: &[Plan],
    report: &mut ReceiveReport,
) -> Result<()> {
    let backend = repo.backend();
    let mut written_maps = HashSet::new();
    for p in plan {
        if let Some(map) = maps.get(&p.map_id)
            && written_maps.insert(p.map_id)
        {
            backend.put_map(map)?;
            report.maps_received += 1;
        }
    }
    let mut made = Vec::new();
    let result = (|| {
        for p in plan {
            if let Planned::Volume { id, private, .. } = &p.what {
                repo.volume_dir(id)?;
                made.push(id.clone());
                write_private(repo, p, id, private)?;
            }
        }
        repo.transact(|cat| commit(cat, plan))
    })();
    if result.is_err() {
        let store = repo.private_store();
        for id in made {
            let _ = store.remove_volume(&id);
        }
    }
    result
}

/// Stored length of each block of the stream.
type InStream = HashMap<BlockHash, u64>;

/// Reads the stream to its verified end (step 1 and 2 of the module doc): each block is
/// read into a buffer of `stager` and handed to it to be staged; maps and resources are
/// kept.
fn read_records(
    reader: &mut StreamReader<&mut dyn Read>,
    stager: &mut Stager<'_>,
    progress: &dyn Progress,
) -> Result<(InStream, HashMap<MapId, BlockMap>, Vec<WireResource>)> {
    let mut in_stream = InStream::new();
    let mut maps = HashMap::new();
    let mut resources = Vec::new();
    let mut buf = stager.buffer()?;
    let mut read = reader.bytes();
    loop {
        let record = reader.next(&mut buf)?;
        progress.advance(reader.bytes() - read);
        read = reader.bytes();
        match record {
            Record::Block { hash, len } => {
                // A block the stream repeats is verified again (the reader does) and dropped.
                if in_stream.insert(hash, len as u64).is_some() {
                    continue;
                }
                stager.stage(hash, buf, len)?;
                buf = stager.buffer()?;
            }
            Record::Map { id, map } => {
                maps.insert(id, map);
            }
            Record::Resource(json) => {
                let r: WireResource =
                    serde_json::from_slice(&json).map_err(|e| Error::BadStream {
                        reason: format!("resource record {} is not valid: {e}", resources.len()),
                    })?;
                resources.push(r);
            }
            Record::End => return Ok((in_stream, maps, resources)),
        }
    }
}

/// A checked resource, ready to be committed.
struct Plan {
    kind: &'static str,
    stream_name: String,
    name: String,
    bytes: u64,
    map_id: MapId,
    map: BlockMap,
    what: Planned,
}

enum Planned {
    Object(Box<crate::repo::records::ObjectRecord>),
    Volume {
        id: String,
        record: Box<VolumeRecord>,
        private: Vec<(u64, BlockHash)>,
    },
}

fn exists(kind: &'static str, name: &str, stream_name: &str) -> Error {
    Error::AlreadyExists {
        kind,
        name: name.to_string(),
        fix: format!(
            "receive it under another name with --rename {stream_name}=NEW_NAME, or remove \
             the existing one first; nothing was received"
        ),
    }
}

/// Checks every resource of the stream (step 3 of the module doc).
fn plan(
    repo: &Repository,
    resources: Vec<WireResource>,
    renames: &BTreeMap<String, String>,
    maps: &HashMap<MapId, BlockMap>,
    stored_len: &dyn Fn(&BlockHash) -> Result<Option<u64>>,
) -> Result<Vec<Plan>> {
    let names: HashSet<&str> = resources.iter().map(|r| r.name()).collect();
    if let Some(old) = renames.keys().find(|o| !names.contains(o.as_str())) {
        let mut known: Vec<&str> = names.iter().copied().collect();
        known.sort();
        return Err(Error::invalid(format!(
            "--rename {old}=...: the stream holds no resource '{old}'; it holds {}",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )));
    }
    let bs = repo.block_size();
    let cat = repo.catalog()?;
    let mut taken = HashSet::new();
    let mut ids = HashSet::new();
    let mut out = Vec::new();
    for r in resources {
        let kind = r.kind();
        let stream_name = r.name().to_string();
        let name = renames.get(&stream_name).unwrap_or(&stream_name).clone();
        if !taken.insert(name.clone()) {
            return Err(Error::BadStream {
                reason: format!("two resources would be named '{name}'"),
            });
        }
        let bad_record = |faults: Vec<String>| Error::BadStream {
            reason: format!(
                "resource '{}' has an invalid record: {}",
                crate::services::names::escape_control(&stream_name),
                faults.join("; ")
            ),
        };
        let (map_id, bytes, what) = match r {
            WireResource::Object { record, .. } => {
                crate::services::names::ObjectName::parse(&name)?;
                let faults = record.faults(&name, bs);
                if !faults.is_empty() {
                    return Err(bad_record(faults));
                }
                if cat.has_object(&name)? {
                    return Err(exists("object", &name, &stream_name));
                }
                (record.map, record.bytes, Planned::Object(Box::new(record)))
            }
            WireResource::Volume {
                record, private, ..
            } => {
                validate_volume_name(&name)?;
                let faults = record.faults(&name, bs);
                if !faults.is_empty() {
                    return Err(bad_record(faults));
                }
                if cat.has_volume(&name)? {
                    return Err(exists("volume", &name, &stream_name));
                }
                let blocks = record.size.div_ceil(bs as u64);
                for (k, &(i, _)) in private.iter().enumerate() {
                    if i >= blocks || (k > 0 && private[k - 1].0 >= i) {
                        return Err(Error::BadStream {
                            reason: format!(
                                "volume '{stream_name}' lists private block {i} out of order \
                                 or past its {blocks} blocks"
                            ),
                        });
                    }
                }
                let id = volume_id(repo, &cat, &record.id, &ids)?;
                ids.insert(id.clone());
                let map = record.base_map;
                let size = record.size;
                let what = Planned::Volume {
                    id,
                    record: Box::new(record),
                    private,
                };
                (map, size, what)
            }
        };
        let map = match maps.get(&map_id) {
            Some(m) => m.clone(),
            None => repo.backend().read_map(&map_id)?.ok_or_else(|| {
                Error::invalid(format!(
                    "'{stream_name}' needs map {map_id}, which is neither in the stream nor in \
                     this repository: the stream was sent with a --base this repository does \
                     not hold; receive the base first. Nothing was received"
                ))
            })?,
        };
        check_map(&stream_name, &what, &map, bytes, bs)?;
        let needed = map.entries().iter().map(|e| e.1).chain(match &what {
            Planned::Volume { private, .. } => private.iter().map(|p| p.1).collect(),
            Planned::Object(_) => Vec::new(),
        });
        for h in needed {
            if !h.is_zero() && stored_len(&h)?.is_none() {
                return Err(Error::invalid(format!(
                    "'{stream_name}' needs block {h}, which is neither in the stream nor in \
                     this repository: the stream was sent with a --base this repository does \
                     not hold; receive the base first. Nothing was received"
                )));
            }
        }
        check_last_block(&stream_name, &what, &map, bytes, bs, stored_len)?;
        out.push(Plan {
            kind,
            stream_name,
            name,
            bytes,
            map_id,
            map,
            what,
        });
    }
    Ok(out)
}

/// Refuses a resource whose last block holds bytes past the resource's size: its stored
/// length (trailing zeros stripped, so a longer one has a non-zero byte past the end) must be
/// at most `size - its offset`. Read from the stream's block lengths or, for a block this
/// repository has, from the store (a stat, no read). Only the last block can be partial.
fn check_last_block(
    name: &str,
    what: &Planned,
    map: &BlockMap,
    size: u64,
    bs: u32,
    stored_len: &dyn Fn(&BlockHash) -> Result<Option<u64>>,
) -> Result<()> {
    let bs = bs as u64;
    let Some(last) = size.div_ceil(bs).checked_sub(1) else {
        return Ok(());
    };
    let room = size - last * bs;
    let private = match what {
        Planned::Volume { private, .. } => private.last().filter(|p| p.0 == last).map(|p| p.1),
        Planned::Object(_) => None,
    };
    for h in [Some(map.hash_at(last)), private].into_iter().flatten() {
        if h.is_zero() {
            continue;
        }
        let len = stored_len(&h)?.unwrap_or(0);
        if len > room {
            return Err(Error::BadStream {
                reason: format!(
                    "the last block of '{}' ({h}, at offset {}) holds {len} bytes, but only \
                     {room} fit before its size of {size} bytes (non-zero bytes past the end)",
                    crate::services::names::escape_control(name),
                    last * bs
                ),
            });
        }
    }
    Ok(())
}

/// Refuses a map that does not fit the record naming it.
fn check_map(name: &str, what: &Planned, map: &BlockMap, bytes: u64, bs: u32) -> Result<()> {
    let fits = map.block_size() == bs
        && match what {
            Planned::Object(rec) => map.size() == bytes && map.top_hash().to_hex() == rec.hash,
            Planned::Volume { .. } => map.block_count() <= bytes.div_ceil(bs as u64),
        };
    if fits {
        return Ok(());
    }
    Err(Error::BadStream {
        reason: format!("the map of '{name}' does not match its record (size, hash or block size)"),
    })
}

/// The id the received volume gets: the sender's when no volume here uses it and no
/// directory stands at it, else a new one.
fn volume_id(repo: &Repository, cat: &Db, id: &str, planned: &HashSet<String>) -> Result<String> {
    let free = is_uuid(id)
        && !planned.contains(id)
        && !volume_id_used(cat, id)?
        && !repo.private_store().has_volume(id)?;
    Ok(if free { id.to_string() } else { new_uuid() })
}

fn volume_id_used(cat: &Db, id: &str) -> Result<bool> {
    let mut used = false;
    cat.for_each_volume(&mut |_, v| {
        used = v.id == id;
        Ok(!used)
    })?;
    Ok(used)
}

/// Writes the private blocks of a received volume into `volumes/<id>/1/` from the store
/// (every block is there: the batch committed), durably.
fn write_private(
    repo: &Repository,
    p: &Plan,
    id: &str,
    private: &[(u64, BlockHash)],
) -> Result<()> {
    let Planned::Volume { record, .. } = &p.what else {
        return Ok(());
    };
    let resource = format!("volume {}", p.name);
    let bs = record.block_size as u64;
    let epoch = crate::services::volumes::private::open_for_io(repo, id, 1, bs, &resource)?;
    let blocks = VolumeBlocks::new(repo.backend(), p.map.clone(), epoch, resource);
    let mut buf = Vec::new();
    for &(index, hash) in private {
        crate::interrupt::check()?;
        if hash.is_zero() {
            blocks.zero_block(index)?;
            continue;
        }
        crate::storage::export::read_one(repo.backend(), &hash, bs as usize, true, &mut buf)
            .map_err(|f| f.with_location(&hash, index * bs, &format!("volume {}", p.name)))?;
        let len = (record.size - index * bs).min(bs) as usize;
        blocks.write_at(index * bs, &buf[..len])?;
    }
    blocks.finish()
}

/// Adds every planned resource in one transaction (step 5).
fn commit(cat: &Db, plan: &[Plan]) -> Result<()> {
    // Snapshots of a received volume keep naming it, by its id and name here.
    let mut moved: HashMap<String, (String, String)> = HashMap::new();
    for p in plan {
        if let Planned::Volume { id, record, .. } = &p.what {
            moved.insert(record.id.clone(), (id.clone(), p.name.clone()));
        }
    }
    let now = crate::time::now_rfc3339();
    for p in plan {
        match &p.what {
            Planned::Object(rec) => {
                if cat.has_object(&p.name)? {
                    return Err(exists("object", &p.name, &p.stream_name));
                }
                let mut rec = (**rec).clone();
                if uuid_used(cat, &rec.uuid)? {
                    rec.uuid = new_uuid();
                }
                if let Some(img) = &mut rec.image
                    && let Some(from) = img.properties.get("SOURCE_VOLUME_ID").cloned()
                    && let Some((id, name)) = moved.get(&from)
                {
                    img.properties.insert("SOURCE_VOLUME_ID".into(), id.clone());
                    img.properties.insert(SOURCE_VOLUME.into(), name.clone());
                }
                cat.put_object(&p.name, &rec)?;
            }
            Planned::Volume { id, record, .. } => {
                if cat.has_volume(&p.name)? {
                    return Err(exists("volume", &p.name, &p.stream_name));
                }
                if volume_id_used(cat, id)? {
                    return Err(Error::Busy {
                        resource: format!("volume id {id} (taken while receiving; retry)"),
                    });
                }
                let mut rec = (**record).clone();
                rec.id = id.clone();
                rec.epoch = 1;
                rec.status = STATUS_AVAILABLE.into();
                rec.creation = None;
                rec.modified_at = now.clone();
                cat.put_volume(&p.name, &rec)?;
            }
        }
    }
    Ok(())
}

fn uuid_used(cat: &Db, uuid: &str) -> Result<bool> {
    let mut used = false;
    cat.objects_by_id_or_display(uuid, "", &mut |_, r| {
        used |= r.uuid == uuid;
        Ok(!used)
    })?;
    Ok(used)
}
