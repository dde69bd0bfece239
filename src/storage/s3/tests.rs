//! The object-store backend over object_store's in-memory store (same create-only semantics
//! as S3's If-None-Match: *); the real Ceph RGW runs in tests/integration/remote_store.rs.

use super::*;
use crate::progress::NoProgress;
use object_store::memory::InMemory;

fn backend() -> (S3Backend, Arc<InMemory>) {
    let mem = Arc::new(InMemory::new());
    let url = StoreUrl::parse("s3://bucket/repo").unwrap();
    (
        S3Backend::over(mem.clone(), &url, "memory".into()).unwrap(),
        mem,
    )
}

fn put_raw(b: &S3Backend, key: &str, bytes: &[u8]) {
    let key = b.rel_key(key);
    b.runtime()
        .block_on(b.object_store().put(&key, bytes.to_vec().into()))
        .unwrap();
}

#[test]
fn a_batch_uploads_once_and_a_second_batch_sends_nothing() {
    let (b, _) = backend();
    let blocks: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i + 1; 100 + i as usize]).collect();
    let batch = b.begin_batch().unwrap();
    for data in &blocks {
        assert!(batch.stage(&BlockHash::of_bytes(data), data).unwrap());
        // Staged twice in one batch: written once.
        assert!(!batch.stage(&BlockHash::of_bytes(data), data).unwrap());
    }
    batch.commit().unwrap();
    assert_eq!(b.stats().puts.load(Ordering::Relaxed), 40);
    let batch = b.begin_batch().unwrap();
    for data in &blocks {
        assert!(!batch.stage(&BlockHash::of_bytes(data), data).unwrap());
    }
    batch.commit().unwrap();
    assert_eq!(
        b.stats().puts.load(Ordering::Relaxed),
        40,
        "nothing sent again"
    );
    let mut buf = Vec::new();
    for data in &blocks {
        let h = BlockHash::of_bytes(data);
        assert!(b.read_block(&h, &mut buf).unwrap());
        assert_eq!(&buf, data);
        assert_eq!(b.block_len(&h).unwrap(), Some(data.len() as u64));
    }
    let mut listed = Vec::new();
    b.for_each_block(&mut |h, len| {
        listed.push((h, len));
        Ok(())
    })
    .unwrap();
    assert_eq!(listed.len(), 40);
}

#[test]
fn a_racing_create_of_the_same_block_is_success_and_of_another_length_is_damage() {
    let (b, _) = backend();
    let data = b"block data".to_vec();
    let h = BlockHash::of_bytes(&data);
    // Another host created it between our HEAD and our PUT: PutMode::Create is refused,
    // the read-back finds the right length, the create counts as done.
    let key = b.key(BLOCKS, &h);
    put_raw(&b, &format!("blocks/{}", h.to_hex()), &data);
    assert!(
        !b.runtime()
            .block_on(b.shared.create(&key, data.clone().into(), true))
            .unwrap()
    );
    // Under the name, an object of another length: refused as damage, not taken as stored.
    let other = BlockHash::of_bytes(b"other");
    put_raw(
        &b,
        &format!("blocks/{}", other.to_hex()),
        b"much longer than other",
    );
    let key = b.key(BLOCKS, &other);
    let e = b
        .runtime()
        .block_on(b.shared.create(&key, b"other".to_vec().into(), true))
        .unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
}

#[test]
fn a_longer_stored_block_is_reported_by_its_length_and_odd_names_are_not_blocks() {
    let (b, _) = backend();
    let h = BlockHash::of_bytes(b"x");
    put_raw(&b, &format!("blocks/{}", h.to_hex()), &[7u8; 5000]);
    put_raw(&b, "blocks/not-a-hash", b"x");
    put_raw(&b, &format!("blocks/sub/{}", h.to_hex()), b"x");
    let mut buf = vec![0u8; 4096];
    assert_eq!(b.read_block_into(&h, &mut buf).unwrap(), Some(5000));
    let missing = BlockHash::of_bytes(b"missing");
    assert_eq!(b.read_block_into(&missing, &mut buf).unwrap(), None);
    let mut n = 0;
    b.for_each_block(&mut |_, _| {
        n += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn maps_round_trip_and_a_damaged_map_is_corrupt() {
    let (b, _) = backend();
    let map =
        BlockMap::from_dense(4096, 8192, &[BlockHash::of_bytes(b"a"), BlockHash::ZERO]).unwrap();
    let id = b.put_map(&map).unwrap();
    assert_eq!(b.put_map(&map).unwrap(), id, "idempotent");
    assert_eq!(b.read_map(&id).unwrap(), Some(map));
    put_raw(&b, &format!("maps/{}", id.to_hex()), b"garbage");
    assert!(matches!(b.read_map(&id), Err(Error::Corrupt { .. })));
    assert_eq!(b.read_map(&BlockHash::of_bytes(b"none")).unwrap(), None);
}

#[test]
fn sweep_deletes_only_what_is_not_kept_and_quarantine_moves_aside() {
    let (b, _) = backend();
    let batch = b.begin_batch().unwrap();
    let (keep, drop) = (b"keep".to_vec(), b"drop".to_vec());
    let (hk, hd) = (BlockHash::of_bytes(&keep), BlockHash::of_bytes(&drop));
    batch.stage(&hk, &keep).unwrap();
    batch.stage(&hd, &drop).unwrap();
    batch.commit().unwrap();
    let dry = b.sweep(BLOCKS, &|h| *h == hk, true, &NoProgress).unwrap();
    assert_eq!((dry.kept, dry.removed, dry.removed_bytes), (1, 1, 4));
    assert!(b.has_block(&hd).unwrap(), "a dry run deletes nothing");
    b.sweep(BLOCKS, &|h| *h == hk, false, &NoProgress).unwrap();
    assert!(b.has_block(&hk).unwrap() && !b.has_block(&hd).unwrap());
    let to = b.quarantine(BLOCKS, &hk).unwrap();
    assert!(to.to_str().unwrap().starts_with(&format!(
        "s3://bucket/repo/quarantine/blocks/{}.",
        hk.to_hex()
    )));
    assert!(!b.has_block(&hk).unwrap());
    assert_eq!(b.quarantined(BLOCKS).unwrap(), vec![hk.to_hex()]);
}

#[test]
fn the_marker_is_created_once_then_joined() {
    let (b, _) = backend();
    assert_eq!(b.read_marker().unwrap(), None);
    assert!(b.create_or_join("format = 1\n", |_| Ok(())).unwrap());
    let seen = std::sync::Mutex::new(String::new());
    let created = b
        .create_or_join("format = 1\n", |t| {
            *seen.lock().unwrap() = t.to_string();
            Ok(())
        })
        .unwrap();
    assert!(!created);
    assert_eq!(*seen.lock().unwrap(), "format = 1\n");
}

#[test]
fn a_batch_names_the_blocks_it_created_and_never_one_it_found() {
    let (b, _) = backend();
    let found = vec![9u8; 300];
    put_raw(
        &b,
        &format!("blocks/{}", BlockHash::of_bytes(&found)),
        &found,
    );
    let made: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i + 1; 50 + i as usize]).collect();
    let batch = b.begin_batch().unwrap();
    for data in made.iter().chain([&found]) {
        batch.stage(&BlockHash::of_bytes(data), data).unwrap();
    }
    let mut created = batch.created();
    created.sort();
    let mut want: Vec<BlockHash> = made.iter().map(|d| BlockHash::of_bytes(d)).collect();
    want.sort();
    assert_eq!(
        created, want,
        "every upload waited for; the found block is not ours"
    );
    batch.commit().unwrap();
    // Taken back: exactly those, the found one stays.
    b.delete_blocks(&created).unwrap();
    let mut listed = Vec::new();
    b.for_each_block(&mut |h, _| {
        listed.push(h);
        Ok(())
    })
    .unwrap();
    assert_eq!(listed, [BlockHash::of_bytes(&found)]);
    // A second batch of the same blocks finds the found one and creates the rest again.
    let again = b.begin_batch().unwrap();
    for data in made.iter().chain([&found]) {
        again.stage(&BlockHash::of_bytes(data), data).unwrap();
    }
    assert_eq!(again.created().len(), made.len());
}

#[test]
fn only_a_403_status_or_a_refusal_code_reads_as_refused_credentials() {
    // A gateway that went away mid-request, on a port holding the digits 403 (CI saw it).
    let dropped = "Generic S3 error: Error performing POST http://127.0.0.1:40375/arch-ci?delete \
                   in 126.524015ms - HTTP error: request or response body error";
    assert!(!refused_credentials(dropped));
    let forbidden = "Error performing PUT http://127.0.0.1:7480/b/k in 2ms - Server returned \
                     non-2xx status code: 403 Forbidden: <Code>AccessDenied</Code>";
    assert!(refused_credentials(forbidden));
    assert!(refused_credentials("<Code>SignatureDoesNotMatch</Code>"));
    assert!(refused_credentials("<Code>InvalidAccessKeyId</Code>"));
}
