//! gc over packs: a pack holding no live block is removed; a pack holding some garbage is
//! rewritten (its live blocks, each verified, copied into new packs first), so garbage in
//! packs costs one unlink per pack, not one per block.
//!
//! Crash order: the new packs are written in `tmp/`, made durable (syncfs), renamed into
//! `packs/`, and `packs/` is fsynced, all before the first old pack is unlinked. At any instant
//! every live block is therefore in some pack (for a moment in two: readers keep one). The
//! unlinks are made durable (`packs/` fsynced) before the sweep returns.
//!
//! A pack whose index is damaged is never touched (its blocks may be live); it is reported.
//! A live block whose bytes do not match its name stops the sweep before anything in
//! `packs/` changed: copying it would make a corrupt block look freshly written.

use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::storage::fsutil::{Modes, create_dir, open_regular, sync_dir, sync_filesystem};
use crate::storage::hash::BlockHash;
use crate::storage::pack::index::{list_pack_names, read_pack};
use crate::storage::pack::{Entry, PACK_TARGET, PACKS_DIR, PackWriter};
use std::collections::HashSet;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// What the pack sweep found and did (or, dry, would do).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PackSweep {
    pub blocks_kept: u64,
    pub bytes_kept: u64,
    pub blocks_freed: u64,
    pub bytes_freed: u64,
    /// Packs removed: those with no live block and those rewritten.
    pub packs_removed: u64,
    /// Packs whose live blocks were copied into new packs.
    pub packs_rewritten: u64,
    /// Bytes of live blocks copied.
    pub bytes_rewritten: u64,
    /// Packs with a damaged index, left in place: (path, reason).
    pub damaged: Vec<(PathBuf, String)>,
}

/// Sweeps `root/packs/`: `live` says which blocks some map needs; blocks longer than
/// `max_entry` make a pack damaged. New packs are staged in a directory under `tmp_dir`.
pub fn sweep_packs(
    root: &Path,
    tmp_dir: &Path,
    modes: Modes,
    max_entry: u64,
    live: &(dyn Fn(&BlockHash) -> bool + Sync),
    dry_run: bool,
    progress: &dyn Progress,
) -> Result<PackSweep> {
    let dir = root.join(PACKS_DIR);
    let mut report = PackSweep::default();
    let mut remove: Vec<PathBuf> = Vec::new();
    let mut rewrite: Vec<(PathBuf, Vec<Entry>)> = Vec::new();
    for id in list_pack_names(&dir)? {
        crate::interrupt::check()?;
        let path = dir.join(id.to_hex());
        let entries = match read_pack(&path, &id, max_entry)? {
            None => continue, // gone since the listing
            Some(Err(why)) => {
                report.damaged.push((path, why));
                continue;
            }
            Some(Ok(entries)) => entries,
        };
        let (kept, freed): (Vec<Entry>, Vec<Entry>) =
            entries.into_iter().partition(|e| live(&e.hash));
        let bytes = |es: &[Entry]| es.iter().map(|e| u64::from(e.len)).sum::<u64>();
        progress.advance(bytes(&kept) + bytes(&freed));
        report.blocks_kept += kept.len() as u64;
        report.bytes_kept += bytes(&kept);
        report.blocks_freed += freed.len() as u64;
        report.bytes_freed += bytes(&freed);
        if freed.is_empty() {
            continue;
        }
        if !kept.is_empty() {
            report.packs_rewritten += 1;
            report.bytes_rewritten += bytes(&kept);
            rewrite.push((path.clone(), kept));
        }
        report.packs_removed += 1;
        remove.push(path);
    }
    if dry_run || remove.is_empty() {
        return Ok(report);
    }
    if !rewrite.is_empty() {
        copy_live(&dir, tmp_dir, modes, &rewrite)?;
    }
    let mut result = Ok(());
    for path in &remove {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => {
                result = Err(Error::io("remove pack", path, e));
                break;
            }
        }
    }
    // Also after a failure: what was removed is made durable before anything is reported.
    sync_dir(&dir)?;
    result.map(|()| report)
}

/// Copies the live entries of the packs to rewrite into new packs and publishes them
/// durably in `dir`; each block once, each verified. Nothing in `dir` changes on an error.
fn copy_live(
    dir: &Path,
    tmp_dir: &Path,
    modes: Modes,
    rewrite: &[(PathBuf, Vec<Entry>)],
) -> Result<()> {
    let staging = tmp_dir.join(format!(
        "gc-packs-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    create_dir(&staging, modes)?;
    let result = (|| {
        let writer = PackWriter::new(&staging, modes.sealed(), PACK_TARGET);
        let mut copied: HashSet<BlockHash> = HashSet::new();
        let mut buf = Vec::new();
        for (path, entries) in rewrite {
            let file = open_regular(path)?.ok_or_else(|| Error::Corrupt {
                path: path.clone(),
                reason: "pack vanished while gc held the exclusive data lock".into(),
            })?;
            for e in entries {
                if !copied.insert(e.hash) {
                    continue;
                }
                buf.resize(e.len as usize, 0);
                file.read_exact_at(&mut buf, e.offset)
                    .map_err(|err| Error::io("read pack", path, err))?;
                if BlockHash::of_bytes(&buf) != e.hash {
                    return Err(Error::Corrupt {
                        path: path.clone(),
                        reason: format!(
                            "block {} at offset {} does not match its name (sha256); gc \
                             changed nothing: run `arch fsck --repair`, then gc again",
                            e.hash, e.offset
                        ),
                    });
                }
                writer
                    .append(&e.hash, &buf)
                    .map_err(|err| Error::io("write pack", &staging, err))?;
            }
        }
        let packs = writer
            .finish()
            .map_err(|err| Error::io("write pack", &staging, err))?;
        sync_filesystem(&staging)?;
        for p in &packs {
            let dest = dir.join(p.id.to_hex());
            fs::rename(&p.path, &dest).map_err(|err| Error::io("rename pack into", &dest, err))?;
        }
        sync_dir(dir)
    })();
    let _ = fs::remove_dir_all(&staging);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;
    use crate::storage::pack::PackSet;
    use crate::storage::pack::index::tests::write_pack;

    fn sweep(root: &Path, live: &[&[u8]], dry: bool) -> Result<PackSweep> {
        let tmp = root.join("tmp");
        fs::create_dir_all(&tmp).unwrap();
        let live: HashSet<BlockHash> = live.iter().map(|b| BlockHash::of_bytes(b)).collect();
        let modes = Modes { shared: false };
        sweep_packs(
            root,
            &tmp,
            modes,
            64,
            &|h| live.contains(h),
            dry,
            &NoProgress,
        )
    }

    fn names(root: &Path) -> Vec<BlockHash> {
        list_pack_names(&root.join(PACKS_DIR)).unwrap()
    }

    fn readable(root: &Path, block: &[u8]) -> bool {
        let set = PackSet::new(root, 64);
        let Some(at) = set.locate(&BlockHash::of_bytes(block), false).unwrap() else {
            return false;
        };
        let mut buf = vec![0; at.len as usize];
        fs::File::open(&at.path)
            .unwrap()
            .read_exact_at(&mut buf, at.offset)
            .unwrap();
        buf == block
    }

    #[test]
    fn dead_packs_go_live_packs_stay_mixed_packs_are_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let all_live = write_pack(root, &[b"keep1", b"keep2"]);
        let _all_dead = write_pack(root, &[b"dead1", b"dead2"]);
        let mixed = write_pack(root, &[b"dead3", b"keep3", b"dead4"]);
        let live: &[&[u8]] = &[b"keep1", b"keep2", b"keep3"];
        let dry = sweep(root, live, true).unwrap();
        assert_eq!(names(root).len(), 3, "a dry run changes nothing");
        let done = sweep(root, live, false).unwrap();
        assert_eq!(dry, done, "a dry run reports what the sweep does");
        assert_eq!((done.blocks_kept, done.bytes_kept), (3, 15));
        assert_eq!((done.blocks_freed, done.bytes_freed), (4, 20));
        assert_eq!(
            (
                done.packs_removed,
                done.packs_rewritten,
                done.bytes_rewritten
            ),
            (2, 1, 5)
        );
        let left = names(root);
        assert_eq!(left.len(), 2);
        assert!(left.contains(&all_live) && !left.contains(&mixed));
        for b in live {
            assert!(readable(root, b), "{b:?}");
        }
        assert!(!readable(root, b"dead3"));
        assert_eq!(
            fs::read_dir(root.join("tmp")).unwrap().count(),
            0,
            "staging removed"
        );
        // Nothing more to do: a second sweep frees nothing and rewrites nothing.
        let again = sweep(root, live, false).unwrap();
        assert_eq!(
            (
                again.blocks_freed,
                again.packs_removed,
                again.packs_rewritten
            ),
            (0, 0, 0)
        );
    }

    #[test]
    fn a_corrupt_live_block_stops_gc_before_anything_changes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mixed = write_pack(root, &[b"dead1", b"keep1"]);
        let _dead = write_pack(root, &[b"dead2"]);
        let p = root.join(PACKS_DIR).join(mixed.to_hex());
        let mut bytes = fs::read(&p).unwrap();
        bytes[6] ^= 0x20; // inside keep1's bytes
        fs::write(&p, &bytes).unwrap();
        let e = sweep(root, &[b"keep1"], false).unwrap_err().to_string();
        assert!(
            e.contains("does not match its name") && e.contains("fsck --repair"),
            "{e}"
        );
        assert_eq!(names(root).len(), 2, "no pack removed");
        assert_eq!(fs::read(&p).unwrap(), bytes);
        assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn a_damaged_index_is_left_alone_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let id = write_pack(root, &[b"dead1"]);
        let p = root.join(PACKS_DIR).join(id.to_hex());
        let mut bytes = fs::read(&p).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 1;
        fs::write(&p, &bytes).unwrap();
        let done = sweep(root, &[], false).unwrap();
        assert_eq!(done.damaged.len(), 1);
        assert_eq!(done.damaged[0].0, p);
        assert_eq!(done.packs_removed, 0);
        assert!(p.exists());
    }

    #[test]
    fn a_block_in_two_rewritten_packs_is_copied_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write_pack(root, &[b"dead1", b"both"]);
        write_pack(root, &[b"dead2", b"both"]);
        let done = sweep(root, &[b"both"], false).unwrap();
        assert_eq!(done.packs_rewritten, 2);
        let left = names(root);
        assert_eq!(left.len(), 1);
        let set = PackSet::new(root, 64);
        assert_eq!(
            set.blocks().unwrap(),
            vec![(BlockHash::of_bytes(b"both"), 4)]
        );
    }
}
