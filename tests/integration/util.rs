//! Test harness: every test gets its own temp directory with a fresh repository and drives the
//! real `arch` binary in it.
//!
//! Remote mode (docs/FORMAT.md "Catalog on PostgreSQL"; the CI runs the suite both ways):
//! `ARCH_TEST_CATALOG=postgres://USER@HOST:PORT/DB` (password in PGPASSWORD or ~/.pgpass)
//! gives every test repository its own schema `t_<unique>` of that database, dropped at the
//! end of the test; `ARCH_TEST_STORE=s3://BUCKET` gives it the prefix `t-<unique>`. A
//! service that cannot be reached fails the test (init fails), it never skips. Tests that
//! look at or damage local files that do not exist in remote mode return early through
//! [`local_store_only`] or [`local_catalog_only`], which says so on stderr.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A temp directory holding a repository at `root` and room for scratch files.
pub struct TestRepo {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    /// The catalog URL (with its schema) in remote-catalog mode.
    pub catalog: Option<String>,
    /// The store URL (`s3://BUCKET/t-<unique>`) in remote-store mode.
    pub store: Option<String>,
}

impl Drop for TestRepo {
    fn drop(&mut self) {
        if let Some(url) = &self.catalog
            && let Ok(url) = arch::repo::db::pg::CatalogUrl::parse(url)
            && let Ok(mut c) = arch::repo::db::pg::connect(&url)
        {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", url.schema));
        }
        // The test's objects, so that a whole suite's data never fills the store.
        if let Some(url) = &self.store {
            crate::stored::delete_all(url);
        }
    }
}

/// How to start the services of remote mode, for failure messages.
pub const START_SERVICES: &str = "\n(remote test mode: ARCH_TEST_CATALOG/ARCH_TEST_STORE are set; \
     start the servers first, e.g. `PG_PORT=55433 bash ../shared/services/postgres.sh start DIR; \
     set -a; . DIR/env; set +a; export ARCH_TEST_CATALOG=postgres://$PGUSER@$PGHOST:$PGPORT/$PGDATABASE`)";

/// The catalog server of remote mode (`ARCH_TEST_CATALOG`), without schema.
pub fn remote_catalog() -> Option<String> {
    std::env::var("ARCH_TEST_CATALOG")
        .ok()
        .filter(|s| !s.is_empty())
}

/// The bucket of remote mode (`ARCH_TEST_STORE`, `s3://BUCKET`).
pub fn remote_store() -> Option<String> {
    std::env::var("ARCH_TEST_STORE")
        .ok()
        .filter(|s| !s.is_empty())
}

/// True (and says so on stderr) for a test of the local block store (`blocks/`, `maps/`, `volumes/` files):
/// true only when the data is in a bucket (`ARCH_TEST_STORE`).
pub fn local_store_only(reason: &str) -> bool {
    skip_if(remote_store().is_some(), reason)
}

/// True (and says so on stderr) for a test of the SQLite catalog file (`meta/catalog.db`): true only when
/// the catalog is in PostgreSQL (`ARCH_TEST_CATALOG`).
pub fn local_catalog_only(reason: &str) -> bool {
    skip_if(remote_catalog().is_some(), reason)
}

fn skip_if(remote: bool, reason: &str) -> bool {
    if remote {
        eprintln!("skipped in remote mode: {reason}");
    }
    remote
}

/// Remote mode's one difference in what tests do (docs/TESTING.md "The whole suite in
/// remote mode"): the kill and signal trials of the crash tests run 1/REMOTE_SCALE as many
/// times, and the one test whose data is large (48 MiB, `crash_customize`) uses
/// 1/REMOTE_SCALE of it, when blocks live in a bucket (`ARCH_TEST_STORE`). Every block is a
/// request there (milliseconds, not the microseconds of a page-cache write), so a local trial
/// count costs minutes per test; each trial still checks the same property, at instants
/// spread over the whole command as locally.
pub const REMOTE_SCALE: u64 = 4;

/// `n` trials locally; n / [`REMOTE_SCALE`] (at least 4) with a remote store.
pub fn trials(n: u64) -> u64 {
    if remote_store().is_some() {
        (n / REMOTE_SCALE).max(4.min(n))
    } else {
        n
    }
}

/// `len` bytes locally; len / [`REMOTE_SCALE`] with a remote store.
pub fn scaled_len(len: usize) -> usize {
    if remote_store().is_some() {
        len / REMOTE_SCALE as usize
    } else {
        len
    }
}

/// A name no other test repository of any process uses: lower-case, digits and `_`.
pub fn unique_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{}_{}_{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl TestRepo {
    /// A new repository with the given block size (e.g. "4K", "4M"), without packs: every
    /// block is its own file `blocks/XX/<hash>` (tests that damage block files rely on it).
    pub fn with_block_size(bs: &str) -> TestRepo {
        TestRepo::with_packs(bs, "off")
    }

    /// A repository with 4 KiB blocks kept in packs (`packs/<id>`). Local store only: the
    /// caller returns early through [`local_store_only`] in remote-store mode.
    pub fn packed() -> TestRepo {
        TestRepo::with_packs("4K", "on")
    }

    /// A new repository of block size `bs` with `arch init --packs PACKS`.
    pub fn with_packs(bs: &str, packs: &str) -> TestRepo {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("repo");
        let unique = unique_name();
        let schema = remote_catalog().map(|url| (url, format!("t_{unique}")));
        let mut init = Command::new(bin());
        init.args(["init", "--block-size", bs, "--packs", packs])
            .arg(&root);
        if let Some((url, schema)) = &schema {
            init.arg("--catalog").arg(format!("{url}?schema={schema}"));
        }
        let store = remote_store().map(|bucket| format!("{bucket}/t-{unique}"));
        if let Some(store) = &store {
            init.arg("--store").arg(store);
        }
        let out = init.output().expect("run arch init");
        assert!(
            out.status.success(),
            "init failed: {}{}",
            stderr(&out),
            START_SERVICES
        );
        TestRepo {
            dir,
            root,
            catalog: schema.map(|(url, schema)| format!("{url}?schema={schema}")),
            store,
        }
    }

    /// A repository with 4 KiB blocks (small and fast for tests).
    pub fn new() -> TestRepo {
        TestRepo::with_block_size("4K")
    }

    /// A path for a scratch file in the temp directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a scratch file and returns its path.
    pub fn file(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, data).unwrap();
        p
    }

    /// `arch -R <repo> args...` with stdin closed.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin());
        c.arg("-R").arg(&self.root).env_remove("ARCH_REPO");
        c.stdin(Stdio::null());
        c
    }

    /// Runs arch with `args`.
    pub fn run<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Output {
        self.cmd().args(args).output().expect("run arch")
    }

    /// Runs arch with `args`, feeding `input` on stdin.
    pub fn run_stdin<S: AsRef<std::ffi::OsStr>>(&self, args: &[S], input: &[u8]) -> Output {
        use std::io::Write;
        let mut child = self
            .cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn arch");
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs arch, asserts exit 0, returns stdout.
    pub fn ok<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Vec<u8> {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "arch {:?} failed ({:?}): {}",
            args.iter()
                .map(|a| a.as_ref().to_owned())
                .collect::<Vec<_>>(),
            out.status.code(),
            stderr(&out)
        );
        out.stdout
    }

    /// Runs arch with `--json`, asserts exit 0, parses stdout.
    pub fn json<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> serde_json::Value {
        let mut all: Vec<std::ffi::OsString> = vec!["--json".into()];
        all.extend(args.iter().map(|a| a.as_ref().to_owned()));
        let out = self.ok(&all);
        serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("bad JSON ({e}): {}", String::from_utf8_lossy(&out)))
    }

    /// Runs arch, asserts it fails with exit code `code`, returns stderr.
    pub fn fails<S: AsRef<std::ffi::OsStr>>(&self, code: i32, args: &[S]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "expected exit {code}; stdout: {} stderr: {}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
        stderr(&out)
    }

    /// Every file under the repository with its length and content hash, sorted: equal
    /// snapshots mean the repository was not changed.
    /// In remote-catalog mode, every row of every table of the catalog schema is part of it
    /// (as `catalog:TABLE` entries); in remote-store mode, every object under the prefix
    /// (as `store:KEY` entries with length and ETag).
    pub fn snapshot(&self) -> Vec<(String, u64, String)> {
        let mut out = tree_snapshot(&self.root);
        if let Some(url) = &self.catalog {
            out.extend(catalog_dump(url));
        }
        if let Some(url) = &self.store {
            out.extend(crate::stored::store_dump(url));
        }
        out
    }
}

/// Takes the shared lock of volume `id` of `r` as a reader process would (its flock file, or
/// its PostgreSQL advisory lock in remote-catalog mode); held until dropped.
pub fn hold_volume_lock_shared(r: &TestRepo, id: &str) -> Box<dyn std::any::Any> {
    if let Some(url) = &r.catalog {
        let url = arch::repo::db::pg::CatalogUrl::parse(url).unwrap();
        let lock =
            arch::repo::db::pg::advisory::session_lock(&url, &format!("volume-{id}"), true, false)
                .unwrap()
                .expect("the volume lock is free");
        return Box::new(lock);
    }
    let lock = std::fs::File::open(r.root.join(format!("locks/volume-{id}.lock"))).unwrap();
    // SAFETY: flock on a descriptor we own.
    assert_eq!(
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_SH) },
        0
    );
    Box::new(lock)
}

/// Every row of every table of the catalog schema at `url`, in order, one entry per row.
pub fn catalog_dump(url: &str) -> Vec<(String, u64, String)> {
    let url = arch::repo::db::pg::CatalogUrl::parse(url).expect("catalog URL");
    let mut c = arch::repo::db::pg::connect(&url).expect("connect to the test catalog");
    let tables: Vec<String> = c
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 \
             ORDER BY 1",
            &[&url.schema],
        )
        .expect("list catalog tables")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut out = Vec::new();
    for t in tables {
        let rows = c
            .query(&format!("SELECT r::text FROM \"{t}\" r ORDER BY 1"), &[])
            .expect("dump catalog table");
        for r in rows {
            out.push((format!("catalog:{t}"), 0, r.get::<_, String>(0)));
        }
    }
    out
}

/// Path of the arch binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_arch")
}

/// Lossy stderr text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Files under `root` (lock files excluded: taking a lock may create one) with their sizes
/// and sha256.
pub fn tree_snapshot(root: &Path) -> Vec<(String, u64, String)> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(root).sort_by_file_name() {
        let e = e.unwrap();
        if !e.file_type().is_file() {
            continue;
        }
        let rel = e.path().strip_prefix(root).unwrap().display().to_string();
        if rel.starts_with("locks/") {
            continue;
        }
        let data = std::fs::read(e.path()).unwrap();
        let h = arch::storage::BlockHash::of_bytes(&data).to_hex();
        out.push((rel, data.len() as u64, h));
    }
    out
}

/// Deterministic pseudo-random bytes (xorshift), so tests need no RNG crate.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A xorshift generator for random instants and offsets in tests (no RNG crate needed).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Runs `arch args`, sends `signal` after `delay` unless it finished first; returns its
/// exit status.
pub fn run_and_signal(
    r: &TestRepo,
    args: &[&str],
    delay: std::time::Duration,
    signal: i32,
) -> std::process::ExitStatus {
    let mut child = r
        .cmd()
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while start.elapsed() < delay {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(std::time::Duration::from_micros(500));
    }
    // SAFETY: kill(2) on our own child, which is not reaped yet.
    unsafe { libc::kill(child.id() as i32, signal) };
    child.wait().unwrap()
}
