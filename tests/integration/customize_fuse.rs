//! Customization through the FUSE file against the raw-copy fallback: the same disk comes out
//! (checked with e2fsck, sgdisk and debugfs on the exports), FUSE stores no more blocks, no
//! mount or temporary file is left, and the switch and a missing fusermount3 behave.

use crate::customize::tool;
use crate::util::{TestRepo, stderr};
use std::path::Path;
use std::process::Output;

/// A repository holding the GPT ext4 fixture as the Image `GPT`.
fn gpt_repo() -> TestRepo {
    let r = TestRepo::new();
    let fx = r.dir.path().join("fx");
    tool(
        "bash",
        &[
            concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/build.sh"),
            fx.to_str().unwrap(),
        ],
    );
    r.ok(&[
        "put",
        fx.join("gpt-ext4.raw").to_str().unwrap(),
        "images/gpt",
    ]);
    r.ok(&["image", "register", "images/gpt", "--name", "GPT"]);
    r
}

fn clone(r: &TestRepo, vol: &str, env: &[(&str, &str)]) -> Output {
    let mut c = r.cmd();
    c.args(["clone", "GPT", vol, "--size", "1G", "--hostname", "web1"]);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// FUSE mounts of this process's namespace under `dir`.
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.canonicalize().unwrap();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .filter(|p| Path::new(p).starts_with(&dir))
        .collect()
}

/// Checks the exported disk of `vol`: a clean filesystem grown to the 1 GiB disk, a valid GPT
/// and the hostname. Returns the filesystem's block count.
fn check_export(r: &TestRepo, vol: &str) -> String {
    let raw = r.dir.path().join(format!("{vol}.raw"));
    r.ok(&["volume", "export", vol, "-o", raw.to_str().unwrap()]);
    let spec = format!("{}?offset=1048576", raw.display());
    tool("e2fsck", &["-fn", &spec]);
    assert!(tool("sgdisk", &["-v", raw.to_str().unwrap()]).contains("No problems found"));
    assert_eq!(
        tool("debugfs", &["-R", "cat /etc/hostname", &spec]),
        "web1\n"
    );
    let sb = tool("dumpe2fs", &["-h", &spec]);
    sb.lines()
        .find(|l| l.starts_with("Block count:"))
        .unwrap()
        .to_string()
}

#[test]
fn fuse_and_the_copy_customize_alike_and_fuse_stores_no_more_blocks() {
    if !Path::new("/dev/fuse").exists() {
        eprintln!("no /dev/fuse here: only the fallback can be tested");
        return;
    }
    let r = gpt_repo();
    let out = clone(&r, "viafuse", &[("ARCH_CUSTOMIZE_FUSE", "1")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = clone(&r, "viacopy", &[("ARCH_CUSTOMIZE_FUSE", "0")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(mounts_under(r.dir.path()).is_empty(), "a mount was left");
    let tmp: Vec<_> = std::fs::read_dir(r.root.join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "tmp/ keeps {tmp:?}");
    assert_eq!(check_export(&r, "viafuse"), check_export(&r, "viacopy"));
    let private = |v: &str| {
        r.json(&["volume", "info", v])["private_blocks"]
            .as_u64()
            .unwrap()
    };
    let (fuse, copy) = (private("viafuse"), private("viacopy"));
    assert!(fuse > 0 && fuse <= copy, "fuse {fuse} vs copy {copy}");
    let f = r.json(&["fsck", "--read-data"]);
    assert_eq!(f["problems"], serde_json::json!([]));
}

#[test]
fn without_fusermount3_the_copy_is_used_unless_fuse_is_required() {
    let r = gpt_repo();
    let missing = [("ARCH_FUSERMOUNT", "/nonexistent/fusermount3")];
    let out = clone(&r, "vm", &missing);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("apt install fuse3"),
        "{}",
        stderr(&out)
    );
    check_export(&r, "vm");

    let out = clone(&r, "vm2", &[missing[0], ("ARCH_CUSTOMIZE_FUSE", "1")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("ARCH_CUSTOMIZE_FUSE=1"),
        "{}",
        stderr(&out)
    );
    assert!(r.run(&["volume", "info", "vm2"]).status.code() != Some(0));
    // A switch it does not understand is refused before anything is written.
    let before = r.snapshot();
    let out = clone(&r, "vm3", &[("ARCH_CUSTOMIZE_FUSE", "maybe")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("ARCH_CUSTOMIZE_FUSE=maybe"),
        "{}",
        stderr(&out)
    );
    assert_eq!(r.snapshot(), before);
}
