//! A real full filesystem: a small tmpfs (mounted when the tests run as root, as in CI on
//! this machine; skipped with a note otherwise). A put that runs out of space fails clearly
//! and leaves the repository consistent, with the earlier objects intact.

use crate::util::{bin, pseudo_random, stderr};
use std::path::Path;
use std::process::Command;

struct Mount<'a>(&'a Path);

impl Drop for Mount<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

fn arch(repo: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .arg("-R")
        .arg(repo)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn put_on_a_full_filesystem_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=6m", "tmpfs"])
        .arg(&mnt)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !mounted {
        eprintln!(
            "skipped: cannot mount a tmpfs here (not root); the fault-injection unit tests cover ENOSPC"
        );
        return;
    }
    let _guard = Mount(&mnt);
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
