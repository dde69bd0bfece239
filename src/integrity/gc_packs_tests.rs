//! Unit tests of gc's pack sweep, on real pack files in a temporary directory.

use super::*;
use crate::progress::NoProgress;
use crate::storage::pack::index::tests::write_pack;
use crate::storage::pack::index::{PackSet, read_pack};
use std::collections::HashSet;
use std::fs;

const BS: u64 = 64;

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    tmp: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let tmp = root.join("tmp");
        fs::create_dir_all(root.join(PACKS_DIR)).unwrap();
        fs::create_dir_all(&tmp).unwrap();
        Fixture {
            _dir: dir,
            root,
            tmp,
        }
    }

    fn place(&self) -> PackSweepPlace<'_> {
        PackSweepPlace {
            root: &self.root,
            tmp_dir: &self.tmp,
            modes: Modes::PRIVATE,
            max_entry: BS,
            max_unused_percent: 0,
        }
    }

    /// Writes a pack of `blocks` into `packs/`; returns its path.
    fn pack(&self, blocks: &[&[u8]]) -> PathBuf {
        let id = write_pack(&self.root, blocks);
        self.root.join(PACKS_DIR).join(id.to_hex())
    }

    /// Every file in `packs/` with its bytes, sorted by name.
    fn snapshot(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut all: Vec<_> = fs::read_dir(self.root.join(PACKS_DIR))
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                let bytes = fs::read(&p).unwrap();
                (p, bytes)
            })
            .collect();
        all.sort();
        all
    }

    /// Every block a fresh index finds, with its bytes read back.
    fn readable(&self) -> Vec<Vec<u8>> {
        let set = PackSet::new(&self.root, BS);
        let mut out: Vec<Vec<u8>> = set
            .blocks()
            .unwrap()
            .iter()
            .map(|(h, _)| {
                let at = set.locate(h, false).unwrap().unwrap();
                let mut buf = vec![0; at.len as usize];
                File::open(&at.path)
                    .unwrap()
                    .read_exact_at(&mut buf, at.offset)
                    .unwrap();
                assert_eq!(BlockHash::of_bytes(&buf), *h);
                buf
            })
            .collect();
        out.sort();
        out
    }

    fn tmp_is_empty(&self) -> bool {
        fs::read_dir(&self.tmp).unwrap().count() == 0
    }
}

fn live_set(blocks: &[&[u8]]) -> impl Fn(&BlockHash) -> bool + Sync + use<> {
    let set: HashSet<BlockHash> = blocks.iter().map(|b| BlockHash::of_bytes(b)).collect();
    move |h: &BlockHash| set.contains(h)
}

#[test]
fn an_all_dead_pack_is_removed_and_an_all_live_one_stays() {
    let f = Fixture::new();
    let dead = f.pack(&[b"d1", b"dead2"]);
    let live = f.pack(&[b"l1", b"live2"]);
    let keep = live_set(&[b"l1", b"live2"]);
    let r = sweep_packs(&f.place(), &keep, false, &NoProgress).unwrap();
    assert!(!dead.exists());
    assert!(live.exists());
    assert_eq!(
        (r.packs_removed, r.packs_rewritten, r.bytes_rewritten),
        (1, 0, 0)
    );
    assert_eq!((r.blocks_freed, r.bytes_freed), (2, 7));
    assert_eq!((r.blocks_kept, r.bytes_kept), (2, 7));
    assert!(f.tmp_is_empty());
    let again = sweep_packs(&f.place(), &keep, false, &NoProgress).unwrap();
    assert_eq!((again.packs_removed, again.blocks_freed), (0, 0));
}

#[test]
fn a_partial_pack_is_rewritten_with_exactly_its_live_entries() {
    let f = Fixture::new();
    let old = f.pack(&[b"a", b"dead-b", b"ccc", b"dead-d"]);
    // "a" is also in a pack that stays: it is not copied again.
    let stays = f.pack(&[b"a", b"e"]);
    let keep = live_set(&[b"a", b"ccc", b"e"]);
    let r = sweep_packs(&f.place(), &keep, false, &NoProgress).unwrap();
    assert!(!old.exists() && stays.exists());
    assert_eq!(
        (r.packs_removed, r.packs_rewritten, r.bytes_rewritten),
        (1, 1, 3)
    );
    // Freed: the two dead entries and the duplicate "a".
    assert_eq!((r.blocks_freed, r.bytes_freed), (3, 13));
    assert_eq!((r.blocks_kept, r.bytes_kept), (3, 5));
    let packs = f.snapshot();
    assert_eq!(packs.len(), 2, "the stayer and one new pack");
    let new = packs.iter().find(|(p, _)| *p != stays).unwrap();
    let id: BlockHash = new
        .0
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let entries = read_pack(&new.0, &id, BS).unwrap().unwrap().unwrap();
    let hashes: Vec<BlockHash> = entries.iter().map(|e| e.hash).collect();
    assert_eq!(hashes, vec![BlockHash::of_bytes(b"ccc")]);
    assert_eq!(
        f.readable(),
        vec![b"a".to_vec(), b"ccc".to_vec(), b"e".to_vec()]
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(&new.0).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, Modes::PRIVATE.sealed(), "sealed like every pack");
    assert!(f.tmp_is_empty());
}

#[test]
fn a_corrupt_live_entry_stops_gc_and_changes_nothing() {
    let f = Fixture::new();
    let dead = f.pack(&[b"dead"]);
    let bad = f.pack(&[b"gone", b"live"]);
    // Flip a byte of the live entry's data (the index, hence the name, still matches).
    let mut bytes = fs::read(&bad).unwrap();
    bytes[5] ^= 0x20;
    fs::remove_file(&bad).unwrap();
    fs::write(&bad, bytes).unwrap();
    let before = f.snapshot();
    let keep = live_set(&[b"live"]);
    let err = sweep_packs(&f.place(), &keep, false, &NoProgress).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    assert!(text.contains(&bad.display().to_string()), "{text}");
    assert!(
        text.contains(&BlockHash::of_bytes(b"live").to_hex()),
        "{text}"
    );
    assert!(text.contains("arch fsck --repair"), "{text}");
    assert_eq!(f.snapshot(), before, "nothing in packs/ changed");
    assert!(dead.exists());
    assert!(f.tmp_is_empty(), "the new packs were removed");
}

#[test]
fn a_damaged_index_is_reported_and_left_alone() {
    let f = Fixture::new();
    let damaged = f.pack(&[b"x", b"y"]);
    let mut bytes = fs::read(&damaged).unwrap();
    let n = bytes.len();
    bytes[n - 30] ^= 1; // in the index: the pack no longer matches its name
    fs::remove_file(&damaged).unwrap();
    fs::write(&damaged, &bytes).unwrap();
    let dead = f.pack(&[b"z"]);
    let keep = live_set(&[]);
    let r = sweep_packs(&f.place(), &keep, false, &NoProgress).unwrap();
    assert_eq!(r.damaged.len(), 1);
    assert_eq!(r.damaged[0].0, damaged);
    assert!(r.damaged[0].1.contains("does not match its name"), "{r:?}");
    assert_eq!(fs::read(&damaged).unwrap(), bytes, "untouched");
    assert!(!dead.exists());
}

#[test]
fn a_dry_run_counts_and_changes_nothing() {
    let f = Fixture::new();
    f.pack(&[b"dead"]);
    f.pack(&[b"a", b"dead-b"]);
    let before = f.snapshot();
    let keep = live_set(&[b"a"]);
    let dry = sweep_packs(&f.place(), &keep, true, &NoProgress).unwrap();
    assert_eq!(f.snapshot(), before);
    assert!(f.tmp_is_empty());
    let done = sweep_packs(&f.place(), &keep, false, &NoProgress).unwrap();
    assert_eq!(dry, done, "the dry run counts what the real one does");
    assert_eq!((done.packs_removed, done.packs_rewritten), (2, 1));
}

#[test]
fn a_crash_after_the_new_packs_are_visible_leaves_both_and_a_second_gc_finishes() {
    let f = Fixture::new();
    let old = f.pack(&[b"keep-1", b"dead", b"keep-2"]);
    let all_dead = f.pack(&[b"dead-too"]);
    let keep = live_set(&[b"keep-1", b"keep-2"]);
    let crash = || Err(Error::invalid("injected crash"));
    let err = sweep_packs_with(&f.place(), &keep, false, &NoProgress, &crash).unwrap_err();
    assert!(err.to_string().contains("injected"), "{err}");
    // Old packs are still there, the new one too: every live block is readable, twice over.
    assert!(old.exists() && all_dead.exists());
    assert_eq!(f.snapshot().len(), 3);
    assert_eq!(
        f.readable(),
        vec![
            b"dead".to_vec(),
            b"dead-too".to_vec(),
            b"keep-1".to_vec(),
            b"keep-2".to_vec()
        ]
    );
    let r = sweep_packs(&f.place(), &keep, false, &NoProgress).unwrap();
    // The new pack stays (all live); the old one holds only dead entries and extra copies of
    // what the new one holds: removed without copying anything.
    assert_eq!(
        (r.packs_removed, r.packs_rewritten, r.bytes_rewritten),
        (2, 0, 0)
    );
    assert!(!old.exists() && !all_dead.exists());
    assert_eq!(f.readable(), vec![b"keep-1".to_vec(), b"keep-2".to_vec()]);
    assert!(f.tmp_is_empty());
}

#[test]
fn extra_copies_of_live_blocks_are_removed_once_the_kept_copy_is_verified() {
    let f = Fixture::new();
    let first = f.pack(&[b"a", b"b", b"c", b"d"]);
    // A smaller all-live pack holding copies of a and b plus a block of its own: rewritten
    // with its own block only. A third holding nothing but copies: removed, nothing copied.
    let second = f.pack(&[b"a", b"b", b"own"]);
    let third = f.pack(&[b"c", b"a"]);
    let keep = live_set(&[b"a", b"b", b"c", b"d", b"own"]);
    let dry = sweep_packs(&f.place(), &keep, true, &NoProgress).unwrap();
    let r = sweep_packs(&f.place(), &keep, false, &NoProgress).unwrap();
    assert_eq!(dry, r, "a dry run reports what gc does");
    assert!(first.exists() && !second.exists() && !third.exists());
    assert_eq!(
        (r.packs_removed, r.packs_rewritten, r.bytes_rewritten),
        (2, 1, 3)
    );
    assert_eq!((r.blocks_freed, r.bytes_freed), (4, 4));
    assert_eq!((r.blocks_kept, r.bytes_kept), (5, 7));
    let want: Vec<Vec<u8>> = [&b"a"[..], b"b", b"c", b"d", b"own"]
        .iter()
        .map(|b| b.to_vec())
        .collect();
    assert_eq!(f.readable(), want, "each live block once");
    assert_eq!(
        PackSet::new(&f.root, BS).duplicates().unwrap(),
        Default::default()
    );
    assert!(f.tmp_is_empty());
    let again = sweep_packs(&f.place(), &keep, false, &NoProgress).unwrap();
    assert_eq!((again.packs_removed, again.blocks_freed), (0, 0));
}

#[test]
fn an_extra_copy_is_kept_while_the_copy_in_place_is_corrupt() {
    let f = Fixture::new();
    let first = f.pack(&[b"block-x", b"y"]);
    let spare = f.pack(&[b"block-x"]);
    // Damage the copy of block-x gc would keep (the larger pack's, at offset 0).
    let mut bytes = fs::read(&first).unwrap();
    bytes[2] ^= 0x01;
    fs::remove_file(&first).unwrap();
    fs::write(&first, &bytes).unwrap();
    let before = f.snapshot();
    let keep = live_set(&[b"block-x", b"y"]);
    let err = sweep_packs(&f.place(), &keep, false, &NoProgress).unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&first.display().to_string()), "{text}");
    assert!(text.contains("arch fsck --repair"), "{text}");
    assert_eq!(f.snapshot(), before, "the good copy in {spare:?} stays");
    assert!(f.tmp_is_empty());
}

#[test]
fn max_unused_leaves_the_partly_unused_packs_with_the_smallest_unused_share() {
    let f = Fixture::new();
    // Kept: 8 + 8 + 8 + 8 = 32 bytes. Unused: 8 in `mostly`, 4 in `some`, 2 in `little`.
    let full = f.pack(&[b"kkkkkkkk"]);
    let mostly = f.pack(&[b"live-aaa", b"dead-aaa"]);
    let some = f.pack(&[b"live-bbb", b"dea1"]);
    let little = f.pack(&[b"live-ccc", b"d2"]);
    let keep = live_set(&[b"kkkkkkkk", b"live-aaa", b"live-bbb", b"live-ccc"]);
    let sweep = |pct: u32, dry: bool| {
        let place = PackSweepPlace {
            max_unused_percent: pct,
            ..f.place()
        };
        sweep_packs(&place, &keep, dry, &NoProgress).unwrap()
    };
    // 20% of 32 = 6.4 bytes: rewriting `mostly` leaves 6 unused, within the allowance.
    let r = sweep(20, true);
    assert_eq!(
        (r.packs_rewritten, r.packs_kept_partial, r.bytes_unused_kept),
        (1, 2, 6)
    );
    // 10% = 3.2 bytes: `some` goes too; `little` (2 unused bytes) stays.
    let r = sweep(10, false);
    assert_eq!(
        (r.packs_rewritten, r.packs_kept_partial, r.bytes_unused_kept),
        (2, 1, 2)
    );
    assert_eq!((r.blocks_freed, r.bytes_freed), (2, 12));
    assert!(full.exists() && !mostly.exists() && !some.exists() && little.exists());
    // The default frees the rest.
    let r = sweep(0, false);
    assert_eq!(
        (r.packs_rewritten, r.packs_kept_partial, r.bytes_freed),
        (1, 0, 2)
    );
    assert!(!little.exists());
    let mut want: Vec<Vec<u8>> = [&b"kkkkkkkk"[..], b"live-aaa", b"live-bbb", b"live-ccc"]
        .iter()
        .map(|b| b.to_vec())
        .collect();
    want.sort();
    assert_eq!(f.readable(), want);
}

#[test]
fn an_extra_copy_whose_kept_copy_stays_in_a_partly_unused_pack_is_verified_first() {
    let f = Fixture::new();
    // `first` keeps yy; `middle` keeps block-x and q, and stays under --max-unused with its
    // extra copy of yy; `last` holds only an extra copy of block-x: removed, but only after
    // block-x is read back from `middle`, where it is damaged.
    let first = f.pack(&[b"yy", b"aa", b"bb", b"cc"]);
    let middle = f.pack(&[b"block-x", b"yy", b"q"]);
    let last = f.pack(&[b"block-x"]);
    let mut bytes = fs::read(&middle).unwrap();
    bytes[1] ^= 0x01;
    fs::remove_file(&middle).unwrap();
    fs::write(&middle, &bytes).unwrap();
    let keep = live_set(&[b"yy", b"aa", b"bb", b"cc", b"block-x", b"q"]);
    let place = PackSweepPlace {
        max_unused_percent: 100,
        ..f.place()
    };
    let before = f.snapshot();
    let err = sweep_packs(&place, &keep, false, &NoProgress).unwrap_err();
    assert!(err.to_string().contains("arch fsck --repair"), "{err}");
    assert!(
        err.to_string().contains(&middle.display().to_string()),
        "{err}"
    );
    assert_eq!(f.snapshot(), before, "the good copy in {last:?} stays");
    assert!(first.exists());
}
