//! fsck over packs: `--read-data` hashes every copy of a block (a block two packs hold, one
//! copy bad, is found whichever copy the index picked) and `--repair` saves the bad pack's
//! good entries and quarantines it, after which every read finds the good copy.

use crate::gc_packs::{entry_offset, fsck, packs};
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
