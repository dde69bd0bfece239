//! fsck over packs: `--read-data` hashes every copy of a block (a block two packs hold, one
//! copy bad, is found whichever copy the index picked) and `--repair` saves the bad pack's
//! good entries and quarantines it, after which every read finds the good copy.

use crate::crash::run_and_kill;
use crate::gc_packs::{entry_offset, fsck, packs};
use crate::privacy::{mkfifo, run_bounded};
use crate::util::{TestRepo, local_store_only, pseudo_random};
use serde_json::json;
use std::time::Duration;

const BS: usize = 4096;

#[test]
fn a_bad_second_copy_of_a_packed_block_is_found_and_repaired() {
    if local_store_only("packs are kept in a local store only") {
        return;
    }
    let r = TestRepo::packed();
    let x = pseudo_random(8 * BS, 11);
    let z = pseudo_random(4 * BS, 12);
    r.ok(&["put", r.file("x", &x).to_str().unwrap(), "c/a"]);
    let [p1] = &packs(&r)[..] else {
        panic!("one pack")
    };
    // Take X's pack out, put X again (with Z) so that a second pack holds X's blocks, then
    // put the first pack back: every block of X now has two copies.
    let aside = r.root.join("tmp").join("p1-aside");
    std::fs::rename(p1, &aside).unwrap();
    let xz = [x.clone(), z.clone()].concat();
    r.ok(&["put", r.file("xz", &xz).to_str().unwrap(), "c/b"]);
    std::fs::rename(&aside, p1).unwrap();
    assert_eq!(packs(&r).len(), 2);
    let clean = fsck(&r, &["--read-data"]);
    assert_eq!(clean["problems"], json!([]), "{clean}");
    let blocks_read = clean["blocks_read"].clone();
    // Flip a byte of X's third block in the first pack only.
    let mut bytes = std::fs::read(p1).unwrap();
    let at = entry_offset(&bytes, &x[2 * BS..3 * BS]);
    bytes[at + 7] ^= 0x20;
    std::fs::remove_file(p1).unwrap();
    std::fs::write(p1, &bytes).unwrap();
    let f = fsck(&r, &["--read-data"]);
    let problems = f["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{f}");
    assert_eq!(problems[0]["kind"], "corrupt_block", "{f}");
    let msg = problems[0]["message"].as_str().unwrap();
    let name = p1.file_name().unwrap().to_str().unwrap();
    assert!(msg.contains(&format!("packs/{name}")), "{msg}");
    assert!(msg.contains(&format!("at byte {at}")), "{msg}");
    assert_eq!(
        problems[0]["resources"],
        json!(["object:c/a", "object:c/b"]),
        "{f}"
    );
    assert_eq!(f["blocks_read"], blocks_read, "each block counted once");
    // Repair: the bad pack leaves packs/, its good entries are kept, every read is good.
    let rep = fsck(&r, &["--read-data", "--repair"]);
    let done = rep["repaired"].to_string();
    assert!(done.contains("1 corrupt entries"), "{rep}");
    assert!(!p1.exists());
    assert!(r.root.join("quarantine/packs").join(name).exists());
    let after = fsck(&r, &["--read-data"]);
    assert_eq!(after["problems"], json!([]), "{after}");
    assert_eq!(r.ok(&["get", "c/a"]), x);
    assert_eq!(r.ok(&["get", "c/b"]), xz);
}

/// Runs `arch --json ARGS` bounded (a command that opened a FIFO would never finish).
fn bounded_json(r: &TestRepo, args: &[&str]) -> (i32, serde_json::Value) {
    let out = run_bounded(r.cmd().arg("--json").args(args));
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{args:?}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap(), report)
}

#[test]
fn special_files_and_stray_names_in_packs_are_reported_moved_and_never_opened() {
    if local_store_only("packs are kept in a local store only") {
        return;
    }
    let r = TestRepo::packed();
    let x = pseudo_random(8 * BS, 21);
    r.ok(&["put", r.file("x", &x).to_str().unwrap(), "c/a"]);
    let dir = r.root.join("packs");
    let (fifo, sub, link) = (
        format!("{:064x}", 1),
        format!("{:064x}", 2),
        format!("{:064x}", 3),
    );
    mkfifo(&dir.join(&fifo));
    std::fs::create_dir(dir.join(&sub)).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.join(&link)).unwrap();
    std::fs::write(dir.join("leftover.tmp"), b"junk").unwrap();
    // gc neither hangs nor fails on them, and leaves them alone.
    let (code, gc) = bounded_json(&r, &["gc"]);
    assert_eq!(code, 0, "{gc}");
    let (code, f) = bounded_json(&r, &["fsck", "--read-data"]);
    assert_ne!(code, 0, "{f}");
    let mut subjects: Vec<String> = f["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["kind"], "not_regular_file", "{f}");
            p["subject"].as_str().unwrap().to_string()
        })
        .collect();
    subjects.sort();
    let want: Vec<String> = [&fifo, &sub, &link]
        .iter()
        .map(|n| format!("packs/{n}"))
        .collect();
    assert_eq!(subjects, want, "{f}");
    let warnings = f["warnings"].to_string();
    assert!(warnings.contains("packs/leftover.tmp is not a pack"), "{f}");
    assert!(warnings.contains("removed by hand"), "{f}");
    // Repair moves each into quarantine/packs/ (the stray name is left: a warning only).
    let (_, rep) = bounded_json(&r, &["fsck", "--repair"]);
    let moved: Vec<&str> = rep["repaired"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m.as_str().filter(|m| m.contains("(not a regular file)")))
        .collect();
    assert_eq!(moved.len(), 3, "{rep}");
    assert!(
        !rep["warnings"].to_string().contains("stays accessible"),
        "{rep}"
    );
    let q = r.root.join("quarantine/packs");
    for n in [&fifo, &sub, &link] {
        assert!(
            !dir.join(n).exists() && !dir.join(n).is_symlink(),
            "{n} left packs/"
        );
        assert!(q.join(n).symlink_metadata().is_ok(), "{n} in quarantine");
    }
    assert!(dir.join("leftover.tmp").exists());
    let (code, after) = bounded_json(&r, &["fsck", "--read-data"]);
    assert_eq!(code, 0, "{after}");
    assert_eq!(after["problems"], json!([]), "{after}");
    assert_eq!(r.ok(&["get", "c/a"]), x);
}

#[test]
fn fsck_repair_killed_at_any_instant_loses_no_good_block() {
    if local_store_only("packs are kept in a local store only") {
        return;
    }
    let x = pseudo_random(64 * BS, 31);
    let y = pseudo_random(64 * BS, 32);
    let a = [&x[..], &y[..]].concat();
    let bad_hash = {
        use sha2::{Digest, Sha256};
        hex(&Sha256::digest(&y[..BS]))
    };
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    for trial in 0..6 {
        let r = TestRepo::packed();
        r.ok(&["put", r.file("a", &a).to_str().unwrap(), "c/a"]);
        r.ok(&["put", r.file("x", &x).to_str().unwrap(), "c/x"]);
        let [pack] = &packs(&r)[..] else {
            panic!("one pack")
        };
        // Y's first block has one copy, and it is bad.
        let mut bytes = std::fs::read(pack).unwrap();
        let at = entry_offset(&bytes, &y[..BS]) + 9;
        bytes[at] ^= 0x41;
        std::fs::remove_file(pack).unwrap();
        std::fs::write(pack, &bytes).unwrap();
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        run_and_kill(
            &r,
            &["fsck", "--read-data", "--repair"],
            Duration::from_micros(rng % 60_000),
        );
        // Every block with a good copy still reads.
        assert_eq!(r.ok(&["get", "c/x"]), x, "trial {trial}");
        let again = fsck(&r, &["--read-data", "--repair"]);
        assert!(again["problems"].is_array(), "trial {trial}: {again}");
        let f = fsck(&r, &["--read-data"]);
        let problems = f["problems"].as_array().unwrap();
        assert!(!problems.is_empty(), "trial {trial}: {f}");
        for p in problems {
            assert_eq!(p["kind"], "missing_block", "trial {trial}: {f}");
            assert_eq!(p["subject"], bad_hash.as_str(), "trial {trial}: {f}");
        }
        assert_eq!(r.ok(&["get", "c/x"]), x, "trial {trial}");
        // Putting the data again heals the block.
        r.ok(&["put", r.file("y", &y).to_str().unwrap(), "c/y"]);
        let healed = fsck(&r, &["--read-data"]);
        assert_eq!(healed["problems"], json!([]), "trial {trial}: {healed}");
        assert_eq!(r.ok(&["get", "c/a"]), a, "trial {trial}");
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn two_bad_blocks_of_one_pack_are_both_reported_repaired() {
    if local_store_only("packs are kept in a local store only") {
        return;
    }
    let r = TestRepo::packed();
    let x = pseudo_random(8 * BS, 41);
    r.ok(&["put", r.file("x", &x).to_str().unwrap(), "c/x"]);
    let [pack] = &packs(&r)[..] else {
        panic!("one pack")
    };
    let mut bytes = std::fs::read(pack).unwrap();
    for i in [2, 5] {
        let at = entry_offset(&bytes, &x[i * BS..(i + 1) * BS]);
        bytes[at + 1] ^= 0x08;
    }
    std::fs::remove_file(pack).unwrap();
    std::fs::write(pack, &bytes).unwrap();
    let f = fsck(&r, &["--read-data", "--repair"]);
    let problems = f["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "{f}");
    for p in problems {
        let msg = p["message"].as_str().unwrap();
        assert!(msg.contains("2 corrupt entries"), "{f}");
        assert!(msg.contains("quarantine/packs/"), "{f}");
    }
    let after = fsck(&r, &["--read-data"]);
    let kinds: Vec<&str> = after["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["missing_block", "missing_block"], "{after}");
}
