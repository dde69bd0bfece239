//! Private volume blocks on an object store (`PREFIX/volumes/<id>/<epoch>/<index>`), against
//! a real Ceph RGW: objects no volume reads (a removed volume, an old epoch, past the end,
//! not a block name) are counted by fsck and du and collected by gc, which leaves every live
//! one; a live object longer than a block is damage; a store shared with a DIR that has a
//! catalog of its own keeps its objects.
//!
//! Needs `ARCH_TEST_STORE=s3://BUCKET` (+ AWS_*); with `ARCH_TEST_CATALOG` too, the
//! repository's catalog is in PostgreSQL. `.ci/remote` sets both. Unset: the tests say so and
//! pass without running.

use crate::remote_store::{joined, overwrite};
use crate::util::{TestRepo, pseudo_random, remote_store};
use serde_json::json;

/// A volume id no record names.
const GONE: &str = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9";

/// A fresh test repository with its data in the store, or None (the test is not run).
pub(crate) fn remote_repo(test: &str) -> Option<TestRepo> {
    if remote_store().is_none() {
        eprintln!(
            "remote_private::{test} not run: set ARCH_TEST_STORE=s3://BUCKET and AWS_* (bash .ci/remote does)"
        );
        return None;
    }
    Some(TestRepo::new())
}

/// The `store` URL in `root`'s arch.toml.
pub(crate) fn store_of(root: &std::path::Path) -> String {
    let toml = std::fs::read_to_string(root.join("arch.toml")).unwrap();
    toml.lines()
        .find_map(|l| l.strip_prefix("store = \"")?.strip_suffix('"'))
        .unwrap_or_else(|| panic!("no store in arch.toml: {toml}"))
        .to_string()
}

/// Every object under `PREFIX/volumes/` of the store at `url`: its key below that and its
/// length, sorted.
pub(crate) fn private_objects(url: &str) -> Vec<(String, u64)> {
    use futures_util::TryStreamExt;
    use object_store::ObjectStore;
    let b = arch::storage::s3::connect(url).unwrap();
    let dir = b.prefix().clone().join("volumes");
    let depth = dir.parts().count();
    let listed: Vec<object_store::ObjectMeta> = b
        .runtime()
        .block_on(b.object_store().list(Some(&dir)).try_collect())
        .unwrap();
    let mut out: Vec<(String, u64)> = listed
        .into_iter()
        .map(|m| {
            let parts: Vec<String> = m
                .location
                .parts()
                .skip(depth)
                .map(|p| p.as_ref().to_string())
                .collect();
            (parts.join("/"), m.size)
        })
        .collect();
    out.sort();
    out
}

/// The id and epoch of volume `name`.
pub(crate) fn id_epoch(r: &TestRepo, name: &str) -> (String, u64) {
    let v = r.json(&["volume", "info", name]);
    (
        v["id"].as_str().unwrap().to_string(),
        v["epoch"].as_u64().unwrap(),
    )
}

#[test]
fn private_objects_no_volume_reads_are_counted_by_fsck_and_du_and_collected_by_gc() {
    let Some(r) = remote_repo("private_objects_no_volume_reads_are_counted") else {
        return;
    };
    let url = store_of(&r.root);
    let img = r.file("img", &pseudo_random(8 * 4096, 1));
    r.ok(&["put", img.to_str().unwrap(), "images/img"]);
    r.ok(&["clone", "images/img", "vm", "--size", "64K"]);
    let w = r.file("w", &pseudo_random(6000, 2));
    r.ok(&[
        "volume",
        "write",
        "vm",
        "--offset",
        "1000",
        w.to_str().unwrap(),
    ]);
    // The snapshot moves the volume to the next epoch and deletes the old one's objects.
    r.ok(&["snapshot", "vm", "s1"]);
    let w = r.file("w", &pseudo_random(100, 3));
    r.ok(&[
        "volume",
        "write",
        "vm",
        "--offset",
        "20000",
        w.to_str().unwrap(),
    ]);
    let (id, epoch) = id_epoch(&r, "vm");
    let live = private_objects(&url);
    assert_eq!(
        live.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
        [format!("{id}/{epoch}/4")],
        "only the block written since the snapshot"
    );
    let content = r.ok(&["volume", "read", "vm", "--offset", "0"]);

    // What a crash or another program may leave under volumes/.
    let strays = [
        (format!("{GONE}/1/0"), 4096),           // a removed volume
        (format!("{id}/{}/0", epoch - 1), 3000), // an old epoch
        (format!("{id}/{epoch}/16"), 10),        // past the end of a 16-block volume
        (format!("{id}/{epoch}/04"), 20),        // not a canonical index
        (format!("{id}/{epoch}/4/x"), 30),       // under a block
        ("junk".to_string(), 40),                // not a volume id
    ];
    for (key, len) in &strays {
        overwrite(&url, &format!("volumes/{key}"), &vec![9u8; *len]);
    }
    let stray_bytes: u64 = strays.iter().map(|(_, l)| *l as u64).sum();

    let f = r.json(&["fsck"]);
    assert_eq!(f["problems"], json!([]), "{f}");
    assert_eq!(f["garbage"]["volume_entries"], strays.len(), "{f}");
    assert_eq!(f["garbage"]["volume_bytes"], stray_bytes, "{f}");
    let du = r.json(&["du"]);
    assert_eq!(du["garbage_bytes"], stray_bytes, "{du}");
    assert_eq!(du["private_bytes"], live[0].1, "{du}");
    let vm = du["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["resource"] == "volume:vm")
        .unwrap();
    assert!(vm["unique_bytes"].as_u64().unwrap() >= live[0].1, "{du}");

    let dry = r.json(&["gc", "--dry-run"]);
    assert_eq!(
        (&dry["volume_entries_removed"], &dry["volume_bytes_freed"]),
        (&json!(strays.len()), &json!(stray_bytes)),
        "{dry}"
    );
    assert_eq!(private_objects(&url).len(), live.len() + strays.len());
    let g = r.json(&["gc"]);
    assert_eq!(
        (&g["volume_entries_removed"], &g["volume_bytes_freed"]),
        (&json!(strays.len()), &json!(stray_bytes)),
        "{g}"
    );
    assert_eq!(private_objects(&url), live, "gc deleted exactly the strays");
    assert_eq!(r.ok(&["volume", "read", "vm", "--offset", "0"]), content);
    let f = r.json(&["fsck", "--read-data"]);
    assert_eq!(f["problems"], json!([]), "{f}");
    assert_eq!(f["garbage"]["volume_entries"], 0, "{f}");
    assert_eq!(r.json(&["du"])["garbage_bytes"], 0);

    // A live block longer than a block is damage: reported, and gc keeps it.
    overwrite(&url, &format!("volumes/{id}/{epoch}/4"), &vec![1u8; 4097]);
    let out = r.run(&["--json", "fsck"]);
    assert_eq!(out.status.code(), Some(1), "{}", crate::util::stderr(&out));
    let f: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(f["problems"][0]["kind"], "damaged_private_block", "{f}");
    assert_eq!(f["problems"][0]["resources"], json!(["volume:vm"]));
    let subject = f["problems"][0]["subject"].as_str().unwrap();
    assert!(
        subject.starts_with("s3://") && subject.ends_with(&format!("volumes/{id}/{epoch}/4")),
        "{subject}"
    );
    r.ok(&["gc"]);
    assert_eq!(
        private_objects(&url),
        [(format!("{id}/{epoch}/4"), 4097)],
        "damage is not garbage"
    );
}

#[test]
fn a_store_shared_with_another_catalog_keeps_its_private_objects() {
    let Some(url) = crate::remote_store::store_url("a_store_shared_with_another_catalog") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let a = joined(&tmp.path().join("a"), &url);
    let b = joined(&tmp.path().join("b"), &url);
    let img = tmp.path().join("img");
    std::fs::write(&img, pseudo_random(4 * 4096, 5)).unwrap();
    b.ok(&["put", img.to_str().unwrap(), "images/img"]);
    b.ok(&["clone", "images/img", "vm"]);
    let w = tmp.path().join("w");
    std::fs::write(&w, pseudo_random(9000, 6)).unwrap();
    b.ok(&[
        "volume",
        "write",
        "vm",
        "--offset",
        "0",
        w.to_str().unwrap(),
    ]);
    let content = b.ok(&["volume", "read", "vm", "--offset", "0"]);
    let objects = private_objects(&url);
    assert_eq!(objects.len(), 3, "{objects:?}");
    // From a, b's volume is unknown: its objects look like garbage, and are counted so...
    let f = a.json(&["fsck"]);
    assert_eq!(f["garbage"]["volume_entries"], 3, "{f}");
    // ...but repair keeps them, saying why, and gc is refused.
    let f = a.json(&["fsck", "--repair"]);
    assert!(
        f["warnings"].to_string().contains("were kept: gc refused"),
        "{f}"
    );
    assert_eq!(private_objects(&url), objects);
    let out = a.run(&["gc"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(private_objects(&url), objects);
    assert_eq!(b.ok(&["volume", "read", "vm", "--offset", "0"]), content);
    let f = b.json(&["fsck", "--read-data"]);
    assert_eq!(f["problems"], json!([]), "{f}");
    assert_eq!(f["garbage"]["volume_entries"], 0, "{f}");
}
