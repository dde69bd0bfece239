//! The sweep of gc over the local store: removes the block (or map) files no live set holds,
//! shard by shard (`blocks/XX/`), on several threads at once.
//!
//! Cost: one directory listing per shard, one `fstatat` per entry for its size (relative to
//! the open shard, no path walk; the type comes from the listing), one `unlinkat` per removed
//! file, and one fsync per shard that lost a file. The fsyncs are issued after every removal
//! of the sweep: a journaling filesystem then commits all removals at the first fsync and
//! the others find their changes already committed (one commit, not one per shard).
//!
//! Ordering: [`sweep`] returns only once every touched shard was synced, so its removals are
//! durable before anything the caller does next. Callers that remove maps before blocks (so
//! that a map is never left whose blocks are gone) sweep the maps first: that order then
//! holds across a crash too, not only while the process runs.

use super::hash::BlockHash;
use crate::error::{Error, Result};
use crate::progress::Progress;
use std::ffi::CString;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Threads a local sweep runs. Removals wait on the device more than they use the CPU: where
/// the filesystem discards freed blocks at once (ext4 mounted with `discard` and without a
/// journal, as this project's test machine: perf shows every unlink waiting in
/// `blkdev_issue_discard` under `ext4_evict_inode`), each unlink waits for its own discard,
/// and only removals in flight together overlap those waits. Measured there, 51,200 of
/// 102,400 4 KiB blocks: 4 threads 2.8-5.8 s, 16 threads 1.9-3.3 s, 32 threads 1.7-1.9 s (the
/// same as 32 `rm` processes removing those files), 128 or 256 no better; on an ext4 without
/// `discard` the count makes no difference (1.3-1.5 s, CPU-bound). A thread holds one
/// directory listing at a time.
pub const SWEEP_THREADS: usize = 32;

/// What a sweep found and removed (or, dry, would remove).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub kept: u64,
    pub kept_bytes: u64,
    pub removed: u64,
    pub removed_bytes: u64,
}

impl Swept {
    fn add(&mut self, o: Swept) -> Result<()> {
        let sum = |a: u64, b: u64| {
            a.checked_add(b)
                .ok_or_else(|| Error::invalid("gc totals overflow 64 bits"))
        };
        self.kept = sum(self.kept, o.kept)?;
        self.kept_bytes = sum(self.kept_bytes, o.kept_bytes)?;
        self.removed = sum(self.removed, o.removed)?;
        self.removed_bytes = sum(self.removed_bytes, o.removed_bytes)?;
        Ok(())
    }
}

/// Sweeps `top/XX/<64 hex>`: every regular file named like a hash that `keep` refuses is
/// removed (unless `dry_run`). Other names, symlinks and non-files are left alone (fsck
/// reports them); a file removed meanwhile by someone else is skipped. Progress counts the
/// bytes of the files looked at.
pub fn sweep(
    top: &Path,
    keep: &(dyn Fn(&BlockHash) -> bool + Sync),
    dry_run: bool,
    threads: usize,
    progress: &dyn Progress,
) -> Result<Swept> {
    let mut shards: Vec<PathBuf> = std::fs::read_dir(top)
        .map_err(|e| Error::io("list", top, e))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    shards.sort();
    let next = AtomicUsize::new(0);
    let total = Mutex::new(Ok(Swept::default()));
    let touched: Mutex<Vec<&Path>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, shards.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(shard) = shards.get(i) else { return };
                    if total.lock().unwrap().is_err() {
                        return;
                    }
                    let r = crate::interrupt::check()
                        .and_then(|()| sweep_shard(shard, keep, dry_run, progress));
                    if !dry_run && r.as_ref().map_or(true, |one| one.removed > 0) {
                        touched.lock().unwrap().push(shard);
                    }
                    let mut t = total.lock().unwrap();
                    let merged = match (&mut *t, r) {
                        (Ok(sum), Ok(one)) => sum.add(one),
                        (Ok(_), Err(e)) => Err(e),
                        (Err(_), _) => return,
                    };
                    if let Err(e) = merged {
                        *t = Err(e);
                    }
                }
            });
        }
    });
    // Also after a failure: what was removed is made durable before the error is reported.
    for shard in touched.into_inner().unwrap() {
        File::open(shard)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io("fsync directory", shard, e))?;
    }
    total.into_inner().unwrap()
}

/// One shard: list, stat relative to the directory, remove (not synced: see [`sweep`]).
fn sweep_shard(
    shard: &Path,
    keep: &(dyn Fn(&BlockHash) -> bool + Sync),
    dry_run: bool,
    progress: &dyn Progress,
) -> Result<Swept> {
    let dir = File::open(shard).map_err(|e| Error::io("open", shard, e))?;
    let mut out = Swept::default();
    let entries = std::fs::read_dir(shard).map_err(|e| Error::io("list", shard, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", shard, e))?;
        let name = entry.file_name();
        let Some(hash) = name.to_str().and_then(|n| n.parse::<BlockHash>().ok()) else {
            continue;
        };
        // The listing's type (d_type): no stat to learn it. A symlink is never followed.
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let cname = CString::new(name.as_bytes()).expect("a hash name has no NUL");
        let Some(len) = size_at(&dir, &cname).map_err(|e| Error::io("stat", entry.path(), e))?
        else {
            continue; // removed since the listing
        };
        progress.advance(len);
        if keep(&hash) {
            out.kept += 1;
            out.kept_bytes += len;
            continue;
        }
        if !dry_run {
            // SAFETY: unlinkat on a valid directory descriptor with a NUL-terminated name.
            let rc = unsafe { libc::unlinkat(dir.as_raw_fd(), cname.as_ptr(), 0) };
            if rc != 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::NotFound {
                    continue;
                }
                return Err(Error::io("remove", entry.path(), e));
            }
        }
        out.removed += 1;
        out.removed_bytes += len;
    }
    Ok(out)
}

/// The size of regular file `name` in `dir`, not following a symlink; None when it is gone or
/// is no longer a regular file.
fn size_at(dir: &File, name: &CString) -> std::io::Result<Option<u64>> {
    // SAFETY: an all-zero stat is a valid value for fstatat to fill.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor, NUL-terminated name, and a stat buffer we own.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        return match e.kind() {
            std::io::ErrorKind::NotFound => Ok(None),
            _ => Err(e),
        };
    }
    Ok(((st.st_mode & libc::S_IFMT) == libc::S_IFREG).then_some(st.st_size as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;

    #[test]
    fn removes_what_keep_refuses_and_leaves_everything_else() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path();
        let mut hashes = Vec::new();
        for i in 0..40u32 {
            let h = BlockHash::of_bytes(&i.to_le_bytes());
            let hex = h.to_hex();
            std::fs::create_dir_all(top.join(&hex[..2])).unwrap();
            std::fs::write(top.join(&hex[..2]).join(&hex), vec![1u8; i as usize + 1]).unwrap();
            hashes.push(h);
        }
        // Not blocks: another name, a symlink named like a hash, a directory named like one.
        let shard = top.join(&hashes[0].to_hex()[..2]);
        std::fs::write(shard.join("notes"), b"x").unwrap();
        let link = BlockHash::of_bytes(b"link").to_hex();
        std::fs::create_dir_all(top.join(&link[..2])).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", top.join(&link[..2]).join(&link)).unwrap();
        let odd = hashes[0..20].to_vec();
        let keep = |h: &BlockHash| odd.contains(h);
        let dry = sweep(top, &keep, true, 3, &NoProgress).unwrap();
        let want_removed: u64 = (20..40).map(|i| i + 1).sum();
        assert_eq!(
            (dry.kept, dry.removed, dry.removed_bytes),
            (20, 20, want_removed)
        );
        assert!(hashes.iter().all(|h| {
            let hex = h.to_hex();
            top.join(&hex[..2]).join(&hex).exists()
        }));
        let done = sweep(top, &keep, false, 3, &NoProgress).unwrap();
        assert_eq!(done, dry);
        for (i, h) in hashes.iter().enumerate() {
            let hex = h.to_hex();
            assert_eq!(top.join(&hex[..2]).join(&hex).exists(), i < 20, "{i}");
        }
        assert!(shard.join("notes").exists());
        assert!(top.join(&link[..2]).join(&link).symlink_metadata().is_ok());
        assert_eq!(
            sweep(top, &keep, false, 2, &NoProgress).unwrap().removed,
            0,
            "a second sweep finds nothing"
        );
    }
}
