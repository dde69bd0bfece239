//! Interrupted clones and exports: a clone of an Image killed (SIGTERM or SIGKILL) at random
//! instants never leaves a volume that looks usable but was not customized; SIGTERM during
//! `get -o`/`volume export -o` leaves no temporary file; `-o` takes a 255-byte file name.

use crate::util::{Rng, TestRepo, pseudo_random, run_and_signal, stderr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A repository holding the GPT fixture registered as the Image "GPT"; returns it and the
/// fixture's rootfs directory (the image's original files).
fn image_repo() -> TestRepo {
    let r = TestRepo::new();
    let fx = r.dir.path().join("fx");
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/build.sh"))
        .arg(&fx)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let disk = fx.join("gpt-ext4.raw");
    r.ok(&["put", disk.to_str().unwrap(), "images/gpt.raw"]);
    r.ok(&["image", "register", "images/gpt.raw", "--name", "GPT"]);
    r
}

fn original(path: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/rootfs")
            .join(path),
    )
    .unwrap()
}

/// A file of the root filesystem (partition at 1 MiB) of a raw disk, via debugfs.
fn guest_file(disk: &Path, path: &str) -> Vec<u8> {
    let spec = format!("{}?offset=1048576", disk.display());
    let out = Command::new("debugfs")
        .args(["-R", &format!("cat {path}"), &spec])
        .output()
        .unwrap();
    assert!(out.status.success(), "debugfs: {}", stderr(&out));
    out.stdout
}

/// Asserts volume `vol` is fully customized: new hostname, new machine id, new host keys.
fn assert_customized(r: &TestRepo, vol: &str, hostname: &str, what: &str) {
    let raw = r.path("check.raw");
    r.ok(&[
        "volume",
        "export",
        vol,
        "-o",
        raw.to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(
        guest_file(&raw, "/etc/hostname"),
        format!("{hostname}\n").as_bytes(),
        "{what}"
    );
    let id = guest_file(&raw, "/etc/machine-id");
    assert!(!id.is_empty() && id != original("etc/machine-id"), "{what}");
    let key = guest_file(&raw, "/etc/ssh/ssh_host_ed25519_key.pub");
    assert!(
        !key.is_empty() && key != original("etc/ssh/ssh_host_ed25519_key.pub"),
        "{what}: the Image's host key is still there"
    );
}

/// Asserts that every command using the content of `vol` refuses it as unfinished.
fn assert_refused(r: &TestRepo, vol: &str, what: &str) {
    let out = r.path("refused.raw");
    let input = r.file("in.bin", b"data");
    for args in [
        vec!["volume", "read", vol, "--offset", "0", "--length", "512"],
        vec!["volume", "export", vol, "-o", out.to_str().unwrap()],
        vec!["snapshot", vol, "snap"],
        vec![
            "volume",
            "write",
            vol,
            "--offset",
            "0",
            input.to_str().unwrap(),
        ],
    ] {
        let err = r.fails(2, &args);
        assert!(
            err.contains("left unfinished") && err.contains("arch customize"),
            "{what}: {args:?}: {err}"
        );
    }
    assert!(!out.exists(), "{what}");
}

/// The entries of the repository's `tmp/`, sorted.
fn tmp_entries(r: &TestRepo) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(r.root.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn clone_and_customize_killed_at_any_instant_never_leaves_an_uncustomized_usable_volume() {
    let r = image_repo();
    let clone = ["clone", "GPT", "vm", "--hostname", "web1"];
    let t = Instant::now();
    r.ok(&clone);
    let full = t.elapsed().as_micros() as u64 + 1;
    assert_customized(&r, "vm", "web1", "an uninterrupted clone");
    r.ok(&["volume", "rm", "vm"]);

    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut absent, mut unfinished, mut finished) = (0, 0, 0);
    let trials = crate::util::trials(32);
    for trial in 0..trials {
        let signal = if trial % 2 == 0 {
            libc::SIGTERM
        } else {
            libc::SIGKILL
        };
        // Up to a quarter past the calibrated time, so some clones finish.
        let delay = Duration::from_micros(rng.next() % (full + full / 4));
        let tmp_before = tmp_entries(&r);
        let status = run_and_signal(&r, &clone, delay, signal);
        let what = format!("trial {trial} (signal {signal} after {delay:?}): {status:?}");
        if signal == libc::SIGTERM {
            // Stopped at a safe point (143), finished (0), or killed before the handler was
            // installed (signal 15, nothing done yet).
            use std::os::unix::process::ExitStatusExt;
            assert!(
                matches!(status.code(), Some(0) | Some(143)) || status.signal() == Some(15),
                "{what}"
            );
            // Nothing new in tmp/ (earlier kill -9 trials may have left work files).
            assert_eq!(tmp_entries(&r), tmp_before, "{what}: tmp/");
        }
        let info = r.run(&["--json", "volume", "info", "vm"]);
        if !info.status.success() {
            assert!(stderr(&info).contains("not found"), "{what}");
            absent += 1;
            continue;
        }
        let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
        match info["status"].as_str().unwrap() {
            "available" => {
                assert_customized(&r, "vm", "web1", &what);
                finished += 1;
            }
            "creating" => {
                assert_eq!(signal, libc::SIGKILL, "{what}: SIGTERM cleans up");
                assert_eq!(info["creation"]["creator_running"], false, "{what}");
                assert_refused(&r, "vm", &what);
                unfinished += 1;
                if unfinished % 3 == 0 {
                    // fsck names it; gc removes it (and its private blocks).
                    let fsck = r.json(&["fsck"]);
                    assert_eq!(fsck["garbage"]["unfinished_volumes"], 1, "{what}");
                    let gc = r.json(&["gc"]);
                    assert_eq!(gc["unfinished_volumes_removed"], serde_json::json!(["vm"]));
                    let info = r.run(&["volume", "info", "vm"]);
                    assert!(stderr(&info).contains("not found"), "{what}: gc removed it");
                    continue;
                } else if unfinished % 3 == 1 {
                    // Finish it: the tasks run again from the Image's content.
                    r.ok(&["customize", "vm", "--hostname", "web2"]);
                    assert_customized(&r, "vm", "web2", &what);
                } else {
                    // A new clone into the name removes the abandoned one first.
                    let out = r.run(&clone);
                    assert!(out.status.success(), "{what}: {}", stderr(&out));
                    assert!(
                        stderr(&out).contains("removed the unfinished volume"),
                        "{what}"
                    );
                    assert_customized(&r, "vm", "web1", &what);
                }
            }
            s => panic!("{what}: unexpected status {s}"),
        }
        r.ok(&["volume", "rm", "vm"]);
    }
    eprintln!(
        "{trials} interrupted clones: {absent} absent, {unfinished} unfinished (refused), \
         {finished} finished"
    );
    assert!(absent + unfinished > 0, "no clone was interrupted");
    // kill -9 leaves work files in tmp/: gc removes them, then nothing is damaged.
    r.ok(&["gc"]);
    assert_eq!(tmp_entries(&r), Vec::<PathBuf>::new());
    assert_eq!(r.json(&["fsck"])["problems"], serde_json::json!([]));
}

#[test]
fn sigterm_during_get_and_export_leaves_no_temporary_file() {
    let r = TestRepo::new();
    let data = r.file("data", &pseudo_random(crate::util::scaled_len(48 << 20), 5));
    r.ok(&["put", data.to_str().unwrap(), "c/big"]);
    r.ok(&["clone", "c/big", "v"]);
    let out_dir = r.path("out");
    std::fs::create_dir(&out_dir).unwrap();
    let target = out_dir.join("target.raw");
    let target_arg = target.to_str().unwrap().to_string();
    let commands: [Vec<&str>; 3] = [
        vec!["get", "c/big", "-o", &target_arg],
        vec!["volume", "export", "v", "-o", &target_arg],
        vec![
            "volume",
            "export",
            "v",
            "-o",
            &target_arg,
            "--format",
            "qcow2",
        ],
    ];
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for args in &commands {
        let t = Instant::now();
        r.ok(args);
        let full = t.elapsed().as_micros() as u64 + 1;
        std::fs::remove_file(&target).unwrap();
        let mut interrupted = 0;
        for trial in 0..8 {
            let delay = Duration::from_micros(full / 10 + rng.next() % (full * 8 / 10));
            let status = run_and_signal(&r, args, delay, libc::SIGTERM);
            let what = format!("{args:?} trial {trial}: {status:?}");
            let left: Vec<_> = std::fs::read_dir(&out_dir)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            match status.code() {
                Some(143) => {
                    interrupted += 1;
                    assert!(left.is_empty(), "{what}: left {left:?}");
                }
                Some(0) => {
                    assert_eq!(left, [std::ffi::OsString::from("target.raw")], "{what}");
                    std::fs::remove_file(&target).unwrap();
                }
                _ => panic!("{what}"),
            }
            assert_eq!(tmp_entries(&r), Vec::<PathBuf>::new(), "{what}: tmp/");
        }
        assert!(interrupted > 0, "{args:?}: no run was interrupted");
    }
}

#[test]
fn output_files_with_255_byte_names_work() {
    let r = TestRepo::new();
    let data = pseudo_random(300_000, 9);
    let src = r.file("src", &data);
    r.ok(&["put", src.to_str().unwrap(), "c/x"]);
    r.ok(&["clone", "c/x", "v"]);
    let name = "n".repeat(255);
    let target = r.path(&name);
    r.ok(&["get", "c/x", "-o", target.to_str().unwrap()]);
    assert_eq!(std::fs::read(&target).unwrap(), data);
    for format in ["raw", "qcow2"] {
        r.ok(&[
            "volume",
            "export",
            "v",
            "-o",
            target.to_str().unwrap(),
            "--force",
            "--format",
            format,
        ]);
    }
    r.ok(&[
        "volume",
        "read",
        "v",
        "--offset",
        "0",
        "-o",
        target.to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(std::fs::read(&target).unwrap(), data);
    let names: Vec<_> = std::fs::read_dir(r.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(names.is_empty(), "temporaries left: {names:?}");
}

#[test]
fn sigterm_stops_a_put_and_a_volume_write_waiting_on_stdin_and_commits_nothing() {
    use std::os::unix::process::ExitStatusExt;
    let r = TestRepo::new();
    let base = r.file("base", &pseudo_random(100_000, 3));
    r.ok(&["put", base.to_str().unwrap(), "c/base"]);
    r.ok(&["clone", "c/base", "v"]);
    let before = r.ok(&["volume", "read", "v", "--offset", "0"]);
    for args in [
        vec!["put", "-", "c/x"],
        vec!["volume", "write", "v", "--offset", "0", "-"],
    ] {
        let mut child = r
            .cmd()
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        use std::io::Write;
        stdin.write_all(b"some bytes").unwrap();
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: kill(2) on our own child, which is not reaped yet.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        // Only now does the input end: a command that ignored the signal would commit it.
        std::thread::sleep(Duration::from_millis(100));
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.code() == Some(143) || out.status.signal() == Some(libc::SIGTERM),
            "{args:?}: {:?} {}",
            out.status,
            stderr(&out)
        );
    }
    assert!(r.run(&["info", "c/x"]).status.code() == Some(2));
    assert_eq!(r.ok(&["volume", "read", "v", "--offset", "0"]), before);
    assert_eq!(tmp_entries(&r), Vec::<PathBuf>::new());
}

/// The FUSE mount points under `dir` (from /proc/self/mountinfo; spaces in paths are `\040`).
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// Pids of the processes whose command line names `path` (fusermount3 watching a mount).
fn processes_naming(path: &Path) -> Vec<i32> {
    let want = path.to_str().unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(want))
        })
        .collect()
}

#[test]
fn a_customization_killed_with_its_fusermount3_leaves_a_dead_mount_that_fsck_counts_and_gc_removes()
{
    if !Path::new("/dev/fuse").exists() || crate::util::remote_store().is_some() {
        eprintln!("skipped: no /dev/fuse, or remote mode");
        return;
    }
    let r = image_repo();
    let tmp = r.root.join("tmp").canonicalize().unwrap();
    let mut child = r
        .cmd()
        .args(["clone", "GPT", "vm", "--hostname", "web1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the disk to be mounted, then kill arch and the fusermount3 that would unmount
    // it: the mount stays, its server gone (every access: "transport endpoint is not
    // connected").
    let start = Instant::now();
    let mount = loop {
        if let Some(m) = mounts_under(&tmp).into_iter().next() {
            break Some(m);
        }
        if child.try_wait().unwrap().is_some() || start.elapsed() > Duration::from_secs(60) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let Some(mount) = mount else {
        eprintln!("skipped: the clone mounted no FUSE disk (customization without FUSE here)");
        let _ = child.wait();
        return;
    };
    for pid in processes_naming(&mount) {
        // SAFETY: kill(2) of the fusermount3 watching our test's mount.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    // SAFETY: kill(2) on our own child, which is not reaped yet.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    assert_eq!(
        mounts_under(&tmp),
        vec![mount.clone()],
        "the mount outlived arch"
    );
    // Every command still works; fsck counts the leftover among the temporary entries.
    let fsck = r.json(&["fsck"]);
    assert!(
        fsck["garbage"]["temp_entries"].as_u64().unwrap() >= 1,
        "{fsck}"
    );
    r.ok(&["du"]);
    r.ok(&["volume", "ls"]);
    r.ok(&["fsck", "--repair"]);
    // gc unmounts it and removes the work files.
    r.ok(&["gc"]);
    assert_eq!(mounts_under(&tmp), Vec::<PathBuf>::new());
    assert_eq!(tmp_entries(&r), Vec::<PathBuf>::new());
    assert_eq!(r.json(&["fsck"])["problems"], serde_json::json!([]));
}
