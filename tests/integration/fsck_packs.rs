//! fsck over packs: `--read-data` hashes every copy of a block (a block two packs hold, one
//! copy bad, is found whichever copy the index picked) and `--repair` saves the bad pack's
//! good entries and quarantines it, after which every read finds the good copy.

use crate::gc_packs::{entry_offset, fsck, packs};
use crate::privacy::{mkfifo, run_bounded};
use crate::util::{TestRepo, local_store_only, pseudo_random};
use serde_json::json;

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
