//! `arch serve` against hostile and careless clients over a real socket: silent handshakes,
//! clients that stop reading replies, silent control connections, failing requests in a
//! loop; and many clients writing different blocks of one volume at once.

use crate::serve::{RawClient, Server, export, setup};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

#[test]
fn a_silent_client_loses_the_only_slot_after_the_handshake_limit() {
    let (repo, img) = setup(64 << 10);
    let srv = Server::start(&repo, &["vm1", "--shared", "1", "--handshake-limit", "1"]);
    // Connects, never answers the greeting: it holds the only slot until the limit.
    let mut silent = UnixStream::connect(srv.socket()).unwrap();
    let mut got = Vec::new();
    silent.read_to_end(&mut got).unwrap();
    assert_eq!(&got[..16], b"NBDMAGICIHAVEOPT", "greeted, then dropped");
    assert_eq!(got.len(), 18);
    // A client trickling options is dropped as well (the limit covers the whole handshake).
    let mut slow = UnixStream::connect(srv.socket()).unwrap();
    let mut greet = [0u8; 18];
    slow.read_exact(&mut greet).unwrap();
    slow.write_all(&3u32.to_be_bytes()).unwrap();
    let mut list = b"IHAVEOPT".to_vec();
    list.extend_from_slice(&3u32.to_be_bytes());
    list.extend_from_slice(&0u32.to_be_bytes());
    let mut dropped = false;
    for _ in 0..100 {
        if slow.write_all(&list).is_err() {
            dropped = true;
            break;
        }
        let mut reply = [0u8; 20 + 4 + 3 + 11];
        if slow.read_exact(&mut reply).is_err() {
            dropped = true;
            break;
        }
        let mut ack = [0u8; 20];
        if slow.read_exact(&mut ack).is_err() {
            dropped = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(dropped, "a client haggling past the limit is dropped");
    // The slot is free again.
    let mut vm = RawClient::connect(&srv.socket(), "vm1");
    assert_eq!(vm.request(0, 0, 8, &[]).1, img[..8].to_vec());
    drop(vm);
    assert_eq!(srv.stop().0, Some(0));
}

#[test]
fn a_client_that_stops_reading_replies_does_not_stall_shutdown() {
    let (repo, img) = setup(64 << 10);
    let srv = Server::start(&repo, &["vm1"]);
    let mut vm = RawClient::connect(&srv.socket(), "vm1");
    assert_eq!(vm.request(1, 300, 4, b"kept").0, 0);
    // 256 reads of 64 KiB (16 MiB of replies) that it never takes: the socket's buffers fill
    // and the server's reply writes block.
    let mut burst = Vec::new();
    for c in 0..256u64 {
        burst.extend_from_slice(&[0x25, 0x60, 0x95, 0x13, 0, 0, 0, 0]);
        burst.extend_from_slice(&c.to_be_bytes());
        burst.extend_from_slice(&0u64.to_be_bytes());
        burst.extend_from_slice(&(64u32 << 10).to_be_bytes());
    }
    let mut writer = vm.0.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&burst);
    });
    // Until the server has read some of them, SIGTERM would find nothing in flight.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (code, err) = srv.stop();
    assert_eq!(code, Some(0), "{err}");
    sender.join().unwrap();
    drop(vm);
    let mut want = img.clone();
    want[300..304].copy_from_slice(b"kept");
    assert_eq!(
        export(&repo, "vm1"),
        want,
        "the acknowledged write was flushed"
    );
}

#[test]
fn a_silent_control_connection_does_not_stall_shutdown() {
    let (repo, _) = setup(64 << 10);
    let srv = Server::start(&repo, &["vm1", "--handshake-limit", "1"]);
    let ctl = repo
        .root
        .join("run")
        .join(format!("arch-serve-{}.ctl", srv.child.id()));
    let mut silent = UnixStream::connect(&ctl).unwrap();
    let mut got = Vec::new();
    // Dropped after the limit without an answer.
    silent.read_to_end(&mut got).unwrap();
    assert!(got.is_empty());
    // Meanwhile (and after) snapshots through the control socket still work.
    let held = UnixStream::connect(&ctl).unwrap();
    repo.ok(&["snapshot", "vm1", "s1"]);
    let (code, err) = srv.stop();
    assert_eq!(code, Some(0), "{err}");
    drop(held);
}

#[test]
fn failing_requests_in_a_loop_are_counted_not_each_logged() {
    let (repo, _) = setup(64 << 10);
    // Damage the stored copy of block 0: every read of it fails verification (EIO).
    let hash = repo.json(&["hashmap", "images/img.raw"])["hashes"][0]
        .as_str()
        .unwrap()
        .to_string();
    let stored = crate::stored::data_rel(&repo, "blocks", &hash);
    crate::stored::damage(&repo, &stored, |b| b[0] ^= 1);
    let srv = Server::start(&repo, &["vm1"]);
    let mut vm = RawClient::connect(&srv.socket(), "vm1");
    for _ in 0..50 {
        assert_eq!(vm.request(0, 0, 512, &[]).0, 5, "EIO");
    }
    assert_eq!(
        vm.request(0, 8192, 512, &[]).0,
        0,
        "other blocks still read"
    );
    drop(vm);
    let (code, err) = srv.stop();
    assert_eq!(code, Some(0), "{err}");
    let logged = err.lines().filter(|l| l.contains(&hash[..16])).count();
    assert!((1..=10).contains(&logged), "{logged} lines: {err}");
    assert!(err.contains("50 of its 51 requests failed"), "{err}");
}

#[test]
fn clients_writing_different_blocks_at_once_all_land_and_reads_are_never_torn() {
    let (repo, img) = setup(256 << 10);
    let srv = Server::start(&repo, &["vm1", "--shared", "5"]);
    let socket = srv.socket();
    // Four writers, each owning 16 blocks (4 KiB) and rewriting them whole with one byte
    // value per round; one reader checking that every block it reads is of one value.
    std::thread::scope(|s| {
        for w in 0..4u8 {
            let socket = &socket;
            s.spawn(move || {
                let mut c = RawClient::connect(socket, "vm1");
                for round in 1..=8u8 {
                    for b in 0..16u64 {
                        let block = w as u64 * 16 + b;
                        let value = w * 10 + round;
                        assert_eq!(c.request(1, block * 4096, 4096, &[value; 4096]).0, 0);
                    }
                }
                assert_eq!(c.request(3, 0, 0, &[]).0, 0);
            });
        }
        let (socket, img) = (&socket, &img);
        s.spawn(move || {
            let mut c = RawClient::connect(socket, "vm1");
            for round in 0..256u64 {
                let block = (round * 7) % 64;
                let (err, data) = c.request(0, block * 4096, 4096, &[]);
                assert_eq!(err, 0);
                let original = &img[block as usize * 4096..][..4096];
                let uniform = data.iter().all(|&b| b == data[0]);
                assert!(uniform || data == original, "block {block} torn");
            }
        });
    });
    assert_eq!(srv.stop().0, Some(0));
    let mut want = img.clone();
    for w in 0..4u8 {
        for b in 0..16usize {
            let block = w as usize * 16 + b;
            want[block * 4096..][..4096].fill(w * 10 + 8);
        }
    }
    assert_eq!(export(&repo, "vm1"), want);
}

#[test]
fn files_of_a_killed_server_are_reported_by_fsck_and_removed_by_gc_a_live_ones_kept() {
    let (repo, _) = setup(64 << 10);
    repo.ok(&["clone", "images/img.raw", "vm2"]);
    let killed = Server::start(&repo, &["vm1"]);
    let pid = killed.child.id();
    crate::serve::signal(pid, libc::SIGKILL);
    drop(killed);
    let live = Server::start(&repo, &["vm2"]);
    let run = repo.root.join("run");
    let left: Vec<_> = [
        run.join(format!("arch-serve-{pid}.sock")),
        run.join(format!("arch-serve-{pid}.ctl")),
    ]
    .into_iter()
    .chain(
        std::fs::read_dir(repo.root.join("locks"))
            .unwrap()
            .filter_map(|e| {
                let p = e.unwrap().path();
                let name = p.file_name().unwrap().to_str().unwrap().to_string();
                (name.starts_with("serve-") && name.ends_with(".json")).then_some(p)
            }),
    )
    .collect();
    // Server info is a file in locks/, or a row of the table `servers` when the catalog is on
    // PostgreSQL (docs/FORMAT.md "Catalog on PostgreSQL").
    let rows = || {
        repo.catalog.as_deref().map_or(0, |url| {
            crate::util::catalog_dump(url)
                .iter()
                .filter(|row| row.0 == "catalog:servers")
                .count()
        })
    };
    // The killed server's socket, control socket and info; the live server's info too.
    assert_eq!(left.len() + rows(), 4, "{left:?}");
    assert!(left.iter().all(|p| p.exists()));
    let fsck = repo.json(&["fsck"]);
    assert_eq!(fsck["problems"], serde_json::json!([]), "{fsck}");
    let warned: Vec<_> = fsck["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w.as_str().unwrap().contains("killed"))
        .collect();
    assert_eq!(warned.len(), 3, "{fsck}");
    // The live server still works and still refuses writers with its info.
    let refused = repo.fails(2, &["volume", "resize", "vm2", "128K"]);
    assert!(refused.contains(&live.child.id().to_string()), "{refused}");
    let uri = live.uri("vm2").to_string();
    crate::serve::tool(&["qemu-img", "info", &uri]);
    // (gc waits for a running server: it holds the shared data lock.)
    assert_eq!(live.stop().0, Some(0));
    let gc = repo.json(&["gc"]);
    assert_eq!(gc["stale_locks_removed"], 3, "{gc}");
    assert!(left.iter().all(|p| !p.exists()), "{left:?}");
    assert_eq!(
        rows(),
        0,
        "the killed server's row is removed, the live one's at its stop"
    );
    assert_eq!(repo.json(&["gc"])["stale_locks_removed"], 0);
}

#[test]
fn a_shared_block_verified_once_is_verified_again_when_its_stored_copy_changes() {
    let (repo, img) = setup(256 << 10);
    let srv = Server::start(&repo, &["images/img.raw"]);
    let mut c = RawClient::connect(&srv.socket(), "images/img.raw");
    let hashes = repo.json(&["hashmap", "images/img.raw"])["hashes"].clone();
    let stored = |i: usize| {
        let h = hashes[i].as_str().unwrap();
        repo.root.join("blocks").join(&h[..2]).join(h)
    };
    // Reads block `i` after reading ten others, so it is not served from the block cache.
    let mut read_fresh = |i: u64| {
        for other in 20..30u64 {
            assert_eq!(c.request(0, other * 4096, 1, &[]).0, 0);
        }
        c.request(0, i * 4096, 4096, &[])
    };
    assert_eq!(read_fresh(0).1, img[..4096].to_vec(), "verified");
    assert_eq!(read_fresh(0).1, img[..4096].to_vec(), "known copy");
    assert_eq!(read_fresh(1).1, img[4096..8192].to_vec());
    // Block 0's copy rewritten in place (same file), block 1's replaced by another file.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let rewrite = |p: &std::path::Path| {
        let mut bytes = std::fs::read(p).unwrap();
        bytes[100] ^= 1;
        bytes
    };
    if repo.store.is_some() {
        // In a bucket a stored copy can only be replaced (a PUT over the object).
        for i in [0, 1] {
            let h = hashes[i].as_str().unwrap();
            crate::stored::damage(&repo, &crate::stored::data_rel(&repo, "blocks", h), |b| {
                b[100] ^= 1
            });
        }
    } else {
        let p0 = stored(0);
        let mut perm = std::fs::metadata(&p0).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perm.set_readonly(false);
        std::fs::set_permissions(&p0, perm).unwrap();
        let b0 = rewrite(&p0);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p0)
            .unwrap()
            .write_all(&b0)
            .unwrap();
        let p1 = stored(1);
        let b1 = rewrite(&p1);
        let swap = repo.root.join("tmp").join("swap");
        std::fs::write(&swap, b1).unwrap();
        std::fs::rename(&swap, &p1).unwrap();
    }
    assert_eq!(read_fresh(0).0, 5, "rewritten copy: EIO");
    assert_eq!(read_fresh(1).0, 5, "replaced copy: EIO");
    drop(c);
    assert_eq!(srv.stop().0, Some(0));
}

#[test]
fn a_read_spanning_a_damaged_block_fails_whole_and_the_blocks_around_it_are_served() {
    // 16 blocks of 4 KiB: 0-7 random (shared), 8-15 zero; block 1 made private by a write.
    let (repo, img) = setup(64 << 10);
    let hashes = repo.json(&["hashmap", "images/img.raw"])["hashes"].clone();
    let h = hashes[3].as_str().unwrap().to_string();
    let p3 = crate::stored::data_rel(&repo, "blocks", &h);
    let srv = Server::start(&repo, &["vm1"]);
    let mut c = RawClient::connect(&srv.socket(), "vm1");
    let mut expect = img.clone();
    expect[4096..4096 + 5].copy_from_slice(b"fresh");
    assert_eq!(c.request(1, 4096, 5, b"fresh").0, 0);
    // Block 3's stored copy replaced by damaged bytes before it was ever read.
    // (A new file renamed over it locally; a PUT over the object in a bucket.)
    let mut bad = crate::stored::read(&repo, &p3).unwrap();
    bad[7] ^= 0x40;
    if repo.store.is_some() {
        crate::stored::write(&repo, &p3, &bad);
    } else {
        let swap = repo.root.join("tmp").join("swap");
        std::fs::write(&swap, bad).unwrap();
        std::fs::rename(&swap, repo.root.join(&p3)).unwrap();
    }
    // Whole blocks before it (shared, private) and after it (shared, zero) come back exact.
    assert_eq!(
        c.request(0, 0, 3 * 4096, &[]),
        (0, expect[..3 * 4096].to_vec())
    );
    assert_eq!(c.request(0, 4 * 4096, 12 * 4096, &[]).1, expect[4 * 4096..]);
    // Any read touching block 3, whole or in part, gets EIO and no data; the connection
    // goes on.
    assert_eq!(c.request(0, 0, 8 * 4096, &[]), (5, vec![]));
    assert_eq!(c.request(0, 3 * 4096 + 100, 50, &[]), (5, vec![]));
    assert_eq!(c.request(0, 3 * 4096, 4096, &[]), (5, vec![]));
    // Unaligned reads around it still match.
    assert_eq!(c.request(0, 4000, 8000, &[]).1, expect[4000..12000]);
    assert_eq!(
        c.request(0, 4 * 4096 + 10, 4096, &[]).1,
        expect[16394..20490]
    );
    assert_eq!(c.request(0, 4 * 4096 - 10, 20, &[]).0, 5);
    drop(c);
    let (code, err) = srv.stop();
    assert_eq!(code, Some(0));
    assert!(err.contains(&h), "the damaged block is named: {err}");
}

#[test]
fn with_every_slot_taken_a_new_client_waits_and_is_served_once_one_leaves() {
    let (repo, img) = setup(64 << 10);
    // --shared 1 (the default): one client at a time, as qemu-nbd.
    let srv = Server::start(&repo, &["vm1"]);
    let mut first = RawClient::connect(&srv.socket(), "vm1");
    assert_eq!(first.request(1, 100, 5, b"first").0, 0);
    // The second one is neither greeted nor dropped while the slot is taken.
    let mut second = UnixStream::connect(srv.socket()).unwrap();
    second
        .set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .unwrap();
    let mut byte = [0u8; 1];
    let waited = second.read(&mut byte).unwrap_err();
    assert!(
        matches!(
            waited.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{waited}"
    );
    // Once the first leaves, the waiting one is greeted and served.
    drop(first);
    second.set_read_timeout(None).unwrap();
    let mut greet = [0u8; 18];
    second.read_exact(&mut greet).unwrap();
    assert_eq!(&greet[..16], b"NBDMAGICIHAVEOPT");
    drop(second);
    let mut third = RawClient::connect(&srv.socket(), "vm1");
    let (err, data) = third.request(0, 100, 5, &[]);
    assert_eq!((err, data.as_slice()), (0, &b"first"[..]));
    drop(third);
    let (code, err) = srv.stop();
    assert_eq!(code, Some(0), "{err}");
    let mut model = img;
    model[100..105].copy_from_slice(b"first");
    assert_eq!(export(&repo, "vm1"), model);
}
