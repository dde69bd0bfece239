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

pub fn export(repo: &TestRepo, name: &str) -> Vec<u8> {
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
    // --read-only: clients cannot write, arch readers work.
    let srv = Server::start(&repo, &["vm1", "--read-only"]);
    let w = Command::new("qemu-io")
        .args(["-f", "raw", "-c", "write -P 9 0 512", srv.uri("vm1")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&w.stdout).to_string() + &stderr(&w);
    assert!(!w.status.success() || text.contains("failed"), "{text}");
    repo.ok(&["volume", "read", "vm1", "--offset", "0", "--length", "10"]);
    assert_eq!(srv.stop().0, Some(0));
    // Removing the volume removes its serve lock and server info too.
    repo.ok(&["volume", "rm", "vm1"]);
    let left: Vec<_> = std::fs::read_dir(repo.root.join("locks"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("serve-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
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
    // Stored: the zeroed blocks 0, 1 and 5 are private blocks holding no data (files with
    // no allocated blocks, empty objects).
    let v = repo.json(&["volume", "info", "vm1"]);
    let id = v["id"].as_str().unwrap();
    for i in [0, 1, 5] {
        let rel = crate::stored::private_rel(id, 1, i);
        assert!(
            crate::stored::holds_no_data(&repo, &rel),
            "block {i} keeps no data"
        );
    }
    assert_eq!(export(&repo, "vm1"), model);
    // A snapshot stores them as zero blocks: its map has data only where data is.
    repo.ok(&["snapshot", "vm1", "s1"]);
    repo.ok(&["clone", "snapshots/s1", "vm2"]);
    assert_eq!(export(&repo, "vm2"), model);
}

/// A minimal NBD client over the Unix socket (fixed newstyle, NBD_OPT_EXPORT_NAME, simple
/// replies), to hold a connection open and to misbehave on purpose.
pub struct RawClient(pub std::os::unix::net::UnixStream);

impl RawClient {
    pub fn connect(socket: &Path, export: &str) -> RawClient {
        use std::io::Write;
        let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
        let mut greet = [0u8; 18];
        s.read_exact(&mut greet).unwrap();
        assert_eq!(&greet[..16], b"NBDMAGICIHAVEOPT");
        s.write_all(&3u32.to_be_bytes()).unwrap(); // fixed newstyle, no zeroes
        let mut opt = b"IHAVEOPT".to_vec();
        opt.extend_from_slice(&1u32.to_be_bytes());
        opt.extend_from_slice(&(export.len() as u32).to_be_bytes());
        opt.extend_from_slice(export.as_bytes());
        s.write_all(&opt).unwrap();
        let mut info = [0u8; 10];
        s.read_exact(&mut info).unwrap();
        RawClient(s)
    }

    /// Sends one request (with `data` for a write) and returns the reply's error.
    pub fn request(&mut self, kind: u16, offset: u64, length: u32, data: &[u8]) -> (u32, Vec<u8>) {
        use std::io::Write;
        let mut r = vec![0x25, 0x60, 0x95, 0x13, 0, 0];
        r.extend_from_slice(&kind.to_be_bytes());
        r.extend_from_slice(&42u64.to_be_bytes());
        r.extend_from_slice(&offset.to_be_bytes());
        r.extend_from_slice(&length.to_be_bytes());
        r.extend_from_slice(data);
        self.0.write_all(&r).unwrap();
        let mut reply = [0u8; 16];
        self.0.read_exact(&mut reply).unwrap();
        assert_eq!(&reply[..4], &[0x67, 0x44, 0x66, 0x98]);
        let err = u32::from_be_bytes(reply[4..8].try_into().unwrap());
        let mut payload = Vec::new();
        if kind == 0 && err == 0 {
            payload.resize(length as usize, 0);
            self.0.read_exact(&mut payload).unwrap();
        }
        (err, payload)
    }
}

#[test]
fn snapshot_while_served_holds_every_acknowledged_write_and_serving_goes_on() {
    let (repo, img) = setup(64 << 10);
    let srv = Server::start(&repo, &["vm1"]);
    let mut vm = RawClient::connect(&srv.socket(), "vm1");
    // Acknowledged but not flushed: the snapshot must still hold it.
    assert_eq!(vm.request(1, 5000, 6, b"before").0, 0);
    let v = repo.json(&["snapshot", "vm1", "s1"]);
    assert_eq!(v["object"], "snapshots/s1");
    // The same connection goes on, in the volume's new epoch.
    assert_eq!(vm.request(1, 5000, 6, b"after!").0, 0);
    let mut expect = img[4998..5008].to_vec();
    expect[2..8].copy_from_slice(b"after!");
    assert_eq!(vm.request(0, 4998, 10, &[]).1, expect);
    assert_eq!(vm.request(3, 0, 0, &[]).0, 0);
    // SIGTERM with the client still connected: it is let go, the server exits 0.
    assert_eq!(srv.stop().0, Some(0));
    drop(vm);
    let mut at_snapshot = img.clone();
    at_snapshot[5000..5006].copy_from_slice(b"before");
    repo.ok(&["clone", "snapshots/s1", "vm2"]);
    assert_eq!(export(&repo, "vm2"), at_snapshot);
    let mut now = img.clone();
    now[5000..5006].copy_from_slice(b"after!");
    assert_eq!(export(&repo, "vm1"), now);
    let v = repo.json(&["fsck"]);
    assert_eq!(v["problems"], serde_json::json!([]), "{v}");
}

#[test]
fn bad_clients_get_errors_or_are_dropped_and_others_go_on() {
    use std::io::Write;
    let (repo, img) = setup(64 << 10);
    let srv = Server::start(&repo, &["vm1", "--shared", "4"]);
    let sock = srv.socket();
    // Garbage instead of a handshake.
    let mut g = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    let _ = g.write_all(b"GET / HTTP/1.1\r\n\r\n");
    let mut rest = Vec::new();
    let _ = g.read_to_end(&mut rest);
    // Errors the spec defines, on a connection that goes on.
    let mut c = RawClient::connect(&sock, "vm1");
    assert_eq!(
        c.request(0, 65530, 100, &[]).0,
        22,
        "read past the end: EINVAL"
    );
    assert_eq!(
        c.request(1, 65530, 10, b"0123456789").0,
        28,
        "write past the end: ENOSPC"
    );
    assert_eq!(c.request(77, 0, 0, &[]).0, 22, "unknown command: EINVAL");
    assert_eq!(c.request(0, 0, 4, &[]).1, img[..4].to_vec());
    // Garbage in transmission, and a disconnect in the middle of a write: dropped.
    c.0.write_all(&[0xffu8; 28]).unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(c.0.read(&mut buf).unwrap_or(0), 0);
    let mut d = RawClient::connect(&sock, "vm1");
    let mut half = vec![0x25, 0x60, 0x95, 0x13, 0, 0, 0, 1];
    half.extend_from_slice(&1u64.to_be_bytes());
    half.extend_from_slice(&0u64.to_be_bytes());
    half.extend_from_slice(&4096u32.to_be_bytes());
    half.extend_from_slice(&[0xee; 100]);
    d.0.write_all(&half).unwrap();
    drop(d);
    // The server and a well-behaved client go on; the half write was never applied.
    let uri = srv.uri("vm1").to_string();
    compare(&uri, &repo.file("img.raw2", &img));
    assert_eq!(srv.stop().0, Some(0));
    assert_eq!(export(&repo, "vm1"), img);
}

#[test]
fn kill_9_after_a_flush_reply_keeps_the_flushed_data_and_fsck_is_clean() {
    let (repo, img) = setup(64 << 10);
    let srv = Server::start(&repo, &["vm1"]);
    let mut vm = RawClient::connect(&srv.socket(), "vm1");
    assert_eq!(vm.request(1, 100, 5, b"first").0, 0);
    assert_eq!(vm.request(1, 40000, 6, b"second").0, 0);
    assert_eq!(vm.request(3, 0, 0, &[]).0, 0, "FLUSH answered");
    // After the flush: may be lost, or there; nothing else may change.
    assert_eq!(vm.request(1, 20000, 5, b"third").0, 0);
    signal(srv.child.id(), libc::SIGKILL);
    drop(vm);
    drop(srv);
    let got = export(&repo, "vm1");
    let mut flushed = img.clone();
    flushed[100..105].copy_from_slice(b"first");
    flushed[40000..40006].copy_from_slice(b"second");
    let mut all = flushed.clone();
    all[20000..20005].copy_from_slice(b"third");
    assert!(
        got == flushed || got == all,
        "flushed writes kept, nothing else changed"
    );
    let v = repo.json(&["fsck"]);
    assert_eq!(v["problems"], serde_json::json!([]), "{v}");
    // Copy-on-write: only the touched blocks (0, 9 and perhaps 4) became private.
    let id = repo.json(&["volume", "info", "vm1"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let private = crate::stored::private_blocks(&repo, &id, 1);
    assert!(private == [0, 9] || private == [0, 4, 9], "{private:?}");
    // The server is gone: writers work again (its stale lock is free).
    repo.ok(&["volume", "resize", "vm1", "128K"]);
}
