//! radosgw stopped in the middle of a snapshot and of a gc (a gateway of the test's own,
//! killed and started again, as in `remote_store`'s put test): a clear error, nothing
//! committed half-way, nothing referenced lost, and the next command works once the gateway
//! is back. "In the middle" is made exact: the command is frozen (SIGSTOP) as soon as the
//! store shows it has begun changing things, the gateway is killed, then the command goes on
//! (SIGCONT) against a dead gateway.
//!
//! Needs `ARCH_TEST_STORE=s3://BUCKET`, the AWS_* variables and CEPH_CONF of the service
//! (`ceph-s3.sh start DIR` writes them to DIR/env; `.ci/remote` sets them). Unset: the tests
//! say so and pass without running.

use crate::remote_private::private_objects;
use crate::remote_store::{Dir, OwnGateway, init, store_url};
use crate::serve::{RawClient, signal};
use crate::util::{pseudo_random, stderr, tree_snapshot};
use std::io::{BufRead, BufReader};
use std::process::{Child, Output, Stdio};

/// A DIR whose commands go to the gateway `gw` (init and the checks go through the shared
/// one).
fn dir_on(gw: &OwnGateway, tmp: &std::path::Path, url: &str, bs: &str) -> Dir {
    let root = tmp.join("a");
    let out = init(&root, url, bs);
    assert!(out.status.success(), "{}", stderr(&out));
    Dir {
        root,
        env: vec![("AWS_ENDPOINT_URL".into(), gw.endpoint())],
    }
}

/// Starts `arch --json args` in `d`, waits until `started()` (polled) says it has begun
/// changing the store, freezes it, kills the gateway, lets it go on; returns its output.
fn stop_gateway_in_the_middle(
    d: &Dir,
    gw: &OwnGateway,
    args: &[&str],
    started: impl Fn() -> bool,
) -> Output {
    let mut child: Child = d
        .cmd()
        .arg("--json")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while !started() {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "arch {args:?} ended ({status}) before it was seen changing the store: {}",
                stderr(&out)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    signal(child.id(), libc::SIGSTOP);
    gw.down();
    signal(child.id(), libc::SIGCONT);
    child.wait_with_output().unwrap()
}

/// Asserts `out` is the clear error of an unreachable store naming the gateway `gw`.
fn assert_remote_error(out: &Output, gw: &OwnGateway) {
    assert_eq!(out.status.code(), Some(2), "{}", stderr(out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["kind"], "remote", "{doc}");
    let msg = doc["error"]["message"].as_str().unwrap();
    assert!(msg.contains(&gw.endpoint()), "names the endpoint: {msg}");
    assert!(
        msg.contains("retry") || msg.contains("run the command again"),
        "says what to do: {msg}"
    );
}

fn ceph_conf() -> String {
    std::env::var("CEPH_CONF").unwrap()
}

#[test]
fn radosgw_stopped_in_the_middle_of_a_snapshot_commits_nothing_and_the_next_one_works() {
    let Some(url) = store_url("radosgw_stopped_in_the_middle_of_a_snapshot") else {
        return;
    };
    let gw = OwnGateway::start();
    let tmp = tempfile::tempdir().unwrap();
    let a = dir_on(&gw, tmp.path(), &url, "64K");
    let base = tmp.path().join("base");
    std::fs::write(&base, pseudo_random(1 << 20, 1)).unwrap();
    a.ok(&["put", base.to_str().unwrap(), "images/base"]);
    a.ok(&["clone", "images/base", "vm", "--size", "16M"]);
    // 192 private blocks written (and flushed to the store by `volume write`).
    let w = tmp.path().join("w");
    std::fs::write(&w, pseudo_random(12 << 20, 2)).unwrap();
    a.ok(&[
        "volume",
        "write",
        "vm",
        "--offset",
        "0",
        w.to_str().unwrap(),
    ]);
    let content = a.ok(&["volume", "read", "vm", "--offset", "0"]);
    let private = private_objects(&url);
    assert_eq!(private.len(), 192);
    let watch = arch::storage::s3::connect(&url).unwrap();
    let blocks = watch.list_names("blocks").unwrap().len();
    let before = tree_snapshot(&a.root);
    let out = stop_gateway_in_the_middle(&a, &gw, &["snapshot", "vm", "s1"], || {
        watch.list_names("blocks").unwrap().len() > blocks
    });
    assert_remote_error(&out, &gw);
    assert_eq!(tree_snapshot(&a.root), before, "nothing committed");
    assert_eq!(
        private_objects(&url),
        private,
        "the volume's blocks are intact"
    );
    // While it is down, reads fail clearly too.
    assert_eq!(
        a.run(&["volume", "read", "vm", "--offset", "0"])
            .status
            .code(),
        Some(2)
    );
    gw.up(&ceph_conf());
    assert_eq!(a.ok(&["volume", "read", "vm", "--offset", "0"]), content);
    assert_eq!(a.run(&["info", "snapshots/s1"]).status.code(), Some(2));
    a.ok(&["snapshot", "vm", "s1"]);
    a.ok(&["clone", "snapshots/s1", "vm2"]);
    assert_eq!(a.ok(&["volume", "read", "vm2", "--offset", "0"]), content);
    let f = a.json(&["fsck", "--read-data"]);
    assert_eq!(f["problems"], serde_json::json!([]), "{f}");
    assert_eq!(f["garbage"]["volume_entries"], 0, "{f}");
}

#[test]
fn radosgw_stopped_before_a_served_volume_is_snapshot_keeps_its_buffered_writes() {
    let Some(url) = store_url("radosgw_stopped_before_a_served_volume_is_snapshot") else {
        return;
    };
    let gw = OwnGateway::start();
    let tmp = tempfile::tempdir().unwrap();
    let a = dir_on(&gw, tmp.path(), &url, "4K");
    let img = pseudo_random(64 << 10, 3);
    let f = tmp.path().join("img");
    std::fs::write(&f, &img).unwrap();
    a.ok(&["put", f.to_str().unwrap(), "images/img"]);
    a.ok(&["clone", "images/img", "vm"]);
    // The server talks to our gateway; the other commands to the shared one.
    let mut server = a
        .cmd()
        .args(["--json", "serve", "vm"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).expect("serve's first line");
    let socket = v["uri"].as_str().unwrap().split("socket=").nth(1).unwrap();
    let mut vm = RawClient::connect(std::path::Path::new(socket), "vm");
    // Acknowledged, not flushed: only in the server's write-back cache.
    assert_eq!(vm.request(1, 5000, 8, b"buffered").0, 0);
    assert!(private_objects(&url).is_empty(), "nothing uploaded yet");
    let shared = Dir {
        root: a.root.clone(),
        env: vec![],
    };
    let before = tree_snapshot(&a.root);
    gw.down();
    let out = shared.run(&["--json", "snapshot", "vm", "s1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let msg = doc["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(&gw.endpoint()) || msg.contains(&url),
        "names the store it failed on: {msg}"
    );
    assert_eq!(tree_snapshot(&a.root), before, "nothing committed");
    assert_eq!(shared.run(&["info", "snapshots/s1"]).status.code(), Some(2));
    gw.up(&ceph_conf());
    // The server kept the write: the next snapshot holds it.
    shared.ok(&["snapshot", "vm", "s1"]);
    shared.ok(&["clone", "snapshots/s1", "vm2"]);
    let mut want = img.clone();
    want[5000..5008].copy_from_slice(b"buffered");
    assert_eq!(shared.ok(&["volume", "read", "vm2", "--offset", "0"]), want);
    assert_eq!(vm.request(0, 4998, 12, &[]).1, want[4998..5010]);
    drop(vm);
    signal(server.id(), libc::SIGTERM);
    assert_eq!(server.wait().unwrap().code(), Some(0));
    let f = shared.json(&["fsck", "--read-data"]);
    assert_eq!(f["problems"], serde_json::json!([]), "{f}");
}

/// Creates `n` objects `PREFIX/volumes/<id>/1/<i>` of `len` bytes (many requests at once).
fn put_private_garbage(url: &str, id: &str, n: usize, len: usize) {
    use futures_util::{StreamExt, TryStreamExt};
    use object_store::ObjectStoreExt;
    let b = arch::storage::s3::connect(url).unwrap();
    let store = b.object_store();
    let dir = b.prefix().clone().join("volumes").join(id).join("1");
    b.runtime()
        .block_on(
            futures_util::stream::iter(0..n)
                .map(|i| {
                    let (store, key) = (store.clone(), dir.clone().join(i.to_string()));
                    async move { store.put(&key, vec![5u8; len].into()).await }
                })
                .buffer_unordered(32)
                .try_collect::<Vec<_>>(),
        )
        .unwrap();
}

#[test]
fn radosgw_stopped_in_the_middle_of_a_gc_loses_nothing_and_the_next_gc_finishes() {
    let Some(url) = store_url("radosgw_stopped_in_the_middle_of_a_gc") else {
        return;
    };
    let gw = OwnGateway::start();
    let tmp = tempfile::tempdir().unwrap();
    let a = dir_on(&gw, tmp.path(), &url, "4K");
    let keep = pseudo_random(256 << 10, 4);
    let f = tmp.path().join("keep");
    std::fs::write(&f, &keep).unwrap();
    a.ok(&["put", f.to_str().unwrap(), "c/keep"]);
    a.ok(&["clone", "c/keep", "vm"]);
    let w = tmp.path().join("w");
    std::fs::write(&w, pseudo_random(40_000, 5)).unwrap();
    a.ok(&[
        "volume",
        "write",
        "vm",
        "--offset",
        "3000",
        w.to_str().unwrap(),
    ]);
    let vm = a.ok(&["volume", "read", "vm", "--offset", "0"]);
    let live = private_objects(&url);
    // Garbage: 512 blocks of a removed object, 2500 objects of a removed volume.
    std::fs::write(&f, pseudo_random(2 << 20, 6)).unwrap();
    a.ok(&["put", f.to_str().unwrap(), "c/gone"]);
    a.ok(&["rm", "c/gone"]);
    put_private_garbage(&url, "11111111-2222-4333-8444-555555555555", 2500, 100);
    let watch = arch::storage::s3::connect(&url).unwrap();
    let blocks = watch.list_names("blocks").unwrap().len();
    let out = stop_gateway_in_the_middle(&a, &gw, &["gc"], || {
        watch.list_names("blocks").unwrap().len() < blocks
    });
    assert_remote_error(&out, &gw);
    let left = private_objects(&url).len();
    assert!(
        left > live.len(),
        "gc was stopped before it had deleted all the volume garbage ({left} left)"
    );
    gw.up(&ceph_conf());
    assert_eq!(a.ok(&["get", "c/keep"]), keep);
    assert_eq!(a.ok(&["volume", "read", "vm", "--offset", "0"]), vm);
    let f = a.json(&["fsck"]);
    assert_eq!(f["problems"], serde_json::json!([]), "{f}");
    let g = a.json(&["gc"]);
    assert_eq!(
        g["volume_entries_removed"].as_u64().unwrap() as usize,
        left - live.len(),
        "{g}"
    );
    assert_eq!(private_objects(&url), live);
    let f = a.json(&["fsck", "--read-data"]);
    assert_eq!(f["problems"], serde_json::json!([]), "{f}");
    assert_eq!(f["garbage"]["unreferenced_blocks"], 0, "{f}");
    assert_eq!(f["garbage"]["volume_entries"], 0, "{f}");
}
