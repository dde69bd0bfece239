//! What a test reads, damages or removes in a repository's stored data, the same way in both
//! modes of the harness: the files under `blocks/`, `maps/`, `quarantine/` and `volumes/` of a
//! local repository, or the objects `PREFIX/blocks/<hex>`, `PREFIX/maps/<hex>`,
//! `PREFIX/quarantine/...` and `PREFIX/volumes/...` of its bucket in remote-store mode
//! (docs/FORMAT.md "Object-store layout"). Damage is done as a faulty disk or store (or a
//! hand edit) would: bypassing arch, overwriting in place.
//!
//! Names: `kind` is `blocks` or `maps`; `hex` is a block hash or map id. A `rel` path is
//! relative to the repository (`volumes/<id>/<epoch>/<index>`), the same locally and in the
//! bucket.

use crate::util::TestRepo;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

/// Where a repository's data lives, for the functions below.
enum Place {
    Local(PathBuf),
    Store(arch::storage::s3::S3Backend),
}

fn place(r: &TestRepo) -> Place {
    match &r.store {
        Some(url) => {
            Place::Store(arch::storage::s3::connect(url).expect("connect to the test store"))
        }
        None => Place::Local(r.root.clone()),
    }
}

/// The repository-relative location of block or map `hex`: sharded by its first two hex
/// digits on disk, flat in the bucket.
pub fn data_rel(r: &TestRepo, kind: &str, hex: &str) -> String {
    assert!(kind == "blocks" || kind == "maps", "{kind}");
    if r.store.is_some() {
        format!("{kind}/{hex}")
    } else {
        format!("{kind}/{}/{hex}", &hex[..2])
    }
}

/// The bytes stored at `rel`; None when there is nothing there.
pub fn read(r: &TestRepo, rel: &str) -> Option<Vec<u8>> {
    match place(r) {
        Place::Local(root) => match std::fs::read(root.join(rel)) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => panic!("read {rel}: {e}"),
        },
        Place::Store(b) => b.read_object(rel).expect("read a test object"),
    }
}

/// Replaces (or creates) what is stored at `rel` with `bytes`, in place: a damaged disk or
/// store. A sealed (read-only) local file is opened up first, as someone editing by hand
/// would.
pub fn write(r: &TestRepo, rel: &str, bytes: &[u8]) {
    match place(r) {
        Place::Local(root) => {
            let p = root.join(rel);
            if p.exists() {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            } else {
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            }
            std::fs::write(&p, bytes).unwrap();
        }
        Place::Store(b) => {
            use object_store::ObjectStoreExt;
            let key = rel
                .split('/')
                .fold(b.prefix().clone(), |p, seg| p.join(seg));
            b.runtime()
                .block_on(b.object_store().put(&key, bytes.to_vec().into()))
                .expect("overwrite a test object");
        }
    }
}

/// Reads `rel`, lets `f` change the bytes, writes them back in place.
pub fn damage(r: &TestRepo, rel: &str, f: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = read(r, rel).unwrap_or_else(|| panic!("{rel} is not stored"));
    f(&mut bytes);
    write(r, rel, &bytes);
}

/// Removes what is stored at `rel` (it must be there).
pub fn remove(r: &TestRepo, rel: &str) {
    match place(r) {
        Place::Local(root) => std::fs::remove_file(root.join(rel)).unwrap(),
        Place::Store(b) => {
            assert!(read(r, rel).is_some(), "{rel} is not stored");
            b.delete_object(rel).expect("delete a test object");
        }
    }
}

/// True when something is stored at `rel`.
pub fn exists(r: &TestRepo, rel: &str) -> bool {
    read(r, rel).is_some()
}

/// The names of the blocks or maps stored, sorted.
pub fn names(r: &TestRepo, kind: &str) -> Vec<String> {
    let mut out: Vec<String> = match place(r) {
        Place::Local(root) => walkdir::WalkDir::new(root.join(kind))
            .into_iter()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Place::Store(b) => b
            .list_names(kind)
            .expect("list test objects")
            .into_iter()
            .map(|(name, _)| name)
            .collect(),
    };
    out.sort();
    out
}

/// The names in repository-relative directory `dir` (files on disk, objects under that prefix
/// in the bucket), unsorted; none when it is absent.
fn names_in(r: &TestRepo, dir: &str) -> Vec<String> {
    match place(r) {
        Place::Local(root) => match std::fs::read_dir(root.join(dir)) {
            Ok(entries) => entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("read {dir}: {e}"),
        },
        Place::Store(b) => b
            .list_names(dir)
            .unwrap_or_else(|e| panic!("list the test objects under {dir}: {e}"))
            .into_iter()
            .map(|(name, _)| name)
            .collect(),
    }
}

/// The repository-relative locations of the quarantined copies of block or map `hex`
/// (`quarantine/<kind>/<hex>` and `<hex>.1`... on disk, `<hex>.<unique>` in the bucket),
/// sorted by name.
pub fn quarantined(r: &TestRepo, kind: &str, hex: &str) -> Vec<String> {
    let dir = format!("quarantine/{kind}");
    let names = names_in(r, &dir);
    let mut out: Vec<String> = names
        .into_iter()
        .filter(|n| n.split('.').next() == Some(hex))
        .map(|n| format!("{dir}/{n}"))
        .collect();
    out.sort();
    out
}

/// True when the repository has no quarantine at all (no directory, no object under it).
pub fn no_quarantine(r: &TestRepo) -> bool {
    match place(r) {
        Place::Local(root) => !root.join("quarantine").exists(),
        Place::Store(b) => b
            .list_names("quarantine")
            .expect("list test objects")
            .is_empty(),
    }
}

/// Deletes every object under the store prefix `url` (`s3://BUCKET/PREFIX`): a test
/// repository's data once the test is over. Best effort (the test's result stands).
pub fn delete_all(url: &str) {
    use futures_util::StreamExt;
    use object_store::ObjectStore;
    let Ok(b) = arch::storage::s3::connect(url) else {
        return;
    };
    let store = b.object_store();
    let prefix = b.prefix().clone();
    b.runtime().block_on(async {
        let keys = store
            .list(Some(&prefix))
            .map(|meta| meta.map(|m| m.location))
            .boxed();
        let mut deleted = store.delete_stream(keys);
        while deleted.next().await.is_some() {}
    });
}

/// An identity of every stored block and map copy that changes when the copy is rewritten or
/// replaced: (inode, mtime in ns, length) of each file under `blocks/` and `maps/`, or (ETag,
/// last-modified, length) of each object in the bucket.
pub fn versions(r: &TestRepo) -> std::collections::BTreeMap<String, String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = std::collections::BTreeMap::new();
    for kind in ["blocks", "maps"] {
        match place(r) {
            Place::Local(root) => {
                for e in walkdir::WalkDir::new(root.join(kind)) {
                    let e = e.unwrap();
                    let m = e.metadata().unwrap();
                    let rel = e.path().strip_prefix(&root).unwrap().display().to_string();
                    let version = (m.ino(), m.mtime() * 1_000_000_000 + m.mtime_nsec(), m.len());
                    out.insert(rel, format!("{version:?}"));
                }
            }
            Place::Store(b) => {
                use futures_util::StreamExt;
                use object_store::ObjectStore;
                let dir = b.prefix().clone().join(kind);
                let store = b.object_store();
                let metas: Vec<_> = b
                    .runtime()
                    .block_on(store.list(Some(&dir)).collect::<Vec<_>>());
                for m in metas {
                    let m = m.expect("list test objects");
                    let version = (m.e_tag, m.last_modified, m.size);
                    out.insert(m.location.to_string(), format!("{version:?}"));
                }
            }
        }
    }
    out
}

/// Every object under the store prefix `url`, sorted, as (`store:KEY`, length, ETag): the
/// store's part of [`TestRepo::snapshot`] (an ETag changes with the content).
pub fn store_dump(url: &str) -> Vec<(String, u64, String)> {
    use futures_util::StreamExt;
    use object_store::ObjectStore;
    let b = arch::storage::s3::connect(url).expect("connect to the test store");
    let store = b.object_store();
    let metas: Vec<_> = b
        .runtime()
        .block_on(store.list(Some(b.prefix())).collect::<Vec<_>>());
    let mut out: Vec<_> = metas
        .into_iter()
        .map(|m| {
            let m = m.expect("list test objects");
            (
                format!("store:{}", m.location),
                m.size,
                m.e_tag.unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The repository-relative location of private block `index` of epoch `epoch` of volume `id`
/// (`volumes/<id>/<epoch>/<index>`, a file or an object).
pub fn private_rel(id: &str, epoch: u64, index: u64) -> String {
    format!("volumes/{id}/{epoch}/{index}")
}

/// The indexes of the private blocks stored for epoch `epoch` of volume `id`, sorted.
pub fn private_blocks(r: &TestRepo, id: &str, epoch: u64) -> Vec<u64> {
    let dir = format!("volumes/{id}/{epoch}");
    let names = names_in(r, &dir);
    let mut out: Vec<u64> = names
        .iter()
        .map(|n| {
            n.parse()
                .unwrap_or_else(|_| panic!("{dir}/{n} is not a block"))
        })
        .collect();
    out.sort();
    out
}

/// True when what is stored at `rel` (which must be there) takes no data space: a local
/// file with no allocated blocks (a hole), or an empty object.
pub fn holds_no_data(r: &TestRepo, rel: &str) -> bool {
    match place(r) {
        Place::Local(root) => {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::metadata(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
            m.blocks() == 0
        }
        Place::Store(_) => read(r, rel)
            .unwrap_or_else(|| panic!("{rel} is not stored"))
            .is_empty(),
    }
}

/// Makes private block `rel` (of a volume with blocks of `block_size` bytes) impossible to
/// write in place until the returned guard is dropped: the way a disk or store refuses a
/// write of one block.
///
/// Locally its file becomes a running program (the kernel refuses to open a running
/// executable for writing, ETXTBSY, even for root); the guard kills the program. In the
/// bucket its object becomes longer than a block, which no read-modify-write accepts (arch
/// reads a block before patching it and refuses an overlong one as corrupt); the guard leaves
/// it so.
pub fn unwritable(r: &TestRepo, rel: &str, block_size: usize) -> Option<std::process::Child> {
    let root = match place(r) {
        Place::Store(_) => {
            write(r, rel, &vec![0x5a; block_size + 1]);
            return None;
        }
        Place::Local(root) => root,
    };
    let path = root.join(rel);
    std::fs::remove_file(&path).unwrap();
    std::fs::copy("/bin/sleep", &path).unwrap();
    for _ in 0..50 {
        // A sibling test forking while the copy was open may hold it open for writing a
        // moment (ETXTBSY on exec): try again.
        match std::process::Command::new(&path).arg("600").spawn() {
            Ok(child) => return Some(child),
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Err(e) => panic!("run {}: {e}", path.display()),
        }
    }
    panic!("{} never ran", path.display())
}
