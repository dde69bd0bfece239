//! Streaming import: splits a source into blocks, hashes them on all cores while reading
//! continues, stages the new ones and stores the resulting map.
//!
//! One reader thread feeds [`io_threads`] workers; each hashes its block and writes it (when
//! new) straight from the buffer it was read into, with a direct write (no page-cache copy):
//! reading, hashing and writing overlap and each byte is copied once, from the source.
//!
//! Memory bound: at most `2 * threads + 2` blocks are in flight (a fixed pool of buffers), so
//! with the default 4 MiB blocks on 2 cores (4 workers) the pipeline holds 40 MiB whatever the
//! input size.

use super::backend::{Backend, BlockBatch};
use super::direct::AlignedBuf;
use super::hash::{BlockHash, strip_trailing_zeros};
use super::map::{BlockMap, MAX_RESOURCE_SIZE, MapId};
use crate::error::{Error, Result};
use crate::progress::Progress;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel, sync_channel};
use std::sync::{Arc, Mutex};

/// Where the bytes come from.
pub enum Source {
    /// A regular file: read with positional reads; holes are detected and never read.
    File { file: File, path: PathBuf },
    /// A pipe, terminal or device: read sequentially to end of stream.
    Stream {
        reader: Box<dyn Read + Send>,
        label: String,
    },
}

/// What an ingest stored.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub map: BlockMap,
    pub map_id: MapId,
    /// Blocks that were not yet in the store and were written.
    pub blocks_written: u64,
    /// Stored (stripped) bytes of those blocks.
    pub bytes_written: u64,
    /// All-zero blocks (never stored, never read when they were holes).
    pub zero_blocks: u64,
}

/// Number of hashing threads: every core.
pub fn worker_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Number of threads that read or write blocks: every core plus two, so that while two wait
/// for the device (block writes are direct, they return when the device has the data) the
/// cores still hash.
pub fn io_threads() -> usize {
    worker_threads() + 2
}

/// Blocks in flight for a pipeline with `threads` workers (the memory bound, in blocks).
pub fn pipeline_depth(threads: usize) -> usize {
    2 * threads + 2
}

struct Job {
    index: u64,
    buf: AlignedBuf,
    len: usize,
}

struct Done {
    index: u64,
    hash: BlockHash,
    written: Option<usize>,
}

/// Reads `source` to its end, stores its new blocks and its map, durably.
/// On error nothing becomes visible (the staged batch is discarded).
pub fn ingest(
    backend: &dyn Backend,
    block_size: u32,
    source: Source,
    progress: &dyn Progress,
) -> Result<Ingested> {
    if let Source::File { file, .. } = &source {
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len > MAX_RESOURCE_SIZE {
            return Err(too_large(&source, len));
        }
    }
    let batch = backend.begin_batch()?;
    let threads = io_threads();
    let depth = pipeline_depth(threads);
    let bs = block_size as usize;

    // Page-aligned buffers: a block is written straight from the buffer it was read into.
    let (free_tx, free_rx) = sync_channel::<AlignedBuf>(depth);
    for _ in 0..depth {
        free_tx.send(AlignedBuf::new()).expect("pool channel open");
    }
    let (job_tx, job_rx) = sync_channel::<Job>(depth);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (done_tx, done_rx) = channel::<Result<Done>>();
    let failed = AtomicBool::new(false);

    // Only blocks with data get an entry: memory follows the data, not the size.
    let mut entries: Vec<(u64, BlockHash)> = Vec::new();
    let mut size: u64 = 0;
    let mut read_error: Option<Error> = None;
    let batch_ref: &dyn BlockBatch = batch.as_ref();

    std::thread::scope(|scope| {
        for _ in 0..threads {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            let free_tx = free_tx.clone();
            let failed = &failed;
            scope.spawn(move || worker(job_rx, done_tx, free_tx, batch_ref, failed));
        }
        drop(done_tx);
        let mut reader = BlockReader::new(source, bs);
        let mut index = 0u64;
        loop {
            if failed.load(Ordering::Relaxed) {
                break;
            }
            if let Err(e) = crate::interrupt::check() {
                read_error = Some(e);
                break;
            }
            let mut buf = free_rx.recv().expect("workers return buffers");
            if buf.len() != bs {
                buf.resize(bs);
            }
            match reader.next_block(&mut buf) {
                Ok(None) => break,
                Ok(Some(BlockRead::Hole(len))) => {
                    // A hole spans whole blocks (the last one possibly short).
                    size += len;
                    progress.advance(len);
                    free_tx.send(buf).expect("pool channel open");
                    index += len.div_ceil(bs as u64);
                    if size > MAX_RESOURCE_SIZE {
                        read_error = Some(too_large(&reader.source, size));
                        break;
                    }
                    continue;
                }
                Ok(Some(BlockRead::Data(len))) => {
                    entries.push((index, BlockHash::ZERO)); // filled by the worker's result
                    size += len as u64;
                    progress.advance(len as u64);
                    job_tx
                        .send(Job { index, buf, len })
                        .expect("workers alive while jobs are sent");
                }
                Err(e) => {
                    read_error = Some(e);
                    break;
                }
            }
            if size > MAX_RESOURCE_SIZE {
                read_error = Some(too_large(&reader.source, size));
                break;
            }
            index += 1;
        }
        drop(job_tx);
    });

    if let Some(e) = read_error {
        return Err(e);
    }
    let mut blocks_written = 0;
    let mut bytes_written = 0;
    for done in done_rx.iter() {
        let done = done?;
        // Entries were pushed in index order: find this one by binary search.
        let k = entries
            .binary_search_by_key(&done.index, |e| e.0)
            .expect("every job has an entry");
        entries[k].1 = done.hash;
        if let Some(n) = done.written {
            blocks_written += 1;
            bytes_written += n as u64;
        }
    }
    batch.commit()?;
    let map = BlockMap::from_entries(block_size, size, entries)
        .expect("entries are sorted, inside the size, which is checked against the limit");
    let zero_blocks = map.block_count() - map.data_blocks();
    let map_id = backend.put_map(&map)?;
    Ok(Ingested {
        map,
        map_id,
        blocks_written,
        bytes_written,
        zero_blocks,
    })
}

fn worker(
    jobs: Arc<Mutex<Receiver<Job>>>,
    done: std::sync::mpsc::Sender<Result<Done>>,
    free: std::sync::mpsc::SyncSender<AlignedBuf>,
    batch: &dyn BlockBatch,
    failed: &AtomicBool,
) {
    loop {
        let job = match jobs.lock().unwrap().recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        let stored = strip_trailing_zeros(&job.buf[..job.len]);
        let hash = BlockHash::of_bytes(stored);
        let result = if hash.is_zero() || failed.load(Ordering::Relaxed) {
            Ok(None)
        } else {
            batch
                .stage(&hash, stored)
                .map(|new| new.then_some(stored.len()))
        };
        let msg = result.map(|written| Done {
            index: job.index,
            hash,
            written,
        });
        if msg.is_err() {
            failed.store(true, Ordering::Relaxed);
        }
        let _ = done.send(msg);
        let _ = free.send(job.buf);
    }
}

enum BlockRead {
    /// `len` bytes of data were read into the buffer.
    Data(usize),
    /// The next `len` bytes are a hole in a sparse file: zeros, not read. It covers whole
    /// blocks (the last block of the file may be short).
    Hole(u64),
}

/// Cuts a source into block-sized reads.
struct BlockReader {
    source: Source,
    block_size: usize,
    offset: u64,
    file_size: u64,
    /// Offset of the next data byte at or after `offset`, as SEEK_DATA last told.
    next_data: u64,
}

impl BlockReader {
    fn new(source: Source, block_size: usize) -> BlockReader {
        let file_size = match &source {
            Source::File { file, .. } => file.metadata().map(|m| m.len()).unwrap_or(0),
            Source::Stream { .. } => 0,
        };
        BlockReader {
            source,
            block_size,
            offset: 0,
            file_size,
            next_data: 0,
        }
    }

    fn next_block(&mut self, buf: &mut [u8]) -> Result<Option<BlockRead>> {
        match &mut self.source {
            Source::File { file, path } => {
                if self.offset >= self.file_size {
                    return Ok(None);
                }
                let len = (self.file_size - self.offset).min(self.block_size as u64) as usize;
                let end = self.offset + len as u64;
                if self.next_data < end {
                    self.next_data = seek_data(file, self.offset).unwrap_or(self.offset);
                }
                let start = self.offset;
                if self.next_data >= end {
                    // Skip every whole block before the next data in one step.
                    let bs = self.block_size as u64;
                    let hole_end = (self.next_data / bs)
                        .saturating_mul(bs)
                        .clamp(end, self.file_size);
                    self.offset = hole_end;
                    return Ok(Some(BlockRead::Hole(hole_end - start)));
                }
                self.offset = end;
                file.read_exact_at(&mut buf[..len], start).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::UnexpectedEof {
                        Error::invalid(format!(
                            "{} shrank while it was being read; retry when nothing writes to it",
                            path.display()
                        ))
                    } else {
                        Error::SourceUnreadable {
                            path: path.clone(),
                            source: e,
                        }
                    }
                })?;
                Ok(Some(BlockRead::Data(len)))
            }
            Source::Stream { reader, label } => {
                let mut filled = 0;
                while filled < buf.len() {
                    match reader.read(&mut buf[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        // EINTR: retry, unless it was SIGINT/SIGTERM.
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                            crate::interrupt::check()?
                        }
                        Err(e) => {
                            return Err(Error::SourceUnreadable {
                                path: PathBuf::from(label.as_str()),
                                source: e,
                            });
                        }
                    }
                }
                self.offset += filled as u64;
                Ok((filled > 0).then_some(BlockRead::Data(filled)))
            }
        }
    }
}

/// The error for a source past [`MAX_RESOURCE_SIZE`].
fn too_large(source: &Source, size: u64) -> Error {
    let name = match source {
        Source::File { path, .. } => path.display().to_string(),
        Source::Stream { label, .. } => label.clone(),
    };
    Error::invalid(format!(
        "{name} is larger than the largest resource arch stores ({MAX_RESOURCE_SIZE} bytes, \
         64 TiB; it has at least {size} bytes); split it or store a smaller file"
    ))
}

/// The offset of the first data byte at or after `offset` (Linux SEEK_DATA); `u64::MAX` when
/// only a hole follows. None when the filesystem cannot tell (then everything is read).
pub fn seek_data(file: &File, offset: u64) -> Option<u64> {
    // SAFETY: lseek on a valid descriptor; the file position is unused (reads are positional).
    let r = unsafe { libc::lseek(file.as_raw_fd(), offset as libc::off_t, libc::SEEK_DATA) };
    if r >= 0 {
        return Some(r as u64);
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::ENXIO) => Some(u64::MAX),
        _ => None,
    }
}
