//! `arch serve NAME...`: serve volumes (read-write) and objects, images, snapshots (read-only)
//! to VMs and tools over the NBD protocol, in the foreground, until SIGINT/SIGTERM. The loop
//! accepts clients and hands each to [`crate::nbd`] over a [`Served`] resource.
//!
//! Shutdown: on the first signal the listener closes, every client's reading side is shut
//! down (the request in progress is completed and answered first), every volume is flushed,
//! its locks are released, the socket is removed, and the command exits 0.

mod net;

use super::{Context, Status};
use crate::nbd::{self, Export, Extent, Failure, Offer};
use crate::repo::db::pg::notify::Inbox;
use crate::services::volumes::served::{
    BlockRange, Control, Served, answer_control, answer_relayed,
};
use anyhow::bail;
use net::{Deadline, Listener, Replies, SocketFile, Stream, Wakeup, bind_unix, listen, run_dir};
use serde::Serialize;
use std::io::{self, BufReader, Write};
use std::net::Shutdown;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Serve volumes and read-only resources over NBD (to QEMU, qemu-img, nbdcopy, nbd-client).
/// A volume is served read-write (copy-on-write into the repository); objects, images and
/// snapshots read-only. Writes are durable once a FLUSH (or FUA) is answered.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch serve vm1\n  qemu-img info nbd+unix:///vm1?socket=REPO/run/arch-serve-PID.sock\n  arch serve vm1 --json &   # one line per export with its URI once listening\n  arch serve images/debian.raw --tcp 0.0.0.0:10809 --shared 4"
)]
pub struct Args {
    /// Volumes (read-write) and objects, images or snapshots (read-only) to serve; each is an
    /// NBD export of that name.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Unix socket to listen on (default: REPO/run/arch-serve-PID.sock, mode 0600).
    #[arg(long, value_name = "PATH", conflicts_with = "tcp")]
    pub socket: Option<PathBuf>,
    /// Listen on TCP instead: PORT or HOST:PORT (host defaults to 127.0.0.1; port 0 picks one).
    #[arg(long, value_name = "HOST:PORT")]
    pub tcp: Option<String>,
    /// Serve volumes read-only too (other readers and writers then wait as for `volume read`).
    #[arg(long)]
    pub read_only: bool,
    /// Clients served at once (more wait until one leaves, as with qemu-nbd); flushes cover
    /// every client's writes.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub shared: u32,
    /// Seconds a client may take to choose an export (and a control request to arrive)
    /// before it is dropped, as qemu-nbd's --handshake-limit.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub handshake_limit: u32,
}

/// What one server allows its clients.
struct Limits {
    shared: u32,
    multi_conn: bool,
    handshake: Duration,
}

/// A client that does not take a reply within this time is dropped (its writes done so far
/// stay applied; it cannot learn of them, as after a disconnect).
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// On SIGINT/SIGTERM, how long clients get to take the replies of their last requests
/// before their connections are cut.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// One export as printed at start.
#[derive(Debug, Serialize)]
struct Listening {
    name: String,
    uri: String,
    kind: String,
    read_only: bool,
    size: u64,
}

/// The protocol's view of a served resource: errors become errnos, and the first
/// [`LOGGED_FAILURES`] a line on stderr each (a client retrying a failing request in a loop
/// must not flood the log; each client's count of failed requests is printed when it leaves).
struct NbdExport<'s, 'a> {
    served: &'s Served<'a>,
    failures: AtomicU64,
}

/// Failed requests of one export logged in full.
const LOGGED_FAILURES: u64 = 10;

/// The errno a client gets for `e`: the cause inside a partial write or a named step counts.
fn errno(e: &crate::Error) -> u32 {
    match e {
        crate::Error::NoSpace { .. } => nbd::wire::ENOSPC,
        crate::Error::Invalid(_) => nbd::wire::EINVAL,
        crate::Error::PartialWrite { cause, .. } => errno(cause),
        crate::Error::InTask { source, .. } => errno(source),
        _ => nbd::wire::EIO,
    }
}

impl NbdExport<'_, '_> {
    fn failure(&self, e: crate::Error) -> Failure {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n <= LOGGED_FAILURES {
            eprintln!("arch serve: {}: {e}", self.served.name);
        }
        if n == LOGGED_FAILURES {
            eprintln!(
                "arch serve: {}: further failed requests are counted, not shown",
                self.served.name
            );
        }
        Failure::new(errno(&e), e.to_string())
    }
}

impl Export for NbdExport<'_, '_> {
    fn size(&self) -> u64 {
        self.served.size
    }
    fn read_only(&self) -> bool {
        self.served.read_only
    }
    fn preferred_block_size(&self) -> u32 {
        self.served.block_size
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), Failure> {
        let f = |e| self.failure(e);
        self.served.read(offset, out).map_err(f)
    }
    fn read_shared(&self, offset: u64, len: usize) -> Result<Option<nbd::SharedData>, Failure> {
        let f = |e| self.failure(e);
        let range = self.served.read_shared(offset, len).map_err(f)?;
        Ok(range.map(|r| match r {
            BlockRange::File { file, offset, len } => nbd::SharedData::File { file, offset, len },
            BlockRange::Memory(m) => nbd::SharedData::Bytes(Box::new(m)),
        }))
    }
    fn read_ahead(&self) {
        self.served.read_ahead()
    }
    fn write(&self, offset: u64, data: &[u8], fua: bool) -> Result<(), Failure> {
        let f = |e| self.failure(e);
        self.served.write(offset, data, fua).map_err(f)
    }
    fn flush(&self) -> Result<(), Failure> {
        self.served.flush().map_err(|e| self.failure(e))
    }
    fn zero(&self, offset: u64, length: u64, trim: bool, fua: bool) -> Result<(), Failure> {
        let f = |e| self.failure(e);
        self.served.zero(offset, length, trim, fua).map_err(f)
    }
    fn extents(&self, offset: u64, length: u64, one: bool) -> Result<Vec<Extent>, Failure> {
        let f = |e| self.failure(e);
        let most = if one { 1 } else { usize::MAX };
        let runs = self.served.allocation(offset, length, most).map_err(f)?;
        Ok(runs
            .into_iter()
            .map(|(length, zero)| Extent {
                length,
                flags: if zero {
                    nbd::wire::STATE_HOLE | nbd::wire::STATE_ZERO
                } else {
                    0
                },
            })
            .collect())
    }
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Status> {
    release_large_buffers();
    let repo = ctx.repo()?;
    let listener = listen(&repo, args)?;
    let removal = SocketFile(match &listener {
        Listener::Unix(_, p) => Some(p.clone()),
        Listener::Tcp(_) => None,
    });
    let control_path = run_dir(&repo)?.join(format!("arch-serve-{}.ctl", std::process::id()));
    let control = bind_unix(&control_path)?;
    let control_removal = SocketFile(Some(control_path.clone()));
    // With the catalog on PostgreSQL, other hosts reach the server through a channel there:
    // listening before any server row names it, so no request is missed.
    let mut relay = match repo.catalog_url() {
        Some(url) if !args.read_only => Some(Inbox::open(url)?),
        _ => None,
    };
    let mut served = Vec::new();
    for name in &args.names {
        if args.names.iter().filter(|n| *n == name).count() > 1 {
            bail!("'{name}' is named twice; serve each resource once");
        }
        served.push(Served::open(
            &repo,
            name,
            args.read_only,
            &listener.uri(name),
            Control {
                socket: Some(&control_path),
                relay: relay.as_ref().map(Inbox::channel),
            },
        )?);
    }
    let exports: Vec<NbdExport> = served
        .iter()
        .map(|served| NbdExport {
            served,
            failures: AtomicU64::new(0),
        })
        .collect();
    let offers: Vec<Offer> = exports
        .iter()
        .map(|e| Offer {
            name: e.served.name.clone(),
            description: format!("arch {} {}", e.served.kind, e.served.name),
            export: e,
        })
        .collect();
    print_listening(ctx, &listener, &served)?;
    // Only when clients can actually open several connections at once: nbdcopy opens up to 4
    // on a multi-conn export and waits for each, so with one slot (even read-only) the extra
    // ones would wait in the backlog for ever.
    let multi_conn = args.shared > 1;
    let limits = Limits {
        shared: args.shared,
        multi_conn,
        handshake: Duration::from_secs(args.handshake_limit.into()),
    };
    accept_loop(
        ctx,
        &listener,
        &control,
        relay.as_mut(),
        &served,
        &offers,
        &limits,
    );
    let mut failed = None;
    for s in &served {
        if let Err(e) = s.flush() {
            failed.get_or_insert(e);
        }
    }
    drop(offers);
    drop(exports);
    drop(served);
    drop(removal);
    drop(control_removal);
    if let Some(e) = failed {
        return Err(e.into());
    }
    if !ctx.quiet {
        eprintln!("arch serve: stopped; every acknowledged write is flushed");
    }
    Ok(Status::Ok)
}

/// Block-sized buffers (decoded shared blocks, replies) come and go with every request: they
/// are given back to the system when freed, instead of glibc raising its mmap threshold and
/// keeping freed ones in per-thread heaps, which grew the server past 90 MiB under a
/// sequential read.
fn release_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before any other thread runs.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
    }
}

fn print_listening(ctx: &Context, listener: &Listener, served: &[Served]) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    for s in served {
        let l = Listening {
            name: s.name.clone(),
            uri: listener.uri(&s.name),
            kind: s.kind.clone(),
            read_only: s.read_only,
            size: s.size,
        };
        if ctx.json {
            writeln!(out, "{}", serde_json::to_string(&l)?)?;
        } else if !ctx.quiet {
            let text = format!(
                "{}  ({} {}, {}, {})",
                l.uri,
                l.kind,
                l.name,
                if l.read_only {
                    "read-only"
                } else {
                    "read-write"
                },
                crate::units::format_size(l.size)
            );
            writeln!(out, "{}", super::output::terminal_safe(&text))?;
        }
    }
    out.flush()?;
    Ok(())
}

/// Accepts clients until SIGINT/SIGTERM, each served on its own thread (at most `shared` at
/// once, counting those still in the handshake); returns once every client thread has
/// finished. Requests on the control socket (`arch snapshot` of a served volume) are
/// answered on their own threads, those from other hosts through the catalog (`relay`) on
/// one thread of their own.
fn accept_loop(
    ctx: &Context,
    listener: &Listener,
    control: &UnixListener,
    relay: Option<&mut Inbox>,
    served: &[Served],
    offers: &[Offer],
    limits: &Limits,
) {
    let clients: Mutex<Vec<(u64, Stream)>> = Mutex::new(Vec::new());
    let next_id = AtomicU64::new(1);
    let slot_freed = match Wakeup::new() {
        Ok(w) => Some(w),
        Err(e) => {
            // Clients waiting for a slot are then accepted at the next poll timeout.
            eprintln!("arch serve: no wakeup for freed slots: {e}");
            None
        }
    };
    let slot_freed = &slot_freed;
    std::thread::scope(|scope| {
        if let Some(inbox) = relay {
            scope.spawn(move || answer_relayed(served, inbox));
        }
        while crate::interrupt::received().is_none() {
            // With every slot taken, new clients wait in the listen backlog (as with
            // qemu-nbd) and are accepted once one leaves, which rings `slot_freed`: poll
            // ignores a negative fd.
            let full = clients.lock().unwrap().len() >= limits.shared as usize;
            let listening = if full { -1 } else { listener.fd() };
            let woken = slot_freed.as_ref().map_or(-1, Wakeup::fd);
            let mut pfd = [listening, control.as_raw_fd(), woken].map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
            // SAFETY: three pollfds (the first and last maybe ignored); a signal or the
            // timeout returns early.
            if unsafe { libc::poll(pfd.as_mut_ptr(), 3, 200) } <= 0 {
                continue;
            }
            if pfd[2].revents != 0 {
                // A slot was freed (maybe after `full` above): look again.
                if let Some(w) = slot_freed {
                    w.drain();
                }
                continue;
            }
            if pfd[1].revents != 0 {
                if let Ok((s, _)) = control.accept() {
                    let limit = limits.handshake;
                    scope.spawn(move || {
                        // A silent or stalled control client is dropped after the limit.
                        let set = s
                            .set_nonblocking(false)
                            .and_then(|()| s.set_read_timeout(Some(limit)))
                            .and_then(|()| s.set_write_timeout(Some(limit)));
                        if let Err(e) = set.and_then(|()| answer_control(served, s)) {
                            eprintln!("arch serve: control request failed: {e}");
                        }
                    });
                }
            }
            if pfd[0].revents == 0 {
                continue;
            }
            let stream = match listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    eprintln!("arch serve: accept failed: {e}");
                    continue;
                }
            };
            // Only this loop adds clients, and it polled the listener with a slot free.
            let mut list = clients.lock().unwrap();
            let id = next_id.fetch_add(1, Ordering::Relaxed);
            match stream.try_clone() {
                Ok(handle) => list.push((id, handle)),
                Err(e) => {
                    eprintln!("arch serve: {e}");
                    continue;
                }
            }
            drop(list);
            let clients = &clients;
            let quiet = ctx.quiet;
            scope.spawn(move || {
                match client(stream, offers, limits) {
                    Err(e) if !quiet && e.kind() != io::ErrorKind::UnexpectedEof => {
                        eprintln!("arch serve: client {id} dropped: {e}")
                    }
                    Ok(Some((export, stats))) if !quiet && stats.errors > 0 => eprintln!(
                        "arch serve: client {id} of {export} left: {} of its {} requests failed",
                        stats.errors, stats.requests
                    ),
                    _ => {}
                }
                // Its slot is free once its connection is gone, before the flush below: the
                // next client (with --shared 1, e.g. `qemu-io` right after `qemu-img`) does
                // not wait while a slow store takes the write-back. The flush runs beside the
                // next client's requests, as flushes of several clients do.
                clients.lock().unwrap().retain(|(i, _)| *i != id);
                if let Some(w) = slot_freed {
                    w.ring();
                }
                // Writes a client left unflushed (staged blocks, a remote store's write-back
                // cache) are flushed when it leaves. At shutdown the scope joins this thread
                // before the final flush of every volume.
                for s in served {
                    if let Err(e) = s.flush_on_disconnect() {
                        eprintln!("arch serve: {}: flush after client {id} left: {e}", s.name);
                    }
                }
            });
        }
        // Stop reading requests; a request being executed is completed and answered. A client
        // that does not take its replies within the grace period is cut off.
        for (_, s) in clients.lock().unwrap().iter() {
            s.shutdown(Shutdown::Read);
        }
        let grace = Instant::now() + SHUTDOWN_GRACE;
        while Instant::now() < grace && !clients.lock().unwrap().is_empty() {
            std::thread::sleep(Duration::from_millis(20));
        }
        for (_, s) in clients.lock().unwrap().iter() {
            s.shutdown(Shutdown::Both);
        }
    });
}

/// Requests of one client executed at once (reads and writes of different blocks in
/// parallel).
const WORKERS: usize = 4;

/// Serves one client: its export's name and counters once it leaves, None when it left
/// before choosing an export.
fn client(
    mut stream: Stream,
    offers: &[Offer],
    limits: &Limits,
) -> io::Result<Option<(String, nbd::transmission::Stats)>> {
    let mut haggling = Deadline {
        stream: &mut stream,
        deadline: Instant::now() + limits.handshake,
    };
    let Some(session) = nbd::handshake(&mut haggling, offers, limits.multi_conn)? else {
        return Ok(None);
    };
    // Transmission: a client may stay idle as long as it likes, but takes its replies.
    stream.set_timeouts(None, Some(REPLY_TIMEOUT))?;
    let mut r = BufReader::with_capacity(256 << 10, stream.try_clone()?);
    // Unbuffered: each reply is assembled whole (or written as header and data in one
    // vectored write) and sent at once.
    let mut w = Replies(stream);
    let offer = &offers[session.export];
    let stats = nbd::serve(&mut r, &mut w, offer.export, &session, WORKERS)?;
    Ok(Some((offer.name.clone(), stats)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn no_space_inside_a_partial_write_or_a_task_is_enospc() {
        let full = || Error::NoSpace {
            path: "volumes/x/1/3".into(),
        };
        let partial = Error::PartialWrite {
            volume: "vm1".into(),
            changes: "block 3".into(),
            cause: Box::new(full()),
        };
        let task = Error::InTask {
            task: "FixPartitionTable".into(),
            source: Box::new(partial),
        };
        assert_eq!(errno(&full()), nbd::wire::ENOSPC);
        assert_eq!(errno(&task), nbd::wire::ENOSPC);
        assert_eq!(errno(&Error::invalid("x")), nbd::wire::EINVAL);
        let io = Error::io("read", "f", io::ErrorKind::Other.into());
        assert_eq!(errno(&io), nbd::wire::EIO);
    }
}
