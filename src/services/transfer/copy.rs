//! `copy`: send | receive between two local repositories in one process, sending only the
//! blocks and maps the destination lacks (looked up in it, not guessed from a base). The
//! stream crosses an in-process pipe and is checked by the receiver as any other, so the
//! destination gets the same all-or-nothing guarantee as `receive`.

use super::pipe::pipe;
use super::receive::{ReceivedResource, receive};
use super::send::{Known, send};
use crate::error::{Error, Result};
use crate::progress::{NoProgress, Progress};
use crate::repo::Repository;
use crate::storage::{BlockHash, MapId};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What the destination repository holds, looked up as the stream is written.
struct Destination<'a>(&'a Repository);

impl Known for Destination<'_> {
    fn has_block(&self, hash: &BlockHash) -> Result<bool> {
        self.0.backend().has_block(hash)
    }
    fn has_map(&self, id: &MapId) -> Result<bool> {
        Ok(self.0.backend().read_map(id)?.is_some())
    }
}

/// What [`copy`] did.
#[derive(Debug, Clone, Serialize)]
pub struct CopyReport {
    /// The destination repository.
    pub to: PathBuf,
    pub resources: Vec<ReceivedResource>,
    /// Blocks the destination lacked, copied.
    pub blocks_sent: u64,
    /// Blocks the destination had.
    pub blocks_skipped: u64,
    pub bytes_sent: u64,
    pub stream_bytes: u64,
}

/// Copies the resources named by `specs` from `src` into `dest`, renamed by `renames`.
pub fn copy(
    src: &Repository,
    specs: &[String],
    dest: &Repository,
    renames: &BTreeMap<String, String>,
    progress: &dyn Progress,
) -> Result<CopyReport> {
    let same = |a: &Repository, b: &Repository| {
        std::fs::canonicalize(a.root()).ok() == std::fs::canonicalize(b.root()).ok()
    };
    if same(src, dest) {
        return Err(Error::invalid(format!(
            "--to {} is this repository; copy between two repositories (`arch cp` copies \
             objects inside one)",
            dest.root().display()
        )));
    }
    let (writer, mut reader) = pipe(4);
    let (sent, received) = std::thread::scope(|scope| {
        // The writer is dropped as the sender ends, so the receiver sees the end of input.
        let sender = scope.spawn(|| {
            send(src, specs, &Destination(dest), writer, progress).map(|(report, _)| report)
        });
        let received = receive(dest, &mut reader, renames, &NoProgress);
        drop(reader);
        (sender.join().expect("sender panicked"), received)
    });
    let sent = match (sent, &received) {
        (Ok(report), _) => report,
        // The receiver's refusal explains a sender that found the pipe closed.
        (Err(Error::Io { source, .. }), Err(_))
            if source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            return Err(received.unwrap_err());
        }
        (Err(e), _) => return Err(e),
    };
    let received = received?;
    Ok(CopyReport {
        to: dest.root().to_path_buf(),
        resources: received.resources,
        blocks_sent: sent.blocks_sent,
        blocks_skipped: sent.blocks_skipped,
        bytes_sent: sent.bytes_sent,
        stream_bytes: sent.stream_bytes,
    })
}
