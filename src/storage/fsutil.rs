//! Durable file-system primitives: atomic replace (temp, fsync, rename, fsync dir) and syncfs.

use crate::error::{Error, Result};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `dest` atomically: a reader sees the old file or the new one, never a mix,
/// and after return the new content survives a crash. `tmp_dir` must be on the same filesystem.
pub fn atomic_write(tmp_dir: &Path, dest: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_dir.join(format!(
        "write-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io("create", &tmp, e))?;
        f.write_all(bytes)
            .map_err(|e| Error::io("write", &tmp, e))?;
        f.sync_all().map_err(|e| Error::io("fsync", &tmp, e))?;
        drop(f);
        fs::rename(&tmp, dest).map_err(|e| Error::io("rename into", dest, e))?;
        sync_parent(dest)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// fsyncs the directory holding `path`, making a rename or create in it durable.
pub fn sync_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => sync_dir(dir),
        _ => sync_dir(Path::new(".")),
    }
}

/// fsyncs a directory.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let f = File::open(dir).map_err(|e| Error::io("open directory", dir, e))?;
    f.sync_all()
        .map_err(|e| Error::io("fsync directory", dir, e))
}

/// Flushes every dirty page and inode of the filesystem holding `path` (Linux `syncfs`).
/// One call makes a whole batch of staged files durable without a journal commit per file.
pub fn sync_filesystem(path: &Path) -> Result<()> {
    let f = File::open(path).map_err(|e| Error::io("open", path, e))?;
    // SAFETY: syncfs takes a valid open descriptor and touches no memory of ours.
    let rc = unsafe { libc::syncfs(f.as_raw_fd()) };
    if rc != 0 {
        return Err(Error::io("syncfs", path, std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Removes a file or a directory tree; a path already gone is fine.
pub fn remove_path(path: &std::path::Path) -> Result<()> {
    let r = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

/// Creates `path` through a temporary sibling: `fill` writes it, then it is fsynced and
/// renamed over `path`. On error the temporary is removed and `path` is untouched.
/// An existing `path` is refused unless `force`.
pub fn write_file_atomically<T>(
    path: &Path,
    force: bool,
    fill: impl FnOnce(&std::fs::File) -> crate::Result<T>,
) -> Result<T> {
    if path.exists() && !force {
        return Err(Error::AlreadyExists {
            kind: "file",
            name: path.display().to_string(),
            fix: "pass --force to replace it, or choose another -o".into(),
        });
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::invalid(format!("{} is not a file name", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.arch-tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| Error::io("create", &tmp, e))?;
    let result = fill(&file).and_then(|v| {
        file.sync_all().map_err(|e| Error::io("fsync", &tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| Error::io("rename to", path, e))?;
        sync_parent(path)?;
        Ok(v)
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
