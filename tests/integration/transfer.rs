//! send/receive/copy between repositories, diff and volume rollback, through the real binary.

use crate::util::{TestRepo, pseudo_random, stderr};
use arch::storage::BlockHash;
use arch::stream::StreamWriter;
use serde_json::{Value, json};

const BS: usize = 4096;

/// A repository holding one of each kind: a plain object, an image with properties, a
/// snapshot, and a volume with private blocks (data and a zeroed block) over the snapshot.
pub fn populated() -> TestRepo {
    let r = TestRepo::new();
    let mut data = pseudo_random(40 * BS + 100, 1);
    data[5 * BS..9 * BS].fill(0);
    r.ok(&["put", r.file("a", &data).to_str().unwrap(), "files/a.bin"]);
    let img = pseudo_random(30 * BS, 2);
    r.ok(&["put", r.file("i", &img).to_str().unwrap(), "images/os.raw"]);
    r.ok(&[
        "image",
        "register",
        "images/os.raw",
        "--name",
        "OS",
        "--property",
        "OSFAMILY=linux",
        "--property",
        "ROOT_PARTITION=1",
    ]);
    r.ok(&[
        "clone",
        "images/os.raw",
        "vm",
        "--size",
        "200K",
        "--no-customize",
    ]);
    write(&r, "vm", 3 * BS + 7, &pseudo_random(2 * BS, 3));
    r.ok(&["snapshot", "vm", "s1"]);
    write(&r, "vm", 10 * BS, &pseudo_random(3 * BS, 4));
    write(&r, "vm", 0, &vec![0u8; BS]);
    r
}

pub fn write(r: &TestRepo, vol: &str, offset: usize, data: &[u8]) {
    let f = r.file("w", data);
    r.ok(&[
        "volume",
        "write",
        vol,
        "--offset",
        &offset.to_string(),
        f.to_str().unwrap(),
    ]);
}

pub fn read(r: &TestRepo, vol: &str) -> Vec<u8> {
    r.ok(&["volume", "read", vol, "--offset", "0"])
}

fn no_damage(r: &TestRepo) {
    let f = r.json(&["fsck", "--read-data"]);
    assert_eq!(f["problems"], json!([]), "{f}");
}

/// Sends `names` (and `extra` arguments) to a file, returns its bytes and the report.
fn send(r: &TestRepo, names: &[&str], extra: &[&str]) -> (Vec<u8>, Value) {
    let out = r.path("stream");
    let _ = std::fs::remove_file(&out);
    let mut args = vec!["send"];
    args.extend_from_slice(names);
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-o", out.to_str().unwrap()]);
    let report = r.json(&args);
    (std::fs::read(&out).unwrap(), report)
}

#[test]
fn round_trip_of_every_kind_into_an_empty_repository() {
    let a = populated();
    let names = ["files/a.bin", "images/os.raw", "snapshots/s1", "vm"];
    let (stream, sent) = send(&a, &names, &[]);
    assert_eq!(sent["resources"].as_array().unwrap().len(), 4);
    assert_eq!(sent["stream_bytes"], stream.len());
    let b = TestRepo::new();
    let out = b.run_stdin(&["--json", "receive"], &stream);
    assert!(out.status.success(), "{}", stderr(&out));
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["blocks_received"], sent["blocks_sent"]);
    for obj in &names[..3] {
        assert_eq!(b.ok(&["get", obj]), a.ok(&["get", obj]), "{obj}");
        let (ia, ib) = (a.json(&["info", obj]), b.json(&["info", obj]));
        assert_eq!(ia["hash"], ib["hash"], "{obj}");
        assert_eq!(ia["bytes"], ib["bytes"], "{obj}");
    }
    let (pa, pb) = (
        a.json(&["image", "info", "images/os.raw"]),
        b.json(&["image", "info", "images/os.raw"]),
    );
    assert_eq!(pa["properties"], pb["properties"]);
    assert_eq!(
        pa["id"], pb["id"],
        "the image keeps its id where it is free"
    );
    assert_eq!(read(&b, "vm"), read(&a, "vm"));
    let (va, vb) = (
        a.json(&["volume", "info", "vm"]),
        b.json(&["volume", "info", "vm"]),
    );
    assert_eq!(va["private_blocks"], vb["private_blocks"]);
    // The snapshot still names the volume it was taken from: rollback accepts it.
    b.ok(&["volume", "rollback", "vm", "snapshots/s1"]);
    assert_eq!(read(&b, "vm"), b.ok(&["get", "snapshots/s1"]));
    no_damage(&b);
    // Receiving the same stream again: the names exist, nothing changes.
    let before = b.snapshot();
    let out = b.run_stdin(&["receive"], &stream);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--rename"), "{}", stderr(&out));
    assert_eq!(b.snapshot(), before);
}

#[test]
fn incremental_send_holds_only_the_new_blocks_and_needs_its_base() {
    let a = TestRepo::new();
    let p = a.file("d", &pseudo_random(100 * BS, 5));
    a.ok(&["volume", "import", p.to_str().unwrap(), "v"]);
    a.ok(&["snapshot", "v", "one"]);
    write(&a, "v", 50 * BS, &pseudo_random(2 * BS, 6));
    a.ok(&["snapshot", "v", "two"]);
    let (full, _) = send(&a, &["snapshots/one"], &[]);
    let (inc, rep) = send(&a, &["snapshots/two"], &["--base", "snapshots/one"]);
    assert_eq!(rep["blocks_sent"], 2);
    assert_eq!(rep["blocks_skipped"], 98);
    assert!(
        inc.len() * 10 < full.len(),
        "{} vs {}",
        inc.len(),
        full.len()
    );
    // Without its base the receiver refuses, unchanged.
    let c = TestRepo::new();
    let before = c.snapshot();
    let e = c.fails(2, &["receive", c.file("s", &inc).to_str().unwrap()]);
    assert!(e.contains("receive the base first"), "{e}");
    assert_eq!(c.snapshot(), before);
    // With it: base, then the increment.
    let b = TestRepo::new();
    b.ok(&["receive", b.file("f", &full).to_str().unwrap()]);
    let r = b.json(&["receive", b.file("i", &inc).to_str().unwrap()]);
    assert_eq!(r["blocks_received"], 2);
    assert_eq!(
        b.ok(&["get", "snapshots/two"]),
        a.ok(&["get", "snapshots/two"])
    );
    no_damage(&b);
}

#[test]
fn bad_streams_are_refused_and_change_nothing() {
    let a = populated();
    let (stream, _) = send(&a, &["vm", "files/a.bin"], &[]);
    let b = TestRepo::new();
    b.ok(&["put", b.file("x", b"keep").to_str().unwrap(), "files/keep"]);
    let before = b.snapshot();
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", stream[..stream.len() / 2].to_vec()),
        ("no trailer", stream[..stream.len() - 49].to_vec()),
        ("empty", Vec::new()),
    ];
    let mut flipped = stream.clone();
    flipped[stream.len() / 3] ^= 1;
    cases.push(("corrupt", flipped));
    for (what, bytes) in cases {
        let e = b.fails(2, &["receive", b.file("s", &bytes).to_str().unwrap()]);
        assert!(e.contains("not a valid arch stream"), "{what}: {e}");
        assert_eq!(b.snapshot(), before, "{what}");
    }
    // A stream of another block size is refused with the way out.
    let big = TestRepo::with_block_size("8K");
    let e = big.fails(2, &["receive", big.file("s", &stream).to_str().unwrap()]);
    assert!(e.contains("--block-size 4096"), "{e}");
    // --rename of a name the stream does not hold.
    let e = b.fails(
        2,
        &[
            "receive",
            b.file("s", &stream).to_str().unwrap(),
            "--rename",
            "nope=x",
        ],
    );
    assert!(e.contains("holds no resource 'nope'"), "{e}");
    assert_eq!(b.snapshot(), before);
}

/// A well-formed stream whose resource record is `json`.
fn hostile(json: &Value) -> Vec<u8> {
    let data = b"hostile".to_vec();
    let map =
        arch::storage::BlockMap::from_entries(4096, 4096, vec![(0, BlockHash::of_bytes(&data))])
            .unwrap();
    let mut w = StreamWriter::new(Vec::new(), 4096).unwrap();
    w.block(&BlockHash::of_bytes(&data), &data).unwrap();
    w.map(&map).unwrap();
    let mut j = json.clone();
    let text = j.to_string().replace("MAP", &map.id().to_hex());
    j = serde_json::from_str(&text).unwrap();
    w.resource(j.to_string().as_bytes()).unwrap();
    w.finish().unwrap().0
}

#[test]
fn hostile_records_never_name_a_path_outside_the_repository() {
    let b = TestRepo::new();
    let before = b.snapshot();
    let volume = |name: &str, id: &str| {
        json!({"kind": "volume", "name": name, "private": [[0, BlockHash::of_bytes(b"hostile").to_hex()]],
            "record": {"id": id, "size": 4096, "block_size": 4096, "source": null,
              "source_object": null, "base_map": "MAP", "epoch": 1,
              "created_at": "2026-01-01T00:00:00Z", "modified_at": "2026-01-01T00:00:00Z",
              "status": "available"}})
    };
    let cases = [
        volume("v", "../../../../tmp/evil-000000000000000000000000"),
        volume("../v", "5c0e0000-0000-4000-8000-000000000000"),
        volume("v", "5c0e0000-0000-4000-8000-000000000000")
            .as_object()
            .map(|o| {
                let mut o = o.clone();
                o.insert("private".into(), json!([[99, BlockHash::ZERO.to_hex()]]));
                Value::Object(o)
            })
            .unwrap(),
        json!({"kind": "object", "name": "../../etc/x", "record": {}}),
        json!({"kind": "shell", "name": "x"}),
    ];
    for (k, case) in cases.iter().enumerate() {
        let e = b.fails(
            2,
            &["receive", b.file("s", &hostile(case)).to_str().unwrap()],
        );
        assert!(!e.is_empty(), "case {k}");
        assert_eq!(b.snapshot(), before, "case {k}: {e}");
    }
    assert!(!std::path::Path::new("/tmp/evil-000000000000000000000000").exists());
}

#[test]
fn copy_sends_only_what_the_destination_lacks_and_renames() {
    let a = populated();
    let b = TestRepo::new();
    let to = b.root.to_str().unwrap();
    let first = a.json(&["copy", "vm", "snapshots/s1", "--to", to]);
    assert!(first["blocks_sent"].as_u64().unwrap() > 0);
    assert_eq!(read(&b, "vm"), read(&a, "vm"));
    let again = a.json(&["copy", "vm", "--to", to, "--rename", "vm=vm2"]);
    assert_eq!(again["blocks_sent"], 0, "{again}");
    assert_eq!(again["resources"][0]["name"], "vm2");
    assert_eq!(read(&b, "vm2"), read(&a, "vm"));
    // An existing name is refused, the destination unchanged.
    let before = b.snapshot();
    let e = a.fails(2, &["copy", "vm", "--to", to]);
    assert!(e.contains("already exists"), "{e}");
    assert_eq!(b.snapshot(), before);
    let e = a.fails(2, &["copy", "vm", "--to", a.root.to_str().unwrap()]);
    assert!(e.contains("is this repository"), "{e}");
    no_damage(&b);
}

#[test]
fn diff_lists_block_ranges_of_any_two_resources() {
    let r = TestRepo::new();
    let p = r.file("d", &pseudo_random(20 * BS, 7));
    r.ok(&["put", p.to_str().unwrap(), "files/d"]);
    r.ok(&["clone", "files/d", "v"]);
    r.ok(&["snapshot", "v", "s0"]);
    write(&r, "v", 2 * BS + 10, &pseudo_random(2 * BS, 8));
    write(&r, "v", 10 * BS, &vec![0u8; BS]);
    let d = r.json(&["diff", "snapshots/s0", "v"]);
    assert_eq!(
        d["extents"],
        json!([
            {"offset": 2 * BS, "length": 3 * BS, "type": "data"},
            {"offset": 10 * BS, "length": BS, "type": "zero"},
        ])
    );
    assert_eq!(d["changed_blocks"], 4);
    let s = r.json(&["diff", "v", "v", "--stat"]);
    assert_eq!(s["changed_blocks"], 0);
    // Versions: NAME@N.
    let p2 = r.file("d2", &pseudo_random(20 * BS, 9));
    r.ok(&["put", p2.to_str().unwrap(), "files/d"]);
    let v = r.json(&["diff", "files/d@1", "files/d", "--stat"]);
    assert_eq!(v["changed_blocks"], 20);
    let text = String::from_utf8(r.ok(&["diff", "snapshots/s0", "v"])).unwrap();
    assert!(text.contains("OFFSET") && text.contains("zero"), "{text}");
    let e = r.fails(2, &["diff", "v", "nope"]);
    assert!(e.contains("'nope' not found"), "{e}");
}

#[test]
fn rollback_restores_the_snapshot_and_refuses_others_and_busy_volumes() {
    let r = TestRepo::new();
    let p = r.file("d", &pseudo_random(8 * BS, 10));
    r.ok(&["volume", "import", p.to_str().unwrap(), "v"]);
    r.ok(&["snapshot", "v", "good"]);
    let good = read(&r, "v");
    write(&r, "v", BS, &pseudo_random(3 * BS, 11));
    r.ok(&["volume", "resize", "v", "64K"]);
    let rep = r.json(&["volume", "rollback", "v", "snapshots/good"]);
    assert_eq!(rep["new_size"], 8 * BS);
    assert_eq!(rep["private_blocks_dropped"], 3);
    assert_eq!(read(&r, "v"), good);
    assert_eq!(r.json(&["volume", "info", "v"])["private_blocks"], 0);
    // A snapshot of another volume needs --force.
    r.ok(&["clone", "snapshots/good", "w"]);
    write(&r, "w", 0, b"other");
    r.ok(&["snapshot", "w", "of-w"]);
    let before = r.snapshot();
    let e = r.fails(2, &["volume", "rollback", "v", "snapshots/of-w"]);
    assert!(e.contains("--force"), "{e}");
    assert_eq!(r.snapshot(), before);
    r.ok(&["volume", "rollback", "v", "snapshots/of-w", "--force"]);
    assert_eq!(read(&r, "v"), read(&r, "w"));
    // In use (its lock held by a reader): refused at once, not waited for.
    let id = r.json(&["volume", "info", "v"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let lock = crate::util::hold_volume_lock_shared(&r, &id);
    let e = r.fails(2, &["volume", "rollback", "v", "snapshots/good"]);
    assert!(e.contains("in use"), "{e}");
    drop(lock);
    no_damage(&r);
}

#[test]
fn send_to_stdout_pipes_into_receive() {
    let a = populated();
    let out = a.run(&["send", "files/a.bin", "images/os.raw"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("blocks sent"), "{}", stderr(&out));
    let e = a.fails(2, &["--json", "send", "files/a.bin"]);
    assert!(e.contains("--json needs -o FILE"), "{e}");
    let b = TestRepo::new();
    let got = b.run_stdin(
        &["receive", "--rename", "files/a.bin=other/b.bin"],
        &out.stdout,
    );
    assert!(got.status.success(), "{}", stderr(&got));
    assert_eq!(b.ok(&["get", "other/b.bin"]), a.ok(&["get", "files/a.bin"]));
    assert_eq!(b.json(&["image", "info", "OS"])["name"], "OS");
}

/// A stream of a volume of `size` bytes whose map names `block` at index 0 (sent in the
/// stream when `in_stream`), and whose private blocks are `private`.
fn volume_stream(size: u64, block: &[u8], in_stream: bool, private: Value) -> Vec<u8> {
    let hash = BlockHash::of_bytes(block);
    let map = arch::storage::BlockMap::from_entries(4096, 4096, vec![(0, hash)]).unwrap();
    let mut w = StreamWriter::new(Vec::new(), 4096).unwrap();
    if in_stream {
        w.block(&hash, block).unwrap();
    }
    w.map(&map).unwrap();
    let j = json!({"kind": "volume", "name": "v", "private": private,
        "record": {"id": "5c0e0000-0000-4000-8000-00000000000a", "size": size,
          "block_size": 4096, "source": null, "source_object": null,
          "base_map": map.id().to_hex(), "epoch": 1, "created_at": "2026-01-01T00:00:00Z",
          "modified_at": "2026-01-01T00:00:00Z", "status": "available"}});
    w.resource(j.to_string().as_bytes()).unwrap();
    w.finish().unwrap().0
}

#[test]
fn a_last_block_with_bytes_past_the_size_is_refused() {
    let b = TestRepo::new();
    // 4096 non-zero bytes: 3072 of them past a 1 KiB volume's end.
    let long = pseudo_random(BS, 9)
        .iter()
        .map(|x| x | 1)
        .collect::<Vec<u8>>();
    // The receiver already has it (an object of its own), so it is not in the second stream:
    // its length comes from the store.
    b.ok(&["put", b.file("l", &long).to_str().unwrap(), "files/long"]);
    let before = b.snapshot();
    let hash = BlockHash::of_bytes(&long).to_hex();
    let cases = [
        (
            "block in the stream",
            volume_stream(1024, &long, true, json!([])),
        ),
        (
            "block already here",
            volume_stream(1024, &long, false, json!([])),
        ),
        (
            "private block",
            volume_stream(1024, &long, true, json!([[0, hash]])),
        ),
    ];
    for (what, stream) in cases {
        let e = b.fails(2, &["receive", b.file("s", &stream).to_str().unwrap()]);
        assert!(
            e.contains("holds 4096 bytes, but only 1024 fit"),
            "{what}: {e}"
        );
        assert_eq!(b.snapshot(), before, "{what}");
    }
    // A last block that ends inside the size is received, and reads back padded with zeros.
    let short = &long[..1000];
    let s = volume_stream(1024, short, true, json!([]));
    b.ok(&["receive", b.file("s", &s).to_str().unwrap()]);
    let mut want = short.to_vec();
    want.resize(1024, 0);
    assert_eq!(read(&b, "v"), want);
    no_damage(&b);
}

/// A refused receive takes back the blocks it added to a store, but never one a committed map
/// names: here the lost block of an object already here, which the stream brought back before
/// it was refused (kept: it heals the object). On local disk the refused stream's blocks were
/// only staged in `tmp/`: nothing changes, the lost block stays lost.
#[test]
fn a_refused_receive_takes_back_its_blocks_but_keeps_one_a_map_names() {
    let a = TestRepo::new();
    let x = pseudo_random(3 * BS, 11);
    // y after x in the stream, and long enough that the receive must wait for its writers
    // (a few block buffers) before it meets the missing trailer: x's blocks are uploaded.
    let y = pseudo_random(64 * BS, 12);
    a.ok(&["put", a.file("x", &x).to_str().unwrap(), "files/x"]);
    a.ok(&["put", a.file("y", &y).to_str().unwrap(), "files/y"]);
    let (stream, _) = send(&a, &["files/x", "files/y"], &[]);
    let b = TestRepo::new();
    b.ok(&["put", b.file("x", &x).to_str().unwrap(), "files/x"]);
    let intact = b.snapshot();
    let lost = b.json(&["hashmap", "files/x"])["hashes"][1]
        .as_str()
        .unwrap()
        .to_string();
    crate::stored::remove(&b, &crate::stored::data_rel(&b, "blocks", &lost));
    let damaged = b.snapshot();
    // Every block record arrived; the trailer did not.
    let cut = b.file("s", &stream[..stream.len() - 49]);
    let out = b.run(&["receive", cut.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("warning"),
        "nobody else holds the data lock: {}",
        stderr(&out)
    );
    if b.store.is_some() {
        assert_eq!(
            b.snapshot(),
            intact,
            "y's blocks taken back, x's lost block kept"
        );
        assert_eq!(b.ok(&["get", "files/x"]), x);
    } else {
        assert_eq!(b.snapshot(), damaged);
    }
}

/// While another command holds the data lock (a server of an object, for its whole life) a
/// refused receive cannot take its blocks back safely: it leaves them to gc and says so.
#[test]
fn a_refused_receive_beside_a_running_server_leaves_its_blocks_to_gc() {
    let a = TestRepo::new();
    // Long enough that blocks are uploaded before the refusal (see the test above).
    let y = pseudo_random(64 * BS, 13);
    a.ok(&["put", a.file("y", &y).to_str().unwrap(), "files/y"]);
    let (stream, _) = send(&a, &["files/y"], &[]);
    let b = TestRepo::new();
    let x = pseudo_random(3 * BS, 14);
    b.ok(&["put", b.file("x", &x).to_str().unwrap(), "images/x"]);
    let before = b.snapshot();
    let server = crate::serve::Server::start(&b, &["images/x"]);
    let cut = b.file("s", &stream[..stream.len() - 49]);
    let out = b.run(&["receive", cut.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(server.stop().0, Some(0));
    if b.store.is_some() {
        let err = stderr(&out);
        assert!(
            err.contains("blocks this receive uploaded stay in the store")
                && err.contains("`arch gc` removes them"),
            "{err}"
        );
        assert_ne!(b.snapshot(), before);
        assert!(b.json(&["gc"])["blocks_freed"].as_u64().unwrap() > 0);
    }
    assert_eq!(b.snapshot(), before);
}
