//! An in-process pipe (a bounded channel of byte chunks) between a sending thread and a
//! receiving one, so `copy` runs the same stream code, with every check, as send | receive.

use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// Bytes gathered before a chunk is handed over.
const CHUNK: usize = 1 << 20;

/// The writing end: data is handed over in chunks of [`CHUNK`] bytes and at `flush`. Dropped
/// without a flush, what it holds is lost and the reader sees a truncated stream.
pub struct PipeWriter {
    tx: SyncSender<Vec<u8>>,
    buf: Vec<u8>,
}

/// The reading end: end of input once the writer is gone.
pub struct PipeReader {
    rx: Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

/// A pipe holding at most `depth` chunks in flight.
pub fn pipe(depth: usize) -> (PipeWriter, PipeReader) {
    let (tx, rx) = sync_channel(depth);
    (
        PipeWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        },
        PipeReader {
            rx,
            chunk: Vec::new(),
            at: 0,
        },
    )
}

impl PipeWriter {
    fn hand_over(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the receiver stopped"))
    }
}

impl Write for PipeWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.hand_over()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.hand_over()
    }
}

impl crate::stream::Sink for PipeWriter {}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.recv() {
                Ok(c) => {
                    self.chunk = c;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.chunk.len() - self.at);
        out[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_cross_in_order_and_a_dropped_writer_ends_the_input() {
        let (mut w, mut r) = pipe(2);
        let data: Vec<u8> = (0..3 * CHUNK + 5).map(|i| i as u8).collect();
        let sent = data.clone();
        let t = std::thread::spawn(move || {
            w.write_all(&sent).unwrap();
            w.flush().unwrap();
        });
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        t.join().unwrap();
        assert_eq!(got, data);
        let (mut w, r) = pipe(1);
        drop(r);
        w.write_all(b"x").unwrap();
        assert_eq!(w.flush().unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    }
}
