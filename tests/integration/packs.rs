//! Repositories with packs (`arch init --packs on`, 4 KiB blocks): every block is stored in
//! `packs/<id>`, never as its own file, and every command reads them back: put/get, cp,
//! clone + write + snapshot, send | receive, `arch serve`; a damaged pack is a clear error;
//! concurrent and killed puts leave a consistent repository.

use crate::serve::{RawClient, Server};
use crate::util::{TestRepo, local_store_only, pseudo_random, run_and_signal, stderr};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

const BS: usize = 4096;

/// The pack files of `r` (paths).
fn packs(r: &TestRepo) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(r.root.join("packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// Loose block files under `blocks/`.
fn loose_blocks(root: &Path) -> usize {
    walkdir::WalkDir::new(root.join("blocks"))
        .into_iter()
        .filter(|e| e.as_ref().unwrap().file_type().is_file())
        .count()
}

fn no_damage(r: &TestRepo) {
    let f = r.json(&["fsck", "--read-data"]);
    assert_eq!(f["problems"], json!([]), "{f}");
}

#[test]
fn objects_spanning_several_packs_put_get_and_cp() {
    if local_store_only("packs are kept in a local store only") {
        return;
    }
    let r = TestRepo::packed();
    let info = r.json(&["info"]);
    assert_eq!(
        (info["format"].clone(), info["packs"].clone()),
        (json!(2), json!(true))
    );
    // 17 MiB of 4 KiB blocks (more than one 16 MiB pack), with zero blocks and repeats.
    let mut big = pseudo_random(17 << 20, 1);
    big[3 * BS..7 * BS].fill(0);
    let repeat = big[10 * BS..11 * BS].to_vec();
    big[20 * BS..21 * BS].copy_from_slice(&repeat);
    let small = [&big[..8 * BS], &pseudo_random(5 * BS + 17, 2)[..]].concat();
    r.ok(&["put", r.file("big", &big).to_str().unwrap(), "c/big"]);
    r.ok(&["put", r.file("small", &small).to_str().unwrap(), "c/small"]);
    assert!(packs(&r).len() >= 2, "{:?}", packs(&r));
    assert_eq!(loose_blocks(&r.root), 0, "no block is its own file");
    assert_eq!(r.ok(&["get", "c/big"]), big);
    assert_eq!(r.ok(&["get", "c/small"]), small);
    let out = r.path("big.out");
    r.ok(&["get", "c/big", "-o", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), big);
    r.ok(&["cp", "c/big", "c/copy"]);
    assert_eq!(r.ok(&["get", "c/copy"]), big);
    // The second put stored only its new blocks: data in packs = distinct non-zero blocks.
    let stored: u64 = packs(&r).iter().map(|p| p.metadata().unwrap().len()).sum();
    let distinct = 17 * 256 - 4 - 1 + 2;
    assert!(stored >= (distinct * BS) as u64 - BS as u64, "{stored}");
    assert!(
        stored < ((distinct + 1) * BS + 40 * distinct + 4096) as u64,
        "{stored}"
    );
    no_damage(&r);
}

#[test]
fn clone_write_snapshot_send_receive_and_serve_of_a_packed_volume() {
    if local_store_only("packs are kept in a local store only") {
        return;
    }
    let r = TestRepo::packed();
    let mut img = pseudo_random(64 * BS, 3);
    img[40 * BS..].fill(0);
    r.ok(&[
        "put",
        r.file("img", &img).to_str().unwrap(),
        "images/img.raw",
    ]);
    r.ok(&["clone", "images/img.raw", "vm", "--no-customize"]);
    let patch = pseudo_random(3 * BS + 100, 4);
    r.run_stdin(&["volume", "write", "vm", "--offset", "5000"], &patch);
    let mut expected = img.clone();
    expected[5000..5000 + patch.len()].copy_from_slice(&patch);
    r.ok(&["snapshot", "vm", "s1"]);
    assert_eq!(r.ok(&["get", "snapshots/s1"]), expected);
    assert_eq!(loose_blocks(&r.root), 0);
    // Send | receive into a packed and into a loose repository.
    let stream = r.ok(&["send", "images/img.raw", "snapshots/s1", "vm"]);
    for dest in [TestRepo::packed(), TestRepo::new()] {
        let out = dest.run_stdin(&["receive"], &stream);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(dest.ok(&["get", "snapshots/s1"]), expected);
        assert_eq!(dest.ok(&["get", "images/img.raw"]), img);
        assert_eq!(
            dest.ok(&["volume", "read", "vm", "--offset", "0"]),
            expected
        );
        no_damage(&dest);
    }
    // `arch serve`: whole blocks (sent from the pack at the block's offset) and unaligned
    // spans (copied out of it).
    let srv = Server::start(&r, &["vm", "--read-only"]);
    let mut c = RawClient::connect(&srv.socket(), "vm");
    for (off, len) in [
        (0, BS),
        (8 * BS, BS),
        (5000, 3 * BS),
        (39 * BS + 7, 2 * BS),
        (0, 64 * BS),
    ] {
        assert_eq!(
            c.request(0, off as u64, len as u32, &[]),
            (0, expected[off..off + len].to_vec()),
            "{off}+{len}"
        );
    }
    drop(c);
    let (code, err) = srv.stop();
    assert_eq!(code, Some(0), "{err}");
    no_damage(&r);
}

#[test]
fn a_flipped_byte_in_a_pack_is_a_corrupt_block_naming_the_pack() {
    if local_store_only("packs are kept in a local store only") {
        return;
    }
    let r = TestRepo::packed();
    let data = pseudo_random(8 * BS, 5);
    r.ok(&["put", r.file("d", &data).to_str().unwrap(), "c/x"]);
    let [pack] = &packs(&r)[..] else {
        panic!("one pack expected: {:?}", packs(&r));
    };
    // A byte of the data region (the third block): the index stays valid.
    let mut bytes = std::fs::read(pack).unwrap();
    bytes[2 * BS + 9] ^= 0x10;
    std::fs::remove_file(pack).unwrap();
    std::fs::write(pack, &bytes).unwrap();
    let err = r.fails(2, &["get", "c/x"]);
    assert!(err.contains("corrupted block"), "{err}");
    let name = pack.file_name().unwrap().to_str().unwrap();
    assert!(
        err.contains(&format!("packs/{name}")),
        "the pack is named: {err}"
    );
    assert!(err.contains(&format!("byte {}", 2 * BS)), "{err}");
    // Its index damaged too: the blocks are missing, a clear error, never a panic.
    let n = bytes.len();
    bytes[n - 30] ^= 1;
    std::fs::remove_file(pack).unwrap();
    std::fs::write(pack, &bytes).unwrap();
    let err = r.fails(2, &["get", "c/x"]);
    assert!(err.contains("missing block"), "{err}");
}

#[test]
fn two_puts_at_once_both_readable() {
    if local_store_only("packs are kept in a local store only") {
        return;
    }
    let r = TestRepo::packed();
    let datas: Vec<Vec<u8>> = (0..2).map(|i| pseudo_random(3 << 20, 20 + i)).collect();
    // Both share a run of blocks, so both may pack the same block: each is still read back.
    let shared = datas[0][..64 * BS].to_vec();
    let datas: Vec<Vec<u8>> = datas
        .into_iter()
        .map(|mut d| {
            d[..64 * BS].copy_from_slice(&shared);
            d
        })
        .collect();
    let paths: Vec<_> = (0..2)
        .map(|i| r.file(&format!("d{i}"), &datas[i]))
        .collect();
    std::thread::scope(|s| {
        for (i, p) in paths.iter().enumerate() {
            let r = &r;
            s.spawn(move || r.ok(&["put", p.to_str().unwrap(), &format!("c/{i}")]));
        }
    });
    for (i, d) in datas.iter().enumerate() {
        assert_eq!(&r.ok(&["get", &format!("c/{i}")]), d);
    }
    no_damage(&r);
}

#[test]
fn put_killed_at_any_instant_leaves_a_consistent_packed_repository() {
    use std::os::unix::process::ExitStatusExt;
    if local_store_only("packs are kept in a local store only") {
        return;
    }
    let r = TestRepo::packed();
    let size = 2 << 20;
    let first = r.file("v0", &pseudo_random(size, 1));
    let t = Instant::now();
    r.ok(&["put", first.to_str().unwrap(), "c/x"]);
    let full = t.elapsed().as_micros() as u64 + 1;
    let mut current = std::fs::read(&first).unwrap();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for trial in 0..crate::util::trials(12) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let next = pseudo_random(size, 100 + trial);
        let path = r.file("next", &next);
        let delay = Duration::from_micros(rng % (full + full / 4));
        let status = run_and_signal(
            &r,
            &["put", path.to_str().unwrap(), "c/x"],
            delay,
            libc::SIGKILL,
        );
        let got = r.ok(&["get", "c/x"]);
        assert!(
            got == current || got == next,
            "trial {trial}: a mix is visible"
        );
        if status.signal() != Some(libc::SIGKILL) {
            assert_eq!(got, next, "trial {trial}: a finished put is visible");
        }
        current = got;
    }
    // Whatever the kills left (a batch directory, whole packs nobody references) is garbage,
    // never damage.
    no_damage(&r);
}

#[test]
fn init_packs_auto_on_off_and_refused_with_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let init = |name: &str, args: &[&str]| {
        let root = dir.path().join(name);
        let out = std::process::Command::new(crate::util::bin())
            .args(["--json", "init"])
            .args(args)
            .arg(&root)
            .output()
            .unwrap();
        (root, out)
    };
    for (name, args, packs) in [
        ("auto4k", &["--block-size", "4K"][..], true),
        ("auto64k", &["--block-size", "64K"][..], true),
        ("auto4m", &[][..], false),
        (
            "off4k",
            &["--block-size", "4K", "--packs", "off"][..],
            false,
        ),
        ("on4m", &["--packs", "on"][..], true),
    ] {
        let (root, out) = init(name, args);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["packs"], packs, "{name}");
        assert_eq!(report["format"], if packs { 2 } else { 1 }, "{name}");
        let toml = std::fs::read_to_string(root.join("arch.toml")).unwrap();
        assert_eq!(toml.contains("packs = true"), packs, "{name}: {toml}");
        assert_eq!(root.join("packs").is_dir(), packs, "{name}");
    }
    let (root, out) = init("s3", &["--packs", "on", "--store", "s3://bucket/p"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--packs off"), "{}", stderr(&out));
    assert!(!root.exists(), "nothing made");
}

/// `arch serve` writing a packed volume: first-touch copy-on-write of packed blocks (mapped
/// from their packs), a snapshot taken while served commits its blocks as packs, and writes
/// go on in the new epoch; the snapshot and the volume then read back exactly.
#[test]
fn writes_and_a_snapshot_while_a_packed_volume_is_served() {
    if local_store_only("packs are kept in a local store only") {
        return;
    }
    let r = TestRepo::packed();
    let img = pseudo_random(32 * BS, 9);
    r.ok(&[
        "put",
        r.file("img", &img).to_str().unwrap(),
        "images/img.raw",
    ]);
    r.ok(&["clone", "images/img.raw", "vm", "--no-customize"]);
    let packs_before = packs(&r).len();
    let srv = Server::start(&r, &["vm"]);
    let mut c = RawClient::connect(&srv.socket(), "vm");
    // Unaligned writes straddling two shared blocks, acknowledged but not flushed.
    let first = pseudo_random(BS + 300, 10);
    assert_eq!(
        c.request(1, (3 * BS - 100) as u64, first.len() as u32, &first)
            .0,
        0
    );
    let v = r.json(&["snapshot", "vm", "s1"]);
    assert_eq!(v["object"], "snapshots/s1");
    let second = pseudo_random(500, 11);
    assert_eq!(
        c.request(1, (3 * BS) as u64, second.len() as u32, &second)
            .0,
        0
    );
    assert_eq!(c.request(3, 0, 0, &[]).0, 0, "flush");
    let mut at_snapshot = img.clone();
    at_snapshot[3 * BS - 100..3 * BS - 100 + first.len()].copy_from_slice(&first);
    let mut now = at_snapshot.clone();
    now[3 * BS..3 * BS + second.len()].copy_from_slice(&second);
    assert_eq!(c.request(0, 0, (32 * BS) as u32, &[]), (0, now.clone()));
    drop(c);
    let (code, err) = srv.stop();
    assert_eq!(code, Some(0), "{err}");
    assert!(
        packs(&r).len() > packs_before,
        "the snapshot's blocks went into a pack"
    );
    assert_eq!(loose_blocks(&r.root), 0);
    assert_eq!(r.ok(&["get", "snapshots/s1"]), at_snapshot);
    assert_eq!(r.ok(&["volume", "read", "vm", "--offset", "0"]), now);
    no_damage(&r);
}

/// A loose block file in a packed repository (arch writes none; put there by hand) is read,
/// checked and collected like any copy, and a put of the same block packs it beside it.
#[test]
fn a_loose_copy_beside_packs_is_read_checked_and_collected() {
    if local_store_only("packs are kept in a local store only") {
        return;
    }
    let r = TestRepo::packed();
    let mut data = pseudo_random(4 * BS, 12);
    data[BS - 1] = 1; // no trailing zero: the first block is stored whole
    let hex = arch::storage::BlockHash::of_bytes(&data[..BS]).to_hex();
    let loose = r.root.join("blocks").join(&hex[..2]).join(&hex);
    std::fs::write(&loose, &data[..BS]).unwrap();
    r.ok(&["put", r.file("d", &data).to_str().unwrap(), "c/d"]);
    let g = r.json(&["put", r.file("d", &data).to_str().unwrap(), "c/again"]);
    assert_eq!(g["blocks_written"], 0, "{g}");
    let stored: u64 = packs(&r).iter().map(|p| p.metadata().unwrap().len()).sum();
    assert!(stored > (4 * BS) as u64, "all four blocks packed: {stored}");
    assert_eq!(r.ok(&["get", "c/d"]), data);
    no_damage(&r);
    // Both copies are live while a map names the block; gc keeps them, then frees both.
    r.json(&["gc"]);
    assert!(loose.exists());
    assert_eq!(r.ok(&["get", "c/again"]), data);
    r.ok(&["rm", "c/d"]);
    r.ok(&["rm", "c/again"]);
    let g = r.json(&["gc"]);
    assert_eq!(g["blocks_freed"], 5, "four packed, one loose: {g}");
    assert!(!loose.exists() && packs(&r).is_empty());
    no_damage(&r);
}
