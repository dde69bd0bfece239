//! Quarantine: `fsck --repair` moves corrupt blocks and maps (and whatever non-regular file
//! holds a block's or map's name) out of the store into `quarantine/blocks/` and
//! `quarantine/maps/`. The resources that need them stay damaged, and are reported as such,
//! until the same data is put again: a block or map missing from the store is written anew
//! by the next put, import or snapshot holding it, which heals every resource sharing it.
//!
//! Invariants: a file is moved only after it is verified bad again under the exclusive data
//! lock (never a good block, never one that could not be read for another reason); the move
//! is one rename, made durable (both directories fsynced) before it is reported; gc never
//! looks into `quarantine/`.

use super::entries::{self, EntryScan};
use super::fsck::Problem;
use crate::error::Result;
use crate::repo::Repository;
use crate::repo::db::Db;
use crate::storage::fsutil::{Modes, create_dir_all, open_regular, sync_dir, sync_parent};
use crate::storage::local::{BLOCKS_DIR, MAPS_DIR};
use crate::storage::pack::PACKS_DIR;
use crate::storage::{BlockHash, BlockMap};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The quarantine directory under the repository root.
pub const QUARANTINE_DIR: &str = "quarantine";

/// Store kinds a file can be quarantined from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Block,
    Map,
}

impl Kind {
    fn dir(self) -> &'static str {
        match self {
            Kind::Block => BLOCKS_DIR,
            Kind::Map => MAPS_DIR,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Kind::Block => "block",
            Kind::Map => "map",
        }
    }
}

/// What fsck adds from here, given the problems it found (with `repair`, under the exclusive
/// data lock): special files and exposed modes, quarantine moves, notes on quarantined blocks.
pub fn check(
    repo: &Repository,
    db: &Db,
    repair: bool,
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<String>,
    repaired: &mut Vec<String>,
) -> Result<()> {
    let EntryScan {
        mut special,
        mut exposed,
    } = entries::scan(repo)?;
    // Whatever is in tmp/ is garbage that repair and gc remove; quarantine/ is set aside.
    let (tmp, held) = (repo.tmp_dir(), repo.root().join(QUARANTINE_DIR));
    special.retain(|(p, _)| !p.starts_with(&tmp) && !p.starts_with(&held));
    let strays = super::fsck_packs::scan_dir(repo)?;
    special.extend(strays.dirs);
    warnings.extend(strays.warnings);
    for (path, kind) in &special {
        let rel = relative(repo, path);
        problems.push(Problem {
            kind: "not_regular_file".into(),
            subject: rel.clone(),
            resources: vec![],
            message: format!(
                "{rel} is {kind}, not a regular file: arch never follows links nor opens special files in a repository{}",
                if store_name(repo, path).is_some() {
                    " (`arch fsck --repair` moves it to quarantine/)"
                } else {
                    "; restore the file by hand"
                }
            ),
        });
    }
    if repair {
        for (path, _) in &special {
            if let Some((dir, hex)) = store_name(repo, path) {
                let to = move_to_quarantine(repo, dir, &hex, path)?;
                // Its modes (a directory's too) are quarantine's business now.
                exposed.retain(|(p, _)| !p.starts_with(path));
                repaired.push(format!(
                    "moved {} (not a regular file) to {}",
                    relative(repo, path),
                    relative(repo, &to)
                ));
            }
        }
        let (fixed, failed) = entries::fix_modes(repo, &exposed);
        if !fixed.is_empty() {
            repaired.push(format!(
                "made {} entries private to the repository ({})",
                fixed.len(),
                access_text(repo.modes())
            ));
        }
        for (path, why) in failed {
            warnings.push(format!(
                "{} stays accessible to others: {why}; its owner must run `arch fsck --repair`",
                relative(repo, &path)
            ));
        }
        quarantine_corrupt(repo, db, problems, repaired)?;
    } else if let Some((path, mode)) = exposed.first() {
        warnings.push(format!(
            "{} entries are accessible to users outside the repository ({}), e.g. {} has mode {mode:04o}; run `arch fsck --repair` to restrict them",
            exposed.len(),
            access_text(repo.modes()),
            relative(repo, path)
        ));
    }
    note_quarantined(repo, problems, warnings)?;
    Ok(())
}

/// True when block `hash` is stored and its bytes match it (read through the backend, which
/// looks again at `packs/` when the pack its index named has left).
fn reads_back_good(repo: &Repository, hash: &BlockHash) -> Result<bool> {
    let mut buf = Vec::new();
    Ok(repo.backend().read_block(hash, &mut buf)? && BlockHash::of_bytes(&buf) == *hash)
}

fn access_text(modes: Modes) -> &'static str {
    if modes.shared {
        "shared with its group: directories 2770, files 0660"
    } else {
        "private to its owner: directories 0700, files 0600"
    }
}

/// Moves each block or map reported corrupt that is still corrupt.
fn quarantine_corrupt(
    repo: &Repository,
    db: &Db,
    problems: &mut [Problem],
    repaired: &mut Vec<String>,
) -> Result<()> {
    let mut moved_packs = super::quarantine_packs::Moved::new();
    let mut said = std::collections::HashSet::new();
    for p in problems.iter_mut() {
        if p.kind == "corrupt_pack"
            && let Some(done) =
                super::quarantine_packs::repair_damaged(repo, Path::new(&p.subject))?
        {
            p.message.push_str(&format!("; {done}"));
            repaired.push(done);
            continue;
        }
        if p.kind == "corrupt_block"
            && let Ok(hash) = p.subject.parse::<BlockHash>()
        {
            use super::quarantine_packs::{PackRepair, repair_block};
            match repair_block(repo, &hash, &mut moved_packs)? {
                PackRepair::NotPacked => {}
                PackRepair::Sound => continue,
                PackRepair::Moved(done) => {
                    p.message.push_str(&format!("; {done}"));
                    // One line per block and outcome, however many bad copies (problems)
                    // a pack listing it many times gave: the lookups below run once.
                    if !said.insert((hash, done.clone())) {
                        continue;
                    }
                    let needed = needed_by(db, &p.resources);
                    let line = if needed.is_empty() {
                        format!("corrupt block {}: {done}; nothing needs it", p.subject)
                    } else if reads_back_good(repo, &hash)? {
                        // A good copy was saved from the pack, or another pack holds one.
                        format!(
                            "corrupt block {}: {done}; a good copy is still stored: {} read back whole",
                            p.subject,
                            needed.join(", ")
                        )
                    } else {
                        format!(
                            "corrupt block {}: {done}; still damaged until its data is put again: {}",
                            p.subject,
                            needed.join(", ")
                        )
                    };
                    repaired.push(line);
                    continue;
                }
            }
        }
        let kind = match p.kind.as_str() {
            "corrupt_block" => Kind::Block,
            "corrupt_map" => Kind::Map,
            _ => continue,
        };
        let Ok(hash) = p.subject.parse::<BlockHash>() else {
            continue;
        };
        let path = match kind {
            Kind::Block => repo.backend().block_location(&hash),
            Kind::Map => repo.backend().map_location(&hash),
        };
        let bad = match repo.backend().as_s3() {
            Some(_) => still_bad_remote(repo, kind, &hash),
            None => still_bad(repo, kind, &hash, &path),
        };
        match bad {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                p.message
                    .push_str(&format!(" (left in place: cannot be read: {e})"));
                continue;
            }
        }
        let to = match repo.backend().as_s3() {
            Some(s3) => s3.quarantine(kind.dir(), &hash)?.display().to_string(),
            None => relative(
                repo,
                &move_to_quarantine(repo, kind.dir(), &p.subject, &path)?,
            ),
        };
        let needed = needed_by(db, &p.resources);
        p.message.push_str(&format!("; moved to {to}"));
        repaired.push(if needed.is_empty() {
            format!(
                "moved corrupt {} {} to {to}; nothing needs it",
                kind.noun(),
                p.subject
            )
        } else {
            format!(
                "moved corrupt {} {} to {to}; still damaged until its data is put again: {}",
                kind.noun(),
                p.subject,
                needed.join(", ")
            )
        });
    }
    Ok(())
}

/// True when the file of `hash` still fails verification: not a regular file, content that
/// does not hash to its name, a block longer than a block, or a map that does not decode.
/// False when it is gone or now sound. An error when it cannot be read at all.
/// A block longer than a block is judged by its length alone: a huge planted file is never read.
fn still_bad(repo: &Repository, kind: Kind, hash: &BlockHash, path: &Path) -> Result<bool> {
    let file = match open_regular(path) {
        Ok(Some(f)) => f,
        Ok(None) => return Ok(false),
        Err(crate::Error::Corrupt { .. }) => return Ok(true),
        Err(e) => return Err(e),
    };
    let len = file
        .metadata()
        .map_err(|e| crate::Error::io("stat", path, e))?
        .len();
    if kind == Kind::Block && len > u64::from(repo.block_size()) {
        return Ok(true);
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0).min(1 << 26));
    file.take(len)
        .read_to_end(&mut bytes)
        .map_err(|e| crate::Error::io("read", path, e))?;
    if BlockHash::of_bytes(&bytes) != *hash {
        return Ok(true);
    }
    Ok(match kind {
        Kind::Block => false,
        Kind::Map => BlockMap::decode(&bytes).is_err(),
    })
}

/// [`still_bad`] for an object store: the object read through the backend (a block longer
/// than a block is judged by its length alone, never read).
fn still_bad_remote(repo: &Repository, kind: Kind, hash: &BlockHash) -> Result<bool> {
    match kind {
        Kind::Block => {
            let mut buf = vec![0u8; repo.block_size() as usize];
            Ok(match repo.backend().read_block_into(hash, &mut buf)? {
                None => false,
                Some(n) if n > buf.len() => true,
                Some(n) => BlockHash::of_bytes(&buf[..n]) != *hash,
            })
        }
        Kind::Map => match repo.backend().read_map(hash) {
            Ok(_) => Ok(false),
            Err(crate::Error::Corrupt { .. }) => Ok(true),
            Err(e) => Err(e),
        },
    }
}

/// Moves `from` to `quarantine/<dir>/<hex>` (`.1`, `.2`, ... when that name is taken) with
/// one rename, both directories fsynced; never opens `from`. Returns the new path. The rename
/// never replaces a file: a name taken between the probe and the rename (another fsck) moves
/// on to the next one.
pub(super) fn move_to_quarantine(
    repo: &Repository,
    dir: &str,
    hex: &str,
    from: &Path,
) -> Result<PathBuf> {
    let dir = repo.root().join(QUARANTINE_DIR).join(dir);
    create_dir_all(&dir, repo.modes())?;
    let mut n = 0u32;
    let to = loop {
        let to = match n {
            0 => dir.join(hex),
            n => dir.join(format!("{hex}.{n}")),
        };
        match rename_noreplace(from, &to) {
            Ok(()) => break to,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
            Err(e) => return Err(crate::Error::io("move to quarantine", from, e)),
        }
    };
    sync_dir(&dir)?;
    sync_parent(from)?;
    Ok(to)
}

/// `rename(2)` that fails with `AlreadyExists` instead of replacing `to` (Linux
/// `renameat2(RENAME_NOREPLACE)`; where the filesystem lacks it, a probe then a rename).
pub(super) fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    };
    let (cfrom, cto) = (c(from)?, c(to)?);
    // SAFETY: both arguments are valid NUL-terminated paths that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            cfrom.as_ptr(),
            libc::AT_FDCWD,
            cto.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) => {
            if std::fs::symlink_metadata(to).is_ok() {
                return Err(std::io::ErrorKind::AlreadyExists.into());
            }
            std::fs::rename(from, to)
        }
        _ => Err(err),
    }
}

/// Adds to each missing-block problem that the block is in quarantine, and warns about what
/// the quarantine holds (nothing removes it but the user).
fn note_quarantined(
    repo: &Repository,
    problems: &mut [Problem],
    warnings: &mut Vec<String>,
) -> Result<()> {
    let root = repo.root().join(QUARANTINE_DIR);
    let mut held = 0;
    let mut place = format!("{QUARANTINE_DIR}/");
    for kind in [Kind::Block, Kind::Map] {
        if let Some(s3) = repo.backend().as_s3() {
            // Remote: the quarantine is `PREFIX/quarantine/<kind>s/<hex>.<unique>` in the store.
            place = format!("{}/{QUARANTINE_DIR}/", s3.url());
            let names: std::collections::HashSet<String> =
                s3.quarantined(kind.dir())?.into_iter().collect();
            held += names.len();
            let missing = match kind {
                Kind::Block => "missing_block",
                Kind::Map => "missing_map",
            };
            for p in problems.iter_mut().filter(|p| p.kind == missing) {
                if names.contains(&p.subject) {
                    p.message.push_str(&format!(
                        " (quarantined as corrupt in {place}{}/: put the original data again to restore it)",
                        kind.dir()
                    ));
                }
            }
            continue;
        }
        let dir = root.join(kind.dir());
        let missing = match kind {
            Kind::Block => "missing_block",
            Kind::Map => "missing_map",
        };
        let mut names = std::collections::HashSet::new();
        match std::fs::read_dir(&dir) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry.map_err(|e| crate::Error::io("list", &dir, e))?;
                    held += 1;
                    // `<hex>` or `<hex>.<n>` (a second copy moved aside later).
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let hex = name.split_once('.').map_or(name.as_str(), |(h, _)| h);
                    names.insert(hex.to_owned());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(crate::Error::io("list", &dir, e)),
        }
        for p in problems.iter_mut().filter(|p| p.kind == missing) {
            if names.contains(&p.subject) {
                p.message.push_str(&format!(
                    " (quarantined as corrupt in {QUARANTINE_DIR}/{}/{}: put the original data again to restore it)",
                    kind.dir(),
                    p.subject
                ));
            }
        }
    }
    if held > 0 {
        warnings.push(format!(
            "{place} holds {held} corrupt file(s) moved aside by `arch fsck --repair`; gc keeps them: delete them when you no longer need them"
        ));
    }
    Ok(())
}

/// The resources needing a file, with the image or snapshot each object is: `object:<name>`
/// is followed by `image:<name>` or `snapshot:<name>` when it is registered as one.
/// Each object is looked up by name (an unreadable record just adds nothing).
pub fn needed_by(db: &Db, resources: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for r in resources {
        out.push(r.clone());
        let image = r
            .strip_prefix("object:")
            .and_then(|name| db.object(name).ok().flatten())
            .and_then(|rec| rec.image);
        if let Some(img) = image {
            let kind = if img.is_snapshot { "snapshot" } else { "image" };
            out.push(format!("{kind}:{}", img.name));
        }
    }
    out
}

/// The store kind and hex name of `path` when it is `blocks/XX/<hash>` or `maps/XX/<id>`.
/// The quarantine directory and name for a store file at `path` (`blocks/`, `maps/`, or a
/// pack's name in `packs/`); None for anything else.
fn store_name(repo: &Repository, path: &Path) -> Option<(&'static str, String)> {
    let rel = path.strip_prefix(repo.root()).ok()?;
    let parts: Vec<&str> = rel.iter().filter_map(|c| c.to_str()).collect();
    if let [PACKS_DIR, name] = parts.as_slice() {
        return Some((PACKS_DIR, name.parse::<BlockHash>().ok()?.to_hex()));
    }
    let [top, shard, name] = parts.as_slice() else {
        return None;
    };
    let kind = [Kind::Block, Kind::Map]
        .into_iter()
        .find(|k| k.dir() == *top)?;
    let hash = name.parse::<BlockHash>().ok()?;
    (hash.to_hex()[..2] == **shard).then(|| (kind.dir(), hash.to_hex()))
}

fn relative(repo: &Repository, path: &Path) -> String {
    path.strip_prefix(repo.root())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::rename_noreplace;

    #[test]
    fn rename_noreplace_never_replaces_and_leaves_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"first").unwrap();
        std::fs::write(&b, b"second").unwrap();
        let err = rename_noreplace(&a, &b).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&a).unwrap(), b"first");
        assert_eq!(std::fs::read(&b).unwrap(), b"second");
        let c = dir.path().join("c");
        rename_noreplace(&a, &c).unwrap();
        assert!(!a.exists());
        assert_eq!(std::fs::read(&c).unwrap(), b"first");
    }
}
