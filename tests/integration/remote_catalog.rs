//! The catalog on PostgreSQL (issue 17): two DIRs ("hosts") joined to one catalog, writers on
//! both, cross-host locks (released when their holder is killed, a wait stopped by SIGINT),
//! an unreachable server, and a server restarted between two commands.
//!
//! They need a PostgreSQL server: `ARCH_TEST_CATALOG=postgres://USER@HOST:PORT/DB` (password
//! in PGPASSWORD or ~/.pgpass), which also runs the whole suite in remote mode. Without it
//! each test says how to start one and returns (a plain `cargo test` needs no server).

use crate::util::{START_SERVICES, TestRepo, bin, catalog_dump, pseudo_random, stderr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// The repository of this test on the server, or None (said on stderr) without a server.
fn remote_repo() -> Option<TestRepo> {
    if crate::util::remote_catalog().is_none() {
        eprintln!(
            "skipped: set ARCH_TEST_CATALOG to run the PostgreSQL catalog tests{START_SERVICES}"
        );
        return None;
    }
    Some(TestRepo::new())
}

/// A second host: DIR `name` beside the repository, joined to its catalog by the same init.
pub fn second_host(r: &TestRepo, name: &str) -> PathBuf {
    let dir = r.path(name);
    let mut init = Command::new(bin());
    init.args(["init", "--block-size", "4K", "--packs", "off", "--catalog"])
        .arg(r.catalog.as_ref().unwrap())
        .arg(&dir);
    // With the blocks in a store too (ARCH_TEST_STORE), the second host names the same one.
    let toml: toml::Table = std::fs::read_to_string(r.root.join("arch.toml"))
        .unwrap()
        .parse()
        .unwrap();
    if let Some(store) = toml.get("store").and_then(|v| v.as_str()) {
        init.args(["--store", store]);
    }
    let out = init.output().unwrap();
    assert!(out.status.success(), "join failed: {}", stderr(&out));
    dir
}

pub fn arch_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("-R")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

pub fn ok_in(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = arch_in(dir, args);
    assert!(out.status.success(), "arch {args:?}: {}", stderr(&out));
    out.stdout
}

#[test]
fn two_hosts_share_one_catalog() {
    let Some(a) = remote_repo() else { return };
    let b = second_host(&a, "host-b");
    // The second DIR holds the URL and local scratch, no catalog file.
    let toml = std::fs::read_to_string(b.join("arch.toml")).unwrap();
    assert!(toml.contains(a.catalog.as_ref().unwrap()), "{toml}");
    assert!(!toml.contains("PASSWORD") && !b.join("meta/catalog.db").exists());
    let data = pseudo_random(10_000, 1);
    let f = a.file("f", &data);
    let put = a.json(&["put", f.to_str().unwrap(), "c/x"]);
    assert_eq!(ok_in(&b, &["ls", "c"]), b"c/x\n");
    let info: serde_json::Value =
        serde_json::from_slice(&ok_in(&b, &["--json", "info", "c/x"])).unwrap();
    assert_eq!((&info["uuid"], &info["hash"]), (&put["uuid"], &put["hash"]));
    // The data is where the store is: with a shared store B reads it too; with each DIR's
    // own local store (catalog-only mode) A does.
    let reader = if crate::util::remote_store().is_some() {
        &b
    } else {
        &a.root
    };
    let got = b.parent().unwrap().join("got");
    ok_in(reader, &["get", "c/x", "-o", got.to_str().unwrap()]);
    assert_eq!(std::fs::read(&got).unwrap(), data);
    // A change on B is seen on A.
    ok_in(&b, &["mv", "c/x", "c/y"]);
    assert_eq!(a.ok(&["ls", "c"]), b"c/y\n");
    // A join with another block size is refused, and leaves no DIR behind.
    let c = a.path("host-c");
    let out = Command::new(bin())
        .args(["init", "--block-size", "64K", "--catalog"])
        .arg(a.catalog.as_ref().unwrap())
        .arg(&c)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--block-size 4K"), "{}", stderr(&out));
    assert!(!c.exists());
}

#[test]
fn writers_on_two_hosts_lose_no_update() {
    let Some(a) = remote_repo() else { return };
    let b = second_host(&a, "host-b");
    a.ok(&["put", a.file("seed", b"seed").to_str().unwrap(), "c/meta"]);
    const EACH: usize = 4;
    let mut children = Vec::new();
    for (host, dir) in [("a", a.root.clone()), ("b", b.clone())] {
        for i in 0..EACH {
            let f = a.file(&format!("{host}{i}"), &pseudo_random(5000, i as u64));
            let dir = dir.clone();
            let key = format!("{host}{i}");
            children.push(std::thread::spawn(move || {
                let put = arch_in(&dir, &["put", f.to_str().unwrap(), "c/shared"]);
                let meta = arch_in(&dir, &["meta", "c/meta", "--set", &format!("{key}=1")]);
                (put, meta)
            }));
        }
    }
    for c in children {
        let (put, meta) = c.join().unwrap();
        assert!(put.status.success(), "put: {}", stderr(&put));
        assert!(meta.status.success(), "meta: {}", stderr(&meta));
    }
    // Every put is a version of its own; every metadata change is kept.
    let history = a.json(&["history", "c/shared"]);
    assert_eq!(history["versions"].as_array().unwrap().len(), 2 * EACH);
    let meta = String::from_utf8(ok_in(&b, &["meta", "c/meta"])).unwrap();
    for host in ["a", "b"] {
        for i in 0..EACH {
            assert!(meta.contains(&format!("{host}{i}")), "{meta}");
        }
    }
}

/// Waits until `child` (reading its stdin) holds the data lock on the server.
fn wait_for_lock(r: &TestRepo, child: &mut std::process::Child) {
    let url = arch::repo::db::pg::CatalogUrl::parse(r.catalog.as_ref().unwrap()).unwrap();
    let key = arch::repo::db::pg::advisory::key(&url.schema, "data");
    let mut c = arch::repo::db::pg::connect(&url).unwrap();
    loop {
        assert!(child.try_wait().unwrap().is_none(), "the holder exited");
        let held: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
                 AND classid::bigint = ($1::bigint >> 32) & 4294967295 \
                 AND objid::bigint = $1::bigint & 4294967295",
                &[&key],
            )
            .unwrap()
            .get(0);
        if held > 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_lock_of_a_killed_holder_is_released_and_sigint_stops_a_wait() {
    let Some(a) = remote_repo() else { return };
    let b = second_host(&a, "host-b");
    // A put reading stdin holds the shared data lock until its input ends.
    let mut holder = a
        .cmd()
        .args(["put", "-", "c/slow"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_lock(&a, &mut holder);
    // gc on the other host needs it exclusive: it waits, and SIGINT stops the wait.
    let gc = |stdin: Stdio| {
        Command::new(bin())
            .arg("-R")
            .arg(&b)
            .arg("gc")
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut waiting = gc(Stdio::null());
    std::thread::sleep(Duration::from_millis(300));
    assert!(waiting.try_wait().unwrap().is_none(), "gc did not wait");
    // SAFETY: kill on the pid of our own child.
    unsafe { libc::kill(waiting.id() as i32, libc::SIGINT) };
    let out = waiting.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
    // The holder is killed: its session ends, and the lock with it.
    let waiting = gc(Stdio::null());
    holder.kill().unwrap();
    holder.wait().unwrap();
    let out = waiting.wait_with_output().unwrap();
    assert!(out.status.success(), "gc: {}", stderr(&out));
    assert_eq!(ok_in(&b, &["ls"]), b"");
}

#[test]
fn an_unreachable_catalog_is_a_clear_error_and_changes_nothing() {
    let Some(a) = remote_repo() else { return };
    a.ok(&["put", a.file("f", b"data").to_str().unwrap(), "c/x"]);
    // A host whose view of the server is a closed port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cut = a.path("cut-off");
    std::fs::create_dir(&cut).unwrap();
    let mut url = arch::repo::db::pg::CatalogUrl::parse(a.catalog.as_ref().unwrap()).unwrap();
    url.host = "127.0.0.1".into();
    url.port = port;
    for e in walkdir::WalkDir::new(&a.root).min_depth(1) {
        let e = e.unwrap();
        let to = cut.join(e.path().strip_prefix(&a.root).unwrap());
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&to).unwrap();
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
    let toml = std::fs::read_to_string(a.root.join("arch.toml")).unwrap();
    let toml = toml.replace(a.catalog.as_ref().unwrap(), &url.to_string());
    std::fs::write(cut.join("arch.toml"), toml).unwrap();
    let before = (crate::util::tree_snapshot(&cut), a.snapshot());
    let out = Command::new(bin())
        .arg("-R")
        .arg(&cut)
        .args([
            "--json",
            "put",
            a.file("g", b"new").to_str().unwrap(),
            "c/y",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && err.contains("pg_isready"),
        "{err}"
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["kind"], "remote");
    assert_eq!(before, (crate::util::tree_snapshot(&cut), a.snapshot()));
}

/// The postgres.sh server of `port` on this machine: (its bin directory, data directory).
fn local_server(port: u16) -> Option<(PathBuf, PathBuf)> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let Some(d) = args.iter().position(|a| a == "-D") else {
            continue;
        };
        if !args[0].ends_with("/postgres") {
            continue;
        }
        let data = PathBuf::from(args.get(d + 1)?);
        let pid = std::fs::read_to_string(data.join("postmaster.pid")).ok()?;
        if pid.lines().nth(3) == Some(&port.to_string()) {
            return Some((Path::new(&args[0]).parent()?.to_path_buf(), data));
        }
    }
    None
}

#[test]
fn postgres_restarted_between_two_commands() {
    let Some(a) = remote_repo() else { return };
    if std::env::var("ARCH_TEST_PG_RESTART").is_err() {
        eprintln!(
            "skipped: restarting the shared server breaks the tests running beside this one; \
             run it alone with ARCH_TEST_PG_RESTART=1 (cargo test --test integration \
             remote_catalog::postgres_restarted -- --test-threads=1)"
        );
        return;
    }
    let url = arch::repo::db::pg::CatalogUrl::parse(a.catalog.as_ref().unwrap()).unwrap();
    let (bin_dir, data) = local_server(url.port)
        .unwrap_or_else(|| panic!("no local PostgreSQL server on port {}", url.port));
    let f = a.file("f", &pseudo_random(9000, 3));
    a.ok(&["put", f.to_str().unwrap(), "c/x"]);
    let rows = catalog_dump(a.catalog.as_ref().unwrap());
    let log = data.parent().unwrap().join("postgres.log");
    let st = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(bin_dir.join("pg_ctl"))
        .args(["restart", "-m", "fast", "-w", "-t", "60", "-s", "-D"])
        .arg(&data)
        .arg("-l")
        .arg(&log)
        .current_dir(&data)
        .status()
        .unwrap();
    assert!(st.success(), "pg_ctl restart failed");
    assert_eq!(catalog_dump(a.catalog.as_ref().unwrap()), rows);
    let got = a.path("got");
    a.ok(&["get", "c/x", "-o", got.to_str().unwrap()]);
    assert_eq!(std::fs::read(&got).unwrap(), std::fs::read(&f).unwrap());
    a.ok(&["put", f.to_str().unwrap(), "c/y"]);
}
