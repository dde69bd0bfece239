//! Taking back what a failed `receive` added to an object store: the block objects it
//! created and nothing references (docs/FORMAT.md "Send streams", "Refused on a store").
//!
//! On local disk a receive stages its blocks in `tmp/` and publishes them only once the whole
//! stream checked, so a refused stream leaves nothing. In a store an upload is visible at
//! once, so the receive remembers which block objects its own create-only PUTs created
//! ([`crate::storage::backend::BlockBatch::created`]: of racing writers exactly one creates;
//! a block it found there is never on the list) and, when it fails, deletes those no
//! committed map names.
//!
//! Why no block anyone relies on is lost: another command (on any host) that met one of our
//! objects while we ran may have skipped its own upload and committed a map naming it. Every
//! command with blocks in flight holds the shared data lock until it committed or gave up,
//! so the deletion happens only under the exclusive data lock (the advisory lock every host
//! shares when the catalog is on PostgreSQL; with a local catalog the `flock`, and only when
//! no other DIR with a catalog of its own shares the store): then no command is between its
//! look at the store and its commit, and a block named by no map of the committed catalog is
//! one nothing will name. A block some map names, even an old one it healed (a block that
//! was missing), is kept. The exclusive lock is only tried, never waited for (a server may
//! hold the shared lock for hours): when it is busy, or anything fails here, the blocks stay
//! as unreferenced garbage that `arch gc` removes, with a warning. So does a receive killed
//! mid-way (nothing runs to take anything back).

use crate::error::{Error, Result};
use crate::repo::Repository;
use crate::repo::lock::FileLock;
use crate::storage::BlockHash;
use std::collections::HashSet;

/// Releases `shared` (the receive's data lock) and deletes the blocks of `created` that no
/// committed map names, as the module documentation says; what it cannot delete it leaves to
/// gc, saying so on stderr. Never fails: the receive's own error is the one to report.
pub fn take_back(repo: &Repository, shared: FileLock, created: Vec<BlockHash>) {
    if created.is_empty() {
        return;
    }
    drop(shared);
    let n = created.len();
    let why = match delete_unreferenced(repo, created) {
        Ok(true) => return,
        Ok(false) => "another command is using the repository".to_string(),
        Err(e) => e.to_string(),
    };
    eprintln!(
        "arch: warning: the {n} blocks this receive uploaded stay in the store as unreferenced \
         garbage ({why}); `arch gc` removes them"
    );
}

/// Deletes the blocks of `created` no committed map names, under the exclusive data lock;
/// false (nothing deleted) when that lock is held or the store is shared with another DIR.
fn delete_unreferenced(repo: &Repository, created: Vec<BlockHash>) -> Result<bool> {
    let Some(s3) = repo.backend().as_s3() else {
        return Ok(true);
    };
    let Some(_exclusive) = repo.try_lock_data_exclusive()? else {
        return Ok(false);
    };
    // Another DIR with its own catalog and locks may reference them: none of ours covers it.
    if crate::repo::check_sole_store_user(repo, s3).is_err() {
        return Ok(false);
    }
    let mut doomed: HashSet<BlockHash> = created.into_iter().collect();
    let maps = repo
        .catalog()?
        .read(crate::integrity::refs::referenced_map_ids)?;
    for id in &maps {
        if doomed.is_empty() {
            break;
        }
        crate::interrupt::check()?;
        let map = repo.backend().read_map(id)?.ok_or_else(|| Error::Corrupt {
            path: repo.backend().map_location(id),
            reason: format!(
                "referenced map {id} is missing, so which blocks it needs is unknown (run `arch fsck`)"
            ),
        })?;
        for e in map.entries() {
            doomed.remove(&e.1);
        }
    }
    let doomed: Vec<BlockHash> = doomed.into_iter().collect();
    s3.delete_blocks(&doomed)?;
    Ok(true)
}
