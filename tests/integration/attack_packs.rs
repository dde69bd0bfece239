//! Attacks on packs (`arch init --packs on`, 4 KiB blocks): gc killed at any instant while it
//! drops extra copies of live blocks, and a hostile pack that lists one block many times
//! (every copy good, or one good among corrupt ones).

use crate::crash::run_and_kill;
use crate::gc_packs::{fsck, packs, write_pack};
use crate::util::{TestRepo, local_store_only, pseudo_random};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const BS: usize = 4096;
/// Exit status of a command stopped by damage (`Error::Corrupt`).
const CORRUPT_EXIT: i32 = 2;

/// A block as stored: its trailing zeros stripped.
fn stripped(block: &[u8]) -> &[u8] {
    &block[..block.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)]
}

/// The stored blocks of `data` (4 KiB blocks, zero blocks left out).
fn stored_blocks(data: &[u8]) -> Vec<&[u8]> {
    data.chunks(BS)
        .map(stripped)
        .filter(|b| !b.is_empty())
        .collect()
}

/// The entries (block hash, stored length) of the pack at `path`, read from its own index
/// (per entry: sha256, u32 length; then magic, u64 count, u64 data length).
fn pack_index(path: &std::path::Path) -> Vec<([u8; 32], u64)> {
    let bytes = std::fs::read(path).unwrap();
    let footer = &bytes[bytes.len() - 24..];
    assert_eq!(&footer[..8], b"ARCHPAK1", "{}", path.display());
    let count = u64::from_le_bytes(footer[8..16].try_into().unwrap()) as usize;
    let data_len = u64::from_le_bytes(footer[16..24].try_into().unwrap()) as usize;
    bytes[data_len..data_len + 36 * count]
        .chunks(36)
        .map(|e| {
            let len = u32::from_le_bytes(e[32..].try_into().unwrap());
            (e[..32].try_into().unwrap(), u64::from(len))
        })
        .collect()
}

/// The garbage on disk, counted from the packs' own indexes against the blocks the test
/// knows are live: (extra copies, their bytes, unreferenced blocks, their bytes).
fn garbage_on_disk(r: &TestRepo, live: &HashSet<[u8; 32]>) -> [u64; 4] {
    let mut first: HashMap<[u8; 32], u64> = HashMap::new();
    let (mut extra, mut extra_bytes) = (0, 0);
    for p in packs(r) {
        for (h, len) in pack_index(&p) {
            if first.insert(h, len).is_some() {
                extra += 1;
                extra_bytes += len;
            }
        }
    }
    let dead: Vec<u64> = first
        .iter()
        .filter(|(h, _)| !live.contains(*h))
        .map(|(_, l)| *l)
        .collect();
    [extra, extra_bytes, dead.len() as u64, dead.iter().sum()]
}

/// Asserts that `du` and `fsck` count exactly the garbage on disk, and agree.
fn assert_garbage_counted(r: &TestRepo, live: &HashSet<[u8; 32]>, what: &str) -> [u64; 4] {
    let want = garbage_on_disk(r, live);
    let f = fsck(r, &[]);
    assert_eq!(f["problems"], json!([]), "{what}: {f}");
    let g = &f["garbage"];
    let got = [
        "extra_copies",
        "extra_copy_bytes",
        "unreferenced_blocks",
        "unreferenced_bytes",
    ]
    .map(|k| g[k].as_u64().unwrap());
    assert_eq!(
        got, want,
        "{what}: fsck's garbage against the packs' indexes: {g}"
    );
    let du = r.json(&["du"]);
    assert_eq!(du["garbage_bytes"], want[1] + want[3], "{what}: {du}");
    want
}

/// Where a killed gc stopped, as seen from the files it leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Stop {
    /// Before its pack sweep changed anything.
    Before,
    /// While copying kept entries into new packs (its work directory under `tmp/` is left).
    WhileCopying,
    /// After publishing new packs or removing old ones, before the last of those (garbage
    /// is left in `packs/`).
    AfterPublishing,
    /// After its pack sweep (no garbage left), before it exited.
    AfterSweep,
    /// Not killed: it ran to the end.
    Finished,
}

/// The work directories of gc's pack sweep under `tmp/`.
fn gc_work_dirs(r: &TestRepo) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(r.root.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("gc-packs-"))
        .collect();
    v.sort();
    v
}

/// The stored blocks of `objects`, by hash.
fn live_blocks(objects: &[(String, Vec<u8>)]) -> HashSet<[u8; 32]> {
    objects
        .iter()
        .flat_map(|(_, data)| stored_blocks(data))
        .map(|b| Sha256::digest(b).into())
        .collect()
}

/// How many trials a live object of the kill test outlives (then it is removed: garbage).
const KEPT_TRIALS: u64 = 3;

#[test]
fn gc_killed_at_any_instant_while_dropping_extra_copies_loses_nothing_and_counts_right() {
    if local_store_only("packs are kept in a local store only") {
        return;
    }
    let r = TestRepo::packed();
    let keep = pseudo_random(64 * BS, 7);
    r.ok(&["put", r.file("k", &keep).to_str().unwrap(), "c/keep"]);
    // The live objects and their data: c/keep and those of the last few trials.
    let objects = std::cell::RefCell::new(vec![("c/keep".to_string(), keep)]);
    // Trial n's set-up: live object c/lN = U + V, and around it
    // - pack A (U, from the put): all kept, it stays;
    // - pack B (8 copies of U's blocks): all extra copies, removed once A's copies verify;
    // - pack C (G + V, from a put of c/g then removed): garbage and extra copies of V;
    // - pack D (all of V, 5 of U's blocks, 31 garbage blocks): larger than C, so V is kept
    //   here and D is rewritten, while C goes whole;
    // - pack Z (from a put of c/z then removed): plain garbage;
    // and c/l(N-3) removed (its packs, and copies a killed gc left of them, become garbage).
    let set_up = |n: u64| {
        let u = pseudo_random(20 * BS, 1000 + n);
        let v = pseudo_random(10 * BS, 2000 + n);
        let g = pseudo_random(30 * BS, 3000 + n);
        let z = pseudo_random(10 * BS, 4000 + n);
        let junk = pseudo_random(31 * BS, 5000 + n);
        let gv = [&g[..], &v[..]].concat();
        r.ok(&["put", r.file("gv", &gv).to_str().unwrap(), "c/g"]);
        let uv = [&u[..], &v[..]].concat();
        let name = format!("c/l{n}");
        r.ok(&["put", r.file("uv", &uv).to_str().unwrap(), &name]);
        r.ok(&["put", r.file("z", &z).to_str().unwrap(), "c/z"]);
        let (us, vs) = (stored_blocks(&u), stored_blocks(&v));
        seal(write_pack(&r.root, &us[..8]));
        let d: Vec<&[u8]> = vs
            .iter()
            .chain(&us[12..17])
            .chain(&stored_blocks(&junk))
            .copied()
            .collect();
        seal(write_pack(&r.root, &d));
        r.ok(&["rm", "c/g"]);
        r.ok(&["rm", "c/z"]);
        let mut objects = objects.borrow_mut();
        objects.push((name, uv));
        if n >= KEPT_TRIALS {
            let old = format!("c/l{}", n - KEPT_TRIALS);
            r.ok(&["rm", &old]);
            objects.retain(|(name, _)| *name != old);
        }
    };
    let all_read_back = |what: &str| {
        for (name, data) in objects.borrow().iter() {
            assert!(
                r.ok(&["get", name]) == *data,
                "{what}: {name} reads back different"
            );
        }
    };
    // Calibration: a whole gc of one trial's set-up, timed (it must drop extra copies).
    set_up(0);
    let before = assert_garbage_counted(&r, &live_blocks(&objects.borrow()), "calibration");
    assert!(before[0] >= 23 && before[2] >= 71, "{before:?}");
    let t = Instant::now();
    let g = r.json(&["gc"]);
    let full = t.elapsed().as_micros() as u64 + 1;
    assert!(g["packs_rewritten"].as_u64().unwrap() >= 1, "{g}");
    assert_eq!(
        assert_garbage_counted(&r, &live_blocks(&objects.borrow()), "calibration"),
        [0; 4]
    );
    // Trial n: set up, kill gc after `delay`, check; where the kill stopped it.
    let trial = |n: u64, delay: Duration| -> Stop {
        set_up(n);
        let what = format!("trial {n} ({delay:?}; a whole gc took {full} us)");
        let live = live_blocks(&objects.borrow());
        let before = assert_garbage_counted(&r, &live, &what);
        assert!(before[0] >= 23 && before[2] >= 71, "{what}: {before:?}");
        let (packs_before, work_before) = (packs(&r), gc_work_dirs(&r));
        let finished = run_and_kill(&r, &["gc"], delay);
        let after = assert_garbage_counted(&r, &live, &what);
        all_read_back(&what);
        if finished {
            assert_eq!(after, [0; 4], "{what}: a finished gc leaves no garbage");
            Stop::Finished
        } else if packs(&r) != packs_before {
            if after == [0; 4] {
                Stop::AfterSweep
            } else {
                Stop::AfterPublishing
            }
        } else if gc_work_dirs(&r) != work_before {
            Stop::WhileCopying
        } else {
            Stop::Before
        }
    };
    let mut rng = 0xD1B5_4A32_D192_ED03u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut seen: HashMap<Stop, u32> = HashMap::new();
    let mut n = 1;
    let run = |n: &mut u64, delay: u64, seen: &mut HashMap<Stop, u32>| {
        let stop = trial(*n, Duration::from_micros(delay));
        *seen.entry(stop).or_default() += 1;
        *n += 1;
        stop
    };
    // Instants spread over the whole run (and half as long past it).
    for _ in 0..crate::util::trials(16) {
        run(&mut n, next() % (full + full / 2), &mut seen);
    }
    // The calibration is one run; on a loaded machine every trial may have been slower than
    // it: later kills until one gc completes (each checked the same way).
    let mut late = full * 2;
    while !seen.contains_key(&Stop::Finished) && late < full * 64 {
        run(&mut n, late, &mut seen);
        late *= 2;
    }
    // The sweep's changes take a small part of the run: more instants around the kills that
    // landed there (between the latest kill too early and the earliest too late until one
    // did), until several did.
    let in_sweep = |seen: &HashMap<Stop, u32>| {
        [Stop::WhileCopying, Stop::AfterPublishing]
            .iter()
            .map(|s| seen.get(s).copied().unwrap_or(0))
            .sum::<u32>()
    };
    let (mut early, mut done) = (0, full * 64);
    let mut sweep: Vec<u64> = Vec::new();
    for _ in 0..40 {
        if in_sweep(&seen) >= 8 {
            break;
        }
        let (lo, hi) = match (sweep.iter().min(), sweep.iter().max()) {
            (Some(&lo), Some(&hi)) => (lo.saturating_sub(full / 8), hi + full / 8),
            _ => (early, done),
        };
        let at = lo + next() % (hi - lo).max(1);
        match run(&mut n, at, &mut seen) {
            Stop::Before => early = early.max(at),
            Stop::Finished | Stop::AfterSweep => done = done.min(at),
            Stop::WhileCopying | Stop::AfterPublishing => sweep.push(at),
        }
    }
    eprintln!("a whole gc: {full} us; {n} trials: {seen:?}");
    assert!(
        seen.contains_key(&Stop::Finished),
        "no gc completed: the kills are too early"
    );
    assert!(
        in_sweep(&seen) > 0,
        "no gc was stopped in its pack sweep: the test proves nothing"
    );
    let g = r.json(&["gc"]);
    assert_eq!(g["warnings"], json!([]), "{g}");
    let live = live_blocks(&objects.borrow());
    assert_eq!(assert_garbage_counted(&r, &live, "the last gc"), [0; 4]);
    let f = fsck(&r, &["--read-data"]);
    assert_eq!(f["problems"], json!([]), "{f}");
    all_read_back("at the end");
}

/// Writes a pack whose entry i claims block `hashes[i]` and holds `data[i]` (valid footer
/// and name, whatever the data).
fn write_pack_claiming(root: &std::path::Path, hashes: &[[u8; 32]], data: &[&[u8]]) -> PathBuf {
    let mut tail = Vec::with_capacity(36 * data.len() + 24);
    for (hash, d) in hashes.iter().zip(data) {
        tail.extend_from_slice(hash);
        tail.extend_from_slice(&(d.len() as u32).to_le_bytes());
    }
    let bytes = data.concat();
    tail.extend_from_slice(b"ARCHPAK1");
    tail.extend_from_slice(&(data.len() as u64).to_le_bytes());
    tail.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    let name: String = Sha256::digest(&tail)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let path = root.join("packs").join(name);
    std::fs::write(&path, [bytes, tail].concat()).unwrap();
    seal(path)
}

/// Makes a hand-made pack read-only to its owner, as arch seals the packs it writes.
fn seal(pack: PathBuf) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pack, std::fs::Permissions::from_mode(0o400)).unwrap();
    pack
}

/// Copies of block `hash` in the packs, by pack.
fn copies_of(r: &TestRepo, hash: &[u8; 32]) -> Vec<(PathBuf, usize)> {
    packs(r)
        .into_iter()
        .map(|p| {
            let n = pack_index(&p).iter().filter(|(h, _)| h == hash).count();
            (p, n)
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// How many entries the hostile packs list for one block (1-byte entries: 2.3 MiB of index).
const REPEATS: usize = 1 << 16;

#[test]
fn a_pack_listing_one_block_many_times_is_read_counted_and_collected_exactly() {
    if local_store_only("packs are kept in a local store only") {
        return;
    }
    let (r, x, own) = repo_holding_x();
    let live: HashSet<[u8; 32]> = stored_blocks(&x)
        .iter()
        .map(|b| Sha256::digest(b).into())
        .collect();
    let hx: [u8; 32] = Sha256::digest(b"x").into();
    let n = REPEATS as u64;
    seal(write_pack(&r.root, &vec![&b"x"[..]; REPEATS]));
    assert_eq!(
        assert_garbage_counted(&r, &live, "hostile pack"),
        [n, n, 0, 0],
        "every entry past the first holding x is an extra copy"
    );
    assert!(r.ok(&["get", "c/x"]) == x);
    let f = fsck(&r, &["--read-data"]);
    assert_eq!(f["problems"], json!([]), "{f}");
    assert_eq!(f["blocks_read"], 3, "each stored block once: {f}");
    let f = fsck(&r, &["--read-data", "--repair"]);
    assert_eq!(
        (&f["problems"], &f["repaired"]),
        (&json!([]), &json!([])),
        "{f}"
    );
    // The put's pack stays whole; the hostile one goes whole, nothing copied.
    let g = r.json(&["gc"]);
    assert_eq!(
        (&g["blocks_freed"], &g["bytes_freed"]),
        (&json!(n), &json!(n)),
        "{g}"
    );
    assert_eq!(
        (&g["packs_removed"], &g["packs_rewritten"]),
        (&json!(1), &json!(0)),
        "{g}"
    );
    assert_eq!(packs(&r), vec![own.clone()], "{g}");
    assert_eq!(copies_of(&r, &hx), vec![(own.clone(), 1)], "one copy left");
    assert_eq!(assert_garbage_counted(&r, &live, "after gc"), [0; 4]);
    assert!(r.ok(&["get", "c/x"]) == x);
    assert_eq!(fsck(&r, &["--read-data"])["problems"], json!([]));
    // The repeats beside one bad (dead) entry: repair saves x once, not once per entry.
    let mut data = vec![&b"x"[..]; REPEATS];
    data.push(b"q");
    let mut claims = vec![hx; REPEATS];
    claims.push(Sha256::digest(b"z").into());
    let hostile = write_pack_claiming(&r.root, &claims, &data);
    let f = fsck(&r, &["--read-data"]);
    let problems = f["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{f}");
    assert_eq!(problems[0]["resources"], json!([]), "a dead entry: {f}");
    let f = fsck(&r, &["--read-data", "--repair"]);
    let repaired = f["repaired"].to_string();
    assert!(
        repaired.contains("after copying its 1 good entries"),
        "{repaired}"
    );
    assert!(!hostile.exists());
    assert_eq!(copies_of(&r, &hx).len(), 2, "the put's and the saved one");
    assert_eq!(
        assert_garbage_counted(&r, &live, "after repair"),
        [1, 1, 0, 0]
    );
    r.ok(&["gc"]);
    assert_eq!(packs(&r), vec![own], "the saved copy was an extra one");
    assert!(r.ok(&["get", "c/x"]) == x);
}

/// A packed repository holding c/x: a random block, a block stored as the 1 byte "x", and
/// another random block, all in one pack (returned).
fn repo_holding_x() -> (TestRepo, Vec<u8>, PathBuf) {
    let r = TestRepo::packed();
    let mut tiny = vec![0u8; BS];
    tiny[0] = b'x';
    let x = [pseudo_random(BS, 1), tiny, pseudo_random(BS, 2)].concat();
    r.ok(&["put", r.file("x", &x).to_str().unwrap(), "c/x"]);
    let [own] = &packs(&r)[..] else {
        panic!("one pack")
    };
    let own = own.clone();
    (r, x, own)
}

#[test]
fn a_pack_of_bad_copies_listing_one_block_many_times_does_not_stop_gc_when_a_good_copy_stays() {
    if local_store_only("packs are kept in a local store only") {
        return;
    }
    let (r, x, own) = repo_holding_x();
    let hx: [u8; 32] = Sha256::digest(b"x").into();
    let hostile = write_pack_claiming(&r.root, &vec![hx; REPEATS], &vec![&b"y"[..]; REPEATS]);
    // Whichever pack the index loads first, a reader checks the copies of a block held more
    // than once and reads a good one.
    assert!(r.ok(&["get", "c/x"]) == x);
    assert!(r.ok(&["get", "c/x"]) == x);
    assert_eq!(
        fsck(&r, &["--read-data"])["problems"]
            .as_array()
            .unwrap()
            .len(),
        REPEATS
    );
    // gc keeps the copy of the pack that stays (verified) and removes the hostile one.
    let g = r.json(&["gc"]);
    assert_eq!(
        (&g["packs_removed"], &g["packs_rewritten"]),
        (&json!(1), &json!(0)),
        "{g}"
    );
    assert_eq!(packs(&r), vec![own]);
    assert!(!hostile.exists(), "the hostile pack is removed whole");
    assert!(r.ok(&["get", "c/x"]) == x);
    assert_eq!(fsck(&r, &["--read-data"])["problems"], json!([]));
}

#[test]
fn a_pack_listing_one_block_many_times_with_one_good_copy_is_reported_and_repaired() {
    if local_store_only("packs are kept in a local store only") {
        return;
    }
    let r = TestRepo::packed();
    // c/t: one block, stored as the 1 byte "x"; its only copies are in the hostile pack,
    // where one entry in the middle holds "x" and every other one "y" under x's hash.
    let mut t = vec![0u8; BS];
    t[0] = b'x';
    r.ok(&["put", r.file("t", &t).to_str().unwrap(), "c/t"]);
    let [own] = &packs(&r)[..] else {
        panic!("one pack")
    };
    std::fs::remove_file(own).unwrap();
    let hx: [u8; 32] = Sha256::digest(b"x").into();
    let live = HashSet::from([hx]);
    let good = REPEATS / 2;
    let mut data = vec![&b"y"[..]; REPEATS];
    data[good] = b"x";
    let hostile = write_pack_claiming(&r.root, &vec![hx; REPEATS], &data);
    let rel = hostile.strip_prefix(&r.root).unwrap().display().to_string();
    let n = REPEATS as u64;
    assert_eq!(
        assert_garbage_counted(&r, &live, "hostile pack"),
        [n - 1, n - 1, 0, 0]
    );
    // The first entry is bad: a reader checks the copies in order and reads the good one,
    // by get to a stream and by get to a file.
    assert!(r.ok(&["get", "c/t"]) == t);
    let out = r.path("t.out");
    r.ok(&["get", "c/t", "-o", out.to_str().unwrap()]);
    assert!(std::fs::read(&out).unwrap() == t);
    std::fs::remove_file(&out).unwrap();
    // Every bad copy is a problem naming the pack, its offset and the object.
    let f = fsck(&r, &["--read-data"]);
    let problems = f["problems"].as_array().unwrap();
    assert_eq!(problems.len(), REPEATS - 1, "one per bad copy");
    let mut offsets = HashSet::new();
    for p in problems {
        assert_eq!(p["kind"], "corrupt_block", "{p}");
        assert_eq!(p["resources"], json!(["object:c/t"]), "{p}");
        let msg = p["message"].as_str().unwrap();
        assert!(msg.contains(&rel), "{msg}");
        let at = msg
            .split(" at byte ")
            .nth(1)
            .unwrap()
            .split(':')
            .next()
            .unwrap();
        offsets.insert(at.parse::<usize>().unwrap());
    }
    assert_eq!(offsets.len(), REPEATS - 1);
    assert!(!offsets.contains(&good), "the good copy is not reported");
    // gc keeps the first copy, which is bad: it stops, naming the pack, and changes nothing.
    let err = r.fails(CORRUPT_EXIT, &["gc"]);
    assert!(
        err.contains(&hostile.display().to_string()) && err.contains("fsck --repair"),
        "{err}"
    );
    assert_eq!(packs(&r), vec![hostile.clone()]);
    // Repair saves the one good copy into a new pack and quarantines the hostile one.
    let f = fsck(&r, &["--read-data", "--repair"]);
    assert_eq!(f["problems"].as_array().unwrap().len(), REPEATS - 1);
    let repaired = f["repaired"].as_array().unwrap();
    assert_eq!(
        repaired.len(),
        1,
        "one line for the block, not one per bad copy"
    );
    let line = repaired[0].as_str().unwrap();
    assert!(line.contains("quarantine/packs/"), "{line}");
    assert!(line.contains("after copying its 1 good entries"), "{line}");
    assert!(line.contains("a good copy is still stored"), "{line}");
    assert!(!hostile.exists());
    assert_eq!(
        copies_of(&r, &hx).iter().map(|c| c.1).collect::<Vec<_>>(),
        [1]
    );
    assert!(r.ok(&["get", "c/t"]) == t);
    assert_eq!(fsck(&r, &["--read-data"])["problems"], json!([]));
    assert_eq!(assert_garbage_counted(&r, &live, "after repair"), [0; 4]);
    r.ok(&["gc"]);
    assert!(r.ok(&["get", "c/t"]) == t);
}
