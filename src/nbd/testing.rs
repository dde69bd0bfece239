//! Test doubles for the protocol: an in-memory export and a scripted client stream.

use super::wire::{STATE_HOLE, STATE_ZERO};
use super::{Export, Extent, Failure};
use std::io::{self, Read, Write};
use std::sync::Mutex;

/// An export in memory; extents: 4 KiB pages that were never written are holes.
pub struct MemExport {
    data: Mutex<Vec<u8>>,
    written: Mutex<Vec<bool>>,
    flushes: Mutex<u64>,
    read_only: bool,
}

impl MemExport {
    pub fn new(size: usize, read_only: bool) -> MemExport {
        MemExport {
            data: Mutex::new(vec![0; size]),
            written: Mutex::new(vec![false; size.div_ceil(4096)]),
            flushes: Mutex::new(0),
            read_only,
        }
    }
    pub fn data(&self) -> Vec<u8> {
        self.data.lock().unwrap().clone()
    }
    pub fn flushes(&self) -> u64 {
        *self.flushes.lock().unwrap()
    }
}

impl Export for MemExport {
    fn size(&self) -> u64 {
        self.data.lock().unwrap().len() as u64
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn preferred_block_size(&self) -> u32 {
        65536
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), Failure> {
        let d = self.data.lock().unwrap();
        out.copy_from_slice(&d[offset as usize..offset as usize + out.len()]);
        Ok(())
    }
    fn write(&self, offset: u64, data: &[u8], fua: bool) -> Result<(), Failure> {
        let o = offset as usize;
        self.data.lock().unwrap()[o..o + data.len()].copy_from_slice(data);
        let mut w = self.written.lock().unwrap();
        for p in o / 4096..(o + data.len()).div_ceil(4096) {
            w[p] = true;
        }
        if fua {
            self.flush()?;
        }
        Ok(())
    }
    fn flush(&self) -> Result<(), Failure> {
        *self.flushes.lock().unwrap() += 1;
        Ok(())
    }
    fn zero(&self, offset: u64, length: u64, _trim: bool, _fua: bool) -> Result<(), Failure> {
        let o = offset as usize;
        self.data.lock().unwrap()[o..o + length as usize].fill(0);
        Ok(())
    }
    fn extents(&self, offset: u64, length: u64, _one: bool) -> Result<Vec<Extent>, Failure> {
        let w = self.written.lock().unwrap();
        let mut out: Vec<Extent> = Vec::new();
        let (mut pos, end) = (offset, offset + length);
        while pos < end {
            let page = (pos / 4096) as usize;
            let n = ((page as u64 + 1) * 4096).min(end) - pos;
            let flags = if w[page] { 0 } else { STATE_HOLE | STATE_ZERO };
            match out.last_mut() {
                Some(l) if l.flags == flags => l.length += n,
                _ => out.push(Extent { length: n, flags }),
            }
            pos += n;
        }
        Ok(out)
    }
}

/// The bytes of one request as a client sends them (a WRITE's payload follows).
pub fn request(kind: u16, flags: u16, cookie: u64, offset: u64, length: u32) -> Vec<u8> {
    super::wire::Request {
        flags,
        kind,
        cookie,
        offset,
        length,
    }
    .encode()
    .to_vec()
}

/// A client stream with scripted input; output collected.
pub struct Script {
    input: io::Cursor<Vec<u8>>,
    pub output: Vec<u8>,
}

impl Script {
    pub fn new(input: Vec<u8>) -> Script {
        Script {
            input: io::Cursor::new(input),
            output: Vec::new(),
        }
    }
}

impl Read for Script {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for Script {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
