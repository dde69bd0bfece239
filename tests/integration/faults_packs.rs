//! A real full filesystem under a repository with packs (`--packs on`, 4 KiB blocks, 16 MiB
//! packs), filled so that the disk runs out in the middle of a pack: `put`, `gc` rewriting a
//! partly dead pack and `snapshot` of a volume (served or not) fail with the ENOSPC error naming the path,
//! lose nothing, leave no pack half made, and succeed once space is freed. Skipped with a
//! note where no tmpfs can be mounted (not root).

use crate::faults::{Mount, arch, fill_leaving, small_tmpfs};
use crate::serve::{RawClient, Server};
use crate::util::{TestRepo, bin, pseudo_random, stderr, tree_snapshot};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

const BS: usize = 4096;
/// Exit status of a command that ran out of space (`Error::NoSpace`).
const NO_SPACE_EXIT: i32 = 2;

/// A packed repository `repo` on a 24 MiB tmpfs `mnt`, scratch files in `dir`; None (with a
/// note) where no tmpfs can be mounted.
struct Setup {
    /// First: unmounted before `dir` is removed.
    _mount: Mount,
    dir: tempfile::TempDir,
    mnt: PathBuf,
    repo: PathBuf,
}

impl Setup {
    fn new() -> Option<Setup> {
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("small");
        let mount = small_tmpfs(&mnt, "24m")?;
        let repo = mnt.join("repo");
        let out = Command::new(bin())
            .args(["init", "--block-size", "4K", "--packs", "on"])
            .arg(&repo)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        Some(Setup {
            _mount: mount,
            dir,
            mnt,
            repo,
        })
    }
}

fn ok(repo: &Path, args: &[&str]) -> Vec<u8> {
    let out = arch(repo, args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    out.stdout
}

fn json_of(repo: &Path, args: &[&str]) -> Value {
    serde_json::from_slice(&ok(repo, &[&["--json"][..], args].concat())).unwrap()
}

fn packs(repo: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(repo.join("packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// `out` failed for lack of space, saying so and naming a path inside `repo`.
fn assert_no_space(out: &std::process::Output, repo: &Path) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(NO_SPACE_EXIT), "{err}");
    assert!(
        err.contains("no space left on the device while writing")
            && err.contains(repo.to_str().unwrap()),
        "{err}"
    );
    err
}

/// Every object reads back, every block hashes to its name, nothing is left in tmp/.
fn assert_intact(repo: &Path, objects: &[(&str, &[u8])]) {
    for (name, data) in objects {
        assert!(ok(repo, &["get", name]) == *data, "{name} reads back");
    }
    let f = json_of(repo, &["fsck", "--read-data"]);
    assert_eq!(f["problems"], json!([]), "{f}");
    assert_eq!(f["garbage"]["temp_entries"], 0, "{f}");
    assert_eq!(std::fs::read_dir(repo.join("tmp")).unwrap().count(), 0);
}

#[test]
fn a_packed_put_on_a_full_filesystem_changes_nothing_and_succeeds_after() {
    let Some(Setup { dir, mnt, repo, .. }) = &Setup::new() else {
        return;
    };
    let small = pseudo_random(256 * BS, 1);
    let small_path = dir.path().join("small.bin");
    std::fs::write(&small_path, &small).unwrap();
    ok(repo, &["put", small_path.to_str().unwrap(), "c/small"]);
    let before = tree_snapshot(repo);
    // 12 MiB into one pack (16 MiB target) with 4 MiB free: the disk fills mid-pack.
    let big = pseudo_random(12 << 20, 2);
    let big_path = dir.path().join("big.bin");
    std::fs::write(&big_path, &big).unwrap();
    fill_leaving(mnt, 4 << 20);
    let out = arch(repo, &["put", big_path.to_str().unwrap(), "c/big"]);
    let err = assert_no_space(&out, repo);
    assert!(err.contains("nothing was committed"), "{err}");
    assert_eq!(tree_snapshot(repo), before, "the repository is as it was");
    assert!(!arch(repo, &["info", "c/big"]).status.success());
    assert_intact(repo, &[("c/small", &small)]);
    // Space is back: the same put succeeds.
    std::fs::remove_file(mnt.join("filler")).unwrap();
    ok(repo, &["put", big_path.to_str().unwrap(), "c/big"]);
    assert_intact(repo, &[("c/small", &small), ("c/big", &big)]);
    assert_eq!(packs(repo).len(), 2);
}

/// Puts "a" = X + Y (2 + 3 MiB), "b" = Y and "d" (1 MiB, a pack of its own); returns X and Y.
fn put_x_y_and_d(scratch: &Path, repo: &Path) -> (Vec<u8>, Vec<u8>) {
    let x = pseudo_random(2 << 20, 1);
    let y = pseudo_random(3 << 20, 2);
    let d = pseudo_random(1 << 20, 3);
    let a = [&x[..], &y[..]].concat();
    for (name, data) in [("a", &a), ("b", &y), ("d", &d)] {
        let p = scratch.join(name);
        std::fs::write(&p, data).unwrap();
        ok(repo, &["put", p.to_str().unwrap(), &format!("c/{name}")]);
    }
    (x, y)
}

#[test]
fn gc_rewriting_a_pack_on_a_full_filesystem_loses_nothing_and_finishes_after() {
    let Some(Setup { dir, mnt, repo, .. }) = &Setup::new() else {
        return;
    };
    // "a" = X + Y and "b" = Y: one pack, half dead once "a" is removed; "d" alone in a pack
    // that is all dead once "d" is removed.
    let (_, y) = put_x_y_and_d(dir.path(), repo);
    assert_eq!(packs(repo).len(), 2);
    ok(repo, &["rm", "c/a"]);
    ok(repo, &["rm", "c/d"]);
    // Y's 3 MiB must be copied; 1 MiB (d's pack) plus the 512 KiB left is not enough.
    fill_leaving(mnt, 512 << 10);
    let out = arch(repo, &["gc"]);
    assert_no_space(&out, repo);
    assert_intact(repo, &[("c/b", &y)]);
    let left = packs(repo);
    assert_eq!(
        left.len(),
        1,
        "the all-dead pack went first, the partly dead one stays"
    );
    // Space is back: gc rewrites the pack, and only Y is left.
    std::fs::remove_file(mnt.join("filler")).unwrap();
    let g = json_of(repo, &["gc"]);
    assert_eq!(g["packs_rewritten"], 1, "{g}");
    assert_eq!(g["blocks_kept"], y.len() / BS, "{g}");
    assert_intact(repo, &[("c/b", &y)]);
    assert!(!left[0].exists());
    let f = json_of(repo, &["fsck"]);
    assert_eq!(f["garbage"]["unreferenced_blocks"], 0, "{f}");
}

#[test]
fn gc_out_of_space_keeps_a_pack_of_extra_copies_until_the_kept_copies_are_copied() {
    let Some(Setup { dir, mnt, repo, .. }) = &Setup::new() else {
        return;
    };
    // "a" = X + Y and "b" = Y, as above; then a pack holding copies of 16 of Y's blocks and
    // one of X's, as a put running beside another would leave. Once "a" is removed, the
    // big pack keeps Y (it is rewritten) and the small one holds only extra copies and dead
    // entries (it is removed); "d" is alone in an all-dead pack.
    let (x, y) = put_x_y_and_d(dir.path(), repo);
    let mut copies: Vec<&[u8]> = y.chunks(BS).take(16).collect();
    copies.push(&x[..BS]);
    assert!(copies.iter().all(|b| b[BS - 1] != 0), "no stripped block");
    let extra = crate::gc_packs::write_pack(repo, &copies);
    ok(repo, &["rm", "c/a"]);
    ok(repo, &["rm", "c/d"]);
    fill_leaving(mnt, 512 << 10);
    let out = arch(repo, &["gc"]);
    assert_no_space(&out, repo);
    assert_intact(repo, &[("c/b", &y)]);
    assert!(
        extra.exists(),
        "the extra copies stay while their kept copies are not yet copied"
    );
    assert_eq!(packs(repo).len(), 2, "only the all-dead pack went");
    std::fs::remove_file(mnt.join("filler")).unwrap();
    let g = json_of(repo, &["gc"]);
    assert_eq!(
        (g["packs_removed"].clone(), g["packs_rewritten"].clone()),
        (json!(2), json!(1)),
        "{g}"
    );
    assert!(!extra.exists());
    assert_intact(repo, &[("c/b", &y)]);
    assert_eq!(json_of(repo, &["du"])["garbage_bytes"], 0);
}

/// Puts a 4 MiB image as `images/img` and clones it (uncustomized) as `volume`; returns the
/// image's bytes.
fn put_image_and_clone(scratch: &Path, repo: &Path, volume: &str) -> Vec<u8> {
    let img = pseudo_random(4 << 20, 1);
    let img_path = scratch.join("img");
    std::fs::write(&img_path, &img).unwrap();
    ok(repo, &["put", img_path.to_str().unwrap(), "images/img"]);
    ok(repo, &["clone", "images/img", volume, "--no-customize"]);
    img
}

#[test]
fn a_packed_snapshot_on_a_full_filesystem_keeps_the_volume_and_succeeds_after() {
    let Some(Setup { dir, mnt, repo, .. }) = &Setup::new() else {
        return;
    };
    let img = put_image_and_clone(dir.path(), repo, "v");
    // 3 MiB of new private blocks (written as the volume's own files, not packed).
    let new = pseudo_random(3 << 20, 2);
    let src = dir.path().join("new");
    std::fs::write(&src, &new).unwrap();
    ok(
        repo,
        &[
            "volume",
            "write",
            "v",
            "--offset",
            "0",
            src.to_str().unwrap(),
        ],
    );
    let want = [&new[..], &img[3 << 20..]].concat();
    let packs_before = packs(repo);
    let volume_before = json_of(repo, &["volume", "info", "v"]);
    // The snapshot packs those 3 MiB with 1 MiB free: the disk fills mid-pack.
    fill_leaving(mnt, 1 << 20);
    let out = arch(repo, &["snapshot", "v", "s1"]);
    assert_no_space(&out, repo);
    assert!(!arch(repo, &["info", "snapshots/s1"]).status.success());
    assert_eq!(packs(repo), packs_before, "no pack published");
    assert_eq!(json_of(repo, &["volume", "info", "v"]), volume_before);
    assert!(ok(repo, &["volume", "read", "v", "--offset", "0"]) == want);
    assert_intact(repo, &[("images/img", &img)]);
    std::fs::remove_file(mnt.join("filler")).unwrap();
    ok(repo, &["snapshot", "v", "s1"]);
    assert!(ok(repo, &["get", "snapshots/s1"]) == want);
    assert!(ok(repo, &["volume", "read", "v", "--offset", "0"]) == want);
    assert_intact(repo, &[("images/img", &img), ("snapshots/s1", &want)]);
}

/// `arch snapshot` of a packed volume served by `arch serve`, taken by the server, on a full
/// filesystem: it fails with the ENOSPC error, the server goes on serving the same data, and
/// the snapshot succeeds once space is freed.
#[test]
fn a_served_packed_snapshot_on_a_full_filesystem_keeps_serving_and_succeeds_after() {
    let Some(Setup { dir, mnt, repo, .. }) = &Setup::new() else {
        return;
    };
    let img = put_image_and_clone(dir.path(), repo, "vm");
    let r = TestRepo {
        dir: tempfile::tempdir().unwrap(),
        root: repo.clone(),
        catalog: None,
        store: None,
    };
    let srv = Server::start(&r, &["vm"]);
    let mut c = RawClient::connect(&srv.socket(), "vm");
    let new = pseudo_random(3 << 20, 2);
    for (i, chunk) in new.chunks(1 << 20).enumerate() {
        let at = (i << 20) as u64;
        assert_eq!(c.request(1, at, chunk.len() as u32, chunk).0, 0);
    }
    assert_eq!(c.request(3, 0, 0, &[]).0, 0, "flush");
    let want = [&new[..], &img[3 << 20..]].concat();
    let packs_before = packs(repo);
    fill_leaving(mnt, 1 << 20);
    let out = arch(repo, &["snapshot", "vm", "s1"]);
    assert_no_space(&out, repo);
    assert!(!arch(repo, &["info", "snapshots/s1"]).status.success());
    assert_eq!(packs(repo), packs_before, "no pack published");
    let read = |c: &mut RawClient| {
        (0..4)
            .flat_map(|i| c.request(0, (i << 20) as u64, 1 << 20, &[]).1)
            .collect::<Vec<u8>>()
    };
    assert!(read(&mut c) == want, "served as before");
    std::fs::remove_file(mnt.join("filler")).unwrap();
    ok(repo, &["snapshot", "vm", "s1"]);
    assert!(read(&mut c) == want);
    drop(c);
    let (code, err) = srv.stop();
    assert_eq!(code, Some(0), "{err}");
    assert!(ok(repo, &["get", "snapshots/s1"]) == want);
    assert_intact(repo, &[("images/img", &img), ("snapshots/s1", &want)]);
}
