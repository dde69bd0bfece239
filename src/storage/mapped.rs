//! Read-only memory mappings of stored block files ([`Mapped`]): a sender hashes a block and
//! writes it out straight from the page cache, without first copying it into a buffer. And
//! block files opened but not mapped ([`BlockFile`]): a server has the kernel send them from
//! the page cache (sendfile) and reads them (to hash or copy a part) with pread, so a file
//! shortened under it is an error, never a fault.
//!
//! A block may be a range of a larger file (a pack, `storage::pack`): a [`BlockFile`] carries
//! the offset of its stored bytes in the file, and a [`Mapped`] maps from the page boundary
//! at or below that offset and shows only the block's bytes.
//!
//! Invariant: only sealed block files (and packs, sealed and immutable alike) are mapped, and arch never writes to or shortens a
//! stored block (gc unlinks it, which leaves a mapping valid). A block file shortened under a
//! mapping by something outside arch would fault the reading process (SIGBUS); callers map
//! only while they hold the shared data lock, and only files no longer than a block.

use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;
use std::ptr::NonNull;

/// What [`crate::storage::Backend::map_block`] found.
pub enum BlockMapping {
    /// The stored block, mapped.
    Mapped(Mapped),
    /// The block is not stored.
    Missing,
    /// The stored block is longer than allowed (this many bytes): it was not mapped.
    TooLong(u64),
    /// The backend has no local files to map: read the block instead.
    Unsupported,
}

/// What [`crate::storage::Backend::open_block`] found.
pub enum OpenedBlock {
    /// The stored block, open.
    File(BlockFile),
    /// The block is not stored.
    Missing,
    /// The stored block is longer than allowed (this many bytes): it was not opened.
    TooLong(u64),
    /// The backend has no local files: read the block instead.
    Unsupported,
}

/// A stored block file open for reading, with its length when opened, and where in the file
/// the block's stored bytes start (0 for a block file, the entry's offset in a pack). Shared
/// (`Arc`) so that bytes handed to a sender stay readable however long the send takes.
pub struct BlockFile {
    file: std::sync::Arc<File>,
    offset: u64,
    len: usize,
}

impl BlockFile {
    /// A block file whose stored bytes are its first `len` bytes.
    pub fn new(file: File, len: usize) -> BlockFile {
        BlockFile::at(file, 0, len)
    }

    /// A block whose stored bytes are `len` bytes of `file` from `offset` (a packed block).
    pub fn at(file: File, offset: u64, len: usize) -> BlockFile {
        BlockFile {
            file: std::sync::Arc::new(file),
            offset,
            len,
        }
    }

    /// The open file: the block's stored bytes are [`Self::stored_len`] bytes from
    /// [`Self::offset`]. Whoever reads or sends the file directly adds the offset.
    pub fn file(&self) -> &std::sync::Arc<File> {
        &self.file
    }

    /// Where the block's stored bytes start in [`Self::file`].
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The stored length when opened.
    pub fn stored_len(&self) -> usize {
        self.len
    }

    /// Maps the stored bytes.
    pub fn map(&self) -> io::Result<Mapped> {
        Mapped::of_range(&self.file, self.offset, self.len)
    }

    /// Fills `out` with the stored bytes at `at` (one copy out of the page cache); an error
    /// when the file is shorter than that now (changed by something outside arch).
    pub fn read_at(&self, at: usize, out: &mut [u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        if at + out.len() > self.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "read past the stored bytes of a block",
            ));
        }
        self.file.read_exact_at(out, self.offset + at as u64)
    }
}

/// A range of a file mapped read-only (private, populated at once). The mapping starts at
/// the page boundary at or below the range (`base`, `base_len` bytes); the slice shows the
/// range only (`lead` bytes into the mapping).
pub struct Mapped {
    base: NonNull<u8>,
    base_len: usize,
    lead: usize,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by this value alone, like a Box<[u8]>.
unsafe impl Send for Mapped {}
// SAFETY: shared references only read the bytes.
unsafe impl Sync for Mapped {}

impl Mapped {
    /// Maps the first `len` bytes of `file` (its length, read by the caller); an empty file
    /// maps to an empty slice without a system call.
    pub fn of_file(file: &File, len: usize) -> io::Result<Mapped> {
        Mapped::of_range(file, 0, len)
    }

    /// Maps `len` bytes of `file` from `offset` (an empty range maps without a system call).
    pub fn of_range(file: &File, offset: u64, len: usize) -> io::Result<Mapped> {
        if len == 0 {
            return Ok(Mapped {
                base: NonNull::dangling(),
                base_len: 0,
                lead: 0,
                len: 0,
            });
        }
        let page = page_size();
        let lead = (offset % page) as usize;
        let start = offset - lead as u64;
        let base_len = lead
            .checked_add(len)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "mapping too long"))?;
        let start = libc::off_t::try_from(start)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
        // SAFETY: a fresh read-only private mapping of a descriptor we hold, from a
        // page-aligned offset; the kernel picks the address, and nothing else refers to that
        // range until munmap in drop.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                base_len,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_POPULATE,
                file.as_raw_fd(),
                start,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap at 0"))?;
        Ok(Mapped {
            base,
            base_len,
            lead,
            len,
        })
    }
}

/// The system's page size (mmap offsets are multiples of it).
fn page_size() -> u64 {
    // SAFETY: sysconf reads a constant of the system.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as u64 } else { 4096 }
}

impl std::ops::Deref for Mapped {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: base maps base_len = lead + len readable bytes (or is dangling with len 0
        // and lead 0) until drop.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(self.lead), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        if self.base_len > 0 {
            // SAFETY: unmaps exactly the range mmap returned, once.
            unsafe { libc::munmap(self.base.as_ptr().cast(), self.base_len) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A file of 10 000 patterned bytes: `(dir, path, bytes)`.
    fn patterned() -> (tempfile::TempDir, PathBuf, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        (dir, p, data)
    }

    #[test]
    fn maps_the_file_bytes_and_empty_files() {
        let (_dir, p, data) = patterned();
        let f = File::open(&p).unwrap();
        assert_eq!(&*Mapped::of_file(&f, data.len()).unwrap(), &data[..]);
        assert_eq!(&*Mapped::of_file(&f, 100).unwrap(), &data[..100]);
        assert!(Mapped::of_file(&f, 0).unwrap().is_empty());
    }

    #[test]
    fn an_open_block_file_maps_and_reads_its_stored_bytes_only() {
        let (_dir, p, data) = patterned();
        let b = BlockFile::new(File::open(&p).unwrap(), 6000);
        assert_eq!(&*b.map().unwrap(), &data[..6000]);
        let mut out = [0u8; 100];
        b.read_at(5900, &mut out).unwrap();
        assert_eq!(out[..], data[5900..6000]);
        assert!(b.read_at(5901, &mut out).is_err(), "past the stored bytes");
        // Shortened under it (by something outside arch): an error, not short data.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(10)
            .unwrap();
        assert!(b.read_at(0, &mut out).is_err());
    }

    #[test]
    fn a_block_at_an_offset_maps_and_reads_its_range_only() {
        let (_dir, p, data) = patterned();
        // Offsets below, at and across page boundaries (a packed block is anywhere in a pack).
        for (offset, len) in [
            (1usize, 100usize),
            (4095, 2),
            (4096, 5000),
            (5000, 5000),
            (9999, 1),
        ] {
            let b = BlockFile::at(File::open(&p).unwrap(), offset as u64, len);
            assert_eq!(b.offset(), offset as u64);
            assert_eq!(&*b.map().unwrap(), &data[offset..offset + len], "{offset}");
            let mut out = vec![0u8; len];
            b.read_at(0, &mut out).unwrap();
            assert_eq!(out, data[offset..offset + len]);
            assert!(b.read_at(1, &mut out).is_err(), "past the block's range");
        }
        let f = File::open(&p).unwrap();
        assert!(Mapped::of_range(&f, 123, 0).unwrap().is_empty());
    }
}
