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

/// Where the private objects are under the repository prefix.
pub const VOLUMES: &str = "volumes";

/// One object under `PREFIX/volumes/`, as [`ObjectPrivate::for_each_object`] lists it.
#[derive(Debug, Clone)]
pub struct ListedObject {
    pub key: Key,
    /// Its key's segments below `PREFIX/volumes/` (`[<id>, <epoch>, <index>]` for a private
    /// block; anything else is not one).
    pub parts: Vec<String>,
    /// Stored length in bytes.
    pub size: u64,
    /// `s3://BUCKET/KEY`, for messages.
    pub location: PathBuf,
}

/// The private blocks of every volume, in an object store under `prefix`.
pub struct ObjectPrivate {
    store: Arc<dyn ObjectStore>,
    prefix: Key,
    runtime: Handle,
    /// The store as users name it (`s3://BUCKET[/PREFIX]`), for messages.
    url: String,
    /// `s3://BUCKET`: an object's URL is this, `/`, its key (which starts with the prefix).
    bucket_url: String,
    /// The endpoint requests go to, for messages (never credentials).
    endpoint: Option<String>,
    traffic: Arc<Traffic>,
}

impl ObjectPrivate {
    pub fn new(store: Arc<dyn ObjectStore>, prefix: Key, runtime: Handle, url: &str) -> Self {
        let url = url.trim_end_matches('/').to_string();
        let bucket_url = match prefix.as_ref() {
            "" => url.clone(),
            p => url
                .strip_suffix(&format!("/{p}"))
                .unwrap_or(&url)
                .to_string(),
        };
        ObjectPrivate {
            store,
            prefix,
            runtime,
            url,
            bucket_url,
            endpoint: None,
            traffic: Arc::default(),
        }
    }

    /// Names `endpoint` (e.g. `http://rgw:7480`) in the errors of requests.
    pub fn with_endpoint(mut self, endpoint: &str) -> Self {
        self.endpoint = Some(endpoint.to_string());
        self
    }

    /// The store as users name it, `s3://BUCKET[/PREFIX]`.
    pub fn url(&self) -> &str {
        &self.url
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
        Ok(self.prefix.clone().join(VOLUMES).join(id))
    }

    fn remote(&self) -> Remote {
        Remote {
            store: self.store.clone(),
            runtime: self.runtime.clone(),
            url: self.bucket_url.clone(),
            endpoint: self.endpoint.clone(),
        }
    }

    /// Streams every object under `PREFIX/volumes/` to `f`, in key order, as the store lists
    /// them: S3 answers a listing in pages of at most 1000 keys and only the page being
    /// handed out is held, never the whole listing. `f` runs outside the store's runtime, so
    /// it may call this store (e.g. [`ObjectPrivate::delete_objects`] while the listing goes
    /// on: S3 listings resume after the last key returned, so deleting keys already listed
    /// does not disturb them).
    pub fn for_each_object(&self, f: &mut dyn FnMut(ListedObject) -> Result<()>) -> Result<()> {
        let dir = self.prefix.clone().join(VOLUMES);
        let depth = self.prefix.parts().count() + 1;
        let mut listing = self.store.list(Some(&dir));
        let r = self.remote();
        while let Some(meta) = r.block_on(&dir, async { listing.next().await.transpose() })? {
            let parts: Vec<String> = meta
                .location
                .parts()
                .skip(depth)
                .map(|p| p.as_ref().to_string())
                .collect();
            f(ListedObject {
                location: PathBuf::from(format!("{}/{}", self.bucket_url, meta.location)),
                key: meta.location,
                parts,
                size: meta.size,
            })?;
        }
        Ok(())
    }

    /// Deletes the objects `keys` (bulk DeleteObjects requests of up to 1000 keys); keys
    /// already gone are fine.
    pub fn delete_objects(&self, keys: Vec<Key>) -> Result<()> {
        let Some(first) = keys.first().cloned() else {
            return Ok(());
        };
        let count = keys.len() as u64;
        let store = self.store.clone();
        self.remote().block_on(&first, async move {
            let stream = futures_util::stream::iter(keys.into_iter().map(Ok)).boxed();
            let mut results = store.delete_stream(stream);
            while let Some(r) = results.next().await {
                match r {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })?;
        self.traffic.deletes.fetch_add(count, Ordering::Relaxed);
        Ok(())
    }

    /// Removes every object under `key`; returns how many there were.
    fn remove_under(&self, key: &Key) -> Result<u64> {
        let keys: Vec<Key> = self
            .remote()
            .list(key)?
            .into_iter()
            .map(|m| m.location)
            .collect();
        let count = keys.len() as u64;
        self.delete_objects(keys)?;
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
    /// `s3://BUCKET`, to which an object's key is appended in messages.
    url: String,
    endpoint: Option<String>,
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
        let at = match &self.endpoint {
            Some(ep) => format!(" (endpoint {ep})"),
            None => String::new(),
        };
        Error::Remote {
            what: format!("{}/{key}{at}", self.url),
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
