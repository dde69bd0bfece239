//! The local-directory backend: `blocks/XX/<hash>` and `maps/XX/<id>` under a repository root,
//! and, in a repository with packs, `packs/<id>` (many blocks to a file; `storage::packed`).

use super::backend::{Backend, BlockBatch};
use super::fsutil::{
    Modes, create_dir, create_dir_all, is_regular_file, open_regular, sync_dir, sync_filesystem,
    sync_parent,
};
use super::hash::{BlockHash, BlockHashMap, BlockHashSet};
use super::map::{BlockMap, MapId};
use super::mapped::{BlockFile, BlockMapping, OpenedBlock};
use super::pack::{PACKS_DIR, PackSet};
use super::packed::{BatchPacks, open_packed, packed_version, publish, read_entry};
use crate::error::{Error, Result};
use std::fs;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// Names of the directories the backend owns under the repository root.
pub const BLOCKS_DIR: &str = "blocks";
pub const MAPS_DIR: &str = "maps";
pub const TMP_DIR: &str = "tmp";

/// Blocks and maps stored as files in a local directory.
///
/// Only regular files count: a block or map name held by a symlink, FIFO or device is
/// absent for [`Backend::has_block`] and the walkers (so a put writes the real file over it)
/// and refused as corrupt when read. Blocks and maps are sealed read-only before the rename
/// that publishes them.
///
/// With packs (`packs = true` in arch.toml) every new block goes into a pack; a block is
/// stored when a pack holds it or its loose file exists (every read method looks at both,
/// packs first).
pub struct LocalBackend {
    root: PathBuf,
    modes: Modes,
    packs: Option<Arc<PackSet>>,
}

impl LocalBackend {
    /// A backend over an existing repository root, with the root's [`Modes`].
    pub fn new(root: &Path) -> LocalBackend {
        LocalBackend {
            root: root.to_path_buf(),
            modes: Modes::of_dir(root),
            packs: None,
        }
    }

    /// A backend over an existing repository root whose new blocks go into packs; packed
    /// entries longer than `block_size` make their pack damaged.
    pub fn with_packs(root: &Path, block_size: u64) -> LocalBackend {
        LocalBackend {
            packs: Some(Arc::new(PackSet::new(root, block_size))),
            ..LocalBackend::new(root)
        }
    }

    /// The packs of this store, when it keeps blocks in packs.
    pub fn packs(&self) -> Option<&PackSet> {
        self.packs.as_deref()
    }

    /// The packed block `hash` with its pack open, None when no pack holds it (or the store
    /// has no packs).
    fn packed(&self, hash: &BlockHash) -> Result<Option<(fs::File, super::pack::Located)>> {
        match &self.packs {
            Some(packs) => open_packed(packs, hash),
            None => Ok(None),
        }
    }

    /// Creates the directory skeleton: `blocks/00..ff`, `maps/00..ff`, `tmp/`, with the
    /// modes of `root` (set it first).
    pub fn create_layout(root: &Path) -> Result<()> {
        let modes = Modes::of_dir(root);
        for top in [BLOCKS_DIR, MAPS_DIR] {
            create_dir(&root.join(top), modes)?;
            for shard in 0..=255u8 {
                create_dir(&root.join(top).join(format!("{shard:02x}")), modes)?;
            }
        }
        create_dir(&root.join(TMP_DIR), modes)
    }

    /// The modes new files and directories get.
    pub fn modes(&self) -> Modes {
        self.modes
    }

    /// Path of a block file.
    pub fn block_path(&self, hash: &BlockHash) -> PathBuf {
        shard_path(&self.root.join(BLOCKS_DIR), hash)
    }

    /// Path of a map file.
    pub fn map_path(&self, id: &MapId) -> PathBuf {
        shard_path(&self.root.join(MAPS_DIR), id)
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join(TMP_DIR)
    }
}

fn shard_path(top: &Path, hash: &BlockHash) -> PathBuf {
    let hex = hash.to_hex();
    top.join(&hex[..2]).join(hex)
}

fn temp_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Visits the regular files `top/XX/<64 hex>`, skipping anything not named like a hash and
/// following no symlink (a symlinked shard or entry is not visited; fsck reports it).
fn for_each_hash_file(top: &Path, f: &mut dyn FnMut(BlockHash, u64) -> Result<()>) -> Result<()> {
    let shards = fs::read_dir(top).map_err(|e| Error::io("list", top, e))?;
    let mut shard_dirs: Vec<PathBuf> = shards
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    shard_dirs.sort();
    for shard in shard_dirs {
        let entries = fs::read_dir(&shard).map_err(|e| Error::io("list", &shard, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("list", &shard, e))?;
            let name = entry.file_name();
            let Some(hash) = name.to_str().and_then(|n| n.parse::<BlockHash>().ok()) else {
                continue;
            };
            // DirEntry::metadata does not follow symlinks.
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                // Removed since the listing (by gc or a quarantine move): not stored any more.
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("stat", entry.path(), e)),
            };
            if !meta.file_type().is_file() {
                continue;
            }
            f(hash, meta.len())?;
        }
    }
    Ok(())
}

impl Backend for LocalBackend {
    fn has_block(&self, hash: &BlockHash) -> Result<bool> {
        if let Some(packs) = &self.packs
            && packs.locate(hash, false)?.is_some()
        {
            return Ok(true);
        }
        is_regular_file(&self.block_path(hash))
    }

    fn read_block(&self, hash: &BlockHash, buf: &mut Vec<u8>) -> Result<bool> {
        buf.clear();
        if let Some((f, at)) = self.packed(hash)? {
            buf.resize(at.len as usize, 0);
            read_entry(&f, &at, buf)?;
            return Ok(true);
        }
        let p = self.block_path(hash);
        let Some(mut f) = open_regular(&p)? else {
            return Ok(false);
        };
        f.read_to_end(buf).map_err(|e| Error::io("read", &p, e))?;
        Ok(true)
    }

    fn block_version(&self, hash: &BlockHash) -> Result<Option<super::backend::BlockVersion>> {
        use std::os::unix::fs::MetadataExt;
        if let Some(packs) = &self.packs
            && let Some(v) = packed_version(packs, hash)?
        {
            return Ok(Some(v));
        }
        let p = self.block_path(hash);
        let m = match fs::symlink_metadata(&p) {
            Ok(m) if m.is_file() => m,
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("stat", &p, e)),
        };
        // Another file (inode), or this one written to (size, mtime, ctime): another version.
        Ok(Some(super::backend::BlockVersion([
            m.dev() as i64,
            m.ino() as i64,
            m.size() as i64,
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
        ])))
    }

    fn read_block_into(&self, hash: &BlockHash, buf: &mut [u8]) -> Result<Option<usize>> {
        if let Some((f, at)) = self.packed(hash)? {
            // A longer entry fills `buf` and reports its length, as a longer file does.
            read_entry(&f, &at, buf)?;
            return Ok(Some(at.len as usize));
        }
        let p = self.block_path(hash);
        let Some(mut f) = open_regular(&p)? else {
            return Ok(None);
        };
        // Read until `buf` is full or the file ends, then one byte more: a longer file is
        // reported (as longer than `buf`), never silently cut.
        let mut filled = 0;
        loop {
            let n = if filled < buf.len() {
                f.read(&mut buf[filled..])
            } else {
                f.read(&mut [0u8; 1])
            };
            match n {
                Ok(0) => return Ok(Some(filled)),
                Ok(n) => filled += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("read", &p, e)),
            }
            if filled > buf.len() {
                return Ok(Some(filled));
            }
        }
    }

    fn block_len(&self, hash: &BlockHash) -> Result<Option<u64>> {
        if let Some(packs) = &self.packs
            && let Some(at) = packs.locate(hash, false)?
        {
            return Ok(Some(u64::from(at.len)));
        }
        let p = self.block_path(hash);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("stat", &p, e)),
        }
    }

    fn map_block(&self, hash: &BlockHash, max: usize) -> Result<BlockMapping> {
        Ok(match self.open_block(hash, max)? {
            OpenedBlock::File(f) => BlockMapping::Mapped(
                f.map()
                    .map_err(|e| Error::io("map", self.block_location(hash), e))?,
            ),
            OpenedBlock::Missing => BlockMapping::Missing,
            OpenedBlock::TooLong(len) => BlockMapping::TooLong(len),
            OpenedBlock::Unsupported => BlockMapping::Unsupported,
        })
    }

    fn open_block(&self, hash: &BlockHash, max: usize) -> Result<OpenedBlock> {
        if let Some((f, at)) = self.packed(hash)? {
            if at.len as usize > max {
                return Ok(OpenedBlock::TooLong(u64::from(at.len)));
            }
            return Ok(OpenedBlock::File(BlockFile::at(
                f,
                at.offset,
                at.len as usize,
            )));
        }
        let p = self.block_path(hash);
        let Some(f) = open_regular(&p)? else {
            return Ok(OpenedBlock::Missing);
        };
        let len = f.metadata().map_err(|e| Error::io("stat", &p, e))?.len();
        if len > max as u64 {
            return Ok(OpenedBlock::TooLong(len));
        }
        Ok(OpenedBlock::File(BlockFile::new(f, len as usize)))
    }

    fn begin_batch(&self) -> Result<Box<dyn BlockBatch>> {
        let dir = self.tmp_dir().join(temp_name("batch"));
        create_dir(&dir, self.modes)?;
        Ok(Box::new(LocalBatch {
            packs: self.packs.as_ref().map(|set| {
                (
                    Arc::clone(set),
                    RwLock::new(Some(BatchPacks::new(&dir, self.modes))),
                )
            }),
            modes: self.modes,
            blocks_dir: self.root.join(BLOCKS_DIR),
            backend_root: self.root.clone(),
            dir,
            staged: Mutex::new(BlockHashSet::default()),
            committed: false,
        }))
    }

    /// Removes a loose block file. A packed block cannot be removed alone (a pack never
    /// changes): gc removes or rewrites whole packs, and asking to delete a packed block is
    /// an error.
    fn delete_block(&self, hash: &BlockHash) -> Result<()> {
        if let Some(packs) = &self.packs
            && let Some(at) = packs.locate(hash, false)?
        {
            return Err(Error::invalid(format!(
                "block {hash} is in pack {}: a packed block is removed with its pack, by `arch gc`",
                at.path.display()
            )));
        }
        let p = self.block_path(hash);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", &p, e)),
        }
    }

    /// Loose block files, then packed blocks; each hash once (a block both loose and packed
    /// is visited as the loose file).
    fn for_each_block(&self, f: &mut dyn FnMut(BlockHash, u64) -> Result<()>) -> Result<()> {
        let Some(packs) = &self.packs else {
            return for_each_hash_file(&self.root.join(BLOCKS_DIR), f);
        };
        let mut packed: BlockHashMap<u64> = packs.blocks()?.into_iter().collect();
        for_each_hash_file(&self.root.join(BLOCKS_DIR), &mut |hash, len| {
            packed.remove(&hash);
            f(hash, len)
        })?;
        let mut rest: Vec<(BlockHash, u64)> = packed.into_iter().collect();
        rest.sort_unstable();
        rest.into_iter().try_for_each(|(hash, len)| f(hash, len))
    }

    fn put_map(&self, map: &BlockMap) -> Result<MapId> {
        let bytes = map.encode();
        let id = BlockHash::of_bytes(&bytes);
        let dest = self.map_path(&id);
        if is_regular_file(&dest)? {
            return Ok(id);
        }
        if let Some(parent) = dest.parent() {
            create_dir_all(parent, self.modes)?;
        }
        super::fsutil::atomic_write_mode(&self.tmp_dir(), &dest, &bytes, self.modes.sealed())?;
        Ok(id)
    }

    fn read_map(&self, id: &MapId) -> Result<Option<BlockMap>> {
        let p = self.map_path(id);
        let Some(mut f) = open_regular(&p)? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)
            .map_err(|e| Error::io("read", &p, e))?;
        if BlockHash::of_bytes(&bytes) != *id {
            return Err(Error::Corrupt {
                path: p,
                reason: "map content does not match its name (sha256)".into(),
            });
        }
        BlockMap::decode(&bytes)
            .map(Some)
            .map_err(|e| Error::Corrupt {
                path: p,
                reason: e.to_string(),
            })
    }

    fn delete_map(&self, id: &MapId) -> Result<()> {
        let p = self.map_path(id);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", &p, e)),
        }
    }

    fn for_each_map(&self, f: &mut dyn FnMut(MapId) -> Result<()>) -> Result<()> {
        for_each_hash_file(&self.root.join(MAPS_DIR), &mut |id, _| f(id))
    }

    /// The loose file's path, or the pack's (`packs/<id>`) when a pack holds the block.
    fn block_location(&self, hash: &BlockHash) -> PathBuf {
        match &self.packs {
            Some(packs) => match packs.locate(hash, false) {
                Ok(Some(at)) => at.path,
                _ => self.block_path(hash),
            },
            None => self.block_path(hash),
        }
    }

    fn map_location(&self, id: &MapId) -> PathBuf {
        self.map_path(id)
    }

    fn as_local(&self) -> Option<&LocalBackend> {
        Some(self)
    }
}

/// A batch staged in `tmp/batch-<pid>-<uuid>/`. Commit order: close the packs (their index
/// written), syncfs (staged data durable), rename each pack into `packs/` and each loose file
/// into `blocks/XX/`, syncfs (renames durable), remove the batch directory. A crash before
/// the renames leaves only the batch directory (garbage); a crash during them leaves
/// complete, durable packs and blocks that no map references yet (garbage until referenced).
///
/// With packs every staged block is appended to a pack (none is staged loose); a block is
/// already stored when a pack known to this process holds it (a loose file is not looked
/// for, see `stage`). Without packs, when its loose file exists.
struct LocalBatch {
    /// The store's packs and this batch's pack writer (taken at commit), with packs on.
    packs: Option<(Arc<PackSet>, RwLock<Option<BatchPacks>>)>,
    modes: Modes,
    blocks_dir: PathBuf,
    backend_root: PathBuf,
    dir: PathBuf,
    staged: Mutex<BlockHashSet>,
    committed: bool,
}

impl BlockBatch for LocalBatch {
    fn stage(&self, hash: &BlockHash, stored: &[u8]) -> Result<bool> {
        if let Some((set, _)) = &self.packs
            && set.contains_known(hash)?
        {
            return Ok(false);
        }
        // With packs, no loose file is looked for: arch writes none in such a repository, so
        // the `stat` would always miss, and it cost about a fifth of a put of new 4 KiB
        // blocks (200 MiB: 0.64-0.88 s with it, 0.51-0.61 s without). The check only
        // de-duplicates: a loose file that does exist (left by hand, say) stays a stored,
        // readable copy for every read path, fsck and gc, and staging the block again only
        // adds a packed copy beside it (any copy serves; both are live while a map names it).
        if self.packs.is_none() && is_regular_file(&shard_path(&self.blocks_dir, hash))? {
            return Ok(false);
        }
        if !self.staged.lock().unwrap().insert(*hash) {
            return Ok(false);
        }
        if let Some((_, writer)) = &self.packs {
            // A read lock: appends run in parallel (the writer reserves space under its own
            // lock and writes outside it); commit takes the writer under the write lock.
            let appended = match &*writer.read().unwrap() {
                Some(w) => w.append(hash, stored),
                None => Err(Error::invalid("block staged in a committed batch")),
            };
            // A failed append leaves the writer failed: commit reports it.
            return appended.map(|()| true);
        }
        let p = self.dir.join(hash.to_hex());
        // Sealed from the start: writing through the open descriptor is still allowed. Written
        // directly (no page-cache copy) when `stored` is page-aligned; commit syncs it.
        if let Err(e) = super::direct::create_and_write(&p, self.modes.sealed(), stored) {
            self.staged.lock().unwrap().remove(hash);
            let _ = fs::remove_file(&p);
            return Err(Error::io("write block", &p, e));
        }
        Ok(true)
    }

    fn commit(mut self: Box<Self>) -> Result<()> {
        if let Some((set, writer)) = &self.packs {
            let Some(writer) = writer.write().unwrap().take() else {
                return Err(Error::invalid("batch committed twice"));
            };
            let packs = writer.finish()?;
            if !packs.is_empty() {
                sync_filesystem(&self.dir)?;
                publish(&packs, &self.backend_root.join(PACKS_DIR), self.modes)?;
                sync_filesystem(&self.backend_root)?;
                // This process's later batches de-duplicate against the packs just made.
                set.rescan()?;
            }
            self.committed = true;
            let _ = fs::remove_dir(&self.dir);
            let _ = sync_parent(&self.dir);
            return Ok(());
        }
        let staged: Vec<BlockHash> = self.staged.lock().unwrap().iter().copied().collect();
        if !staged.is_empty() {
            sync_filesystem(&self.dir)?;
            for hash in &staged {
                let dest = shard_path(&self.blocks_dir, hash);
                let src = self.dir.join(hash.to_hex());
                if let Err(e) = fs::rename(&src, &dest) {
                    if e.kind() != ErrorKind::NotFound {
                        return Err(Error::io("rename block into", &dest, e));
                    }
                    create_dir_all(dest.parent().unwrap(), self.modes)?;
                    fs::rename(&src, &dest)
                        .map_err(|e| Error::io("rename block into", &dest, e))?;
                }
            }
            sync_filesystem(&self.backend_root)?;
        }
        self.committed = true;
        let _ = fs::remove_dir(&self.dir);
        let _ = sync_parent(&self.dir);
        Ok(())
    }
}

impl Drop for LocalBatch {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.dir);
            let _ = sync_dir(self.dir.parent().unwrap_or(Path::new(".")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn blocks_are_sealed_and_only_regular_files_count() {
        let dir = tempfile::tempdir().unwrap();
        LocalBackend::create_layout(dir.path()).unwrap();
        let b = LocalBackend::new(dir.path());
        let (one, two) = (BlockHash::of_bytes(b"one"), BlockHash::of_bytes(b"two"));
        // A symlink holds `one`'s name, pointing at the right content: not a block.
        let outside = dir.path().join("outside");
        fs::write(&outside, b"one").unwrap();
        std::os::unix::fs::symlink(&outside, b.block_path(&one)).unwrap();
        assert!(!b.has_block(&one).unwrap());
        assert!(b.read_block(&one, &mut Vec::new()).is_err());
        let batch = b.begin_batch().unwrap();
        assert!(
            batch.stage(&one, b"one").unwrap(),
            "written over the symlink"
        );
        assert!(batch.stage(&two, b"two").unwrap());
        batch.commit().unwrap();
        let mode = fs::symlink_metadata(b.block_path(&one)).unwrap();
        assert!(mode.file_type().is_file());
        assert_eq!(mode.permissions().mode() & 0o7777, 0o400);
        let mut seen = Vec::new();
        fs::remove_file(b.block_path(&two)).unwrap();
        let c = std::ffi::CString::new(b.block_path(&two).to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        b.for_each_block(&mut |h, _| {
            seen.push(h);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec![one], "the FIFO is not a block");
    }
}
