//! The FUSE side of the customization disk: one regular file, mounted over the disk's path,
//! whose reads and writes go to an [`Overlay`]; and the run that mounts it, lets the tools
//! work on it while this thread reads the volume's blocks for it, and unmounts.
//!
//! Threads: [`SESSION_THREADS`] fuser threads answer the kernel (so a request waiting for a
//! block load does not hold up the ones the kernel's read-ahead sends beside it); the tools
//! run on a scoped thread; [`LOADERS`] scoped threads read (and verify) the volume's blocks,
//! which reach them over a channel, so the volume is borrowed only for the call and never
//! outlives it.

use super::mount::{Mount, mount};
use super::overlay::{BlockLoader, Changes, Overlay};
use crate::error::{Error, Result};
use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, INodeNo, LockOwner,
    OpenFlags, ReplyAttr, ReplyData, ReplyEmpty, ReplyOpen, ReplyWrite, Request, SessionACL,
    TimeOrNow, WriteFlags,
};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Only the kernel changes the file, through us: its attributes may be cached for long.
const TTL: Duration = Duration::from_secs(3600);

/// Threads answering FUSE requests. e2fsck announces its reads (`posix_fadvise(WILLNEED)`), so
/// the kernel sends several reads at once; with one thread they would wait for each other's
/// block loads.
pub const SESSION_THREADS: usize = 4;

/// Threads loading (reading and verifying) the volume's blocks: loads of different blocks
/// overlap, and the sha256 of one runs beside the read of the next.
pub const LOADERS: usize = 2;

struct DiskFs {
    overlay: Arc<Overlay>,
    uid: u32,
    gid: u32,
}

impl DiskFs {
    fn attr(&self) -> FileAttr {
        let size = self.overlay.size();
        FileAttr {
            ino: INodeNo::ROOT,
            size,
            blocks: size.div_ceil(512),
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
            kind: FileType::RegularFile,
            perm: 0o600,
            nlink: 1,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            flags: 0,
            blksize: 4096,
        }
    }
}

fn errno(e: io::Error) -> Errno {
    match e.raw_os_error() {
        Some(n) if n > 0 => Errno::from_i32(n),
        _ => Errno::EIO,
    }
}

impl Filesystem for DiskFs {
    fn init(&mut self, _req: &Request, config: &mut fuser::KernelConfig) -> io::Result<()> {
        // Larger requests: fewer round trips for e2fsck's scans and resize2fs's writes. The
        // kernel caps them at what it supports.
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        Ok(())
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if ino != INodeNo::ROOT {
            return reply.error(Errno::ENOENT);
        }
        reply.attr(&TTL, &self.attr());
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        if ino != INodeNo::ROOT {
            return reply.error(Errno::ENOENT);
        }
        // Only the length means anything for a disk; modes and times are not kept.
        if let Some(size) = size
            && let Err(e) = self.overlay.set_size(size)
        {
            return reply.error(errno(e));
        }
        reply.attr(&TTL, &self.attr());
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // Every change goes through this mount, so the kernel's cached pages stay right from
        // one tool to the next: keep them.
        reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE);
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.overlay.read(offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.overlay.write(offset, data) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Durability comes afterwards, when the changed blocks are stored in the volume; a
        // crash before that discards the whole run.
        reply.ok();
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let zero = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_ZERO_RANGE;
        let result = if mode & zero != 0 {
            let end = offset.saturating_add(length);
            let grow = mode & libc::FALLOC_FL_KEEP_SIZE == 0 && end > self.overlay.size();
            self.overlay.zero(offset, length).and_then(|()| {
                if grow {
                    self.overlay.set_size(end)
                } else {
                    Ok(())
                }
            })
        } else if mode & !libc::FALLOC_FL_KEEP_SIZE == 0 {
            // Plain allocation: the bytes read as before; only the length may grow.
            let end = offset.saturating_add(length);
            if mode & libc::FALLOC_FL_KEEP_SIZE == 0 && end > self.overlay.size() {
                self.overlay.set_size(end)
            } else {
                Ok(())
            }
        } else {
            Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
        };
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }
}

/// A block load asked by the session thread; the buffer travels there and back.
struct Load {
    index: u64,
    buf: Vec<u8>,
    reply: SyncSender<(Vec<u8>, bool)>,
}

enum Msg {
    Load(Load),
    ToolsDone,
}

struct ChannelLoader(Sender<Msg>);

impl BlockLoader for ChannelLoader {
    fn load(&self, index: u64, buf: &mut Vec<u8>) -> io::Result<()> {
        let (tx, rx) = sync_channel(1);
        let eio = || io::Error::from_raw_os_error(libc::EIO);
        self.0
            .send(Msg::Load(Load {
                index,
                buf: std::mem::take(buf),
                reply: tx,
            }))
            .map_err(|_| eio())?;
        let (back, ok) = rx.recv().map_err(|_| eio())?;
        *buf = back;
        if ok { Ok(()) } else { Err(eio()) }
    }
}

/// Sends one stop per loader when dropped.
struct StopLoaders(Sender<Msg>);

impl Drop for StopLoaders {
    fn drop(&mut self) {
        for _ in 0..LOADERS {
            let _ = self.0.send(Msg::ToolsDone);
        }
    }
}

/// The disk mounted and served, waiting for [`Served::run`].
pub struct Served {
    disk: PathBuf,
    mount: Mount,
    session: fuser::BackgroundSession,
    overlay: Arc<Overlay>,
    messages: Receiver<Msg>,
    sender: Sender<Msg>,
}

impl Served {
    /// Mounts a file of `size` bytes over `disk` (an existing empty file of this user), backed
    /// by `cache` (an empty file) and the volume's blocks; `data` lists the blocks holding
    /// data. The error says why FUSE cannot be used here.
    pub fn mount(
        disk: &Path,
        cache: File,
        size: u64,
        block_size: u64,
        data: std::collections::BTreeSet<u64>,
    ) -> std::result::Result<Served, String> {
        let (sender, messages) = channel();
        let overlay = Overlay::new(
            cache,
            size,
            block_size,
            data,
            Box::new(ChannelLoader(sender.clone())),
        )
        .map_err(|e| format!("cannot size the cache file: {e}"))?;
        let overlay = Arc::new(overlay);
        let mut mount = mount(disk, "arch-customize")?;
        let device = mount
            .take_device()
            .ok_or_else(|| "no FUSE descriptor".to_string())?;
        let fs = DiskFs {
            overlay: overlay.clone(),
            // SAFETY: getuid/getgid cannot fail.
            uid: unsafe { libc::getuid() },
            gid: unsafe { libc::getgid() },
        };
        let mut config = Config::default();
        config.n_threads = Some(SESSION_THREADS);
        let session = fuser::Session::from_fd(fs, device, SessionACL::Owner, config)
            .and_then(fuser::Session::spawn)
            .map_err(|e| format!("FUSE session: {e}"))?;
        Ok(Served {
            disk: disk.to_path_buf(),
            mount,
            session,
            overlay,
            messages,
            sender,
        })
    }

    /// Runs `tools` (on another thread) while [`LOADERS`] threads answer block loads with
    /// `read_block`; then unmounts. Returns the tools' result and what they changed; the
    /// changed blocks' bytes are in the cache file (see [`Overlay::cache`]), returned too.
    pub fn run<T: Send>(
        self,
        read_block: &(dyn Fn(u64, &mut Vec<u8>) -> Result<()> + Sync),
        tools: impl FnOnce() -> Result<T> + Send,
    ) -> Result<(T, Changes, Arc<Overlay>)> {
        let Served {
            disk,
            mount,
            session,
            overlay,
            messages,
            sender,
        } = self;
        let load_error = Mutex::new(None);
        let messages = Mutex::new(messages);
        let outcome = std::thread::scope(|s| {
            for _ in 0..LOADERS {
                s.spawn(|| {
                    loop {
                        // The lock is held only while waiting for the next message.
                        let msg = messages.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok(Msg::Load(mut l)) = msg else {
                            break;
                        };
                        let ok = match read_block(l.index, &mut l.buf) {
                            Ok(()) => true,
                            Err(e) => {
                                load_error
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .get_or_insert(e);
                                false
                            }
                        };
                        let _ = l.reply.send((l.buf, ok));
                    }
                });
            }
            let worker = s.spawn(move || {
                // Stops the loaders when the tools end, even by a panic.
                let _stop = StopLoaders(sender);
                tools()
            });
            worker.join()
        });
        let messages = messages.into_inner().unwrap_or_else(|p| p.into_inner());
        let load_error = load_error.into_inner().unwrap_or_else(|p| p.into_inner());
        // A load asked from now on fails at once instead of waiting for an answer.
        drop(messages);
        let unmounted = mount.unmount();
        let joined = session.join();
        let result = outcome.map_err(|_| Error::invalid("the customization thread panicked"))?;
        let value = match (result, load_error) {
            // The tool saw EIO; the volume's own error says what is wrong.
            (Err(_), Some(e)) | (Ok(_), Some(e)) => return Err(e),
            (r, None) => r?,
        };
        unmounted.map_err(|e| Error::io("unmount", &disk, e))?;
        joined.map_err(|e| Error::io("serve FUSE file", &disk, e))?;
        let changes = overlay.changes();
        Ok((value, changes, overlay))
    }
}
