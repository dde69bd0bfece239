//! Opening a repository whose catalog is on PostgreSQL (issue 17): arch.toml's store must
//! be the one the catalog names, and listings stream (bounded memory however many objects).
//!
//! They need `ARCH_TEST_CATALOG` (the store test also `ARCH_TEST_STORE`); without it each
//! test says so and returns.

use crate::util::{START_SERVICES, TestRepo, catalog_dump, remote_catalog, remote_store};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

/// Runs `arch args` in `r` with stdout to a file; (exit code, stdout lines, peak RSS in KiB
/// of that process alone). The peak comes from GNU time, which forks arch itself: wait4 on a
/// child of this test process reports this process's own size whenever that is larger (the
/// high-water mark a forked child carries until its exec), and the other tests running here
/// make it large.
fn peak_rss(r: &TestRepo, args: &[&str]) -> (i32, usize, i64) {
    let out_path = r.path("stdout");
    let rss_path = r.path("rss");
    let arch = r.cmd();
    let mut timed = Command::new("/usr/bin/time");
    timed.args(["-q", "-f", "%M", "-o"]).arg(&rss_path);
    timed
        .arg(arch.get_program())
        .args(arch.get_args())
        .args(args);
    for (k, v) in arch.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    let status = timed
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::inherit())
        .status()
        .expect("GNU time (/usr/bin/time, Debian package time) measures the peak RSS");
    let lines = std::fs::read(&out_path)
        .unwrap()
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    let rss = std::fs::read_to_string(&rss_path).unwrap();
    let kib = rss.split_whitespace().last().unwrap().parse().unwrap();
    (status.code().unwrap(), lines, kib)
}

#[test]
fn remote_listings_of_many_objects_stream_in_bounded_memory() {
    if remote_catalog().is_none() {
        eprintln!("skipped: set ARCH_TEST_CATALOG to run the remote listing test{START_SERVICES}");
        return;
    }
    let r = TestRepo::new();
    r.ok(&["put", r.file("f", b"some data").to_str().unwrap(), "c/o0"]);
    let (code, lines, small) = peak_rss(&r, &["ls", "c"]);
    assert_eq!((code, lines), (0, 1));
    // Many more rows like it, straight into the catalog (a put each would take minutes).
    const MORE: i64 = 60_000;
    let url = arch::repo::db::pg::CatalogUrl::parse(r.catalog.as_ref().unwrap()).unwrap();
    let mut c = arch::repo::db::pg::connect(&url).unwrap();
    let copy = |g: &str| format!("lpad(to_hex({g}), 8, '0') || substr(uuid, 9)");
    c.execute(
        &format!(
            "INSERT INTO versions (uuid, version, bytes, hash, map, block_size, content_type, \
             meta, modified) SELECT {}, version, bytes, hash, map, block_size, content_type, \
             meta, modified FROM versions, generate_series(1, $1::bigint) g",
            copy("g")
        ),
        &[&MORE],
    )
    .unwrap();
    c.execute(
        &format!(
            "INSERT INTO objects (uuid, container, name, version, created) SELECT {}, \
             container, 'o' || lpad(g::text, 7, '0'), version, created FROM objects, \
             generate_series(1, $1::bigint) g",
            copy("g")
        ),
        &[&MORE],
    )
    .unwrap();
    // Inside a read transaction (`ls c`) and in a query's own transaction (`ls`: the
    // containers, from every object), the process holds a batch of rows, not the catalog:
    // fetching all 60001 rows at once takes tens of MiB more.
    let (code, lines, big) = peak_rss(&r, &["ls", "c"]);
    assert_eq!((code, lines), (0, MORE as usize + 1));
    assert!(
        big < small + 16 * 1024,
        "ls of {} objects peaked at {big} KiB, of one at {small} KiB",
        MORE + 1
    );
    let (code, lines, all) = peak_rss(&r, &["ls"]);
    assert_eq!((code, lines), (0, 1));
    assert!(
        all < small + 16 * 1024,
        "ls of the containers peaked at {all} KiB"
    );
}

#[test]
fn remote_an_arch_toml_pointing_at_another_store_is_refused_naming_both() {
    let (Some(_), Some(_)) = (remote_catalog(), remote_store()) else {
        eprintln!(
            "skipped: set ARCH_TEST_CATALOG and ARCH_TEST_STORE to run the store check test{START_SERVICES}"
        );
        return;
    };
    // Two repositories, each with its store and catalog; A's arch.toml then names B's store
    // (a valid repository of the same block size, so only the catalog can tell).
    let a = TestRepo::new();
    let b = TestRepo::new();
    a.ok(&["put", a.file("f", b"data of a").to_str().unwrap(), "c/x"]);
    let toml_path = a.root.join("arch.toml");
    let toml = std::fs::read_to_string(&toml_path).unwrap();
    let store_of = |text: &str| -> String {
        let t: toml::Table = text.parse().unwrap();
        t["store"].as_str().unwrap().to_string()
    };
    let (ours, theirs) = (
        store_of(&toml),
        store_of(&std::fs::read_to_string(b.root.join("arch.toml")).unwrap()),
    );
    let mode = std::fs::metadata(&toml_path).unwrap().permissions().mode();
    std::fs::set_permissions(&toml_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&toml_path, toml.replace(&ours, &theirs)).unwrap();
    let (before_a, before_b) = (
        catalog_dump(a.catalog.as_ref().unwrap()),
        catalog_dump(b.catalog.as_ref().unwrap()),
    );
    for args in [vec!["ls", "c"], vec!["info"]] {
        let out = a.run(&args);
        let err = crate::util::stderr(&out);
        assert!(!out.status.success(), "{args:?}: {err}");
        assert!(
            err.contains(&format!(
                "the store {ours}, but arch.toml names the store {theirs}"
            )) && err.contains(&format!("store = \"{ours}\""))
                && err.contains(&format!("arch init NEWDIR --store {ours} --catalog")),
            "{args:?}: {err}"
        );
    }
    let out = a.run(&["put", a.file("g", b"more").to_str().unwrap(), "c/y"]);
    assert!(!out.status.success());
    assert_eq!(catalog_dump(a.catalog.as_ref().unwrap()), before_a);
    assert_eq!(catalog_dump(b.catalog.as_ref().unwrap()), before_b);
    // The fix the message gives: the catalog's store back in arch.toml.
    std::fs::write(&toml_path, &toml).unwrap();
    std::fs::set_permissions(&toml_path, std::fs::Permissions::from_mode(mode)).unwrap();
    assert_eq!(a.ok(&["ls", "c"]), b"c/x\n");
}
