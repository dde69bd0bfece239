//! Moving resources between repositories (`send`, `receive`, `copy`) and comparing them
//! (`diff`): this module resolves the names these commands take to resources and reads a
//! resource's content as block hashes, from its map and (for a volume) its private blocks,
//! never from shared data.
//!
//! Not to be confused with `services::volumes::transfer`, which imports and exports the
//! bytes of one volume as a disk image file.

pub mod copy;
pub mod diff;
mod flush;
pub mod receive;
pub mod send;
mod stage;
mod take_back;
mod wire;

use crate::error::{Error, Result};
use crate::repo::Repository;
use crate::repo::db::Db;
use crate::repo::records::{ObjectRecord, VolumeRecord};
use crate::services::images::{Among, resolve, resource_kind};
use crate::services::names::ObjectName;
use crate::services::objects::load_map;
use crate::services::volumes::{self, STATUS_CREATING};
use crate::storage::{BlockHash, BlockMap};
use std::collections::BTreeMap;

/// A resource named on the command line.
#[derive(Debug, Clone)]
pub enum Target {
    /// A volume, by name.
    Volume { name: String, record: VolumeRecord },
    /// An object (plain, image or snapshot) at its current version, or at `version`.
    Object {
        name: String,
        record: ObjectRecord,
        version: Option<u64>,
    },
}

impl Target {
    /// `volume`, `object`, `image` or `snapshot`.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Volume { .. } => "volume",
            Target::Object { record, .. } => resource_kind(record),
        }
    }

    /// The name as given back to the user (`NAME@N` for a version).
    pub fn label(&self) -> String {
        match self {
            Target::Volume { name, .. } => name.clone(),
            Target::Object {
                name,
                version: Some(v),
                ..
            } => format!("{name}@{v}"),
            Target::Object { name, .. } => name.clone(),
        }
    }
}

/// Resolves `spec`: a volume name, an object name, an image or snapshot reference (id, id
/// prefix, display name), or `NAME@N` for version N of an object.
pub fn resolve_target(cat: &Db, spec: &str) -> Result<Target> {
    if let Some(record) = cat.volume(spec)? {
        return Ok(Target::Volume {
            name: spec.to_string(),
            record,
        });
    }
    if let Some((base, v)) = spec.rsplit_once('@')
        && !v.is_empty()
        && v.bytes().all(|b| b.is_ascii_digit())
        && !cat.has_object(spec)?
    {
        let version: u64 = v.parse().map_err(|_| {
            Error::invalid(format!(
                "'{spec}': version {v} is not a number that arch keeps"
            ))
        })?;
        let name = resolve(cat, base, Among::Resources)?;
        let record =
            crate::services::versions::find_at(cat, &ObjectName::parse(&name)?, Some(version))?;
        return Ok(Target::Object {
            name,
            record,
            version: Some(version),
        });
    }
    let name = resolve(cat, spec, Among::Resources).map_err(|e| match e {
        Error::NotFound {
            name, suggestion, ..
        } => Error::NotFound {
            kind: "volume or object",
            name,
            suggestion,
        },
        e => e,
    })?;
    let record = cat.object(&name)?.ok_or_else(|| Error::NotFound {
        kind: "object",
        name: name.clone(),
        suggestion: None,
    })?;
    Ok(Target::Object {
        name,
        record,
        version: None,
    })
}

/// A resource's content as hashes: the map it reads through and, for a volume, the hashes
/// of its private blocks (which override the map; a zero hash is a private block of zeros).
#[derive(Debug, Clone)]
pub struct Content {
    pub size: u64,
    pub block_size: u32,
    pub map: BlockMap,
    pub private: BTreeMap<u64, BlockHash>,
}

impl Content {
    /// Number of blocks.
    pub fn blocks(&self) -> u64 {
        self.size.div_ceil(self.block_size as u64)
    }

    /// Hash of block `index` as the resource reads it (zero past the end).
    pub fn hash_at(&self, index: u64) -> BlockHash {
        if index >= self.blocks() {
            return BlockHash::ZERO;
        }
        match self.private.get(&index) {
            Some(h) => *h,
            None => self.map.hash_at(index),
        }
    }

    /// Indexes of the blocks that may hold data (map entries and private blocks), sorted.
    pub fn data_indexes(&self) -> Vec<u64> {
        let blocks = self.blocks();
        let mut out: Vec<u64> = self
            .map
            .entries()
            .iter()
            .map(|e| e.0)
            .take_while(|&i| i < blocks)
            .chain(self.private.keys().copied())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Every distinct non-zero hash the resource reads.
    pub fn hashes(&self) -> impl Iterator<Item = BlockHash> + '_ {
        (self.data_indexes().into_iter())
            .map(|i| self.hash_at(i))
            .filter(|h| !h.is_zero())
    }
}

/// Reads the content of `target`. A volume is opened for reading (its lock shared) while its
/// private blocks are hashed: each is read, cut to the volume's size and hashed by the block
/// rule. A volume still `creating` is refused.
pub fn load_content(repo: &Repository, target: &Target) -> Result<Content> {
    match target {
        Target::Object { name, record, .. } => {
            let map = load_map(repo, name, record)?;
            Ok(Content {
                size: record.bytes,
                block_size: record.block_size,
                map,
                private: BTreeMap::new(),
            })
        }
        Target::Volume { name, .. } => {
            let vol = volumes::open(repo, name, false)?;
            let private = private_hashes(&vol)?;
            Ok(Content {
                size: vol.record.size,
                block_size: vol.record.block_size,
                map: vol.blocks.base().clone(),
                private,
            })
        }
    }
}

/// The hashes of the live private blocks of an open volume (by the block rule, only the
/// bytes inside the volume count).
pub fn private_hashes(vol: &volumes::OpenVolume<'_>) -> Result<BTreeMap<u64, BlockHash>> {
    let bs = vol.record.block_size as u64;
    let mut buf = Vec::new();
    let mut out = BTreeMap::new();
    for index in vol.live_private()? {
        crate::interrupt::check()?;
        vol.blocks.read_private(index, &mut buf)?;
        let len = (vol.record.size - index * bs).min(bs) as usize;
        out.insert(index, BlockHash::of_block(&buf[..len]));
    }
    Ok(out)
}

/// Refuses a volume that is still being created (its content is not final).
fn refuse_creating(name: &str, rec: &VolumeRecord) -> Result<()> {
    if rec.status == STATUS_CREATING {
        return Err(Error::invalid(format!(
            "volume '{name}' is still being created (status creating); finish it with \
             `arch customize {name}` or remove it, then send it"
        )));
    }
    Ok(())
}

/// Parses `--rename OLD=NEW` pairs into a map, refusing a name renamed twice.
pub fn renames(pairs: &[(String, String)]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (old, new) in pairs {
        if out.insert(old.clone(), new.clone()).is_some() {
            return Err(Error::invalid(format!(
                "--rename {old}=... is given twice; give each resource one new name"
            )));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;

/// Asks for a 1 MiB buffer on `fd` when it is a pipe (Linux `F_SETPIPE_SZ`; the default
/// 64 KiB makes `send | receive` trade places every 64 KiB). Best effort: anything else,
/// or a refusal, leaves it as it is.
pub fn widen_pipe(fd: &impl std::os::fd::AsRawFd) {
    // SAFETY: fcntl on a descriptor we hold, with an integer argument; no memory passed.
    unsafe {
        libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20);
    }
}
