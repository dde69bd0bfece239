//! Format-1 repositories (JSON catalog) made by the last release open and are migrated in
//! place to the catalog database, once, with a message; a crash before the switch leaves the
//! JSON catalog in charge. The fixture is tests/fixtures/format1 (see its make.sh).

use crate::util::TestRepo;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/format1");

/// A private copy of the fixture repository, with the directories git does not keep.
fn format1_repo() -> TestRepo {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    let src = Path::new(FIXTURE).join("repo");
    for e in walkdir::WalkDir::new(&src) {
        let e = e.unwrap();
        let dest = root.join(e.path().strip_prefix(&src).unwrap());
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
    for sub in ["tmp", "locks"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    for kind in ["blocks", "maps"] {
        for i in 0..=255u8 {
            std::fs::create_dir_all(root.join(kind).join(format!("{i:02x}"))).unwrap();
        }
    }
    for e in walkdir::WalkDir::new(&root) {
        let e = e.unwrap();
        let mode = if e.file_type().is_dir() { 0o700 } else { 0o600 };
        std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    TestRepo {
        dir,
        root,
        catalog: None,
        store: None,
    }
}

fn expected(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(FIXTURE).join("expected").join(name)).unwrap()
}

#[test]
fn a_format1_repository_is_migrated_once_and_reads_back_identical() {
    let r = format1_repo();
    let out = r.run(&["ls"]);
    assert!(out.status.success(), "{}", crate::util::stderr(&out));
    let err = crate::util::stderr(&out);
    assert!(
        err.contains("migrated the catalog") && err.contains("5 objects"),
        "{err}"
    );
    assert!(r.root.join("meta/catalog.db").is_file());
    assert!(!r.root.join("meta/catalog.json").exists());
    let mode = std::fs::metadata(r.root.join("meta/catalog.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // Once: the next command says nothing about it.
    let out = r.run(&["ls"]);
    assert!(!crate::util::stderr(&out).contains("migrated"));

    for o in [
        "docs/hello.txt",
        "docs/readme.txt",
        "images/disk.raw",
        "images/snap.raw",
    ] {
        assert_eq!(r.ok(&["get", o]), expected(&o.replace('/', "_")), "{o}");
    }
    assert_eq!(r.json(&["info", "docs/readme.txt"])["version"], 2);
    assert_eq!(r.json(&["info", "docs/hello.txt"])["meta"]["color"], "blue");
    for v in ["vol-plain", "vol-written"] {
        assert_eq!(
            r.ok(&["volume", "read", v, "--offset", "0"]),
            expected(v),
            "{v}"
        );
    }
    let images = r.json(&["image", "ls", "--all"]);
    let names: Vec<&str> = images["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Disk image", "Old snapshot", "snap-1"], "{images}");
    let fsck = r.json(&["fsck"]);
    assert_eq!(fsck["problems"].as_array().unwrap().len(), 0, "{fsck}");
    assert_eq!(
        (fsck["objects"].clone(), fsck["volumes"].clone()),
        (5.into(), 2.into())
    );
}

#[test]
fn a_crash_before_the_switch_leaves_the_json_catalog_in_charge() {
    let r = format1_repo();
    // What a migration killed before its rename leaves: a partial database in tmp/.
    std::fs::write(
        r.root.join("tmp/catalog-partial.db"),
        b"SQLite format 3\0partial",
    )
    .unwrap();
    assert_eq!(r.ok(&["get", "docs/hello.txt"]), expected("docs_hello.txt"));
    assert!(r.root.join("meta/catalog.db").is_file());
    // A crash after the rename, before catalog.json was removed: the database wins and the
    // stale JSON is retired by the next open.
    let r = format1_repo();
    r.ok(&["ls"]);
    let stale = std::fs::read(Path::new(FIXTURE).join("repo/meta/catalog.json")).unwrap();
    std::fs::write(r.root.join("meta/catalog.json"), &stale).unwrap();
    r.ok(&["rm", "docs/hello.txt"]);
    assert!(
        r.fails(2, &["info", "docs/hello.txt"])
            .contains("not found")
    );
    r.ok(&["gc"]);
    let fsck = r.json(&["fsck"]);
    assert_eq!(fsck["problems"].as_array().unwrap().len(), 0, "{fsck}");
}

#[test]
fn an_invalid_format1_catalog_is_not_migrated() {
    let r = format1_repo();
    let path = r.root.join("meta/catalog.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("\"version\": 1", "\"version\": 0", 1)).unwrap();
    let err = r.fails(2, &["ls"]);
    assert!(err.contains("must be valid to be migrated"), "{err}");
    assert!(!r.root.join("meta/catalog.db").exists());
    assert_eq!(std::fs::read_to_string(&path).unwrap().len(), text.len());
}

#[test]
fn a_migration_killed_at_any_instant_leaves_a_usable_catalog() {
    const EXTRA: usize = 20_000;
    let r = format1_repo();
    // A larger format-1 catalog, so that the migration's transaction takes a while.
    let path = r.root.join("meta/catalog.json");
    let mut cat: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let template = cat["objects"]["docs/hello.txt"].clone();
    for i in 0..EXTRA {
        let mut rec = template.clone();
        rec["uuid"] = format!("{i:08x}-0000-4000-8000-000000000000").into();
        cat["objects"][format!("bulk/o{i:06}")] = rec;
    }
    std::fs::write(&path, serde_json::to_vec(&cat).unwrap()).unwrap();
    let start = std::time::Instant::now();
    let probe = format1_repo();
    std::fs::copy(&path, probe.root.join("meta/catalog.json")).unwrap();
    probe.ok(&["ls"]);
    let full = start.elapsed().as_micros() as u64 + 1;
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..8 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let delay = std::time::Duration::from_micros(rng % full);
        crate::crash::run_and_kill(&r, &["ls"], delay);
        // Either not migrated yet (the JSON catalog is whole) or migrated: never neither.
        assert!(r.root.join("meta/catalog.db").is_file() || path.is_file());
    }
    let listed = r.ok(&["ls", "bulk"]);
    assert_eq!(listed.iter().filter(|&&b| b == b'\n').count(), EXTRA);
    assert_eq!(r.ok(&["get", "docs/hello.txt"]), expected("docs_hello.txt"));
    assert!(!path.exists());
}
