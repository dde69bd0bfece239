//! What a newcomer and a qemu-img/rbd user reach for (issue 14): `-o -`, export formats from
//! the extension, names that stay true after renames and removals, relative resize, volume
//! rename, snapshot lineage, options that cannot apply, and errors that say where to go.

use crate::util::{TestRepo, pseudo_random, stderr};
use serde_json::Value;
use std::process::Command;

fn qemu_img_installed() -> bool {
    Command::new("qemu-img").arg("--version").output().is_ok()
}

/// A repository with object `c/disk` (5 blocks of 4 KiB, the last one partial) cloned as `vm1`.
fn repo_with_volume() -> (TestRepo, Vec<u8>) {
    let r = TestRepo::new();
    let data = pseudo_random(18_000, 7);
    let f = r.file("disk", &data);
    r.ok(&["put", f.to_str().unwrap(), "c/disk"]);
    r.ok(&["clone", "c/disk", "vm1"]);
    (r, data)
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

#[test]
fn dash_output_is_stdout_for_get_and_volume_export() {
    let (r, data) = repo_with_volume();
    // Run in the temp dir: a file named `-` must not appear there.
    let run = |args: &[&str]| {
        r.cmd()
            .args(args)
            .current_dir(r.dir.path())
            .output()
            .unwrap()
    };
    let out = run(&["get", "c/disk", "-o", "-"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, data);
    let out = run(&["volume", "export", "vm1", "-o", "-"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, data);
    assert!(!r.path("-").exists());
    let out = run(&["--json", "volume", "export", "vm1", "-o", "-"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("give -o FILE"), "{}", stderr(&out));
    if qemu_img_installed() {
        let out = run(&["volume", "export", "vm1", "-o", "-", "--format", "qcow2"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(&out.stdout[..4], b"QFI\xfb", "a qcow2 header");
        // The conversion's temporary is gone from tmp/.
        let left: Vec<_> = std::fs::read_dir(r.root.join("tmp"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}

#[test]
fn export_takes_the_format_from_the_extension_and_says_which() {
    let (r, data) = repo_with_volume();
    let export = |name: &str, extra: &[&str]| -> Value {
        let p = r.path(name);
        let mut args = vec!["volume", "export", "vm1", "-o", p.to_str().unwrap()];
        args.extend_from_slice(extra);
        r.json(&args)
    };
    for (name, format, from) in [
        ("a.img", "raw", "extension"),
        ("a.RAW", "raw", "extension"),
        ("a.bin", "raw", "default"),
        ("noext", "raw", "default"),
    ] {
        let v = export(name, &[]);
        assert_eq!(
            (v["format"].as_str(), v["format_from"].as_str()),
            (Some(format), Some(from))
        );
        assert_eq!(std::fs::read(r.path(name)).unwrap(), data, "{name}");
    }
    let human = text(&r.ok(&[
        "volume",
        "export",
        "vm1",
        "-o",
        r.path("b.bin").to_str().unwrap(),
    ]));
    assert!(
        human.contains("raw (.bin is not a format arch knows"),
        "{human}"
    );
    if !qemu_img_installed() {
        return;
    }
    for fmt in ["qcow2", "vmdk", "vdi", "vhdx"] {
        let name = format!("x.{fmt}");
        let v = export(&name, &[]);
        assert_eq!(v["format"], fmt);
        assert_eq!(v["format_from"], "extension");
        let info = Command::new("qemu-img")
            .args(["info", "--output=json"])
            .arg(r.path(&name))
            .output()
            .unwrap();
        let info: Value = serde_json::from_slice(&info.stdout).unwrap();
        assert_eq!(info["format"], fmt, "{name}");
        // Same content as the volume.
        let cmp = Command::new("qemu-img")
            .args(["compare", "-f", fmt, "-F", "raw"])
            .arg(r.path(&name))
            .arg(r.path("a.img"))
            .output()
            .unwrap();
        assert!(cmp.status.success(), "{}", text(&cmp.stdout));
    }
    // --format wins over the extension.
    let v = export("y.qcow2", &["--format", "raw"]);
    assert_eq!(
        (v["format"].as_str(), v["format_from"].as_str()),
        (Some("raw"), Some("option"))
    );
    let human = text(&r.ok(&[
        "volume",
        "export",
        "vm1",
        "-o",
        r.path("z.qcow2").to_str().unwrap(),
    ]));
    assert!(
        human.contains("qcow2 (from the file's extension"),
        "{human}"
    );
}

#[test]
fn output_to_a_directory_or_without_qemu_img_is_refused_before_any_work() {
    let (r, _) = repo_with_volume();
    let dir = r.path("out");
    std::fs::create_dir(&dir).unwrap();
    let before = r.snapshot();
    for args in [
        vec!["volume", "export", "vm1", "-o", dir.to_str().unwrap()],
        vec!["get", "c/disk", "-o", dir.to_str().unwrap()],
    ] {
        let err = r.fails(2, &args);
        assert!(
            err.contains("is a directory; give the path of a file"),
            "{err}"
        );
    }
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    // No qemu-img on PATH: named with its package, and nothing written beside -o.
    let empty = r.path("no-tools");
    std::fs::create_dir(&empty).unwrap();
    let out = r
        .cmd()
        .args(["volume", "export", "vm1", "-o"])
        .arg(dir.join("x.qcow2"))
        .env("PATH", &empty)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("qemu-img (package qemu-utils)"), "{err}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    assert_eq!(r.snapshot(), before);
}

#[test]
fn volume_info_shows_the_source_as_it_is_now() {
    let (r, data) = repo_with_volume();
    r.ok(&["mv", "c/disk", "c/renamed"]);
    // Another object takes the old name: it is not the source.
    let other = r.file("other", b"other");
    r.ok(&["put", other.to_str().unwrap(), "c/disk"]);
    let v = r.json(&["volume", "info", "vm1"]);
    assert_eq!(v["source"]["object"], "c/renamed");
    assert_eq!(v["source"]["removed"], false);
    let human = text(&r.ok(&["volume", "info", "vm1"]));
    assert!(human.contains("source:     c/renamed (object "), "{human}");
    let ls = r.json(&["volume", "ls"]);
    assert_eq!(ls["volumes"][0]["source"]["object"], "c/renamed");
    r.ok(&["rm", "c/renamed"]);
    let v = r.json(&["volume", "info", "vm1"]);
    assert_eq!(v["source"]["object"], Value::Null);
    assert_eq!(v["source"]["removed"], true);
    assert_eq!(v["source"]["kind"], "object");
    let id = v["source"]["id"].as_str().unwrap();
    let human = text(&r.ok(&["volume", "info", "vm1"]));
    assert!(
        human.contains(&format!("removed (object {id}); the volume keeps its data")),
        "{human}"
    );
    assert!(!human.contains("c/disk"), "{human}");
    assert!(text(&r.ok(&["volume", "ls"])).contains("(removed)"));
    // The volume still reads its data.
    assert_eq!(r.ok(&["volume", "read", "vm1", "--offset", "0"]), data);
}

#[test]
fn modified_at_changes_on_every_write_resize_and_snapshot() {
    let (r, _) = repo_with_volume();
    let modified = || r.json(&["volume", "info", "vm1"])["modified_at"].clone();
    let mut last = modified();
    let steps: [&[&str]; 3] = [
        &["volume", "write", "vm1", "--offset", "100", "-"],
        &["volume", "resize", "vm1", "+4K"],
        &["snapshot", "vm1", "s1"],
    ];
    for args in steps {
        // Timestamps have one-second precision.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let out = r.run_stdin(args, b"hello");
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let now = modified();
        assert_ne!(now, last, "{args:?} left modified_at");
        last = now;
    }
}

#[test]
fn a_snapshot_name_with_a_slash_is_a_full_object_name() {
    let (r, _) = repo_with_volume();
    r.ok(&["snapshot", "vm1", "snapshots/foo"]);
    r.ok(&["snapshot", "vm1", "backups/monday"]);
    r.ok(&["snapshot", "vm1", "tuesday", "--container", "backups"]);
    let ls = r.json(&["image", "ls", "--snapshots"]);
    let names: Vec<&str> = ls["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["object"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["backups/monday", "backups/tuesday", "snapshots/foo"]
    );
    let before = r.snapshot();
    let err = r.fails(2, &["snapshot", "vm1", "a/b", "--container", "x"]);
    assert!(err.contains("already a full object name"), "{err}");
    assert_eq!(r.snapshot(), before);
}

#[test]
fn clone_refuses_options_that_cannot_apply_and_warns_when_not_grown() {
    let (r, _) = repo_with_volume();
    r.ok(&["snapshot", "vm1", "s1"]);
    let before = r.snapshot();
    let err = r.fails(
        2,
        &["clone", "c/disk", "x", "--hostname", "h", "--no-customize"],
    );
    assert!(
        err.contains("--hostname cannot apply with --no-customize"),
        "{err}"
    );
    let err = r.fails(2, &["clone", "snapshots/s1", "x", "--hostname", "h"]);
    assert!(
        err.contains("is a Snapshot, which is never customized"),
        "{err}"
    );
    let key = r.file("k.pub", b"ssh-ed25519 AAAA test\n");
    let err = r.fails(
        2,
        &["clone", "c/disk", "x", "--ssh-key", key.to_str().unwrap()],
    );
    assert!(
        err.contains("--ssh-key cannot apply: 'c/disk' is a plain object"),
        "{err}"
    );
    assert_eq!(r.snapshot(), before);
    // Larger than the source: a warning on stderr says nothing was grown and how to.
    let out = r.run(&["clone", "snapshots/s1", "big", "--size", "1M"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("warning: volume 'big' is 1.0 MiB")
            && err.contains("were not grown")
            && err.contains("arch customize big"),
        "{err}"
    );
    // Same size: no warning.
    let out = r.run(&["clone", "snapshots/s1", "same"]);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        stderr(&out)
    );
}

#[test]
fn resize_takes_relative_sizes() {
    let (r, _) = repo_with_volume();
    let size = || r.json(&["volume", "info", "vm1"])["size"].as_u64().unwrap();
    r.ok(&["volume", "resize", "vm1", "+1M"]);
    assert_eq!(size(), 18_000 + (1 << 20));
    let err = r.fails(2, &["volume", "resize", "vm1", "-1M"]);
    assert!(err.contains("--allow-shrink"), "{err}");
    r.ok(&["volume", "resize", "vm1", "-1M", "--allow-shrink"]);
    assert_eq!(size(), 18_000);
    let err = r.fails(2, &["volume", "resize", "vm1", "-1G", "--allow-shrink"]);
    assert!(err.contains("cannot shrink by"), "{err}");
    assert_eq!(size(), 18_000);
}

#[test]
fn volume_rename_keeps_data_id_and_snapshots() {
    let (r, data) = repo_with_volume();
    r.ok(&["snapshot", "vm1", "s1"]);
    let id = r.json(&["volume", "info", "vm1"])["id"].clone();
    r.ok(&["volume", "rename", "vm1", "web1"]);
    let v = r.json(&["volume", "info", "web1"]);
    assert_eq!(v["id"], id);
    assert_eq!(v["snapshots"][0]["object"], "snapshots/s1");
    assert_eq!(r.ok(&["volume", "read", "web1", "--offset", "0"]), data);
    assert!(r.fails(2, &["volume", "info", "vm1"]).contains("not found"));
    r.ok(&["clone", "c/disk", "vm2"]);
    let before = r.snapshot();
    let err = r.fails(2, &["volume", "rename", "web1", "vm2"]);
    assert!(err.contains("volume 'vm2' already exists"), "{err}");
    let err = r.fails(2, &["volume", "rename", "web1", "a/b"]);
    assert!(err.contains("a volume name cannot contain `/`"), "{err}");
    assert_eq!(r.snapshot(), before);
}

#[test]
fn volume_info_and_image_ls_list_the_snapshots_taken_from_a_volume() {
    let (r, _) = repo_with_volume();
    r.ok(&["clone", "c/disk", "other"]);
    assert_eq!(
        r.json(&["volume", "info", "vm1"])["snapshots"],
        serde_json::json!([])
    );
    assert!(text(&r.ok(&["volume", "info", "vm1"])).contains("snapshots:  none"));
    r.ok(&["snapshot", "vm1", "s1"]);
    r.ok(&["snapshot", "vm1", "s2"]);
    r.ok(&["snapshot", "other", "o1"]);
    r.ok(&["image", "mark", "snapshots/s2", "image"]);
    let v = r.json(&["volume", "info", "vm1"]);
    let taken: Vec<(&str, bool)> = v["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["object"].as_str().unwrap(),
                s["is_snapshot"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(taken, [("snapshots/s1", true), ("snapshots/s2", false)]);
    let human = text(&r.ok(&["volume", "info", "vm1"]));
    assert!(human.contains(" snapshots/s1 (snapshot "), "{human}");
    // Listings do not carry the field.
    assert!(
        r.json(&["volume", "ls"])["volumes"][0]
            .get("snapshots")
            .is_none()
    );
    let objects = |args: &[&str]| -> Vec<String> {
        r.json(args)["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["object"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        objects(&["image", "ls", "--from-volume", "vm1"]),
        ["snapshots/s1", "snapshots/s2"]
    );
    assert_eq!(
        objects(&["image", "ls", "--from-volume", "vm1", "--snapshots"]),
        ["snapshots/s1"]
    );
    assert_eq!(
        objects(&["image", "ls", "--from-volume", "other"]),
        ["snapshots/o1"]
    );
    let err = r.fails(2, &["image", "ls", "--from-volume", "vm9"]);
    assert!(
        err.contains("volume 'vm9' not found; did you mean 'vm1'?"),
        "{err}"
    );
}

#[test]
fn suggestions_say_where_to_go() {
    let (r, _) = repo_with_volume();
    let before = r.snapshot();
    let err = r.fails(2, &["rm", "vm1"]);
    assert!(
        err.contains("'vm1' is a volume") && err.contains("`arch volume rm vm1`"),
        "{err}"
    );
    assert_eq!(r.snapshot(), before);
    // A name that is neither keeps the name error.
    let err = r.fails(2, &["rm", "nothing"]);
    assert!(err.contains("it has no container"), "{err}");
    r.ok(&["image", "register", "c/disk", "--name", "Disk"]);
    let id = r.json(&["image", "info", "Disk"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let err = r.fails(2, &["image", "info", &id[..4]]);
    assert!(
        err.contains(&format!("'{}' is shorter than 8 characters", &id[..4]))
            && err.contains(&format!("{}...", &id[..8])),
        "{err}"
    );
    assert_eq!(r.json(&["image", "info", &id[..8]])["id"], id.as_str());
    // -R inside a repository, or above one: the repository is named.
    let inside = r.root.join("tmp");
    let out = Command::new(crate::util::bin())
        .arg("-R")
        .arg(&inside)
        .arg("ls")
        .env_remove("ARCH_REPO")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("is inside the arch repository")
            && err.contains(&format!("-R {}", r.root.display())),
        "{err}"
    );
    let out = Command::new(crate::util::bin())
        .arg("ls")
        .current_dir(r.dir.path())
        .env_remove("ARCH_REPO")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(
        err.contains("holds one") && err.contains("repo; pass -R"),
        "{err}"
    );
}

#[test]
fn volume_write_reports_blocks_and_messages_read_as_english() {
    let (r, _) = repo_with_volume();
    // 6000 bytes at 2000: two shared blocks copied, then in place on the second write.
    let data = pseudo_random(6000, 3);
    let out = r.run_stdin(
        &["--json", "volume", "write", "vm1", "--offset", "2000"],
        &data,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["blocks_copied"], 2);
    assert_eq!(v["blocks_in_place"], 0);
    let out = r.run_stdin(&["volume", "write", "vm1", "--offset", "2000"], &data);
    let human = text(&out.stdout);
    assert!(
        human.contains("blocks:  0 copied, 0 allocated, 2 in place"),
        "{human}"
    );
    // A file larger than one read chunk (4 MiB), unaligned: each block counts once, also
    // the block that a chunk boundary splits.
    let r64 = TestRepo::with_block_size("64K");
    let src = r64.file("src", &pseudo_random(100 << 10, 4));
    r64.ok(&["put", src.to_str().unwrap(), "c/src"]);
    r64.ok(&["clone", "c/src", "v", "--size", "8M"]);
    let big = r64.file("big", &pseudo_random(5 << 20, 9));
    let v = r64.json(&[
        "volume",
        "write",
        "v",
        "--offset",
        "100",
        big.to_str().unwrap(),
    ]);
    let touched = (100 + (5u64 << 20)).div_ceil(64 << 10);
    let counted = [
        "blocks_copied",
        "blocks_allocated",
        "blocks_in_place",
        "blocks_skipped",
    ]
    .map(|k| v[k].as_u64().unwrap());
    // Blocks 0 and 1 were shared (copied), the rest zero (allocated).
    assert_eq!(counted, [2, touched - 2, 0, 0], "{v}");
    let err = r.fails(2, &["clone", "c/disk", "a/b"]);
    assert!(err.contains("a volume name cannot contain `/`"), "{err}");
    r.ok(&["snapshot", "vm1", "s1"]);
    let marked = text(&r.ok(&["image", "mark", "snapshots/s1", "image"]));
    assert!(marked.contains("is now an image"), "{marked}");
    let marked = text(&r.ok(&["image", "mark", "snapshots/s1", "snapshot"]));
    assert!(marked.contains("is now a snapshot"), "{marked}");
}

#[test]
fn put_over_an_object_shows_what_is_kept_and_warns_for_cloned_images() {
    let (r, _) = repo_with_volume();
    let first = r.json(&["info", "c/disk"]);
    r.ok(&["image", "register", "c/disk", "--name", "Disk"]);
    let other = r.file("other", b"new content");
    let out = r.run(&[
        "--json",
        "put",
        other.to_str().unwrap(),
        "c/disk",
        "--content-type",
        "text/plain",
        "--meta",
        "k=v",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["uuid"], first["uuid"]);
    assert_eq!(v["replaced"]["version"], 1);
    assert_eq!(v["replaced"]["hash"], first["hash"]);
    assert_eq!(v["replaced"]["registered_as"], "image");
    let err = stderr(&out);
    assert!(
        err.contains(
            "warning: c/disk is a registered Image that 1 volume(s) were cloned from (vm1)"
        ) && err.contains(&format!(
            "checksum changed from {}",
            first["hash"].as_str().unwrap()
        )),
        "{err}"
    );
    // The registration was kept; the volume still reads the old content.
    assert_eq!(r.json(&["image", "info", "Disk"])["object"], "c/disk");
    let out = r.run(&["put", other.to_str().unwrap(), "c/disk"]);
    let human = text(&out.stdout);
    assert!(
        human.contains("kept:      uuid, creation time, image registration")
            && human.contains(
                "replaced:  data, content type (was text/plain), user metadata (1 key(s) before: k)"
            ),
        "{human}"
    );
    // Same content: no checksum change, no warning.
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
    // A plain object with no clones: no warning.
    r.ok(&["put", other.to_str().unwrap(), "c/plain"]);
    let out = r.run(&["put", other.to_str().unwrap(), "c/plain"]);
    assert!(out.status.success() && out.stderr.is_empty());
}
