//! Mounting a FUSE file without root. `fusermount3` (setuid root, Debian's `fuse3`) opens
//! `/dev/fuse`, mounts it on a file the caller may write, and hands the descriptor back over a
//! socket (`_FUSE_COMMFD`, libfuse's protocol). With `auto_unmount` it stays behind, watching
//! that socket: when the socket closes, whether arch closed it or arch was killed, it unmounts
//! (lazily). So no mount outlives the process that served it.
//!
//! Why not fuser's own mount: it refuses `auto_unmount` without `allow_other`, which an
//! unprivileged user may only set when `/etc/fuse.conf` says `user_allow_other`; fusermount3
//! itself needs no such thing.

use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The mount helper; `ARCH_FUSERMOUNT` overrides it (tests point it at a missing program to
/// exercise the fallback).
pub fn helper() -> PathBuf {
    std::env::var_os("ARCH_FUSERMOUNT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("fusermount3"))
}

/// A live mount: the `/dev/fuse` descriptor (until taken by the session) and the watching
/// fusermount3. Dropping it unmounts.
pub struct Mount {
    path: PathBuf,
    device: Option<OwnedFd>,
    watch: Option<UnixStream>,
    helper: Option<Child>,
}

/// Mounts a FUSE filesystem on `path` (an existing regular file or directory of this user).
/// Errors say why in words, for the caller's fallback note.
pub fn mount(path: &Path, fsname: &str) -> Result<Mount, String> {
    let program = helper();
    // mountinfo names the mount by its real path; keep that one to find it again.
    let path = &path
        .canonicalize()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let (ours, theirs) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
    let fd = theirs.as_raw_fd();
    let mut cmd = Command::new(&program);
    cmd.arg("-o")
        .arg(format!(
            "rw,nosuid,nodev,noexec,auto_unmount,fsname={fsname},subtype=arch"
        ))
        .arg("--")
        .arg(path)
        .env("_FUSE_COMMFD", fd.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: only fcntl (async-signal-safe) runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            format!(
                "{} is not installed (Debian/Ubuntu: apt install fuse3)",
                program.display()
            )
        } else {
            format!("cannot run {}: {e}", program.display())
        }
    })?;
    drop(theirs);
    match receive_fd(&ours) {
        Ok(device) => Ok(Mount {
            path: path.to_path_buf(),
            device: Some(device),
            watch: Some(ours),
            helper: Some(child),
        }),
        Err(e) => {
            drop(ours);
            let mut stderr = String::new();
            if let Some(mut s) = child.stderr.take() {
                let _ = s.read_to_string(&mut stderr);
            }
            let _ = child.wait();
            let why = stderr.trim();
            let name = program.display().to_string();
            Err(if why.starts_with(&name) || why.starts_with("fusermount") {
                why.to_string()
            } else if why.is_empty() {
                format!("{} gave no FUSE descriptor ({e})", program.display())
            } else {
                format!("{}: {why}", program.display())
            })
        }
    }
}

impl Mount {
    /// The `/dev/fuse` descriptor, for the session that serves requests.
    pub fn take_device(&mut self) -> Option<OwnedFd> {
        self.device.take()
    }

    /// Unmounts (lazily) and lets fusermount3 go. Call it while the session still answers
    /// requests; the session then ends.
    pub fn unmount(mut self) -> io::Result<()> {
        self.finish()
    }

    fn finish(&mut self) -> io::Result<()> {
        self.device = None;
        let Some(mut child) = self.helper.take() else {
            return Ok(());
        };
        // fusermount3's auto_unmount only acts when the filesystem is dead (its server gone:
        // a killed arch); a live one is unmounted by its owner.
        let unmounted = unmount_lazily(&self.path);
        self.watch = None;
        let _ = child.wait();
        unmounted
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// Detaches whatever FUSE mount is on `path` (`fusermount3 -u -z`: lazy, so a process still
/// holding it open does not block the unmount).
pub fn unmount_lazily(path: &Path) -> io::Result<()> {
    let out = Command::new(helper())
        .args([
            OsStr::new("-u"),
            OsStr::new("-q"),
            OsStr::new("-z"),
            OsStr::new("--"),
        ])
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()?;
    if out.status.success() || !is_mounted(path) {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "fusermount3 -u {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// True when `path` is a mount point of this mount namespace (by `/proc/self/mountinfo`).
pub fn is_mounted(path: &Path) -> bool {
    mount_points().iter().any(|p| p == path)
}

/// The FUSE mount points of this namespace (the 5th field of `/proc/self/mountinfo`, octal
/// escapes decoded) whose filesystem type starts with `fuse`.
pub fn mount_points() -> Vec<PathBuf> {
    let Ok(info) = std::fs::read(Path::new("/proc/self/mountinfo")) else {
        return Vec::new();
    };
    info.split(|&b| b == b'\n')
        .filter_map(|line| {
            let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
            let sep = fields.iter().position(|f| *f == b"-")?;
            let fstype = fields.get(sep + 1)?;
            if !fstype.starts_with(b"fuse") {
                return None;
            }
            decode_octal(fields.get(4)?)
        })
        .map(|p| {
            PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(p))
        })
        .collect()
}

/// `\040`-style escapes of mountinfo decoded.
fn decode_octal(field: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && i + 3 < field.len()
            && field[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = field[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            out.push(u8::try_from(v).ok()?);
            i += 4;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Receives one descriptor sent with SCM_RIGHTS on `sock`.
fn receive_fd(sock: &UnixStream) -> io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // Room for one descriptor's control message, aligned as cmsghdr needs.
    let mut control = [0u64; 8];
    loop {
        // SAFETY: msghdr points at live buffers of the stated lengths for the call's duration.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: as above; MSG_CMSG_CLOEXEC keeps the descriptor out of the tools we spawn.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the helper closed the socket",
            ));
        }
        // SAFETY: the kernel filled msg_control; CMSG_* walk it within msg_controllen.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            if !cmsg.is_null()
                && (*cmsg).cmsg_level == libc::SOL_SOCKET
                && (*cmsg).cmsg_type == libc::SCM_RIGHTS
            {
                let fd: libc::c_int = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                if fd >= 0 {
                    return Ok(OwnedFd::from_raw_fd(fd));
                }
            }
        }
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "no descriptor in the helper's message",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(decode_octal(b"/a\\040b").unwrap(), b"/a b");
        assert_eq!(decode_octal(b"/plain").unwrap(), b"/plain");
        assert_eq!(decode_octal(b"/x\\").unwrap(), b"/x\\");
    }
}
