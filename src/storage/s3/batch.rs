//! A batch of block uploads to the object store: each staged block is PUT (create-only) in
//! the background, at most [`IN_FLIGHT`] at once (so at most that many blocks in memory);
//! commit waits for all of them and fails whole when one failed.
//!
//! Visibility differs from the local batch: an uploaded block is visible at once, before
//! commit. That is safe because nothing names it yet: the catalog names blocks only after
//! commit returned, so an upload left by a failed batch is unreferenced garbage (gc removes
//! it), exactly as the blocks a crash leaves during a local batch's renames.
//!
//! Each upload records whether it created its object (its create-only PUT succeeded: of
//! racing writers exactly one does) or found it there (another writer's, or an earlier
//! one's): [`BlockBatch::created`] returns the former, so a caller that gives up (a refused
//! `receive`) can take back exactly the objects it added, never one it merely found.

use super::Shared;
use crate::error::{Error, Result};
use crate::storage::backend::BlockBatch;
use crate::storage::hash::{BlockHash, BlockHashSet};
use object_store::path::Path as StorePath;
use std::sync::{Arc, Mutex};
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Uploads in flight per batch: enough to fill a link to a nearby store with 4 MiB blocks,
/// few enough to bound memory (16 blocks of at most 64 MiB).
pub const IN_FLIGHT: usize = 16;

pub(super) struct S3Batch {
    shared: Arc<Shared>,
    runtime: Arc<Runtime>,
    dir: StorePath,
    permits: Arc<Semaphore>,
    staged: Mutex<BlockHashSet>,
    tasks: Mutex<Vec<JoinHandle<Result<bool>>>>,
    /// Blocks whose create-only PUT succeeded: objects this batch created.
    created: Arc<Mutex<Vec<BlockHash>>>,
    /// The first upload error met by [`BlockBatch::created`], for commit to report.
    failed: Mutex<Option<Error>>,
}

impl S3Batch {
    pub(super) fn new(shared: Arc<Shared>, runtime: Arc<Runtime>, dir: StorePath) -> S3Batch {
        S3Batch {
            shared,
            runtime,
            dir,
            permits: Arc::new(Semaphore::new(IN_FLIGHT)),
            staged: Mutex::new(BlockHashSet::default()),
            tasks: Mutex::new(Vec::new()),
            created: Arc::new(Mutex::new(Vec::new())),
            failed: Mutex::new(None),
        }
    }

    /// The first error among the uploads that already finished (so a dead store stops a
    /// long put early instead of at commit).
    fn finished_error(&self) -> Result<()> {
        let mut tasks = self.tasks.lock().unwrap();
        let mut i = 0;
        while i < tasks.len() {
            if tasks[i].is_finished() {
                let task = tasks.swap_remove(i);
                super::interruptible(&self.runtime, joined(task))?;
            } else {
                i += 1;
            }
        }
        Ok(())
    }
}

async fn joined(task: JoinHandle<Result<bool>>) -> Result<bool> {
    match task.await {
        Ok(r) => r,
        Err(e) => Err(Error::invalid(format!("block upload task failed: {e}"))),
    }
}

impl BlockBatch for S3Batch {
    fn stage(&self, hash: &BlockHash, stored: &[u8]) -> Result<bool> {
        if !self.staged.lock().unwrap().insert(*hash) {
            return Ok(false);
        }
        self.finished_error()?;
        let key = self.dir.clone().join(hash.to_hex());
        // Already stored (by this host or another): nothing is sent but a HEAD.
        if super::interruptible(&self.runtime, self.shared.head_len(&key))?.is_some() {
            return Ok(false);
        }
        let permits = self.permits.clone();
        let permit = super::interruptible(&self.runtime, async move {
            Ok(permits
                .acquire_owned()
                .await
                .expect("the semaphore is never closed"))
        })?;
        let bytes = bytes::Bytes::copy_from_slice(stored);
        let shared = self.shared.clone();
        let created = self.created.clone();
        let hash = *hash;
        let task = self.runtime.spawn(async move {
            let _permit = permit;
            let made = shared.create(&key, bytes, true).await;
            if let Ok(true) = made {
                created.lock().unwrap().push(hash);
            }
            made
        });
        self.tasks.lock().unwrap().push(task);
        Ok(true)
    }

    fn commit(self: Box<Self>) -> Result<()> {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap());
        // Wait for every upload, even after a failure: none may still run once we return
        // (after SIGINT/SIGTERM the rest are aborted instead: what they upload is garbage).
        let mut first = self.failed.lock().unwrap().take();
        let mut tasks = tasks.into_iter();
        for task in tasks.by_ref() {
            if let Err(e) = super::interruptible(&self.runtime, joined(task)) {
                let stop = matches!(e, Error::Interrupted { .. });
                first.get_or_insert(e);
                if stop {
                    break;
                }
            }
        }
        for task in tasks {
            task.abort();
        }
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn created(&self) -> Vec<BlockHash> {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap());
        let mut tasks = tasks.into_iter();
        for task in tasks.by_ref() {
            if let Err(e) = super::interruptible(&self.runtime, joined(task)) {
                let stop = matches!(e, Error::Interrupted { .. });
                self.failed.lock().unwrap().get_or_insert(e);
                if stop {
                    break;
                }
            }
        }
        // Interrupted: the rest are aborted, and what they may still have created is left to
        // gc, as after a kill.
        for task in tasks {
            task.abort();
        }
        self.created.lock().unwrap().clone()
    }
}

impl Drop for S3Batch {
    fn drop(&mut self) {
        // Abandoned: stop the uploads still running (what finished is unreferenced garbage).
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}
