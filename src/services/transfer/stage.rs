//! Staging received blocks on writer threads: the thread that reads and verifies the stream
//! hands each verified block, in the page-aligned buffer it was read into, to a few writers
//! that stage it in the receive's batch with a direct write (no page-cache copy), and gets the
//! buffer back once it is written. Reading and hashing the next blocks overlaps the writes;
//! each block byte is copied once, from the input into its buffer.
//!
//! Invariants: only blocks the stream reader verified are handed over (so nothing unverified
//! is ever staged); staging makes nothing visible (the batch commits later, see
//! `receive`); at most [`depth`] block buffers exist, each allocated when first needed and
//! grown by the reader only to the length of a block that arrived.

use super::flush::EarlyFlush;
use crate::error::{Error, Result};
use crate::storage::BlockHash;
use crate::storage::backend::BlockBatch;
use crate::storage::direct::AlignedBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::Scope;

/// Writer threads. A direct write returns when the device has the data, so a few are in
/// flight to keep the device busy while the reader hashes.
const WRITERS: usize = 3;
/// Bytes of block buffers a receive may hold.
const BUFFER_BYTES: u64 = 32 << 20;

/// Block buffers in flight for blocks of `block_size`: enough for every writer and the
/// reader, up to [`BUFFER_BYTES`], never fewer than two.
pub fn depth(block_size: u32) -> usize {
    ((BUFFER_BYTES / block_size as u64) as usize).clamp(2, WRITERS + 3)
}

struct Job {
    hash: BlockHash,
    buf: AlignedBuf,
    len: usize,
}

/// A job done: its buffer back, and whether its block was written (stored length) or was
/// already present (None).
struct Done {
    buf: AlignedBuf,
    staged: Result<Option<u64>>,
}

/// The writers of one receive, and what they wrote.
pub struct Stager<'a> {
    jobs: Option<SyncSender<Job>>,
    done: Receiver<Done>,
    /// Set on the first error: writers skip what is still queued.
    stop: Arc<AtomicBool>,
    /// Buffers handed out or in flight; new ones are made up to `depth`.
    made: usize,
    depth: usize,
    in_flight: usize,
    flusher: &'a EarlyFlush,
    /// Blocks written, and their stored bytes.
    pub written: u64,
    pub bytes: u64,
    /// Blocks the store already had (or that were already staged).
    pub skipped: u64,
}

impl<'a> Stager<'a> {
    /// Starts the writers in `scope`, staging into `batch`; every block written is counted
    /// into `flusher`.
    pub fn start<'scope, 'env: 'scope>(
        scope: &'scope Scope<'scope, 'env>,
        batch: &'env dyn BlockBatch,
        block_size: u32,
        flusher: &'a EarlyFlush,
    ) -> Stager<'a> {
        let depth = depth(block_size);
        let (job_tx, job_rx) = sync_channel::<Job>(depth);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done_rx) = channel::<Done>();
        let stop = Arc::new(AtomicBool::new(false));
        for _ in 0..WRITERS {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            let stop = Arc::clone(&stop);
            scope.spawn(move || {
                loop {
                    let job = match job_rx.lock().expect("no writer panics").recv() {
                        Ok(job) => job,
                        Err(_) => return,
                    };
                    let staged = if stop.load(Ordering::Relaxed) {
                        Err(Error::invalid("block not written: the receive stopped"))
                    } else {
                        batch
                            .stage(&job.hash, &job.buf[..job.len])
                            .map(|new| new.then_some(job.len as u64))
                    };
                    if done_tx
                        .send(Done {
                            buf: job.buf,
                            staged,
                        })
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
        Stager {
            jobs: Some(job_tx),
            done: done_rx,
            stop,
            made: 0,
            depth,
            in_flight: 0,
            flusher,
            written: 0,
            bytes: 0,
            skipped: 0,
        }
    }

    /// A buffer for the next block: a new (empty) one while fewer than the depth exist, else
    /// the next one a writer gives back. Returns the first error a writer met.
    pub fn buffer(&mut self) -> Result<AlignedBuf> {
        if self.made < self.depth || self.in_flight == 0 {
            self.made += 1;
            return Ok(AlignedBuf::new());
        }
        self.wait_one()
    }

    /// Hands block `hash`, the first `len` bytes of `buf` (verified by the caller), to a
    /// writer.
    pub fn stage(&mut self, hash: BlockHash, buf: AlignedBuf, len: usize) -> Result<()> {
        let jobs = self.jobs.as_ref().expect("not finished");
        // The writers outlive the sender: they end only once it is dropped.
        jobs.send(Job { hash, buf, len })
            .expect("writers run until the jobs end");
        self.in_flight += 1;
        Ok(())
    }

    /// Waits for every block handed over to be written; the first error a writer met.
    pub fn finish(&mut self) -> Result<()> {
        self.jobs = None;
        while self.in_flight > 0 {
            self.wait_one()?;
        }
        Ok(())
    }

    /// Waits for one job to be done, counts it, and returns its buffer (or its error).
    fn wait_one(&mut self) -> Result<AlignedBuf> {
        let done = self
            .done
            .recv()
            .expect("a job in flight comes back from its writer");
        self.in_flight -= 1;
        match done.staged {
            Ok(Some(n)) => {
                self.written += 1;
                self.bytes += n;
                self.flusher.staged(n);
            }
            Ok(None) => self.skipped += 1,
            Err(e) => {
                self.stop.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
        Ok(done.buf)
    }
}

impl Drop for Stager<'_> {
    fn drop(&mut self) {
        // An early return (a bad stream, a failed write): queued blocks are not written.
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::backend::Backend;
    use crate::storage::fault::{Fault, FaultyBackend};
    use crate::storage::local::LocalBackend;

    /// `n` distinct blocks of `len` bytes in page-aligned buffers.
    fn blocks(n: usize, len: usize) -> Vec<(BlockHash, AlignedBuf)> {
        (0..n)
            .map(|k| {
                let mut b = AlignedBuf::new();
                b.resize(len);
                for (i, x) in b.iter_mut().enumerate() {
                    *x = (i * 31 + k * 7) as u8 | 1;
                }
                (BlockHash::of_bytes(&b), b)
            })
            .collect()
    }

    /// Stages `input` through a stager (with every buffer it hands out), then commits.
    fn run(backend: &dyn Backend, input: Vec<(BlockHash, AlignedBuf)>) -> Result<(u64, u64)> {
        let dir = tempfile::tempdir().unwrap();
        let flusher = EarlyFlush::start(dir.path().to_path_buf());
        let batch = backend.begin_batch()?;
        let counts = std::thread::scope(|scope| {
            let mut stager = Stager::start(scope, batch.as_ref(), 4096, &flusher);
            for (hash, data) in input {
                let mut buf = stager.buffer()?;
                buf.resize(data.len());
                buf.copy_from_slice(&data);
                stager.stage(hash, buf, data.len())?;
            }
            stager.finish()?;
            Ok::<_, Error>((stager.written, stager.skipped))
        })?;
        flusher.finish()?;
        batch.commit()?;
        Ok(counts)
    }

    #[test]
    fn every_block_is_staged_once_and_buffers_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        LocalBackend::create_layout(dir.path()).unwrap();
        let b = LocalBackend::new(dir.path());
        let mut input = blocks(3 * depth(4096), 4096 + 100);
        let again = input[1].0;
        let copy = {
            let mut c = AlignedBuf::new();
            c.resize(input[1].1.len());
            c.copy_from_slice(&input[1].1);
            c
        };
        input.push((again, copy));
        let hashes: Vec<BlockHash> = input.iter().map(|x| x.0).collect();
        let (written, skipped) = run(&b, input).unwrap();
        assert_eq!((written, skipped), (hashes.len() as u64 - 1, 1));
        let mut buf = Vec::new();
        for h in &hashes {
            assert!(b.read_block(h, &mut buf).unwrap());
            assert_eq!(BlockHash::of_bytes(&buf), *h);
        }
        assert_eq!(depth(4096), WRITERS + 3);
        assert_eq!(
            depth(64 << 20),
            2,
            "large blocks: two buffers, not 32 MiB of them"
        );
    }

    #[test]
    fn a_failed_write_fails_the_receive_and_leaves_nothing_visible() {
        let dir = tempfile::tempdir().unwrap();
        LocalBackend::create_layout(dir.path()).unwrap();
        let b = FaultyBackend::new(LocalBackend::new(dir.path()), 3, Fault::NoSpace);
        let input = blocks(4 * depth(4096), 4096);
        let e = run(&b, input).unwrap_err();
        assert!(e.to_string().contains("injected"), "{e}");
        let mut seen = 0;
        b.for_each_block(&mut |_, _| {
            seen += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, 0, "nothing committed");
        let tmp: Vec<_> = std::fs::read_dir(dir.path().join("tmp")).unwrap().collect();
        assert!(tmp.is_empty(), "the batch was discarded");
    }
}
