//! Where a stream is written ([`Sink`]): any `Write`, plus a way to hand over bytes that stay
//! unchanged until they are read (a mapped, sealed block file) without copying them, when the
//! output is a pipe.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::io::AsRawFd;

/// An output for [`super::StreamWriter`].
pub trait Sink: Write {
    /// Writes all of `bytes`, which the caller guarantees nobody changes before the reading
    /// end has read them (the pages of a sealed block file). The default writes them.
    fn write_stable(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_all(bytes)
    }
}

impl Sink for Vec<u8> {}

impl Sink for File {
    fn write_stable(&mut self, bytes: &[u8]) -> io::Result<()> {
        splice_or_write(self, bytes)
    }
}

impl Sink for &File {
    fn write_stable(&mut self, bytes: &[u8]) -> io::Result<()> {
        splice_or_write(self, bytes)
    }
}

/// On a pipe, hands the pages of `bytes` to it (`vmsplice`: the reader reads them from the
/// same pages, no copy into the pipe); anything else, or a refusal, gets an ordinary write.
fn splice_or_write(file: &File, bytes: &[u8]) -> io::Result<()> {
    let mut done = 0;
    while done < bytes.len() {
        let rest = &bytes[done..];
        let iov = libc::iovec {
            iov_base: rest.as_ptr() as *mut libc::c_void,
            iov_len: rest.len(),
        };
        // SAFETY: the iovec describes `rest`, valid for reading for the whole call; the
        // pipe keeps references to its pages, which the caller guarantees stay unchanged
        // until read (see `Sink::write_stable`). Without SPLICE_F_GIFT nothing is moved.
        let n = unsafe { libc::vmsplice(file.as_raw_fd(), &iov, 1, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                // Not a pipe (a file, a socket): write the rest.
                Some(libc::EBADF) | Some(libc::EINVAL) => {
                    let mut f = file;
                    return f.write_all(rest);
                }
                _ => return Err(e),
            }
        }
        done += n as usize;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn stable_bytes_reach_a_pipe_and_a_file_unchanged() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 249) as u8).collect();
        // A pipe: vmsplice, read on the other end while it is written.
        let mut fds = [0; 2];
        // SAFETY: pipe fills two descriptors we then own.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        use std::os::fd::FromRawFd;
        // SAFETY: both descriptors are fresh and owned once each.
        let (mut r, mut w) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
        let sent = data.clone();
        let t = std::thread::spawn(move || {
            w.write_stable(&sent).unwrap();
        });
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        t.join().unwrap();
        assert_eq!(got, data);
        // A regular file: vmsplice refuses, the bytes are written.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let mut f = File::create(&p).unwrap();
        f.write_stable(&data).unwrap();
        drop(f);
        assert_eq!(std::fs::read(&p).unwrap(), data);
    }
}
