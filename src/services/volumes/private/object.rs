//! Private blocks as objects `PREFIX/volumes/<id>/<epoch>/<index>` of an object store (S3,
//! Ceph RGW, ...) through `object_store`, called from sync code on a tokio runtime handle.
//!
//! An object holds its block with trailing zeros stripped (as the block store does): an
//! all-zero private block is an empty object, and a read past the stored length reads zeros.
//! A block is written by one PUT of the whole block, which S3 makes visible atomically, so a
//! creation is atomic and durable when it returns; an in-place write is a read-modify-write
//! of one block (GET, patch, PUT): see docs/VOLUMES.md for its cost and the write-back cache
//! that `arch serve` and `volume write` put in front of it ([`super::writeback`]).
//!
//! The listing of an epoch is read once (first use) and then kept up to date by this handle's
//! own writes: the volume's lock keeps other writers away while it is open.

use super::{PrivateEpoch, PrivateStore};
use crate::error::{Error, Result};
use crate::services::volumes::blockio::parse_block_index;
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::runtime::Handle;

/// Bytes and requests an object epoch moved (for measurements and tests).
#[derive(Debug, Default)]
pub struct Traffic {
    pub gets: AtomicU64,
    pub bytes_got: AtomicU64,
    pub puts: AtomicU64,
    pub bytes_put: AtomicU64,
    pub deletes: AtomicU64,
}

impl Traffic {
    fn got(&self, n: usize) {
        self.gets.fetch_add(1, Ordering::Relaxed);
        self.bytes_got.fetch_add(n as u64, Ordering::Relaxed);
    }
    fn put(&self, n: usize) {
        self.puts.fetch_add(1, Ordering::Relaxed);
        self.bytes_put.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// The private blocks of every volume, in an object store under `prefix`.
pub struct ObjectPrivate {
    store: Arc<dyn ObjectStore>,
    prefix: Key,
    runtime: Handle,
    /// The store as users name it (`s3://BUCKET[/PREFIX]`), for messages.
    url: String,
    traffic: Arc<Traffic>,
}

impl ObjectPrivate {
    pub fn new(store: Arc<dyn ObjectStore>, prefix: Key, runtime: Handle, url: &str) -> Self {
        ObjectPrivate {
            store,
            prefix,
            runtime,
            url: url.trim_end_matches('/').to_string(),
            traffic: Arc::default(),
        }
    }

    /// What this store's epochs moved so far.
    pub fn traffic(&self) -> Arc<Traffic> {
        self.traffic.clone()
    }

    /// `PREFIX/volumes/<id>`, refused unless `id` is a uuid (no id from a damaged catalog
    /// can name another key).
    fn volume_key(&self, id: &str) -> Result<Key> {
        if !crate::repo::records::is_uuid(id) {
            return Err(Error::Corrupt {
                path: PathBuf::from(&self.url),
                reason: format!(
                    "volume id '{}' is not a uuid",
                    crate::services::names::escape_control(id)
                ),
            });
        }
        Ok(self.prefix.clone().join("volumes").join(id))
    }

    fn remote(&self) -> Remote {
        Remote {
            store: self.store.clone(),
            runtime: self.runtime.clone(),
            url: self.url.clone(),
        }
    }

    /// Removes every object under `key`; returns how many there were.
    fn remove_under(&self, key: &Key) -> Result<u64> {
        let r = self.remote();
        let keys: Vec<Key> = r.list(key)?.into_iter().map(|m| m.location).collect();
        let count = keys.len() as u64;
        let store = self.store.clone();
        r.block_on(key, async move {
            let stream = futures_util::stream::iter(keys.into_iter().map(Ok)).boxed();
            store
                .delete_stream(stream)
                .try_collect::<Vec<_>>()
                .await
                .map(|_| ())
        })?;
        Ok(count)
    }
}

impl PrivateStore for ObjectPrivate {
    fn open_epoch(
        &self,
        id: &str,
        epoch: u64,
        block_size: u64,
        resource: &str,
    ) -> Result<Box<dyn PrivateEpoch>> {
        Ok(Box::new(ObjectEpoch {
            remote: self.remote(),
            dir: self.volume_key(id)?.join(epoch.to_string()),
            block_size,
            resource: resource.to_string(),
            listed: Mutex::new(None),
            traffic: self.traffic.clone(),
        }))
    }

    fn remove_epoch(&self, id: &str, epoch: u64) -> Result<u64> {
        self.remove_under(&self.volume_key(id)?.join(epoch.to_string()))
    }

    fn remove_volume(&self, id: &str) -> Result<u64> {
        self.remove_under(&self.volume_key(id)?)
    }

    fn has_volume(&self, id: &str) -> Result<bool> {
        let key = self.volume_key(id)?;
        let store = self.store.clone();
        let k = key.clone();
        self.remote().block_on(&key, async move {
            let first = store.list(Some(&k)).next().await;
            first.transpose().map(|m| m.is_some())
        })
    }

    fn is_remote(&self) -> bool {
        true
    }
}

/// A store, its runtime and its name: runs one request to completion from sync code.
#[derive(Clone)]
struct Remote {
    store: Arc<dyn ObjectStore>,
    runtime: Handle,
    url: String,
}

impl Remote {
    fn block_on<T>(
        &self,
        key: &Key,
        f: impl std::future::Future<Output = object_store::Result<T>>,
    ) -> Result<T> {
        self.runtime.block_on(f).map_err(|e| self.error(key, e))
    }

    fn error(&self, key: &Key, e: object_store::Error) -> Error {
        Error::Remote {
            what: format!("{}/{key}", self.url),
            reason: e.to_string(),
        }
    }

    fn list(&self, key: &Key) -> Result<Vec<object_store::ObjectMeta>> {
        let store = self.store.clone();
        let k = key.clone();
        self.block_on(key, async move { store.list(Some(&k)).try_collect().await })
    }
}

/// One epoch of one volume: objects `…/volumes/<id>/<epoch>/<index>`.
pub struct ObjectEpoch {
    remote: Remote,
    dir: Key,
    block_size: u64,
    resource: String,
    /// Stored length of each private block, by index; listed at first use.
    listed: Mutex<Option<BTreeMap<u64, u64>>>,
    traffic: Arc<Traffic>,
}

impl ObjectEpoch {
    fn key(&self, index: u64) -> Key {
        self.dir.clone().join(index.to_string())
    }

    /// Runs `f` on the listing (read from the store the first time).
    fn with_listing<T>(&self, f: impl FnOnce(&mut BTreeMap<u64, u64>) -> T) -> Result<T> {
        let mut listed = self.listed.lock().unwrap_or_else(|e| e.into_inner());
        if listed.is_none() {
            let depth = self.dir.parts().count() + 1;
            let mut found = BTreeMap::new();
            for meta in self.remote.list(&self.dir)? {
                // Only direct children with canonical names are blocks; anything else under
                // the epoch is garbage no read consults.
                if meta.location.parts().count() != depth {
                    continue;
                }
                if let Some(i) = meta.location.filename().and_then(parse_block_index) {
                    found.insert(i, meta.size);
                }
            }
            *listed = Some(found);
        }
        Ok(f(listed.as_mut().expect("listed above")))
    }

    /// Stored length of private block `index` (which must exist).
    fn stored_len(&self, index: u64) -> Result<u64> {
        let len = self
            .with_listing(|l| l.get(&index).copied())?
            .ok_or_else(|| Error::Corrupt {
                path: self.location(index),
                reason: format!("private block {index} of {} is gone", self.resource),
            })?;
        if len > self.block_size {
            return Err(Error::Corrupt {
                path: self.location(index),
                reason: format!(
                    "private block {index} of {} is {len} bytes, longer than a block of {}",
                    self.resource, self.block_size
                ),
            });
        }
        Ok(len)
    }

    /// The stored bytes of block `index` (trailing zeros stripped).
    fn get(&self, index: u64, range: std::ops::Range<u64>) -> Result<Vec<u8>> {
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let key = self.key(index);
        let store = self.remote.store.clone();
        let k = key.clone();
        let bytes = self
            .remote
            .block_on(&key, async move { store.get_range(&k, range).await })?;
        self.traffic.got(bytes.len());
        Ok(bytes.to_vec())
    }

    /// Stores `block` (any length up to a block; trailing zeros are stripped) as block
    /// `index`: one PUT.
    fn put(&self, index: u64, block: Vec<u8>) -> Result<()> {
        let mut block = block;
        let kept = crate::storage::hash::strip_trailing_zeros(&block).len();
        block.truncate(kept);
        let key = self.key(index);
        let store = self.remote.store.clone();
        let k = key.clone();
        let len = block.len();
        self.remote.block_on(&key, async move {
            store.put(&k, PutPayload::from(block)).await.map(|_| ())
        })?;
        self.traffic.put(len);
        self.with_listing(|l| l.insert(index, len as u64))?;
        Ok(())
    }
}

impl PrivateEpoch for ObjectEpoch {
    fn contains(&self, index: u64) -> Result<bool> {
        self.with_listing(|l| l.contains_key(&index))
    }

    fn read_at(&self, index: u64, offset: u64, buf: &mut [u8]) -> Result<()> {
        let len = self.stored_len(index)?;
        buf.fill(0);
        let end = (offset + buf.len() as u64).min(len);
        if offset < end {
            let got = self.get(index, offset..end)?;
            if got.len() as u64 != end - offset {
                return Err(Error::Corrupt {
                    path: self.location(index),
                    reason: format!(
                        "private block {index} of {} changed length while being read",
                        self.resource
                    ),
                });
            }
            buf[..got.len()].copy_from_slice(&got);
        }
        Ok(())
    }

    fn create(&self, index: u64, within: u64, data: &[u8]) -> Result<()> {
        let mut block = vec![0u8; within as usize];
        block.extend_from_slice(data);
        self.put(index, block)
    }

    fn write_in_place(&self, index: u64, offset: u64, data: &[u8]) -> Result<()> {
        // Read-modify-write of the whole block: S3 objects cannot be written in part.
        let len = self.stored_len(index)?;
        let mut block = self.get(index, 0..len)?;
        let end = offset as usize + data.len();
        if block.len() < end {
            block.resize(end, 0);
        }
        block[offset as usize..end].copy_from_slice(data);
        self.put(index, block)
    }

    fn remove(&self, index: u64) -> Result<()> {
        if !self.contains(index)? {
            return Ok(());
        }
        let key = self.key(index);
        let store = self.remote.store.clone();
        let k = key.clone();
        self.remote.block_on(&key, async move {
            match store.delete(&k).await {
                Err(object_store::Error::NotFound { .. }) => Ok(()),
                other => other,
            }
        })?;
        self.traffic.deletes.fetch_add(1, Ordering::Relaxed);
        self.with_listing(|l| l.remove(&index))?;
        Ok(())
    }

    fn indexes(&self) -> Result<BTreeSet<u64>> {
        self.with_listing(|l| l.keys().copied().collect())
    }

    fn is_hole(&self, index: u64) -> Result<bool> {
        Ok(self.stored_len(index)? == 0)
    }

    fn flush(&self) -> Result<()> {
        // Every PUT and DELETE was acknowledged by the store before it returned.
        Ok(())
    }

    fn location(&self, index: u64) -> PathBuf {
        PathBuf::from(format!("{}/{}", self.remote.url, self.key(index)))
    }
}
