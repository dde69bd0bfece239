//! Durable file-system primitives: atomic replace (temp, fsync, rename, fsync dir) and syncfs;
//! the repository's file modes ([`Modes`]) and creating files and directories with them;
//! opening repository files only when they are regular files ([`open_regular`]).

use crate::error::{Error, Result};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// The modes a repository gives what it creates. A repository is private to its owner
/// (directories 0700, files 0600) unless its root directory has the setgid bit, which
/// `arch init --shared-group` sets: then it is shared with the root's group (directories
/// 2770, files 0660). Blocks, maps and `arch.toml` never change once written and are sealed
/// read-only (0400, or 0440 shared). Modes are set explicitly with fchmod/chmod after
/// creation, so the user's umask neither widens nor narrows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Modes {
    /// Shared with the group of the repository's root directory.
    pub shared: bool,
}

impl Modes {
    /// Private to the owner.
    pub const PRIVATE: Modes = Modes { shared: false };
    /// Shared with a group.
    pub const SHARED: Modes = Modes { shared: true };

    /// The modes of the repository directory `dir` (its root, or any directory arch made in
    /// it): shared when `dir` has the setgid bit. A directory that cannot be read is private.
    pub fn of_dir(dir: &Path) -> Modes {
        let shared = fs::metadata(dir).is_ok_and(|m| m.mode() & libc::S_ISGID != 0);
        Modes { shared }
    }

    /// Mode of a directory.
    pub fn dir(self) -> u32 {
        if self.shared { 0o2770 } else { 0o700 }
    }

    /// Mode of a file that may be rewritten (catalog, locks, private blocks of volumes).
    pub fn file(self) -> u32 {
        if self.shared { 0o660 } else { 0o600 }
    }

    /// Mode of a file never modified once written (blocks, maps, `arch.toml`).
    pub fn sealed(self) -> u32 {
        if self.shared { 0o440 } else { 0o400 }
    }

    /// Permission bits no entry of the repository may have: group and other for a private
    /// repository, other for a shared one.
    pub fn forbidden(self) -> u32 {
        if self.shared { 0o007 } else { 0o077 }
    }
}

/// Sets the permission bits of `path`, never through a symlink: a link swapped in for an
/// entry of a shared repository must not let its target's mode be changed (`fchmodat` with
/// `AT_SYMLINK_NOFOLLOW`, which fails on a link).
pub fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::invalid(format!("{} holds a NUL byte", path.display())))?;
    // SAFETY: fchmodat reads a valid NUL-terminated path and touches no memory of ours.
    let rc = unsafe {
        libc::fchmodat(
            libc::AT_FDCWD,
            c.as_ptr(),
            mode as libc::mode_t,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(Error::io("chmod", path, std::io::Error::last_os_error()));
    }
    Ok(())
}

/// True when `path` is a directory itself, not a symlink to one.
fn is_real_dir(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

/// Creates directory `path` (its parent must exist) with `modes.dir()`; an existing
/// directory is fine and left as it is.
pub fn create_dir(path: &Path, modes: Modes) -> Result<()> {
    match fs::create_dir(path) {
        Ok(()) => set_mode(path, modes.dir()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && is_real_dir(path) => Ok(()),
        Err(e) => Err(Error::io("create directory", path, e)),
    }
}

/// Creates `path` and its missing parents, each new one with `modes.dir()`.
pub fn create_dir_all(path: &Path, modes: Modes) -> Result<()> {
    if is_real_dir(path) {
        return Ok(());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all(parent, modes)?;
    }
    create_dir(path, modes)
}

/// Creates a new file (refusing an existing one) with exactly `mode`, whatever the umask.
pub fn create_file(path: &Path, mode: u32) -> std::io::Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    Ok(f)
}

/// Opens a repository file for reading if, and only if, it is a regular file. A symlink is
/// never followed (`O_NOFOLLOW`) and a FIFO or device never blocks the open (`O_NONBLOCK`,
/// which has no effect on a regular file): both are refused as [`Error::Corrupt`] naming
/// the path. Returns None when the file does not exist.
pub fn open_regular(path: &Path) -> Result<Option<File>> {
    open_checked(path, false)
}

/// [`open_regular`] for reading and writing (private blocks of volumes).
pub fn open_regular_rw(path: &Path) -> Result<Option<File>> {
    open_checked(path, true)
}

fn open_checked(path: &Path, write: bool) -> Result<Option<File>> {
    let opened = OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let f = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(not_regular(path, "a symbolic link"));
        }
        // Opening a FIFO for writing with O_NONBLOCK and no reader fails with ENXIO.
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
            return Err(not_regular(path, "a FIFO or device"));
        }
        Err(e) => return Err(Error::io("open", path, e)),
    };
    let meta = f.metadata().map_err(|e| Error::io("stat", path, e))?;
    if !meta.file_type().is_file() {
        return Err(not_regular(path, file_kind(&meta.file_type())));
    }
    Ok(Some(f))
}

/// What a non-regular directory entry is, for messages.
pub fn file_kind(t: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else if t.is_dir() {
        "a directory"
    } else {
        "a regular file"
    }
}

fn not_regular(path: &Path, kind: &str) -> Error {
    Error::Corrupt {
        path: path.to_path_buf(),
        reason: format!(
            "it is {kind}, not a regular file (arch never follows links or opens special files in a repository; `arch fsck --repair` moves a bad block or map aside, anything else must be restored by hand)"
        ),
    }
}

/// True when `path` is a regular file (a symlink, even to one, is not).
pub fn is_regular_file(path: &Path) -> Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(m.file_type().is_file()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("stat", path, e)),
    }
}

/// Writes `bytes` to `dest` atomically: a reader sees the old file or the new one, never a mix,
/// and after return the new content survives a crash. `tmp_dir` must be on the same filesystem.
/// The file gets the mode the umask allows (for files arch writes outside a repository).
pub fn atomic_write(tmp_dir: &Path, dest: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write_inner(tmp_dir, dest, bytes, None)
}

/// [`atomic_write`] for a repository file: the file has exactly `mode` before it is renamed
/// into place, so it is never visible with wider permissions.
pub fn atomic_write_mode(tmp_dir: &Path, dest: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    atomic_write_inner(tmp_dir, dest, bytes, Some(mode))
}

fn atomic_write_inner(tmp_dir: &Path, dest: &Path, bytes: &[u8], mode: Option<u32>) -> Result<()> {
    let tmp = tmp_dir.join(format!(
        "write-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let result = (|| {
        let mut f = match mode {
            Some(mode) => create_file(&tmp, mode),
            None => OpenOptions::new().write(true).create_new(true).open(&tmp),
        }
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

/// Largest single write(2) worth issuing into the page cache or a pipe: larger ones measured
/// 3-5x the system time per byte (1 GiB in 4 MiB writes: 2.9-3.7 s; in 256 KiB: 0.5 s).
pub const WRITE_PIECE: usize = 256 << 10;

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

/// Removes a file or a directory tree; a path already gone is fine. A symlink is removed
/// itself, never what it points to.
pub fn remove_path(path: &std::path::Path) -> Result<()> {
    let is_dir = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_dir());
    let r = if is_dir {
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

/// Refuses `-o` target `path` unless it is absent, or a regular file and `force` is given.
/// A link or a device is never replaced: the rename that makes the write atomic would replace
/// the link or the device node itself, and the data would never reach what it names.
pub fn check_output_target(path: &Path, force: bool) -> Result<()> {
    if let Ok(meta) = fs::symlink_metadata(path) {
        let t = meta.file_type();
        if t.is_dir() {
            return Err(Error::invalid(format!(
                "-o {} is a directory; give the path of a file, e.g. -o {}",
                path.display(),
                path.join("disk.raw").display()
            )));
        }
        if !t.is_file() {
            return Err(Error::invalid(format!(
                "{} is {}, not a regular file; -o replaces its target atomically, which would \
                 replace the {} itself. Write through stdout instead (`... > {}`), or give \
                 the path of a regular file",
                path.display(),
                file_kind(&t),
                file_kind(&t).trim_start_matches("a "),
                path.display()
            )));
        }
    }
    if path.exists() && !force {
        return Err(Error::AlreadyExists {
            kind: "file",
            name: path.display().to_string(),
            fix: "pass --force to replace it, or choose another -o".into(),
        });
    }
    Ok(())
}

/// Creates `path` through a temporary sibling ([`sibling_temp`]): `fill` writes it, then it
/// is fsynced and renamed over `path`. On error, interrupt or panic the temporary is removed
/// and `path` is untouched. An existing `path` is refused unless `force`.
pub fn write_file_atomically<T>(
    path: &Path,
    force: bool,
    fill: impl FnOnce(&std::fs::File) -> crate::Result<T>,
) -> Result<T> {
    check_output_target(path, force)?;
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
mod atomic_write_tests {
    use super::*;

    #[test]
    fn links_and_devices_are_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("real");
        fs::write(&target, b"keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        for (path, kind) in [
            (&link, "a symbolic link"),
            (&PathBuf::from("/dev/null"), "a device"),
        ] {
            let r: Result<()> = write_file_atomically(path, true, |_| Ok(()));
            let err = r.unwrap_err().to_string();
            assert!(err.contains(kind) && err.contains("stdout"), "{err}");
        }
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read(&target).unwrap(), b"keep");
        use std::os::unix::fs::FileTypeExt;
        assert!(
            fs::metadata("/dev/null")
                .unwrap()
                .file_type()
                .is_char_device()
        );
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    fn mkfifo(p: &Path) {
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    #[test]
    fn open_regular_refuses_fifos_and_symlinks_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"x").unwrap();
        assert!(open_regular(&file).unwrap().is_some());
        assert!(open_regular(&dir.path().join("none")).unwrap().is_none());
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        for (p, what) in [(&fifo, "a FIFO"), (&link, "a symbolic link")] {
            for r in [open_regular(p), open_regular_rw(p)] {
                let err = r.unwrap_err();
                assert!(
                    matches!(err, Error::Corrupt { .. }) && err.to_string().contains(what),
                    "{err}"
                );
            }
        }
        assert!(!is_regular_file(&fifo).unwrap() && !is_regular_file(&link).unwrap());
        assert!(open_regular(dir.path()).is_err(), "a directory is refused");
    }

    #[test]
    fn modes_are_exact_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        set_mode(dir.path(), 0o2770).unwrap();
        let modes = Modes::of_dir(dir.path());
        assert_eq!(modes, Modes::SHARED);
        let sub = dir.path().join("a/b");
        create_dir_all(&sub, modes).unwrap();
        assert_eq!(mode(&sub), 0o2770);
        let f = sub.join("f");
        drop(create_file(&f, modes.file()).unwrap());
        assert_eq!(mode(&f), 0o660);
        atomic_write_mode(&sub, &sub.join("g"), b"x", Modes::PRIVATE.sealed()).unwrap();
        assert_eq!(mode(&sub.join("g")), 0o400);
        assert_eq!(Modes::of_dir(&dir.path().join("missing")), Modes::PRIVATE);
    }

    #[test]
    fn remove_path_removes_a_symlink_not_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("keep"), b"x").unwrap();
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        remove_path(&link).unwrap();
        assert!(target.join("keep").exists() && fs::symlink_metadata(&link).is_err());
    }

    #[test]
    fn set_mode_never_changes_a_link_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("victim");
        fs::write(&target, b"x").unwrap();
        set_mode(&target, 0o644).unwrap();
        assert_eq!(mode(&target), 0o644);
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(set_mode(&link, 0o600).is_err());
        assert_eq!(mode(&target), 0o644);
        // A linked directory is not taken for an existing directory.
        let linked_dir = dir.path().join("d");
        std::os::unix::fs::symlink(dir.path(), &linked_dir).unwrap();
        assert!(create_dir(&linked_dir, Modes::PRIVATE).is_err());
    }
}
