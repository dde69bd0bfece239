//! The private-block stores agree: the same random sequence of creations, in-place writes,
//! removals, reads and flushes gives the same content through the local files, the object
//! store (in memory always; a real S3 endpoint when `ARCH_TEST_STORE` names one) and the
//! write-back cache over it. Also the read-modify-write measurement (run by hand, see
//! docs/VOLUMES.md).

use super::local::LocalEpoch;
use super::object::ObjectPrivate;
use super::writeback::WriteBack;
use super::{PrivateEpoch, PrivateStore};
use object_store::ObjectStore;
use proptest::prelude::*;
use std::sync::{Arc, OnceLock};

const BS: u64 = 64;
const ID: &str = "5c0e2a4e-8d55-4b1e-9f7a-0d2f5c3b1a77";

/// The runtime the object stores of these tests run on.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// The S3 store of `s3://BUCKET[/PREFIX]` through arch's own client (credentials and endpoint
/// from the AWS_* variables or ~/.aws).
pub(crate) fn connect_from_env(url: &str) -> (Arc<dyn ObjectStore>, object_store::path::Path) {
    let backend = crate::storage::s3::connect(url)
        .unwrap_or_else(|e| panic!("cannot use the S3 store ARCH_TEST_STORE={url}: {e}"));
    (backend.object_store(), backend.prefix().clone())
}

/// The store named by ARCH_TEST_STORE, under a prefix of its own, or None when unset.
fn remote_store(tag: &str) -> Option<ObjectPrivate> {
    let url = std::env::var("ARCH_TEST_STORE").ok()?;
    let (store, prefix) = connect_from_env(&url);
    let prefix = prefix.join(format!("t-{tag}-{}", uuid::Uuid::new_v4().simple()));
    Some(ObjectPrivate::new(
        store,
        prefix,
        runtime().handle().clone(),
        &url,
    ))
}

fn memory_store() -> ObjectPrivate {
    ObjectPrivate::new(
        Arc::new(object_store::memory::InMemory::new()),
        object_store::path::Path::from("prefix"),
        runtime().handle().clone(),
        "memory://",
    )
}

#[derive(Debug, Clone)]
enum Op {
    Create {
        index: u64,
        within: u64,
        data: Vec<u8>,
    },
    Write {
        index: u64,
        offset: u64,
        data: Vec<u8>,
    },
    /// A copy-on-write: a shared block's stored bytes `origin`, `data` at `within`.
    Copy {
        index: u64,
        origin: Vec<u8>,
        within: u64,
        data: Vec<u8>,
    },
    Remove {
        index: u64,
    },
    Read {
        index: u64,
        offset: u64,
        len: u64,
    },
    Flush,
}

fn op() -> impl Strategy<Value = Op> {
    let data =
        |max: u64| proptest::collection::vec(prop_oneof![Just(0u8), any::<u8>()], 0..max as usize);
    prop_oneof![
        (0..6u64, 0..BS).prop_flat_map(move |(index, within)| data(BS - within + 1).prop_map(
            move |data| Op::Create {
                index,
                within,
                data
            }
        )),
        (0..6u64, 0..BS).prop_flat_map(move |(index, offset)| data(BS - offset + 1).prop_map(
            move |data| Op::Write {
                index,
                offset,
                data
            }
        )),
        (0..6u64, 0..=BS, 0..BS).prop_flat_map(move |(index, stored, within)| (
            data(stored + 1).prop_map(move |mut d| {
                d.resize(stored as usize, 7);
                d
            }),
            data(BS - within + 1)
        )
            .prop_map(move |(origin, data)| Op::Copy {
                index,
                origin,
                within,
                data
            })),
        (0..6u64).prop_map(|index| Op::Remove { index }),
        (0..6u64, 0..BS).prop_flat_map(|(index, offset)| (0..=BS - offset)
            .prop_map(move |len| Op::Read { index, offset, len })),
        Just(Op::Flush),
    ]
}

/// Runs `ops` on every epoch and on a model (blocks as byte vectors); every observation must
/// match the model's.
fn agree(epochs: &[(&str, &dyn PrivateEpoch)], ops: &[Op]) -> Result<(), TestCaseError> {
    let mut model: std::collections::BTreeMap<u64, Vec<u8>> = Default::default();
    for op in ops {
        match op {
            Op::Create {
                index,
                within,
                data,
            } => {
                let mut b = vec![0u8; BS as usize];
                b[*within as usize..*within as usize + data.len()].copy_from_slice(data);
                model.insert(*index, b);
                for (name, e) in epochs {
                    e.create(*index, *within, data)
                        .map_err(|e| fail(name, op, e))?;
                }
            }
            Op::Copy {
                index,
                origin,
                within,
                data,
            } => {
                let mut b = origin.clone();
                b.resize(BS as usize, 0);
                b[*within as usize..*within as usize + data.len()].copy_from_slice(data);
                model.insert(*index, b);
                for (name, e) in epochs {
                    e.create_copy(*index, BS as usize, origin, *within as usize, data)
                        .map_err(|e| fail(name, op, e))?;
                }
            }
            Op::Write {
                index,
                offset,
                data,
            } => {
                let Some(b) = model.get_mut(index) else {
                    continue;
                };
                b[*offset as usize..*offset as usize + data.len()].copy_from_slice(data);
                for (name, e) in epochs {
                    e.write_in_place(*index, *offset, data)
                        .map_err(|e| fail(name, op, e))?;
                }
            }
            Op::Remove { index } => {
                model.remove(index);
                for (name, e) in epochs {
                    e.remove(*index).map_err(|e| fail(name, op, e))?;
                }
            }
            Op::Read { index, offset, len } => {
                for (name, e) in epochs {
                    let has = e.contains(*index).map_err(|e| fail(name, op, e))?;
                    prop_assert_eq!(has, model.contains_key(index), "{} {:?}", name, op);
                    if let Some(b) = model.get(index) {
                        let mut buf = vec![0xAAu8; *len as usize];
                        e.read_at(*index, *offset, &mut buf)
                            .map_err(|e| fail(name, op, e))?;
                        let want = &b[*offset as usize..(*offset + *len) as usize];
                        prop_assert_eq!(&buf[..], want, "{} {:?}", name, op);
                    }
                }
            }
            Op::Flush => {
                for (name, e) in epochs {
                    e.flush().map_err(|e| fail(name, op, e))?;
                }
            }
        }
    }
    for (name, e) in epochs {
        e.flush().map_err(|e| fail(name, &Op::Flush, e))?;
        let indexes = e.indexes().map_err(|e| fail(name, &Op::Flush, e))?;
        prop_assert_eq!(
            indexes.into_iter().collect::<Vec<_>>(),
            model.keys().copied().collect::<Vec<_>>(),
            "{}",
            name
        );
        for (index, b) in &model {
            let mut buf = Vec::new();
            e.read_block(*index, BS as usize, &mut buf)
                .map_err(|e| fail(name, &Op::Flush, e))?;
            prop_assert_eq!(&buf, b, "{} block {}", name, index);
            // A block said to store nothing reads as zeros.
            if e.is_hole(*index).map_err(|e| fail(name, &Op::Flush, e))? {
                prop_assert!(b.iter().all(|&x| x == 0), "{} block {}", name, index);
            }
        }
    }
    Ok(())
}

fn fail(name: &str, op: &Op, e: crate::error::Error) -> TestCaseError {
    TestCaseError::fail(format!("{name}: {op:?}: {e}"))
}

/// Runs `ops` through a local epoch, `store`'s epoch and a write-back cache (of 2 blocks, so
/// evictions happen) over a second epoch of `store`; then a fresh handle on each object epoch
/// (a new listing) must read the same.
fn check_against(store: &ObjectPrivate, ops: &[Op]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
    let local = LocalEpoch::new(dir.path().join("e"), dir.path().join("tmp"), BS, "t".into());
    // Local files with new blocks staged in tmp/ (as block I/O opens them).
    let staged = crate::services::volumes::staged::wrap(
        Box::new(LocalEpoch::new(
            dir.path().join("s/1"),
            dir.path().join("tmp"),
            BS,
            "t".into(),
        )),
        BS,
    );
    let object = store.open_epoch(ID, 1, BS, "t").unwrap();
    let inner = store.open_epoch(ID, 2, BS, "t").unwrap();
    let cached = WriteBack::new(inner, &dir.path().join("tmp"), BS, 2).unwrap();
    agree(
        &[
            ("local", &local),
            ("staged", staged.as_ref()),
            ("object", object.as_ref()),
            ("write-back", &cached),
        ],
        ops,
    )?;
    drop(cached);
    // Fresh handles list the store again: what was flushed is there, nothing else.
    let want = local.indexes().unwrap();
    for (name, epoch) in [("reopened object", 1), ("reopened write-back", 2)] {
        let e = store.open_epoch(ID, epoch, BS, "t").unwrap();
        prop_assert_eq!(&e.indexes().unwrap(), &want, "{}", name);
        for &index in &want {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            e.read_block(index, BS as usize, &mut a).unwrap();
            local.read_block(index, BS as usize, &mut b).unwrap();
            prop_assert_eq!(a, b, "{} block {}", name, index);
        }
    }
    prop_assert_eq!(store.remove_volume(ID).unwrap() > 0, !want.is_empty());
    prop_assert!(!store.has_volume(ID).unwrap());
    Ok(())
}
proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn local_object_and_write_back_stores_agree(ops in proptest::collection::vec(op(), 0..40)) {
        check_against(&memory_store(), &ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]
    /// Against a real S3 endpoint: set ARCH_TEST_STORE=s3://BUCKET and the AWS_* variables
    /// (`S3_PORT=7482 bash ../shared/services/ceph-s3.sh start DIR; . DIR/env`, then create
    /// the bucket). Unset, this test checks nothing and says so on stderr.
    #[test]
    fn local_and_s3_stores_agree(ops in proptest::collection::vec(op(), 0..24)) {
        let Some(store) = remote_store("agree") else {
            eprintln!(
                "local_and_s3_stores_agree: ARCH_TEST_STORE is not set, nothing checked \
                 (start Ceph RGW with ../shared/services/ceph-s3.sh and set \
                 ARCH_TEST_STORE=s3://BUCKET plus its AWS_* variables)"
            );
            return Ok(());
        };
        check_against(&store, &ops)?;
    }
}

/// The cost of 4 KiB writes into a 4 MiB private block: local in place, object
/// read-modify-write, and the write-back cache over the object store (flushed after every
/// write, and once after all of them). Prints a table; asserts only the content. Run by hand:
/// `ARCH_TEST_STORE=s3://BUCKET cargo test --lib rmw_cost -- --ignored --nocapture`.
#[test]
#[ignore]
fn rmw_cost() {
    use std::time::Instant;
    const BLOCK: u64 = 4 << 20;
    const WRITES: u64 = 32;
    let store = remote_store("rmw").expect("set ARCH_TEST_STORE=s3://BUCKET and AWS_*");
    let traffic = store.traffic();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
    let full: Vec<u8> = (0..BLOCK).map(|i| (i * 7 + 1) as u8).collect();
    let offsets: Vec<u64> = (0..WRITES).map(|i| (i * 37 % 1024) * 4096).collect();
    let page = vec![0x5au8; 4096];
    let moved = || {
        use std::sync::atomic::Ordering::Relaxed;
        traffic.bytes_got.load(Relaxed) + traffic.bytes_put.load(Relaxed)
    };
    let report = |name: &str, e: &dyn PrivateEpoch, flush_each: bool| {
        e.create(0, 0, &full).unwrap();
        e.flush().unwrap();
        let before = moved();
        let start = Instant::now();
        for &o in &offsets {
            e.write_in_place(0, o, &page).unwrap();
            if flush_each {
                e.flush().unwrap();
            }
        }
        e.flush().unwrap();
        let per = start.elapsed() / WRITES as u32;
        let bytes = (moved() - before) / WRITES;
        let mut back = vec![0u8; 4096];
        e.read_at(0, offsets[3], &mut back).unwrap();
        assert_eq!(back, page, "{name}");
        println!(
            "{name:<42} {:>10.2?} per write {:>10} bytes to/from the store per write",
            per, bytes
        );
    };
    let local = LocalEpoch::new(
        dir.path().join("e"),
        dir.path().join("tmp"),
        BLOCK,
        "t".into(),
    );
    report("local (pwrite + fdatasync each)", &local, true);
    let object = store.open_epoch(ID, 1, BLOCK, "t").unwrap();
    report("object (GET+PUT of the block each)", object.as_ref(), true);
    let tmp = dir.path().join("tmp");
    let wb = WriteBack::new(
        store.open_epoch(ID, 2, BLOCK, "t").unwrap(),
        &tmp,
        BLOCK,
        64,
    )
    .unwrap();
    report("write-back, flush (FUA) after each write", &wb, true);
    let wb = WriteBack::new(
        store.open_epoch(ID, 3, BLOCK, "t").unwrap(),
        &tmp,
        BLOCK,
        64,
    )
    .unwrap();
    report(
        &format!("write-back, one flush per {WRITES} writes"),
        &wb,
        false,
    );
    store.remove_volume(ID).unwrap();
}
