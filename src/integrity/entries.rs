//! The entries of the repository tree as files: anything that is not a regular file or a
//! directory (symlinks, FIFOs, sockets, devices), and anything other users may access beyond
//! what the repository's [`Modes`] allow. Walks without following symlinks.

use crate::error::{Error, Result};
use crate::repo::{CONFIG_FILE, Repository};
use crate::storage::fsutil::{Modes, file_kind, set_mode};
use crate::storage::local::{BLOCKS_DIR, MAPS_DIR};
use std::io::ErrorKind::NotFound;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What [`scan`] found.
#[derive(Debug, Default)]
pub struct EntryScan {
    /// Entries that are neither regular files nor directories, with what they are.
    pub special: Vec<(PathBuf, &'static str)>,
    /// Entries with permission bits the repository forbids, with their mode.
    pub exposed: Vec<(PathBuf, u32)>,
}

/// Walks the whole repository (the root included).
pub fn scan(repo: &Repository) -> Result<EntryScan> {
    let forbidden = repo.modes().forbidden();
    let mut out = EntryScan::default();
    for entry in walkdir::WalkDir::new(repo.root()).follow_links(false) {
        // An entry that vanishes between the listing and its stat was renamed or removed by
        // a concurrent command (a temporary file published or cleaned up): not a problem.
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if e.io_error().is_some_and(|io| io.kind() == NotFound) => continue,
            Err(e) if dead_mount_in_tmp(repo, e.path(), e.io_error()) => continue,
            Err(e) => {
                let path = e.path().unwrap_or(repo.root()).to_path_buf();
                return Err(Error::io("list", &path, e.into()));
            }
        };
        let t = entry.file_type();
        // `run/` holds the Unix sockets of `arch serve` (0600 in a 0700 directory).
        if t.is_socket() && entry.path().parent() == Some(&repo.root().join("run")) {
            continue;
        }
        if !t.is_file() && !t.is_dir() {
            out.special
                .push((entry.path().to_path_buf(), file_kind(&t)));
            continue;
        }
        let mode = match entry.metadata() {
            Ok(m) => m.permissions().mode(),
            Err(e) if e.io_error().is_some_and(|io| io.kind() == NotFound) => continue,
            Err(e) if dead_mount_in_tmp(repo, Some(entry.path()), e.io_error()) => continue,
            Err(e) => return Err(Error::io("stat", entry.path(), e.into())),
        };
        if mode & forbidden != 0 {
            out.exposed
                .push((entry.path().to_path_buf(), mode & 0o7777));
        }
    }
    Ok(out)
}

/// True when `err` is what a FUSE mount whose server died answers (ENOTCONN) and `path` is in
/// `tmp/`: the disk of a customization killed with its fusermount3, garbage that gc unmounts
/// and removes (and fsck counts among the temporary entries).
fn dead_mount_in_tmp(repo: &Repository, path: Option<&Path>, err: Option<&std::io::Error>) -> bool {
    let in_tmp = path.is_some_and(|p| p.starts_with(repo.tmp_dir()));
    in_tmp && err.is_some_and(|e| e.raw_os_error() == Some(libc::ENOTCONN))
}

/// The mode `path` (a directory when `is_dir`) should have in the repository at `root`.
pub fn policy_mode(root: &Path, path: &Path, is_dir: bool, modes: Modes) -> u32 {
    if is_dir {
        return modes.dir();
    }
    let rel = path.strip_prefix(root).unwrap_or(path);
    let sealed = rel == Path::new(CONFIG_FILE)
        || rel.starts_with(BLOCKS_DIR)
        || rel.starts_with(MAPS_DIR)
        || rel.starts_with(crate::storage::pack::PACKS_DIR);
    if sealed { modes.sealed() } else { modes.file() }
}

/// Gives each exposed entry its policy mode. Returns the entries fixed and, apart, those that
/// could not be changed (owned by another user of a shared repository) with why.
pub fn fix_modes(
    repo: &Repository,
    exposed: &[(PathBuf, u32)],
) -> (Vec<PathBuf>, Vec<(PathBuf, String)>) {
    let mut fixed = Vec::new();
    let mut failed = Vec::new();
    for (path, _) in exposed {
        let is_dir = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
        let mode = policy_mode(repo.root(), path, is_dir, repo.modes());
        match set_mode(path, mode) {
            Ok(()) => fixed.push(path.clone()),
            Err(e) => failed.push((path.clone(), e.to_string())),
        }
    }
    (fixed, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_repository_has_nothing_special_or_exposed() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(&dir.path().join("r"), 4096).unwrap();
        let s = scan(&repo).unwrap();
        assert!(s.special.is_empty() && s.exposed.is_empty(), "{s:?}");
    }

    #[test]
    fn exposed_entries_are_found_and_fixed_by_policy() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        let repo = Repository::init(&root, 4096).unwrap();
        set_mode(&root, 0o755).unwrap();
        set_mode(&root.join(CONFIG_FILE), 0o644).unwrap();
        set_mode(&root.join("meta/catalog.db"), 0o640).unwrap();
        let s = scan(&repo).unwrap();
        assert_eq!(s.exposed.len(), 3, "{s:?}");
        let (fixed, failed) = fix_modes(&repo, &s.exposed);
        assert_eq!((fixed.len(), failed.len()), (3, 0));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&root.join(CONFIG_FILE)), 0o400);
        assert_eq!(mode(&root.join("meta/catalog.db")), 0o600);
        assert!(scan(&repo).unwrap().exposed.is_empty());
    }
}
