//! Files of an unmounted ext2/3/4 filesystem inside a disk image, read and changed with
//! `debugfs` on `DISK?offset=N` (e2fsprogs' own I/O option): no mount, no root, no copy.

use super::tools::run;
use crate::error::{Error, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Owner and permission bits of a guest file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Full `st_mode` (type and permission bits).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The root filesystem of a disk image, at a byte offset.
pub struct Guest {
    /// `disk?offset=N`, as e2fsprogs tools accept it.
    pub spec: OsString,
    /// Private scratch directory for files handed to debugfs.
    scratch: PathBuf,
    disk: PathBuf,
    offset: u64,
}

/// Quotes a guest path for a debugfs command line.
fn quote(path: &str) -> Result<String> {
    if path.contains('"') || path.contains('\n') || !path.starts_with('/') {
        return Err(Error::invalid(format!(
            "guest path '{path}' must be absolute and contain no `\"` or newline"
        )));
    }
    Ok(format!("\"{path}\""))
}

/// debugfs reports failures on stderr and still exits 0: everything but its banner is an error.
fn stderr_errors(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| !l.starts_with("debugfs ") && !l.trim().is_empty())
        .map(String::from)
        .collect()
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

    fn debugfs(&self, task: &str, write: bool, args: &[&str]) -> Result<(Vec<u8>, Vec<String>)> {
        let mut cmd = Command::new("debugfs");
        if write {
            cmd.arg("-w");
        }
        let out = cmd
            .args(args)
            .arg(&self.spec)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
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

    /// Owner and mode of `path`, or None when it does not exist.
    pub fn stat(&self, task: &str, path: &str) -> Result<Option<Stat>> {
        let (out, errors) =
            self.debugfs(task, false, &["-R", &format!("stat {}", quote(path)?)])?;
        if !errors.is_empty() {
            return Ok(None);
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
        match (perm, field("User:"), field("Group:")) {
            (Some(p), Some(uid), Some(gid)) => Ok(Some(Stat {
                mode: kind | p,
                uid,
                gid,
            })),
            _ => Err(Error::invalid(format!(
                "{task}: cannot parse debugfs stat of {path}"
            ))),
        }
    }

    /// Content of the regular file `path`, or None when it does not exist.
    pub fn read(&self, task: &str, path: &str) -> Result<Option<Vec<u8>>> {
        if self.stat(task, path)?.is_none() {
            return Ok(None);
        }
        let (out, errors) = self.debugfs(task, false, &["-R", &format!("cat {}", quote(path)?)])?;
        if !errors.is_empty() {
            return Err(Error::invalid(format!(
                "{task}: reading {path}: {}",
                errors.join("; ")
            )));
        }
        Ok(Some(out))
    }

    /// Names in the guest directory `dir` (`.` and `..` excluded).
    pub fn list(&self, task: &str, dir: &str) -> Result<Vec<String>> {
        let (out, errors) =
            self.debugfs(task, false, &["-R", &format!("ls -p {}", quote(dir)?)])?;
        if !errors.is_empty() {
            return Err(Error::invalid(format!(
                "{task}: listing {dir}: {}",
                errors.join("; ")
            )));
        }
        // `ls -p` lines: /inode/mode/uid/gid/name/size/
        Ok(String::from_utf8_lossy(&out)
            .lines()
            .filter_map(|l| l.split('/').nth(5).map(String::from))
            .filter(|n| !n.is_empty() && n != "." && n != "..")
            .collect())
    }

    /// Runs debugfs commands in one write session; any reported error fails `task`.
    pub fn apply(&self, task: &str, commands: &[String]) -> Result<()> {
        let script = self.scratch.join("commands.debugfs");
        std::fs::write(&script, commands.join("\n") + "\n")
            .map_err(|e| Error::io("write", &script, e))?;
        let (_, errors) = self.debugfs(task, true, &["-f", &script.to_string_lossy()])?;
        if !errors.is_empty() {
            return Err(Error::invalid(format!(
                "{task}: debugfs could not change the filesystem: {}",
                errors.join("; ")
            )));
        }
        Ok(())
    }

    /// Commands that (re)create the regular file `path` with `data`, mode and owner.
    pub fn write_commands(
        &self,
        path: &str,
        data: &[u8],
        stat: Stat,
        exists: bool,
    ) -> Result<Vec<String>> {
        let local = self
            .scratch
            .join(format!("file-{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&local, data).map_err(|e| Error::io("write", &local, e))?;
        let q = quote(path)?;
        let mut cmds = Vec::new();
        if exists {
            cmds.push(format!("rm {q}"));
        }
        cmds.push(format!("write \"{}\" {q}", local.display()));
        cmds.extend(set_owner_mode(
            &q,
            Stat {
                mode: 0o100000 | (stat.mode & 0o7777),
                ..stat
            },
        ));
        Ok(cmds)
    }

    /// Replaces (or creates) the regular file `path`.
    pub fn write(&self, task: &str, path: &str, data: &[u8], stat: Stat) -> Result<()> {
        let exists = self.stat(task, path)?.is_some();
        let cmds = self.write_commands(path, data, stat, exists)?;
        self.apply(task, &cmds)
    }

    /// Creates the directory `path` (and missing parents) with mode and owner when absent.
    pub fn ensure_dir(&self, task: &str, path: &str, stat: Stat) -> Result<()> {
        let mut cmds = Vec::new();
        let mut prefix = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            prefix.push('/');
            prefix.push_str(part);
            if self.stat(task, &prefix)?.is_none() {
                let q = quote(&prefix)?;
                cmds.push(format!("mkdir {q}"));
                cmds.extend(set_owner_mode(
                    &q,
                    Stat {
                        mode: 0o040000 | (stat.mode & 0o7777),
                        ..stat
                    },
                ));
            }
        }
        if cmds.is_empty() {
            return Ok(());
        }
        self.apply(task, &cmds)
    }
}

fn set_owner_mode(quoted: &str, st: Stat) -> Vec<String> {
    vec![
        format!("sif {quoted} mode 0{:o}", st.mode),
        format!("sif {quoted} uid {}", st.uid),
        format!("sif {quoted} gid {}", st.gid),
    ]
}

/// Checks and grows the filesystem at `offset` of `disk` to `bytes`; returns (old, new) size
/// in filesystem blocks.
pub fn resize_filesystem(task: &str, guest: &Guest, bytes: u64) -> Result<(u64, u64)> {
    let (block_size, old_blocks) = fs_geometry(task, guest)?;
    let new_blocks = bytes / block_size;
    if new_blocks <= old_blocks {
        return Ok((old_blocks, old_blocks));
    }
    // resize2fs insists on a freshly checked filesystem; -p only prints, -y repairs what a
    // clean image never needs.
    let fsck = Command::new("e2fsck")
        .args(["-f", "-y"])
        .arg(&guest.spec)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
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
