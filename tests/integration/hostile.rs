//! Hostile and damaged repositories: a catalog edited by hand or by an attacker gives a clear
//! `corrupt` error (never a panic, a write or a removal outside the repository), fsck lists
//! every bad record and exits 1, and nothing prints raw control characters.

use crate::util::{TestRepo, stderr, tree_snapshot};
use serde_json::{Value, json};

fn read_catalog(r: &TestRepo) -> Value {
    crate::catalog_db::read(r)
}

/// Rewrites the catalog after `edit` changes it (as a hand edit would).
fn edit_catalog(r: &TestRepo, edit: impl FnOnce(&mut Value)) {
    let mut cat = read_catalog(r);
    edit(&mut cat);
    crate::catalog_db::write(r, &cat);
}

/// A repository with the object `images/disk.raw` (3 blocks) and its clone, volume `vm`.
fn repo_with_volume() -> TestRepo {
    let r = TestRepo::new();
    let p = r.file("disk.raw", &crate::util::pseudo_random(3 * 4096, 7));
    r.ok(&["put", p.to_str().unwrap(), "images/disk.raw"]);
    r.ok(&["clone", "images/disk.raw", "vm", "--no-customize"]);
    r
}

/// Asserts `arch args` exits 2 with a `corrupt` error mentioning `expected`, no panic.
fn refused_as_corrupt(r: &TestRepo, args: &[&str], expected: &str) {
    let err = r.fails(2, args);
    assert!(
        err.contains("damaged repository file") && err.contains(expected),
        "arch {args:?}: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let mut json_args = vec!["--json"];
    json_args.extend_from_slice(args);
    let out = r.run(&json_args);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["kind"], "corrupt", "arch {args:?}");
}

fn fsck_problems(r: &TestRepo) -> Vec<Value> {
    let out = r.run(&["--json", "fsck"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    report["problems"].as_array().unwrap().clone()
}

#[test]
fn a_volume_id_with_dot_dot_never_becomes_a_path() {
    let r = repo_with_volume();
    // The targets the hostile id points at: outside the repository.
    let victim = r.dir.path().join("x");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("precious"), b"keep me").unwrap();
    edit_catalog(&r, |c| c["volumes"]["vm"]["id"] = json!("../../x"));
    let outside_before = tree_snapshot(r.dir.path());
    for args in [
        &["volume", "write", "vm", "--offset", "0"][..],
        &["volume", "rm", "vm"],
        &["volume", "read", "vm", "--offset", "0"],
        &["volume", "info", "vm"],
        &["volume", "ls"],
        &["snapshot", "vm", "s"],
        &["volume", "resize", "vm", "1M"],
        &["gc"],
        &["du"],
    ] {
        let out = r.run(args);
        assert_eq!(out.status.code(), Some(2), "arch {args:?}");
        let err = stderr(&out);
        assert!(
            err.contains("volume 'vm': id '../../x' is not a uuid") && err.contains("arch fsck"),
            "arch {args:?}: {err}"
        );
    }
    refused_as_corrupt(&r, &["volume", "rm", "vm"], "is not a uuid");
    assert_eq!(std::fs::read(victim.join("precious")).unwrap(), b"keep me");
    assert_eq!(tree_snapshot(r.dir.path()), outside_before);
    let problems = fsck_problems(&r);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0]["kind"], "invalid_record");
    assert_eq!(problems[0]["resources"], json!(["volume:vm"]));
    assert!(
        problems[0]["message"]
            .as_str()
            .unwrap()
            .contains("id '../../x'")
    );
    assert_eq!(tree_snapshot(r.dir.path()), outside_before);
}

#[test]
fn zero_and_huge_sizes_are_corrupt_not_panics() {
    let r = repo_with_volume();
    edit_catalog(&r, |c| {
        c["objects"]["images/disk.raw"]["block_size"] = json!(0)
    });
    let out = r.path("out");
    for args in [
        &["ls", "images", "-l"][..],
        &["info", "images/disk.raw"],
        &["get", "images/disk.raw", "-o", out.to_str().unwrap()],
        &["du"],
    ] {
        // (`image ls` reads only registered objects: it never sees this one.)
        refused_as_corrupt(&r, args, "object 'images/disk.raw': block_size 0");
    }
    edit_catalog(&r, |c| {
        c["objects"]["images/disk.raw"]["block_size"] = json!(4096);
        c["volumes"]["vm"]["block_size"] = json!(0);
        // (The largest size a database integer holds; past it the column type is refused.)
        c["volumes"]["vm"]["size"] = json!(i64::MAX);
    });
    refused_as_corrupt(&r, &["volume", "info", "vm"], "(and 1 more problem)");
    let problems = fsck_problems(&r);
    let messages: Vec<&str> = problems
        .iter()
        .map(|p| p["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(
        messages[0].contains("size 9223372036854775807 exceeds"),
        "{messages:?}"
    );
    assert!(messages[1].contains("block_size 0 is not the repository's block size 4096"));
    // The volume's private files are not garbage while its record is merely damaged.
    let report = r.run(&["--json", "fsck"]);
    let report: Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(report["garbage"]["volume_entries"], 0);
}

#[test]
fn duplicate_uuids_and_names_cannot_be_stored() {
    if crate::util::local_catalog_only(
        "edits meta/catalog.db with SQLite to hit its UNIQUE constraints",
    ) {
        return;
    }
    // The schema's keys refuse them (docs/FORMAT.md): even a hand edit cannot make two
    // objects share a uuid, two volumes an id, or two objects a name.
    let r = repo_with_volume();
    r.ok(&["cp", "images/disk.raw", "images/copy.raw"]);
    r.ok(&["clone", "images/disk.raw", "vm2", "--no-customize"]);
    let cat = read_catalog(&r);
    let uuid = cat["objects"]["images/disk.raw"]["uuid"].as_str().unwrap();
    let id = cat["volumes"]["vm"]["id"].as_str().unwrap();
    let c = rusqlite::Connection::open(r.root.join("meta/catalog.db")).unwrap();
    for (sql, value) in [
        ("UPDATE objects SET uuid = ?1 WHERE name = 'copy.raw'", uuid),
        (
            "UPDATE objects SET name = ?1 WHERE name = 'copy.raw'",
            "disk.raw",
        ),
        ("UPDATE volumes SET id = ?1 WHERE name = 'vm2'", id),
    ] {
        let err = c.execute(sql, [value]).unwrap_err().to_string();
        assert!(err.contains("UNIQUE constraint failed"), "{sql}: {err}");
    }
    r.ok(&["fsck"]);
}

#[test]
fn control_characters_from_the_catalog_never_reach_the_terminal() {
    let r = repo_with_volume();
    edit_catalog(&r, |c| {
        let objects = c["objects"].as_object_mut().unwrap();
        let rec = objects.remove("images/disk.raw").unwrap();
        objects.insert("images/evil\n\u{1b}[2Jname".into(), rec);
        c["volumes"]["vm"]["customization"] =
            json!([{"task": "Evil\u{9b}31m", "status": "ran", "detail": "x"}]);
    });
    for args in [&["ls", "images"][..], &["ls"], &["volume", "ls"], &["fsck"]] {
        let out = r.run(args);
        assert_ne!(out.status.code(), Some(0), "arch {args:?}");
        for stream in [&out.stdout, &out.stderr] {
            let text = String::from_utf8_lossy(stream);
            let raw = text
                .chars()
                .find(|&c| c.is_control() && c != '\n' && c != '\t');
            assert_eq!(
                raw, None,
                "arch {args:?} printed a raw control character: {text}"
            );
            assert!(!text.contains("evil\n"), "arch {args:?}: {text}");
        }
    }
    let text = String::from_utf8(r.run(&["fsck"]).stdout).unwrap();
    assert!(text.contains("images/evil\\n\\x1b[2Jname"), "{text}");
    assert!(text.contains("Evil\\u{9b}31m"), "{text}");
}

#[test]
fn names_with_control_characters_or_edge_spaces_are_refused_at_creation() {
    let r = repo_with_volume();
    let p = r.file("f", b"hello");
    let before = r.snapshot();
    for name in [
        "images/a\nb",
        "images/a\u{1b}b",
        "images/a\u{7f}",
        "images/a ",
        "images/ a",
    ] {
        let err = r.fails(2, &["put", p.to_str().unwrap(), name]);
        assert!(err.contains("invalid name"), "{name:?}: {err}");
        assert!(!err.chars().any(|c| c.is_control() && c != '\n'), "{err:?}");
    }
    for vol in ["v\u{85}", "v\n", "v ", &"v".repeat(1025)] {
        let err = r.fails(2, &["clone", "images/disk.raw", vol, "--no-customize"]);
        assert!(err.contains("invalid name"), "{vol:?}: {err}");
    }
    let err = r.fails(
        2,
        &[
            "put",
            p.to_str().unwrap(),
            "c/o",
            "--content-type",
            "text\n",
        ],
    );
    assert!(err.contains("invalid content type"), "{err}");
    let err = r.fails(2, &["meta", "images/disk.raw", "--set", "k\u{1b}=v"]);
    assert!(err.contains("invalid metadata key"), "{err}");
    let err = r.fails(
        2,
        &[
            "image",
            "register",
            "images/disk.raw",
            "--name",
            "D",
            "-p",
            "K\u{7}=v",
        ],
    );
    assert!(err.contains("invalid property key"), "{err}");
    let err = r.fails(2, &["snapshot", "vm", "s\u{1b}"]);
    assert!(err.contains("invalid name"), "{err}");
    let err = r.fails(
        2,
        &["image", "register", "images/disk.raw", "--name", "Deb\n"],
    );
    assert!(err.contains("invalid image name"), "{err}");
    assert_eq!(r.snapshot(), before);
    // What the CLI accepts, the catalog check accepts: meta values are free text.
    r.ok(&["meta", "images/disk.raw", "--set", "note=two\nlines"]);
    r.ok(&[
        "put",
        p.to_str().unwrap(),
        "c/o",
        "--content-type",
        "text/plain",
    ]);
    // The length limit of volume names is the object one: 1024 bytes is fine.
    r.ok(&[
        "clone",
        "images/disk.raw",
        &"v".repeat(1024),
        "--no-customize",
    ]);
}

#[test]
fn files_of_a_damaged_volume_record_are_kept_and_its_base_map_is_checked() {
    let r = repo_with_volume();
    let out = r.run_stdin(&["volume", "write", "vm", "--offset", "0"], b"private");
    assert!(out.status.success(), "{}", stderr(&out));
    let id = read_catalog(&r)["volumes"]["vm"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let private = format!("volumes/{id}/1/0");
    assert!(crate::stored::exists(&r, &private));
    edit_catalog(&r, |c| c["volumes"]["vm"]["status"] = json!("bogus"));
    let out = r.run(&["--json", "fsck", "--repair"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["problems"][0]["kind"], "invalid_record");
    assert!(
        report["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("status 'bogus' is not one of available, creating")
    );
    assert_eq!(report["garbage"]["volume_entries"], 0);
    assert_eq!(report["garbage"]["stale_locks"], 0);
    assert!(
        crate::stored::exists(&r, &private),
        "repair removed the files of a damaged record"
    );
    // A valid record whose base map lists more blocks than the volume holds.
    edit_catalog(&r, |c| {
        c["volumes"]["vm"]["status"] = json!("available");
        c["volumes"]["vm"]["size"] = json!(4096);
    });
    let problems = fsck_problems(&r);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0]["kind"], "volume_map_mismatch");
    assert!(
        problems[0]["message"]
            .as_str()
            .unwrap()
            .contains("lists 3 blocks, more than the volume's 1 (4096 bytes)"),
        "{problems:?}"
    );
}

/// A directory of the layout replaced by a link (a repository received as a tarball, or
/// planted by another member of a shared group) never leads arch outside the repository:
/// every command but fsck refuses the repository, fsck reports the link and touches nothing,
/// and the files the link points to survive. The same for a volume's private directory.
#[test]
fn linked_directories_never_lead_outside_the_repository() {
    for dir in [
        "tmp",
        "meta",
        "locks",
        "blocks",
        "blocks/5a",
        "maps/00",
        "volumes",
    ] {
        let r = repo_with_volume();
        if !r.root.join(dir).exists() {
            // A remote repository's DIR has only tmp/ and locks/: its blocks, maps, private
            // blocks and catalog are in the store and in PostgreSQL.
            assert!(
                crate::util::remote_store().is_some() || crate::util::remote_catalog().is_some(),
                "{dir} is missing from a local repository"
            );
            continue;
        }
        let victim = r.path("victim");
        std::fs::create_dir_all(victim.join("docs")).unwrap();
        std::fs::write(victim.join("precious.txt"), b"precious").unwrap();
        let linked = r.root.join(dir);
        std::fs::rename(&linked, r.path("moved-away")).unwrap();
        std::os::unix::fs::symlink(&victim, &linked).unwrap();
        let before = tree_snapshot(&victim);
        for args in [
            &["gc"][..],
            &["put", r.file("f", b"12345").to_str().unwrap(), "d/x"],
            &["get", "images/disk.raw"],
            &["snapshot", "vm", "s"],
            &[
                "volume",
                "write",
                "vm",
                "--offset",
                "0",
                r.path("f").to_str().unwrap(),
            ],
        ] {
            let err = r.fails(2, args);
            assert!(
                err.contains("should be a directory but is a symbolic link"),
                "{dir}: arch {args:?}: {err}"
            );
        }
        let out = r.run(&["--json", "fsck", "--repair"]);
        assert_eq!(out.status.code(), Some(1), "{dir}: {}", stderr(&out));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            report["problems"][0]["kind"], "not_directory",
            "{dir}: {report}"
        );
        assert_eq!(
            tree_snapshot(&victim),
            before,
            "{dir}: nothing outside changed"
        );
    }

    // A volume's private directory linked elsewhere: snapshot (which removes the old epoch),
    // write and rm refuse; the target keeps its files.
    let r = repo_with_volume();
    r.ok(&[
        "volume",
        "write",
        "vm",
        "--offset",
        "0",
        r.file("f", b"abc").to_str().unwrap(),
    ]);
    let id = r.json(&["volume", "info", "vm"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let victim = r.path("victim");
    std::fs::create_dir_all(victim.join("1/sub")).unwrap();
    std::fs::write(victim.join("1/precious.txt"), b"precious").unwrap();
    let vdir = r.root.join("volumes").join(&id);
    std::fs::rename(&vdir, r.path("moved-away")).unwrap();
    std::os::unix::fs::symlink(&victim, &vdir).unwrap();
    let before = tree_snapshot(&victim);
    for args in [
        &["snapshot", "vm", "s"][..],
        &[
            "volume",
            "write",
            "vm",
            "--offset",
            "0",
            r.path("f").to_str().unwrap(),
        ],
        &["volume", "rm", "vm"],
        &["volume", "read", "vm", "--offset", "0", "--length", "3"],
    ] {
        let err = r.fails(2, args);
        assert!(
            err.contains("is a symbolic link, not a directory"),
            "arch {args:?}: {err}"
        );
    }
    assert_eq!(tree_snapshot(&victim), before);
}

/// A record naming a valid map that is not its own (a size, block size or hash that differs)
/// is damage wherever the map is used, not only in fsck: get, hashmap and clone refuse it
/// instead of writing other bytes as "verified", and a volume whose base map has more
/// blocks than the volume is refused.
#[test]
fn a_map_that_does_not_match_its_record_is_refused_where_it_is_used() {
    let with_other = || {
        let r = repo_with_volume();
        let other = r.file("other", &crate::util::pseudo_random(5 * 4096, 9));
        r.ok(&["put", other.to_str().unwrap(), "images/other.raw"]);
        let map = read_catalog(&r)["objects"]["images/other.raw"]["map"].clone();
        (r, map)
    };
    for field in ["bytes", "map"] {
        let (r, other_map) = with_other();
        let value = if field == "bytes" {
            json!(5)
        } else {
            other_map
        };
        edit_catalog(&r, |c| c["objects"]["images/disk.raw"][field] = value);
        let out = r.path("out");
        for args in [
            &["get", "images/disk.raw", "-o", out.to_str().unwrap()][..],
            &["hashmap", "images/disk.raw"],
            &["clone", "images/disk.raw", "v2", "--no-customize"],
        ] {
            refused_as_corrupt(&r, args, "does not match its record");
        }
    }
    // The volume's base map swapped for a map with more blocks than the volume.
    let (r, other_map) = with_other();
    edit_catalog(&r, |c| c["volumes"]["vm"]["base_map"] = other_map);
    let out = r.path("out");
    let out = out.to_str().unwrap();
    for args in [
        &[
            "volume", "read", "vm", "--offset", "0", "--length", "1", "-o", out,
        ][..],
        &["volume", "info", "vm"],
        &["snapshot", "vm", "s"],
    ] {
        refused_as_corrupt(&r, args, "does not fit its record");
    }
}

/// A version or epoch at the largest count arch keeps is not incremented past it: the put or
/// snapshot is refused and the repository stays readable (before, the commit succeeded and
/// every later command refused the catalog).
#[test]
fn counters_at_their_limit_are_not_incremented_past_it() {
    let r = repo_with_volume();
    let max = (1u64 << 53) - 1;
    edit_catalog(&r, |c| {
        c["objects"]["images/disk.raw"]["version"] = json!(max);
        c["volumes"]["vm"]["epoch"] = json!(max);
    });
    let data = r.file("again", b"new content");
    let before = r.snapshot();
    let err = r.fails(2, &["put", data.to_str().unwrap(), "images/disk.raw"]);
    assert!(err.contains("is the largest arch keeps"), "{err}");
    assert_eq!(r.snapshot(), before, "refused before any block is written");
    let err = r.fails(2, &["snapshot", "vm", "s"]);
    assert!(err.contains("is the largest arch keeps"), "{err}");
    r.ok(&["ls", "images"]);
    r.ok(&["gc"]);
    assert_eq!(r.json(&["fsck"])["problems"], json!([]));
}

/// A put over an object whose record is damaged is refused before it writes any block or
/// map (the repository is left exactly as it was); a put of another object is unaffected by
/// a damaged record elsewhere (records are checked one by one as they are read).
#[test]
fn put_over_a_damaged_record_writes_nothing() {
    let r = repo_with_volume();
    edit_catalog(&r, |c| {
        c["objects"]["images/disk.raw"]["uuid"] = json!("not-a-uuid")
    });
    let before = r.snapshot();
    let data = r.file("fresh", &crate::util::pseudo_random(3 * 4096, 99));
    let src = data.to_str().unwrap();
    refused_as_corrupt(&r, &["put", src, "images/disk.raw"], "not a uuid");
    assert_eq!(r.snapshot(), before);
    r.ok(&["put", src, "d/other"]);
}
