//! The packs of a local store seen as one in-memory index: which pack holds which block.
//!
//! Loaded lazily, on the first lookup, by reading every pack's footer and index (never its
//! data). A lookup that misses looks again at `packs/` when the directory may have changed
//! since it was listed (another process committed a pack), so a block committed before the
//! map that names it was read is always found.
//!
//! When "may have changed" is known: a directory's mtime/ctime change with every entry added
//! or removed, but they come from a coarse clock (one tick is a few ms), so a change in the
//! same tick as the listing can leave them equal. A listing taken at least [`SETTLE`] after
//! the directory's last change is *settled*: any later change gets a later timestamp, and an
//! equal stamp then means nothing changed. An unsettled listing is redone at every miss.
//!
//! A block held by several entries (two puts at once packed it twice, or a hostile pack lists
//! it many times) is looked up once through all of them: the first copy whose bytes hash to
//! the block's name becomes the one readers get, so a bad copy is never read while a good one
//! is stored (when none is good, readers get the first and report it corrupt). A block with
//! one copy is not hashed here: its readers verify it.

use super::format::{Entry, entry_matches, read_index};
use super::table::{BlockTable, Loc};
use crate::error::{Error, Result};
use crate::storage::fsutil::open_regular;
use crate::storage::hash::{BlockHash, BlockHashMap, BlockHashSet};
use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

/// Name of the directory, under a repository root, that holds the packs.
pub const PACKS_DIR: &str = "packs";
/// How long after a directory's last change a listing of it is settled (see the module
/// comment); far above a timestamp tick.
pub const SETTLE: Duration = Duration::from_millis(100);

/// Where a packed block's stored bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The pack's name and path.
    pub pack: BlockHash,
    pub path: PathBuf,
    pub offset: u64,
    pub len: u32,
}

/// The packs of one store. Shared between threads; every method takes `&self`. Lookups
/// that hit take the lock shared, so readers on many threads do not wait for each other;
/// only a load or a fresh look at the directory takes it exclusively.
pub struct PackSet {
    dir: PathBuf,
    max_entry: u64,
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    /// Packs loaded, in load order; `blocks` names them by their position here.
    packs: Vec<BlockHash>,
    /// Each block once: (position in `packs`, offset, stored length) in the first loaded
    /// pack holding it. About 48 bytes per block.
    blocks: BlockTable,
    /// Packs whose index is damaged, with the reason (their blocks are not in `blocks`).
    damaged: BTreeMap<BlockHash, String>,
    /// Entries holding a block an earlier loaded entry already holds (two puts at once, or
    /// a gc stopped between publishing a copy and removing the old pack): their count and
    /// bytes. gc removes them; du counts them as garbage.
    duplicates: Duplicates,
    /// Where the extra copies of a block are, until a lookup of the block has chosen a good
    /// copy among them and the kept one (see the module comment). Empty in the usual case.
    copies: BlockHashMap<Vec<Loc>>,
    /// The directory's stamp at the last listing and whether that listing was settled.
    listed: Option<(Stamp, bool)>,
}

/// Extra copies of packed blocks: entries beyond the first holding each block.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Duplicates {
    pub entries: u64,
    pub bytes: u64,
}

/// What identifies a state of the directory: inode, size, mtime and ctime (seconds, nanos).
type Stamp = [i64; 6];

fn stamp_of(m: &fs::Metadata) -> Stamp {
    [
        m.ino() as i64,
        m.size() as i64,
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    ]
}

/// True when the stamp's latest change is at least [`SETTLE`] before `now`.
fn settled(m: &fs::Metadata, now: SystemTime) -> bool {
    let last = |s: i64, ns: i64| {
        let t = Duration::new(s.max(0) as u64, ns.clamp(0, 999_999_999) as u32);
        SystemTime::UNIX_EPOCH + t
    };
    let latest = last(m.mtime(), m.mtime_nsec()).max(last(m.ctime(), m.ctime_nsec()));
    now.duration_since(latest).is_ok_and(|d| d >= SETTLE)
}

impl PackSet {
    /// The packs under `root/packs/` (which may not exist: no packs). Entries longer than
    /// `max_entry` (the block size) make a pack damaged.
    pub fn new(root: &Path, max_entry: u64) -> PackSet {
        PackSet {
            dir: root.join(PACKS_DIR),
            max_entry,
            state: RwLock::new(State::default()),
        }
    }

    /// The directory holding the packs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of pack `id`.
    pub fn path_of(&self, id: &BlockHash) -> PathBuf {
        self.dir.join(id.to_hex())
    }

    /// Where block `hash` is packed, None when no pack holds it. A miss looks at the
    /// directory again when it may have changed; `recheck` forces that (a pack found in the
    /// index was gone when opened).
    pub fn locate(&self, hash: &BlockHash, recheck: bool) -> Result<Option<Located>> {
        if !recheck {
            let st = self.state.read().unwrap();
            if (st.copies.is_empty() || !st.copies.contains_key(hash))
                && let Some(found) = self.found(&st, hash)
            {
                return Ok(Some(found));
            }
        }
        let mut st = self.state.write().unwrap();
        if recheck || !st.blocks.contains(hash) {
            self.refresh(&mut st, recheck)?;
        }
        self.keep_a_good_copy(&mut st, hash);
        Ok(self.found(&st, hash))
    }

    /// True when a pack known to this process holds `hash`, without looking at the directory
    /// again (after the first load): for de-duplication, where a miss only costs a copy.
    pub fn contains_known(&self, hash: &BlockHash) -> Result<bool> {
        {
            let st = self.state.read().unwrap();
            if st.listed.is_some() {
                return Ok(st.blocks.contains(hash));
            }
        }
        let mut st = self.state.write().unwrap();
        if st.listed.is_none() {
            self.refresh(&mut st, false)?;
        }
        Ok(st.blocks.contains(hash))
    }

    /// Looks at the directory again and loads the packs not seen yet (a writer calls it after
    /// publishing packs, so that [`Self::contains_known`] sees them).
    pub fn rescan(&self) -> Result<()> {
        let mut st = self.state.write().unwrap();
        self.refresh(&mut st, true)
    }

    /// Every packed block once, with its stored length, from a fresh look at the directory.
    pub fn blocks(&self) -> Result<Vec<(BlockHash, u64)>> {
        let mut st = self.state.write().unwrap();
        self.refresh(&mut st, true)?;
        Ok(st
            .blocks
            .iter()
            .map(|(h, (_, _, len))| (*h, u64::from(*len)))
            .collect())
    }

    /// The extra copies of packed blocks, from a fresh look at the directory.
    pub fn duplicates(&self) -> Result<Duplicates> {
        let mut st = self.state.write().unwrap();
        self.refresh(&mut st, true)?;
        Ok(st.duplicates)
    }

    /// Packs whose index is damaged, with the reason, from a fresh look at the directory.
    pub fn damaged(&self) -> Result<Vec<(PathBuf, String)>> {
        let mut st = self.state.write().unwrap();
        self.refresh(&mut st, true)?;
        Ok(st
            .damaged
            .iter()
            .map(|(id, why)| (self.path_of(id), why.clone()))
            .collect())
    }

    /// When `hash` has extra copies not looked at yet: makes the first good one among the
    /// kept copy and the extra ones (in load order) the copy kept, and forgets the others.
    /// When none is good the kept copy stays, for readers to report.
    fn keep_a_good_copy(&self, st: &mut State, hash: &BlockHash) {
        let Some(extra) = st.copies.remove(hash) else {
            return;
        };
        let Some(kept) = st.blocks.get(hash) else {
            return;
        };
        let mut buf = Vec::new();
        for loc in std::iter::once(kept).chain(extra) {
            if self.is_good_copy(st, hash, loc, &mut buf) {
                st.blocks.replace(hash, loc);
                return;
            }
        }
    }

    /// True when the entry at `loc` holds bytes that hash to `hash`. A pack gone since it
    /// was loaded (gc replaced it), shorter than its index, or unreadable holds no good copy.
    fn is_good_copy(&self, st: &State, hash: &BlockHash, loc: Loc, buf: &mut Vec<u8>) -> bool {
        let (at, offset, len) = loc;
        let path = self.path_of(&st.packs[at as usize]);
        let Ok(Some(file)) = open_regular(&path) else {
            return false;
        };
        let entry = Entry {
            hash: *hash,
            offset,
            len,
        };
        entry_matches(&file, &entry, buf)
    }

    fn found(&self, st: &State, hash: &BlockHash) -> Option<Located> {
        st.blocks.get(hash).map(|(at, offset, len)| {
            let pack = st.packs[at as usize];
            Located {
                pack,
                path: self.path_of(&pack),
                offset,
                len,
            }
        })
    }

    /// Lists the directory again unless the last listing is settled and the stamp unchanged
    /// (`force`: always). Loads the packs not seen yet; when a known pack is gone, rebuilds
    /// the index from the packs still there.
    fn refresh(&self, st: &mut State, force: bool) -> Result<()> {
        let now = SystemTime::now();
        let meta = match fs::metadata(&self.dir) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io("stat", &self.dir, e)),
        };
        let stamp = meta.as_ref().map_or([0; 6], stamp_of);
        if !force && st.listed == Some((stamp, true)) {
            return Ok(());
        }
        let names = match &meta {
            None => Vec::new(),
            Some(_) => list_pack_names(&self.dir)?,
        };
        // `names` is sorted: binary search.
        let listed = |id: &BlockHash| names.binary_search(id).is_ok();
        if !st.packs.iter().chain(st.damaged.keys()).all(listed) {
            *st = State::default();
        }
        let known: BlockHashSet = st.packs.iter().copied().collect();
        let new: Vec<BlockHash> = names
            .into_iter()
            .filter(|id| !known.contains(id) && !st.damaged.contains_key(id))
            .collect();
        // The entries of all the new packs, added to the table at once.
        let mut batch = Vec::new();
        read_packs(&self.dir, &new, self.max_entry, &mut |id, read| {
            match read {
                None => {} // removed since the listing
                Some(Ok(entries)) => {
                    let at = u32::try_from(st.packs.len())
                        .map_err(|_| Error::invalid("more than 2^32 packs"))?;
                    st.packs.push(id);
                    batch.extend(entries.into_iter().map(|e| (e.hash, (at, e.offset, e.len))));
                }
                Some(Err(why)) => {
                    st.damaged.insert(id, why);
                }
            }
            Ok(())
        })?;
        for (hash, loc) in st.blocks.extend(batch) {
            st.duplicates.entries += 1;
            st.duplicates.bytes += u64::from(loc.2);
            st.copies.entry(hash).or_default().push(loc);
        }
        st.listed = Some((stamp, meta.as_ref().is_some_and(|m| settled(m, now))));
        Ok(())
    }
}

/// The names in `dir` that are pack names (64 hex digits) held by regular files; anything
/// else (fsck reports it) is ignored. Sorted.
pub fn list_pack_names(dir: &Path) -> Result<Vec<BlockHash>> {
    let mut names = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(names),
        Err(e) => return Err(Error::io("list", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let Some(id) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<BlockHash>().ok())
        else {
            continue;
        };
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            names.push(id);
        }
    }
    names.sort();
    Ok(names)
}

/// How many pack indexes are read at once by [`read_packs`]: each read is a few small
/// `pread`s and a sha256 of the index, so with a cold cache the reads wait for the device
/// and several in flight overlap those waits.
const READ_THREADS: usize = 8;

/// What [`read_pack`] found: None when the pack is gone, `Some(Err(reason))` when damaged.
pub type PackRead = Option<std::result::Result<Vec<Entry>, String>>;

/// Reads and checks the indexes of the packs `ids` in `dir` on several threads, and hands
/// each to `each` on the calling thread as it is read (in no set order). At most about
/// 2 x [`READ_THREADS`] indexes are read and not yet handed over, so memory does not grow
/// with the number of packs. The first error (from a read or from `each`) stops the reads
/// and is returned.
pub fn read_packs(
    dir: &Path,
    ids: &[BlockHash],
    max_entry: u64,
    each: &mut dyn FnMut(BlockHash, PackRead) -> Result<()>,
) -> Result<()> {
    let read = |id: &BlockHash| read_pack(&dir.join(id.to_hex()), id, max_entry);
    let threads = READ_THREADS.min(ids.len());
    if threads <= 1 {
        return ids.iter().try_for_each(|id| each(*id, read(id)?));
    }
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel(threads);
        for _ in 0..threads {
            let tx = tx.clone();
            let (next, read) = (&next, &read);
            s.spawn(move || {
                while let Some(id) = ids.get(next.fetch_add(1, Ordering::Relaxed)) {
                    // A closed channel: the caller stopped at an error.
                    if tx.send((*id, read(id))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        // Returning drops `rx`: the readers stop at their next send.
        rx.iter().try_for_each(|(id, r)| each(id, r?))
    })
}

/// Reads and checks the index of the pack at `path` named `id`: None when it is gone,
/// `Some(Err(reason))` when it is damaged (or not a regular file).
pub fn read_pack(path: &Path, id: &BlockHash, max_entry: u64) -> Result<PackRead> {
    let file = match open_regular(path) {
        Ok(Some(f)) => f,
        Ok(None) => return Ok(None),
        Err(Error::Corrupt { reason, .. }) => return Ok(Some(Err(reason))),
        Err(e) => return Err(e),
    };
    read_index(&file, id, max_entry)
        .map(Some)
        .map_err(|e| Error::io("read pack index", path, e))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::format::{encode_tail, pack_id};
    use super::*;

    /// Writes a pack of `blocks` into `root/packs/` and returns its name.
    pub fn write_pack(root: &Path, blocks: &[&[u8]]) -> BlockHash {
        let entries: Vec<(BlockHash, u32)> = blocks
            .iter()
            .map(|b| (BlockHash::of_bytes(b), b.len() as u32))
            .collect();
        let tail = encode_tail(&entries);
        let mut bytes = blocks.concat();
        bytes.extend_from_slice(&tail);
        let id = pack_id(&tail);
        fs::create_dir_all(root.join(PACKS_DIR)).unwrap();
        fs::write(root.join(PACKS_DIR).join(id.to_hex()), bytes).unwrap();
        id
    }

    #[test]
    fn extra_copies_are_counted_once_each_and_forgotten_with_their_pack() {
        let dir = tempfile::tempdir().unwrap();
        let set = PackSet::new(dir.path(), 64);
        write_pack(dir.path(), &[b"aa", b"bbb"]);
        assert_eq!(set.duplicates().unwrap(), Duplicates::default());
        let second = write_pack(dir.path(), &[b"bbb", b"c", b"aa"]);
        let third = write_pack(dir.path(), &[b"bbb"]);
        let want = Duplicates {
            entries: 3,
            bytes: 8,
        };
        assert_eq!(set.duplicates().unwrap(), want);
        assert_eq!(set.blocks().unwrap().len(), 3, "each block once");
        for id in [second, third] {
            fs::remove_file(set.path_of(&id)).unwrap();
        }
        assert_eq!(set.duplicates().unwrap(), Duplicates::default());
    }

    #[test]
    fn finds_blocks_and_sees_packs_added_later() {
        let dir = tempfile::tempdir().unwrap();
        let set = PackSet::new(dir.path(), 64);
        let (a, b) = (BlockHash::of_bytes(b"aa"), BlockHash::of_bytes(b"bbb"));
        assert_eq!(
            set.locate(&a, false).unwrap(),
            None,
            "no packs directory: no packs"
        );
        let first = write_pack(dir.path(), &[b"aa", b"bbb"]);
        let at = set.locate(&b, false).unwrap().unwrap();
        assert_eq!((at.pack, at.offset, at.len), (first, 2, 3));
        // A pack committed by someone else right after our listing is found at the miss,
        // even within the same timestamp tick (the listing is not settled yet).
        let c = BlockHash::of_bytes(b"c");
        let second = write_pack(dir.path(), &[b"c"]);
        assert_eq!(set.locate(&c, false).unwrap().unwrap().pack, second);
        assert!(set.contains_known(&a).unwrap());
        let mut all = set.blocks().unwrap();
        all.sort();
        let mut want = vec![(a, 2), (b, 3), (c, 1)];
        want.sort();
        assert_eq!(all, want);
    }

    #[test]
    fn a_removed_pack_drops_its_blocks_and_a_damaged_one_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let set = PackSet::new(dir.path(), 64);
        let a = BlockHash::of_bytes(b"aa");
        let first = write_pack(dir.path(), &[b"aa"]);
        let both = write_pack(dir.path(), &[b"aa", b"z"]);
        assert!(set.locate(&a, false).unwrap().is_some());
        fs::remove_file(set.path_of(&first)).unwrap();
        let again = set.locate(&a, true).unwrap().unwrap();
        assert_eq!(again.pack, both, "found in the pack still there");
        // A pack whose bytes do not match its name is damaged: reported, its blocks absent.
        let p = set.path_of(&both);
        let mut bytes = fs::read(&p).unwrap();
        let n = bytes.len();
        bytes[n - 30] ^= 1;
        fs::remove_file(&p).unwrap();
        fs::write(&p, bytes).unwrap();
        let fresh = PackSet::new(dir.path(), 64);
        assert_eq!(fresh.locate(&a, false).unwrap(), None);
        let damaged = fresh.damaged().unwrap();
        assert_eq!(damaged.len(), 1);
        assert!(
            damaged[0].1.contains("does not match its name"),
            "{damaged:?}"
        );
    }

    #[test]
    fn many_packs_are_read_in_parallel_each_handed_over_once() {
        let dir = tempfile::tempdir().unwrap();
        let blocks: Vec<Vec<u8>> = (0..50u32).map(|i| i.to_le_bytes().to_vec()).collect();
        let mut ids: Vec<BlockHash> = blocks
            .iter()
            .map(|b| write_pack(dir.path(), &[b]))
            .collect();
        let packs = dir.path().join(PACKS_DIR);
        // One damaged (not a pack's bytes under its name), one gone since the listing.
        fs::remove_file(packs.join(ids[7].to_hex())).unwrap();
        fs::write(
            packs.join(ids[7].to_hex()),
            b"not a pack at all, long enough",
        )
        .unwrap();
        let gone = BlockHash::of_bytes(b"gone");
        ids.push(gone);
        let mut seen = Vec::new();
        read_packs(&packs, &ids, 64, &mut |id, read| {
            let got = match read {
                None => None,
                Some(Ok(entries)) => Some(Ok(entries.iter().map(|e| e.hash).collect())),
                Some(Err(_)) => Some(Err(())),
            };
            seen.push((id, got));
            Ok(())
        })
        .unwrap();
        seen.sort();
        let mut want: Vec<_> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| match i {
                7 => (*id, Some(Err(()))),
                50 => (*id, None),
                _ => (*id, Some(Ok(vec![BlockHash::of_bytes(&blocks[i])]))),
            })
            .collect();
        want.sort();
        assert_eq!(seen, want);
        // An error from the caller stops the reads and is returned.
        let mut calls = 0;
        let err = read_packs(&packs, &ids, 64, &mut |_, _| {
            calls += 1;
            Err(Error::invalid("stop here"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("stop here") && calls == 1);
    }

    #[test]
    fn symlinks_and_other_names_are_not_packs() {
        let dir = tempfile::tempdir().unwrap();
        let id = write_pack(dir.path(), &[b"aa"]);
        let packs = dir.path().join(PACKS_DIR);
        fs::rename(packs.join(id.to_hex()), dir.path().join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), packs.join(id.to_hex())).unwrap();
        fs::write(packs.join("notes.txt"), b"x").unwrap();
        let set = PackSet::new(dir.path(), 64);
        assert_eq!(
            set.locate(&BlockHash::of_bytes(b"aa"), false).unwrap(),
            None
        );
        assert!(set.blocks().unwrap().is_empty());
    }
}
