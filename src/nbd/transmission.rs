//! The transmission phase: requests read one after the other, each answered before the next
//! is read (so a request is never left half-done when the loop ends). READ and BLOCK_STATUS
//! use structured replies when negotiated; the other commands simple replies (the spec allows
//! both). A request the server cannot frame (bad magic, a write longer than the maximum
//! payload, a disconnect mid-request) ends the connection with an error; a request that is
//! merely wrong (past the end, unknown command or flag, write to a read-only export) gets the
//! errno the spec names and the connection goes on.

use super::reply::{ReplyStream, send};
use super::wire::*;
use super::{Export, Failure, Session, SharedData};
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, mpsc};

/// Most payload bytes one connection holds at once (write data read in and not yet applied,
/// read data not yet sent): a client pipelining many large requests waits for replies to go
/// out instead of growing the server's memory. One request of [`MAX_PAYLOAD`] always fits.
pub const MAX_BUFFERED: usize = 64 << 20;

/// A worker keeps its reply buffers between requests only up to this size (4 MiB of data:
/// the requests of qemu and nbdcopy fit).
const KEPT_BUFFER: usize = 4 << 20;

/// Counters of one connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests read (DISC included).
    pub requests: u64,
    /// Requests answered with an error.
    pub errors: u64,
}

/// The payload bytes a connection holds, bounded by [`MAX_BUFFERED`].
struct Budget {
    used: Mutex<usize>,
    freed: Condvar,
}

impl Budget {
    /// Waits until `n` more bytes (at most the whole budget) fit, and takes them.
    fn take(&self, n: usize) -> usize {
        let n = n.min(MAX_BUFFERED);
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        while *used + n > MAX_BUFFERED {
            used = self.freed.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += n;
        n
    }

    fn give(&self, n: usize) {
        *self.used.lock().unwrap_or_else(|e| e.into_inner()) -= n;
        self.freed.notify_all();
    }
}

/// Serves requests from `r`, replying on `w`, until NBD_CMD_DISC or end of input between
/// requests (`Ok`); `Err` when the stream broke or could not be framed. The calling thread
/// reads requests (and write payloads); `workers` threads execute them, so replies may come
/// out of order (the cookie names the request); with one worker they come in order. Every
/// request read is executed and answered before this returns, unless writing a reply failed:
/// from then on the stream is broken, requests still queued are dropped unexecuted and no
/// more are read (the client cannot learn their outcome).
pub fn serve<R: Read, W: ReplyStream + Send>(
    r: &mut R,
    w: &mut W,
    export: &dyn Export,
    session: &Session,
    workers: usize,
) -> io::Result<Stats> {
    let out: Mutex<(&mut W, Option<io::Error>)> = Mutex::new((w, None));
    let broken = AtomicBool::new(false);
    let budget = Budget {
        used: Mutex::new(0),
        freed: Condvar::new(),
    };
    let errors = AtomicU64::new(0);
    let mut requests = 0;
    let (tx, rx) = mpsc::sync_channel::<(Request, Vec<u8>, usize)>(workers.max(1) * 2);
    let rx = Mutex::new(rx);
    let read = std::thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            scope.spawn(|| {
                // A reply is `frame` (headers, small payloads) then a READ's data: bytes the
                // export hands out (`shared`, sent as they are) or `read_data`, which only
                // grows and keeps its bytes between requests, so a read fills it in place:
                // no zero-fill, no copy to assemble the reply.
                let mut frame = Vec::new();
                let mut read_data = Vec::new();
                let mut shared: Option<SharedData> = None;
                loop {
                    let job = rx.lock().expect("request queue").recv();
                    let Ok((req, data, held)) = job else { return };
                    if !broken.load(Ordering::Acquire) {
                        frame.clear();
                        let mut buffers = Buffers {
                            frame: &mut frame,
                            read_data: &mut read_data,
                            shared: &mut shared,
                        };
                        let result = handle(&req, &data, export, session, &mut buffers);
                        drop(data);
                        let sent = match result {
                            Ok(n) => n,
                            Err(f) => {
                                errors.fetch_add(1, Ordering::Relaxed);
                                frame.clear();
                                shared = None;
                                reply_error(&mut frame, &req, session, &f);
                                0
                            }
                        };
                        let mut o = out.lock().expect("reply stream");
                        if o.1.is_none() {
                            let w = &mut *o.0;
                            let r = send(w, &frame, shared.as_ref(), &read_data[..sent]);
                            if let Err(e) = r.and_then(|()| w.flush()) {
                                o.1 = Some(e);
                                broken.store(true, Ordering::Release);
                            }
                        }
                        drop(o);
                        shared = None;
                    }
                    budget.give(held);
                    if req.kind == CMD_READ && !broken.load(Ordering::Acquire) {
                        export.read_ahead();
                    }
                    if frame.capacity() > KEPT_BUFFER {
                        frame = Vec::new();
                    }
                    if read_data.len() > KEPT_BUFFER {
                        read_data = Vec::new();
                    }
                }
            });
        }
        let tx = tx;
        loop {
            let mut head = [0u8; Request::LEN];
            if broken.load(Ordering::Acquire) || !read_full_or_eof(r, &mut head)? {
                return Ok(());
            }
            let Some(req) = Request::decode(&head) else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "bad request magic",
                ));
            };
            requests += 1;
            if req.kind == CMD_DISC {
                return Ok(());
            }
            let mut data = Vec::new();
            if req.kind == CMD_WRITE && req.length > MAX_PAYLOAD {
                // The payload cannot be taken in safely: drop the client, as qemu-nbd does.
                return Err(io::Error::new(io::ErrorKind::InvalidData, "write too long"));
            }
            // Reads hold their reply's size until it is sent, writes their payload's.
            let held = match req.kind {
                CMD_READ | CMD_WRITE => budget.take(req.length.min(MAX_PAYLOAD) as usize),
                _ => 0,
            };
            if req.kind == CMD_WRITE {
                // Read straight into spare capacity: no zero-fill of the payload first.
                data.reserve_exact(req.length as usize);
                let got = r.take(req.length as u64).read_to_end(&mut data);
                if !matches!(got, Ok(n) if n == req.length as usize) {
                    budget.give(held);
                    return Err(got.err().unwrap_or(io::ErrorKind::UnexpectedEof.into()));
                }
            }
            if tx.send((req, data, held)).is_err() {
                budget.give(held);
                return Ok(());
            }
        }
    });
    let (_, write_error) = out.into_inner().expect("reply stream");
    if let Some(e) = write_error {
        return Err(e);
    }
    read?;
    Ok(Stats {
        requests,
        errors: errors.into_inner(),
    })
}

/// Reads exactly `buf.len()` bytes; false on a clean end of input before the first byte.
fn read_full_or_eof(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

const KNOWN_FLAGS: u16 = CMD_FLAG_FUA | CMD_FLAG_NO_HOLE | CMD_FLAG_DF | CMD_FLAG_REQ_ONE;

/// Where one reply is assembled (see [`handle`]).
struct Buffers<'b> {
    frame: &'b mut Vec<u8>,
    read_data: &'b mut Vec<u8>,
    shared: &'b mut Option<SharedData>,
}

/// Executes one request, appending its reply to `b.frame`; a READ's data is either handed
/// out by the export (into `b.shared`, 0 returned) or goes into the first bytes of
/// `b.read_data` (grown as needed) and their count is returned (0 for the other commands):
/// the reply is the frame followed by that data.
fn handle(
    req: &Request,
    data: &[u8],
    export: &dyn Export,
    session: &Session,
    b: &mut Buffers<'_>,
) -> Result<usize, Failure> {
    let (w, read_data) = (&mut *b.frame, &mut *b.read_data);
    if req.flags & !KNOWN_FLAGS != 0 {
        return Err(Failure::new(EINVAL, "unknown command flags"));
    }
    let fua = req.flags & CMD_FLAG_FUA != 0;
    let size = export.size();
    let in_range = |len: u64| req.offset <= size && len <= size - req.offset;
    let len = req.length as u64;
    let writes = matches!(req.kind, CMD_WRITE | CMD_TRIM | CMD_WRITE_ZEROES);
    if writes && export.read_only() {
        return Err(Failure::new(EPERM, "the export is read-only"));
    }
    let result = match req.kind {
        CMD_READ => {
            if req.length > MAX_PAYLOAD {
                return Err(Failure::new(EINVAL, "read longer than the maximum payload"));
            }
            if !in_range(len) {
                return Err(Failure::new(EINVAL, "read past the end of the export"));
            }
            // The data is sent from where the export holds it, or read straight into the
            // buffer it is sent from (one copy).
            let n = req.length as usize;
            let ready = match export.read_shared(req.offset, n)? {
                Some(d) if d.len() == n => Some(d),
                Some(_) => return Err(Failure::new(EIO, "the export handed out a short read")),
                None => None,
            };
            let n = if let Some(d) = ready {
                *b.shared = Some(d);
                0
            } else {
                if read_data.len() < n {
                    read_data.resize(n, 0);
                }
                export.read(req.offset, &mut read_data[..n])?;
                n
            };
            if session.structured {
                let head = chunk_header(
                    REPLY_FLAG_DONE,
                    REPLY_TYPE_OFFSET_DATA,
                    req.cookie,
                    8 + req.length,
                );
                w.extend_from_slice(&head);
                w.extend_from_slice(&req.offset.to_be_bytes());
            } else {
                w.extend_from_slice(&simple_reply(0, req.cookie));
            }
            return Ok(n);
        }
        CMD_WRITE if !in_range(len) => Err(Failure::new(ENOSPC, "write past the end")),
        CMD_WRITE => export.write(req.offset, data, fua),
        CMD_FLUSH => export.flush(),
        CMD_TRIM | CMD_WRITE_ZEROES if !in_range(len) => {
            Err(Failure::new(ENOSPC, "range past the end of the export"))
        }
        CMD_TRIM => export.zero(req.offset, len, true, fua),
        CMD_WRITE_ZEROES => export.zero(req.offset, len, false, fua),
        // Advisory: every read goes to storage anyway, so there is nothing to prefetch into.
        CMD_CACHE if !in_range(len) => Err(Failure::new(EINVAL, "range past the end")),
        CMD_CACHE => Ok(()),
        CMD_BLOCK_STATUS => return block_status(req, export, session, w).map(|()| 0),
        _ => Err(Failure::new(
            EINVAL,
            format!("unknown command {}", req.kind),
        )),
    };
    if result.is_ok() {
        w.extend_from_slice(&simple_reply(0, req.cookie));
    }
    result.map(|()| 0)
}

fn block_status(
    req: &Request,
    export: &dyn Export,
    session: &Session,
    w: &mut Vec<u8>,
) -> Result<(), Failure> {
    if !session.base_allocation {
        return Err(Failure::new(EINVAL, "no meta context was negotiated"));
    }
    let size = export.size();
    let len = req.length as u64;
    if len == 0 || req.offset > size || len > size - req.offset {
        return Err(Failure::new(EINVAL, "block status past the end"));
    }
    let one = req.flags & CMD_FLAG_REQ_ONE != 0;
    let extents = export.extents(req.offset, len, one)?;
    // The spec: extents in order, none empty, together at most the requested length.
    let mut payload = BASE_ALLOCATION_ID.to_be_bytes().to_vec();
    let mut left = len;
    for e in extents {
        let n = e.length.min(left);
        if n == 0 {
            continue;
        }
        payload.extend_from_slice(&(n as u32).to_be_bytes());
        payload.extend_from_slice(&e.flags.to_be_bytes());
        left -= n;
        if left == 0 || one {
            break;
        }
    }
    if payload.len() == 4 {
        return Err(Failure::new(EIO, "no extent"));
    }
    let head = chunk_header(
        REPLY_FLAG_DONE,
        REPLY_TYPE_BLOCK_STATUS,
        req.cookie,
        payload.len() as u32,
    );
    w.extend_from_slice(&head);
    w.extend_from_slice(&payload);
    Ok(())
}

/// Appends the error reply of `req` to `w`: an error chunk for READ and BLOCK_STATUS once
/// structured replies are on, a simple reply otherwise.
fn reply_error(w: &mut Vec<u8>, req: &Request, s: &Session, f: &Failure) {
    let structured_only = req.kind == CMD_READ || req.kind == CMD_BLOCK_STATUS;
    if s.structured && structured_only {
        let msg = &f.message.as_bytes()[..f.message.len().min(4096)];
        let head = chunk_header(
            REPLY_FLAG_DONE,
            REPLY_TYPE_ERROR,
            req.cookie,
            6 + msg.len() as u32,
        );
        w.extend_from_slice(&head);
        w.extend_from_slice(&f.errno.to_be_bytes());
        w.extend_from_slice(&(msg.len() as u16).to_be_bytes());
        w.extend_from_slice(msg);
    } else {
        w.extend_from_slice(&simple_reply(f.errno, req.cookie));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nbd::Extent;
    use crate::nbd::testing::{MemExport, request as req};
    use std::io::{IoSlice, Write};

    fn run(e: &MemExport, s: &Session, input: Vec<u8>) -> (io::Result<Stats>, Vec<u8>) {
        let mut out = Vec::new();
        let r = serve(&mut io::Cursor::new(input), &mut out, e, s, 1);
        (r, out)
    }

    const SIMPLE: Session = Session {
        export: 0,
        structured: false,
        base_allocation: false,
    };
    const STRUCT: Session = Session {
        export: 0,
        structured: true,
        base_allocation: true,
    };

    #[test]
    fn write_then_read_simple() {
        let e = MemExport::new(1 << 16, false);
        let mut input = req(CMD_WRITE, CMD_FLAG_FUA, 1, 100, 5);
        input.extend_from_slice(b"hello");
        input.extend(req(CMD_READ, 0, 2, 99, 7));
        input.extend(req(CMD_FLUSH, 0, 3, 0, 0));
        input.extend(req(CMD_DISC, 0, 4, 0, 0));
        let (r, out) = run(&e, &SIMPLE, input);
        assert_eq!(r.unwrap().errors, 0);
        assert_eq!(out[..16], simple_reply(0, 1));
        assert_eq!(out[16..32], simple_reply(0, 2));
        assert_eq!(&out[32..39], b"\0hello\0");
        assert_eq!(out[39..55], simple_reply(0, 3));
        assert_eq!(out.len(), 55);
        assert_eq!(e.flushes(), 2, "FUA and FLUSH");
    }

    #[test]
    fn wrong_requests_get_errors_and_the_connection_goes_on() {
        let e = MemExport::new(4096, false);
        let mut input = req(CMD_READ, 0, 1, 4000, 200); // past the end
        input.extend(req(42, 0, 2, 0, 0)); // unknown command
        input.extend(req(CMD_READ, 1 << 9, 3, 0, 1)); // unknown flag
        input.extend(req(CMD_WRITE, 0, 4, 4095, 2)); // write past the end (payload consumed)
        input.extend_from_slice(b"xy");
        input.extend(req(CMD_BLOCK_STATUS, 0, 5, 0, 4096)); // no context negotiated
        input.extend(req(CMD_READ, 0, 6, 0, 1));
        let (r, out) = run(&e, &SIMPLE, input);
        assert_eq!(r.unwrap().errors, 5);
        assert_eq!(out[..16], simple_reply(EINVAL, 1));
        assert_eq!(out[16..32], simple_reply(EINVAL, 2));
        assert_eq!(out[32..48], simple_reply(EINVAL, 3));
        assert_eq!(out[48..64], simple_reply(ENOSPC, 4));
        assert_eq!(out[64..80], simple_reply(EINVAL, 5));
        assert_eq!(out[80..96], simple_reply(0, 6));
        assert_eq!(out.len(), 97);
    }

    #[test]
    fn read_only_refuses_writes_and_garbage_drops() {
        let e = MemExport::new(4096, true);
        let mut input = req(CMD_TRIM, 0, 1, 0, 4096);
        input.extend(b"garbage garbage garbage garbage!!");
        let (r, out) = run(&e, &SIMPLE, input);
        assert!(r.is_err());
        assert_eq!(out, simple_reply(EPERM, 1));
        // Disconnect in the middle of a write payload: an error, nothing written.
        let e = MemExport::new(4096, false);
        let mut input = req(CMD_WRITE, 0, 1, 0, 100);
        input.extend_from_slice(&[7u8; 50]);
        assert!(run(&e, &SIMPLE, input).0.is_err());
        assert_eq!(e.data(), vec![0u8; 4096]);
        // An oversized write is dropped without reading its payload.
        let input = req(CMD_WRITE, 0, 1, 0, MAX_PAYLOAD + 1);
        assert!(run(&e, &SIMPLE, input).0.is_err());
    }

    #[test]
    fn structured_read_block_status_and_error_chunks() {
        let e = MemExport::new(8192, false);
        let mut input = req(CMD_WRITE, 0, 1, 0, 1);
        input.push(9);
        input.extend(req(CMD_READ, 0, 2, 0, 2));
        input.extend(req(CMD_BLOCK_STATUS, 0, 3, 0, 8192));
        input.extend(req(CMD_READ, 0, 4, 8192, 1));
        let (r, out) = run(&e, &STRUCT, input);
        r.unwrap();
        assert_eq!(out[..16], simple_reply(0, 1));
        let o = &out[16..];
        assert_eq!(
            o[..20],
            chunk_header(REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, 2, 10)
        );
        assert_eq!(be64(&o[20..28]), 0);
        assert_eq!(&o[28..30], &[9, 0]);
        let o = &o[30..];
        // MemExport: data for its first 4096 bytes, a hole after.
        assert_eq!(
            o[..20],
            chunk_header(REPLY_FLAG_DONE, REPLY_TYPE_BLOCK_STATUS, 3, 20)
        );
        assert_eq!(be32(&o[20..24]), BASE_ALLOCATION_ID);
        assert_eq!((be32(&o[24..28]), be32(&o[28..32])), (4096, 0));
        assert_eq!(
            (be32(&o[32..36]), be32(&o[36..40])),
            (4096, STATE_HOLE | STATE_ZERO)
        );
        let o = &o[40..];
        assert_eq!(be16(&o[6..8]), REPLY_TYPE_ERROR);
        assert_eq!(be32(&o[20..24]), EINVAL);
    }

    /// A reply stream that fails at once: the client stopped reading or went away.
    struct Broken;
    impl ReplyStream for Broken {}
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn after_a_failed_reply_no_further_request_is_executed() {
        let e = MemExport::new(4096, false);
        let mut input = Vec::new();
        for i in 0..20u64 {
            input.extend(req(CMD_WRITE, 0, i, i, 1));
            input.push(1);
        }
        let r = serve(&mut io::Cursor::new(input), &mut Broken, &e, &SIMPLE, 1);
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
        let applied = e.data().iter().filter(|&&b| b == 1).count();
        assert_eq!(applied, 1, "only the request whose reply failed ran");
    }

    /// An export whose reads wait (up to a while) for a third concurrent reader, recording the
    /// most reads ever running at once.
    struct Gate {
        running: Mutex<usize>,
        most: Mutex<usize>,
        changed: std::sync::Condvar,
    }
    impl Export for Gate {
        fn size(&self) -> u64 {
            1 << 30
        }
        fn read_only(&self) -> bool {
            true
        }
        fn preferred_block_size(&self) -> u32 {
            4096
        }
        fn read(&self, _: u64, out: &mut [u8]) -> Result<(), Failure> {
            let mut n = self.running.lock().unwrap();
            *n += 1;
            let mut most = self.most.lock().unwrap();
            *most = (*most).max(*n);
            drop(most);
            self.changed.notify_all();
            let wait = std::time::Duration::from_millis(300);
            let (mut n, _) = self
                .changed
                .wait_timeout_while(n, wait, |n| *n < 3)
                .unwrap();
            *n -= 1;
            out.fill(1);
            Ok(())
        }
        fn write(&self, _: u64, _: &[u8], _: bool) -> Result<(), Failure> {
            unreachable!()
        }
        fn flush(&self) -> Result<(), Failure> {
            Ok(())
        }
        fn zero(&self, _: u64, _: u64, _: bool, _: bool) -> Result<(), Failure> {
            unreachable!()
        }
        fn extents(&self, _: u64, _: u64, _: bool) -> Result<Vec<Extent>, Failure> {
            unreachable!()
        }
    }

    #[test]
    fn a_connection_holds_a_bounded_amount_of_payload() {
        let g = Gate {
            running: Mutex::new(0),
            most: Mutex::new(0),
            changed: std::sync::Condvar::new(),
        };
        // 24 MiB reads: two fit in the budget, a third waits for a reply to go out.
        let len = 24u32 << 20;
        let mut input = Vec::new();
        for c in 0..6u64 {
            input.extend(req(CMD_READ, 0, c, 0, len));
        }
        let mut out = io::sink();
        let stats = serve(&mut io::Cursor::new(input), &mut out, &g, &SIMPLE, 4).unwrap();
        assert_eq!((stats.requests, stats.errors), (6, 0));
        assert_eq!(*g.most.lock().unwrap(), 2);
    }

    /// An export whose allocation answers are sloppy: empty runs and runs past the range;
    /// it records whether each question wanted one extent only.
    struct Sloppy(MemExport, Mutex<Vec<bool>>);
    impl Export for Sloppy {
        fn size(&self) -> u64 {
            self.0.size()
        }
        fn read_only(&self) -> bool {
            true
        }
        fn preferred_block_size(&self) -> u32 {
            4096
        }
        fn read(&self, o: u64, out: &mut [u8]) -> Result<(), Failure> {
            self.0.read(o, out)
        }
        fn write(&self, _: u64, _: &[u8], _: bool) -> Result<(), Failure> {
            unreachable!()
        }
        fn flush(&self) -> Result<(), Failure> {
            Ok(())
        }
        fn zero(&self, _: u64, _: u64, _: bool, _: bool) -> Result<(), Failure> {
            unreachable!()
        }
        fn extents(&self, _: u64, _: u64, one: bool) -> Result<Vec<Extent>, Failure> {
            self.1.lock().unwrap().push(one);
            let e = |length, flags| Extent { length, flags };
            Ok(vec![
                e(0, 0),
                e(100, 0),
                e(0, STATE_HOLE),
                e(1 << 40, STATE_ZERO),
            ])
        }
    }

    #[test]
    fn block_status_extents_are_trimmed_to_the_request_and_never_empty() {
        let e = Sloppy(MemExport::new(8192, true), Mutex::new(Vec::new()));
        let mut input = req(CMD_BLOCK_STATUS, 0, 1, 0, 1000);
        input.extend(req(CMD_BLOCK_STATUS, CMD_FLAG_REQ_ONE, 2, 0, 50));
        let mut out = Vec::new();
        serve(&mut io::Cursor::new(input), &mut out, &e, &STRUCT, 1).unwrap();
        assert_eq!(
            out[..20],
            chunk_header(REPLY_FLAG_DONE, REPLY_TYPE_BLOCK_STATUS, 1, 20)
        );
        assert_eq!((be32(&out[24..28]), be32(&out[28..32])), (100, 0));
        assert_eq!((be32(&out[32..36]), be32(&out[36..40])), (900, STATE_ZERO));
        let o = &out[40..];
        assert_eq!(
            o[..20],
            chunk_header(REPLY_FLAG_DONE, REPLY_TYPE_BLOCK_STATUS, 2, 12)
        );
        assert_eq!((be32(&o[24..28]), be32(&o[28..32])), (50, 0));
        assert_eq!(o.len(), 32);
        assert_eq!(
            *e.1.lock().unwrap(),
            [false, true],
            "REQ_ONE reaches the export"
        );
    }

    /// A stream that takes at most 7 bytes per call, vectored or not, and is interrupted
    /// every third call.
    struct Trickle(Vec<u8>, usize);
    impl ReplyStream for Trickle {}
    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.1 += 1;
            if self.1 % 3 == 0 {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let n = buf.len().min(7);
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            self.write(&all)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_read_reply_goes_out_whole_however_the_stream_splits_it() {
        let e = MemExport::new(1 << 16, false);
        let data: Vec<u8> = (0..1u32 << 16).map(|i| (i % 253) as u8).collect();
        e.write(0, &data, false).unwrap();
        let mut input = req(CMD_READ, 0, 1, 1000, 5000);
        input.extend(req(CMD_READ, 0, 2, 0, 1 << 16));
        input.extend(req(CMD_READ, 0, 3, 70000, 1)); // past the end: header only
        let mut out = Trickle(Vec::new(), 0);
        serve(&mut io::Cursor::new(input), &mut out, &e, &STRUCT, 1).unwrap();
        let o = out.0;
        let head = |c, n: u32| chunk_header(REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, c, 8 + n);
        assert_eq!(o[..20], head(1, 5000));
        assert_eq!(&o[28..5028], &data[1000..6000]);
        let o = &o[5028..];
        assert_eq!(o[..20], head(2, 1 << 16));
        assert_eq!(&o[28..28 + (1 << 16)], &data[..]);
        let o = &o[28 + (1 << 16)..];
        assert_eq!(be16(&o[6..8]), REPLY_TYPE_ERROR);
        assert_eq!(be32(&o[20..24]), EINVAL);
    }

    #[test]
    fn parallel_workers_answer_every_request_by_its_cookie() {
        let e = MemExport::new(1 << 16, false);
        let data: Vec<u8> = (0..1u32 << 16).map(|i| (i % 251) as u8).collect();
        e.write(0, &data, false).unwrap();
        let mut input = Vec::new();
        for c in 0..64u64 {
            input.extend(req(CMD_READ, 0, c, c * 1000, 100));
        }
        let mut out = Vec::new();
        let stats = serve(&mut io::Cursor::new(input), &mut out, &e, &SIMPLE, 4).unwrap();
        assert_eq!(stats.requests, 64);
        let mut seen = std::collections::BTreeSet::new();
        for reply in out.chunks(116) {
            assert_eq!(be32(&reply[4..8]), 0);
            let c = be64(&reply[8..16]);
            let o = (c * 1000) as usize;
            assert_eq!(&reply[16..], &data[o..o + 100], "cookie {c}");
            seen.insert(c);
        }
        assert_eq!(seen.len(), 64);
    }

    /// Hands out reads inside its first 4096 bytes as shared data, and a wrong-sized one at
    /// 4096; counts read-ahead calls.
    struct Handing {
        inner: MemExport,
        aheads: AtomicU64,
    }
    impl Export for Handing {
        fn size(&self) -> u64 {
            self.inner.size()
        }
        fn read_only(&self) -> bool {
            false
        }
        fn preferred_block_size(&self) -> u32 {
            4096
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), Failure> {
            self.inner.read(offset, out)
        }
        fn read_shared(&self, offset: u64, len: usize) -> Result<Option<SharedData>, Failure> {
            let o = offset as usize;
            Ok(match o {
                4096 => Some(SharedData::Bytes(Box::new(vec![0u8; len + 1]))),
                _ if o + len <= 4096 => Some(SharedData::Bytes(Box::new(
                    self.inner.data()[o..o + len].to_vec(),
                ))),
                _ => None,
            })
        }
        fn read_ahead(&self) {
            self.aheads.fetch_add(1, Ordering::Relaxed);
        }
        fn write(&self, offset: u64, data: &[u8], fua: bool) -> Result<(), Failure> {
            self.inner.write(offset, data, fua)
        }
        fn flush(&self) -> Result<(), Failure> {
            self.inner.flush()
        }
        fn zero(&self, offset: u64, length: u64, trim: bool, fua: bool) -> Result<(), Failure> {
            self.inner.zero(offset, length, trim, fua)
        }
        fn extents(&self, offset: u64, length: u64, one: bool) -> Result<Vec<Extent>, Failure> {
            self.inner.extents(offset, length, one)
        }
    }

    #[test]
    fn handed_out_read_data_is_sent_as_is_and_each_read_is_followed_by_read_ahead() {
        let e = Handing {
            inner: MemExport::new(8192, false),
            aheads: AtomicU64::new(0),
        };
        let data: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
        e.inner.write(0, &data, false).unwrap();
        let mut input = req(CMD_READ, 0, 1, 10, 100); // handed out
        input.extend(req(CMD_READ, 0, 2, 4000, 200)); // read into the buffer
        input.extend(req(CMD_READ, 0, 3, 4096, 2)); // handed out at the wrong size: EIO
        input.extend(req(CMD_FLUSH, 0, 4, 0, 0));
        let (r, out) = {
            let mut out = Vec::new();
            let r = serve(&mut io::Cursor::new(input), &mut out, &e, &STRUCT, 1);
            (r, out)
        };
        assert_eq!(r.unwrap().errors, 1);
        let o = &out[..];
        assert_eq!(
            o[..20],
            chunk_header(REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, 1, 108)
        );
        assert_eq!(&o[28..128], &data[10..110]);
        let o = &o[128..];
        assert_eq!(be64(&o[20..28]), 4000);
        assert_eq!(&o[28..228], &data[4000..4200]);
        let o = &o[228..];
        assert_eq!(be16(&o[6..8]), REPLY_TYPE_ERROR);
        assert_eq!(be32(&o[20..24]), EIO);
        let o = &o[26 + be16(&o[24..26]) as usize..];
        assert_eq!(o, simple_reply(0, 4));
        assert_eq!(e.aheads.load(Ordering::Relaxed), 3, "after each READ only");
    }
}
