//! `arch serve`: real NBD clients (qemu-img, qemu-io, nbdinfo, nbdcopy) against volumes and
//! read-only resources; writers refused while served; signals; bad clients; durability.

use crate::util::{TestRepo, pseudo_random, stderr};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// A running `arch serve`, stopped with SIGTERM when dropped.
pub struct Server {
    pub child: Child,
    /// `name -> uri`, from the `--json` lines.
    pub uris: Vec<(String, String)>,
}

impl Server {
    pub fn start(repo: &TestRepo, args: &[&str]) -> Server {
        let mut child = repo
            .cmd()
            .arg("--json")
            .arg("serve")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn arch serve");
        let names = args.iter().take_while(|a| !a.starts_with("--")).count();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut uris = Vec::new();
        for _ in 0..names {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            if line.is_empty() {
                let mut err = String::new();
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                panic!("arch serve ended before listening: {err}");
            }
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            uris.push((
                v["name"].as_str().unwrap().to_string(),
                v["uri"].as_str().unwrap().to_string(),
            ));
        }
        Server { child, uris }
    }

    pub fn uri(&self, name: &str) -> &str {
        &self.uris.iter().find(|(n, _)| n == name).unwrap().1
    }

    pub fn socket(&self) -> PathBuf {
        PathBuf::from(self.uris[0].1.split("socket=").nth(1).unwrap())
    }

    /// SIGTERM, then the exit status and stderr.
    pub fn stop(mut self) -> (Option<i32>, String) {
        signal(self.child.id(), libc::SIGTERM);
        let status = self.child.wait().unwrap();
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status.code(), err)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            signal(self.child.id(), libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid as i32, sig) };
}

pub fn tool(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{} is needed (qemu-utils, libnbd-bin): {e}", args[0]));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    out
}

/// A repository with 4 KiB blocks, an image (random data then zeros) and volume `vm1` cloned
/// from it; returns the image bytes.
pub fn setup(len: usize) -> (TestRepo, Vec<u8>) {
    let repo = TestRepo::new();
    let mut img = pseudo_random(len / 2, 7);
    img.resize(len, 0);
    let f = repo.file("img.raw", &img);
    repo.ok(&["put", f.to_str().unwrap(), "images/img.raw"]);
    repo.ok(&["clone", "images/img.raw", "vm1"]);
    (repo, img)
}

fn export(repo: &TestRepo, name: &str) -> Vec<u8> {
    let out = repo.path(&format!("{name}.export"));
    repo.ok(&[
        "volume",
        "export",
        name,
        "-o",
        out.to_str().unwrap(),
        "--force",
    ]);
    std::fs::read(out).unwrap()
}

fn compare(a: &str, b: &Path) {
    tool(&[
        "qemu-img",
        "compare",
        "-f",
        "raw",
        "-F",
        "raw",
        a,
        b.to_str().unwrap(),
    ]);
}

#[test]
fn qemu_io_patterns_at_unaligned_offsets_are_what_the_volume_holds() {
    let (repo, img) = setup(256 << 10);
    let srv = Server::start(&repo, &["vm1"]);
    let sock = srv.socket();
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let uri = srv.uri("vm1").to_string();
    let info = String::from_utf8(tool(&["qemu-img", "info", &uri]).stdout).unwrap();
    assert!(info.contains("262144 bytes"), "{info}");
    // Random (also unaligned, also block-crossing) writes, each verified by a read.
    let mut model = img.clone();
    let mut cmds = Vec::new();
    let mut x = 12345u64;
    for i in 0..40 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let off = (x >> 33) as usize % (250 << 10);
        let len = 1 + (x >> 13) as usize % 9000;
        let len = len.min(model.len() - off);
        let pat = (i * 7 + 1) as u8;
        model[off..off + len].fill(pat);
        cmds.push(format!("write -P {pat} {off} {len}"));
        cmds.push(format!("read -P {pat} {off} {len}"));
    }
    cmds.push("flush".into());
    let mut args = vec!["qemu-io", "-f", "raw"];
    for c in &cmds {
        args.extend(["-c", c.as_str()]);
    }
    args.push(&uri);
    let out = String::from_utf8(tool(&args).stdout).unwrap();
    assert!(!out.contains("Pattern verification failed"), "{out}");
    let model_file = repo.file("model.raw", &model);
    compare(&uri, &model_file);
    // Readers work while it is served; what they read is what the client wrote.
    assert_eq!(export(&repo, "vm1"), model);
    let (code, err) = srv.stop();
    assert_eq!(code, Some(0), "{err}");
    assert!(!sock.exists(), "socket removed at exit");
    assert_eq!(export(&repo, "vm1"), model);
    // Copy-on-write: the image is untouched, only touched blocks are private.
    let got = repo.path("img.get");
    repo.ok(&["get", "images/img.raw", "-o", got.to_str().unwrap()]);
    assert_eq!(std::fs::read(got).unwrap(), img);
    let v = repo.json(&["fsck"]);
    assert_eq!(v["problems"], serde_json::json!([]), "{v}");
}

#[test]
fn nbdinfo_nbdcopy_and_qemu_img_convert_from_and_to_the_uri() {
    let (repo, img) = setup(128 << 10);
    let srv = Server::start(&repo, &["vm1", "images/img.raw", "--shared", "2"]);
    let list = String::from_utf8(tool(&["nbdinfo", "--list", srv.uri("vm1")]).stdout).unwrap();
    assert!(
        list.contains("export=\"vm1\"") && list.contains("export=\"images/img.raw\""),
        "{list}"
    );
    // Read-only image: its content, and writes refused.
    let copy = repo.path("copy.raw");
    tool(&["nbdcopy", srv.uri("images/img.raw"), copy.to_str().unwrap()]);
    assert_eq!(std::fs::read(&copy).unwrap(), img);
    let w = Command::new("qemu-io")
        .args(["-f", "raw", "-c", "write 0 512", srv.uri("images/img.raw")])
        .output()
        .unwrap();
    assert!(!w.status.success() || String::from_utf8_lossy(&w.stdout).contains("failed"));
    // qemu-img convert a new content into the volume, then out of it as qcow2.
    let new = pseudo_random(128 << 10, 99);
    let src = repo.file("new.raw", &new);
    tool(&[
        "qemu-img",
        "convert",
        "-n",
        "-f",
        "raw",
        "-O",
        "raw",
        src.to_str().unwrap(),
        srv.uri("vm1"),
    ]);
    let q = repo.path("out.qcow2");
    tool(&[
        "qemu-img",
        "convert",
        "-f",
        "raw",
        "-O",
        "qcow2",
        srv.uri("vm1"),
        q.to_str().unwrap(),
    ]);
    tool(&[
        "qemu-img",
        "compare",
        "-F",
        "raw",
        q.to_str().unwrap(),
        src.to_str().unwrap(),
    ]);
    let (code, err) = srv.stop();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(export(&repo, "vm1"), new);
}

#[test]
fn writers_are_refused_naming_the_server_and_readers_work() {
    let (repo, _) = setup(64 << 10);
    let srv = Server::start(&repo, &["vm1"]);
    let pid = srv.child.id().to_string();
    let before = repo.snapshot();
    let data = repo.file("d", b"x");
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
        vec!["serve", "vm1"],
    ] {
        let err = repo.fails(2, &args);
        assert!(
            err.contains("served read-write") && err.contains(&pid),
            "{args:?}: {err}"
        );
    }
    assert_eq!(repo.snapshot(), before);
    repo.ok(&["volume", "read", "vm1", "--offset", "0", "--length", "10"]);
    assert_eq!(srv.stop().0, Some(0));
    // Once stopped, writers work again.
    repo.ok(&["volume", "resize", "vm1", "1M"]);
}

/// `qemu-img map --output=json` of `uri` as `(start, length, zero, data)`.
fn map(uri: &str) -> Vec<(u64, u64, bool, bool)> {
    let out = tool(&["qemu-img", "map", "--output=json", "-f", "raw", uri]).stdout;
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["start"].as_u64().unwrap(),
                e["length"].as_u64().unwrap(),
                e["zero"].as_bool().unwrap(),
                e["data"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[test]
fn zeroed_blocks_keep_no_private_data_and_the_map_shows_holes() {
    // 64 KiB: blocks 0-7 data (random), 8-15 zero, 4 KiB blocks.
    let (repo, img) = setup(64 << 10);
    let srv = Server::start(&repo, &["vm1"]);
    let uri = srv.uri("vm1").to_string();
    assert_eq!(
        map(&uri),
        vec![(0, 32768, false, true), (32768, 32768, true, false)]
    );
    tool(&[
        "qemu-io",
        "-f",
        "raw",
        "-c",
        "write -z 0 8192", // two shared data blocks: zeroed, no data kept
        "-c",
        "write -P 1 40960 100", // a zero block becomes private
        "-c",
        "write -P 2 20000 10", // a shared block copied
        "-c",
        "discard 20480 4096", // then discarded whole
        "-c",
        "write -z 45000 10", // part of a private block: zeros written
        "-c",
        "flush",
        &uri,
    ]);
    let mut model = img.clone();
    model[..8192].fill(0);
    model[40960..41060].fill(1);
    model[20000..20010].fill(2);
    model[20480..24576].fill(0);
    compare(&uri, &repo.file("model.raw", &model));
    assert_eq!(
        map(&uri),
        vec![
            (0, 8192, true, false),
            (8192, 12288, false, true),
            (20480, 4096, true, false),
            (24576, 8192, false, true),
            (32768, 8192, true, false),
            (40960, 4096, false, true),
            (45056, 20480, true, false),
        ]
    );
    assert_eq!(srv.stop().0, Some(0));
    // On disk: the zeroed blocks 0, 1 and 5 are private files holding no data.
    let v = repo.json(&["volume", "info", "vm1"]);
    let id = v["id"].as_str().unwrap();
    let dir = repo.root.join("volumes").join(id).join("1");
    for i in [0, 1, 5] {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(dir.join(i.to_string())).unwrap();
        assert_eq!(m.blocks(), 0, "block {i} keeps no data");
    }
    assert_eq!(export(&repo, "vm1"), model);
    // A snapshot stores them as zero blocks: its map has data only where data is.
    repo.ok(&["snapshot", "vm1", "s1"]);
    repo.ok(&["clone", "snapshots/s1", "vm2"]);
    assert_eq!(export(&repo, "vm2"), model);
}
