//! Object versions (Pithos semantics): every `put` over an object keeps the previous version
//! (same uuid, version + 1). This module reads a given version, lists an object's history,
//! restores an old version as a new one (metadata only: no block is copied) and prunes old
//! versions by count or age. The current version is never pruned; `rm` removes the history.

use super::names::ObjectName;
use super::objects::find;
use crate::error::{Error, Result};
use crate::repo::Repository;
use crate::repo::db::Db;
use crate::repo::records::ObjectRecord;
use crate::time::now_rfc3339;
use serde::Serialize;
use std::time::{Duration, SystemTime};

/// The record of `name` at `version` (the current one when None). An old version's record
/// carries no image registration: an image describes its object's current version.
pub fn find_at(cat: &Db, name: &ObjectName, version: Option<u64>) -> Result<ObjectRecord> {
    let current = find(cat, name)?;
    let Some(v) = version.filter(|&v| v != current.version) else {
        return Ok(current);
    };
    let mut found = None;
    let mut kept = Vec::new();
    cat.for_each_version(Some(&name.full()), &mut |_, rec| {
        kept.push(rec.version.to_string());
        if rec.version == v {
            found = Some(rec);
            return Ok(false);
        }
        Ok(true)
    })?;
    found.ok_or_else(|| {
        Error::invalid(format!(
            "object '{}' has no version {v}; kept versions: {} (see `arch history {}`)",
            name.full(),
            kept.join(", "),
            name.full()
        ))
    })
}

/// One version in a history.
#[derive(Debug, Clone, Serialize)]
pub struct VersionEntry {
    pub version: u64,
    pub bytes: u64,
    pub hash: String,
    pub modified: String,
    pub content_type: String,
    pub current: bool,
}

/// The kept versions of `name`, newest first.
pub fn history(repo: &Repository, name: &ObjectName) -> Result<Vec<VersionEntry>> {
    repo.catalog()?.read(|cat| {
        let current = find(cat, name)?.version;
        let mut out = Vec::new();
        cat.for_each_version(Some(&name.full()), &mut |_, rec| {
            out.push(VersionEntry {
                current: rec.version == current,
                version: rec.version,
                bytes: rec.bytes,
                hash: rec.hash,
                modified: rec.modified,
                content_type: rec.content_type,
            });
            Ok(true)
        })?;
        Ok(out)
    })
}

/// Makes the content and metadata of `version` the object's new current version (version
/// + 1): one catalog transaction, no block copied. Returns the new current version.
pub fn restore(repo: &Repository, name: &ObjectName, version: u64) -> Result<u64> {
    repo.transact(|cat| {
        let current = find(cat, name)?;
        let old = find_at(cat, name, Some(version))?;
        let record = ObjectRecord {
            version: current.version + 1,
            modified: now_rfc3339(),
            image: current.image,
            created: current.created,
            uuid: current.uuid,
            ..old
        };
        cat.put_object(&name.full(), &record)?;
        Ok(record.version)
    })
}

/// Which old versions [`prune`] removes.
#[derive(Debug, Clone, Copy)]
pub enum Retention {
    /// Keep the newest N versions of each object (the current one counts).
    Keep(u64),
    /// Remove old versions last modified longer ago than this.
    OlderThan(Duration),
}

/// One version [`prune`] removed (or would remove).
#[derive(Debug, Clone, Serialize)]
pub struct Pruned {
    pub name: String,
    pub version: u64,
    pub bytes: u64,
}

/// Removes the old versions of `names` (every object when empty) that `retention` does not
/// keep, in one transaction (none with `dry_run`). Their blocks are left to `arch gc`.
pub fn prune(
    repo: &Repository,
    names: &[ObjectName],
    retention: Retention,
    dry_run: bool,
) -> Result<Vec<Pruned>> {
    if matches!(retention, Retention::Keep(0)) {
        return Err(Error::invalid(
            "--keep 0 would remove current versions; use `arch rm` to remove objects",
        ));
    }
    let now = SystemTime::now();
    let change = |cat: &Db| -> Result<Vec<Pruned>> {
        let mut doomed: Vec<(String, ObjectRecord)> = Vec::new();
        let mut pick = |full: Option<String>| -> Result<()> {
            let (mut seen, mut last) = (0u64, String::new());
            let mut current = None;
            cat.for_each_version(full.as_deref(), &mut |name, rec| {
                if name != last {
                    (seen, last) = (0, name.clone());
                    current = cat.object(&name)?.map(|c| c.version);
                }
                seen += 1;
                let old = current != Some(rec.version);
                let drop = old
                    && match retention {
                        Retention::Keep(n) => seen > n,
                        Retention::OlderThan(age) => humantime::parse_rfc3339(&rec.modified)
                            .is_ok_and(|t| now.duration_since(t).is_ok_and(|d| d > age)),
                    };
                if drop {
                    doomed.push((name, rec));
                }
                Ok(true)
            })
        };
        if names.is_empty() {
            pick(None)?;
        } else {
            for n in names {
                find(cat, n)?;
                pick(Some(n.full()))?;
            }
        }
        let mut out = Vec::new();
        for (name, rec) in doomed {
            if !dry_run {
                cat.remove_version(&rec.uuid, rec.version)?;
            }
            out.push(Pruned {
                name,
                version: rec.version,
                bytes: rec.bytes,
            });
        }
        Ok(out)
    };
    if dry_run {
        repo.catalog()?.read(change)
    } else {
        repo.transact(change)
    }
}
