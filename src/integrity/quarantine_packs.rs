//! Quarantine of packs (`fsck --repair`): a pack with a corrupt entry or a damaged index is
//! moved, whole, into `quarantine/packs/`, after its good entries (each verified) were
//! written into a new pack that is durable and visible in `packs/`. A packed block is never
//! moved alone (a pack never changes), and a good block is never lost: it is in the new pack
//! before the old one leaves the store.
//!
//! Order: good entries appended to a new pack in a private directory under `tmp/`, the pack
//! fsynced, renamed into `packs/`, `packs/` fsynced; then the damaged pack renamed (never
//! replacing a file) into `quarantine/packs/`, both directories fsynced. A crash in between
//! leaves the good entries twice (harmless). Runs under the exclusive data lock.

use super::quarantine::move_to_quarantine;
use crate::error::{Error, Result};
use crate::repo::Repository;
use crate::storage::fsutil::{create_dir, remove_path, sync_dir};
use crate::storage::pack::format::entry_matches;
use crate::storage::pack::index::{list_pack_names, read_pack};
use crate::storage::pack::{Entry, PACK_TARGET, PACKS_DIR, PackWriter};
use crate::storage::{BlockHash, BlockHashSet};
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// What became of a block reported corrupt, for a packed block.
pub enum PackRepair {
    /// No pack holds the block: the loose-block path applies.
    NotPacked,
    /// Its pack verifies now: nothing done.
    Sound,
    /// Its pack was moved (now or earlier in this run): what was done, for the report.
    Moved(String),
}

/// What `fsck --repair` did to packs in this run.
#[derive(Default)]
pub struct Moved {
    /// Packs moved to quarantine, by their former path, with what was said.
    packs: HashMap<PathBuf, String>,
    /// Each block whose bad copies were handled (a block with two bad copies is two
    /// problems, and a pack with two bad blocks serves two: it left `packs/` at the first).
    blocks: HashMap<BlockHash, String>,
}

impl Moved {
    pub fn new() -> Moved {
        Moved::default()
    }
}

/// Repairs every pack holding the corrupt block `hash` whose entries do not all verify (a
/// block may have copies in several packs, any of which a reader may pick; see the module
/// comment). Reads the index of every pack (no data) to find them.
pub fn repair_block(repo: &Repository, hash: &BlockHash, moved: &mut Moved) -> Result<PackRepair> {
    let Some(packs) = repo.backend().as_local().and_then(|l| l.packs()) else {
        return Ok(PackRepair::NotPacked);
    };
    if let Some(done) = moved.blocks.get(hash) {
        return Ok(PackRepair::Moved(done.clone()));
    }
    let max = u64::from(repo.block_size());
    let mut done: Vec<String> = Vec::new();
    let mut found = false;
    for id in list_pack_names(packs.dir())? {
        let path = packs.path_of(&id);
        let holds = matches!(read_pack(&path, &id, max)?,
            Some(Ok(es)) if es.iter().any(|e| e.hash == *hash));
        if !holds {
            continue;
        }
        found = true;
        if let PackRepair::Moved(what) = repair_pack(repo, &path, moved)? {
            done.push(what);
        }
    }
    Ok(match (found, done.is_empty()) {
        (false, _) => PackRepair::NotPacked,
        (true, true) => PackRepair::Sound,
        (true, false) => {
            let done = done.join("; ");
            moved.blocks.insert(*hash, done.clone());
            PackRepair::Moved(done)
        }
    })
}

/// Verifies every entry of the pack at `path`; when one is bad, saves the good ones into a
/// new pack and moves the pack into quarantine (see the module comment).
fn repair_pack(repo: &Repository, path: &Path, moved: &mut Moved) -> Result<PackRepair> {
    if let Some(done) = moved.packs.get(path) {
        return Ok(PackRepair::Moved(done.clone()));
    }
    let Some(id) = pack_id(path) else {
        return Ok(PackRepair::NotPacked);
    };
    let max = u64::from(repo.block_size());
    let entries = match read_pack(path, &id, max)? {
        None => return Ok(PackRepair::NotPacked),
        Some(Err(_)) => Vec::new(), // damaged since it was indexed: nothing to salvage
        Some(Ok(entries)) => entries,
    };
    let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    // Each good block saved once: a pack listing a block many times (hostile, or two
    // copies) gives the new pack one copy of it, not one per entry. Only where the good
    // entries are is kept here, not their bytes: memory is one block, whatever the pack.
    let mut good = Vec::new();
    let mut saved = BlockHashSet::default();
    let mut bad_hashes = Vec::new();
    let mut buf = Vec::new();
    for e in &entries {
        if entry_matches(&file, e, &mut buf) {
            if saved.insert(e.hash) {
                good.push(*e);
            }
        } else {
            bad_hashes.push(e.hash);
        }
    }
    if bad_hashes.is_empty() && !entries.is_empty() {
        return Ok(PackRepair::Sound);
    }
    let done = quarantine_pack(repo, path, Some((&file, &good)), bad_hashes.len())?;
    moved.packs.insert(path.to_path_buf(), done.clone());
    // The other bad blocks of this pack are handled too (it has left `packs/`).
    for h in bad_hashes {
        moved.blocks.entry(h).or_insert_with(|| done.clone());
    }
    Ok(PackRepair::Moved(done))
}

/// Moves the pack at `path`, whose index is damaged, into quarantine (nothing can be
/// salvaged: its entries are unknown). None when it is gone or verifies now.
pub fn repair_damaged(repo: &Repository, path: &Path) -> Result<Option<String>> {
    let Some(id) = pack_id(path) else {
        return Ok(None);
    };
    match read_pack(path, &id, u64::from(repo.block_size()))? {
        Some(Err(_)) => quarantine_pack(repo, path, None, 0).map(Some),
        _ => Ok(None),
    }
}

fn pack_id(path: &Path) -> Option<BlockHash> {
    path.file_name()?.to_str()?.parse().ok()
}

/// Writes the `good` entries of the pack open as `file` (each read and verified again, one at a
/// time) into a new pack (durable, visible), then moves `path` into `quarantine/packs/`;
/// returns what was done.
fn quarantine_pack(
    repo: &Repository,
    path: &Path,
    good: Option<(&File, &[Entry])>,
    bad: usize,
) -> Result<String> {
    let (file, good) = match good {
        Some((file, good)) => (Some(file), good),
        None => (None, &[][..]),
    };
    let packs_dir = repo.root().join(PACKS_DIR);
    let mut copied = 0usize;
    if !good.is_empty() {
        let work = repo.tmp_dir().join(format!(
            "repair-pack-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        create_dir(&work, repo.modes())?;
        let written = (|| {
            let w = PackWriter::new(&work, repo.modes().sealed(), PACK_TARGET);
            let mut buf = Vec::new();
            for e in good {
                // Verified again as it is copied: what is saved is what was checked.
                if file.is_some_and(|f| entry_matches(f, e, &mut buf)) {
                    w.append(&e.hash, &buf)
                        .map_err(|e| Error::io("write pack in", &work, e))?;
                    copied += 1;
                }
            }
            let made = w
                .finish()
                .map_err(|e| Error::io("write pack index in", &work, e))?;
            for p in &made {
                File::open(&p.path)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| Error::io("fsync", &p.path, e))?;
            }
            crate::storage::packed::publish(&made, &packs_dir, repo.modes())?;
            sync_dir(&packs_dir)
        })();
        let cleaned = remove_path(&work);
        written?;
        cleaned?;
    }
    let hex = path.file_name().unwrap_or_default().to_string_lossy();
    let to = move_to_quarantine(repo, PACKS_DIR, &hex, path)?;
    let rel = |p: &Path| {
        p.strip_prefix(repo.root())
            .unwrap_or(p)
            .display()
            .to_string()
    };
    Ok(if bad == 0 {
        format!("moved pack {} (damaged index) to {}", rel(path), rel(&to))
    } else {
        format!(
            "moved pack {} ({bad} corrupt entries) to {}, after copying its {} good entries into a new pack",
            rel(path),
            rel(&to),
            copied
        )
    })
}
