//! Advisory file locks (flock). The kernel drops them when the holder dies, so a lock left
//! by a killed process never blocks anyone.

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// A held lock; released when dropped.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

fn open_lock_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .or_else(|_| File::open(path))
        .map_err(|e| Error::io("open lock file", path, e))
}

fn flock(file: &File, op: libc::c_int) -> std::io::Result<()> {
    loop {
        // SAFETY: flock on a valid descriptor owned by `file`.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        // EINTR: retry, unless it was SIGINT/SIGTERM, which stops the wait.
        if err.kind() != std::io::ErrorKind::Interrupted || crate::interrupt::received().is_some() {
            return Err(err);
        }
    }
}

/// Waits for and takes a shared lock.
pub fn lock_shared(path: &Path) -> Result<FileLock> {
    let file = open_lock_file(path)?;
    flock(&file, libc::LOCK_SH).map_err(|e| Error::io("lock", path, e))?;
    Ok(FileLock { _file: file })
}

/// Waits for and takes an exclusive lock.
pub fn lock_exclusive(path: &Path) -> Result<FileLock> {
    let file = open_lock_file(path)?;
    flock(&file, libc::LOCK_EX).map_err(|e| Error::io("lock", path, e))?;
    Ok(FileLock { _file: file })
}

/// Takes an exclusive lock if nobody holds the file; None when it is held.
pub fn try_lock_exclusive(path: &Path) -> Result<Option<FileLock>> {
    let file = open_lock_file(path)?;
    match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
        Ok(()) => Ok(Some(FileLock { _file: file })),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(None),
        Err(e) => Err(Error::io("lock", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_excludes_and_drop_releases() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l");
        let held = lock_exclusive(&p).unwrap();
        assert!(try_lock_exclusive(&p).unwrap().is_none());
        drop(held);
        assert!(try_lock_exclusive(&p).unwrap().is_some());
    }
}
