//! `arch serve` on a repository shared by many hosts (catalog on PostgreSQL, issue 17 with
//! issue 13's rules): a volume served read-write on host A refuses writers on host B, naming
//! the serving process and host, while readers work; a killed server's lock dies with it; a
//! snapshot from B goes through A's server: its control socket on the same machine, its
//! channel in the catalog from another machine; refused, changing nothing, when neither
//! reaches it.
//!
//! They need `ARCH_TEST_CATALOG` (and read across hosts only with `ARCH_TEST_STORE` too,
//! since without a shared store each host keeps its own blocks); without it each test says
//! so and returns.

use crate::remote_catalog::{arch_in, ok_in, second_host};
use crate::serve::{Server, signal};
use crate::util::{START_SERVICES, TestRepo, catalog_dump, stderr};
use std::process::Command;

/// Host A: a repository holding image `images/img.raw` and volume `vm1` cloned from it, or
/// None (said on stderr) without a catalog server.
fn host_a() -> Option<(TestRepo, Vec<u8>)> {
    if crate::util::remote_catalog().is_none() {
        eprintln!("skipped: set ARCH_TEST_CATALOG to run the remote serve tests{START_SERVICES}");
        return None;
    }
    Some(crate::serve::setup(64 << 10))
}

/// The id of volume `name`.
fn volume_id(a: &TestRepo, name: &str) -> String {
    a.json(&["volume", "info", name])["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// This machine's host name, as the server records it.
fn hostname() -> String {
    let out = Command::new("hostname").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Waits until the serve lock of volume `id` is free (its holder's session ended): polls
/// the server for it, at most `tries` times.
fn serve_lock_frees(a: &TestRepo, id: &str, tries: u32) -> bool {
    let url = arch::repo::db::pg::CatalogUrl::parse(a.catalog.as_ref().unwrap()).unwrap();
    for _ in 0..tries {
        let lock =
            arch::repo::db::pg::advisory::session_lock(&url, &format!("serve-{id}"), false, false)
                .unwrap();
        if lock.is_some() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

#[test]
fn remote_a_volume_served_on_one_host_refuses_writers_on_another_and_readers_work() {
    let Some((a, img)) = host_a() else { return };
    let b = second_host(&a, "host-b");
    let id = volume_id(&a, "vm1");
    let srv = Server::start(&a, &["vm1"]);
    let pid = srv.child.id().to_string();
    let host = hostname();
    let before = catalog_dump(a.catalog.as_ref().unwrap());
    let data = a.file("d", b"x");
    for args in [
        vec![
            "volume",
            "write",
            "vm1",
            "--offset",
            "0",
            data.to_str().unwrap(),
        ],
        vec!["volume", "resize", "vm1", "1M"],
        vec!["volume", "rm", "vm1"],
        vec!["customize", "vm1", "--hostname", "web2"],
        vec!["serve", "vm1"],
    ] {
        let out = arch_in(&b, &args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("served read-write") && err.contains(&format!("pid {pid} on {host}")),
            "{args:?}: {err}"
        );
    }
    // Refusals changed nothing (the server's own row is part of the dump, unchanged too).
    assert_eq!(catalog_dump(a.catalog.as_ref().unwrap()), before);
    // Readers work on B (with a shared store; else each host reads its own blocks: on A).
    let reader = if crate::util::remote_store().is_some() {
        b.clone()
    } else {
        a.root.clone()
    };
    assert_eq!(
        ok_in(
            &reader,
            &["volume", "read", "vm1", "--offset", "0", "--length", "10"]
        ),
        img[..10]
    );
    // kill -9: the server's session ends and its serve lock with it; writers on B work.
    signal(srv.child.id(), libc::SIGKILL);
    drop(srv);
    assert!(
        serve_lock_frees(&a, &id, 200),
        "the killed server's lock stays"
    );
    ok_in(&b, &["volume", "resize", "vm1", "128K"]);
    // And B may serve it now; A's writers are then refused naming B's server.
    let b_repo = TestRepo {
        dir: tempfile::tempdir().unwrap(),
        root: b.clone(),
        catalog: None,
        store: None,
    };
    let srv_b = Server::start(&b_repo, &["vm1"]);
    let err = a.fails(2, &["volume", "resize", "vm1", "256K"]);
    assert!(
        err.contains(&format!("pid {} on {host}", srv_b.child.id())),
        "{err}"
    );
    assert_eq!(srv_b.stop().0, Some(0));
    // A server that stopped removes its row: nothing is left to name a server.
    a.ok(&["volume", "resize", "vm1", "256K"]);
    a.ok(&["volume", "rm", "vm1"]);
    let rows: Vec<_> = catalog_dump(a.catalog.as_ref().unwrap())
        .into_iter()
        .filter(|(t, _, _)| t == "catalog:servers")
        .collect();
    assert!(rows.is_empty(), "{rows:?}");
}

#[test]
fn remote_a_snapshot_from_another_machine_goes_through_the_catalog_and_an_unreachable_server_is_refused()
 {
    let Some((a, img)) = host_a() else { return };
    let b = second_host(&a, "host-b");
    let id = volume_id(&a, "vm1");
    let srv = Server::start(&a, &["vm1"]);
    let mut vm = crate::serve::RawClient::connect(&srv.socket(), "vm1");
    // Acknowledged, not flushed: the snapshot taken from B must hold it.
    assert_eq!(vm.request(1, 5000, 6, b"before").0, 0);
    let v: serde_json::Value =
        serde_json::from_slice(&ok_in(&b, &["--json", "snapshot", "vm1", "s1"])).unwrap();
    assert_eq!(v["object"], "snapshots/s1");
    // Serving goes on in the new epoch.
    assert_eq!(vm.request(1, 5000, 6, b"after!").0, 0);
    // The server as if it ran on another machine: its control socket is out of reach there,
    // its channel in the catalog is not.
    let url = arch::repo::db::pg::CatalogUrl::parse(a.catalog.as_ref().unwrap()).unwrap();
    let mut c = arch::repo::db::pg::connect(&url).unwrap();
    let n = c
        .execute(
            "UPDATE servers SET info = jsonb_set(info::jsonb, '{machine}', \
             '\"elsewhere/0\"')::text WHERE volume_id = $1",
            &[&id],
        )
        .unwrap();
    assert_eq!(n, 1, "the server has its row");
    let v: serde_json::Value =
        serde_json::from_slice(&ok_in(&b, &["--json", "snapshot", "vm1", "s2"])).unwrap();
    assert_eq!(v["object"], "snapshots/s2");
    assert_eq!(vm.request(1, 5000, 6, b"later.").0, 0);
    assert_eq!(vm.request(3, 0, 0, &[]).0, 0);
    // A channel in the row that arch never makes (a hostile or damaged row) is refused,
    // naming the table, before anything is sent; nothing changes.
    let n = c
        .execute(
            "UPDATE servers SET info = jsonb_set(info::jsonb, '{relay}', \
             '\"pg_catalog; NOTIFY x\"')::text WHERE volume_id = $1",
            &[&id],
        )
        .unwrap();
    assert_eq!(n, 1);
    let before = catalog_dump(a.catalog.as_ref().unwrap());
    let out = arch_in(&b, &["snapshot", "vm1", "s3"]);
    let err = stderr(&out);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("servers") && err.contains("not one arch makes"),
        "{err}"
    );
    assert_eq!(catalog_dump(a.catalog.as_ref().unwrap()), before);
    // A server that takes no requests through the catalog (no channel in its row) cannot be
    // reached from another machine: refused, changing nothing, saying where to run it.
    let n = c
        .execute(
            "UPDATE servers SET info = (info::jsonb - 'relay')::text WHERE volume_id = $1",
            &[&id],
        )
        .unwrap();
    assert_eq!(n, 1);
    let before = catalog_dump(a.catalog.as_ref().unwrap());
    let out = arch_in(&b, &["snapshot", "vm1", "s3"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("another machine")
            && err.contains(&format!("pid {}", srv.child.id()))
            && err.contains("arch snapshot vm1 snapshots/s3"),
        "{err}"
    );
    assert_eq!(catalog_dump(a.catalog.as_ref().unwrap()), before);
    drop(vm);
    assert_eq!(srv.stop().0, Some(0));
    // Each snapshot holds the writes acknowledged before it, seen from both DIRs.
    for (snapshot, data, clone) in [("s1", b"before", "vm2"), ("s2", b"after!", "vm3")] {
        let mut at_snapshot = img.clone();
        at_snapshot[5000..5006].copy_from_slice(data);
        a.ok(&["clone", &format!("snapshots/{snapshot}"), clone]);
        assert_eq!(crate::serve::export(&a, clone), at_snapshot, "{snapshot}");
    }
    assert_eq!(
        ok_in(&b, &["ls", "snapshots"]),
        b"snapshots/s1\nsnapshots/s2\n"
    );
}
