use super::*;
use crate::services::volumes::blockio::{BlockSource, VolumeBlocks};
use crate::services::volumes::private::local::LocalEpoch;
use crate::storage::BlockMap;
use crate::storage::hash::strip_trailing_zeros;
use crate::storage::local::LocalBackend;
use std::fs;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

const BS: usize = 16 * 4096;

/// Deterministic non-zero-ish bytes.
fn noise(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 31 + seed as usize * 7) % 251) as u8 + 1)
        .collect()
}

/// Whether `O_DIRECT` files can be opened in `dir` (not on tmpfs, for one).
fn direct_works(dir: &Path) -> bool {
    let p = dir.join("probe");
    let ok = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .custom_flags(libc::O_DIRECT)
        .open(&p)
        .is_ok();
    let _ = fs::remove_file(p);
    ok
}

/// Pages of `file` in the page cache.
fn resident_pages(file: &File, len: usize) -> usize {
    use std::os::unix::io::AsRawFd;
    let mut vec = vec![0u8; len.div_ceil(4096)];
    // SAFETY: a fresh read-only mapping (not populated: that would read the pages in),
    // asked about by mincore (a byte per page in `vec`) and unmapped again; nothing touches
    // its memory.
    unsafe {
        let m = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(m, libc::MAP_FAILED);
        assert_eq!(libc::mincore(m, len, vec.as_mut_ptr()), 0);
        libc::munmap(m, len);
    }
    vec.iter().filter(|&&b| b & 1 == 1).count()
}

#[test]
fn a_copy_is_the_origin_with_the_write_and_its_zero_pages_stay_holes() {
    let dir = tempfile::tempdir().unwrap();
    let direct = direct_works(dir.path());
    // Stored forms: a whole block with a zero page inside, one stripped to an unaligned
    // length, one of less than a page, none at all.
    let mut whole = noise(BS, 1);
    whole[5 * 4096..6 * 4096].fill(0);
    let stripped = noise(6 * 4096 + 100, 2);
    let short = noise(300, 3);
    // (within, chunk): in a page, across pages, in the zero page, past the origin's end, at
    // the block's end, zeros over data, the whole block.
    let chunks: Vec<(usize, Vec<u8>)> = vec![
        (100, vec![9; 10]),
        (3 * 4096 + 4000, vec![8; 300]),
        (5 * 4096 + 17, vec![7; 5]),
        (10 * 4096 + 1, vec![6; 4096]),
        (BS - 3, vec![5; 3]),
        (4096, vec![0; 4096]),
        (0, noise(BS, 4)),
    ];
    for (o, stored) in [&whole, &stripped, &short, &Vec::new()]
        .into_iter()
        .enumerate()
    {
        let src = dir.path().join(format!("origin{o}"));
        fs::write(&src, stored).unwrap();
        let mapped =
            Origin::Mapped(Mapped::of_file(&File::open(&src).unwrap(), stored.len()).unwrap());
        let read = Origin::Read(stored.clone());
        for (c, (within, chunk)) in chunks.iter().enumerate() {
            let mut want = stored.clone();
            want.resize(BS, 0);
            want[*within..within + chunk.len()].copy_from_slice(chunk);
            for (k, origin) in [&mapped, &read].into_iter().enumerate() {
                let p = dir.path().join(format!("copy{o}-{c}-{k}"));
                let f = File::options()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&p)
                    .unwrap();
                f.set_len(BS as u64).unwrap();
                write_copy(&f, BS, origin, *within, chunk).unwrap();
                let what = format!("origin {o}, chunk {c}, {}", ["mapped", "read"][k]);
                if direct && k == 0 {
                    // Written around the page cache: nothing of it is cached.
                    assert_eq!(resident_pages(&f, BS), 0, "{what}");
                }
                assert_eq!(fs::read(&p).unwrap(), want, "{what}");
                let data_pages = want
                    .chunks(4096)
                    .filter(|p| p.iter().any(|&b| b != 0))
                    .count();
                let allocated = fs::metadata(&p).unwrap().blocks() * 512;
                assert!(
                    allocated <= (data_pages * 4096) as u64,
                    "{what}: holes filled"
                );
                fs::remove_file(&p).unwrap();
            }
        }
    }
}

#[test]
fn the_hasher_takes_an_origin_when_idle_and_the_caller_hashes_it_otherwise() {
    let hasher = Hasher::default();
    let origin = Arc::new(Origin::Read(noise(BS, 5)));
    let want = BlockHash::of_bytes(&origin);
    // The thread started for the first origin takes it.
    let first = hasher.offer(origin.clone());
    assert!(matches!(first, Pending::Offered(..)));
    assert_eq!(first.digest(), want);
    // Later origins go to the thread when it waits for work, else to the caller: either
    // way the digest is the origin's, and the thread takes one once it waits.
    let mut offered = false;
    for _ in 0..2000 {
        let pending = hasher.offer(origin.clone());
        let here = matches!(pending, Pending::Here(_));
        assert_eq!(pending.digest(), want);
        if !here {
            offered = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert!(
        hasher.started() && offered,
        "the hasher never took an origin"
    );
    drop(hasher);
}

/// A store with blocks `stored` (stored forms) at indexes 0.. of a volume of 4 blocks, and
/// block I/O over it with a local epoch: `(dir, backend, map)`.
fn volume(stored: &[Vec<u8>]) -> (tempfile::TempDir, LocalBackend, BlockMap) {
    let dir = tempfile::tempdir().unwrap();
    LocalBackend::create_layout(dir.path()).unwrap();
    let backend = LocalBackend::new(dir.path());
    let batch = backend.begin_batch().unwrap();
    let mut entries = Vec::new();
    for (i, s) in stored.iter().enumerate() {
        let h = BlockHash::of_bytes(s);
        batch.stage(&h, s).unwrap();
        entries.push((i as u64, h));
    }
    batch.commit().unwrap();
    let map = BlockMap::from_entries(BS as u32, 4 * BS as u64, entries).unwrap();
    fs::create_dir_all(dir.path().join("tmp")).unwrap();
    (dir, backend, map)
}

fn blocks<'a>(dir: &Path, backend: &'a LocalBackend, map: &BlockMap) -> VolumeBlocks<'a> {
    let epoch = LocalEpoch::new(
        dir.join("volumes/v/1"),
        dir.join("tmp"),
        BS as u64,
        "volume t".into(),
    );
    VolumeBlocks::new(backend, map.clone(), Box::new(epoch), "volume t".into())
}

/// The staged and placed block files in `dir`, sorted (other entries left out).
fn names(dir: &Path) -> Vec<String> {
    let mut v = crate::services::volumes::staged::tests::names(dir);
    v.retain(|n| n.starts_with("stage-") || n.bytes().all(|b| b.is_ascii_digit()));
    v
}

#[test]
fn first_touches_copy_the_stored_blocks_and_the_flush_places_them() {
    let mut b0 = noise(BS, 6);
    b0[2 * 4096..3 * 4096].fill(0);
    let b1 = noise(3 * 4096 + 5, 7);
    let (dir, backend, map) = volume(&[b0.clone(), b1.clone()]);
    let v = blocks(dir.path(), &backend, &map);
    let stats = v.write_at(BS as u64 - 2, &[1, 2, 3, 4]).unwrap();
    assert_eq!(stats.blocks_copied, 2);
    assert!(
        names(&dir.path().join("volumes/v/1")).is_empty(),
        "staged until the flush"
    );
    v.finish().unwrap();
    assert_eq!(names(&dir.path().join("volumes/v/1")), ["0", "1"]);
    assert!(names(&dir.path().join("tmp")).is_empty());
    let mut want0 = b0.clone();
    want0[BS - 2..].copy_from_slice(&[1, 2]);
    let mut want1 = b1.clone();
    want1.resize(BS, 0);
    want1[..2].copy_from_slice(&[3, 4]);
    for (i, want) in [want0, want1].iter().enumerate() {
        let p = dir.path().join(format!("volumes/v/1/{i}"));
        assert_eq!(&fs::read(&p).unwrap(), want, "block {i}");
        let data_pages = want
            .chunks(4096)
            .filter(|p| p.iter().any(|&b| b != 0))
            .count();
        assert!(fs::metadata(&p).unwrap().blocks() * 512 <= (data_pages * 4096) as u64);
        assert_eq!(v.source(i as u64).unwrap(), BlockSource::Private);
    }
    // The stored blocks are untouched.
    assert_eq!(fs::read(backend.block_path(&map.hash_at(0))).unwrap(), b0);
    assert_eq!(
        fs::read(backend.block_path(&map.hash_at(1))).unwrap(),
        strip_trailing_zeros(&b1)
    );
}

#[test]
fn a_corrupt_or_missing_origin_fails_the_write_and_leaves_no_private_block() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, backend, map) = volume(&[noise(BS, 8), noise(BS, 9), noise(BS, 10)]);
    // Block 0: a byte flipped (same length); block 1: longer than a block; block 2: gone.
    let damage = |i: u64, f: &dyn Fn(&mut Vec<u8>)| {
        let p = backend.block_path(&map.hash_at(i));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let mut bytes = fs::read(&p).unwrap();
        f(&mut bytes);
        fs::write(&p, bytes).unwrap();
    };
    damage(0, &|b| b[4097] ^= 1);
    damage(1, &|b| b.push(1));
    fs::remove_file(backend.block_path(&map.hash_at(2))).unwrap();
    let v = blocks(dir.path(), &backend, &map);
    for i in 0..3u64 {
        let err = v.write_at(i * BS as u64 + 5, &[1; 100]).unwrap_err();
        let corrupt = matches!(err, Error::CorruptBlock { .. });
        let missing = matches!(err, Error::MissingBlock { .. });
        assert!(if i == 2 { missing } else { corrupt }, "block {i}: {err}");
        assert!(
            names(&dir.path().join("tmp")).is_empty(),
            "block {i}: staged copy left"
        );
        assert_eq!(v.source(i).unwrap(), BlockSource::Shared(map.hash_at(i)));
    }
    v.finish().unwrap();
    assert!(names(&dir.path().join("volumes/v/1")).is_empty());
    assert!(v.private_indexes().unwrap().is_empty());
}
