//! Object versions (Pithos semantics): put keeps the previous version, history lists them,
//! --version reads one, restore brings one back as a new version, prune-versions drops old
//! ones, gc keeps every block a kept version needs, rm removes the history.

use crate::util::{TestRepo, pseudo_random};

/// `c/x` put three times (versions 1..=3 of 9000 bytes each, seeds 1..=3).
fn three_versions() -> TestRepo {
    let r = TestRepo::new();
    for v in 1..=3u64 {
        let f = r.file(&format!("v{v}"), &pseudo_random(9000, v));
        r.ok(&["put", f.to_str().unwrap(), "c/x"]);
    }
    r
}

#[test]
fn put_keeps_versions_that_history_lists_and_version_reads() {
    let r = three_versions();
    let h = r.json(&["history", "c/x"]);
    let versions: Vec<u64> = h["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [3, 2, 1], "{h}");
    assert_eq!(h["versions"][0]["current"], true);
    r.ok(&["gc"]);
    for v in 1..=3u64 {
        let vs = v.to_string();
        assert_eq!(
            r.ok(&["get", "c/x", "--version", &vs]),
            pseudo_random(9000, v)
        );
        assert_eq!(r.json(&["info", "c/x", "--version", &vs])["version"], v);
        let hm = r.json(&["hashmap", "c/x", "--version", &vs]);
        assert_eq!(hm["hashes"].as_array().unwrap().len(), 3);
    }
    assert_eq!(r.ok(&["get", "c/x"]), pseudo_random(9000, 3));
    let err = r.fails(2, &["get", "c/x", "--version", "7"]);
    assert!(
        err.contains("no version 7") && err.contains("3, 2, 1"),
        "{err}"
    );
    // cp and clone of an old version.
    r.ok(&["cp", "c/x", "c/old", "--version", "1"]);
    assert_eq!(r.ok(&["get", "c/old"]), pseudo_random(9000, 1));
    r.ok(&["clone", "c/x", "vm", "--version", "2"]);
    assert_eq!(
        r.ok(&["volume", "read", "vm", "--offset", "0"]),
        pseudo_random(9000, 2)
    );
    let f = r.json(&["fsck", "--read-data"]);
    assert_eq!(f["problems"].as_array().unwrap().len(), 0, "{f}");
}

#[test]
fn restore_prune_and_rm() {
    let r = three_versions();
    r.ok(&["meta", "c/x", "--set", "k=v3"]);
    let stored = r.json(&["du"])["stored_bytes"].clone();
    let restored = r.json(&["restore", "c/x", "--version", "1"]);
    assert_eq!(restored["version"], 4);
    assert_eq!(r.ok(&["get", "c/x"]), pseudo_random(9000, 1));
    let info = r.json(&["info", "c/x"]);
    assert_eq!(info["version"], 4);
    assert!(info["meta"].as_object().unwrap().is_empty(), "{info}");
    // The image registration belongs to the object and describes its current version.
    r.ok(&["image", "register", "c/x", "--name", "X"]);
    let img = r.json(&["image", "info", "X"]);
    assert_eq!(img["version"], 4, "{img}");
    // No block was written by restore: everything it needs was already there.
    assert_eq!(r.json(&["du"])["stored_bytes"], stored);

    let dry = r.json(&["prune-versions", "--keep", "2", "--dry-run"]);
    assert_eq!(dry["removed"].as_array().unwrap().len(), 2, "{dry}");
    assert_eq!(
        r.json(&["history", "c/x"])["versions"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    let pruned = r.json(&["prune-versions", "c/x", "--keep", "2"]);
    let gone: Vec<u64> = pruned["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["version"].as_u64().unwrap())
        .collect();
    assert_eq!(gone, [2, 1]);
    // Version 2's blocks are garbage now; version 1's are still the current content's.
    let g = r.json(&["gc"]);
    assert_eq!(g["bytes_freed"], 9000, "{g}");
    assert_eq!(
        r.ok(&["get", "c/x", "--version", "3"]),
        pseudo_random(9000, 3)
    );
    assert_eq!(r.ok(&["get", "c/x"]), pseudo_random(9000, 1));
    assert!(
        r.fails(2, &["prune-versions", "--keep", "0"])
            .contains("--keep 0")
    );
    assert_eq!(
        r.json(&["prune-versions", "--older-than", "1h"])["removed"],
        serde_json::json!([])
    );

    r.ok(&["rm", "c/x"]);
    assert!(r.fails(2, &["history", "c/x"]).contains("not found"));
    let g = r.json(&["gc"]);
    assert_eq!(g["blocks_kept"], 0, "rm removes the whole history: {g}");
}

#[test]
fn a_damaged_old_version_is_reported_by_fsck_and_refused_on_read() {
    if crate::util::local_catalog_only("damages meta/catalog.db with SQLite") {
        return;
    }
    let r = three_versions();
    let c = rusqlite::Connection::open(r.root.join("meta/catalog.db")).unwrap();
    c.execute(
        "UPDATE versions SET modified = 'yesterday' WHERE version = 1",
        [],
    )
    .unwrap();
    drop(c);
    let out = r.run(&["--json", "fsck"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{report}");
    assert_eq!(problems[0]["kind"], "invalid_record");
    assert_eq!(
        problems[0]["resources"],
        serde_json::json!(["object:c/x@1"])
    );
    let err = r.fails(2, &["get", "c/x", "--version", "1"]);
    assert!(
        err.contains("damaged") && err.contains("yesterday"),
        "{err}"
    );
    assert_eq!(r.ok(&["get", "c/x"]), pseudo_random(9000, 3));
}

/// du streams its rows: each kept old version is a resource after its object (newest first),
/// the plain table has one line per resource, and the JSON document (written incrementally)
/// holds the same rows and totals.
#[test]
fn du_streams_one_row_per_kept_version() {
    let r = three_versions();
    let d = r.json(&["du"]);
    let names: Vec<&str> = d["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["resource"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["object:c/x", "object:c/x@2", "object:c/x@1"], "{d}");
    assert_eq!(d["logical_bytes"], 3 * 9000);
    let text = String::from_utf8(r.ok(&["du"])).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + 3 + 1, "{text}");
    assert!(lines[2].starts_with("object:c/x@2 "), "{text}");
    assert!(lines[4].starts_with("total: "), "{text}");
    // Only the current version when the object is named.
    let one = r.json(&["du", "c/x"]);
    assert_eq!(one["resources"].as_array().unwrap().len(), 1, "{one}");
    // Empty streamed listings are still one document each.
    assert_eq!(r.json(&["volume", "ls"])["volumes"], serde_json::json!([]));
    assert_eq!(r.json(&["image", "ls"])["images"], serde_json::json!([]));
}
