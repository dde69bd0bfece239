//! Early writeback while a stream is received: a background thread syncs the filesystem
//! every [`EVERY`] bytes staged, so the disk writes blocks while later ones still arrive and
//! the commit's own syncfs (the durability point, see `storage::local`) finds little left.
//!
//! A sync here is only ever extra: it makes nothing visible and orders nothing. Its error is
//! kept and returned by [`EarlyFlush::finish`] (a syncfs reports a writeback error once per
//! open descriptor: dropped here, the commit's later syncfs might not see it).

use crate::error::Result;
use std::path::PathBuf;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

/// Bytes staged between two background syncs.
pub const EVERY: u64 = 64 << 20;

/// The background syncer of one receive.
pub struct EarlyFlush {
    tx: Option<SyncSender<()>>,
    thread: Option<JoinHandle<Result<()>>>,
    pending: std::cell::Cell<u64>,
}

impl EarlyFlush {
    /// Starts the thread; it syncs the filesystem holding `dir` when asked.
    pub fn start(dir: PathBuf) -> EarlyFlush {
        let (tx, rx) = sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("arch-flush".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    crate::storage::fsutil::sync_filesystem(&dir)?;
                }
                Ok(())
            })
            .ok();
        EarlyFlush {
            tx: thread.as_ref().map(|_| tx),
            thread,
            pending: std::cell::Cell::new(0),
        }
    }

    /// Counts `bytes` staged; past [`EVERY`], asks for a sync (skipped when one is still
    /// running: the next request covers these bytes too).
    pub fn staged(&self, bytes: u64) {
        let pending = self.pending.get() + bytes;
        self.pending.set(pending);
        if pending < EVERY {
            return;
        }
        if let Some(tx) = &self.tx {
            match tx.try_send(()) {
                Ok(()) | Err(TrySendError::Disconnected(())) => self.pending.set(0),
                Err(TrySendError::Full(())) => {}
            }
        }
    }

    /// Stops the thread; the error of any sync it ran.
    pub fn finish(mut self) -> Result<()> {
        self.tx = None;
        match self.thread.take() {
            Some(t) => t.join().expect("flush thread panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for EarlyFlush {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syncs_run_past_the_threshold_and_their_error_is_returned() {
        let dir = tempfile::tempdir().unwrap();
        let ok = EarlyFlush::start(dir.path().to_path_buf());
        ok.staged(EVERY - 1);
        ok.staged(1);
        assert_eq!(ok.pending.get(), 0, "a sync was asked for");
        ok.finish().unwrap();
        // A sync that fails (here: its directory is gone) fails the receive.
        let gone = dir.path().join("gone");
        let bad = EarlyFlush::start(gone);
        bad.staged(EVERY);
        assert!(bad.finish().is_err());
        // Below the threshold nothing runs, so nothing fails.
        let idle = EarlyFlush::start(dir.path().join("gone"));
        idle.staged(EVERY - 1);
        idle.finish().unwrap();
    }
}
