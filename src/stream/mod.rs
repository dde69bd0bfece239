//! The send stream codec (docs/FORMAT.md "Send streams"): a versioned header, then records
//! (blocks with their hash, maps, resource descriptions), then a trailer holding the record
//! count and the sha256 of every byte before it except block data, which its own hash binds. It knows nothing of repositories: the
//! services in `services::transfer` decide what goes in and what a received record means.
//!
//! Invariants of [`StreamReader`]: every block it returns hashes to its name and is no longer
//! than the header's block size (its data is read, piece by piece and each piece hashed as it
//! arrives, into the caller's buffer, never copied again); every map decodes and has the
//! header's block size; it never allocates more than the bytes that actually arrived, whatever
//! a length field claims (a block goes into the caller's buffer, grown to at most one block);
//! and
//! [`StreamReader::next`] returns [`Record::End`] only after the trailer's count and checksum
//! matched and the input ended right after it. So a caller that applies nothing before `End`
//! never applies a truncated, reordered or corrupted stream.

use crate::error::{Error, Result};
use crate::storage::direct::AlignedBuf;
use crate::storage::hash::HASH_LEN;
use crate::storage::map::valid_block_size;
use crate::storage::{BlockHash, BlockMap, MapId};
use sha2::{Digest, Sha256};
use std::io::{BufReader, Read};

/// First bytes of every stream.
pub const MAGIC: &[u8; 8] = b"ARCHSEND";
/// The stream format version this arch writes and reads. Version 1 checksummed block data in
/// the trailer too (a second sha256 pass over every block byte); version 2 binds block data
/// by the block hashes the checksum covers.
pub const VERSION: u32 = 2;
/// Header: magic, version u32, block size u32.
pub const HEADER_LEN: usize = 16;
/// Largest map record (a 64 TiB resource at 4 MiB blocks is 512 MiB of hashes; larger maps
/// than this limit are not sent).
pub const MAX_MAP_RECORD: u64 = 1 << 30;
/// Largest resource record (JSON).
pub const MAX_RESOURCE_RECORD: u64 = 256 << 20;

const TAG_BLOCK: u8 = 1;
const TAG_MAP: u8 = 2;
const TAG_RESOURCE: u8 = 3;
const TAG_END: u8 = 0xff;
/// The trailer's payload: record count u64 + sha256.
const END_LEN: u64 = 8 + HASH_LEN as u64;
/// Block data is read and hashed in pieces of at most this size, each hashed while it is in
/// cache.
const PIECE: usize = 256 << 10;
/// Buffer of the reader for record heads, maps and resources. Block data pieces are at least
/// this long (but for blocks smaller than it), so they bypass it: read straight from the
/// input into the caller's buffer.
const READ_BUF: usize = 64 << 10;
/// Buffer of the writer for record heads, maps and resources; block data longer than this is
/// written straight from the caller's buffer, in [`crate::storage::fsutil::WRITE_PIECE`] pieces.
const WRITE_BUF: usize = 64 << 10;

fn bad(reason: impl Into<String>) -> Error {
    Error::BadStream {
        reason: reason.into(),
    }
}

/// One record of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A block: its stored bytes (trailing zeros stripped, not empty) are the first `len`
    /// bytes of the buffer given to [`StreamReader::next`]; `hash` is their sha256.
    Block { hash: BlockHash, len: usize },
    /// A map, with the id it has once stored.
    Map { id: MapId, map: BlockMap },
    /// A resource description (JSON, interpreted by the caller).
    Resource(Vec<u8>),
    /// The verified trailer: nothing follows.
    End,
}

/// Writes a stream: header at [`StreamWriter::new`], trailer at [`StreamWriter::finish`].
/// It buffers what it writes itself (record heads, maps, resources); give it an unbuffered
/// output: block data goes from the caller's slice to `out` without a copy.
pub struct StreamWriter<W: Sink> {
    out: W,
    /// Bytes accounted for (hashed, counted) but not yet written to `out`.
    pending: Vec<u8>,
    hasher: Sha256,
    records: u64,
    bytes: u64,
    block_size: u32,
}

impl<W: Sink> StreamWriter<W> {
    /// Starts a stream of blocks of `block_size` bytes on `out`.
    pub fn new(out: W, block_size: u32) -> Result<StreamWriter<W>> {
        let mut w = StreamWriter {
            out,
            pending: Vec::with_capacity(WRITE_BUF),
            hasher: Sha256::new(),
            records: 0,
            bytes: 0,
            block_size,
        };
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&VERSION.to_le_bytes());
        header.extend_from_slice(&block_size.to_le_bytes());
        w.put(&header, true)?;
        Ok(w)
    }

    /// Writes `bytes`, covered by the trailer checksum when `covered`: short ones into the
    /// buffer, long ones (block data) straight to the output once the buffer is out.
    fn put(&mut self, bytes: &[u8], covered: bool) -> Result<()> {
        if covered {
            self.hasher.update(bytes);
        }
        self.bytes += bytes.len() as u64;
        if self.pending.len() + bytes.len() <= WRITE_BUF {
            self.pending.extend_from_slice(bytes);
            return Ok(());
        }
        self.drain()?;
        if bytes.len() < WRITE_BUF {
            self.pending.extend_from_slice(bytes);
            return Ok(());
        }
        Self::write_out(&mut self.out, bytes)
    }

    /// Writes the buffered bytes to the output.
    fn drain(&mut self) -> Result<()> {
        let r = Self::write_out(&mut self.out, &self.pending);
        self.pending.clear();
        r
    }

    /// Writes `bytes` to `out` in pieces the kernel copies cheaply (see `WRITE_PIECE`).
    fn write_out(out: &mut W, bytes: &[u8]) -> Result<()> {
        bytes
            .chunks(crate::storage::fsutil::WRITE_PIECE)
            .try_for_each(|piece| out.write_all(piece))
            .map_err(|e| Error::io("write", "the stream", e))
    }

    /// Writes a record: its head and `parts` covered by the checksum, then `data` (block
    /// data, bound by the hash in `parts` instead).
    fn record(&mut self, tag: u8, parts: &[&[u8]], data: &[u8]) -> Result<()> {
        self.record_head(tag, parts, data.len())?;
        self.put(data, false)?;
        self.records += 1;
        Ok(())
    }

    /// Writes a record's head and its `parts` (checksummed), for `data_len` bytes of
    /// block data to follow.
    fn record_head(&mut self, tag: u8, parts: &[&[u8]], data_len: usize) -> Result<()> {
        let len: usize = parts.iter().map(|p| p.len()).sum::<usize>() + data_len;
        let mut head = [0u8; 9];
        head[0] = tag;
        head[1..].copy_from_slice(&(len as u64).to_le_bytes());
        self.put(&head, true)?;
        for p in parts {
            self.put(p, true)?;
        }
        Ok(())
    }

    /// Writes a block given its stored bytes (trailing zeros stripped, not all zero) and
    /// their sha256 (the caller has it; the bytes are not hashed again here).
    pub fn block(&mut self, hash: &BlockHash, stored: &[u8]) -> Result<()> {
        debug_assert!(!stored.is_empty() && stored.len() <= self.block_size as usize);
        self.record(TAG_BLOCK, &[&hash.0], stored)
    }

    /// [`StreamWriter::block`] for bytes nobody changes until the stream's reader has read
    /// them (a mapped, sealed block file): a pipe gets their pages, not a copy
    /// ([`Sink::write_stable`]).
    pub fn block_stable(&mut self, hash: &BlockHash, stored: &[u8]) -> Result<()> {
        debug_assert!(!stored.is_empty() && stored.len() <= self.block_size as usize);
        self.record_head(TAG_BLOCK, &[&hash.0], stored.len())?;
        self.bytes += stored.len() as u64;
        self.drain()?;
        self.out
            .write_stable(stored)
            .map_err(|e| Error::io("write", "the stream", e))?;
        self.records += 1;
        Ok(())
    }

    /// Writes a map.
    pub fn map(&mut self, map: &BlockMap) -> Result<()> {
        self.record(TAG_MAP, &[&map.encode()], &[])
    }

    /// Writes a resource description.
    pub fn resource(&mut self, json: &[u8]) -> Result<()> {
        self.record(TAG_RESOURCE, &[json], &[])
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Writes the trailer and flushes; returns the output and the stream's length.
    pub fn finish(mut self) -> Result<(W, u64)> {
        let count = self.records;
        let digest: [u8; HASH_LEN] = self.hasher.clone().finalize().into();
        self.record(TAG_END, &[&count.to_le_bytes(), &digest], &[])?;
        self.drain()?;
        self.out
            .flush()
            .map_err(|e| Error::io("write", "the stream", e))?;
        Ok((self.out, self.bytes))
    }
}

/// Reads and checks a stream record by record. It buffers its input itself (a small buffer
/// that block data bypasses): give it an unbuffered one.
pub struct StreamReader<R: Read> {
    input: BufReader<R>,
    hasher: Sha256,
    records: u64,
    bytes: u64,
    block_size: u32,
    ended: bool,
}

impl<R: Read> StreamReader<R> {
    /// Reads and checks the header.
    pub fn new(input: R) -> Result<StreamReader<R>> {
        let mut r = StreamReader {
            input: BufReader::with_capacity(READ_BUF, input),
            hasher: Sha256::new(),
            records: 0,
            bytes: 0,
            block_size: 0,
            ended: false,
        };
        let mut header = [0u8; HEADER_LEN];
        r.fill(&mut header, "the header")?;
        if &header[..8] != MAGIC {
            return Err(bad(
                "it does not start with ARCHSEND (not a stream made by `arch send`)",
            ));
        }
        let version = u32::from_le_bytes(header[8..12].try_into().unwrap());
        if version != VERSION {
            return Err(bad(format!(
                "stream format version {version}; this arch reads version {VERSION} (use the \
                 arch that sent it, or a newer one)"
            )));
        }
        let bs = u32::from_le_bytes(header[12..16].try_into().unwrap());
        if !valid_block_size(bs as u64) {
            return Err(bad(format!("block size {bs} in the header is not valid")));
        }
        r.block_size = bs;
        Ok(r)
    }

    /// Block size of the blocks and maps in the stream.
    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// Bytes read so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Reads exactly `buf.len()` bytes, hashed; the end of the input is truncation.
    fn fill(&mut self, buf: &mut [u8], what: &str) -> Result<()> {
        let mut done = 0;
        while done < buf.len() {
            match self.input.read(&mut buf[done..]) {
                Ok(0) => {
                    return Err(bad(format!(
                        "it ends in {what} after {} bytes (truncated)",
                        self.bytes + done as u64
                    )));
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                    crate::interrupt::check()?;
                }
                Err(e) => return Err(Error::io("read", "the stream", e)),
            }
        }
        self.hasher.update(&buf[..]);
        self.bytes += buf.len() as u64;
        Ok(())
    }

    /// Reads the data of a block into `buf` (its length: at most the block size, checked by
    /// the caller) as it arrives, each piece hashed while it is in cache; returns the sha256
    /// of the data. Block data is not covered by the trailer checksum: its hash, which is,
    /// binds it.
    fn block_data(&mut self, buf: &mut [u8]) -> Result<BlockHash> {
        let mut hasher = Sha256::new();
        let mut done = 0;
        while done < buf.len() {
            let end = (done + PIECE).min(buf.len());
            match self.input.read(&mut buf[done..end]) {
                Ok(0) => {
                    return Err(bad(format!(
                        "it ends in a block after {} bytes (truncated)",
                        self.bytes + done as u64
                    )));
                }
                Ok(n) => {
                    hasher.update(&buf[done..done + n]);
                    done += n;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                    crate::interrupt::check()?;
                }
                Err(e) => return Err(Error::io("read", "the stream", e)),
            }
        }
        self.bytes += buf.len() as u64;
        Ok(BlockHash(hasher.finalize().into()))
    }

    /// Reads `len` bytes into a vector grown as they arrive (a hostile length allocates
    /// nothing it does not receive).
    fn payload(&mut self, len: u64, what: &str) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(len.min(1 << 20) as usize);
        let mut chunk = vec![0u8; (len.min(1 << 20)) as usize];
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            self.fill(&mut chunk[..n], what)?;
            out.extend_from_slice(&chunk[..n]);
            left -= n as u64;
        }
        Ok(out)
    }

    /// The next record; [`Record::End`] once the trailer verified and the input ended. A
    /// block's data goes into `block` (grown to the block's length when shorter; its first
    /// `len` bytes are the block, what follows is left as it was).
    pub fn next(&mut self, block: &mut AlignedBuf) -> Result<Record> {
        if self.ended {
            return Ok(Record::End);
        }
        crate::interrupt::check()?;
        // The checksum covers everything before the trailer's tag.
        let before = self.hasher.clone();
        let mut head = [0u8; 9];
        self.fill(&mut head, "a record header")?;
        let tag = head[0];
        let len = u64::from_le_bytes(head[1..].try_into().unwrap());
        let record = self.records;
        let at = self.bytes - 9;
        let record = match tag {
            TAG_BLOCK => {
                if len <= HASH_LEN as u64 || len > HASH_LEN as u64 + self.block_size as u64 {
                    return Err(bad(format!(
                        "record {record} (offset {at}) is a block of {} bytes; a block holds \
                         1 to {} bytes",
                        len.saturating_sub(HASH_LEN as u64),
                        self.block_size
                    )));
                }
                let mut raw = [0u8; HASH_LEN];
                self.fill(&mut raw, "a block")?;
                let hash = BlockHash(raw);
                let n = (len - HASH_LEN as u64) as usize;
                if block.len() < n {
                    block.resize(n);
                }
                let data = &mut block[..n];
                let actual = self.block_data(data)?;
                if data[n - 1] == 0 {
                    return Err(bad(format!(
                        "block {hash} (record {record}) ends with zero bytes; blocks are sent \
                         with trailing zeros stripped"
                    )));
                }
                if actual != hash {
                    return Err(bad(format!(
                        "block {hash} (record {record}, offset {at}) does not match its hash \
                         (corrupted in transit)"
                    )));
                }
                Record::Block { hash, len: n }
            }
            TAG_MAP => {
                if len > MAX_MAP_RECORD {
                    return Err(bad(format!(
                        "record {record} is a map of {len} bytes, more than the {MAX_MAP_RECORD} \
                         a stream may hold"
                    )));
                }
                let bytes = self.payload(len, "a map")?;
                let map = BlockMap::decode(&bytes)
                    .map_err(|e| bad(format!("map in record {record} is invalid: {e}")))?;
                if map.block_size() != self.block_size {
                    return Err(bad(format!(
                        "map in record {record} has blocks of {}, the stream {}",
                        map.block_size(),
                        self.block_size
                    )));
                }
                Record::Map {
                    id: BlockHash::of_bytes(&bytes),
                    map,
                }
            }
            TAG_RESOURCE => {
                if len > MAX_RESOURCE_RECORD {
                    return Err(bad(format!(
                        "record {record} is a resource of {len} bytes, more than the \
                         {MAX_RESOURCE_RECORD} a stream may hold"
                    )));
                }
                Record::Resource(self.payload(len, "a resource")?)
            }
            TAG_END => {
                if len != END_LEN {
                    return Err(bad(format!("the trailer is {len} bytes, not {END_LEN}")));
                }
                let body = self.payload(len, "the trailer")?;
                let count = u64::from_le_bytes(body[..8].try_into().unwrap());
                let digest: [u8; HASH_LEN] = before.finalize().into();
                if count != self.records {
                    return Err(bad(format!(
                        "the trailer counts {count} records, {} arrived (records lost or added)",
                        self.records
                    )));
                }
                if body[8..] != digest {
                    return Err(bad(
                        "the trailer checksum does not match the bytes before it (corrupted, \
                         reordered or spliced)",
                    ));
                }
                let mut extra = [0u8; 1];
                loop {
                    match self.input.read(&mut extra) {
                        Ok(0) => break,
                        Ok(_) => return Err(bad("bytes follow the trailer")),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(Error::io("read", "the stream", e)),
                    }
                }
                self.ended = true;
                return Ok(Record::End);
            }
            other => {
                return Err(bad(format!(
                    "record {record} (offset {at}) has unknown type {other}"
                )));
            }
        };
        self.records += 1;
        Ok(record)
    }
}

mod sink;
pub use sink::Sink;

#[cfg(test)]
mod tests;
