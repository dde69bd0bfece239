//! `copy`: send | receive between two local repositories in one process, sending only the
//! blocks and maps the destination lacks (looked up in it, not guessed from a base). The
//! stream crosses a kernel pipe between two threads and is checked by the receiver as any
//! other, so the destination gets the same all-or-nothing guarantee as `receive`.

use super::receive::{ReceivedResource, receive};
use super::send::{Known, send};
use crate::error::{Error, Result};
use crate::progress::{NoProgress, Progress};
use crate::repo::Repository;
use crate::storage::{BlockHash, MapId};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::FromRawFd;
use std::path::PathBuf;

/// A kernel pipe (read end, write end), widened: the sender hands it the pages of mapped
/// blocks and the receiver reads them into its block buffers, so each block byte is copied
/// once, as between two processes. Closing the write end ends the reader's input; closing the
/// read end fails the writer's next write (EPIPE; SIGPIPE is ignored by Rust programs).
fn os_pipe() -> Result<(File, File)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two new descriptors, each owned once below.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::io(
            "create",
            "a pipe",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: the descriptors are fresh and not owned by anything else.
    let (r, w) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    super::widen_pipe(&w);
    Ok((r, w))
}

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
    let (mut reader, writer) = os_pipe()?;
    let (sent, received) = std::thread::scope(|scope| {
        // The writer is dropped (closed) as the sender ends, so the receiver sees the end of
        // input; the reader is dropped as the receiver ends, so a sender still writing stops.
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
