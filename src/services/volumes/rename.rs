//! Renaming a volume: metadata only (one catalog commit); its id, blocks, epoch and lock
//! stay, so the snapshots taken from it (which name its id) still follow it.

use super::{find, open, validate_volume_name};
use crate::error::{Error, Result};
use crate::repo::Repository;
use serde::Serialize;

/// What [`rename`] did.
#[derive(Debug, Clone, Serialize)]
pub struct RenameReport {
    pub from: String,
    pub to: String,
    pub id: String,
}

/// Renames volume `from` to `to`. Refused, changing nothing, when `to` exists, or while
/// `from` is served read-write, being created, or used by a writer (it is opened as a writer).
pub fn rename(repo: &Repository, from: &str, to: &str) -> Result<RenameReport> {
    validate_volume_name(to)?;
    let exists = || Error::AlreadyExists {
        kind: "volume",
        name: to.to_string(),
        fix: "choose another name, or remove it first with `arch volume rm`".into(),
    };
    if from != to && repo.catalog()?.has_volume(to)? {
        return Err(exists());
    }
    let vol = open(repo, from, true)?;
    let id = vol.record.id.clone();
    repo.transact(|cat| {
        let rec = find(cat, from)?;
        if rec.id != id {
            return Err(Error::Busy {
                resource: format!("volume '{from}' (replaced while waiting)"),
            });
        }
        if from == to {
            return Ok(());
        }
        if cat.has_volume(to)? {
            return Err(exists());
        }
        cat.remove_volume(from)?;
        cat.put_volume(to, &rec)
    })?;
    Ok(RenameReport {
        from: from.to_string(),
        to: to.to_string(),
        id,
    })
}
