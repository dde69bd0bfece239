//! gc and fsck over packs (`arch init --packs on`, 4 KiB blocks): whole packs are removed,
//! partly dead packs rewritten with their live entries, a corrupt live entry or a damaged
//! pack index is reported and nothing live is lost; gc killed at any instant loses nothing.

use crate::crash::run_and_kill;
use crate::util::{TestRepo, local_store_only, pseudo_random};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

const BS: usize = 4096;
/// Exit status of a command stopped by damage (`Error::Corrupt`).
const CORRUPT_EXIT: i32 = 2;

pub(crate) fn packs(r: &TestRepo) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(r.root.join("packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// Runs `arch --json fsck ARGS` whatever its exit status; its report.
pub(crate) fn fsck(r: &TestRepo, args: &[&str]) -> Value {
    let out = r.run(&[&["--json", "fsck"][..], args].concat());
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Where the entry holding `block` starts in a pack's bytes, read from the pack's own index
/// (per entry: sha256 (32 bytes), u32 length; then magic, u64 count, u64 data length).
pub(crate) fn entry_offset(pack: &[u8], block: &[u8]) -> usize {
    use sha2::{Digest, Sha256};
    let footer = &pack[pack.len() - 24..];
    let count = u64::from_le_bytes(footer[8..16].try_into().unwrap()) as usize;
    let data_len = u64::from_le_bytes(footer[16..24].try_into().unwrap()) as usize;
    // Blocks are named (and stored) with their trailing zeros stripped, as Pithos does.
    let end = block.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let want = Sha256::digest(&block[..end]);
    let mut offset = 0;
    for entry in pack[data_len..data_len + 36 * count].chunks(36) {
        if entry[..32] == want[..] {
            return offset;
        }
        offset += u32::from_le_bytes(entry[32..].try_into().unwrap()) as usize;
    }
    panic!("no entry for the block in the pack")
}

/// Writes a valid pack of `blocks` (none ending in zeros) into `packs/`, as a put running at
/// the same time as another would have: per entry sha256 and u32 length, then the footer;
/// named by the sha256 of index and footer.
pub fn write_pack(root: &std::path::Path, blocks: &[&[u8]]) -> PathBuf {
    use sha2::{Digest, Sha256};
    let mut tail = Vec::new();
    for b in blocks {
        assert_ne!(b.last(), Some(&0), "stored blocks end in a non-zero byte");
        tail.extend_from_slice(&Sha256::digest(b));
        tail.extend_from_slice(&(b.len() as u32).to_le_bytes());
    }
    let data = blocks.concat();
    tail.extend_from_slice(b"ARCHPAK1");
    tail.extend_from_slice(&(blocks.len() as u64).to_le_bytes());
    tail.extend_from_slice(&(data.len() as u64).to_le_bytes());
    let path = root.join("packs").join(hex(&Sha256::digest(&tail)));
    std::fs::write(&path, [data, tail].concat()).unwrap();
    path
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A packed repository with "a" = X + Y and "b" = Y (Y shares a's pack), 64 blocks each.
fn shared_pack_repo() -> (TestRepo, Vec<u8>, Vec<u8>) {
    let r = TestRepo::packed();
    let x = pseudo_random(64 * BS, 1);
    let y = pseudo_random(64 * BS, 2);
    let a = [&x[..], &y[..]].concat();
    r.ok(&["put", r.file("a", &a).to_str().unwrap(), "c/a"]);
    r.ok(&["put", r.file("b", &y).to_str().unwrap(), "c/b"]);
    (r, a, y)
}

#[test]
fn gc_removes_dead_packs_and_rewrites_partial_ones() {
    if local_store_only("packs are kept in a local store only") {
        return;
    }
    let (r, _a, y) = shared_pack_repo();
    let other = pseudo_random(10 * BS + 7, 3);
    r.ok(&["put", r.file("c", &other).to_str().unwrap(), "c/other"]);
    assert_eq!(packs(&r).len(), 2, "b's blocks were all in a's pack");
    r.ok(&["rm", "c/a"]);
    let dry = r.json(&["gc", "--dry-run"]);
    assert_eq!(packs(&r).len(), 2, "a dry run changes nothing");
    let g = r.json(&["gc"]);
    for k in [
        "packs_removed",
        "packs_rewritten",
        "bytes_rewritten",
        "blocks_freed",
    ] {
        assert_eq!(dry[k], g[k], "{k}: {dry} vs {g}");
    }
    assert_eq!(g["packs_removed"], 1, "{g}");
    assert_eq!(g["packs_rewritten"], 1, "{g}");
    assert_eq!(g["bytes_rewritten"], 64 * BS, "{g}");
    assert_eq!(g["blocks_freed"], 64, "{g}");
    assert_eq!(g["warnings"], json!([]));
    assert_eq!(packs(&r).len(), 2, "other's pack and the rewritten one");
    assert_eq!(r.ok(&["get", "c/b"]), y);
    assert_eq!(r.ok(&["get", "c/other"]), other);
    let f = r.json(&["fsck", "--read-data"]);
    assert_eq!(f["problems"], json!([]), "{f}");
    assert_eq!(f["garbage"]["unreferenced_blocks"], 0, "{f}");
    // Everything removed: no pack left.
    r.ok(&["rm", "c/b"]);
    r.ok(&["rm", "c/other"]);
    let g = r.json(&["gc"]);
    assert_eq!(
        (g["packs_removed"].clone(), g["packs_rewritten"].clone()),
        (json!(2), json!(0))
    );
    assert!(packs(&r).is_empty());
}

#[test]
fn a_corrupt_live_packed_block_stops_gc_and_is_found_by_fsck() {
    if local_store_only("packs are kept in a local store only") {
        return;
    }
    let (r, _a, y) = shared_pack_repo();
    r.ok(&["rm", "c/a"]);
    let [pack] = &packs(&r)[..] else {
        panic!("one pack")
    };
    // Flip a byte in Y's first block (blocks are appended in parallel, so find it by its hash).
    let mut bytes = std::fs::read(pack).unwrap();
    let at = entry_offset(&bytes, &y[..BS]) + 100;
    bytes[at] ^= 0x55;
    std::fs::remove_file(pack).unwrap();
    std::fs::write(pack, &bytes).unwrap();
    let err = r.fails(CORRUPT_EXIT, &["gc"]);
    assert!(err.contains(&pack.display().to_string()), "{err}");
    assert!(err.contains("arch fsck --repair"), "{err}");
    assert_eq!(packs(&r), vec![pack.clone()], "gc changed no pack");
    assert_eq!(std::fs::read(pack).unwrap(), bytes);
    let f = fsck(&r, &["--read-data"]);
    let kinds: Vec<&str> = f["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["corrupt_block"], "{f}");
    assert_eq!(f["problems"][0]["resources"], json!(["object:c/b"]), "{f}");
}

#[test]
fn a_pack_with_a_damaged_index_is_reported_and_left_alone_by_gc() {
    if local_store_only("packs are kept in a local store only") {
        return;
    }
    let (r, _a, _y) = shared_pack_repo();
    let [pack] = &packs(&r)[..] else {
        panic!("one pack")
    };
    let mut bytes = std::fs::read(pack).unwrap();
    let n = bytes.len();
    bytes[n - 40] ^= 1; // in the index
    std::fs::remove_file(pack).unwrap();
    std::fs::write(pack, &bytes).unwrap();
    let f = fsck(&r, &[]);
    let damaged: Vec<&Value> = f["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "corrupt_pack")
        .collect();
    assert_eq!(damaged.len(), 1, "{f}");
    assert_eq!(damaged[0]["subject"], pack.display().to_string());
    let g = r.json(&["gc"]);
    let warnings = g["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{g}");
    assert!(warnings[0].as_str().unwrap().contains("arch fsck"), "{g}");
    assert_eq!(std::fs::read(pack).unwrap(), bytes, "untouched");
}

#[test]
fn gc_of_packs_killed_at_any_instant_loses_nothing_live() {
    if local_store_only("packs are kept in a local store only") {
        return;
    }
    let r = TestRepo::packed();
    let keep = pseudo_random(200 * BS, 7);
    r.ok(&["put", r.file("k", &keep).to_str().unwrap(), "c/keep"]);
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for trial in 0..crate::util::trials(8) {
        // Garbage sharing a pack with live data: gc has to rewrite it.
        let g = pseudo_random(100 * BS, 100 + trial);
        let live = pseudo_random(20 * BS, 500 + trial);
        let both = [&g[..], &live[..]].concat();
        r.ok(&["put", r.file("g", &both).to_str().unwrap(), "c/garbage"]);
        r.ok(&[
            "put",
            r.file("l", &live).to_str().unwrap(),
            &format!("c/live{trial}"),
        ]);
        r.ok(&["rm", "c/garbage"]);
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        run_and_kill(&r, &["gc"], Duration::from_micros(rng % 80_000));
        let f = r.json(&["fsck"]);
        assert_eq!(f["problems"], json!([]), "trial {trial}: {f}");
        assert_eq!(r.ok(&["get", "c/keep"]), keep, "trial {trial}");
        assert_eq!(
            r.ok(&["get", &format!("c/live{trial}")]),
            live,
            "trial {trial}"
        );
    }
    r.ok(&["gc"]);
    let f = r.json(&["fsck", "--read-data"]);
    assert_eq!(f["problems"], json!([]), "{f}");
    assert_eq!(f["garbage"]["unreferenced_blocks"], 0, "{f}");
}

#[test]
fn fsck_repair_quarantines_a_damaged_pack_after_saving_its_good_entries() {
    if local_store_only("packs are kept in a local store only") {
        return;
    }
    let (r, a, y) = shared_pack_repo();
    let x = a[..64 * BS].to_vec();
    r.ok(&["put", r.file("x", &x).to_str().unwrap(), "c/x"]);
    let [pack] = &packs(&r)[..] else {
        panic!("one pack")
    };
    let mut bytes = std::fs::read(pack).unwrap();
    let at = entry_offset(&bytes, &y[..BS]) + 100; // in Y's first block
    bytes[at] ^= 0x55;
    std::fs::remove_file(pack).unwrap();
    std::fs::write(pack, &bytes).unwrap();
    let f = fsck(&r, &["--read-data", "--repair"]);
    let repaired = f["repaired"].to_string();
    assert!(repaired.contains("quarantine/packs/"), "{f}");
    assert!(repaired.contains("127 good entries"), "{f}");
    let name = pack.file_name().unwrap();
    let held = r.root.join("quarantine/packs").join(name);
    assert_eq!(std::fs::read(&held).unwrap(), bytes, "moved whole");
    assert!(!pack.exists());
    assert_eq!(packs(&r).len(), 1, "the new pack of good entries");
    // Blocks of the good entries read back; the resources needing the bad one stay damaged.
    assert_eq!(r.ok(&["get", "c/x"]), x);
    let f = fsck(&r, &["--read-data"]);
    let problems = f["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{f}");
    assert_eq!(problems[0]["kind"], "missing_block", "{f}");
    assert_eq!(
        problems[0]["resources"],
        json!(["object:c/a", "object:c/b"]),
        "{f}"
    );
    // Putting the data again heals both.
    r.ok(&["put", r.file("y", &y).to_str().unwrap(), "c/y"]);
    assert_eq!(r.ok(&["get", "c/a"]), a);
    assert_eq!(fsck(&r, &["--read-data"])["problems"], json!([]));
}

#[test]
fn extra_copies_of_packed_blocks_are_garbage_for_du_and_gc_removes_them() {
    if local_store_only("packs are kept in a local store only") {
        return;
    }
    let r = TestRepo::packed();
    let x = pseudo_random(64 * BS, 7);
    r.ok(&["put", r.file("x", &x).to_str().unwrap(), "c/x"]);
    let [kept] = &packs(&r)[..] else {
        panic!("one pack")
    };
    let du = r.json(&["du"]);
    assert_eq!(du["garbage_bytes"], 0, "{du}");
    let stored = du["stored_bytes"].as_u64().unwrap();
    // A second copy of 16 of x's blocks, from a put that ran alongside.
    let copies: Vec<&[u8]> = x.chunks(BS).take(16).filter(|b| b[BS - 1] != 0).collect();
    let extra = write_pack(&r.root, &copies);
    let copied = (copies.len() * BS) as u64;
    let du = r.json(&["du"]);
    assert_eq!(du["garbage_bytes"], copied, "{du}");
    let f = fsck(&r, &[]);
    assert_eq!(f["garbage"]["extra_copies"], copies.len(), "{f}");
    assert_eq!(f["garbage"]["extra_copy_bytes"], copied, "{f}");
    assert_eq!(du["stored_bytes"], stored + copied, "{du}");
    let g = r.json(&["gc"]);
    assert_eq!(g["packs_removed"], 1, "{g}");
    assert_eq!(g["packs_rewritten"], 0, "{g}");
    assert_eq!(g["blocks_freed"], copies.len(), "{g}");
    assert_eq!(g["bytes_freed"], copied, "{g}");
    assert!(!extra.exists());
    assert_eq!(packs(&r), vec![kept.clone()], "the larger pack stays");
    assert_eq!(r.json(&["du"])["garbage_bytes"], 0);
    assert_eq!(fsck(&r, &[])["garbage"]["extra_copies"], 0);
    assert_eq!(r.ok(&["get", "c/x"]), x);
    assert_eq!(fsck(&r, &["--read-data"])["problems"], json!([]));
}

#[test]
fn max_unused_leaves_partly_unused_packs_that_fsck_and_du_count_and_plain_gc_frees() {
    if local_store_only("packs are kept in a local store only") {
        return;
    }
    let (r, _a, y) = shared_pack_repo();
    r.ok(&["rm", "c/a"]);
    // The pack is half unused (X's 64 blocks): 100% allows it, 10% does not.
    let g = r.json(&["gc", "--max-unused", "100"]);
    assert_eq!(
        (g["packs_removed"].clone(), g["packs_kept_partial"].clone()),
        (json!(0), json!(1)),
        "{g}"
    );
    let unused = g["bytes_unused_kept"].as_u64().unwrap();
    assert!(unused > 60 * BS as u64, "{g}");
    assert_eq!(r.json(&["du"])["garbage_bytes"], unused);
    let f = fsck(&r, &[]);
    assert_eq!(f["garbage"]["unreferenced_blocks"], 64, "{f}");
    let err = r.fails(2, &["gc", "--max-unused", "101"]);
    assert!(err.contains("--max-unused"), "{err}");
    let g = r.json(&["gc", "--max-unused", "10"]);
    assert_eq!(
        (
            g["packs_rewritten"].clone(),
            g["packs_kept_partial"].clone()
        ),
        (json!(1), json!(0)),
        "{g}"
    );
    assert_eq!(g["bytes_freed"], unused, "{g}");
    assert_eq!(r.json(&["du"])["garbage_bytes"], 0);
    assert_eq!(r.ok(&["get", "c/b"]), y);
}
