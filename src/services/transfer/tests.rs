//! In-process fuzz of the whole receive path: random edits of a real stream are refused (the
//! catalog and the store's visible content unchanged), and the intact stream then applies.

use super::receive::receive;
use super::send::{Bases, send};
use crate::progress::NoProgress;
use crate::repo::Repository;
use crate::services::names::ObjectName;
use crate::services::objects::{PutOptions, put};
use crate::storage::ingest::Source;
use std::collections::BTreeMap;

/// Every block and map the store holds, and every object name.
fn state(repo: &Repository) -> (Vec<String>, usize, usize) {
    let mut names = Vec::new();
    repo.catalog()
        .unwrap()
        .for_each_object(&Default::default(), &mut |n, _| {
            names.push(n);
            Ok(true)
        })
        .unwrap();
    let (mut blocks, mut maps) = (0, 0);
    repo.backend()
        .for_each_block(&mut |_, _| {
            blocks += 1;
            Ok(())
        })
        .unwrap();
    repo.backend()
        .for_each_map(&mut |_| {
            maps += 1;
            Ok(())
        })
        .unwrap();
    (names, blocks, maps)
}

fn sample_stream() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init(&dir.path().join("a"), 4096).unwrap();
    let data: Vec<u8> = (0..5 * 4096 + 77)
        .map(|i| (i * 7 % 251) as u8 | 1)
        .collect();
    let source = Source::Stream {
        reader: Box::new(std::io::Cursor::new(data)),
        label: "test".into(),
    };
    let name = ObjectName::parse("c/o").unwrap();
    put(&repo, source, &name, &PutOptions::default(), &NoProgress).unwrap();
    let (_, out) = send(
        &repo,
        &["c/o".into()],
        &Bases::default(),
        Vec::new(),
        &NoProgress,
    )
    .unwrap();
    out
}

#[test]
fn edited_streams_change_nothing() {
    let stream = sample_stream();
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init(&dir.path().join("b"), 4096).unwrap();
    let before = state(&repo);
    // One repository for every edit: each refusal must leave it exactly as it was.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for case in 0..200 {
        let mut bad = stream.clone();
        let at = (next() % bad.len() as u64) as usize;
        if case % 4 == 0 {
            bad.truncate(at);
        } else {
            let end = (at + 1 + (next() % 48) as usize).min(bad.len());
            let flip = (next() % 255) as u8 + 1;
            for b in &mut bad[at..end] {
                *b ^= flip;
            }
        }
        let r = receive(&repo, &mut bad.as_slice(), &BTreeMap::new(), &NoProgress);
        assert!(r.is_err(), "case {case}: an edited stream was received");
        assert_eq!(state(&repo), before, "case {case}");
        let tmp: Vec<_> = std::fs::read_dir(repo.tmp_dir()).unwrap().collect();
        assert!(tmp.is_empty(), "case {case}: the batch was left in tmp/");
    }
    // The intact stream applies.
    receive(&repo, &mut stream.as_slice(), &BTreeMap::new(), &NoProgress).unwrap();
    assert_eq!(state(&repo).0, vec!["c/o".to_string()]);
}

#[test]
fn a_damaged_source_block_stops_the_send() {
    use crate::error::Error;
    use crate::storage::BlockHash;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init(&dir.path().join("a"), 4096).unwrap();
    let data: Vec<u8> = (0..3 * 4096).map(|i| (i * 13 % 251) as u8 | 1).collect();
    let source = Source::Stream {
        reader: Box::new(std::io::Cursor::new(data.clone())),
        label: "test".into(),
    };
    put(
        &repo,
        source,
        &ObjectName::parse("c/o").unwrap(),
        &PutOptions::default(),
        &NoProgress,
    )
    .unwrap();
    let hash = BlockHash::of_bytes(&data[4096..8192]);
    let path = crate::storage::local::LocalBackend::new(repo.root()).block_path(&hash);
    let send_it = || {
        send(
            &repo,
            &["c/o".into()],
            &Bases::default(),
            Vec::new(),
            &NoProgress,
        )
    };
    let good = std::fs::read(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    // A flipped byte, a longer file, a missing file: each is named, nothing is sent.
    let mut flipped = good.clone();
    flipped[100] ^= 1;
    let mut longer = good.clone();
    longer.resize(4097, 1);
    for (what, content) in [
        ("flipped", Some(flipped)),
        ("longer", Some(longer)),
        ("gone", None),
    ] {
        match content {
            Some(c) => std::fs::write(&path, c).unwrap(),
            None => std::fs::remove_file(&path).unwrap(),
        }
        match send_it() {
            Err(Error::CorruptBlock {
                hash: h, offset, ..
            }) if what != "gone" => {
                assert_eq!((h, offset), (hash.to_hex(), 4096), "{what}")
            }
            Err(Error::MissingBlock { hash: h, .. }) if what == "gone" => {
                assert_eq!(h, hash.to_hex())
            }
            other => panic!("{what}: {:?}", other.map(|r| r.0)),
        }
    }
    std::fs::write(&path, &good).unwrap();
    assert!(send_it().is_ok());
}
