//! Files of an unmounted ext2/3/4 filesystem inside a disk image, read and changed with
//! `debugfs` on `DISK?offset=N` (e2fsprogs' own I/O option): no mount, no root, no copy.

use super::tools::run;
use crate::error::{Error, Result};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Owner and permission bits of a guest file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Full `st_mode` (type and permission bits).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Largest guest file customization reads (the files it edits are small text files:
/// /etc/shadow, /etc/passwd, /etc/hostname, authorized_keys, ...).
pub const MAX_GUEST_FILE: u64 = 16 << 20;

/// The root filesystem of a disk image, at a byte offset.
pub struct Guest {
    /// `disk?offset=N`, as e2fsprogs tools accept it.
    pub spec: OsString,
    /// Private scratch directory for files handed to debugfs.
    scratch: PathBuf,
    disk: PathBuf,
    offset: u64,
}

/// One debugfs command line (bytes: guest names need not be UTF-8).
pub type Request = Vec<u8>;

/// The longest line `debugfs -f` reads whole: it reads with `fgets` into `BUFSIZ` (8192)
/// bytes, so a longer line would be split into two commands.
const MAX_SCRIPT_LINE: usize = 8190;

/// `path` for error messages: control characters and quotes escaped, invalid UTF-8 replaced.
pub fn show(path: &[u8]) -> String {
    format!("'{}'", String::from_utf8_lossy(path).escape_debug())
}

/// Quotes one argument for debugfs' command parser (e2fsprogs lib/ss/parse.c): words split
/// at spaces and tabs; inside double quotes every byte is literal except `"`, written `""`.
/// NUL (which no file name and no argument can hold) is the only byte it cannot express.
fn quote_arg(arg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(arg.len() + 2);
    out.push(b'"');
    for &b in arg {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
    out
}

/// Quotes a guest path. It must be absolute: debugfs reads a bare `<N>` as inode number N,
/// and a relative path would resolve against its working directory.
fn quote(task: &str, path: &[u8]) -> Result<Vec<u8>> {
    if !path.starts_with(b"/") || path.contains(&0) {
        return Err(Error::invalid(format!(
            "{task}: guest path {} must be absolute and contain no NUL byte",
            show(path)
        )));
    }
    Ok(quote_arg(path))
}

/// A debugfs command line: `command` followed by already quoted (or plain keyword) words.
fn request(command: &str, words: &[&[u8]]) -> Request {
    let mut line = command.as_bytes().to_vec();
    for w in words {
        line.push(b' ');
        line.extend_from_slice(w);
    }
    line
}

/// True when `line` survives `debugfs -f` as one command: the script reader ends a line at
/// the first `\n` or `\r` and reads at most `MAX_SCRIPT_LINE` bytes.
fn fits_script(line: &[u8]) -> bool {
    line.len() <= MAX_SCRIPT_LINE && !line.iter().any(|&b| b == b'\n' || b == b'\r')
}

/// debugfs reports failures on stderr and still exits 0: everything but its banner is an error.
fn stderr_errors(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| !l.starts_with("debugfs ") && !l.trim().is_empty())
        .map(String::from)
        .collect()
}

/// True when debugfs' errors only say the path does not exist (a missing component, or one
/// that is not a directory).
fn only_not_found(errors: &[String]) -> bool {
    let text = errors.join("\n");
    text.trim_end().ends_with("File not found by ext2_lookup")
        || text.trim_end().ends_with("Ext2 inode is not a directory")
}

/// The names in `ls -p` output. Each entry is `/INODE/MODE/UID/GID/NAME/SIZE/` and a newline
/// (SIZE empty for a directory); NAME is raw and may hold any byte but `/` and NUL, newlines
/// included, so the output is split at `/`, never at lines.
fn parse_ls_p(out: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut fields = out.split(|&b| b == b'/');
    let numeric = |f: &[u8]| !f.is_empty() && f.iter().all(u8::is_ascii_digit);
    if !fields.next()?.is_empty() {
        return None;
    }
    let mut names = Vec::new();
    loop {
        let (ino, mode, uid, gid) = (
            fields.next()?,
            fields.next()?,
            fields.next()?,
            fields.next()?,
        );
        if ![ino, mode, uid, gid].iter().all(|f| numeric(f)) {
            return None;
        }
        let name = fields.next()?;
        let size = fields.next()?;
        if !size.is_empty() && !numeric(size) {
            return None;
        }
        let end = fields.next()?;
        if end.is_empty() || end.iter().any(|&b| b != b'\n') {
            return None;
        }
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
        if fields.clone().next().is_none() {
            return Some(names);
        }
    }
}

impl Guest {
    /// The filesystem starting at byte `offset` of `disk`; `scratch` is a private directory.
    pub fn new(disk: &Path, offset: u64, scratch: &Path) -> Guest {
        let mut spec = disk.as_os_str().to_owned();
        spec.push(format!("?offset={offset}"));
        Guest {
            spec,
            scratch: scratch.to_path_buf(),
            disk: disk.to_path_buf(),
            offset,
        }
    }

    fn debugfs(&self, task: &str, write: bool, args: &[&OsStr]) -> Result<(Vec<u8>, Vec<String>)> {
        let mut cmd = Command::new("debugfs");
        if write {
            cmd.arg("-w");
        }
        cmd.args(args)
            .arg(&self.spec)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        let out = crate::interrupt::output(&mut cmd, None).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::invalid(format!(
                    "{task}: debugfs is not installed; install it (apt install e2fsprogs)"
                ))
            } else {
                Error::io("run", "debugfs", e)
            }
        })?;
        if !out.status.success() {
            return Err(Error::invalid(format!(
                "{task}: debugfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok((out.stdout, stderr_errors(&out.stderr)))
    }

    /// Runs one read-only request given as `-R` (any byte but NUL passes intact).
    fn query(&self, task: &str, command: &str, path: &[u8]) -> Result<(Vec<u8>, Vec<String>)> {
        let line = request(command, &[&quote(task, path)?]);
        self.debugfs(task, false, &["-R".as_ref(), OsStr::from_bytes(&line)])
    }

    /// Owner and mode of `path`, or None when it does not exist.
    pub fn stat(&self, task: &str, path: impl AsRef<[u8]>) -> Result<Option<Stat>> {
        Ok(self.stat_sized(task, path.as_ref())?.map(|(st, _)| st))
    }

    /// Owner, mode and size in bytes of `path`, or None when it does not exist.
    fn stat_sized(&self, task: &str, path: &[u8]) -> Result<Option<(Stat, u64)>> {
        let (out, errors) = self.query(task, "stat", path)?;
        if !errors.is_empty() {
            if only_not_found(&errors) {
                return Ok(None);
            }
            return Err(Error::invalid(format!(
                "{task}: stat of {}: {}",
                show(path),
                errors.join("; ")
            )));
        }
        let text = String::from_utf8_lossy(&out);
        let field = |name: &str| -> Option<u32> {
            let at = text.find(name)? + name.len();
            text[at..].split_whitespace().next()?.parse().ok()
        };
        let perm = text
            .find("Mode:")
            .and_then(|at| text[at + 5..].split_whitespace().next())
            .and_then(|m| u32::from_str_radix(m, 8).ok());
        let kind = if text.contains("Type: directory") {
            0o040000
        } else if text.contains("Type: symlink") {
            0o120000
        } else {
            0o100000
        };
        let size = text
            .find("Size:")
            .and_then(|at| text[at + 5..].split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok());
        match (perm, field("User:"), field("Group:"), size) {
            (Some(p), Some(uid), Some(gid), Some(size)) => Ok(Some((
                Stat {
                    mode: kind | p,
                    uid,
                    gid,
                },
                size,
            ))),
            _ => Err(Error::invalid(format!(
                "{task}: cannot parse debugfs stat of {}",
                show(path)
            ))),
        }
    }

    /// Content of the regular file `path`, or None when it does not exist. A file larger
    /// than [`MAX_GUEST_FILE`] is refused before it is read: a hostile image could hold a
    /// huge sparse `/etc/shadow` that costs it nothing and would cost arch its memory.
    pub fn read(&self, task: &str, path: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        Ok(self.read_stat(task, path)?.map(|(_, content)| content))
    }

    /// [`Guest::read`] with the file's owner and mode (one debugfs run fewer than a read and
    /// a stat).
    pub fn read_stat(&self, task: &str, path: impl AsRef<[u8]>) -> Result<Option<(Stat, Vec<u8>)>> {
        let path = path.as_ref();
        let Some((stat, size)) = self.stat_sized(task, path)? else {
            return Ok(None);
        };
        if size > MAX_GUEST_FILE {
            return Err(Error::invalid(format!(
                "{task}: {} in the guest is {size} bytes, more than the {MAX_GUEST_FILE} \
                 bytes arch reads from a guest file; the image looks damaged or hostile",
                show(path)
            )));
        }
        let (out, errors) = self.query(task, "cat", path)?;
        if !errors.is_empty() {
            return Err(Error::invalid(format!(
                "{task}: reading {}: {}",
                show(path),
                errors.join("; ")
            )));
        }
        Ok(Some((stat, out)))
    }

    /// Names in the guest directory `dir` (`.` and `..` excluded), as raw bytes.
    pub fn list(&self, task: &str, dir: impl AsRef<[u8]>) -> Result<Vec<Vec<u8>>> {
        let dir = dir.as_ref();
        let (out, errors) = self.query(task, "ls -p", dir)?;
        if !errors.is_empty() {
            return Err(Error::invalid(format!(
                "{task}: listing {}: {}",
                show(dir),
                errors.join("; ")
            )));
        }
        parse_ls_p(&out).ok_or_else(|| {
            Error::invalid(format!(
                "{task}: cannot parse the debugfs listing of {}",
                show(dir)
            ))
        })
    }

    /// Runs debugfs requests in order, in write mode; any reported error fails `task`. Lines
    /// that `-f` would not read whole (a name holding a newline or carriage return, or very
    /// long) run on their own through `-R`, which takes any byte; the rest share one script.
    pub fn apply(&self, task: &str, requests: &[Request]) -> Result<()> {
        let mut errors = Vec::new();
        for group in requests.chunk_by(|a, b| fits_script(a) && fits_script(b)) {
            let (_, errs) = if fits_script(&group[0]) {
                let script = self.scratch.join("commands.debugfs");
                let mut text = group.join(&b'\n');
                text.push(b'\n');
                std::fs::write(&script, text).map_err(|e| Error::io("write", &script, e))?;
                self.debugfs(task, true, &["-f".as_ref(), script.as_os_str()])?
            } else {
                self.debugfs(task, true, &["-R".as_ref(), OsStr::from_bytes(&group[0])])?
            };
            errors.extend(errs);
        }
        if !errors.is_empty() {
            return Err(Error::invalid(format!(
                "{task}: debugfs could not change the filesystem: {}",
                errors.join("; ")
            )));
        }
        Ok(())
    }

    /// The request removing the guest file `path`.
    pub fn rm_request(&self, task: &str, path: impl AsRef<[u8]>) -> Result<Request> {
        Ok(request("rm", &[&quote(task, path.as_ref())?]))
    }

    /// Requests that set the mode, owner and group of `path`.
    pub fn set_owner_mode(
        &self,
        task: &str,
        path: impl AsRef<[u8]>,
        st: Stat,
    ) -> Result<Vec<Request>> {
        let q = quote(task, path.as_ref())?;
        Ok(vec![
            request("sif", &[&q, b"mode", format!("0{:o}", st.mode).as_bytes()]),
            request("sif", &[&q, b"uid", st.uid.to_string().as_bytes()]),
            request("sif", &[&q, b"gid", st.gid.to_string().as_bytes()]),
        ])
    }

    /// Requests that (re)create the regular file `path` with `data`, mode and owner.
    pub fn write_requests(
        &self,
        task: &str,
        path: impl AsRef<[u8]>,
        data: &[u8],
        stat: Stat,
        exists: bool,
    ) -> Result<Vec<Request>> {
        let path = path.as_ref();
        let q = quote(task, path)?;
        let local = self
            .scratch
            .join(format!("file-{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&local, data).map_err(|e| Error::io("write", &local, e))?;
        let mut reqs = Vec::new();
        if exists {
            reqs.push(request("rm", &[&q]));
        }
        reqs.push(request(
            "write",
            &[&quote_arg(local.as_os_str().as_bytes()), &q],
        ));
        reqs.extend(self.set_owner_mode(
            task,
            path,
            Stat {
                mode: 0o100000 | (stat.mode & 0o7777),
                ..stat
            },
        )?);
        Ok(reqs)
    }

    /// Replaces (or creates) the regular file `path`.
    pub fn write(&self, task: &str, path: impl AsRef<[u8]>, data: &[u8], stat: Stat) -> Result<()> {
        let path = path.as_ref();
        let exists = self.stat(task, path)?.is_some();
        let reqs = self.write_requests(task, path, data, stat, exists)?;
        self.apply(task, &reqs)
    }

    /// Creates the directory `path` (and missing parents) with mode and owner when absent.
    pub fn ensure_dir(&self, task: &str, path: &str, stat: Stat) -> Result<()> {
        let reqs = self.dir_requests(task, path, stat)?;
        if reqs.is_empty() {
            return Ok(());
        }
        self.apply(task, &reqs)
    }

    /// The requests [`Guest::ensure_dir`] applies (none when the directory exists), to be
    /// applied together with others in one debugfs run.
    pub fn dir_requests(&self, task: &str, path: &str, stat: Stat) -> Result<Vec<Request>> {
        let mut reqs = Vec::new();
        let mut prefix = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            prefix.push('/');
            prefix.push_str(part);
            if self.stat(task, &prefix)?.is_none() {
                reqs.push(request("mkdir", &[&quote(task, prefix.as_bytes())?]));
                reqs.extend(self.set_owner_mode(
                    task,
                    &prefix,
                    Stat {
                        mode: 0o040000 | (stat.mode & 0o7777),
                        ..stat
                    },
                )?);
            }
        }
        Ok(reqs)
    }
}

/// Checks and grows the filesystem at `offset` of `disk`, whose geometry (block size, block
/// count) is `geometry` (from [`fs_geometry`]), to `bytes`; returns (old, new) size in
/// filesystem blocks.
pub fn resize_filesystem(
    task: &str,
    guest: &Guest,
    geometry: (u64, u64),
    bytes: u64,
) -> Result<(u64, u64)> {
    let (block_size, old_blocks) = geometry;
    let new_blocks = bytes / block_size;
    if new_blocks <= old_blocks {
        return Ok((old_blocks, old_blocks));
    }
    // resize2fs insists on a freshly checked filesystem; -p only prints, -y repairs what a
    // clean image never needs.
    let fsck = crate::interrupt::output(
        Command::new("e2fsck")
            .args(["-f", "-y"])
            .arg(&guest.spec)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        None,
    )
    .map_err(|e| Error::io("run", "e2fsck", e))?;
    // 0: clean, 1: errors corrected.
    if !matches!(fsck.status.code(), Some(0) | Some(1)) {
        return Err(Error::invalid(format!(
            "{task}: e2fsck found errors it could not fix: {}",
            String::from_utf8_lossy(&fsck.stdout).trim()
        )));
    }
    // resize2fs sets the length of a regular file to the end of the filesystem, which would
    // cut off whatever follows the partition (the GPT backup header): keep it and put it back.
    let disk = &guest.disk;
    let len = std::fs::metadata(disk)
        .map_err(|e| Error::io("stat", disk, e))?
        .len();
    let tail_start = (guest.offset + bytes).min(len);
    // Only the data past the partition is copied aside (a grown disk is mostly holes).
    let tail = super::disk::SavedTail::save(disk, tail_start, &guest.scratch)?;
    run(
        task,
        "resize2fs",
        &[guest.spec.as_os_str(), new_blocks.to_string().as_ref()],
        None,
    )?;
    tail.restore(disk)?;
    Ok((old_blocks, fs_geometry(task, guest)?.1))
}

/// (block size, block count) of the filesystem, from `dumpe2fs -h`.
pub fn fs_geometry(task: &str, guest: &Guest) -> Result<(u64, u64)> {
    let out = run(
        task,
        "dumpe2fs",
        &["-h".as_ref(), guest.spec.as_os_str()],
        None,
    )?;
    let text = String::from_utf8_lossy(&out);
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split(':').nth(1))
            .and_then(|v| v.trim().parse().ok())
    };
    match (field("Block size"), field("Block count")) {
        (Some(bs), Some(n)) => Ok((bs, n)),
        _ => Err(Error::invalid(format!(
            "{task}: not an ext2/3/4 filesystem"
        ))),
    }
}

/// True when the partition at `offset` holds an ext2/3/4 filesystem.
pub fn is_ext(guest: &Guest) -> bool {
    fs_geometry("probe", guest).is_ok()
}

#[cfg(test)]
#[path = "guest_tests.rs"]
mod tests;
