//! Repository permissions through the CLI: private to the owner by default (checked on the
//! modes and as another user), shared with a group by `init --shared-group`, exposed modes
//! of an old repository reported and repaired; special files (FIFOs, symlinks) in place of
//! repository files fail fast and clearly.

use crate::util::{TestRepo, bin, pseudo_random, stderr};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn is_root() -> bool {
    // SAFETY: reads the process credentials.
    unsafe { libc::geteuid() == 0 }
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// `program args` as uid 65534 with group `gid` only (setpriv; the tests run as root in CI).
fn as_user(gid: u32, program: &str, args: &[&str]) -> Output {
    Command::new("setpriv")
        .args([
            "--reuid=65534",
            &format!("--regid={gid}"),
            "--clear-groups",
            program,
        ])
        .args(args)
        .env("HOME", "/tmp")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Runs `cmd`, failing the test if it does not finish: a command blocked on a FIFO never
/// would. The bound only guards against a hang; nothing is measured.
pub fn run_bounded(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..1200 {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("{cmd:?} hung (blocked on a special file?)");
}

pub(crate) fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
        0,
        "mkfifo {p:?}"
    );
}

/// `r` given an object, an image, a written volume and a snapshot of it.
fn busy_repo(r: TestRepo) -> TestRepo {
    let p = r.file("disk", &pseudo_random(5 * 4096, 1));
    r.ok(&["put", p.to_str().unwrap(), "images/disk"]);
    r.ok(&["image", "register", "images/disk", "--name", "Disk"]);
    r.ok(&["clone", "Disk", "vm", "--no-customize"]);
    let out = r.run_stdin(&["volume", "write", "vm", "--offset", "100"], b"secret");
    assert!(out.status.success(), "{}", stderr(&out));
    r.ok(&["snapshot", "vm", "vm-s1"]);
    let out = r.run_stdin(&["volume", "write", "vm", "--offset", "9000"], b"hash");
    assert!(out.status.success(), "{}", stderr(&out));
    r
}

#[test]
fn everything_a_repository_holds_is_private_to_its_owner() {
    if crate::util::local_store_only(
        "the modes of block, map and private-block files: in remote mode they are objects in the bucket",
    ) {
        return;
    }
    let r = busy_repo(TestRepo::new());
    assert_private_modes(&r);

    if !is_root() {
        eprintln!("note: not root, so the other-user half of this test is skipped");
        return;
    }
    // Another user, who can reach the repository's parent, can read nothing in it.
    std::fs::set_permissions(r.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = r.root.to_str().unwrap();
    let out = as_user(65534, bin(), &["-R", root, "ls"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
    // Even with every directory opened, the files themselves stay closed to others.
    for e in walkdir::WalkDir::new(&r.root) {
        let e = e.unwrap();
        if e.file_type().is_dir() {
            std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    let catalog = r.root.join("meta/catalog.db");
    let private = walkdir::WalkDir::new(r.root.join("volumes"))
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .find(|p| p.is_file())
        .unwrap();
    let block = walkdir::WalkDir::new(r.root.join("blocks"))
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .find(|p| p.is_file())
        .unwrap();
    for file in [&catalog, &private, &block, &r.root.join("arch.toml")] {
        let out = as_user(65534, "cat", &[file.to_str().unwrap()]);
        assert!(
            !out.status.success(),
            "{file:?} is readable by another user"
        );
    }
    // fsck warns about the opened directories; --repair closes them again.
    let report = r.json(&["fsck"]);
    let warnings = report["warnings"].to_string();
    assert!(
        warnings.contains("accessible to users outside") && warnings.contains("--repair"),
        "{report}"
    );
    let repaired = r.json(&["fsck", "--repair"]);
    assert!(
        repaired["repaired"].to_string().contains("private"),
        "{repaired}"
    );
    assert_eq!(mode(&r.root), 0o700);
    assert_eq!(mode(&r.root.join("blocks/00")), 0o700);
    assert_eq!(r.json(&["fsck"])["warnings"], serde_json::json!([]));
}

/// True for the files a repository seals read-only: blocks, maps, packs and arch.toml.
fn is_sealed(rel: &Path) -> bool {
    ["blocks", "maps", "packs"]
        .iter()
        .any(|d| rel.starts_with(d))
        || rel == Path::new("arch.toml")
}

/// Every directory is 0700, every block, map, pack and arch.toml 0400, everything else 0600;
/// the volume has private blocks and fsck has no warning.
fn assert_private_modes(r: &TestRepo) {
    let mut private_blocks = 0;
    for e in walkdir::WalkDir::new(&r.root) {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(&r.root).unwrap().to_path_buf();
        let m = mode(e.path());
        if e.file_type().is_dir() {
            assert_eq!(m, 0o700, "{rel:?}");
        } else if is_sealed(&rel) {
            assert_eq!(m, 0o400, "{rel:?} is sealed read-only");
        } else {
            assert!(e.file_type().is_file(), "{rel:?}");
            assert_eq!(m, 0o600, "{rel:?}");
            private_blocks += rel.starts_with("volumes") as u32;
        }
    }
    assert!(private_blocks >= 1, "the volume has private blocks");
    assert_eq!(r.json(&["fsck"])["warnings"], serde_json::json!([]));
}

#[test]
fn a_packed_repository_is_private_to_its_owner_too() {
    if crate::util::local_store_only("packs are kept in a local store only") {
        return;
    }
    let r = busy_repo(TestRepo::packed());
    let packs = std::fs::read_dir(r.root.join("packs")).unwrap().count();
    assert!(packs >= 2, "the put and the snapshot each wrote a pack");
    assert_private_modes(&r);
    if !is_root() {
        eprintln!("note: not root, so the other-user half of this test is skipped");
        return;
    }
    // Another user, with every directory opened to them, still reads no pack.
    std::fs::set_permissions(r.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for d in [&r.root, &r.root.join("packs")] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for e in std::fs::read_dir(r.root.join("packs")).unwrap() {
        let pack = e.unwrap().path();
        let out = as_user(65534, "cat", &[pack.to_str().unwrap()]);
        assert!(
            !out.status.success(),
            "{pack:?} is readable by another user"
        );
    }
}

#[test]
fn an_old_world_readable_repository_opens_and_fsck_repair_makes_it_private() {
    if crate::util::local_store_only(
        "the modes of block files: in remote mode they are objects in the bucket",
    ) {
        return;
    }
    let r = TestRepo::new();
    let p = r.file("data", &pseudo_random(3 * 4096, 2));
    r.ok(&["put", p.to_str().unwrap(), "c/a"]);
    // What arch wrote before: 0755 directories and 0644 files.
    for e in walkdir::WalkDir::new(&r.root) {
        let e = e.unwrap();
        let m = if e.file_type().is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(m)).unwrap();
    }
    assert_eq!(r.ok(&["get", "c/a"]), std::fs::read(&p).unwrap());
    let report = r.json(&["fsck"]);
    assert!(
        report["warnings"][0].as_str().unwrap().contains("mode 07"),
        "{report}"
    );
    r.ok(&["fsck", "--repair"]);
    for e in walkdir::WalkDir::new(&r.root) {
        let e = e.unwrap();
        assert_eq!(mode(e.path()) & 0o077, 0, "{:?}", e.path());
    }
    let block = r.json(&["hashmap", "c/a"])["hashes"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        mode(&r.root.join("blocks").join(&block[..2]).join(&block)),
        0o400
    );
    assert_eq!(r.ok(&["get", "c/a"]), std::fs::read(&p).unwrap());
}

#[test]
fn shared_group_repository_is_usable_by_members_only() {
    if !is_root() {
        eprintln!("note: not root; cannot act as other users, test skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = dir.path().join("team");
    let out = Command::new(bin())
        .args([
            "--json",
            "init",
            "--block-size",
            "4K",
            "--shared-group",
            "65534",
        ])
        .arg(&root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["shared_group"], "nogroup");
    assert_eq!(report["mode"], "2770");
    let meta = std::fs::metadata(&root).unwrap();
    assert_eq!((meta.gid(), mode(&root)), (65534, 0o2770));
    let data = pseudo_random(3 * 4096, 3);
    let src = dir.path().join("src");
    std::fs::write(&src, &data).unwrap();
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o644)).unwrap();
    let arch = |gid: u32, args: &[&str]| {
        let mut all = vec!["-R", root.to_str().unwrap()];
        all.extend_from_slice(args);
        as_user(gid, bin(), &all)
    };
    // The owner (root) puts; a member (uid 65534, group nogroup) reads and writes.
    let out = Command::new(bin())
        .arg("-R")
        .arg(&root)
        .args(["put", src.to_str().unwrap(), "c/by-owner"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = arch(65534, &["get", "c/by-owner"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, data);
    let out = arch(65534, &["put", src.to_str().unwrap(), "c/by-member"]);
    assert!(out.status.success(), "member put: {}", stderr(&out));
    let out = arch(65534, &["fsck", "--read-data"]);
    assert!(out.status.success(), "member fsck: {}", stderr(&out));
    for e in walkdir::WalkDir::new(&root) {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(&root).unwrap().to_path_buf();
        assert_eq!(
            e.metadata().unwrap().gid(),
            65534,
            "{rel:?} belongs to the group"
        );
        let m = mode(e.path());
        if e.file_type().is_dir() {
            assert_eq!(m, 0o2770, "{rel:?}");
        } else if is_sealed(&rel) {
            assert_eq!(m, 0o440, "{rel:?}");
        } else {
            assert_eq!(m, 0o660, "{rel:?}");
        }
    }
    // Not a member: nothing readable.
    let out = arch(65533, &["ls"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn shared_group_the_user_is_not_in_is_refused_and_nothing_is_created() {
    if !is_root() {
        eprintln!("note: not root; cannot act as another user, test skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let root = dir.path().join("team");
    let out = as_user(
        65534,
        bin(),
        &["init", "--shared-group", "root", root.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("not a member of group 'root'") && err.contains("usermod"),
        "{err}"
    );
    assert!(!root.exists(), "a refused init creates nothing");
    let err = TestRepo::new().fails(
        2,
        &["init", "--shared-group", "no-such-group-x", "elsewhere"],
    );
    assert!(err.contains("no group named 'no-such-group-x'"), "{err}");
}

fn object_files(r: &TestRepo, name: &str) -> (String, std::path::PathBuf, std::path::PathBuf) {
    let h = r.json(&["hashmap", name])["hashes"][1]
        .as_str()
        .unwrap()
        .to_string();
    let catalog: serde_json::Value = crate::catalog_db::read(r);
    let map = catalog["objects"][name]["map"]
        .as_str()
        .unwrap()
        .to_string();
    (
        h.clone(),
        r.root.join("blocks").join(&h[..2]).join(&h),
        r.root.join("maps").join(&map[..2]).join(&map),
    )
}

fn bounded(r: &TestRepo, args: &[&str]) -> Output {
    run_bounded(r.cmd().args(args))
}

#[test]
fn a_fifo_in_place_of_a_block_or_map_fails_fast_and_repair_moves_it_aside() {
    if crate::util::local_store_only(
        "a FIFO in place of a block file: a bucket holds no special files",
    ) {
        return;
    }
    let r = TestRepo::new();
    let data = pseudo_random(3 * 4096, 4);
    let p = r.file("data", &data);
    r.ok(&["put", p.to_str().unwrap(), "c/a"]);
    let (h, block, map) = object_files(&r, "c/a");

    std::fs::remove_file(&block).unwrap();
    mkfifo(&block);
    let out = bounded(&r, &["get", "c/a"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!("corrupted block {h} at offset 4096 of c/a")),
        "{}",
        stderr(&out)
    );
    let out = bounded(&r, &["--json", "fsck"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds = report["problems"].to_string();
    assert!(
        kinds.contains("not_regular_file") && kinds.contains("a FIFO"),
        "{report}"
    );
    assert_eq!(bounded(&r, &["fsck", "--read-data"]).status.code(), Some(1));
    let out = bounded(&r, &["--json", "fsck", "--read-data", "--repair"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["repaired"]
            .to_string()
            .contains("quarantine/blocks/"),
        "{report}"
    );
    // The FIFO no longer holds the name: a put of the same data writes the real block.
    r.ok(&["put", p.to_str().unwrap(), "c/again"]);
    assert_eq!(r.ok(&["get", "c/a"]), data);

    std::fs::remove_file(&map).unwrap();
    mkfifo(&map);
    let out = bounded(&r, &["get", "c/a"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("a FIFO, not a regular file"),
        "{}",
        stderr(&out)
    );
    let out = bounded(&r, &["--json", "fsck"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("corrupt_map"));
}

#[test]
fn a_fifo_in_place_of_the_catalog_or_config_fails_fast() {
    if crate::util::local_catalog_only("puts a FIFO in place of meta/catalog.db") {
        return;
    }
    let r = TestRepo::new();
    let catalog = r.root.join("meta/catalog.db");
    let saved = std::fs::read(&catalog).unwrap();
    std::fs::remove_file(&catalog).unwrap();
    mkfifo(&catalog);
    for args in [&["ls"][..], &["fsck"], &["put", "-", "c/x"]] {
        let out = bounded(&r, args);
        assert_ne!(out.status.code(), Some(0), "{args:?}");
        let all = format!("{}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
        assert!(
            all.contains("catalog.db") && all.contains("FIFO"),
            "{args:?}: {all}"
        );
    }
    std::fs::remove_file(&catalog).unwrap();
    std::fs::write(&catalog, saved).unwrap();

    let config = r.root.join("arch.toml");
    std::fs::remove_file(&config).unwrap();
    mkfifo(&config);
    for args in [&["ls"][..], &["fsck"], &["get", "c/x"]] {
        let out = bounded(&r, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr(&out);
        assert!(
            err.contains("arch.toml") && err.contains("FIFO"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn a_symlinked_block_is_refused_even_with_the_right_content() {
    if crate::util::local_store_only("a symlink in place of a block file: a bucket holds no links")
    {
        return;
    }
    let r = TestRepo::new();
    let data = pseudo_random(3 * 4096, 5);
    let p = r.file("data", &data);
    r.ok(&["put", p.to_str().unwrap(), "c/a"]);
    let (h, block, _) = object_files(&r, "c/a");
    let outside = r.path("outside-block");
    std::fs::copy(&block, &outside).unwrap();
    std::fs::remove_file(&block).unwrap();
    std::os::unix::fs::symlink(&outside, &block).unwrap();
    let err = r.fails(2, &["get", "c/a"]);
    assert!(err.contains(&format!("corrupted block {h}")), "{err}");
    let out = r.run(&["--json", "fsck"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["problems"].to_string().contains("a symbolic link"),
        "{report}"
    );
    r.ok(&["put", p.to_str().unwrap(), "c/b"]);
    assert!(
        block.is_file() && !block.is_symlink(),
        "the put replaced the symlink"
    );
    assert_eq!(r.ok(&["get", "c/a"]), data);
    assert_eq!(
        std::fs::read(&outside).unwrap().len(),
        4096,
        "the target is untouched"
    );
}

#[test]
fn gc_and_fsck_never_enter_a_symlinked_volume_directory() {
    if crate::util::local_store_only(
        "a symlink in place of a volume directory: private blocks are objects in the bucket",
    ) {
        return;
    }
    let r = busy_repo(TestRepo::new());
    let info = r.json(&["volume", "info", "vm"]);
    let (id, epoch) = (
        info["id"].as_str().unwrap(),
        info["epoch"].as_u64().unwrap(),
    );
    // Outside the repository: an old-epoch directory and a block past the end, both of
    // which gc would remove if they were inside.
    let outside = r.path("outside");
    std::fs::create_dir_all(outside.join(epoch.to_string())).unwrap();
    std::fs::create_dir_all(outside.join("0-old")).unwrap();
    std::fs::write(outside.join("0-old/keep"), b"keep").unwrap();
    std::fs::write(outside.join(format!("{epoch}/999")), vec![1u8; 4096]).unwrap();
    let vdir = r.root.join("volumes").join(id);
    std::fs::rename(&vdir, r.path("real-volume")).unwrap();
    std::os::unix::fs::symlink(&outside, &vdir).unwrap();
    let out = r.run(&["--json", "fsck"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["problems"].to_string().contains("a symbolic link"),
        "{report}"
    );
    r.ok(&["gc"]);
    assert!(outside.join("0-old/keep").exists());
    assert!(outside.join(format!("{epoch}/999")).exists());
}
