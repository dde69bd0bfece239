//! Corrupt blocks heal: get names the block and the remedy, `fsck --read-data --repair`
//! moves the block to quarantine/ and lists everything that needs it without calling it
//! repaired, and the next put, volume import or snapshot holding the data writes the block
//! again, after which every resource that needed it reads correctly.

use crate::stored;
use crate::util::{TestRepo, pseudo_random};

/// Flips the first byte of what is stored at `rel` (a sealed local file is opened up first,
/// as someone repairing by hand would).
fn flip_first_byte(r: &TestRepo, rel: &str) {
    stored::damage(r, rel, |b| b[0] ^= 1);
}

/// The hash and stored location of the second block of `name`.
fn second_block(r: &TestRepo, name: &str) -> (String, String) {
    let h = r.json(&["hashmap", name])["hashes"][1]
        .as_str()
        .unwrap()
        .to_string();
    let p = stored::data_rel(r, "blocks", &h);
    (h, p)
}

fn fsck_json(r: &TestRepo, args: &[&str]) -> (i32, serde_json::Value) {
    let mut all = vec!["--json", "fsck"];
    all.extend_from_slice(args);
    let out = r.run(&all);
    (
        out.status.code().unwrap(),
        serde_json::from_slice(&out.stdout).unwrap(),
    )
}

#[test]
fn a_quarantined_block_is_written_again_by_the_next_put_and_old_objects_read_again() {
    let r = TestRepo::new();
    let data = pseudo_random(4 * 4096, 11);
    let src = r.file("data", &data);
    r.ok(&["put", src.to_str().unwrap(), "images/disk"]);
    r.ok(&["image", "register", "images/disk", "--name", "Disk"]);
    r.ok(&["cp", "images/disk", "c/copy"]);
    r.ok(&["clone", "Disk", "vm", "--no-customize"]);
    let (h, block) = second_block(&r, "images/disk");
    flip_first_byte(&r, &block);

    let err = r.fails(2, &["get", "images/disk"]);
    assert!(
        err.contains(&format!(
            "corrupted block {h} at offset 4096 of images/disk"
        )) && err.contains("arch fsck --read-data --repair")
            && err.contains("put the original data again"),
        "{err}"
    );
    // A put now would dedup against the bad block: re-putting before the repair does not heal.
    r.ok(&["put", src.to_str().unwrap(), "c/too-early"]);
    r.fails(2, &["get", "c/too-early"]);

    let (code, report) = fsck_json(&r, &["--read-data", "--repair"]);
    assert_eq!(code, 1, "the resources are still damaged: {report}");
    let repaired = report["repaired"].to_string();
    for needed in [
        "quarantine/blocks/",
        "object:images/disk",
        "image:Disk",
        "object:c/copy",
        "object:c/too-early",
        "volume:vm",
    ] {
        assert!(
            repaired.contains(needed),
            "{needed} missing from {repaired}"
        );
    }
    assert!(repaired.contains("still damaged until its data is put again"));
    assert_eq!(report["problems"][0]["kind"], "corrupt_block");
    assert!(
        !stored::exists(&r, &block),
        "the corrupt block left the store"
    );
    let held = stored::quarantined(&r, "blocks", &h);
    assert_eq!(held.len(), 1, "{held:?}");

    // Still damaged, and said so, until the data comes back.
    let (code, report) = fsck_json(&r, &[]);
    assert_eq!(code, 1);
    assert_eq!(report["problems"][0]["kind"], "missing_block");
    assert!(
        report["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("quarantine/blocks/"),
        "{report}"
    );
    let err = r.fails(2, &["get", "images/disk"]);
    assert!(err.contains(&format!("missing block {h}")), "{err}");
    r.ok(&["gc"]);
    assert_eq!(
        stored::quarantined(&r, "blocks", &h),
        held,
        "gc leaves quarantine/ alone"
    );

    let put = r.json(&["put", src.to_str().unwrap(), "c/again"]);
    assert_eq!(put["blocks_written"], 1, "{put}");
    for name in ["images/disk", "c/copy", "c/too-early", "c/again"] {
        assert_eq!(r.ok(&["get", name]), data, "{name}");
    }
    assert_eq!(r.ok(&["volume", "read", "vm", "--offset", "0"]), data);
    let (code, report) = fsck_json(&r, &["--read-data"]);
    assert_eq!(code, 0, "{report}");
    assert!(
        report["warnings"]
            .to_string()
            .contains("quarantine/ holds 1"),
        "{report}"
    );
}

#[test]
fn volume_import_and_snapshot_also_write_a_quarantined_block_again() {
    let r = TestRepo::new();
    let data = pseudo_random(3 * 4096, 12);
    let src = r.file("data", &data);
    r.ok(&["put", src.to_str().unwrap(), "c/a"]);
    let (h, block) = second_block(&r, "c/a");
    flip_first_byte(&r, &block);
    r.fails(1, &["fsck", "--read-data", "--repair"]);
    assert_eq!(stored::quarantined(&r, "blocks", &h).len(), 1);
    let import = r.json(&["volume", "import", src.to_str().unwrap(), "v"]);
    assert!(import["blocks_written"].as_u64().unwrap() >= 1, "{import}");
    assert_eq!(r.ok(&["get", "c/a"]), data);
    r.ok(&["fsck", "--read-data"]);

    // Again, healed this time by a snapshot of a volume holding the data.
    let (_, block) = second_block(&r, "c/a");
    flip_first_byte(&r, &block);
    r.fails(1, &["fsck", "--read-data", "--repair"]);
    assert_eq!(stored::quarantined(&r, "blocks", &h).len(), 2);
    let zeros = r.file("zeros", &[0u8; 3 * 4096]);
    r.ok(&["volume", "import", zeros.to_str().unwrap(), "w"]);
    let out = r.run_stdin(&["volume", "write", "w", "--offset", "0"], &data);
    assert!(out.status.success());
    r.ok(&["snapshot", "w", "w-s1"]);
    assert_eq!(r.ok(&["get", "c/a"]), data);
    assert_eq!(r.ok(&["volume", "read", "v", "--offset", "0"]), data);
    r.ok(&["fsck", "--read-data"]);
}

#[test]
fn repair_without_read_data_moves_nothing_it_has_not_verified() {
    let r = TestRepo::new();
    let src = r.file("data", &pseudo_random(3 * 4096, 13));
    r.ok(&["put", src.to_str().unwrap(), "c/a"]);
    let (_, block) = second_block(&r, "c/a");
    flip_first_byte(&r, &block);
    let (code, report) = fsck_json(&r, &["--repair"]);
    assert_eq!(
        code, 0,
        "without --read-data blocks are not rehashed: {report}"
    );
    assert!(stored::exists(&r, &block), "nothing moved");
    assert!(stored::no_quarantine(&r));
}

#[test]
fn a_corrupt_map_is_quarantined_and_the_same_put_writes_it_again() {
    let r = TestRepo::new();
    let data = pseudo_random(3 * 4096, 14);
    let src = r.file("data", &data);
    r.ok(&["put", src.to_str().unwrap(), "c/a"]);
    let catalog: serde_json::Value = crate::catalog_db::read(&r);
    let map = catalog["objects"]["c/a"]["map"]
        .as_str()
        .unwrap()
        .to_string();
    let path = stored::data_rel(&r, "maps", &map);
    flip_first_byte(&r, &path);
    let err = r.fails(2, &["get", "c/a"]);
    assert!(err.contains(&map) || err.contains("map"), "{err}");
    // Maps are always verified: --repair alone quarantines them.
    let (code, report) = fsck_json(&r, &["--repair"]);
    assert_eq!(code, 1, "{report}");
    assert!(
        report["repaired"].to_string().contains("quarantine/maps/"),
        "{report}"
    );
    assert!(!stored::exists(&r, &path));
    assert_eq!(stored::quarantined(&r, "maps", &map).len(), 1);
    r.ok(&["put", src.to_str().unwrap(), "c/b"]);
    assert_eq!(r.ok(&["get", "c/a"]), data);
    let (code, report) = fsck_json(&r, &["--read-data"]);
    assert_eq!(code, 0, "{report}");
}

#[test]
fn a_block_quarantined_twice_is_still_named_when_only_its_second_copy_remains() {
    let r = TestRepo::new();
    let data = pseudo_random(3 * 4096, 21);
    let src = r.file("data", &data);
    r.ok(&["put", src.to_str().unwrap(), "c/a"]);
    let (h, block) = second_block(&r, "c/a");
    flip_first_byte(&r, &block);
    r.fails(1, &["fsck", "--read-data", "--repair"]);
    r.ok(&["put", src.to_str().unwrap(), "c/b"]);
    let (_, block) = second_block(&r, "c/a");
    flip_first_byte(&r, &block);
    r.fails(1, &["fsck", "--read-data", "--repair"]);
    let copies = stored::quarantined(&r, "blocks", &h);
    assert_eq!(copies.len(), 2, "{copies:?}");
    // The user deletes one copy; the other one still explains the missing block.
    stored::remove(&r, &copies[0]);
    let (code, report) = fsck_json(&r, &[]);
    assert_eq!(code, 1, "{report}");
    let missing = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == "missing_block" && p["subject"] == h.as_str())
        .unwrap_or_else(|| panic!("{report}"));
    assert!(
        missing["message"].as_str().unwrap().contains("quarantined"),
        "{missing}"
    );
}
