//! fsck, gc and du through the CLI: clean repositories, garbage, every kind of damage, and
//! gc running beside writers.

use crate::stored;
use crate::util::{TestRepo, pseudo_random};

fn put(r: &TestRepo, name: &str, data: &[u8]) -> serde_json::Value {
    let p = r.file("src", data);
    r.json(&["put", p.to_str().unwrap(), name])
}

#[test]
fn fresh_and_busy_repositories_are_clean() {
    let r = TestRepo::new();
    assert_eq!(r.json(&["fsck"])["problems"], serde_json::json!([]));
    put(&r, "c/a", &pseudo_random(30_000, 1));
    put(&r, "c/b", &pseudo_random(30_000, 1));
    let report = r.json(&["fsck", "--read-data"]);
    assert_eq!(report["problems"], serde_json::json!([]));
    assert_eq!(report["blocks_read"], 8);
    assert_eq!(report["garbage"]["unreferenced_blocks"], 0);
}

#[test]
fn rm_leaves_garbage_that_gc_frees_and_nothing_else() {
    let r = TestRepo::new();
    let keep = pseudo_random(20_000, 2);
    put(&r, "c/keep", &keep);
    put(&r, "c/gone", &pseudo_random(20_000, 3));
    // A superseded version is kept (Pithos versioning): its blocks are not garbage...
    let old = pseudo_random(8192, 4);
    put(&r, "c/keep2", &old);
    put(&r, "c/keep2", &pseudo_random(8192, 5));
    // ...but an object removed with `rm` goes with its whole history.
    put(&r, "c/gone", &pseudo_random(8192, 6));
    r.ok(&["rm", "c/gone"]);
    let f = r.json(&["fsck"]);
    assert_eq!(f["problems"], serde_json::json!([]));
    assert_eq!(f["garbage"]["unreferenced_blocks"], 5 + 2);
    assert_eq!(f["garbage"]["unreferenced_maps"], 2);
    let before = r.snapshot();
    let dry = r.json(&["gc", "--dry-run"]);
    assert_eq!(dry["blocks_freed"], 7);
    assert_eq!(r.snapshot(), before, "dry run changed the repository");
    let g = r.json(&["gc"]);
    assert_eq!(g["blocks_freed"], 7);
    assert_eq!(g["maps_freed"], 2);
    assert_eq!(g["bytes_freed"], 20_000 + 8192);
    let f = r.json(&["fsck", "--read-data"]);
    assert_eq!(f["garbage"]["unreferenced_blocks"], 0);
    assert_eq!(r.ok(&["get", "c/keep"]), keep);
    // The kept version's blocks survived gc: its map still reads back.
    let du = r.json(&["du"]);
    assert!(du.to_string().contains("object:c/keep2@1"), "{du}");
    assert_eq!(r.json(&["gc"])["blocks_freed"], 0);
}

#[test]
fn flipped_byte_is_found_by_read_data_with_its_users() {
    let r = TestRepo::new();
    put(&r, "c/a", &pseudo_random(3 * 4096, 6));
    r.ok(&["cp", "c/a", "c/b"]);
    let h = r.json(&["hashmap", "c/a"])["hashes"][2]
        .as_str()
        .unwrap()
        .to_string();
    let p = stored::data_rel(&r, "blocks", &h);
    stored::damage(&r, &p, |b| b[0] ^= 1);
    r.ok(&["fsck"]); // presence only: still exit 0
    let out = r.run(&["--json", "fsck", "--read-data"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let p0 = &report["problems"][0];
    assert_eq!(p0["kind"], "corrupt_block");
    assert_eq!(p0["subject"], h);
    assert_eq!(
        p0["resources"],
        serde_json::json!(["object:c/a", "object:c/b"])
    );
    // gc never removes a referenced block, even a corrupt one.
    r.ok(&["gc"]);
    assert!(stored::exists(&r, &p));
}

#[test]
fn missing_block_truncated_map_and_garbage_catalog_are_reported() {
    let r = TestRepo::new();
    put(&r, "c/a", &pseudo_random(3 * 4096, 7));
    let h = r.json(&["hashmap", "c/a"])["hashes"][0]
        .as_str()
        .unwrap()
        .to_string();
    stored::remove(&r, &stored::data_rel(&r, "blocks", &h));
    let out = r.run(&["--json", "fsck"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["problems"][0]["kind"], "missing_block");
    assert_eq!(report["problems"][0]["subject"], h);

    let r = TestRepo::new();
    put(&r, "c/a", &pseudo_random(3 * 4096, 8));
    let catalog: serde_json::Value = crate::catalog_db::read(&r);
    let map = catalog["objects"]["c/a"]["map"]
        .as_str()
        .unwrap()
        .to_string();
    stored::damage(&r, &stored::data_rel(&r, "maps", &map), |b| {
        b.truncate(b.len() - 5)
    });
    let out = r.run(&["--json", "fsck"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["problems"][0]["kind"], "corrupt_map");
    let err = r.fails(2, &["get", "c/a"]);
    assert!(err.contains("damaged") && err.contains("fsck"), "{err}");
    let err = r.fails(2, &["gc"]);
    assert!(err.contains("fsck"), "{err}");

    if crate::util::local_catalog_only("garbage written over meta/catalog.db") {
        return;
    }
    let r = TestRepo::new();
    std::fs::write(
        r.root.join("meta/catalog.db"),
        b"{\"format\": 1, \"objects\": [",
    )
    .unwrap();
    let out = r.run(&["--json", "fsck"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["problems"][0]["kind"], "corrupt_catalog");
    let err = r.fails(2, &["ls"]);
    assert!(err.contains("catalog.db"), "{err}");
}

#[test]
fn temp_leftovers_are_garbage_and_repair_removes_only_them() {
    let r = TestRepo::new();
    let data = pseudo_random(10_000, 9);
    put(&r, "c/a", &data);
    std::fs::create_dir(r.root.join("tmp/batch-1-dead")).unwrap();
    std::fs::write(r.root.join("tmp/batch-1-dead/x"), b"partial").unwrap();
    std::fs::write(r.root.join("tmp/write-1-dead"), b"partial").unwrap();
    let f = r.json(&["fsck"]);
    assert_eq!(f["garbage"]["temp_entries"], 2);
    let fixed = r.json(&["fsck", "--repair"]);
    assert_eq!(fixed["repaired"].as_array().unwrap().len(), 2);
    assert_eq!(fixed["garbage"]["temp_entries"], 0);
    assert_eq!(r.ok(&["get", "c/a"]), data);
}

#[test]
fn du_counts_unique_and_shared_bytes() {
    let r = TestRepo::new();
    let shared = pseudo_random(4 * 4096, 10);
    put(&r, "c/a", &shared);
    let mut b = shared.clone();
    b.extend(pseudo_random(4096, 11));
    b.extend(vec![0u8; 4096]);
    put(&r, "c/b", &b);
    let d = r.json(&["du"]);
    let rows = d["resources"].as_array().unwrap();
    let a = rows.iter().find(|x| x["resource"] == "object:c/a").unwrap();
    let bb = rows.iter().find(|x| x["resource"] == "object:c/b").unwrap();
    assert_eq!(a["unique_bytes"], 0);
    assert_eq!(a["shared_bytes"], 4 * 4096);
    assert_eq!(bb["unique_bytes"], 4096);
    assert_eq!(bb["logical_bytes"], 6 * 4096);
    assert_eq!(d["stored_bytes"], 5 * 4096);
    let ratio = d["dedup_ratio"].as_f64().unwrap();
    assert!((ratio - 10.0 / 5.0).abs() < 1e-9, "{ratio}");
    let one = r.json(&["du", "c/b"]);
    assert_eq!(one["resources"].as_array().unwrap().len(), 1);
    r.fails(2, &["du", "c/zz"]);
}

#[test]
fn gc_beside_concurrent_puts_never_loses_a_block() {
    let r = TestRepo::new();
    let datas: Vec<Vec<u8>> = (0..3).map(|i| pseudo_random(200_000, 20 + i)).collect();
    let paths: Vec<_> = datas
        .iter()
        .enumerate()
        .map(|(i, d)| r.file(&format!("d{i}"), d))
        .collect();
    std::thread::scope(|s| {
        for (i, p) in paths.iter().enumerate() {
            let r = &r;
            s.spawn(move || {
                for round in 0..4 {
                    r.ok(&["put", p.to_str().unwrap(), &format!("c/{i}")]);
                    if round % 2 == 0 {
                        r.ok(&["rm", &format!("c/{i}")]);
                    }
                }
            });
        }
        let r = &r;
        s.spawn(move || {
            for _ in 0..6 {
                r.ok(&["gc"]);
            }
        });
    });
    r.ok(&["gc"]);
    let f = r.json(&["fsck", "--read-data"]);
    assert_eq!(f["problems"], serde_json::json!([]));
    assert_eq!(f["garbage"]["unreferenced_blocks"], 0);
    for (i, d) in datas.iter().enumerate() {
        assert_eq!(&r.ok(&["get", &format!("c/{i}")]), d, "c/{i} lost data");
    }
}

#[test]
fn volume_garbage_is_found_by_fsck_and_removed_by_gc() {
    let r = TestRepo::new();
    let p = r.file("d", &pseudo_random(64 << 10, 4));
    r.ok(&["put", p.to_str().unwrap(), "images/d"]);
    r.ok(&["clone", "images/d", "v"]);
    let w = r.file("w", &pseudo_random(8192, 5));
    r.ok(&["volume", "write", "v", "--offset", "0", w.to_str().unwrap()]);
    let content = r.ok(&["volume", "read", "v", "--offset", "0"]);
    let id = r.json(&["volume", "info", "v"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    // What interrupted operations leave: a removed volume's directory, an old epoch, a block
    // past the end (files, or objects in the store), a lock of a removed volume.
    stored::write(&r, "volumes/0000-gone/1/0", &[1u8; 4096]);
    stored::write(&r, &format!("volumes/{id}/0/3"), &[2u8; 4096]);
    stored::write(&r, &format!("volumes/{id}/1/999"), &[3u8; 4096]);
    std::fs::write(r.root.join("locks/volume-0000-gone.lock"), b"").unwrap();
    let f = r.json(&["fsck"]);
    assert_eq!(
        f["problems"],
        serde_json::json!([]),
        "garbage is not damage"
    );
    assert_eq!(f["garbage"]["volume_entries"], 3);
    assert_eq!(f["garbage"]["stale_locks"], 1);
    let du = r.json(&["du", "v"]);
    assert!(
        du["resources"][0]["unique_bytes"].as_u64().unwrap() >= 8192,
        "private blocks count as the volume's own: {du}"
    );
    let gc = r.json(&["gc"]);
    assert_eq!(gc["volume_entries_removed"], 3);
    assert_eq!(gc["stale_locks_removed"], 1);
    let f = r.json(&["fsck", "--read-data"]);
    assert_eq!(f["garbage"]["volume_entries"], 0);
    assert_eq!(f["garbage"]["stale_locks"], 0);
    assert_eq!(r.ok(&["volume", "read", "v", "--offset", "0"]), content);

    // A truncated private block is damage, named with its volume.
    stored::write(&r, &format!("volumes/{id}/1/0"), b"short");
    let out = r.run(&["--json", "fsck"]);
    assert_eq!(out.status.code(), Some(1));
    let f: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(f["problems"][0]["kind"], "damaged_private_block");
    assert_eq!(f["problems"][0]["resources"][0], "volume:v");
    let err = r.fails(2, &["volume", "read", "v", "--offset", "0"]);
    assert!(err.contains("private block"), "{err}");
}

#[test]
fn concurrent_puts_clones_snapshots_removals_and_gc() {
    let r = TestRepo::new();
    let base = pseudo_random(256 << 10, 6);
    let p = r.file("base", &base);
    r.ok(&["put", p.to_str().unwrap(), "images/base"]);
    std::thread::scope(|s| {
        for worker in 0..3 {
            let r = &r;
            s.spawn(move || {
                for round in 0..4 {
                    let vol = format!("w{worker}r{round}");
                    r.ok(&["clone", "images/base", &vol]);
                    let data = r.file(
                        &format!("in{worker}"),
                        &pseudo_random(20_000, worker * 10 + round),
                    );
                    r.ok(&[
                        "volume",
                        "write",
                        &vol,
                        "--offset",
                        "5000",
                        data.to_str().unwrap(),
                    ]);
                    r.ok(&["snapshot", &vol, &vol]);
                    let obj = r.file(&format!("obj{worker}"), &pseudo_random(50_000, 99 + round));
                    r.ok(&["put", obj.to_str().unwrap(), &format!("c/{vol}")]);
                    r.ok(&["get", &format!("snapshots/{vol}")]);
                    if round % 2 == 0 {
                        r.ok(&["volume", "rm", &vol]);
                        r.ok(&["rm", &format!("c/{vol}")]);
                    }
                }
            });
        }
        s.spawn(|| {
            for _ in 0..6 {
                r.ok(&["gc"]);
            }
        });
    });
    let f = r.json(&["fsck", "--read-data"]);
    assert_eq!(f["problems"], serde_json::json!([]), "{f}");
    for worker in 0..3u64 {
        for round in 0..4u64 {
            let vol = format!("w{worker}r{round}");
            let mut want = base.clone();
            want[5000..25_000].copy_from_slice(&pseudo_random(20_000, worker * 10 + round));
            assert_eq!(r.ok(&["get", &format!("snapshots/{vol}")]), want, "{vol}");
            if round % 2 == 1 {
                assert_eq!(r.ok(&["volume", "read", &vol, "--offset", "0"]), want);
            }
        }
    }
}
