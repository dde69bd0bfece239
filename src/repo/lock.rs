//! Advisory locks: file locks (flock) in `locks/`, or, for a repository whose catalog is on
//! PostgreSQL, session advisory locks of that server (shared by every host; see
//! [`crate::repo::db::pg::advisory`]). Either kind is dropped when its holder dies (the
//! kernel closes the file; the server closes the session), so a lock left by a killed
//! process never blocks anyone.

use crate::error::{Error, Result};
use crate::storage::fsutil::{Modes, create_file, open_regular, open_regular_rw};
use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// A held lock (a file lock, or a PostgreSQL session advisory lock); released when dropped.
#[derive(Debug)]
pub struct FileLock {
    _held: Held,
}

#[derive(Debug)]
enum Held {
    File(#[allow(dead_code)] File),
    Catalog(#[allow(dead_code)] Box<crate::repo::db::pg::advisory::SessionLock>),
}

impl FileLock {
    fn file(file: File) -> FileLock {
        FileLock {
            _held: Held::File(file),
        }
    }

    /// A held PostgreSQL session advisory lock.
    pub fn catalog(lock: crate::repo::db::pg::advisory::SessionLock) -> FileLock {
        FileLock {
            _held: Held::Catalog(Box::new(lock)),
        }
    }
}

/// Opens (creating it with the repository's file mode when missing) a lock file. Only a
/// regular file is accepted: a symlink or FIFO in `locks/` is refused as corrupt.
fn open_lock_file(path: &Path) -> Result<File> {
    let dir = path.parent().unwrap_or(Path::new("."));
    loop {
        match create_file(path, Modes::of_dir(dir).file()) {
            Ok(f) => return Ok(f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("create lock file", path, e)),
        }
        // A lock file made by another user of a shared repository may be read-only for us:
        // flock works on a read-only descriptor too.
        let opened = match open_regular_rw(path) {
            Err(Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                open_regular(path)?
            }
            other => other?,
        };
        // None: a stale lock was removed between the two opens; create it again.
        if let Some(f) = opened {
            return Ok(f);
        }
    }
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
    Ok(FileLock::file(file))
}

/// Waits for and takes an exclusive lock.
pub fn lock_exclusive(path: &Path) -> Result<FileLock> {
    let file = open_lock_file(path)?;
    flock(&file, libc::LOCK_EX).map_err(|e| Error::io("lock", path, e))?;
    Ok(FileLock::file(file))
}

/// Takes an exclusive lock if nobody holds the file; None when it is held.
pub fn try_lock_exclusive(path: &Path) -> Result<Option<FileLock>> {
    let file = open_lock_file(path)?;
    match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
        Ok(()) => Ok(Some(FileLock::file(file))),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(None),
        Err(e) => Err(Error::io("lock", path, e)),
    }
}

/// Takes a shared lock if nobody holds the file exclusively; None when someone does.
pub fn lock_shared_nonblocking(path: &Path) -> Result<Option<FileLock>> {
    let file = open_lock_file(path)?;
    match flock(&file, libc::LOCK_SH | libc::LOCK_NB) {
        Ok(()) => Ok(Some(FileLock::file(file))),
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

    #[test]
    fn lock_files_are_private_and_a_fifo_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l");
        drop(lock_shared(&p).unwrap());
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = lock_exclusive(&fifo).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    }
}
