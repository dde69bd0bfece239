//! Two hosts (two DIRs) joined to one repository whose blocks live in S3 (Ceph RGW) and whose
//! catalog lives in PostgreSQL: what one does the other sees, and gc on one while the other
//! puts, clones, writes and snapshots in a loop loses nothing referenced.
//!
//! Needs both `ARCH_TEST_STORE=s3://BUCKET` (+ AWS_*) and
//! `ARCH_TEST_CATALOG=postgres://USER@HOST:PORT/DB` (+ PGPASSWORD); `.ci/remote` starts both
//! services and sets them. When either is unset the tests say so and pass without running.

use crate::util::{bin, pseudo_random, remote_catalog, remote_store, stderr, unique_name};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `--store` and `--catalog` URLs of a fresh repository, or None (the test is not run).
fn urls(test: &str) -> Option<(String, String)> {
    match (remote_store(), remote_catalog()) {
        (Some(store), Some(catalog)) => {
            let name = unique_name();
            Some((
                format!("{}/h-{name}", store.trim_end_matches('/')),
                format!("{catalog}?schema=h_{name}"),
            ))
        }
        _ => {
            eprintln!(
                "remote_hosts::{test} not run: set ARCH_TEST_STORE and ARCH_TEST_CATALOG (bash .ci/remote does)"
            );
            None
        }
    }
}

/// One host: a DIR joined to the repository.
#[derive(Clone)]
struct Host {
    root: PathBuf,
}

impl Host {
    /// Joins (or creates) the repository at (`store`, `catalog`) from `parent/name`.
    fn join(parent: &Path, name: &str, store: &str, catalog: &str) -> Host {
        let root = parent.join(name);
        let out = Command::new(bin())
            .args(["init", "--store", store, "--catalog", catalog])
            .arg(&root)
            .output()
            .unwrap();
        assert!(out.status.success(), "init {name}: {}", stderr(&out));
        Host { root }
    }

    fn ok<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Vec<u8> {
        let out = Command::new(bin())
            .arg("-R")
            .arg(&self.root)
            .args(args)
            .env_remove("ARCH_REPO")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let shown: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy()).collect();
        assert!(out.status.success(), "arch {shown:?}: {}", stderr(&out));
        out.stdout
    }

    fn json<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> serde_json::Value {
        let mut all: Vec<&std::ffi::OsStr> = vec!["--json".as_ref()];
        all.extend(args.iter().map(|a| a.as_ref()));
        serde_json::from_slice(&self.ok(&all)).unwrap()
    }

    /// Writes a scratch file beside the DIR and returns its path.
    fn file(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.root.with_extension(format!("file-{name}"));
        std::fs::write(&p, data).unwrap();
        p
    }
}

#[test]
fn what_one_host_does_the_other_sees() {
    let Some((store, catalog)) = urls("what_one_host_does_the_other_sees") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let a = Host::join(tmp.path(), "a", &store, &catalog);
    let b = Host::join(tmp.path(), "b", &store, &catalog);
    let data = pseudo_random(9 * 1024 * 1024 + 123, 7);
    let file = a.file("disk.raw", &data);
    a.ok(&["put".as_ref(), file.as_os_str(), "images/disk.raw".as_ref()]);
    // B reads A's object, clones it, writes into the clone; A reads the write back.
    let got = b.ok(&["get", "images/disk.raw", "-o", "-"]);
    assert!(got == data, "B read other bytes than A put");
    b.ok(&["clone", "images/disk.raw", "vol1"]);
    let patch = b.file("patch", b"written on host b");
    b.ok(&[
        "volume".as_ref(),
        "write".as_ref(),
        "vol1".as_ref(),
        patch.as_os_str(),
        "--offset".as_ref(),
        "5000000".as_ref(),
    ]);
    let seen = a.ok(&[
        "volume", "read", "vol1", "--offset", "5000000", "--length", "17", "-o", "-",
    ]);
    assert_eq!(seen, b"written on host b");
    // A snapshots B's volume; B reads the snapshot whole.
    a.ok(&["snapshot", "vol1", "images/snap1"]);
    let snap = b.ok(&["get", "images/snap1", "-o", "-"]);
    let mut expect = data.clone();
    expect[5_000_000..5_000_017].copy_from_slice(b"written on host b");
    assert!(snap == expect, "the snapshot does not hold B's write");
    // The put of data the store already holds, from the other host, adds no block.
    let file_b = b.file("same.raw", &data);
    let again = b.json(&["put".as_ref(), file_b.as_os_str(), "images/copy".as_ref()]);
    assert_eq!(again["blocks_written"], 0, "{again}");
    for h in [&a, &b] {
        h.ok(&["fsck", "--read-data"]);
    }
}

#[test]
fn gc_on_one_host_while_the_other_works_loses_nothing() {
    let Some((store, catalog)) = urls("gc_on_one_host_while_the_other_works_loses_nothing") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let a = Host::join(tmp.path(), "a", &store, &catalog);
    let b = Host::join(tmp.path(), "b", &store, &catalog);
    let base = pseudo_random(6 * 1024 * 1024, 11);
    let f = b.file("base.raw", &base);
    b.ok(&["put".as_ref(), f.as_os_str(), "c/base".as_ref()]);
    // Garbage for gc to find: an object put, then removed.
    let junk = b.file("junk.raw", &pseudo_random(5 * 1024 * 1024, 12));
    b.ok(&["put".as_ref(), junk.as_os_str(), "c/junk".as_ref()]);
    b.ok(&["rm", "c/junk"]);

    let worker = {
        let b = b.clone();
        std::thread::spawn(move || {
            let mut made = Vec::new();
            for i in 0..4 {
                let data = pseudo_random(4 * 1024 * 1024 + 1000 * i, 100 + i as u64);
                let f = b.file(&format!("p{i}"), &data);
                let name = format!("c/p{i}");
                b.ok(&["put".as_ref(), f.as_os_str(), name.as_ref()]);
                let vol = format!("v{i}");
                b.ok(&["clone", "c/base", &vol]);
                let w = b.file(&format!("w{i}"), &data[..4096]);
                b.ok(&[
                    "volume".as_ref(),
                    "write".as_ref(),
                    vol.as_ref(),
                    w.as_os_str(),
                    "--offset".as_ref(),
                    "8192".as_ref(),
                ]);
                let snap = format!("c/s{i}");
                b.ok(&["snapshot", &vol, &snap]);
                made.push((name, data, snap));
            }
            made
        })
    };
    for _ in 0..3 {
        a.ok(&["gc"]);
    }
    let made = worker.join().unwrap();
    a.ok(&["gc"]);
    for (name, data, snap) in made {
        let got = a.ok(&["get", &name, "-o", "-"]);
        assert!(got == data, "{name} changed after gc");
        let s = a.ok(&["get", &snap, "-o", "-"]);
        assert_eq!(
            &s[8192..8192 + 4096],
            &data[..4096],
            "{snap} lost its write"
        );
        assert_eq!(&s[..8192], &base[..8192], "{snap} lost its base");
    }
    assert!(a.ok(&["get", "c/base", "-o", "-"]) == base);
    a.ok(&["fsck", "--read-data"]);
}
