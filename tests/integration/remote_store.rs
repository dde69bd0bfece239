//! Blocks and maps in an S3 store (`arch init DIR --store s3://...`), against a real Ceph
//! RGW: create and join from two DIRs, dedup across them, racing puts, damage found by
//! fsck, gc, and radosgw stopped in the middle of a put.
//!
//! Needs `ARCH_TEST_STORE=s3://BUCKET` (an existing bucket) and the AWS_* variables of the
//! service (`ceph-s3.sh start DIR` writes them to DIR/env). When ARCH_TEST_STORE is unset the
//! tests print how to start the service and pass without running (so a plain `cargo test`
//! works without Ceph); when it is set and the store cannot be reached they fail.
//! Each test uses its own prefix `t-<uuid>` in the bucket.

use crate::util::{bin, pseudo_random, stderr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const HOW: &str = "set ARCH_TEST_STORE=s3://BUCKET and the AWS_* variables to run it: \
    S3_PORT=7481 bash ../shared/services/ceph-s3.sh start /tmp/s3 && set -a && . /tmp/s3/env && set +a \
    && aws --endpoint-url $AWS_ENDPOINT_URL s3 mb s3://arch-test && export ARCH_TEST_STORE=s3://arch-test";

/// A fresh `s3://BUCKET/t-<uuid>` under ARCH_TEST_STORE, or None (the test is not run).
pub(crate) fn store_url(test: &str) -> Option<String> {
    match std::env::var("ARCH_TEST_STORE") {
        Ok(base) if !base.is_empty() => {
            Some(format!("{}/t-{}", base.trim_end_matches('/'), uuid_like()))
        }
        _ => {
            eprintln!("remote_store::{test} not run: {HOW}");
            None
        }
    }
}

fn uuid_like() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:x}", t, std::process::id())
}

/// One DIR joined to a store.
pub(crate) struct Dir {
    pub(crate) root: PathBuf,
    /// Extra environment (e.g. another AWS_ENDPOINT_URL).
    pub(crate) env: Vec<(String, String)>,
}

impl Dir {
    pub(crate) fn cmd(&self) -> Command {
        let mut c = Command::new(bin());
        c.arg("-R").arg(&self.root).env_remove("ARCH_REPO");
        c.stdin(Stdio::null());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    pub(crate) fn ok(&self, args: &[&str]) -> Vec<u8> {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "arch {args:?} failed: {}",
            stderr(&out)
        );
        out.stdout
    }

    pub(crate) fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend(args);
        serde_json::from_slice(&self.ok(&all)).unwrap()
    }

    /// `--json` output and the store's request counters (ARCH_STORE_STATS=1).
    fn json_stats(&self, args: &[&str]) -> (serde_json::Value, serde_json::Value) {
        let mut all = vec!["--json"];
        all.extend(args);
        let out = self
            .cmd()
            .args(&all)
            .env("ARCH_STORE_STATS", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "arch {args:?} failed: {}",
            stderr(&out)
        );
        (serde_json::from_slice(&out.stdout).unwrap(), stats(&out))
    }
}

/// The counters line `arch-store-stats {...}` of a run with ARCH_STORE_STATS=1.
fn stats(out: &Output) -> serde_json::Value {
    let err = stderr(out);
    let line = err
        .lines()
        .find_map(|l| l.strip_prefix("arch-store-stats "))
        .unwrap_or_else(|| panic!("no stats line in: {err}"));
    serde_json::from_str(line).unwrap()
}

pub(crate) fn init(dir: &Path, url: &str, bs: &str) -> Output {
    Command::new(bin())
        .args(["--json", "init", "--block-size", bs, "--store", url])
        .arg(dir)
        .output()
        .unwrap()
}

pub(crate) fn joined(dir: &Path, url: &str) -> Dir {
    let out = init(dir, url, "4K");
    assert!(
        out.status.success(),
        "init --store failed: {}",
        stderr(&out)
    );
    Dir {
        root: dir.to_path_buf(),
        env: vec![],
    }
}

#[test]
fn init_creates_then_joins_and_keeps_no_data_in_the_directory() {
    let Some(url) = store_url("init_creates_then_joins_and_keeps_no_data_in_the_directory") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let first = init(&a, &url, "4K");
    assert!(first.status.success(), "{}", stderr(&first));
    let doc: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(
        (doc["store"].as_str(), doc["created"].as_bool()),
        (Some(url.as_str()), Some(true))
    );
    // The second host joins; a different block size is refused and leaves nothing behind.
    let c = tmp.path().join("c");
    let wrong = init(&c, &url, "64K");
    assert_eq!(wrong.status.code(), Some(2));
    assert!(
        stderr(&wrong).contains("--block-size 4096"),
        "{}",
        stderr(&wrong)
    );
    assert!(!c.join("arch.toml").exists());
    let second = init(&b, &url, "4K");
    assert!(second.status.success(), "{}", stderr(&second));
    let doc: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(doc["created"], false);
    // DIR: arch.toml naming the store (no credentials), the catalog, scratch; no blocks/maps.
    let toml = std::fs::read_to_string(b.join("arch.toml")).unwrap();
    assert!(toml.contains(&format!("store = \"{url}\"")), "{toml}");
    assert!(!toml.contains(&std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or("-".into())));
    assert!(!b.join("blocks").exists() && !b.join("maps").exists());
    let dir = Dir {
        root: b,
        env: vec![],
    };
    let info = dir.json(&["info"]);
    assert_eq!(info["data"]["kind"], "s3");
    assert_eq!(info["data"]["location"], url.as_str());
    assert!(info["data"]["endpoint"].is_string(), "{info}");
    let du = dir.json(&["du"]);
    assert_eq!(du["data"]["location"], url.as_str());
    // Credentials in the URL are refused before anything is created.
    let d = tmp.path().join("d");
    let bad = init(&d, "s3://key:secret@bucket/x", "4K");
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("AWS_ACCESS_KEY_ID"),
        "{}",
        stderr(&bad)
    );
    assert!(!d.exists() || !d.join("arch.toml").exists());
}

#[test]
fn a_missing_bucket_is_a_clear_error_with_the_command_to_create_it() {
    let Some(_) = store_url("a_missing_bucket_is_a_clear_error_with_the_command_to_create_it")
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = init(
        &tmp.path().join("a"),
        &format!("s3://no-such-bucket-{}", uuid_like()),
        "4K",
    );
    assert_eq!(out.status.code(), Some(2));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["kind"], "remote", "{doc}");
    let msg = doc["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("does not exist") && msg.contains("s3 mb s3://no-such-bucket-"),
        "{msg}"
    );
    assert!(!tmp.path().join("a/arch.toml").exists());
}

#[test]
fn a_put_of_content_the_store_holds_sends_no_block_data_and_reads_back_on_the_other_dir() {
    let Some(url) = store_url("a_put_of_content_the_store_holds_sends_no_block_data") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let a = joined(&tmp.path().join("a"), &url);
    let b = joined(&tmp.path().join("b"), &url);
    let data = pseudo_random(20 * 4096 + 100, 7);
    let file = tmp.path().join("image.raw");
    std::fs::write(&file, &data).unwrap();
    let f = file.to_str().unwrap();
    let (put, s) = a.json_stats(&["put", f, "images/one.raw"]);
    assert_eq!(put["blocks_written"], 21);
    // 21 blocks and one map, each one create-only PUT.
    assert_eq!(s["puts"], 22, "{s}");
    // The other DIR (another host) puts the same image: only HEADs, no block data.
    let (put, s) = b.json_stats(&["put", f, "images/same.raw"]);
    assert_eq!(put["blocks_written"], 0, "{put}");
    assert_eq!(
        (s["puts"].as_u64(), s["put_bytes"].as_u64()),
        (Some(0), Some(0)),
        "{s}"
    );
    // ...and reads it back from the blocks the first one stored; clone it there too.
    assert_eq!(b.ok(&["get", "images/same.raw"]), data);
    b.ok(&["clone", "images/same.raw", "vol1"]);
    assert_eq!(b.ok(&["volume", "read", "vol1", "--offset", "0"]), data);
    let fsck = b.json(&["fsck", "--read-data"]);
    assert_eq!(fsck["problems"], serde_json::json!([]), "{fsck}");
    assert_eq!(fsck["blocks_read"], 21);
}

#[test]
fn concurrent_puts_of_the_same_content_from_two_dirs_both_succeed() {
    let Some(url) = store_url("concurrent_puts_of_the_same_content_from_two_dirs_both_succeed")
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dirs = [
        joined(&tmp.path().join("a"), &url),
        joined(&tmp.path().join("b"), &url),
    ];
    let data = pseudo_random(64 * 4096, 11);
    let file = tmp.path().join("same.raw");
    std::fs::write(&file, &data).unwrap();
    for round in 0..3 {
        let name = format!("c/r{round}");
        let children: Vec<_> = dirs
            .iter()
            .map(|d| {
                d.cmd()
                    .args(["put", file.to_str().unwrap(), &name])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "racing put failed: {}", stderr(&out));
        }
        for d in &dirs {
            assert_eq!(d.ok(&["get", &name]), data);
        }
    }
    for d in &dirs {
        let f = d.json(&["fsck", "--read-data"]);
        assert_eq!(f["problems"], serde_json::json!([]), "{f}");
        assert_eq!(f["blocks"], 64, "one copy of each block: {f}");
    }
}

/// Overwrites an object of the store with the aws-free path: arch's own S3 client.
pub(crate) fn overwrite(url: &str, rel: &str, bytes: &[u8]) {
    use object_store::ObjectStoreExt;
    let b = arch::storage::s3::connect(url).unwrap();
    let key = rel
        .split('/')
        .fold(b.prefix().clone(), |p, seg| p.join(seg));
    b.runtime()
        .block_on(b.object_store().put(&key, bytes.to_vec().into()))
        .unwrap();
}

#[test]
fn fsck_read_data_finds_a_damaged_remote_block_and_repair_quarantines_it() {
    let Some(url) = store_url("fsck_read_data_finds_a_damaged_remote_block") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let a = joined(&tmp.path().join("a"), &url);
    let data = pseudo_random(3 * 4096, 6);
    let file = tmp.path().join("a.raw");
    std::fs::write(&file, &data).unwrap();
    a.ok(&["put", file.to_str().unwrap(), "c/a"]);
    let h = a.json(&["hashmap", "c/a"])["hashes"][1]
        .as_str()
        .unwrap()
        .to_string();
    let mut bad = data[4096..8192].to_vec();
    bad[0] ^= 1;
    overwrite(&url, &format!("blocks/{h}"), &bad);
    a.ok(&["fsck"]); // presence only: exit 0
    let out = a.run(&["--json", "fsck", "--read-data"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["problems"][0]["kind"], "corrupt_block", "{report}");
    assert_eq!(report["problems"][0]["subject"], h.as_str());
    assert_eq!(
        report["problems"][0]["resources"],
        serde_json::json!(["object:c/a"])
    );
    let get = a.run(&["get", "c/a"]);
    assert_eq!(get.status.code(), Some(2), "a get verifies and refuses");
    // Repair moves it to PREFIX/quarantine/blocks/ in the store; a new put of the data heals.
    let out = a.run(&["--json", "fsck", "--read-data", "--repair"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let repaired = report["repaired"].to_string();
    assert!(
        repaired.contains(&format!("{url}/quarantine/blocks/{h}")),
        "{report}"
    );
    a.ok(&["put", file.to_str().unwrap(), "c/again"]);
    assert_eq!(a.ok(&["get", "c/a"]), data);
    let f = a.json(&["fsck", "--read-data"]);
    assert_eq!(f["problems"], serde_json::json!([]), "{f}");
    assert!(f["warnings"].to_string().contains("quarantine"), "{f}");
}

#[test]
fn gc_deletes_only_garbage_and_is_refused_while_another_catalog_shares_the_store() {
    let Some(url) = store_url("gc_deletes_only_garbage") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let a = joined(&tmp.path().join("a"), &url);
    let keep = pseudo_random(20_000, 2);
    let gone = pseudo_random(20_000, 3);
    for (name, bytes) in [("c/keep", &keep), ("c/gone", &gone)] {
        let f = tmp.path().join("f");
        std::fs::write(&f, bytes).unwrap();
        a.ok(&["put", f.to_str().unwrap(), name]);
    }
    a.ok(&["rm", "c/gone"]);
    let f = a.json(&["fsck"]);
    assert_eq!(f["garbage"]["unreferenced_blocks"], 5);
    assert_eq!(f["garbage"]["unreferenced_maps"], 1);
    let dry = a.json(&["gc", "--dry-run"]);
    assert_eq!(dry["blocks_freed"], 5);
    assert_eq!(
        a.json(&["fsck"])["garbage"]["unreferenced_blocks"],
        5,
        "dry run deleted"
    );
    let g = a.json(&["gc"]);
    assert_eq!(
        (g["blocks_freed"].as_u64(), g["maps_freed"].as_u64()),
        (Some(5), Some(1))
    );
    assert_eq!(g["bytes_freed"], 20_000);
    let f = a.json(&["fsck", "--read-data"]);
    assert_eq!(f["problems"], serde_json::json!([]), "{f}");
    assert_eq!(f["garbage"]["unreferenced_blocks"], 0);
    assert_eq!(a.ok(&["get", "c/keep"]), keep);
    // A second DIR with its own catalog joins: its objects are invisible from here, so gc
    // here is refused (it would delete them), naming the other repository.
    let b = joined(&tmp.path().join("b"), &url);
    let f = tmp.path().join("only-b");
    std::fs::write(&f, pseudo_random(8192, 9)).unwrap();
    b.ok(&["put", f.to_str().unwrap(), "c/only-b"]);
    let out = a.run(&["gc"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("gc refused") && stderr(&out).contains("/b"),
        "{}",
        stderr(&out)
    );
    assert_eq!(b.ok(&["get", "c/only-b"]), std::fs::read(&f).unwrap());
}

/// A radosgw of our own (same cluster, its own port) that the test can stop and start.
pub(crate) struct OwnGateway {
    port: u16,
    dir: tempfile::TempDir,
}

impl OwnGateway {
    pub(crate) fn start() -> OwnGateway {
        let conf = std::env::var("CEPH_CONF").expect(
            "CEPH_CONF (set by the ceph-s3.sh env file) is needed to start a private radosgw",
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let g = OwnGateway {
            port,
            dir: tempfile::tempdir().unwrap(),
        };
        g.up(&conf);
        g
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.path().join("rgw.pid")
    }

    pub(crate) fn up(&self, conf: &str) {
        let d = self.dir.path();
        let status = Command::new("radosgw")
            .args(["-n", "client.rgw.0", "-c", conf])
            .arg(format!(
                "--rgw_frontends=beast endpoint=127.0.0.1:{}",
                self.port
            ))
            .arg(format!("--pid_file={}", self.pid_file().display()))
            .arg(format!("--admin_socket={}", d.join("rgw.asok").display()))
            .arg(format!("--log_file={}", d.join("rgw.log").display()))
            .status()
            .expect("run radosgw");
        assert!(status.success());
        // Up when it answers HTTP (any status).
        for _ in 0..600 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("private radosgw did not answer on port {}", self.port);
    }

    pub(crate) fn down(&self) {
        let pid: i32 = std::fs::read_to_string(self.pid_file())
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // SAFETY: kill(2) on the radosgw this test started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("radosgw {pid} did not stop");
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnGateway {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.pid_file()) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                // SAFETY: kill(2) on the radosgw this test started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

#[test]
fn radosgw_stopped_in_the_middle_of_a_put_commits_nothing_and_the_next_put_works() {
    let Some(url) = store_url("radosgw_stopped_in_the_middle_of_a_put") else {
        return;
    };
    let gw = OwnGateway::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    let out = init(&dir, &url, "64K");
    assert!(out.status.success(), "{}", stderr(&out));
    let a = Dir {
        root: dir,
        env: vec![("AWS_ENDPOINT_URL".into(), gw.endpoint())],
    };
    let data = pseudo_random(32 << 20, 21);
    let file = tmp.path().join("big.raw");
    std::fs::write(&file, &data).unwrap();
    let before = crate::util::tree_snapshot(&a.root);
    let child = a
        .cmd()
        .args(["--json", "put", file.to_str().unwrap(), "c/big"])
        .env("ARCH_STORE_STATS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Stop the gateway once the put has stored some of its 512 blocks (seen through the
    // shared gateway).
    let watch = arch::storage::s3::connect(&url).unwrap();
    while watch.list_names("blocks").unwrap().len() < 8 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    gw.down();
    let out = child.wait_with_output().unwrap();
    // The gateway was stopped with most of the 512 blocks still to send.
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["kind"], "remote", "{doc}");
    let msg = doc["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(&gw.endpoint()) && msg.contains("retry"),
        "{msg}"
    );
    assert_eq!(
        crate::util::tree_snapshot(&a.root),
        before,
        "nothing committed"
    );
    // While it is down every command fails clearly, changing nothing.
    let ls = a.run(&["ls"]);
    assert_eq!(ls.status.code(), Some(2));
    assert_eq!(crate::util::tree_snapshot(&a.root), before);
    let conf = std::env::var("CEPH_CONF").unwrap();
    gw.up(&conf);
    a.ok(&["put", file.to_str().unwrap(), "c/big"]);
    assert_eq!(a.ok(&["get", "c/big"]), data);
    let f = a.json(&["fsck", "--read-data"]);
    assert_eq!(f["problems"], serde_json::json!([]), "{f}");
}
