//! Model test of copy-on-write: random writes, snapshots, clones, resizes and reads on real
//! volumes in a temp repository, checked against plain byte vectors.

use super::*;
use crate::progress::NoProgress;
use crate::repo::Repository;
use crate::services::names::ObjectName;
use crate::services::objects::{self, PutOptions};
use crate::storage::export::Sink;
use crate::storage::ingest::Source;
use proptest::prelude::*;

const BS: u64 = 4096;

#[derive(Debug, Clone)]
enum Op {
    Write {
        vol: usize,
        at: u64,
        len: u64,
        seed: u8,
    },
    Snapshot {
        vol: usize,
    },
    Clone {
        snap: usize,
        extra: u64,
    },
    Resize {
        vol: usize,
        size: u64,
    },
    Read {
        vol: usize,
        at: u64,
        len: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..4usize, 0..12 * BS, 1..3 * BS, any::<u8>())
            .prop_map(|(vol, at, len, seed)| Op::Write { vol, at, len, seed }),
        1 => (0..4usize).prop_map(|vol| Op::Snapshot { vol }),
        1 => (0..8usize, 0..3 * BS).prop_map(|(snap, extra)| Op::Clone { snap, extra }),
        1 => (0..4usize, 0..14 * BS).prop_map(|(vol, size)| Op::Resize { vol, size }),
        2 => (0..4usize, 0..12 * BS, 0..3 * BS).prop_map(|(vol, at, len)| Op::Read { vol, at, len }),
    ]
}

fn pattern(len: u64, seed: u8) -> Vec<u8> {
    // Some writes are all zeros, to exercise zero blocks.
    if seed % 5 == 0 {
        return vec![0; len as usize];
    }
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
        .collect()
}

fn read_volume(repo: &Repository, name: &str, size: u64) -> Vec<u8> {
    let mut out = Vec::new();
    read(repo, name, 0, size, &mut |p| {
        out.extend_from_slice(p);
        Ok(())
    })
    .unwrap();
    out
}

fn get_object(repo: &Repository, name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let n = ObjectName::parse(name).unwrap();
    objects::get(repo, &n, None, Sink::Stream(&mut out), true, &NoProgress).unwrap();
    out
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init(dir.path(), BS).unwrap();
    let mut base = pattern(9 * BS + 100, 7);
    base[(3 * BS) as usize..(5 * BS) as usize].fill(0);
    let src = Source::Stream {
        reader: Box::new(std::io::Cursor::new(base.clone())),
        label: "base".into(),
    };
    let base_name = ObjectName::parse("images/base").unwrap();
    objects::put(&repo, src, &base_name, &PutOptions::default(), &NoProgress).unwrap();
    // Model: volumes (name, content) and snapshots (object name, content).
    let mut vols: Vec<(String, Vec<u8>)> = Vec::new();
    let mut snaps: Vec<(String, Vec<u8>)> = vec![("images/base".into(), base.clone())];
    clone(&repo, "images/base", "v0", &CloneOptions::default()).unwrap();
    vols.push(("v0".into(), base.clone()));

    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Write { vol, at, len, seed } => {
                let n = vols.len();
                let (name, content) = &mut vols[vol % n];
                let size = content.len() as u64;
                if size == 0 {
                    continue;
                }
                let at = at % size;
                let len = len.min(size - at);
                let data = pattern(len, seed);
                let mut once = Some(data.clone());
                write(&repo, name, at, len, &mut |buf| {
                    Ok(once.take().map_or(0, |d| {
                        *buf = d;
                        buf.len()
                    }))
                })
                .unwrap();
                content[at as usize..(at + len) as usize].copy_from_slice(&data);
            }
            Op::Snapshot { vol } => {
                let (name, content) = &vols[vol % vols.len()];
                let obj = format!("snapshots/s{step}");
                snapshot(&repo, name, &ObjectName::parse(&obj).unwrap()).unwrap();
                snaps.push((obj, content.clone()));
            }
            Op::Clone { snap, extra } => {
                let (obj, content) = &snaps[snap % snaps.len()];
                let name = format!("c{step}");
                let size = content.len() as u64 + extra;
                clone(
                    &repo,
                    obj,
                    &name,
                    &CloneOptions {
                        size: Some(size),
                        ..Default::default()
                    },
                )
                .unwrap();
                let mut c = content.clone();
                c.resize(size as usize, 0);
                vols.push((name, c));
            }
            Op::Resize { vol, size } => {
                let n = vols.len();
                let (name, content) = &mut vols[vol % n];
                resize(&repo, name, size, true).unwrap();
                content.resize(size as usize, 0);
            }
            Op::Read { vol, at, len } => {
                let (name, content) = &vols[vol % vols.len()];
                let size = content.len() as u64;
                let at = at.min(size);
                let len = len.min(size - at);
                let mut got = Vec::new();
                read(&repo, name, at, len, &mut |p| {
                    got.extend_from_slice(p);
                    Ok(())
                })
                .unwrap();
                assert_eq!(
                    got,
                    content[at as usize..(at + len) as usize],
                    "step {step}"
                );
            }
        }
    }
    for (name, content) in &vols {
        assert_eq!(
            &read_volume(&repo, name, content.len() as u64),
            content,
            "volume {name}"
        );
    }
    for (obj, content) in &snaps {
        assert_eq!(&get_object(&repo, obj), content, "snapshot {obj}");
    }
    assert_eq!(
        get_object(&repo, "images/base"),
        base,
        "the source never changes"
    );
    let report = crate::integrity::fsck::fsck(&repo, Default::default()).unwrap();
    assert!(report.clean(), "{:?}", report.problems);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn volumes_behave_like_byte_vectors(ops in proptest::collection::vec(op(), 1..30)) {
        run(ops);
    }
}

#[test]
fn shrink_then_grow_never_resurrects_old_bytes() {
    run(vec![
        Op::Resize {
            vol: 0,
            size: 2 * BS + 10,
        },
        Op::Resize {
            vol: 0,
            size: 8 * BS,
        },
        Op::Snapshot { vol: 0 },
        Op::Clone { snap: 1, extra: 5 },
        Op::Write {
            vol: 1,
            at: 2 * BS,
            len: 30,
            seed: 3,
        },
    ]);
}
