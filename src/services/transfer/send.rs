//! `send`: writes named resources as a self-contained stream (see `crate::stream`), holding
//! only the blocks the receiver is not known to have: those of no `--base` resource (send),
//! or those the destination lacks when asked (copy).
//!
//! Consistency: the shared data lock is held throughout (gc cannot remove a block being
//! sent) and each volume is read under its shared lock (no writer changes it meanwhile).

use super::wire::WireResource;
use super::{Target, load_content, private_hashes, refuse_creating, resolve_target};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::services::volumes;
use crate::storage::mapped::{BlockMapping, Mapped};
use crate::storage::{Backend, BlockHash, BlockMap, MapId};
use crate::stream::{Sink, StreamWriter};
use serde::Serialize;
use std::collections::HashSet;

/// What the receiver already has: blocks and maps that need not be sent.
pub trait Known {
    /// True when the receiver has block `hash`.
    fn has_block(&self, hash: &BlockHash) -> Result<bool>;
    /// True when the receiver has map `id`.
    fn has_map(&self, id: &MapId) -> Result<bool>;
}

/// The blocks and maps of the `--base` resources.
#[derive(Default)]
pub struct Bases {
    blocks: HashSet<BlockHash>,
    maps: HashSet<MapId>,
}

impl Known for Bases {
    fn has_block(&self, hash: &BlockHash) -> Result<bool> {
        Ok(self.blocks.contains(hash))
    }
    fn has_map(&self, id: &MapId) -> Result<bool> {
        Ok(self.maps.contains(id))
    }
}

impl Bases {
    /// The blocks and maps of every resource in `specs` (names as [`resolve_target`] takes).
    pub fn of(repo: &Repository, specs: &[String]) -> Result<Bases> {
        let mut out = Bases::default();
        let cat = repo.catalog()?;
        for spec in specs {
            let target = resolve_target(&cat, spec)?;
            let content = load_content(repo, &target)?;
            out.maps.insert(content.map.id());
            out.blocks.extend(content.hashes());
        }
        Ok(out)
    }
}

/// One resource sent.
#[derive(Debug, Clone, Serialize)]
pub struct SentResource {
    /// volume | object | image | snapshot.
    pub kind: String,
    pub name: String,
    pub bytes: u64,
}

/// What a send wrote.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SendReport {
    pub resources: Vec<SentResource>,
    /// Distinct blocks written into the stream.
    pub blocks_sent: u64,
    /// Distinct blocks left out because the receiver has them.
    pub blocks_skipped: u64,
    /// Bytes of block data in the stream (stored form: trailing zeros stripped).
    pub bytes_sent: u64,
    pub maps_sent: u64,
    /// Length of the whole stream.
    pub stream_bytes: u64,
}

/// Writes a stream of the resources named by `specs` to `out`, leaving out what `known`
/// says the receiver has. Returns the report and `out`.
pub fn send<W: Sink>(
    repo: &Repository,
    specs: &[String],
    known: &dyn Known,
    out: W,
    progress: &dyn Progress,
) -> Result<(SendReport, W)> {
    if specs.is_empty() {
        return Err(Error::invalid("name at least one resource to send"));
    }
    let _data = repo.lock_data_shared()?;
    let cat = repo.catalog()?;
    let mut targets = Vec::new();
    let mut seen = HashSet::new();
    for spec in specs {
        let t = resolve_target(&cat, spec)?;
        let name = match &t {
            Target::Volume { name, record } => {
                refuse_creating(name, record)?;
                // A served volume changes under the sender: its snapshot is what to send.
                if let Some(server) = volumes::served::server_of(repo, &record.id)? {
                    return Err(Error::Served {
                        name: name.clone(),
                        server: server.describe(),
                        fix: format!(
                            "send a snapshot of it instead (`arch snapshot {name} NAME`, then                              `arch send snapshots/NAME`), or stop the server first"
                        ),
                    });
                }
                name.clone()
            }
            Target::Object { name, .. } => name.clone(),
        };
        if !seen.insert(name.clone()) {
            return Err(Error::invalid(format!(
                "'{spec}' names {name}, which is already in the list; name each resource once"
            )));
        }
        targets.push(t);
    }
    drop(cat);
    let mut s = Sender {
        backend: repo.backend(),
        known,
        sent: HashSet::new(),
        skipped: HashSet::new(),
        maps: HashSet::new(),
        report: SendReport::default(),
        out: StreamWriter::new(out, repo.block_size())?,
        buf: Vec::new(),
        progress,
    };
    let mut total = 0;
    for t in &targets {
        total += match t {
            Target::Object { record, .. } => record.bytes,
            Target::Volume { record, .. } => record.size,
        };
    }
    progress.set_total(total);
    for t in &targets {
        s.target(repo, t)?;
    }
    let Sender {
        mut report, out, ..
    } = s;
    let (w, bytes) = out.finish()?;
    progress.finish();
    report.stream_bytes = bytes;
    Ok((report, w))
}

/// Blocks read and verified ahead of the one being written.
const READ_AHEAD: usize = 4;

/// A block read for sending: mapped from its file, or read into a buffer (its first `len`
/// bytes) when the backend cannot map it.
enum Bytes {
    Mapped(Mapped),
    Buf(Vec<u8>, usize),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Buf(b, len) => &b[..*len],
        }
    }
}

/// Reads block `hash` (at `offset` of `resource`), mapped when the backend can (no copy),
/// else into `buf` (grown to the block size once, then reused), and checks it against its
/// hash and the block size.
fn read_verified(
    backend: &dyn Backend,
    hash: &BlockHash,
    offset: u64,
    bs: usize,
    resource: &str,
    mut buf: Vec<u8>,
) -> Result<Bytes> {
    let missing = || Error::MissingBlock {
        hash: hash.to_hex(),
        offset,
        resource: resource.to_string(),
    };
    let corrupt = || Error::CorruptBlock {
        hash: hash.to_hex(),
        offset,
        resource: resource.to_string(),
    };
    let bytes = match backend.map_block(hash, bs)? {
        BlockMapping::Mapped(m) => Bytes::Mapped(m),
        BlockMapping::Missing => return Err(missing()),
        BlockMapping::TooLong(_) => return Err(corrupt()),
        BlockMapping::Unsupported => {
            if buf.len() != bs {
                buf.resize(bs, 0);
            }
            let len = backend
                .read_block_into(hash, &mut buf)?
                .ok_or_else(missing)?;
            if len > bs {
                return Err(corrupt());
            }
            Bytes::Buf(buf, len)
        }
    };
    if BlockHash::of_bytes(&bytes) != *hash {
        return Err(corrupt());
    }
    Ok(bytes)
}

struct Sender<'a, W: Sink> {
    backend: &'a dyn Backend,
    known: &'a dyn Known,
    sent: HashSet<BlockHash>,
    skipped: HashSet<BlockHash>,
    maps: HashSet<MapId>,
    report: SendReport,
    out: StreamWriter<W>,
    buf: Vec<u8>,
    progress: &'a dyn Progress,
}

impl<W: Sink> Sender<'_, W> {
    fn target(&mut self, repo: &Repository, t: &Target) -> Result<()> {
        let (resource, bytes) = match t {
            Target::Object { name, record, .. } => {
                let content = load_content(repo, t)?;
                self.map_blocks(&content.map, name)?;
                self.map(&content.map)?;
                let r = WireResource::Object {
                    name: name.clone(),
                    record: record.clone(),
                };
                (r, record.bytes)
            }
            Target::Volume { name, .. } => {
                // Read under the volume's shared lock: no writer changes it meanwhile.
                let vol = volumes::open(repo, name, false)?;
                let private = private_hashes(&vol)?;
                let bs = vol.record.block_size as u64;
                for (&index, hash) in &private {
                    crate::interrupt::check()?;
                    self.progress.advance(bs);
                    if hash.is_zero() || !self.wanted(hash)? {
                        continue;
                    }
                    vol.blocks.read_private(index, &mut self.buf)?;
                    let len = (vol.record.size - index * bs).min(bs) as usize;
                    let stored = crate::storage::hash::strip_trailing_zeros(&self.buf[..len]);
                    if BlockHash::of_bytes(stored) != *hash {
                        return Err(Error::Busy {
                            resource: format!("volume '{name}' (changed while being sent)"),
                        });
                    }
                    self.out.block(hash, stored)?;
                    self.report.bytes_sent += stored.len() as u64;
                }
                // Every block of the base map, even those private blocks hide: the receiver
                // keeps the map, and every block a kept map names must be present.
                let base = vol.blocks.base().clone();
                self.map_blocks(&base, name)?;
                self.map(&base)?;
                let mut record = vol.record.clone();
                record.creation = None;
                let r = WireResource::Volume {
                    name: name.clone(),
                    record,
                    private: private.into_iter().collect(),
                };
                (r, vol.record.size)
            }
        };
        let kind = resource.kind().to_string();
        let json = serde_json::to_vec(&resource).expect("records serialize");
        self.out.resource(&json)?;
        self.report.resources.push(SentResource {
            kind,
            name: t.label(),
            bytes,
        });
        Ok(())
    }

    /// True when block `hash` must go into the stream now (not sent yet, not known to the
    /// receiver); counts it either way.
    fn wanted(&mut self, hash: &BlockHash) -> Result<bool> {
        if self.sent.contains(hash) || self.skipped.contains(hash) {
            return Ok(false);
        }
        if self.known.has_block(hash)? {
            self.skipped.insert(*hash);
            self.report.blocks_skipped += 1;
            return Ok(false);
        }
        self.sent.insert(*hash);
        self.report.blocks_sent += 1;
        Ok(true)
    }

    /// Sends the blocks of `map` the receiver lacks, each verified against its hash as it
    /// is read (mapped from its file: hashed and written out without a copy into a buffer;
    /// the shared data lock, held, keeps gc away). A read-ahead thread reads and verifies the next [`READ_AHEAD`] blocks while
    /// this one writes the stream, so reading, hashing and writing overlap.
    fn map_blocks(&mut self, map: &BlockMap, resource: &str) -> Result<()> {
        let bs = map.block_size() as u64;
        let mut todo = Vec::new();
        for &(index, hash) in map.entries() {
            crate::interrupt::check()?;
            if self.wanted(&hash)? {
                todo.push((index, hash));
            } else {
                self.progress.advance(bs);
            }
        }
        let backend = self.backend;
        let todo = &todo;
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel(READ_AHEAD);
            // Buffers the writer is done with go back to the reader: at most READ_AHEAD + 2
            // blocks of memory, allocated once.
            let (spent_tx, spent_rx) = std::sync::mpsc::channel::<Vec<u8>>();
            scope.spawn(move || {
                for &(index, hash) in todo {
                    let buf = spent_rx.try_recv().unwrap_or_default();
                    let read =
                        read_verified(backend, &hash, index * bs, bs as usize, resource, buf);
                    let failed = read.is_err();
                    // The writer stopped (its error is the one reported) or this read failed.
                    if tx.send(read).is_err() || failed {
                        return;
                    }
                }
            });
            // Dropping `rx` on an early return stops the reader at its next block.
            for (_, hash) in todo {
                crate::interrupt::check()?;
                let bytes = rx
                    .recv()
                    .expect("the reader sends every block or an error")?;
                match &bytes {
                    // A sealed block file's pages: handed to a pipe as they are.
                    Bytes::Mapped(m) => self.out.block_stable(hash, m)?,
                    Bytes::Buf(..) => self.out.block(hash, &bytes)?,
                }
                self.report.bytes_sent += bytes.len() as u64;
                if let Bytes::Buf(buf, _) = bytes {
                    let _ = spent_tx.send(buf);
                }
                self.progress.advance(bs);
            }
            Ok(())
        })
    }

    /// Sends `map` unless the receiver has it or it is in the stream already.
    fn map(&mut self, map: &BlockMap) -> Result<()> {
        let id = map.id();
        if self.maps.insert(id) && !self.known.has_map(&id)? {
            self.out.map(map)?;
            self.report.maps_sent += 1;
        }
        Ok(())
    }
}
