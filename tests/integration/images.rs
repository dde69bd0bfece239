//! The image service through the CLI: register/unregister/modify/mark/ls/info, REF
//! resolution, property validation, bad input, and the proof that it all touches `meta/` only.

use crate::util::{TestRepo, pseudo_random};

fn repo_with_object(name: &str) -> TestRepo {
    let r = TestRepo::new();
    let src = r.file("disk", &pseudo_random(3 * 4096 + 100, 7));
    r.ok(&["put", src.to_str().unwrap(), name]);
    r
}

#[test]
fn register_shows_glance_fields_and_keeps_the_object() {
    let r = repo_with_object("images/debian.raw");
    let obj = r.json(&["info", "images/debian.raw"]);
    let img = r.json(&[
        "image",
        "register",
        "images/debian.raw",
        "--name",
        "Debian 12",
        "-p",
        "osfamily=Linux",
        "-p",
        "root_partition=1",
        "-p",
        "Custom=Mixed Case",
    ]);
    assert_eq!(img["id"], obj["uuid"], "image id is the object uuid");
    assert_eq!(img["checksum"], obj["hash"], "checksum is the object hash");
    assert_eq!(img["size"], obj["bytes"]);
    assert_eq!(img["name"], "Debian 12");
    assert_eq!(img["status"], "AVAILABLE");
    assert_eq!(img["disk_format"], "diskdump");
    assert_eq!(img["container_format"], "bare");
    assert_eq!(img["is_public"], false);
    assert_eq!(img["is_snapshot"], false);
    assert_eq!(img["location"], "arch://images/debian.raw");
    assert_eq!(img["properties"]["OSFAMILY"], "linux");
    assert_eq!(img["properties"]["ROOT_PARTITION"], "1");
    assert_eq!(img["properties"]["CUSTOM"], "Mixed Case");
    for field in ["owner", "created_at", "updated_at"] {
        assert!(img[field].is_string(), "{field}");
    }

    let info = r.json(&["info", "images/debian.raw"]);
    assert_eq!(info["kind"], "image");
    assert_eq!(info["image"]["id"], obj["uuid"]);
    let ls = String::from_utf8(r.ok(&["ls", "images", "-l"])).unwrap();
    assert!(ls.contains("image"), "{ls}");

    // Registering again updates the same image and keeps its creation time.
    let again = r.json(&[
        "image",
        "register",
        "images/debian.raw",
        "--name",
        "Debian 12.5",
        "--public",
        "--disk-format",
        "extdump",
        "-p",
        "USERS=root  user",
    ]);
    assert_eq!(again["id"], img["id"]);
    assert_eq!(again["created_at"], img["created_at"]);
    assert_eq!(again["name"], "Debian 12.5");
    assert_eq!(again["is_public"], true);
    assert_eq!(again["disk_format"], "extdump");
    assert_eq!(
        again["properties"]["OSFAMILY"], "linux",
        "earlier properties kept"
    );
    assert_eq!(again["properties"]["USERS"], "root user");

    // A re-upload keeps the registration; unregister keeps the object byte-identical.
    let before = r.ok(&["get", "images/debian.raw"]);
    let src = r.file("disk2", &before);
    r.ok(&["put", src.to_str().unwrap(), "images/debian.raw"]);
    assert_eq!(r.json(&["image", "info", "Debian 12.5"])["id"], img["id"]);
    let gone = r.json(&["image", "unregister", "Debian 12.5"]);
    assert_eq!(gone["object"], "images/debian.raw");
    assert!(r.json(&["info", "images/debian.raw"])["image"].is_null());
    assert_eq!(r.ok(&["get", "images/debian.raw"]), before);
    assert_eq!(r.json(&["info", "images/debian.raw"])["uuid"], obj["uuid"]);
}

#[test]
fn mark_flips_between_image_and_snapshot() {
    let r = repo_with_object("images/a");
    r.ok(&[
        "image",
        "register",
        "images/a",
        "--name",
        "A",
        "-p",
        "OSFAMILY=linux",
    ]);
    let snap = r.json(&["image", "mark", "A", "snapshot"]);
    assert_eq!(snap["is_snapshot"], true);
    assert_eq!(snap["changed"], true);
    assert_eq!(snap["properties"]["EXCLUDE_ALL_TASKS"], "yes");
    assert_eq!(r.json(&["info", "images/a"])["kind"], "snapshot");
    let same = r.json(&["image", "mark", "A", "snapshot"]);
    assert_eq!(same["changed"], false, "marking twice is a no-op");

    assert_eq!(
        r.json(&["image", "ls"])["images"].as_array().unwrap().len(),
        0
    );
    assert_eq!(
        r.json(&["image", "ls", "--snapshots"])["images"][0]["name"],
        "A"
    );

    let back = r.json(&["image", "mark", "images/a", "image"]);
    assert_eq!(back["is_snapshot"], false);
    assert!(back["properties"]["EXCLUDE_ALL_TASKS"].is_null());
    assert_eq!(back["properties"]["OSFAMILY"], "linux");

    // --snapshot registers directly as a snapshot.
    let src = r.file("b", b"bbbb");
    r.ok(&["put", src.to_str().unwrap(), "snapshots/b"]);
    let b = r.json(&[
        "image",
        "register",
        "snapshots/b",
        "--name",
        "B",
        "--snapshot",
    ]);
    assert_eq!(b["is_snapshot"], true);
    assert_eq!(b["properties"]["EXCLUDE_ALL_TASKS"], "yes");
}

#[test]
fn ls_filters_by_kind_property_and_status() {
    let r = repo_with_object("images/a");
    let src = r.file("b", b"other");
    r.ok(&["put", src.to_str().unwrap(), "images/b"]);
    r.ok(&["put", src.to_str().unwrap(), "images/plain"]);
    r.ok(&[
        "image",
        "register",
        "images/a",
        "--name",
        "A",
        "-p",
        "OSFAMILY=linux",
    ]);
    r.ok(&[
        "image",
        "register",
        "images/b",
        "--name",
        "B",
        "-p",
        "OSFAMILY=windows",
        "--snapshot",
    ]);
    let names = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["image", "ls"];
        all.extend(args);
        r.json(&all)["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&[]), ["A"]);
    assert_eq!(names(&["--snapshots"]), ["B"]);
    assert_eq!(names(&["--all"]), ["A", "B"]);
    assert_eq!(names(&["--all", "--property", "osfamily=windows"]), ["B"]);
    assert_eq!(names(&["--all", "--property", "OSFAMILY=Linux"]), ["A"]);
    assert_eq!(names(&["--all", "--status", "available"]), ["A", "B"]);
    assert!(names(&["--all", "--status", "error"]).is_empty());
    let table = String::from_utf8(r.ok(&["image", "ls", "--all"])).unwrap();
    assert!(
        table.contains("snapshot") && table.contains("images/a"),
        "{table}"
    );
}

#[test]
fn refs_resolve_by_id_prefix_object_and_display_name() {
    let r = repo_with_object("images/a");
    let src = r.file("b", b"other");
    r.ok(&["put", src.to_str().unwrap(), "images/b"]);
    r.ok(&["put", src.to_str().unwrap(), "images/c"]);
    let a = r.json(&["image", "register", "images/a", "--name", "Same"]);
    r.ok(&["image", "register", "images/b", "--name", "Same"]);
    r.ok(&["image", "register", "images/c", "--name", "Unique"]);
    let id = a["id"].as_str().unwrap();
    for reference in [id, &id[..8], "images/a"] {
        assert_eq!(
            r.json(&["image", "info", reference])["object"],
            "images/a",
            "{reference}"
        );
    }
    assert_eq!(r.json(&["image", "info", "Unique"])["object"], "images/c");

    let before = r.snapshot();
    let err = r.fails(2, &["image", "mark", "Same", "snapshot"]);
    assert!(
        err.contains("ambiguous") && err.contains("images/a") && err.contains("images/b"),
        "{err}"
    );
    assert!(
        r.fails(2, &["image", "info", &id[..6]])
            .contains("not found")
    );
    let err = r.fails(2, &["image", "info", "Uniqeu"]);
    assert!(err.contains("did you mean 'Unique'"), "{err}");
    assert_eq!(r.snapshot(), before);
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let r = repo_with_object("images/a");
    let src = r.file("p", b"plain");
    r.ok(&["put", src.to_str().unwrap(), "plain/p"]);
    r.ok(&["image", "register", "images/a", "--name", "A"]);
    let hash = r.json(&["info", "images/a"])["hash"]
        .as_str()
        .unwrap()
        .to_string();
    let before = r.snapshot();
    let zeros = "0".repeat(64);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["image", "register", "images/missing", "--name", "X"],
            "not found",
        ),
        (
            vec![
                "image",
                "register",
                "images/a",
                "--name",
                "X",
                "--disk-format",
                "qcow2",
            ],
            "diskdump",
        ),
        (
            vec![
                "image",
                "register",
                "images/a",
                "--name",
                "X",
                "--container-format",
                "zip",
            ],
            "bare",
        ),
        (
            vec![
                "image", "register", "images/a", "--name", "X", "--size", "1",
            ],
            "does not match",
        ),
        (
            vec![
                "image",
                "register",
                "images/a",
                "--name",
                "X",
                "--checksum",
                &zeros,
            ],
            "does not match",
        ),
        (
            vec![
                "image",
                "register",
                "images/a",
                "--name",
                "X",
                "-p",
                "ROOT_PARTITION=0",
            ],
            "ROOT_PARTITION",
        ),
        (
            vec![
                "image",
                "register",
                "images/a",
                "--name",
                "X",
                "-p",
                "OSFAMILY=plan9",
            ],
            "linux",
        ),
        (
            vec![
                "image",
                "register",
                "images/a",
                "--name",
                "X",
                "-p",
                "EXCLUDE_TASK_AssignHostname=maybe",
            ],
            "yes/no",
        ),
        (
            vec![
                "image",
                "register",
                "images/a",
                "--name",
                "X",
                "-p",
                "PASSWD_HASHING_METHOD=des",
            ],
            "sha512",
        ),
        (
            vec![
                "image",
                "register",
                "images/a",
                "--name",
                "X",
                "-p",
                "USERS=Root!",
            ],
            "user names",
        ),
        (
            vec!["image", "register", "images/a", "--name", " "],
            "invalid image name",
        ),
        (
            vec!["image", "modify", "A", "-p", "EXCLUDE_ALL_TASKS=yes"],
            "arch image mark",
        ),
        (
            vec![
                "image",
                "modify",
                "A",
                "--property-del",
                "exclude_all_tasks",
            ],
            "arch image mark",
        ),
        (vec!["image", "unregister", "plain/p"], "not registered"),
        (
            vec!["image", "mark", "plain/p", "snapshot"],
            "not registered",
        ),
        (
            vec!["image", "modify", "plain/p", "--name", "Y"],
            "not registered",
        ),
        (vec!["image", "unregister", "nothing-like-it"], "not found"),
    ];
    for (args, want) in cases {
        let err = r.fails(2, &args);
        assert!(err.contains(want), "{args:?}: expected '{want}' in: {err}");
        assert_eq!(r.snapshot(), before, "{args:?} changed the repository");
    }
    // A matching size and checksum are accepted.
    r.ok(&[
        "image",
        "register",
        "images/a",
        "--name",
        "A",
        "--size",
        &(3 * 4096 + 100).to_string(),
        "--checksum",
        &hash,
    ]);
}

#[test]
fn image_operations_touch_metadata_only_on_a_multi_gib_sparse_object() {
    let r = TestRepo::with_block_size("4M");
    let disk = r.path("disk.raw");
    let f = std::fs::File::create(&disk).unwrap();
    f.set_len(6 << 30).unwrap();
    use std::os::unix::fs::FileExt;
    for (i, off) in [0u64, 1 << 30, (6 << 30) - 4096].into_iter().enumerate() {
        f.write_all_at(&pseudo_random(4096, i as u64 + 1), off)
            .unwrap();
    }
    drop(f);
    r.ok(&["put", disk.to_str().unwrap(), "images/big.raw"]);
    let hash = r.json(&["info", "images/big.raw"])["hash"].clone();
    let before = crate::stored::versions(&r);
    assert!(before.len() > 3, "blocks and maps exist: {before:?}");

    let steps: Vec<Vec<&str>> = vec![
        vec![
            "image",
            "register",
            "images/big.raw",
            "--name",
            "Big",
            "-p",
            "OSFAMILY=linux",
        ],
        vec!["image", "mark", "Big", "snapshot"],
        vec!["image", "mark", "Big", "image"],
        vec![
            "image",
            "modify",
            "Big",
            "--name",
            "Bigger",
            "-p",
            "USERS=root",
            "--public",
        ],
        vec!["image", "unregister", "Bigger"],
    ];
    for step in steps {
        r.ok(&step);
        assert_eq!(
            crate::stored::versions(&r),
            before,
            "{step:?} touched blocks/ or maps/"
        );
    }
    assert_eq!(r.json(&["info", "images/big.raw"])["hash"], hash);
    assert!(r.json(&["info", "images/big.raw"])["image"].is_null());
}
