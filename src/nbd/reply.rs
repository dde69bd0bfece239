//! How a reply leaves: the stream it is written to ([`ReplyStream`]) and the READ data an
//! export hands out to be sent as it is ([`SharedData`]): bytes in memory, or a range of an
//! open file that a socket has the kernel send from the page cache (sendfile, which since
//! Linux 6.5 passes page references to a Unix or TCP socket instead of copying the bytes).

use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// READ data an export holds ready (see [`super::Export::read_shared`]).
pub enum SharedData {
    /// Bytes in memory (or mapped), sent as they are.
    Bytes(Box<dyn AsRef<[u8]> + Send + Sync>),
    /// `len` bytes of `file` from `offset`, which the export checked (e.g. verified) and
    /// which must not change until sent.
    File {
        file: Arc<File>,
        offset: u64,
        len: usize,
    },
}

impl SharedData {
    pub fn len(&self) -> usize {
        match self {
            SharedData::Bytes(b) => (**b).as_ref().len(),
            SharedData::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The stream replies go to.
pub trait ReplyStream: Write {
    /// Writes `head`, then the `len` bytes of `file` from `offset`. This default reads them
    /// into memory first (streams without a descriptor: tests); a socket overrides it to
    /// send them from the page cache. A file shorter than that is an error (`UnexpectedEof`)
    /// after `head` went out: the stream is then broken.
    fn send_file(&mut self, head: &[u8], file: &File, offset: u64, len: usize) -> io::Result<()> {
        let mut data = vec![0u8; len];
        file.read_exact_at(&mut data, offset)?;
        write_all_two(self, head, &data)
    }
}

impl ReplyStream for Vec<u8> {}
impl ReplyStream for io::Sink {}

/// Sends `head` then `data`: the one place a reply's parts are put on the stream.
pub fn send(
    w: &mut impl ReplyStream,
    head: &[u8],
    data: Option<&SharedData>,
    buffer: &[u8],
) -> io::Result<()> {
    match data {
        Some(SharedData::Bytes(b)) => write_all_two(w, head, (**b).as_ref()),
        Some(SharedData::File { file, offset, len }) => w.send_file(head, file, *offset, *len),
        None => write_all_two(w, head, buffer),
    }
}

/// Writes `head` then `body` with as few system calls as the writer allows (one vectored
/// write for a reply whose data is larger than the writer's buffer).
pub fn write_all_two<W: Write + ?Sized>(w: &mut W, head: &[u8], body: &[u8]) -> io::Result<()> {
    let mut parts = [IoSlice::new(head), IoSlice::new(body)];
    let mut parts = &mut parts[..];
    IoSlice::advance_slices(&mut parts, 0);
    while !parts.is_empty() {
        match w.write_vectored(parts) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut parts, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sends `len` bytes of `file` from `offset` to the socket `fd` with sendfile(2), the socket
/// blocking (its send timeout applies: a client that does not take the bytes gets an error).
pub fn sendfile_all(
    fd: std::os::fd::RawFd,
    file: &File,
    offset: u64,
    len: usize,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut off = offset as libc::off_t;
    let mut left = len;
    while left > 0 {
        // SAFETY: sendfile reads `file` (a descriptor we hold) at `off` and writes to `fd`;
        // `off` is a valid off_t the kernel advances.
        let n = unsafe { libc::sendfile(fd, file.as_raw_fd(), &mut off, left) };
        match n {
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file ended before the reply's data",
                ));
            }
            n if n > 0 => left -= n as usize,
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;

    fn file_of(bytes: &[u8]) -> (tempfile::TempDir, Arc<File>) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, bytes).unwrap();
        (dir, Arc::new(File::open(&p).unwrap()))
    }

    #[test]
    fn file_data_is_sent_after_its_head_through_a_socket_and_the_default() {
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let (_dir, file) = file_of(&bytes);
        let data = SharedData::File {
            file: file.clone(),
            offset: 1000,
            len: 250_000,
        };
        assert_eq!(data.len(), 250_000);
        // The default (read into memory).
        let mut out = Vec::new();
        send(&mut out, b"head", Some(&data), &[]).unwrap();
        assert_eq!(&out[..4], b"head");
        assert_eq!(&out[4..], &bytes[1000..251_000]);
        // sendfile into a socket, read on the other side meanwhile.
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            b.read_to_end(&mut got).unwrap();
            got
        });
        sendfile_all(a.as_raw_fd(), &file, 1000, 250_000).unwrap();
        drop(a);
        assert_eq!(reader.join().unwrap(), &bytes[1000..251_000]);
        // A file shorter than the range: an error, not a short reply.
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let e = sendfile_all(a.as_raw_fd(), &file, 299_000, 2000).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        let mut out = Vec::new();
        assert!(out.send_file(b"h", &file, 299_000, 2000).is_err());
    }

    /// An export of `size` bytes whose reads are all handed out as ranges of `file` (which
    /// may be shorter than the export: a file shortened under the server).
    struct FromFile {
        file: Arc<File>,
        size: u64,
    }
    impl crate::nbd::Export for FromFile {
        fn size(&self) -> u64 {
            self.size
        }
        fn read_only(&self) -> bool {
            true
        }
        fn preferred_block_size(&self) -> u32 {
            4096
        }
        fn read(&self, _: u64, _: &mut [u8]) -> Result<(), crate::nbd::Failure> {
            unreachable!("every read is handed out")
        }
        fn read_shared(
            &self,
            offset: u64,
            len: usize,
        ) -> Result<Option<SharedData>, crate::nbd::Failure> {
            let file = self.file.clone();
            Ok(Some(SharedData::File { file, offset, len }))
        }
        fn write(&self, _: u64, _: &[u8], _: bool) -> Result<(), crate::nbd::Failure> {
            unreachable!()
        }
        fn flush(&self) -> Result<(), crate::nbd::Failure> {
            Ok(())
        }
        fn zero(&self, _: u64, _: u64, _: bool, _: bool) -> Result<(), crate::nbd::Failure> {
            unreachable!()
        }
        fn extents(
            &self,
            _: u64,
            _: u64,
            _: bool,
        ) -> Result<Vec<crate::nbd::Extent>, crate::nbd::Failure> {
            unreachable!()
        }
    }

    #[test]
    fn a_read_handed_out_as_a_file_range_is_framed_and_a_short_file_breaks_the_stream() {
        use crate::nbd::testing::request;
        use crate::nbd::wire::*;
        let bytes: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        let (_dir, file) = file_of(&bytes);
        let e = FromFile { file, size: 8192 };
        let session = crate::nbd::Session {
            export: 0,
            structured: true,
            base_allocation: false,
        };
        let read = |cookie, offset, length| request(CMD_READ, 0, cookie, offset, length);
        let mut input = read(1, 100, 300);
        input.extend(read(2, 4000, 200)); // past the file's end: the stream breaks here
        input.extend(read(3, 0, 10)); // never answered
        let mut out = Vec::new();
        let r = crate::nbd::serve(&mut io::Cursor::new(input), &mut out, &e, &session, 1);
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        let head = chunk_header(REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, 1, 308);
        assert_eq!(out[..20], head);
        assert_eq!(out[20..28], 100u64.to_be_bytes());
        assert_eq!(
            &out[28..],
            &bytes[100..400],
            "nothing after the first reply"
        );
    }

    #[test]
    fn bytes_and_buffers_are_sent_after_the_head() {
        let mut out = Vec::new();
        let data = SharedData::Bytes(Box::new(vec![7u8; 5]));
        send(&mut out, b"ab", Some(&data), b"ignored").unwrap();
        send(&mut out, b"cd", None, b"xyz").unwrap();
        assert_eq!(out, b"ab\x07\x07\x07\x07\x07cdxyz");
    }
}
