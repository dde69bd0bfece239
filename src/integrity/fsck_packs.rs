//! fsck's look at `packs/`: a pack whose index is damaged holds blocks nobody can find (they
//! read as missing), so it is a problem naming the pack and the reason. With `--read-data`,
//! every entry of every sound pack is read and hashed (every copy of a block, dead ones too).

use super::fsck::Problem;
use crate::error::{Error, Result};
use crate::repo::Repository;
use crate::storage::fsutil::open_regular;
use crate::storage::pack::PACKS_DIR;
use crate::storage::pack::format::entry_matches;
use crate::storage::pack::index::{list_pack_names, read_pack};
use crate::storage::{BlockHash, BlockHashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// One `corrupt_pack` problem per pack of the local store whose index is damaged.
pub fn damaged_packs(repo: &Repository) -> Result<Vec<Problem>> {
    let Some(packs) = repo.backend().as_local().and_then(|l| l.packs()) else {
        return Ok(Vec::new());
    };
    Ok(packs
        .damaged()?
        .into_iter()
        .map(|(path, why)| Problem {
            kind: "corrupt_pack".into(),
            subject: path.display().to_string(),
            resources: vec![],
            message: format!(
                "pack {}: {why}; its blocks cannot be found (referenced ones are reported \
                 missing); gc leaves it alone",
                path.display()
            ),
        })
        .collect())
}

/// One entry of a pack whose bytes do not hash to its block (`fsck --read-data`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadEntry {
    pub pack: PathBuf,
    /// Where the entry's bytes start in the pack file.
    pub offset: u64,
    pub hash: BlockHash,
}

/// Reads and hashes every entry of every pack with a sound index (damaged ones are
/// [`damaged_packs`]'s), copies another pack also holds and dead entries included: a reader
/// may pick any copy. Packs are spread over the cores; each is read entry by entry in file
/// order with one block-sized buffer, so memory is one index plus one block per thread.
pub fn rehash_packs(repo: &Repository) -> Result<Vec<BadEntry>> {
    let Some(packs) = repo.backend().as_local().and_then(|l| l.packs()) else {
        return Ok(Vec::new());
    };
    let names = list_pack_names(packs.dir())?;
    let max = u64::from(repo.block_size());
    let next = AtomicUsize::new(0);
    let threads = crate::storage::ingest::worker_threads()
        .min(names.len())
        .max(1);
    let results: Vec<Result<Vec<BadEntry>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<Vec<BadEntry>> {
                    let mut bad = Vec::new();
                    let mut buf = Vec::with_capacity(max as usize);
                    while let Some(id) = names.get(next.fetch_add(1, Ordering::Relaxed)) {
                        crate::interrupt::check()?;
                        bad.extend(rehash_pack(&packs.path_of(id), id, max, &mut buf)?);
                    }
                    Ok(bad)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("pack rehash thread"))
            .collect()
    });
    let mut bad = Vec::new();
    for r in results {
        bad.extend(r?);
    }
    bad.sort_by(|a, b| (&a.pack, a.offset).cmp(&(&b.pack, b.offset)));
    Ok(bad)
}

/// The entries of the pack at `path` whose bytes do not hash to their block (a short read
/// counts as bad). A pack gone or damaged since the listing yields nothing (the latter is
/// reported by [`damaged_packs`]).
pub fn rehash_pack(
    path: &Path,
    id: &BlockHash,
    max: u64,
    buf: &mut Vec<u8>,
) -> Result<Vec<BadEntry>> {
    let Some(Ok(mut entries)) = read_pack(path, id, max)? else {
        return Ok(Vec::new());
    };
    let Some(file) = open_regular(path)? else {
        return Ok(Vec::new());
    };
    entries.sort_by_key(|e| e.offset);
    let mut bad = Vec::new();
    for e in entries {
        if !entry_matches(&file, &e, buf) {
            bad.push(BadEntry {
                pack: path.to_path_buf(),
                offset: e.offset,
                hash: e.hash,
            });
        }
    }
    Ok(bad)
}

/// The blocks held by some pack with a sound index (each once).
pub fn packed_blocks(repo: &Repository) -> Result<BlockHashSet> {
    let Some(packs) = repo.backend().as_local().and_then(|l| l.packs()) else {
        return Ok(Default::default());
    };
    Ok(packs.blocks()?.into_iter().map(|(h, _)| h).collect())
}

/// The `corrupt_block` problem for a bad pack entry; `resources` are filled in by the caller
/// (empty: a dead entry, garbage gc drops).
pub fn bad_entry_problem(repo: &Repository, bad: &BadEntry) -> Problem {
    let pack = bad.pack.strip_prefix(repo.root()).unwrap_or(&bad.pack);
    Problem {
        kind: "corrupt_block".into(),
        subject: bad.hash.to_hex(),
        resources: vec![],
        message: format!(
            "block {} in pack {} at byte {}: its content does not match its hash; \
             `arch fsck --repair` saves the pack's good entries and quarantines it",
            bad.hash,
            pack.display(),
            bad.offset
        ),
    }
}

/// What [`scan_dir`] found in `packs/` besides packs.
#[derive(Debug, Default)]
pub struct Strays {
    /// Directories named like a pack (other special files under a pack's name are found by
    /// the walk of [`super::entries::scan`]): problems `fsck --repair` moves to quarantine.
    pub dirs: Vec<(PathBuf, &'static str)>,
    /// Names that are not pack names (leftovers every reader ignores): one warning each.
    pub warnings: Vec<String>,
}

/// Lists `packs/` (file types from the listing: nothing is opened, so a FIFO cannot block).
pub fn scan_dir(repo: &Repository) -> Result<Strays> {
    scan_dir_in(&repo.root().join(PACKS_DIR))
}

fn scan_dir_in(dir: &Path) -> Result<Strays> {
    let mut out = Strays::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io("list", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let name = entry.file_name();
        let is_pack_name = name
            .to_str()
            .and_then(|n| n.parse::<BlockHash>().ok())
            .is_some_and(|h| Some(h.to_hex().as_str()) == name.to_str());
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if !is_pack_name {
            out.warnings.push(format!(
                "{PACKS_DIR}/{} is not a pack (its name is not 64 lowercase hex digits): every \
                 reader ignores it; it can be removed by hand",
                name.to_string_lossy()
            ));
        } else if is_dir {
            out.dirs.push((entry.path(), "a directory"));
        }
    }
    out.warnings.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::pack::index::tests::write_pack;

    #[test]
    fn rehash_pack_names_each_bad_entry_by_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let id = write_pack(dir.path(), &[b"aaaa", b"bbbbbb", b"cc"]);
        let path = dir.path().join(PACKS_DIR).join(id.to_hex());
        let mut buf = Vec::new();
        assert_eq!(rehash_pack(&path, &id, 64, &mut buf).unwrap(), vec![]);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[5] ^= 1; // inside "bbbbbb", which starts at byte 4
        std::fs::write(&path, &bytes).unwrap();
        let bad = rehash_pack(&path, &id, 64, &mut buf).unwrap();
        assert_eq!(
            bad,
            vec![BadEntry {
                pack: path.clone(),
                offset: 4,
                hash: BlockHash::of_bytes(b"bbbbbb"),
            }]
        );
        // Gone: nothing to report (the listing raced a gc).
        std::fs::remove_file(&path).unwrap();
        assert_eq!(rehash_pack(&path, &id, 64, &mut buf).unwrap(), vec![]);
    }

    #[test]
    fn scan_dir_warns_of_stray_names_and_lists_directories_named_like_packs() {
        let dir = tempfile::tempdir().unwrap();
        let repo_root = dir.path();
        let packs = repo_root.join(PACKS_DIR);
        std::fs::create_dir_all(packs.join(format!("{:064x}", 7))).unwrap();
        std::fs::write(packs.join("x.tmp"), b"").unwrap();
        std::fs::write(packs.join(format!("{:064X}", 0xab)), b"").unwrap();
        let id = write_pack(repo_root, &[b"aa"]);
        let s = scan_dir_in(&packs).unwrap();
        assert_eq!(
            s.dirs,
            vec![(packs.join(format!("{:064x}", 7)), "a directory")]
        );
        assert_eq!(s.warnings.len(), 2, "{:?}", s.warnings);
        assert!(s.warnings.iter().all(|w| w.contains("removed by hand")));
        assert!(!s.warnings.iter().any(|w| w.contains(&id.to_hex())));
    }
}
