//! The transmission phase: requests read one after the other, each answered before the next
//! is read (so a request is never left half-done when the loop ends). READ and BLOCK_STATUS
//! use structured replies when negotiated; the other commands simple replies (the spec allows
//! both). A request the server cannot frame (bad magic, a write longer than the maximum
//! payload, a disconnect mid-request) ends the connection with an error; a request that is
//! merely wrong (past the end, unknown command or flag, write to a read-only export) gets the
//! errno the spec names and the connection goes on.

use super::wire::*;
use super::{Export, Failure, Session};
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, mpsc};

/// Counters of one connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub requests: u64,
    pub errors: u64,
}

/// Serves requests from `r`, replying on `w`, until NBD_CMD_DISC or end of input between
/// requests (`Ok`); `Err` when the stream broke or could not be framed. The calling thread
/// reads requests (and write payloads); `workers` threads execute them, so replies may come
/// out of order (the cookie names the request); with one worker they come in order. Every
/// request read is executed and answered before this returns.
pub fn serve<R: Read, W: Write + Send>(
    r: &mut R,
    w: &mut W,
    export: &dyn Export,
    session: &Session,
    workers: usize,
) -> io::Result<Stats> {
    let out: Mutex<(&mut W, Option<io::Error>)> = Mutex::new((w, None));
    let errors = AtomicU64::new(0);
    let mut requests = 0;
    let (tx, rx) = mpsc::sync_channel::<(Request, Vec<u8>)>(workers.max(1) * 2);
    let rx = Mutex::new(rx);
    let read = std::thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            scope.spawn(|| {
                loop {
                    let job = rx.lock().expect("request queue").recv();
                    let Ok((req, data)) = job else { return };
                    let mut frame = Vec::new();
                    let result = handle(&req, &data, export, session, &mut frame);
                    if let Err(f) = result {
                        errors.fetch_add(1, Ordering::Relaxed);
                        frame.clear();
                        reply_error(&mut frame, &req, session, &f);
                    }
                    let mut o = out.lock().expect("reply stream");
                    if o.1.is_none() {
                        if let Err(e) = o.0.write_all(&frame).and_then(|()| o.0.flush()) {
                            o.1 = Some(e);
                        }
                    }
                }
            });
        }
        let tx = tx;
        loop {
            let mut head = [0u8; Request::LEN];
            if !read_full_or_eof(r, &mut head)? {
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
            if req.kind == CMD_WRITE {
                if req.length > MAX_PAYLOAD {
                    // The payload cannot be taken in safely: drop the client, as qemu-nbd does.
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "write too long"));
                }
                data.resize(req.length as usize, 0);
                r.read_exact(&mut data)?;
            }
            if tx.send((req, data)).is_err() {
                return Ok(());
            }
        }
    });
    let (_, write_error) = out.into_inner().expect("reply stream");
    read?;
    if let Some(e) = write_error {
        return Err(e);
    }
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

/// Executes one request. The outer error is the stream's; the inner one the request's.
fn handle(
    req: &Request,
    data: &[u8],
    export: &dyn Export,
    session: &Session,
    w: &mut Vec<u8>,
) -> Result<(), Failure> {
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
            // The data is read straight into the reply frame (one copy).
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
            let start = w.len();
            w.resize(start + req.length as usize, 0);
            return export.read(req.offset, &mut w[start..]);
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
        CMD_BLOCK_STATUS => return block_status(req, export, session, w),
        _ => Err(Failure::new(
            EINVAL,
            format!("unknown command {}", req.kind),
        )),
    };
    if result.is_ok() {
        w.extend_from_slice(&simple_reply(0, req.cookie));
    }
    result
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
    let mut extents = export.extents(req.offset, len)?;
    if extents.is_empty() {
        return Err(Failure::new(EIO, "no extent"));
    }
    if req.flags & CMD_FLAG_REQ_ONE != 0 {
        extents.truncate(1);
    }
    let mut payload = BASE_ALLOCATION_ID.to_be_bytes().to_vec();
    for e in &extents {
        payload.extend_from_slice(&(e.length.min(len) as u32).to_be_bytes());
        payload.extend_from_slice(&e.flags.to_be_bytes());
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
    use crate::nbd::testing::MemExport;

    fn req(kind: u16, flags: u16, cookie: u64, offset: u64, length: u32) -> Vec<u8> {
        Request {
            flags,
            kind,
            cookie,
            offset,
            length,
        }
        .encode()
        .to_vec()
    }

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
}
