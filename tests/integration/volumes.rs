//! Volumes through the CLI: the full image -> volume -> snapshot -> image workflow,
//! copy-on-write accounting, resize, import/export checked by qemu-img, concurrency of
//! writers, and bad input leaving the repository unchanged.

use crate::util::{TestRepo, pseudo_random};
use std::process::{Command, Stdio};

/// A 4 KiB-block repository holding `images/disk.raw`: 64 KiB of data, a 32 KiB hole, and
/// 32 KiB more data.
fn repo_with_disk() -> (TestRepo, Vec<u8>) {
    let r = TestRepo::new();
    let mut disk = pseudo_random(64 << 10, 1);
    disk.extend(vec![0u8; 32 << 10]);
    disk.extend(pseudo_random(32 << 10, 2));
    let p = r.file("disk.raw", &disk);
    r.ok(&["put", p.to_str().unwrap(), "images/disk.raw"]);
    (r, disk)
}

fn write(r: &TestRepo, vol: &str, offset: u64, data: &[u8]) -> serde_json::Value {
    let out = r.run_stdin(
        &[
            "--json",
            "volume",
            "write",
            vol,
            "--offset",
            &offset.to_string(),
        ],
        data,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn read_all(r: &TestRepo, vol: &str) -> Vec<u8> {
    r.ok(&["volume", "read", vol, "--offset", "0"])
}

#[test]
fn full_workflow_image_clone_write_snapshot_clone_mark_unregister() {
    let (r, disk) = repo_with_disk();
    let image_hash = r.json(&["info", "images/disk.raw"])["hash"].clone();
    r.ok(&[
        "image",
        "register",
        "images/disk.raw",
        "--name",
        "Disk",
        "-p",
        "OSFAMILY=linux",
    ]);
    // The blocks and maps stored (their names are their content hashes).
    let stored = |r: &TestRepo| {
        (
            crate::stored::names(r, "blocks"),
            crate::stored::names(r, "maps"),
        )
    };
    let before_clone = stored(&r);
    let clone = r.json(&["clone", "Disk", "vm1", "--size", "160K", "--no-customize"]);
    assert_eq!(
        stored(&r),
        before_clone,
        "a clone writes no block and no map"
    );
    assert_eq!(clone["source"]["kind"], "image");

    let mut expected = disk.clone();
    expected.resize(160 << 10, 0);
    assert_eq!(
        read_all(&r, "vm1"),
        expected,
        "a fresh clone reads as its source"
    );

    let patch = pseudo_random(10_000, 3);
    write(&r, "vm1", 5000, &patch);
    expected[5000..15_000].copy_from_slice(&patch);
    write(&r, "vm1", 150 << 10, b"tail");
    expected[(150 << 10)..(150 << 10) + 4].copy_from_slice(b"tail");
    assert_eq!(read_all(&r, "vm1"), expected);

    let snap = r.json(&["snapshot", "vm1", "vm1-s1"]);
    assert_eq!(snap["object"], "snapshots/vm1-s1");
    assert_eq!(
        snap["blocks_hashed"], 4,
        "only the written blocks are hashed"
    );
    let snap_info = r.json(&["image", "info", "snapshots/vm1-s1"]);
    assert_eq!(snap_info["is_snapshot"], true);
    assert_eq!(snap_info["properties"]["SOURCE_VOLUME"], "vm1");
    assert_eq!(
        snap_info["properties"]["OSFAMILY"], "linux",
        "source image properties carried"
    );

    // The volume stays writable; the snapshot does not move with it.
    write(&r, "vm1", 0, b"after the snapshot");
    r.ok(&["clone", "snapshots/vm1-s1", "vm2"]);
    assert_eq!(
        read_all(&r, "vm2"),
        expected,
        "the snapshot clone reads vm1 at snapshot time"
    );

    r.ok(&["image", "mark", "snapshots/vm1-s1", "image"]);
    r.ok(&["image", "unregister", "snapshots/vm1-s1"]);
    assert_eq!(r.ok(&["get", "snapshots/vm1-s1"]), expected);
    let export = r.path("vm2.raw");
    r.ok(&["volume", "export", "vm2", "-o", export.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(&export).unwrap(),
        r.ok(&["get", "snapshots/vm1-s1"])
    );

    // Nothing done to the clones changed the image.
    assert_eq!(r.json(&["info", "images/disk.raw"])["hash"], image_hash);
    assert_eq!(r.ok(&["get", "images/disk.raw"]), disk);
    let fsck = r.json(&["fsck", "--read-data"]);
    assert!(fsck["problems"].as_array().unwrap().is_empty(), "{fsck}");
}

#[test]
fn copy_on_write_copies_once_and_never_for_zero_blocks() {
    let (r, _) = repo_with_disk();
    r.ok(&["clone", "images/disk.raw", "v"]);
    let first = write(&r, "v", 100, b"x");
    assert_eq!(first["blocks_copied"], 1);
    let second = write(&r, "v", 200, b"y");
    assert_eq!(
        (
            second["blocks_copied"].as_u64(),
            second["blocks_in_place"].as_u64()
        ),
        (Some(0), Some(1))
    );
    // 64K..96K is a hole in the source: zeros over it cost nothing, data allocates.
    let zeros = write(&r, "v", 68 << 10, &[0u8; 4096]);
    assert_eq!(zeros["blocks_skipped"], 1);
    let data = write(&r, "v", 68 << 10, b"z");
    assert_eq!(
        (
            data["blocks_allocated"].as_u64(),
            data["blocks_copied"].as_u64()
        ),
        (Some(1), Some(0))
    );
    // A write spanning two blocks at an odd offset.
    let span = write(&r, "v", 4096 * 3 - 7, &[9u8; 20]);
    assert_eq!(span["blocks_copied"], 2);
    let info = r.json(&["volume", "info", "v"]);
    assert_eq!(info["private_blocks"], 4);
    assert_eq!(info["blocks"], 32);
    assert_eq!(
        info["zero_blocks"].as_u64().unwrap() + info["shared_blocks"].as_u64().unwrap(),
        28
    );
    let got = r.ok(&[
        "volume",
        "read",
        "v",
        "--offset",
        &(4096 * 3 - 7).to_string(),
        "--length",
        "20",
    ]);
    assert_eq!(got, vec![9u8; 20]);
}

#[test]
fn resize_grows_with_zeros_and_shrinks_only_when_allowed() {
    let (r, disk) = repo_with_disk();
    r.ok(&["clone", "images/disk.raw", "v"]);
    let before = r.snapshot();
    let err = r.fails(2, &["volume", "resize", "v", "10000"]);
    assert!(err.contains("--allow-shrink"), "{err}");
    assert_eq!(r.snapshot(), before);
    r.ok(&["volume", "resize", "v", "10000", "--allow-shrink"]);
    assert_eq!(read_all(&r, "v"), disk[..10_000]);
    r.ok(&["volume", "resize", "v", "200K"]);
    let mut want = disk[..10_000].to_vec();
    want.resize(200 << 10, 0);
    assert_eq!(
        read_all(&r, "v"),
        want,
        "the grown tail reads as zeros, old data does not return"
    );
    r.ok(&["snapshot", "v", "s"]);
    assert_eq!(r.ok(&["get", "snapshots/s"]), want);
}

#[test]
fn export_qcow2_passes_qemu_img_and_import_dedups() {
    let (r, disk) = repo_with_disk();
    r.ok(&["clone", "images/disk.raw", "v", "--size", "1M"]);
    write(&r, "v", 300 << 10, b"written");
    let raw = r.path("v.raw");
    let qcow = r.path("v.qcow2");
    r.ok(&["volume", "export", "v", "-o", raw.to_str().unwrap()]);
    r.ok(&[
        "volume",
        "export",
        "v",
        "-o",
        qcow.to_str().unwrap(),
        "--format",
        "qcow2",
    ]);
    let check = Command::new("qemu-img")
        .arg("check")
        .arg(&qcow)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let cmp = Command::new("qemu-img")
        .arg("compare")
        .arg(&raw)
        .arg(&qcow)
        .output()
        .unwrap();
    assert!(
        cmp.status.success(),
        "{}",
        String::from_utf8_lossy(&cmp.stdout)
    );
    let meta = std::fs::metadata(&raw).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert!(meta.blocks() * 512 < meta.len() / 2, "raw export is sparse");
    assert_eq!(&std::fs::read(&raw).unwrap()[..disk.len()], &disk[..]);

    // Exporting onto an existing file needs --force.
    let err = r.fails(2, &["volume", "export", "v", "-o", raw.to_str().unwrap()]);
    assert!(err.contains("--force"), "{err}");

    let imported = r.json(&["volume", "import", qcow.to_str().unwrap(), "w"]);
    assert_eq!(imported["format"], "qcow2");
    assert_eq!(
        imported["blocks_written"], 1,
        "only the written block is new"
    );
    assert_eq!(read_all(&r, "w"), std::fs::read(&raw).unwrap());

    // A corrupt image: qemu-img's own message comes through, nothing is created.
    let bad = r.file(
        "bad.qcow2",
        b"QFI\xfb\0\0\0\x03garbage that is no qcow2 header",
    );
    let before = r.snapshot();
    let err = r.fails(
        2,
        &[
            "volume",
            "import",
            bad.to_str().unwrap(),
            "x",
            "--format",
            "qcow2",
        ],
    );
    assert!(err.contains("qemu-img"), "{err}");
    assert_eq!(r.snapshot(), before);
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let (r, _) = repo_with_disk();
    r.ok(&["clone", "images/disk.raw", "v"]);
    let before = r.snapshot();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["clone", "images/nope", "x"], "not found"),
        (vec!["clone", "v", "x"], "Snapshot it first"),
        (vec!["clone", "images/disk.raw", "v"], "already exists"),
        (vec!["clone", "images/disk.raw", "a/b"], "invalid name"),
        (
            vec!["clone", "images/disk.raw", "x", "--size", "1K"],
            "smaller than the source",
        ),
        (
            vec!["clone", "images/disk.raw", "x", "--size", "12Q"],
            "size",
        ),
        (
            vec!["volume", "read", "v", "--offset", "128K", "--length", "1"],
            "past the end",
        ),
        (
            vec!["volume", "read", "vv", "--offset", "0"],
            "did you mean 'v'",
        ),
        (vec!["volume", "resize", "v", "0x"], "size"),
        (vec!["volume", "rm", "nope"], "not found"),
        (
            vec!["volume", "import", "/nonexistent/disk.raw", "x"],
            "/nonexistent/disk.raw",
        ),
        (vec!["snapshot", "nope", "s"], "not found"),
        (vec!["image", "register", "v", "--name", "V"], "is a volume"),
        (
            vec![
                "volume",
                "write",
                "images/disk.raw",
                "--offset",
                "0",
                "/dev/null",
            ],
            "read-only object",
        ),
    ];
    for (args, want) in cases {
        let err = r.fails(2, &args);
        assert!(err.contains(want), "{args:?}: expected '{want}' in: {err}");
        assert_eq!(r.snapshot(), before, "{args:?} changed the repository");
    }
    // A write past the end is refused before any byte is written.
    let out = r.run_stdin(
        &["volume", "write", "v", "--offset", "130000"],
        &[1u8; 2000],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("past the end"));
    assert_eq!(r.snapshot(), before);
    r.ok(&["snapshot", "v", "s"]);
    let snap = r.snapshot();
    let err = r.fails(2, &["snapshot", "v", "s"]);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(r.snapshot(), snap);
}

#[test]
fn rm_frees_private_blocks_and_leaves_the_source() {
    let (r, disk) = repo_with_disk();
    r.ok(&["clone", "images/disk.raw", "v"]);
    write(&r, "v", 0, &pseudo_random(3 * 4096, 9));
    let rm = r.json(&["volume", "rm", "v"]);
    assert_eq!(rm["private_blocks_freed"], 3);
    let left: Vec<_> = walkdir::WalkDir::new(r.root.join("volumes"))
        .min_depth(1)
        .into_iter()
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(r.ok(&["get", "images/disk.raw"]), disk);
    assert!(
        r.json(&["volume", "ls"])["volumes"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn concurrent_writers_of_one_volume_are_serialized() {
    let (r, _) = repo_with_disk();
    r.ok(&["clone", "images/disk.raw", "v"]);
    // Eight processes each write their own pattern over the same two blocks.
    let children: Vec<_> = (0..8u8)
        .map(|i| {
            let mut c = r.cmd();
            c.args(["volume", "write", "v", "--offset", "2048"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            let mut child = c.spawn().unwrap();
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(&[i + 1; 4096])
                .unwrap();
            child
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Serialized writes leave one writer's whole pattern, never a mix.
    let got = r.ok(&[
        "volume", "read", "v", "--offset", "2048", "--length", "4096",
    ]);
    assert!(
        got.iter().all(|&b| b == got[0]) && got[0] >= 1,
        "interleaved writes: {:?}",
        &got[..16]
    );
    let fsck = r.json(&["fsck"]);
    assert!(fsck["problems"].as_array().unwrap().is_empty(), "{fsck}");
}

/// Without qemu-img, `volume import` recognises non-raw images by their magic and refuses
/// them instead of importing their container bytes as disk content; `--format raw` still
/// imports the bytes as they are, and raw files import as before.
#[test]
fn import_without_qemu_img_refuses_non_raw_images() {
    let r = TestRepo::new();
    let no_qemu = r.path("bin");
    std::fs::create_dir(&no_qemu).unwrap();
    let run = |args: &[&str]| r.cmd().env("PATH", &no_qemu).args(args).output().unwrap();
    for (fmt, opts) in [
        ("qcow2", ""),
        ("qed", ""),
        ("vdi", ""),
        ("vhdx", ""),
        ("vmdk", ""),
        ("vmdk", "subformat=monolithicFlat"),
        ("vpc", ""),
    ] {
        let img = r.path(&format!("disk-{fmt}-{}.img", opts.len()));
        let mut create = Command::new("qemu-img");
        create.args(["create", "-q", "-f", fmt]);
        if !opts.is_empty() {
            create.args(["-o", opts]);
        }
        let out = create.arg(&img).arg("1M").output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let before = r.snapshot();
        let out = run(&["volume", "import", img.to_str().unwrap(), "v"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{fmt}: {err}");
        assert!(
            err.contains(&format!("looks like a {fmt} image"))
                && err.contains("qemu-utils")
                && err.contains("--format raw")
                && err.contains(img.to_str().unwrap()),
            "{err}"
        );
        assert_eq!(r.snapshot(), before, "{fmt}: nothing changed");
    }

    // Asked for raw, the container bytes are imported as they are.
    let qcow = r.path("disk-qcow2-0.img");
    let out = run(&[
        "--json",
        "volume",
        "import",
        qcow.to_str().unwrap(),
        "q",
        "--format",
        "raw",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read_all(&r, "q"), std::fs::read(&qcow).unwrap());

    // A raw disk needs no qemu-img.
    let disk = pseudo_random(40 << 10, 7);
    let raw = r.file("disk.raw", &disk);
    let out = run(&["--json", "volume", "import", raw.to_str().unwrap(), "raw"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["format"], "raw");
    assert_eq!(read_all(&r, "raw"), disk);
}

/// A write that fails midway (a damaged shared block; a private block that cannot be opened)
/// names exactly the blocks it already changed, and `volume read` shows those and no other.
#[test]
fn a_write_failing_midway_lists_the_blocks_it_changed() {
    let r = TestRepo::new();
    let old = pseudo_random(4 * 4096, 11);
    let img = r.file("img", &old);
    r.ok(&["put", img.to_str().unwrap(), "images/img"]);
    r.ok(&["clone", "images/img", "v"]);
    let read = |at: u64, len: u64| {
        r.ok(&[
            "volume",
            "read",
            "v",
            "--offset",
            &at.to_string(),
            "--length",
            &len.to_string(),
        ])
    };
    // Damage the stored copy of block 2: copy-on-write verifies it, and fails there.
    let hash = r.json(&["hashmap", "images/img"])["hashes"][2]
        .as_str()
        .unwrap()
        .to_string();
    let stored = crate::stored::data_rel(&r, "blocks", &hash);
    crate::stored::damage(&r, &stored, |b| b[0] ^= 1);

    let new = pseudo_random(4 * 4096, 12);
    let src = r.file("new", &new);
    let out = r.run(&[
        "--json",
        "volume",
        "write",
        "v",
        "--offset",
        "0",
        src.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["kind"], "partial_write");
    let msg = doc["error"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("write to volume 'v' failed: corrupted block")
            && msg.ends_with(
                "2 blocks of 4096 bytes already show the new data: blocks 0-1 (bytes 0-8191); \
                 every other byte of 0-16383 keeps its old content"
            ),
        "{msg}"
    );
    assert_eq!(read(0, 8192), &new[..8192]);
    assert_eq!(read(12288, 4096), &old[12288..]);

    // Block 1 is private now; make its file unopenable for writing: a program running from
    // it (the kernel refuses to open a running executable for writing, ETXTBSY, even for
    // root). Block 0 is written in place, block 1 fails in place: it may be partly new.
    let info = r.json(&["volume", "info", "v"]);
    let private = r
        .root
        .join("volumes")
        .join(info["id"].as_str().unwrap())
        .join(info["epoch"].to_string())
        .join("1");
    std::fs::remove_file(&private).unwrap();
    std::fs::copy("/bin/sleep", &private).unwrap();
    let mut busy = None;
    for _ in 0..50 {
        // A sibling test forking while the copy was open may hold it open for writing a
        // moment (ETXTBSY on exec): try again.
        match std::process::Command::new(&private).arg("600").spawn() {
            Ok(child) => {
                busy = Some(child);
                break;
            }
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Err(e) => panic!("run {}: {e}", private.display()),
        }
    }
    let mut busy = busy.expect("the copied program runs");
    let again = pseudo_random(2 * 4096, 13);
    let src = r.file("again", &again);
    let err = r.fails(
        2,
        &[
            "volume",
            "write",
            "v",
            "--offset",
            "0",
            src.to_str().unwrap(),
        ],
    );
    assert!(
        err.contains(
            "1 block of 4096 bytes already shows the new data: block 0 (bytes 0-4095); block 1 \
             (bytes 4096-8191) was being written in place and may hold part of the new data; \
             every other byte of 0-8191 keeps its old content"
        ),
        "{err}"
    );
    busy.kill().unwrap();
    busy.wait().unwrap();
    assert_eq!(read(0, 4096), &again[..4096]);
}

/// A SRC that is a pipe (here /dev/stdin), whose length reads as 0, is written whole, not
/// skipped as empty.
#[test]
fn write_from_a_pipe_path_writes_its_bytes() {
    let (r, disk) = repo_with_disk();
    r.ok(&["clone", "images/disk.raw", "v"]);
    let out = r.run_stdin(
        &[
            "--json",
            "volume",
            "write",
            "v",
            "--offset",
            "5000",
            "/dev/stdin",
        ],
        b"through a pipe",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["bytes"], 14);
    let mut want = disk.clone();
    want[5000..5014].copy_from_slice(b"through a pipe");
    assert_eq!(read_all(&r, "v")[..want.len()], want[..]);
}

/// A disk image from elsewhere must not read local files through qemu-img: a qcow2 with a
/// backing file or an external data file, or a vmdk whose extent is another file, is refused
/// (the secret never reaches the repository) and the repository is left as it was.
#[test]
fn import_refuses_images_that_read_other_local_files() {
    let r = TestRepo::new();
    let secret = r.file("secret", b"root:$6$hash:20228:0:99999:7:::\n");
    let s = secret.to_str().unwrap();
    let qemu = |args: &[&str]| {
        let out = Command::new("qemu-img").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let backing = r.path("backing.qcow2");
    let opt = format!("backing_file={s},backing_fmt=raw");
    qemu(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        &opt,
        backing.to_str().unwrap(),
    ]);
    let data = r.path("data.qcow2");
    let opt = format!("data_file={s},data_file_raw=on");
    qemu(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        &opt,
        data.to_str().unwrap(),
        "64K",
    ]);
    let vmdk = r.file(
        "evil.vmdk",
        format!(
            "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n\
             createType=\"monolithicFlat\"\nRW 8 FLAT \"{s}\" 0\n"
        )
        .as_bytes(),
    );
    for (img, fmt) in [
        (&backing, None),
        (&data, None),
        (&vmdk, None),
        (&backing, Some("qcow2")),
    ] {
        let before = r.snapshot();
        let mut args = vec!["volume", "import", img.to_str().unwrap(), "stolen"];
        if let Some(f) = fmt {
            args.extend(["--format", f]);
        }
        let err = r.fails(2, &args);
        assert!(err.contains("self-contained"), "{}: {err}", img.display());
        assert_eq!(
            r.snapshot(),
            before,
            "{}: repository unchanged",
            img.display()
        );
    }
    // A plain qcow2 still imports.
    let plain = r.path("plain.qcow2");
    qemu(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        plain.to_str().unwrap(),
        "64K",
    ]);
    r.ok(&["volume", "import", plain.to_str().unwrap(), "ok"]);
}
