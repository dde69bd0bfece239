//! gc's sweep of `packs/`: removes packs that hold no live block and rewrites packs that
//! hold some dead ones (their live entries copied into new packs), so that garbage costs one
//! unlink per pack, not one per block.
//!
//! Crash order (every live block is in some valid pack at every instant):
//! 1. the live entries of the packs to rewrite are read, verified (sha256 = name, length at
//!    most a block) and appended to new packs in a private directory under `tmp/`;
//! 2. the new packs are fsynced, renamed into `packs/`, and `packs/` is fsynced;
//! 3. only then are the old packs (rewritten and all-dead) unlinked and `packs/` fsynced.
//!
//! A crash before 2 leaves only garbage in `tmp/`; between 2 and 3, a live block is in both
//! the old and the new pack (harmless: the index keeps one; the next gc finds the old pack
//! all dead or a duplicate and removes it). A live entry that fails verification stops the
//! sweep before step 2: nothing in `packs/` changed. A pack whose index is damaged is never
//! touched (its blocks may be live); it is reported for `arch fsck`.
//!
//! Out of space: when the copies fail for lack of space and some packs are all dead, those
//! are unlinked first (they hold no live block) and the copies are tried once more; a disk
//! still too full fails with the same error, every live block still in its old pack.
//!
//! Extra copies: one copy of each live block is kept; any other entry holding it (two puts
//! at once, or a crash between steps 2 and 3) is garbage, dropped only after the copy kept in
//! place verified (a copy gc moves is verified as it is copied), and counted as freed.
//! Memory: the entries of every pack (about 48 bytes each) and the kept copy of each live
//! block (about 48 bytes) are held while the sweep plans.

use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::storage::fsutil::{Modes, create_dir, remove_path, sync_dir};
use crate::storage::pack::index::{list_pack_names, read_packs};
use crate::storage::pack::{Entry, PACK_TARGET, PACKS_DIR, PackWriter};
use crate::storage::{BlockHash, BlockHashMap, BlockHashSet};
use std::collections::BTreeMap;
use std::collections::hash_map::Entry as MapEntry;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What the pack sweep found and did (or, dry, would do).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PackSweep {
    /// Entries of packs removed or rewritten that no map needs (or duplicates dropped).
    pub blocks_freed: u64,
    pub bytes_freed: u64,
    /// Live entries kept: in place or copied into a new pack.
    pub blocks_kept: u64,
    pub bytes_kept: u64,
    /// Packs unlinked (all dead, or rewritten).
    pub packs_removed: u64,
    /// Packs whose live entries were copied into new packs (counted in `packs_removed` too).
    pub packs_rewritten: u64,
    /// Bytes copied into new packs.
    pub bytes_rewritten: u64,
    /// Packs left with unused entries (`--max-unused`), and the bytes of those entries.
    pub packs_kept_partial: u64,
    pub bytes_unused_kept: u64,
    /// Packs whose index is damaged, left alone, with the reason.
    pub damaged: Vec<(PathBuf, String)>,
}

/// Where the sweep works and what it may do.
pub struct PackSweepPlace<'a> {
    /// The repository root (`packs/` is under it).
    pub root: &'a Path,
    /// Where new packs are written before they are renamed into `packs/` (same filesystem).
    pub tmp_dir: &'a Path,
    pub modes: Modes,
    /// The block size: longer entries make a pack damaged.
    pub max_entry: u64,
    /// Packs with some unused entries may stay while the unused bytes they hold are at most
    /// this percentage of the bytes kept (0: every such pack is rewritten).
    pub max_unused_percent: u32,
}

/// What the sweep does with a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Left as it is: every entry kept, or some unused ones left under the `--max-unused`
    /// allowance.
    Stays,
    /// Every entry dead or an extra copy: unlinked.
    Removed,
    /// Its kept entries copied into a new pack, then unlinked.
    Rewritten,
}

/// The fate of each of `packs`, given the entries of each to keep (`copies`). Packs with some
/// unused entries are rewritten, those with the largest unused share first (the most space
/// freed per byte copied), until the unused bytes left in packs that stay are at most
/// `max_unused_percent` of the bytes kept; 0 rewrites every one.
fn decide(
    packs: &[(PathBuf, Vec<Entry>)],
    copies: &[Vec<usize>],
    max_unused_percent: u32,
) -> Vec<Fate> {
    let bytes = |p: usize, of: &mut dyn Iterator<Item = usize>| -> u64 {
        of.map(|i| u64::from(packs[p].1[i].len)).sum()
    };
    let mut fate = Vec::with_capacity(packs.len());
    let mut kept_total = 0u128;
    // (unused bytes, total bytes, pack) of the packs with some kept and some unused entries.
    let mut mixed: Vec<(u64, u64, usize)> = Vec::new();
    for (p, (_, entries)) in packs.iter().enumerate() {
        let kept = bytes(p, &mut copies[p].iter().copied());
        let total = bytes(p, &mut (0..entries.len()));
        kept_total += u128::from(kept);
        fate.push(if copies[p].len() == entries.len() && !entries.is_empty() {
            Fate::Stays
        } else if copies[p].is_empty() {
            Fate::Removed
        } else {
            mixed.push((total - kept, total, p));
            Fate::Rewritten
        });
    }
    // Largest unused share first: a/b > c/d as a*d > c*b; then more unused bytes; then order.
    mixed.sort_by(|x, y| {
        (u128::from(y.0) * u128::from(x.1))
            .cmp(&(u128::from(x.0) * u128::from(y.1)))
            .then(y.0.cmp(&x.0))
            .then(x.2.cmp(&y.2))
    });
    let allowance = kept_total * u128::from(max_unused_percent) / 100;
    let mut unused_left: u128 = mixed.iter().map(|m| u128::from(m.0)).sum();
    for &(unused, _, p) in &mixed {
        if unused_left <= allowance {
            fate[p] = Fate::Stays;
        } else {
            unused_left -= u128::from(unused);
        }
    }
    fate
}

/// A pack as classified by the sweep.
struct Plan {
    path: PathBuf,
    entries: Vec<Entry>,
    /// Indexes into `entries` of the live entries to copy.
    copy: Vec<usize>,
}

/// Sweeps `packs/` under `place.root`: see the module comment. `keep` says which blocks are
/// live. Progress counts the bytes of the entries looked at.
pub fn sweep_packs(
    place: &PackSweepPlace,
    keep: &(dyn Fn(&BlockHash) -> bool + Sync),
    dry_run: bool,
    progress: &dyn Progress,
) -> Result<PackSweep> {
    sweep_packs_with(place, keep, dry_run, progress, &|| Ok(()))
}

/// [`sweep_packs`] with `after_publish` run once the new packs are durable in `packs/` and
/// before any old pack is removed (tests inject a crash there).
fn sweep_packs_with(
    place: &PackSweepPlace,
    keep: &(dyn Fn(&BlockHash) -> bool + Sync),
    dry_run: bool,
    progress: &dyn Progress,
    after_publish: &dyn Fn() -> Result<()>,
) -> Result<PackSweep> {
    let dir = place.root.join(PACKS_DIR);
    let mut out = PackSweep::default();
    let mut packs = Vec::new();
    let names = list_pack_names(&dir)?;
    read_packs(&dir, &names, place.max_entry, &mut |id, read| {
        crate::interrupt::check()?;
        let path = dir.join(id.to_hex());
        match read {
            None => {} // gone since the listing
            Some(Err(why)) => out.damaged.push((path, why)),
            Some(Ok(entries)) => {
                progress.advance(entries.iter().map(|e| u64::from(e.len)).sum());
                packs.push((path, entries));
            }
        }
        Ok(())
    })?;
    // Read in no set order: sorted, so that the same packs are planned the same way.
    out.damaged.sort();
    packs.sort_by(|a, b| a.0.cmp(&b.0));
    // One copy of each live block is kept; every other entry is garbage (dead, or an extra
    // copy of a block held elsewhere). Packs that can stay whole (no dead entry, no block
    // listed twice) are looked at first, larger ones before smaller, so an extra copy is
    // dropped from a pack that is rewritten or removed anyway where it can be, and otherwise
    // from the smaller pack (less to copy). A pack listing a block twice never stays whole,
    // so however many entries it has it cannot make itself the holder of the kept copy of a
    // block another pack holds (a hostile pack of one block listed 2^16 times, its first
    // copy bad, would otherwise stop gc although a good copy stays in place). The sort is
    // stable (packs are listed by name), so the choice is deterministic.
    packs.sort_by_cached_key(|(_, entries)| {
        let has_dead = entries.iter().any(|e| !keep(&e.hash));
        (
            has_dead || lists_a_block_twice(entries),
            std::cmp::Reverse(entries.len()),
        )
    });
    // The copy kept of each live block: (pack, entry) positions in `packs`.
    let mut placed: BlockHashMap<(usize, usize)> = BlockHashMap::default();
    // Extra copies: (block, pack holding the copy).
    let mut extra_copies: Vec<(BlockHash, usize)> = Vec::new();
    let copies: Vec<Vec<usize>> = packs
        .iter()
        .enumerate()
        .map(|(p, (_, entries))| {
            let mut copy = Vec::new();
            for (i, e) in entries.iter().enumerate() {
                if !keep(&e.hash) {
                    continue;
                }
                match placed.entry(e.hash) {
                    MapEntry::Vacant(v) => {
                        v.insert((p, i));
                        copy.push(i);
                    }
                    MapEntry::Occupied(_) => extra_copies.push((e.hash, p)),
                }
            }
            copy
        })
        .collect();
    let fate = decide(&packs, &copies, place.max_unused_percent);
    // An extra copy is removed (with its pack) only once the copy kept in place is known good
    // (a kept copy that gc moves is verified as it is copied).
    let mut check: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (h, q) in &extra_copies {
        let (p, i) = placed[h];
        if fate[*q] != Fate::Stays && fate[p] == Fate::Stays {
            check.entry(p).or_default().push(i);
        }
    }
    // Each kept copy verified once, however many extra copies it stands for.
    let check: Vec<Plan> = check
        .into_iter()
        .map(|(p, mut copy)| {
            copy.sort_unstable();
            copy.dedup();
            Plan {
                path: packs[p].0.clone(),
                entries: packs[p].1.clone(),
                copy,
            }
        })
        .collect();
    let mut partial = Vec::new();
    let mut dead = Vec::new();
    for (p, (path, entries)) in packs.into_iter().enumerate() {
        let copy = &copies[p];
        let kept: u64 = copy.iter().map(|&i| u64::from(entries[i].len)).sum();
        let total: u64 = entries.iter().map(|e| u64::from(e.len)).sum();
        out.blocks_kept += copy.len() as u64;
        out.bytes_kept += kept;
        let unused = ((entries.len() - copy.len()) as u64, total - kept);
        match fate[p] {
            Fate::Stays => {
                if unused.0 > 0 {
                    out.packs_kept_partial += 1;
                    out.bytes_unused_kept += unused.1;
                }
                continue;
            }
            Fate::Removed | Fate::Rewritten => {
                out.blocks_freed += unused.0;
                out.bytes_freed += unused.1;
            }
        }
        if copy.is_empty() {
            // Extra copies of live blocks go only after the kept copies verified.
            let holds_copies = entries.iter().any(|e| keep(&e.hash));
            dead.push((path, holds_copies));
        } else {
            out.bytes_rewritten += kept;
            partial.push(Plan {
                path,
                entries,
                copy: copy.clone(),
            });
        }
    }
    out.packs_rewritten = partial.len() as u64;
    out.packs_removed = (partial.len() + dead.len()) as u64;
    if dry_run || out.packs_removed == 0 {
        return Ok(out);
    }
    let mut buf = Vec::new();
    for plan in &check {
        copy_live(plan, None, place.max_entry, &mut buf)?;
    }
    if !partial.is_empty() {
        match rewrite_in_tmp(place, &partial, after_publish) {
            // Out of space for the copies (the failed copies are removed again): the all-dead
            // packs hold no live block, so they may go first, and the copies get one more try
            // in their space. A disk still too full gives the same error, nothing live lost.
            // Packs of extra copies stay until the copies succeed: a kept copy in a pack being
            // rewritten is verified only as it is copied.
            Err(Error::NoSpace { .. }) if dead.iter().any(|(_, copies)| !copies) => {
                let unused: Vec<&Path> = dead
                    .iter()
                    .filter(|(_, copies)| !copies)
                    .map(|(p, _)| p.as_path())
                    .collect();
                unlink_all(&unused)?;
                sync_dir(&dir)?;
                dead.retain(|(_, copies)| *copies);
                rewrite_in_tmp(place, &partial, after_publish)?;
            }
            done => done?,
        }
    }
    let dead: Vec<&Path> = dead.iter().map(|(p, _)| p.as_path()).collect();
    let old: Vec<&Path> = partial.iter().map(|p| p.path.as_path()).collect();
    unlink_all(&[&old[..], &dead[..]].concat())?;
    sync_dir(&dir)?;
    Ok(out)
}

/// True when some block is listed by two entries of `entries` (one pack's index).
fn lists_a_block_twice(entries: &[Entry]) -> bool {
    let mut seen = BlockHashSet::default();
    seen.reserve(entries.len());
    !entries.iter().all(|e| seen.insert(e.hash))
}

/// [`rewrite`] in a new work directory under `tmp/`, then `after_publish`; the work
/// directory is removed whatever happened.
fn rewrite_in_tmp(
    place: &PackSweepPlace,
    partial: &[Plan],
    after_publish: &dyn Fn() -> Result<()>,
) -> Result<()> {
    let work = place.tmp_dir.join(format!(
        "gc-packs-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    create_dir(&work, place.modes)?;
    let published = rewrite(place, &work, partial).and_then(|()| after_publish());
    // The work directory is empty after a publish; after a failure it holds the new packs,
    // never visible: removed either way.
    let cleaned = remove_path(&work);
    published?;
    cleaned
}

/// Copies the live entries of `partial` (verified) into new packs in `work`, then makes them
/// durable and visible in `packs/`. Nothing is renamed unless every entry verified.
fn rewrite(place: &PackSweepPlace, work: &Path, partial: &[Plan]) -> Result<()> {
    let writer = PackWriter::new(work, place.modes.sealed(), PACK_TARGET);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed: Mutex<Option<Error>> = Mutex::new(None);
    let threads = crate::storage::ingest::worker_threads().clamp(1, partial.len());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut buf = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(plan) = partial.get(i) else { return };
                    if failed.lock().unwrap().is_some() {
                        return;
                    }
                    let to = Some((&writer, work));
                    if let Err(e) = copy_live(plan, to, place.max_entry, &mut buf) {
                        failed.lock().unwrap().get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().unwrap() {
        return Err(e);
    }
    let made = writer
        .finish()
        .map_err(|e| Error::io("write pack index in", work, e))?;
    // Each new pack durable before its rename; the renames durable before any old pack goes.
    std::thread::scope(|s| {
        let syncs: Vec<_> = made
            .iter()
            .map(|p| {
                s.spawn(move || {
                    File::open(&p.path)
                        .and_then(|f| f.sync_all())
                        .map_err(|e| Error::io("fsync", &p.path, e))
                })
            })
            .collect();
        syncs
            .into_iter()
            .try_for_each(|h| h.join().expect("fsync thread"))
    })?;
    let dir = place.root.join(PACKS_DIR);
    crate::storage::packed::publish(&made, &dir, place.modes)?;
    sync_dir(&dir)
}

/// Reads and verifies the entries `plan.copy` of one pack, and appends them to the writer
/// when given (with the directory it writes in, for errors).
fn copy_live(
    plan: &Plan,
    to: Option<(&PackWriter, &Path)>,
    max_entry: u64,
    buf: &mut Vec<u8>,
) -> Result<()> {
    let file = File::open(&plan.path).map_err(|e| Error::io("open", &plan.path, e))?;
    for &i in &plan.copy {
        crate::interrupt::check()?;
        let e = &plan.entries[i];
        buf.resize(e.len as usize, 0);
        file.read_exact_at(buf, e.offset)
            .map_err(|err| Error::io("read", &plan.path, err))?;
        if u64::from(e.len) > max_entry || BlockHash::of_bytes(buf) != e.hash {
            return Err(Error::Corrupt {
                path: plan.path.clone(),
                reason: format!(
                    "live block {} (at byte {} of the pack) does not match its hash; gc \
                     removed no pack: run `arch fsck --repair` to quarantine the pack, then \
                     `arch gc` again",
                    e.hash, e.offset
                ),
            });
        }
        if let Some((writer, work)) = to {
            writer
                .append(&e.hash, buf)
                .map_err(|err| Error::io("write pack in", work, err))?;
        }
    }
    Ok(())
}

/// Unlinks `paths` on several threads (each unlink may wait for the device to discard the
/// freed space); a file already gone is fine. Not synced: the caller fsyncs `packs/`.
fn unlink_all(paths: &[&Path]) -> Result<()> {
    let threads = crate::storage::sweep::SWEEP_THREADS.clamp(1, paths.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(p) = paths.get(i) else { return };
                    match std::fs::remove_file(p) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            failed
                                .lock()
                                .unwrap()
                                .get_or_insert(Error::io("remove", p, e));
                        }
                    }
                }
            });
        }
    });
    match failed.into_inner().unwrap() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
#[path = "gc_packs_tests.rs"]
mod tests;
