//! A real full filesystem: a small tmpfs (mounted when the tests run as root, as in CI on
//! this machine; skipped with a note otherwise). A put that runs out of space fails clearly
//! and leaves the repository consistent, with the earlier objects intact; a volume write that
//! runs out of space names exactly the blocks it changed.

use crate::util::{bin, pseudo_random, stderr};
use std::path::Path;
use std::process::Command;

/// A mounted tmpfs, unmounted when dropped.
pub(crate) struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

pub(crate) fn arch(repo: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .arg("-R")
        .arg(repo)
        .args(args)
        .output()
        .unwrap()
}

/// A tmpfs of `size` at `mnt`, or None (with a note) when this process cannot mount one.
pub(crate) fn small_tmpfs(mnt: &Path, size: &str) -> Option<Mount> {
    std::fs::create_dir(mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(mnt)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !mounted {
        eprintln!(
            "skipped: cannot mount a tmpfs here (not root); the fault-injection unit tests cover ENOSPC"
        );
        return None;
    }
    Some(Mount(mnt.to_path_buf()))
}

/// Fills the filesystem at `mnt` with `mnt/filler` until `leave` bytes are free; removing
/// the filler gives the space back.
pub(crate) fn fill_leaving(mnt: &Path, leave: usize) {
    let free = {
        // SAFETY: statvfs with a valid NUL-terminated path and an out-struct it fills.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        let c = std::ffi::CString::new(mnt.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
        (st.f_bavail * st.f_frsize) as usize
    };
    assert!(free > leave, "{free} bytes free, {leave} to leave");
    std::fs::write(mnt.join("filler"), vec![1u8; free - leave]).unwrap();
}

#[test]
fn put_on_a_full_filesystem_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    let Some(_guard) = small_tmpfs(&mnt, "6m") else {
        return;
    };
    let repo = mnt.join("repo");
    let out = Command::new(bin())
        .args(["init", "--block-size", "64K"])
        .arg(&repo)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let small = pseudo_random(1 << 20, 1);
    let small_path = dir.path().join("small.bin");
    std::fs::write(&small_path, &small).unwrap();
    assert!(
        arch(&repo, &["put", small_path.to_str().unwrap(), "c/small"])
            .status
            .success()
    );
    let big_path = dir.path().join("big.bin");
    std::fs::write(&big_path, pseudo_random(8 << 20, 2)).unwrap();
    let out = arch(&repo, &["put", big_path.to_str().unwrap(), "c/big"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no space left"), "{}", stderr(&out));
    // Nothing half-made is visible and nothing is damaged.
    assert!(!arch(&repo, &["info", "c/big"]).status.success());
    let fsck = arch(&repo, &["--json", "fsck"]);
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    let report: serde_json::Value = serde_json::from_slice(&fsck.stdout).unwrap();
    assert_eq!(report["garbage"]["temp_entries"], 0, "staging left behind");
    assert_eq!(arch(&repo, &["get", "c/small"]).stdout, small);
    // Space is back: the same repository takes new data.
    std::fs::write(&big_path, pseudo_random(2 << 20, 3)).unwrap();
    assert!(
        arch(&repo, &["put", big_path.to_str().unwrap(), "c/big"])
            .status
            .success()
    );
}

/// A volume write that runs out of space midway: the error lists the blocks that already show
/// the new data, and reading the volume back shows exactly those blocks changed.
#[test]
fn volume_write_on_a_full_filesystem_lists_the_changed_blocks() {
    const BS: usize = 64 << 10;
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    let Some(_guard) = small_tmpfs(&mnt, "8m") else {
        return;
    };
    let repo = mnt.join("repo");
    let out = Command::new(bin())
        .args(["init", "--block-size", "64K"])
        .arg(&repo)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let old = pseudo_random(16 * BS, 4);
    let img = dir.path().join("img");
    std::fs::write(&img, &old).unwrap();
    assert!(
        arch(&repo, &["put", img.to_str().unwrap(), "images/img"])
            .status
            .success()
    );
    assert!(arch(&repo, &["clone", "images/img", "v"]).status.success());
    // Leave room for about 5 of the 16 new private blocks.
    fill_leaving(&mnt, 5 * BS + BS / 2);
    let new = pseudo_random(16 * BS, 5);
    let src = dir.path().join("new");
    std::fs::write(&src, &new).unwrap();
    let out = arch(
        &repo,
        &[
            "volume",
            "write",
            "v",
            "--offset",
            "0",
            src.to_str().unwrap(),
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("no space left") && !err.contains("nothing was committed"),
        "{err}"
    );
    // "N blocks of 65536 bytes already show the new data: blocks 0-K (bytes 0-B)"
    let listed = err
        .split("blocks 0-")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|k| k.parse::<usize>().ok())
        .unwrap_or_else(|| panic!("no changed blocks listed: {err}"));
    assert!(
        err.contains(&format!("(bytes 0-{})", (listed + 1) * BS - 1))
            && err.contains("every other byte of 0-1048575 keeps its old content"),
        "{err}"
    );
    let now = arch(&repo, &["volume", "read", "v", "--offset", "0"]).stdout;
    for i in 0..16 {
        let want = if i <= listed { &new } else { &old };
        assert!(
            now[i * BS..(i + 1) * BS] == want[i * BS..(i + 1) * BS],
            "block {i}, listed 0-{listed}"
        );
    }
}
