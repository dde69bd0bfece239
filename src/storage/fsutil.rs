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

/// A temporary sibling of `dest`: `.arch-<16 hex>.tmp` in the same directory (same
/// filesystem, so it can be renamed over `dest`). Its fixed 26-byte name never exceeds
/// NAME_MAX, whatever the length of `dest`'s name.
pub fn sibling_temp(dest: &Path) -> PathBuf {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let random = uuid::Uuid::new_v4().simple().to_string();
    dir.join(format!(".arch-{}.tmp", &random[..16]))
}

/// A temporary file removed when dropped (on error, on interrupt, on panic) unless
/// [`TempPath::keep`] was called after it was renamed into place.
#[derive(Debug)]
pub struct TempPath(Option<PathBuf>);

impl TempPath {
    pub fn new(path: PathBuf) -> TempPath {
        TempPath(Some(path))
    }

    pub fn path(&self) -> &Path {
        self.0.as_deref().expect("temp path kept already")
    }

    /// The file was renamed away: nothing to remove.
    pub fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = fs::remove_file(p);
        }
    }
}

/// Creates `path` through a temporary sibling ([`sibling_temp`]): `fill` writes it, then it
/// is fsynced and renamed over `path`. On error, interrupt or panic the temporary is removed
/// and `path` is untouched. An existing `path` is refused unless `force`.
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
    if path.file_name().is_none() {
        return Err(Error::invalid(format!(
            "{} is not a file name",
            path.display()
        )));
    }
    let tmp = TempPath::new(sibling_temp(path));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp.path())
        .map_err(|e| Error::io("create", tmp.path(), e))?;
    let v = fill(&file)?;
    crate::interrupt::check()?;
    file.sync_all()
        .map_err(|e| Error::io("fsync", tmp.path(), e))?;
    fs::rename(tmp.path(), path).map_err(|e| Error::io("rename to", path, e))?;
    tmp.keep();
    sync_parent(path)?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_255_byte_target_name_works_and_failures_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let long = dir.path().join("x".repeat(255));
        write_file_atomically(&long, false, |mut f| {
            f.write_all(b"data").map_err(|e| Error::io("write", "f", e))
        })
        .unwrap();
        assert_eq!(fs::read(&long).unwrap(), b"data");
        let other = dir.path().join("y".repeat(255));
        let r: Result<()> = write_file_atomically(&other, false, |_| Err(Error::invalid("no")));
        assert!(r.is_err());
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "only the first target is left");
    }
}
