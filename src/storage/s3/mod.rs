//! The object-store backend: blocks and maps as objects `PREFIX/blocks/<hex>` and
//! `PREFIX/maps/<hex>` in an S3-compatible bucket (Ceph RGW, MinIO, AWS S3...), through the
//! `object_store` crate, plus the repository marker `PREFIX/arch-repository.toml`.
//!
//! The rest of arch is synchronous: this backend owns a small tokio runtime and blocks on it
//! at the trait edge. Requests are retried with backoff by object_store ([`connect`]), then
//! reported as [`Error::Store`] naming the store, the endpoint and a fix.
//!
//! Invariants: objects are created with `PutMode::Create` (If-None-Match: *), never
//! overwritten; a failed or refused create is never taken as success until a read-back
//! (HEAD) shows the object with the expected length (Ceph answers 500 to some losers of a
//! race); a block is visible only once its PUT succeeded, which S3 acknowledges only when
//! the object is durable. Blocks are written in one PUT each (at most 64 MiB), never as a
//! multipart upload (a completed multipart upload ignores If-None-Match on Ceph).

mod batch;
mod profile;
#[cfg(test)]
mod tests;
pub mod url;

use super::backend::{Backend, BlockBatch};
use super::hash::BlockHash;
use super::map::{BlockMap, MapId};
use crate::error::{Error, Result};
use futures_util::StreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as StorePath;
use object_store::{
    BackoffConfig, ClientConfigKey, ObjectStore, ObjectStoreExt, PutMode, PutPayload, RetryConfig,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
pub use url::StoreUrl;

/// The repository marker object under the prefix: its presence makes the prefix a repository.
pub const MARKER: &str = "arch-repository.toml";
/// Object-name prefixes under the repository prefix.
pub const BLOCKS: &str = "blocks";
pub const MAPS: &str = "maps";
pub const QUARANTINE: &str = "quarantine";

/// Blocks a reader of a resource (get, export) fetches at once from an object store. Each
/// GET waits a network round trip and the store's own latency, not a core: with one reader
/// per core a 2 MiB get in 4 KiB blocks waited for 512 GETs two at a time (11.5 s on the test
/// RGW under load, 3.0 s with 8). Eight bounds the memory of a reader pipeline at 2 * 8 + 2
/// blocks (72 MiB with 4 MiB blocks).
pub const CONCURRENT_REQUESTS: usize = 8;

/// How many threads read blocks of `backend` at once for one resource: at least
/// [`CONCURRENT_REQUESTS`] on an object store, `local` (a count fitting the local disk and
/// cores) otherwise.
pub fn pipeline_threads(backend: &dyn crate::storage::backend::Backend, local: usize) -> usize {
    if backend.as_s3().is_some() {
        CONCURRENT_REQUESTS.max(local)
    } else {
        local
    }
}

/// Request counters of one process (see [`S3Backend::stats`]).
#[derive(Debug, Default)]
pub struct Stats {
    pub puts: AtomicU64,
    pub put_bytes: AtomicU64,
    pub gets: AtomicU64,
    pub get_bytes: AtomicU64,
    pub heads: AtomicU64,
    pub lists: AtomicU64,
    pub deletes: AtomicU64,
}

/// What the backend shares with its batches' upload tasks.
pub(crate) struct Shared {
    store: Arc<dyn ObjectStore>,
    url: StoreUrl,
    endpoint: String,
    stats: Stats,
}

/// Blocks and maps in an S3 bucket. See the module documentation.
pub struct S3Backend {
    shared: Arc<Shared>,
    prefix: StorePath,
    /// Counts the bytes of the objects listed by [`Backend::for_each_block`] (a progress bar
    /// for long listings; see [`S3Backend::set_listing_progress`]).
    listing_progress: std::sync::Mutex<Option<Box<dyn crate::progress::Progress + Send>>>,
    // Declared last: dropped after everything that may hold tasks on it.
    runtime: Arc<tokio::runtime::Runtime>,
}

/// Connects to the store named by `url` (`s3://BUCKET[/PREFIX]`) with the credentials and
/// settings of the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
/// AWS_REGION, AWS_ENDPOINT_URL, AWS_ALLOW_HTTP...) and, for what it lacks, of ~/.aws (see
/// [`profile`]). Requests are retried with exponential backoff (5 retries, at most 60 s per
/// request); connections time out after 5 s. Sends no request.
pub fn connect(url: &str) -> Result<S3Backend> {
    S3Backend::connect(&StoreUrl::parse(url)?)
}

fn env_var(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

/// How often a wait on the store looks at the signal flag.
const SIGNAL_POLL: Duration = Duration::from_millis(20);

/// Blocks on `f` while watching for SIGINT/SIGTERM ([`crate::interrupt`]): a signal received
/// before or during the wait drops `f` and returns [`Error::Interrupted`].
///
/// Why: the rest of arch stops at its next `interrupt::check()`, but a thread waiting here for
/// a store that does not answer (a stalled or overloaded radosgw) would otherwise wait for
/// the request timeout and every retry after it, minutes, with the signal already received
/// and the command's other threads waiting for this one. A dropped request is harmless: an
/// upload left half-way is never named by the catalog, and reads change nothing.
pub(crate) fn interruptible<T>(
    runtime: &tokio::runtime::Runtime,
    f: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    crate::interrupt::check()?;
    runtime.block_on(async {
        let watch = async {
            loop {
                if let Some(signal) = crate::interrupt::received() {
                    return signal;
                }
                tokio::time::sleep(SIGNAL_POLL).await;
            }
        };
        match futures_util::future::select(std::pin::pin!(f), std::pin::pin!(watch)).await {
            futures_util::future::Either::Left((out, _)) => out,
            futures_util::future::Either::Right((signal, _)) => Err(Error::Interrupted {
                signal: crate::interrupt::signal_name(signal),
            }),
        }
    })
}

impl S3Backend {
    /// See [`connect`].
    pub fn connect(url: &StoreUrl) -> Result<S3Backend> {
        let from_files = profile::settings(&env_var);
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&url.bucket);
        let mut endpoint = env_var("AWS_ENDPOINT_URL").or_else(|| env_var("AWS_ENDPOINT"));
        for (var, value) in from_files {
            if var == "AWS_ENDPOINT_URL" {
                endpoint = Some(value.clone());
            }
            let key: AmazonS3ConfigKey = var
                .to_ascii_lowercase()
                .parse()
                .expect("object_store knows the AWS_* keys profile reads");
            builder = builder.with_config(key, value);
        }
        if env_var("AWS_REGION").is_none()
            && let Some(r) = env_var("AWS_DEFAULT_REGION")
        {
            builder = builder.with_region(r);
        }
        let store = builder
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(5),
                    base: 2.0,
                },
                max_retries: 5,
                retry_timeout: Duration::from_secs(60),
            })
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
                "5s",
            )
            .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::Timeout), "120s")
            .build()
            .map_err(|e| Error::Store {
                store: url.to_string(),
                what: format!("cannot configure the S3 client: {e}"),
                fix: "check AWS_ENDPOINT_URL, AWS_REGION and AWS_ALLOW_HTTP (true for an http:// endpoint)".into(),
            })?;
        S3Backend::over(
            Arc::new(store),
            url,
            endpoint.unwrap_or_else(|| "AWS S3".into()),
        )
    }

    /// A backend over any object store (tests use object_store's in-memory one).
    pub fn over(
        store: Arc<dyn ObjectStore>,
        url: &StoreUrl,
        endpoint: String,
    ) -> Result<S3Backend> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("arch-s3")
            .enable_all()
            .build()
            .map_err(|e| Error::io("start the S3 client runtime", "", e))?;
        let prefix = StorePath::from(url.prefix.as_str());
        Ok(S3Backend {
            shared: Arc::new(Shared {
                store,
                url: url.clone(),
                endpoint,
                stats: Stats::default(),
            }),
            prefix,
            listing_progress: std::sync::Mutex::new(None),
            runtime: Arc::new(runtime),
        })
    }

    /// The object store (for the volume-object backend).
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.shared.store.clone()
    }

    /// The repository prefix in the bucket (empty: the bucket's root).
    pub fn prefix(&self) -> &StorePath {
        &self.prefix
    }

    /// The runtime the store's futures run on.
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }

    /// Reports the listings of blocks to `progress` (bytes listed) from now on.
    pub fn set_listing_progress(&self, progress: Box<dyn crate::progress::Progress + Send>) {
        *self.listing_progress.lock().unwrap() = Some(progress);
    }

    /// The store URL, `s3://BUCKET[/PREFIX]`.
    pub fn url(&self) -> &StoreUrl {
        &self.shared.url
    }

    /// The endpoint requests go to (AWS_ENDPOINT_URL or `AWS S3`): no credentials.
    pub fn endpoint(&self) -> &str {
        &self.shared.endpoint
    }

    /// Requests sent so far by this process.
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    fn key(&self, kind: &str, hash: &BlockHash) -> StorePath {
        self.prefix.clone().join(kind).join(hash.to_hex())
    }

    /// `PREFIX/<rel>`, `rel` split at `/` into path segments.
    fn rel_key(&self, rel: &str) -> StorePath {
        rel.split('/')
            .fold(self.prefix.clone(), |p, seg| p.join(seg))
    }

    fn marker_key(&self) -> StorePath {
        self.prefix.clone().join(MARKER)
    }

    /// `s3://BUCKET/KEY` of an object, for messages.
    fn location(&self, key: &StorePath) -> PathBuf {
        PathBuf::from(format!("s3://{}/{}", self.shared.url.bucket, key))
    }

    /// Writes the marker (format, block size) unless one exists, then reads it back and
    /// checks it: Ok(true) when this call created the repository, Ok(false) when it joined
    /// an existing one. A different block size is refused.
    pub fn create_or_join(
        &self,
        marker_text: &str,
        check: impl Fn(&str) -> Result<()>,
    ) -> Result<bool> {
        let key = self.marker_key();
        if self.read_marker()?.is_none() {
            let bytes = bytes::Bytes::copy_from_slice(marker_text.as_bytes());
            let put = self.block_on(async {
                self.shared.stats.puts.fetch_add(1, Ordering::Relaxed);
                let mode = PutMode::Create.into();
                Ok(self.shared.store.put_opts(&key, bytes.into(), mode).await)
            })?;
            match put {
                Ok(_) => return Ok(true),
                // Another init won the race (412), or the answer was lost or wrong (Ceph
                // gives some losers a 500): whatever is there now decides.
                Err(e) => {
                    if self.read_marker()?.is_none() {
                        return Err(self.shared.map_error("put", &key, e));
                    }
                }
            }
        }
        let text = self.read_marker()?.ok_or_else(|| {
            self.shared.error(
                "read",
                &key,
                "the marker vanished right after it was found".into(),
            )
        })?;
        check(&text)?;
        Ok(false)
    }

    /// The marker's text; None when the prefix holds no repository. A missing bucket is an
    /// error saying how to create it.
    pub fn read_marker(&self) -> Result<Option<String>> {
        let key = self.marker_key();
        let mut buf = Vec::new();
        if !self.get_into(&key, &mut buf)? {
            // A missing bucket also answers 404 to a GET: tell the two apart with a LIST.
            let probe = self.block_on(async {
                self.shared.stats.lists.fetch_add(1, Ordering::Relaxed);
                Ok(self
                    .shared
                    .store
                    .list_with_delimiter(Some(&self.prefix))
                    .await)
            })?;
            if let Err(e) = probe {
                return Err(self.shared.map_error("list", &self.prefix, e));
            }
            return Ok(None);
        }
        String::from_utf8(buf)
            .map(Some)
            .map_err(|_| Error::Corrupt {
                path: self.location(&key),
                reason: "the repository marker is not UTF-8 text".into(),
            })
    }

    /// Runs `f` to completion on the runtime, unless SIGINT or SIGTERM comes first (see
    /// [`interruptible`]): then `f` is dropped (its request abandoned) and `Interrupted` is
    /// the error.
    fn block_on<T, F: std::future::Future<Output = Result<T>>>(&self, f: F) -> Result<T> {
        interruptible(&self.runtime, f)
    }

    /// GETs `key` into `buf` (cleared); false when it is missing.
    fn get_into(&self, key: &StorePath, buf: &mut Vec<u8>) -> Result<bool> {
        buf.clear();
        self.block_on(async {
            self.shared.stats.gets.fetch_add(1, Ordering::Relaxed);
            let got = match self.shared.store.get(key).await {
                Ok(got) => got,
                Err(object_store::Error::NotFound { .. }) => return Ok(false),
                Err(e) => return Err(self.shared.map_error("get", key, e)),
            };
            let mut stream = got.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| self.shared.map_error("get", key, e))?;
                buf.extend_from_slice(&chunk);
            }
            self.shared
                .stats
                .get_bytes
                .fetch_add(buf.len() as u64, Ordering::Relaxed);
            Ok(true)
        })
    }

    fn head_len(&self, key: &StorePath) -> Result<Option<u64>> {
        self.block_on(self.shared.head_len(key))
    }

    fn delete(&self, key: &StorePath) -> Result<()> {
        self.block_on(async {
            self.shared.stats.deletes.fetch_add(1, Ordering::Relaxed);
            match self.shared.store.delete(key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(self.shared.map_error("delete", key, e)),
            }
        })
    }

    /// Streams the objects under `PREFIX/<kind>/` named like a hash, with their lengths.
    fn for_each_hash(
        &self,
        kind: &str,
        f: &mut dyn FnMut(BlockHash, u64) -> Result<()>,
    ) -> Result<()> {
        let dir = self.prefix.clone().join(kind);
        self.block_on(async {
            self.shared.stats.lists.fetch_add(1, Ordering::Relaxed);
            let mut listing = self.shared.store.list(Some(&dir));
            while let Some(meta) = listing.next().await {
                let meta = meta.map_err(|e| self.shared.map_error("list", &dir, e))?;
                // Only direct children named like a hash (a `.../x/<hash>` is not one).
                let Some(rest) = meta.location.prefix_match(&dir) else {
                    continue;
                };
                let parts: Vec<_> = rest.collect();
                let [name] = parts.as_slice() else { continue };
                if let Ok(hash) = name.as_ref().parse::<BlockHash>() {
                    f(hash, meta.size)?;
                }
            }
            Ok(())
        })
    }

    /// Moves a block's or map's object to `PREFIX/quarantine/<kind>/<hex>.<unique>` (copy,
    /// then delete): fsck --repair's quarantine on a remote store. Returns the new location.
    pub fn quarantine(&self, kind: &str, hash: &BlockHash) -> Result<PathBuf> {
        let from = self.key(kind, hash);
        let to = self
            .prefix
            .clone()
            .join(QUARANTINE)
            .join(kind)
            .join(format!(
                "{}.{}",
                hash.to_hex(),
                uuid::Uuid::new_v4().simple()
            ));
        self.block_on(async {
            self.shared
                .store
                .copy(&from, &to)
                .await
                .map_err(|e| self.shared.map_error("copy to quarantine", &from, e))
        })?;
        self.delete(&from)?;
        Ok(self.location(&to))
    }

    /// The hashes held in `PREFIX/quarantine/<kind>/` (names `<hex>.<unique>`), with repeats.
    pub fn quarantined(&self, kind: &str) -> Result<Vec<String>> {
        let names = self.list_names(&format!("{QUARANTINE}/{kind}"))?;
        Ok(names
            .into_iter()
            .map(|(name, _)| name.split('.').next().unwrap_or(&name).to_string())
            .collect())
    }

    /// The names (last segment) and lengths of the objects under `PREFIX/<rel>/`.
    pub fn list_names(&self, rel: &str) -> Result<Vec<(String, u64)>> {
        let dir = self.rel_key(rel);
        self.block_on(async {
            self.shared.stats.lists.fetch_add(1, Ordering::Relaxed);
            let mut out = Vec::new();
            let mut listing = self.shared.store.list(Some(&dir));
            while let Some(meta) = listing.next().await {
                let meta = meta.map_err(|e| self.shared.map_error("list", &dir, e))?;
                if let Some(name) = meta.location.filename() {
                    out.push((name.to_string(), meta.size));
                }
            }
            Ok(out)
        })
    }

    /// Creates the small object `PREFIX/<rel>` unless it exists (see [`Shared::create`]).
    pub fn create_object(&self, rel: &str, bytes: Vec<u8>) -> Result<bool> {
        let key = self.rel_key(rel);
        self.block_on(self.shared.create(&key, bytes::Bytes::from(bytes), false))
    }

    /// Reads the object `PREFIX/<rel>`; None when missing.
    pub fn read_object(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        let mut buf = Vec::new();
        Ok(self.get_into(&self.rel_key(rel), &mut buf)?.then_some(buf))
    }

    /// Reads the object `PREFIX/<rel>` when it is at most `max` bytes: None when missing,
    /// `Some(Err(len))` when longer, its body left unread. For objects anyone may have
    /// written (the marker, member entries): a huge one costs no memory.
    pub fn read_small_object(
        &self,
        rel: &str,
        max: u64,
    ) -> Result<Option<std::result::Result<Vec<u8>, u64>>> {
        let mut buf = vec![0; usize::try_from(max).unwrap_or(usize::MAX)];
        Ok(match self.get_bounded(&self.rel_key(rel), &mut buf)? {
            None => None,
            Some(len) if len > buf.len() => Some(Err(len as u64)),
            Some(len) => {
                buf.truncate(len);
                Some(Ok(buf))
            }
        })
    }

    /// Reads object `key` into `buf`: None when missing, `Some(len)` with `len <= buf.len()`
    /// when it was read whole, `Some(len)` with `len > buf.len()` (its size, or the bytes seen
    /// when the stream ran past `buf`) when it is longer: the rest is then left unread, so a
    /// huge object costs neither memory nor transfer.
    fn get_bounded(&self, key: &StorePath, buf: &mut [u8]) -> Result<Option<usize>> {
        self.block_on(async {
            self.shared.stats.gets.fetch_add(1, Ordering::Relaxed);
            let got = match self.shared.store.get(key).await {
                Ok(got) => got,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(self.shared.map_error("get", key, e)),
            };
            // A longer object is reported by its length, never read.
            let size = usize::try_from(got.meta.size).unwrap_or(usize::MAX);
            if size > buf.len() {
                return Ok(Some(size));
            }
            let mut filled = 0;
            let mut stream = got.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| self.shared.map_error("get", key, e))?;
                let end = filled + chunk.len();
                if end > buf.len() {
                    return Ok(Some(end));
                }
                buf[filled..end].copy_from_slice(&chunk);
                filled = end;
            }
            self.shared
                .stats
                .get_bytes
                .fetch_add(filled as u64, Ordering::Relaxed);
            Ok(Some(filled))
        })
    }

    /// Deletes the object `PREFIX/<rel>` (absent is fine).
    pub fn delete_object(&self, rel: &str) -> Result<()> {
        self.delete(&self.rel_key(rel))
    }

    /// gc's sweep over `PREFIX/<kind>/` (`blocks` or `maps`): every object named like a hash
    /// that `keep` refuses is deleted (bulk DeleteObjects requests) unless `dry_run`. Streams
    /// the listing page by page; `progress` counts the bytes of the objects looked at.
    pub fn sweep(
        &self,
        kind: &str,
        keep: &(dyn Fn(&BlockHash) -> bool + Sync),
        dry_run: bool,
        progress: &dyn crate::progress::Progress,
    ) -> Result<super::sweep::Swept> {
        let mut out = super::sweep::Swept::default();
        let mut doomed = Vec::new();
        self.for_each_hash(kind, &mut |h, len| {
            progress.advance(len);
            if keep(&h) {
                out.kept += 1;
                out.kept_bytes += len;
            } else {
                out.removed += 1;
                out.removed_bytes += len;
                doomed.push(Ok(self.key(kind, &h)));
            }
            Ok(())
        })?;
        if !dry_run {
            self.delete_keys(kind, doomed)?;
        }
        Ok(out)
    }

    /// Deletes the blocks `hashes` (absent ones are fine) with bulk DeleteObjects requests.
    pub fn delete_blocks(&self, hashes: &[BlockHash]) -> Result<()> {
        let keys = hashes.iter().map(|h| Ok(self.key(BLOCKS, h))).collect();
        self.delete_keys(BLOCKS, keys)
    }

    /// Deletes `doomed`, objects under `PREFIX/<kind>/`, in bulk requests; absent is fine.
    fn delete_keys(&self, kind: &str, doomed: Vec<object_store::Result<StorePath>>) -> Result<()> {
        if doomed.is_empty() {
            return Ok(());
        }
        let dir = self.prefix.clone().join(kind);
        self.block_on(async {
            self.shared
                .stats
                .deletes
                .fetch_add(doomed.len() as u64, Ordering::Relaxed);
            let mut results = self
                .shared
                .store
                .delete_stream(futures_util::stream::iter(doomed).boxed());
            while let Some(r) = results.next().await {
                match r {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(self.shared.map_error("delete", &dir, e)),
                }
            }
            Ok(())
        })
    }
}

/// Whether an object_store error's text says the store refused the request's credentials:
/// an HTTP 403 status (written "403 Forbidden") or one of S3's refusal codes. Not a bare
/// "403": the text also holds the endpoint's URL, whose port may contain those digits.
fn refused_credentials(text: &str) -> bool {
    [
        "403 Forbidden",
        "AccessDenied",
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
    ]
    .iter()
    .any(|code| text.contains(code))
}

impl Shared {
    /// An [`Error::Store`] for a failed `op` on `key`.
    fn error(&self, op: &str, key: &StorePath, what: String) -> Error {
        Error::Store {
            store: format!("{} (endpoint {})", self.url, self.endpoint),
            what: format!("{op} {key}: {what}"),
            fix: "check that the endpoint is reachable and the credentials are right (AWS_* or ~/.aws), then retry; nothing was committed".into(),
        }
    }

    /// Maps an object_store error (after its retries) to an [`Error::Store`] with a fix
    /// fitting the cause: a missing bucket, refused credentials, an unreachable endpoint.
    fn map_error(&self, op: &str, key: &StorePath, e: object_store::Error) -> Error {
        let text = e.to_string();
        let store = format!("{} (endpoint {})", self.url, self.endpoint);
        let fix = if text.contains("NoSuchBucket") {
            format!(
                "the bucket '{b}' does not exist; arch does not create buckets: create it with `aws --endpoint-url {ep} s3 mb s3://{b}` (or your store's console), then retry",
                b = self.url.bucket,
                ep = self.endpoint
            )
        } else if refused_credentials(&text) {
            "the store refused the credentials: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or ~/.aws/credentials) and the bucket's permissions".into()
        } else {
            "check that the endpoint is reachable (AWS_ENDPOINT_URL, AWS_ALLOW_HTTP=true for http://) and retry; the repository is as it was before this command".into()
        };
        Error::Store {
            store,
            what: format!("{op} {key} failed: {text}"),
            fix,
        }
    }

    async fn head_len(&self, key: &StorePath) -> Result<Option<u64>> {
        self.stats.heads.fetch_add(1, Ordering::Relaxed);
        match self.store.head(key).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.map_error("head", key, e)),
        }
    }

    /// Creates `key` with `bytes` unless it exists: Ok(true) when this call wrote it,
    /// Ok(false) when it was there (the PUT sent nothing then). A refused or failed create
    /// is settled by reading the object's length back: present with the right length is
    /// success (another writer won the race), anything else is the error.
    /// `probed`: the caller has just seen it absent (no HEAD first).
    async fn create(&self, key: &StorePath, bytes: bytes::Bytes, probed: bool) -> Result<bool> {
        let len = bytes.len() as u64;
        if !probed && let Some(found) = self.head_len(key).await? {
            return self.settle(key, found, len).map(|()| false);
        }
        self.stats.puts.fetch_add(1, Ordering::Relaxed);
        self.stats.put_bytes.fetch_add(len, Ordering::Relaxed);
        let put = self
            .store
            .put_opts(key, PutPayload::from_bytes(bytes), PutMode::Create.into())
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(e) => match self.head_len(key).await {
                Ok(Some(found)) => self.settle(key, found, len).map(|()| false),
                _ => Err(self.map_error("put", key, e)),
            },
        }
    }

    /// An object found at `key` where `len` bytes were to be written: the same length is the
    /// same content (the name is its hash); another length is a damaged store.
    fn settle(&self, key: &StorePath, found: u64, len: u64) -> Result<()> {
        if found == len {
            return Ok(());
        }
        Err(Error::Corrupt {
            path: PathBuf::from(format!("s3://{}/{}", self.url.bucket, key)),
            reason: format!(
                "stored object is {found} bytes where its name says {len}; `arch fsck --read-data --repair` moves it to quarantine"
            ),
        })
    }
}

impl Drop for S3Backend {
    fn drop(&mut self) {
        // `ARCH_STORE_STATS=1`: one line of request counters on stderr (for tests and benches).
        if std::env::var_os("ARCH_STORE_STATS").is_some_and(|v| v == "1") {
            let s = &self.shared.stats;
            let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
            eprintln!(
                "arch-store-stats {{\"puts\":{},\"put_bytes\":{},\"gets\":{},\"get_bytes\":{},\"heads\":{},\"lists\":{},\"deletes\":{}}}",
                n(&s.puts),
                n(&s.put_bytes),
                n(&s.gets),
                n(&s.get_bytes),
                n(&s.heads),
                n(&s.lists),
                n(&s.deletes)
            );
        }
    }
}

impl Backend for S3Backend {
    fn has_block(&self, hash: &BlockHash) -> Result<bool> {
        Ok(self.head_len(&self.key(BLOCKS, hash))?.is_some())
    }

    fn read_block(&self, hash: &BlockHash, buf: &mut Vec<u8>) -> Result<bool> {
        self.get_into(&self.key(BLOCKS, hash), buf)
    }

    fn read_block_into(&self, hash: &BlockHash, buf: &mut [u8]) -> Result<Option<usize>> {
        self.get_bounded(&self.key(BLOCKS, hash), buf)
    }

    fn block_len(&self, hash: &BlockHash) -> Result<Option<u64>> {
        self.head_len(&self.key(BLOCKS, hash))
    }

    fn begin_batch(&self) -> Result<Box<dyn BlockBatch>> {
        Ok(Box::new(batch::S3Batch::new(
            self.shared.clone(),
            self.runtime.clone(),
            self.prefix.clone().join(BLOCKS),
        )))
    }

    fn delete_block(&self, hash: &BlockHash) -> Result<()> {
        self.delete(&self.key(BLOCKS, hash))
    }

    fn for_each_block(&self, f: &mut dyn FnMut(BlockHash, u64) -> Result<()>) -> Result<()> {
        let progress = self.listing_progress.lock().unwrap().take();
        let r = self.for_each_hash(BLOCKS, &mut |h, len| {
            if let Some(p) = &progress {
                p.advance(len);
            }
            f(h, len)
        });
        if let Some(p) = progress {
            p.finish();
        }
        r
    }

    fn put_map(&self, map: &BlockMap) -> Result<MapId> {
        let bytes = map.encode();
        let id = BlockHash::of_bytes(&bytes);
        let key = self.key(MAPS, &id);
        self.block_on(self.shared.create(&key, bytes::Bytes::from(bytes), false))?;
        Ok(id)
    }

    fn read_map(&self, id: &MapId) -> Result<Option<BlockMap>> {
        let key = self.key(MAPS, id);
        let mut bytes = Vec::new();
        if !self.get_into(&key, &mut bytes)? {
            return Ok(None);
        }
        if BlockHash::of_bytes(&bytes) != *id {
            return Err(Error::Corrupt {
                path: self.location(&key),
                reason: "map content does not match its name (sha256)".into(),
            });
        }
        BlockMap::decode(&bytes)
            .map(Some)
            .map_err(|e| Error::Corrupt {
                path: self.location(&key),
                reason: e.to_string(),
            })
    }

    fn delete_map(&self, id: &MapId) -> Result<()> {
        self.delete(&self.key(MAPS, id))
    }

    fn for_each_map(&self, f: &mut dyn FnMut(MapId) -> Result<()>) -> Result<()> {
        self.for_each_hash(MAPS, &mut |id, _| f(id))
    }

    fn block_location(&self, hash: &BlockHash) -> PathBuf {
        self.location(&self.key(BLOCKS, hash))
    }

    fn map_location(&self, id: &MapId) -> PathBuf {
        self.location(&self.key(MAPS, id))
    }

    fn as_s3(&self) -> Option<&S3Backend> {
        Some(self)
    }
}
