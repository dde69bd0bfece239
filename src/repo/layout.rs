//! The repository's fixed directories (`meta/`, `locks/`, `volumes/`, `tmp/`, `blocks/XX/`,
//! `maps/XX/`, `packs/`, `quarantine/`, `run/`) and the rule that each is a real directory, never a symbolic
//! link or another kind of file: arch builds paths under them, so a link in their place would
//! make it read, write or delete files outside the repository.
//!
//! Checked once when a repository is opened (every command but fsck refuses a damaged layout;
//! fsck reports it), and for the directory of each volume when a volume path is built.

use crate::storage::fsutil::file_kind;
use crate::storage::local::{BLOCKS_DIR, MAPS_DIR, TMP_DIR};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// Directories of the layout that must exist (relative to the root), besides the 256 shards
/// of `blocks/` and `maps/`. `locks/` is created by open when missing.
const REQUIRED: &[&str] = &[
    super::META_DIR,
    super::VOLUMES_DIR,
    TMP_DIR,
    BLOCKS_DIR,
    MAPS_DIR,
];
/// Directories that may be absent but, when present, must be real directories. `packs/` is
/// made by init in a repository with packs, and by the first commit of packs when missing.
const OPTIONAL: &[&str] = &[
    super::LOCKS_DIR,
    crate::storage::pack::PACKS_DIR,
    "run",
    "quarantine",
    "quarantine/blocks",
    "quarantine/maps",
];

/// One directory of the layout that is not a real directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutFault {
    pub path: PathBuf,
    /// What is there instead: `missing`, `a symbolic link`, `a regular file`, ...
    pub found: String,
}

impl std::fmt::Display for LayoutFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} should be a directory but is {}",
            self.path.display(),
            self.found
        )
    }
}

/// What stands at `path` when it is not a real directory (None when it is one, or when it is
/// absent and `optional`).
pub fn not_a_directory(path: &Path, optional: bool) -> Option<String> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_dir() => None,
        Ok(m) => Some(file_kind(&m.file_type()).to_string()),
        Err(e) if e.kind() == ErrorKind::NotFound && optional => None,
        Err(e) if e.kind() == ErrorKind::NotFound => Some("missing".into()),
        Err(e) => Some(format!("unreadable ({e})")),
    }
}

/// Every directory of the layout of the repository at `root` that is not a real directory.
/// Costs one `lstat` per directory (about 520).
pub fn faults(root: &Path) -> Vec<LayoutFault> {
    faults_with(root, true)
}

/// [`faults`]; `local_store` false for a repository whose blocks and maps are in an object
/// store: its `blocks/` and `maps/` are not part of the layout.
pub fn faults_with(root: &Path, local_store: bool) -> Vec<LayoutFault> {
    let mut out = Vec::new();
    let mut check = |rel: &str, optional: bool| {
        let path = root.join(rel);
        if let Some(found) = not_a_directory(&path, optional) {
            out.push(LayoutFault { path, found });
        }
    };
    for rel in REQUIRED {
        if local_store || ![BLOCKS_DIR, MAPS_DIR].contains(rel) {
            check(rel, false);
        }
    }
    for rel in OPTIONAL {
        check(rel, true);
    }
    for top in [BLOCKS_DIR, MAPS_DIR].into_iter().filter(|_| local_store) {
        for shard in 0..=255u8 {
            check(&format!("{top}/{shard:02x}"), false);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::Repository;

    #[test]
    fn a_new_repository_has_a_sound_layout_and_links_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        Repository::init(&root, 4096).unwrap();
        assert_eq!(faults(&root), vec![]);
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::remove_dir(root.join("tmp")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("tmp")).unwrap();
        std::fs::remove_dir(root.join("blocks/5a")).unwrap();
        std::fs::write(root.join("blocks/5a"), b"").unwrap();
        std::fs::remove_dir(root.join("maps/00")).unwrap();
        let found: Vec<String> = faults(&root).iter().map(|f| f.to_string()).collect();
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].ends_with("tmp should be a directory but is a symbolic link"));
        assert!(found[1].ends_with("blocks/5a should be a directory but is a regular file"));
        assert!(found[2].ends_with("maps/00 should be a directory but is missing"));
    }

    #[test]
    fn packs_may_be_absent_but_never_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        Repository::init(&root, 4096).unwrap();
        assert!(!root.join("packs").exists() && faults(&root).is_empty());
        std::os::unix::fs::symlink(dir.path(), root.join("packs")).unwrap();
        let found: Vec<String> = faults(&root).iter().map(|f| f.to_string()).collect();
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].ends_with("packs should be a directory but is a symbolic link"));
    }
}
