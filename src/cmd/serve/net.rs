//! The sockets of `arch serve`: listeners (a 0600 Unix socket in `REPO/run`, or TCP), client
//! streams, the handshake's deadline, the reply side that cuts a connection whose write
//! failed, and the wakeup that tells the accept loop a slot is free.

use super::Args;
use crate::storage::fsutil::{Modes, create_dir, set_mode};
use anyhow::{Context as _, bail};
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub(super) enum Listener {
    Unix(UnixListener, PathBuf),
    Tcp(TcpListener),
}

pub(super) enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    pub(super) fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
        })
    }
    pub(super) fn shutdown(&self, how: Shutdown) {
        let _ = match self {
            Stream::Unix(s) => s.shutdown(how),
            Stream::Tcp(s) => s.shutdown(how),
        };
    }
    pub(super) fn set_timeouts(
        &self,
        read: Option<Duration>,
        write: Option<Duration>,
    ) -> io::Result<()> {
        match self {
            Stream::Unix(s) => {
                s.set_read_timeout(read)?;
                s.set_write_timeout(write)
            }
            Stream::Tcp(s) => {
                s.set_read_timeout(read)?;
                s.set_write_timeout(write)
            }
        }
    }
}

/// The handshake's view of a stream: every read and write must finish before `deadline`.
pub(super) struct Deadline<'s> {
    pub(super) stream: &'s mut Stream,
    pub(super) deadline: Instant,
}

impl Deadline<'_> {
    fn arm(&self) -> io::Result<()> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the handshake took longer than --handshake-limit",
            ));
        }
        self.stream.set_timeouts(Some(left), Some(left))
    }
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.arm()?;
        self.stream.read(buf)
    }
}

impl Write for Deadline<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.arm()?;
        self.stream.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The reply side of a connection: a failed write (the client stopped reading, or left)
/// cuts the connection, so its reader stops too.
pub(super) struct Replies(pub(super) Stream);

impl Write for Replies {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = self.0.write(buf);
        if r.is_err() {
            self.0.shutdown(Shutdown::Both);
        }
        r
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let r = self.0.write_vectored(bufs);
        if r.is_err() {
            self.0.shutdown(Shutdown::Both);
        }
        r
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl crate::nbd::ReplyStream for Replies {
    /// The head written, then the file's bytes sent from the page cache (sendfile).
    fn send_file(
        &mut self,
        head: &[u8],
        file: &std::fs::File,
        offset: u64,
        len: usize,
    ) -> io::Result<()> {
        let fd = match &self.0 {
            Stream::Unix(s) => s.as_raw_fd(),
            Stream::Tcp(s) => s.as_raw_fd(),
        };
        let r = self
            .write_all(head)
            .and_then(|()| crate::nbd::reply::sendfile_all(fd, file, offset, len));
        if r.is_err() {
            self.0.shutdown(Shutdown::Both);
        }
        r
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }
    /// A reply's header and data in one system call.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write_vectored(bufs),
            Stream::Tcp(s) => s.write_vectored(bufs),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Listener {
    pub(super) fn fd(&self) -> RawFd {
        match self {
            Listener::Unix(l, _) => l.as_raw_fd(),
            Listener::Tcp(l) => l.as_raw_fd(),
        }
    }
    pub(super) fn accept(&self) -> io::Result<Stream> {
        Ok(match self {
            Listener::Unix(l, _) => {
                let (s, _) = l.accept()?;
                s.set_nonblocking(false)?;
                reply_buffer(s.as_raw_fd());
                Stream::Unix(s)
            }
            Listener::Tcp(l) => {
                let (s, _) = l.accept()?;
                s.set_nonblocking(false)?;
                s.set_nodelay(true)?;
                reply_buffer(s.as_raw_fd());
                Stream::Tcp(s)
            }
        })
    }
    pub(super) fn uri(&self, name: &str) -> String {
        match self {
            Listener::Unix(_, p) => format!("nbd+unix:///{name}?socket={}", p.display()),
            Listener::Tcp(l) => match l.local_addr() {
                Ok(a) => format!("nbd://{a}/{name}"),
                Err(_) => format!("nbd:///{name}"),
            },
        }
    }
}

/// Asks for a send buffer that holds a whole reply of one 4 MiB block (the kernel caps it at
/// `net.core.wmem_max`; failure only leaves the default): the worker sending it then hands
/// it over in one go instead of waking up for every 200 KiB the client takes.
fn reply_buffer(fd: RawFd) {
    let size: libc::c_int = 4 << 20;
    // SAFETY: setsockopt on a socket this process owns, with a c_int option value.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Wakes the accept loop out of its poll: a client thread rings it once its slot is free, so
/// that a client waiting in the listen backlog is accepted at once instead of at the loop's
/// next poll timeout (up to 200 ms later: every `qemu-img info && qemu-io`, every second
/// `nbdcopy` of a script paid it). An eventfd: readable from a ring until the next drain.
pub(super) struct Wakeup(OwnedFd);

impl Wakeup {
    pub(super) fn new() -> io::Result<Wakeup> {
        // SAFETY: eventfd takes no pointers; it returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor that nothing else owns.
        Ok(Wakeup(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// The descriptor to poll for reading.
    pub(super) fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Makes the descriptor readable (never blocks; a full counter is readable already).
    pub(super) fn ring(&self) {
        let one = 1u64;
        // SAFETY: writes the 8 bytes of a u64 to the eventfd this value owns.
        unsafe { libc::write(self.fd(), (&one as *const u64).cast(), 8) };
    }

    /// Makes it unreadable until the next ring (never blocks).
    pub(super) fn drain(&self) {
        let mut count = 0u64;
        // SAFETY: reads at most 8 bytes into a u64 from the eventfd this value owns.
        unsafe { libc::read(self.fd(), (&mut count as *mut u64).cast(), 8) };
    }
}

/// Removes the Unix socket when the server ends (even by an error).
pub(super) struct SocketFile(pub(super) Option<PathBuf>);

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

pub(super) fn listen(repo: &crate::repo::Repository, args: &Args) -> anyhow::Result<Listener> {
    if let Some(spec) = &args.tcp {
        let addr = if spec.contains(':') {
            spec.clone()
        } else {
            format!("127.0.0.1:{spec}")
        };
        let l = TcpListener::bind(&addr).with_context(|| {
            format!("cannot listen on TCP {addr}; give --tcp HOST:PORT with a free port")
        })?;
        l.set_nonblocking(true)?;
        return Ok(Listener::Tcp(l));
    }
    let path = match &args.socket {
        Some(p) => p.clone(),
        None => run_dir(repo)?.join(format!("arch-serve-{}.sock", std::process::id())),
    };
    Ok(Listener::Unix(bind_unix(&path)?, path))
}

/// A Unix socket listening at `path`, mode 0600 from its creation, non-blocking.
pub(super) fn bind_unix(path: &Path) -> anyhow::Result<UnixListener> {
    remove_stale_socket(path)?;
    // The socket is made 0600 from the start: the umask covers the window before chmod.
    // SAFETY: umask only changes this process's file-creation mask; no other thread runs yet.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    let l = bound.with_context(|| {
        format!(
            "cannot listen on Unix socket {} (at most 107 bytes, in a writable directory); \
             give another --socket PATH",
            path.display()
        )
    })?;
    set_mode(path, 0o600)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// `REPO/run`, private to its owner (0700), created when missing.
pub(super) fn run_dir(repo: &crate::repo::Repository) -> anyhow::Result<PathBuf> {
    let dir = repo.root().join("run");
    match std::fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => bail!(
            "{} is not a directory; remove it so arch serve can create its run directory",
            dir.display()
        ),
        Err(_) => create_dir(&dir, Modes::PRIVATE)?,
    }
    set_mode(&dir, 0o700)?;
    Ok(dir)
}

/// A socket file nobody listens on (left by a killed server) is removed; anything else at
/// `path` is refused.
fn remove_stale_socket(path: &Path) -> anyhow::Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if meta.file_type().is_socket() && UnixStream::connect(path).is_err() {
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
        return Ok(());
    }
    bail!(
        "{} already exists{}; choose another --socket PATH",
        path.display(),
        if meta.file_type().is_socket() {
            " and a server listens on it"
        } else {
            ""
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `fd` is readable within `ms` milliseconds.
    fn readable(fd: RawFd, ms: i32) -> bool {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd on the stack.
        unsafe { libc::poll(&mut p, 1, ms) == 1 }
    }

    #[test]
    fn a_wakeup_rung_from_another_thread_ends_a_poll_until_drained() {
        let w = Wakeup::new().unwrap();
        assert!(!readable(w.fd(), 0), "quiet until rung");
        std::thread::scope(|s| {
            s.spawn(|| w.ring());
            // Without the ring this poll would wait forever.
            assert!(readable(w.fd(), -1));
        });
        w.ring();
        w.drain();
        assert!(!readable(w.fd(), 0), "two rings, one drain: quiet again");
        w.drain();
        assert!(!readable(w.fd(), 0), "draining a quiet one does not block");
    }
}
