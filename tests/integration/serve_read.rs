//! `arch serve` reads: sequential reads are read ahead, and a damaged block met by the
//! read-ahead fails only the READ that needs it.

use crate::serve::{RawClient, Server, setup, tool};

#[test]
fn a_damaged_block_met_by_read_ahead_fails_only_its_own_read_and_serving_goes_on() {
    // 16 blocks of 4 KiB: 0-7 random (shared), 8-15 zero.
    let (repo, img) = setup(64 << 10);
    let hashes = repo.json(&["hashmap", "images/img.raw"])["hashes"].clone();
    let h3 = hashes[3].as_str().unwrap().to_string();
    crate::stored::damage(&repo, &crate::stored::data_rel(&repo, "blocks", &h3), |b| {
        b[5] ^= 1
    });
    let srv = Server::start(&repo, &["vm1"]);
    let mut c = RawClient::connect(&srv.socket(), "vm1");
    let block = |i: usize| img[i * 4096..(i + 1) * 4096].to_vec();
    // Sequential whole-block reads: each reply is followed by read-ahead of the next blocks,
    // which meets block 3 while the client still reads blocks 0-2.
    for i in 0..3 {
        assert_eq!(
            c.request(0, i as u64 * 4096, 4096, &[]),
            (0, block(i)),
            "{i}"
        );
    }
    // The blocks after it are served; block 3 alone gets EIO, whole or in part, each time.
    assert_eq!(c.request(0, 4 * 4096, 4096, &[]), (0, block(4)));
    assert_eq!(c.request(0, 3 * 4096, 4096, &[]), (5, vec![]));
    assert_eq!(c.request(0, 3 * 4096 + 10, 100, &[]), (5, vec![]));
    assert_eq!(
        c.request(0, 5 * 4096 + 7, 4096, &[]).1,
        img[5 * 4096 + 7..6 * 4096 + 7]
    );
    assert_eq!(c.request(0, 2 * 4096, 4096, &[]), (0, block(2)));
    drop(c);
    let (code, err) = srv.stop();
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains(&h3), "the damaged block is named: {err}");
    // Only the two READs of block 3 failed: read-ahead's failure counts for none.
    assert!(err.contains("2 of its 8 requests failed"), "{err}");
}

/// Whether `nbdinfo` reports multi-conn for `uri`.
fn multi_conn(uri: &str) -> bool {
    let info = String::from_utf8(tool(&["nbdinfo", uri]).stdout).unwrap();
    assert!(info.contains("can_multi_conn"), "{info}");
    info.contains("can_multi_conn: true")
}

#[test]
fn multi_conn_is_offered_only_with_slots_for_it_so_nbdcopy_of_a_read_only_volume_ends() {
    let (repo, img) = setup(64 << 10);
    let copy = repo.path("copy.raw");
    // nbdcopy opens up to 4 connections on a multi-conn export and waits for every one: with
    // one slot the others would wait in the backlog for ever (bounded here by `timeout`).
    let srv = Server::start(&repo, &["vm1", "--read-only"]);
    assert!(!multi_conn(srv.uri("vm1")));
    let uri = srv.uri("vm1").to_string();
    tool(&["timeout", "60", "nbdcopy", &uri, copy.to_str().unwrap()]);
    assert_eq!(std::fs::read(&copy).unwrap(), img);
    let (code, err) = srv.stop();
    assert_eq!(code, Some(0), "{err}");
    let srv = Server::start(&repo, &["vm1", "--read-only", "--shared", "4"]);
    assert!(multi_conn(srv.uri("vm1")));
    std::fs::remove_file(&copy).unwrap();
    let uri = srv.uri("vm1").to_string();
    tool(&["timeout", "60", "nbdcopy", &uri, copy.to_str().unwrap()]);
    assert_eq!(std::fs::read(&copy).unwrap(), img);
    let (code, err) = srv.stop();
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn over_tcp_shared_blocks_sent_from_their_files_are_the_volume_bytes() {
    let (repo, img) = setup(64 << 10);
    let srv = Server::start(&repo, &["vm1", "--tcp", "0"]);
    let uri = srv.uri("vm1").to_string();
    assert!(uri.starts_with("nbd://127.0.0.1:"), "{uri}");
    // Whole blocks (sent from the block files), then unaligned spans (copied out of them).
    let copy = repo.path("copy.raw");
    tool(&["nbdcopy", &uri, copy.to_str().unwrap()]);
    assert_eq!(std::fs::read(&copy).unwrap(), img);
    let out = tool(&["qemu-io", "-f", "raw", "-c", "read -v 4000 200", &uri]);
    let text = String::from_utf8_lossy(&out.stdout);
    let first = format!("{:02x}", img[4000]);
    assert!(text.contains(&format!("00000fa0:  {first}")), "{text}");
    let (code, err) = srv.stop();
    assert_eq!(code, Some(0), "{err}");
}
