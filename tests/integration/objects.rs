//! The object service through the CLI: vectors, round trips, metadata, copy/move/remove and
//! bad input leaving the repository unchanged.

use crate::util::{TestRepo, pseudo_random};

#[test]
fn pithos_vectors_at_default_block_size() {
    let r = TestRepo::with_block_size("4M");
    let mb4 = 4 * 1024 * 1024;
    let mut ab = vec![b'a'; mb4];
    ab.push(b'b');
    let mut abc = vec![b'a'; mb4];
    abc.extend(vec![b'b'; mb4]);
    abc.push(b'c');
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "empty",
            vec![],
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
        (
            "hello",
            b"hello".to_vec(),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
        ),
        (
            "hello0",
            b"hello\0\0\0".to_vec(),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
        ),
        (
            "ab",
            ab,
            "565546ad93383e225e7cf808fb4d527a54dec54826a5c34a24c1f19a03c62583",
        ),
        (
            "abc",
            abc,
            "e747b499f8f09ea48c537050c3492c984d867b410639bd5867603e259278f746",
        ),
    ];
    for (name, data, want) in cases {
        let src = r.file(name, &data);
        let obj = format!("v/{name}");
        let put = r.json(&["put", src.to_str().unwrap(), &obj]);
        assert_eq!(put["hash"], want, "{name}");
        let info = r.json(&["info", &obj]);
        assert_eq!(info["hash"], want);
        assert_eq!(info["bytes"], data.len() as u64);
        assert!(info["image"].is_null());
        let hm = r.json(&["hashmap", &obj]);
        assert_eq!(hm["block_hash"], "sha256");
        assert_eq!(hm["block_size"], 4194304);
        assert_eq!(hm["bytes"], data.len() as u64);
        assert_eq!(
            hm["hashes"].as_array().unwrap().len(),
            data.len().div_ceil(mb4)
        );
        assert_eq!(r.ok(&["get", &obj]), data, "{name} round trip");
    }
}

#[test]
fn hashmap_has_exactly_the_pithos_shape() {
    let r = TestRepo::new();
    let src = r.file("h", b"hello");
    r.ok(&["put", src.to_str().unwrap(), "c/h"]);
    let text = String::from_utf8(r.ok(&["hashmap", "c/h"])).unwrap();
    assert_eq!(
        text.trim(),
        r#"{"block_hash":"sha256","block_size":4096,"bytes":5,"hashes":["2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"]}"#
    );
}

#[test]
fn put_from_stdin_and_sparse_get_to_file() {
    let r = TestRepo::new();
    let mut data = pseudo_random(10_000, 1);
    data.extend(vec![0u8; 5 * 4096]);
    data.extend(pseudo_random(100, 2));
    let out = r.run_stdin(&["put", "-", "c/stdin"], &data);
    assert!(out.status.success(), "{}", crate::util::stderr(&out));
    let dest = r.path("out.bin");
    r.ok(&["get", "c/stdin", "-o", dest.to_str().unwrap()]);
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    // The zero blocks are holes: fewer blocks allocated than the size needs.
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&dest).unwrap();
    assert!(meta.blocks() * 512 < meta.len(), "no holes in the output");
    // An existing file is not overwritten without --force.
    let before = r.snapshot();
    r.fails(2, &["get", "c/stdin", "-o", dest.to_str().unwrap()]);
    assert_eq!(r.snapshot(), before);
    r.ok(&["get", "c/stdin", "-o", dest.to_str().unwrap(), "--force"]);
}

#[test]
fn equal_content_shares_every_block() {
    let r = TestRepo::new();
    let data = pseudo_random(50_000, 3);
    let a = r.file("a", &data);
    let first = r.json(&["put", a.to_str().unwrap(), "c/a"]);
    assert_eq!(first["blocks_written"], 13);
    let second = r.json(&["put", a.to_str().unwrap(), "c/b"]);
    assert_eq!(second["blocks_written"], 0);
    assert_eq!(second["bytes_written"], 0);
    assert_eq!(first["hash"], second["hash"]);
}

#[test]
fn overwrite_keeps_uuid_and_bumps_version() {
    let r = TestRepo::new();
    let a = r.file("a", b"one");
    let b = r.file("b", b"two");
    let first = r.json(&["put", a.to_str().unwrap(), "c/x", "--meta", "k=v"]);
    let second = r.json(&["put", b.to_str().unwrap(), "c/x"]);
    assert_eq!(first["uuid"], second["uuid"]);
    assert_eq!(second["version"], 2);
    assert_eq!(second["created"], false);
    let info = r.json(&["info", "c/x"]);
    assert_eq!(info["version"], 2);
    assert!(
        info["meta"].as_object().unwrap().is_empty(),
        "user meta replaced"
    );
    assert_eq!(r.ok(&["get", "c/x"]), b"two");
}

#[test]
fn meta_set_unset_and_empty_value_deletes() {
    let r = TestRepo::new();
    let a = r.file("a", b"x");
    r.ok(&[
        "put",
        a.to_str().unwrap(),
        "c/x",
        "--meta",
        "a=1",
        "--meta",
        "b=2",
    ]);
    let m = r.json(&["meta", "c/x", "--set", "c=3", "--set", "a=", "--unset", "b"]);
    assert_eq!(m["meta"], serde_json::json!({"c": "3"}));
    assert_eq!(
        r.json(&["info", "c/x"])["meta"],
        serde_json::json!({"c": "3"})
    );
}

#[test]
fn copy_shares_blocks_and_move_keeps_uuid() {
    let r = TestRepo::new();
    let a = r.file("a", &pseudo_random(20_000, 4));
    let put = r.json(&["put", a.to_str().unwrap(), "c/a"]);
    let before_blocks = crate::stored::names(&r, "blocks");
    let cp = r.json(&["cp", "c/a", "d/copy"]);
    assert_ne!(cp["uuid"], put["uuid"]);
    assert_eq!(cp["hash"], put["hash"]);
    assert_eq!(crate::stored::names(&r, "blocks"), before_blocks);
    let mv = r.json(&["mv", "c/a", "c/moved"]);
    assert_eq!(mv["uuid"], put["uuid"]);
    r.fails(2, &["info", "c/a"]);
    assert_eq!(r.ok(&["get", "c/moved"]), r.ok(&["get", "d/copy"]));
    // Destination exists: refused without --force, repository unchanged.
    let before = r.snapshot();
    let err = r.fails(2, &["cp", "c/moved", "d/copy"]);
    assert!(err.contains("--force"), "{err}");
    r.fails(2, &["mv", "c/moved", "d/copy"]);
    assert_eq!(r.snapshot(), before);
    r.ok(&["mv", "c/moved", "d/copy", "--force"]);
    assert_eq!(r.json(&["info", "d/copy"])["uuid"], put["uuid"]);
}

#[test]
fn ls_lists_containers_and_prefixes() {
    let r = TestRepo::new();
    let a = r.file("a", b"x");
    for n in ["c1/a/1", "c1/a/2", "c1/b", "c2/z"] {
        r.ok(&["put", a.to_str().unwrap(), n]);
    }
    let c = r.json(&["ls"]);
    let names: Vec<_> = c["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["c1", "c2"]);
    let o = r.json(&["ls", "c1/a/"]);
    let names: Vec<_> = o["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["c1/a/1", "c1/a/2"]);
    let long = String::from_utf8(r.ok(&["ls", "c1", "-l"])).unwrap();
    assert!(long.contains("object") && long.contains("c1/b"), "{long}");
    r.ok(&["rm", "c2/z"]);
    let err = r.fails(2, &["ls", "c2"]);
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let r = TestRepo::new();
    let a = r.file("a", b"x");
    r.ok(&["put", a.to_str().unwrap(), "c/a"]);
    let before = r.snapshot();
    let long = format!("c/{}", "x".repeat(1030));
    for name in [
        "",
        "/c/a",
        "c/../a",
        "c/./a",
        "noslash",
        "c/",
        long.as_str(),
    ] {
        let err = r.fails(2, &["put", a.to_str().unwrap(), name]);
        assert!(err.contains("invalid"), "{name}: {err}");
    }
    let err = r.fails(2, &["put", "/nonexistent/file", "c/b"]);
    assert!(err.contains("/nonexistent/file"), "{err}");
    let err = r.fails(2, &["get", "c/b"]);
    assert!(err.contains("not found"), "{err}");
    let err = r.fails(2, &["info", "c/aa"]);
    assert!(err.contains("did you mean 'c/a'"), "{err}");
    r.fails(2, &["rm", "c/zz"]);
    r.fails(2, &["meta", "c/a", "--set", "=x"]);
    assert_eq!(r.snapshot(), before);
}

#[test]
fn no_repository_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::util::bin())
        .arg("ls")
        .current_dir(dir.path())
        .env_remove("ARCH_REPO")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(crate::util::stderr(&out).contains("arch init"));
}

#[test]
fn repository_found_from_env_and_parent_directories() {
    let r = TestRepo::new();
    let a = r.file("a", b"x");
    r.ok(&["put", a.to_str().unwrap(), "c/a"]);
    let out = std::process::Command::new(crate::util::bin())
        .args(["info", "c/a"])
        // A directory inside the repository (a remote one has no blocks/).
        .current_dir(r.root.join("tmp"))
        .env_remove("ARCH_REPO")
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = std::process::Command::new(crate::util::bin())
        .args(["info", "c/a"])
        .env("ARCH_REPO", &r.root)
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn newer_format_is_refused() {
    let r = TestRepo::new();
    std::fs::write(
        r.root.join("arch.toml"),
        "format = 9\nblock_size = 4096\nhash = \"sha256\"\n",
    )
    .unwrap();
    let err = r.fails(2, &["ls"]);
    assert!(err.contains("newer"), "{err}");
}

#[test]
fn corrupt_block_is_reported_by_hash_and_offset() {
    let r = TestRepo::new();
    let data = pseudo_random(3 * 4096, 9);
    let a = r.file("a", &data);
    r.ok(&["put", a.to_str().unwrap(), "c/a"]);
    let hm = r.json(&["hashmap", "c/a"]);
    let victim = hm["hashes"][1].as_str().unwrap().to_string();
    let path = crate::stored::data_rel(&r, "blocks", &victim);
    crate::stored::damage(&r, &path, |b| b[10] ^= 0xff);
    let dest = r.path("out");
    let err = r.fails(2, &["get", "c/a", "-o", dest.to_str().unwrap()]);
    assert!(
        err.contains(&victim) && err.contains("offset 4096"),
        "{err}"
    );
    assert!(!dest.exists(), "a partial output was left behind");
    // Without verification the bytes come out (the user asked for it).
    r.ok(&["get", "c/a", "--no-verify"]);
    crate::stored::remove(&r, &path);
    let err = r.fails(2, &["get", "c/a"]);
    assert!(err.contains("missing block"), "{err}");
}

#[test]
fn init_refuses_existing_and_non_empty_dirs_and_bad_block_sizes() {
    let r = TestRepo::new();
    let out = std::process::Command::new(crate::util::bin())
        .arg("init")
        .arg(&r.root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let other = r.dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("f"), b"x").unwrap();
    let out = std::process::Command::new(crate::util::bin())
        .arg("init")
        .arg(&other)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    for bs in ["3000", "2K", "128M", "x"] {
        let out = std::process::Command::new(crate::util::bin())
            .args(["init", "--block-size", bs])
            .arg(r.dir.path().join(format!("n{bs}")))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bs}");
        assert!(
            !r.dir
                .path()
                .join(format!("n{bs}"))
                .join("arch.toml")
                .exists()
        );
    }
}

/// `-o` never replaces a link or a device node with a regular file (with or without
/// `--force`): the rename that makes it atomic would replace the node itself.
#[test]
fn output_to_a_link_or_a_device_is_refused_and_left_alone() {
    let r = TestRepo::new();
    let src = r.file("data", b"hello");
    r.ok(&["put", src.to_str().unwrap(), "c/o"]);
    r.ok(&["clone", "c/o", "vm", "--no-customize"]);
    let target = r.file("target", b"keep");
    let link = r.path("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    for out in [link.to_str().unwrap(), "/dev/null"] {
        for args in [
            vec!["get", "c/o", "-o", out, "--force"],
            vec!["volume", "export", "vm", "-o", out, "--force"],
            vec![
                "volume", "export", "vm", "-o", out, "--force", "--format", "qcow2",
            ],
            vec![
                "volume", "read", "vm", "--offset", "0", "-o", out, "--force",
            ],
        ] {
            let err = r.fails(2, &args);
            assert!(err.contains("not a regular file"), "{args:?}: {err}");
        }
    }
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device()
    );
}
