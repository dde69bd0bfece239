//! The fixed newstyle handshake and option haggling: greeting, client flags, then options
//! until one selects an export (NBD_OPT_GO or NBD_OPT_EXPORT_NAME) or the client aborts.
//! Unknown options get NBD_REP_ERR_UNSUP; malformed ones NBD_REP_ERR_INVALID.

use super::Offer;
use super::wire::*;
use std::io::{self, Read, Write};

/// What the handshake agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Index of the chosen export in the offers.
    pub export: usize,
    pub structured: bool,
    /// `base:allocation` was selected (only with structured replies).
    pub base_allocation: bool,
}

/// Transmission flags of an export.
pub fn transmission_flags(offer: &Offer, multi_conn: bool) -> u16 {
    let mut f = TF_HAS_FLAGS | TF_SEND_FLUSH | TF_SEND_FUA | TF_SEND_DF | TF_SEND_CACHE;
    if offer.export.read_only() {
        f |= TF_READ_ONLY;
    } else {
        f |= TF_SEND_TRIM | TF_SEND_WRITE_ZEROES;
    }
    if multi_conn {
        f |= TF_CAN_MULTI_CONN;
    }
    f
}

/// Options one client may send before it chooses an export (qemu and libnbd send a handful).
pub const MAX_OPTIONS: usize = 64;

/// Runs the handshake on `s`. `Ok(None)`: the client aborted or left cleanly before choosing.
/// `multi_conn`: more than one client may share an export with consistent flushes.
pub fn handshake<S: Read + Write>(
    s: &mut S,
    offers: &[Offer],
    multi_conn: bool,
) -> io::Result<Option<Session>> {
    let mut greet = Vec::with_capacity(18);
    greet.extend_from_slice(&NBDMAGIC.to_be_bytes());
    greet.extend_from_slice(&IHAVEOPT.to_be_bytes());
    greet.extend_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    s.write_all(&greet)?;
    let client = read_u32(s)?;
    if client & CLIENT_FIXED_NEWSTYLE == 0
        || client & !(CLIENT_FIXED_NEWSTYLE | CLIENT_NO_ZEROES) != 0
    {
        return Err(invalid(
            "client flags without fixed newstyle, or unknown flags",
        ));
    }
    let no_zeroes = client & CLIENT_NO_ZEROES != 0;
    let mut structured = false;
    let mut base_allocation = false;
    for _ in 0..MAX_OPTIONS {
        if read_u64(s)? != IHAVEOPT {
            return Err(invalid("option without the IHAVEOPT magic"));
        }
        let option = read_u32(s)?;
        let length = read_u32(s)?;
        if length > MAX_OPTION {
            skip(s, length as u64)?;
            reply(s, option, REP_ERR_TOO_BIG, b"option too long")?;
            continue;
        }
        let mut data = vec![0u8; length as usize];
        s.read_exact(&mut data)?;
        match option {
            OPT_EXPORT_NAME => {
                // Strict UTF-8, as for NBD_OPT_GO: no two byte strings name one export.
                let Ok(name) = String::from_utf8(data) else {
                    return Err(invalid("NBD_OPT_EXPORT_NAME that is not UTF-8"));
                };
                // No way to refuse: an unknown name drops the connection.
                let Some(i) = offers.iter().position(|o| o.name == name) else {
                    return Err(invalid("NBD_OPT_EXPORT_NAME of an unknown export"));
                };
                let mut out = Vec::new();
                out.extend_from_slice(&offers[i].export.size().to_be_bytes());
                out.extend_from_slice(&transmission_flags(&offers[i], multi_conn).to_be_bytes());
                if !no_zeroes {
                    out.extend_from_slice(&[0u8; 124]);
                }
                s.write_all(&out)?;
                return Ok(Some(Session {
                    export: i,
                    structured,
                    base_allocation,
                }));
            }
            OPT_ABORT => {
                // The client may already be gone: a failed ACK is not an error.
                let _ = reply(s, option, REP_ACK, &[]);
                return Ok(None);
            }
            OPT_LIST => {
                if !data.is_empty() {
                    reply(s, option, REP_ERR_INVALID, b"NBD_OPT_LIST takes no data")?;
                    continue;
                }
                for o in offers {
                    let mut p = Vec::new();
                    p.extend_from_slice(&(o.name.len() as u32).to_be_bytes());
                    p.extend_from_slice(o.name.as_bytes());
                    p.extend_from_slice(o.description.as_bytes());
                    reply(s, option, REP_SERVER, &p)?;
                }
                reply(s, option, REP_ACK, &[])?;
            }
            OPT_STRUCTURED_REPLY => {
                if !data.is_empty() {
                    reply(s, option, REP_ERR_INVALID, b"takes no data")?;
                } else {
                    structured = true;
                    reply(s, option, REP_ACK, &[])?;
                }
            }
            OPT_INFO | OPT_GO => match parse_info(&data) {
                None => reply(s, option, REP_ERR_INVALID, b"malformed NBD_OPT_INFO/GO")?,
                Some((name, requests)) => {
                    let Some(i) = offers.iter().position(|o| o.name == name) else {
                        let msg = format!("no export named '{name}'");
                        reply(s, option, REP_ERR_UNKNOWN, msg.as_bytes())?;
                        continue;
                    };
                    send_info(s, option, &offers[i], &requests, multi_conn)?;
                    reply(s, option, REP_ACK, &[])?;
                    if option == OPT_GO {
                        return Ok(Some(Session {
                            export: i,
                            structured,
                            base_allocation,
                        }));
                    }
                }
            },
            OPT_LIST_META_CONTEXT | OPT_SET_META_CONTEXT => {
                let set = option == OPT_SET_META_CONTEXT;
                if !structured {
                    reply(
                        s,
                        option,
                        REP_ERR_INVALID,
                        b"negotiate structured replies first",
                    )?;
                    continue;
                }
                match parse_meta(&data) {
                    Some((name, queries)) if offers.iter().any(|o| o.name == name) => {
                        let matches = queries.is_empty() && !set
                            || queries
                                .iter()
                                .any(|q| q == BASE_ALLOCATION || (!set && q == "base:"));
                        if set {
                            base_allocation = matches;
                        }
                        if matches {
                            let mut p = BASE_ALLOCATION_ID.to_be_bytes().to_vec();
                            p.extend_from_slice(BASE_ALLOCATION.as_bytes());
                            reply(s, option, REP_META_CONTEXT, &p)?;
                        }
                        reply(s, option, REP_ACK, &[])?;
                    }
                    Some((name, _)) => {
                        let msg = format!("no export named '{name}'");
                        reply(s, option, REP_ERR_UNKNOWN, msg.as_bytes())?;
                    }
                    None => reply(s, option, REP_ERR_INVALID, b"malformed meta context query")?,
                }
            }
            _ => reply(s, option, REP_ERR_UNSUP, b"option not supported")?,
        }
    }
    // A client haggling forever would hold its connection slot: dropped.
    Err(invalid("too many options without choosing an export"))
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn reply(s: &mut impl Write, option: u32, kind: u32, data: &[u8]) -> io::Result<()> {
    write_frame(s, &[&option_reply(option, kind, data.len() as u32), data])
}

/// NBD_OPT_INFO/GO data: name length, name, number of info requests, requests.
fn parse_info(d: &[u8]) -> Option<(String, Vec<u16>)> {
    let n = be32(d.get(..4)?) as usize;
    let name = d.get(4..4usize.checked_add(n)?)?;
    let rest = &d[4 + n..];
    let count = be16(rest.get(..2)?) as usize;
    let reqs = rest.get(2..)?;
    if reqs.len() != count * 2 {
        return None;
    }
    let requests = reqs.chunks(2).map(be16).collect();
    Some((String::from_utf8(name.to_vec()).ok()?, requests))
}

/// NBD_OPT_{LIST,SET}_META_CONTEXT data: export name, number of queries, queries.
fn parse_meta(d: &[u8]) -> Option<(String, Vec<String>)> {
    let n = be32(d.get(..4)?) as usize;
    let name = String::from_utf8(d.get(4..4usize.checked_add(n)?)?.to_vec()).ok()?;
    let mut pos = 4 + n;
    let count = be32(d.get(pos..pos + 4)?);
    pos += 4;
    let mut queries = Vec::new();
    for _ in 0..count {
        let len = be32(d.get(pos..pos + 4)?) as usize;
        pos += 4;
        queries.push(String::from_utf8(d.get(pos..pos.checked_add(len)?)?.to_vec()).ok()?);
        pos += len;
    }
    (pos == d.len()).then_some((name, queries))
}

fn send_info(
    s: &mut impl Write,
    option: u32,
    offer: &Offer,
    requests: &[u16],
    multi_conn: bool,
) -> io::Result<()> {
    let mut export = INFO_EXPORT.to_be_bytes().to_vec();
    export.extend_from_slice(&offer.export.size().to_be_bytes());
    export.extend_from_slice(&transmission_flags(offer, multi_conn).to_be_bytes());
    reply(s, option, REP_INFO, &export)?;
    // Block sizes are always sent: minimum 1 (any alignment works), preferred = the block.
    let preferred = offer.export.preferred_block_size();
    let mut sizes = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
    sizes.extend_from_slice(&1u32.to_be_bytes());
    sizes.extend_from_slice(&preferred.to_be_bytes());
    sizes.extend_from_slice(&MAX_PAYLOAD.max(preferred).to_be_bytes());
    reply(s, option, REP_INFO, &sizes)?;
    if requests.contains(&INFO_NAME) {
        let mut p = INFO_NAME.to_be_bytes().to_vec();
        p.extend_from_slice(offer.name.as_bytes());
        reply(s, option, REP_INFO, &p)?;
    }
    if requests.contains(&INFO_DESCRIPTION) && !offer.description.is_empty() {
        let mut p = INFO_DESCRIPTION.to_be_bytes().to_vec();
        p.extend_from_slice(offer.description.as_bytes());
        reply(s, option, REP_INFO, &p)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nbd::testing::{MemExport, Script};

    fn offers(e: &MemExport) -> Vec<Offer<'_>> {
        vec![Offer {
            name: "vm1".into(),
            description: "volume vm1".into(),
            export: e,
        }]
    }

    fn option(kind: u32, data: &[u8]) -> Vec<u8> {
        let mut v = IHAVEOPT.to_be_bytes().to_vec();
        v.extend_from_slice(&kind.to_be_bytes());
        v.extend_from_slice(&(data.len() as u32).to_be_bytes());
        v.extend_from_slice(data);
        v
    }

    fn go(name: &str) -> Vec<u8> {
        let mut d = (name.len() as u32).to_be_bytes().to_vec();
        d.extend_from_slice(name.as_bytes());
        d.extend_from_slice(&0u16.to_be_bytes());
        option(OPT_GO, &d)
    }

    #[test]
    fn go_with_unknown_then_known_export() {
        let e = MemExport::new(1 << 20, false);
        let mut input = 3u32.to_be_bytes().to_vec();
        input.extend(option(OPT_LIST, &[]));
        input.extend(option(99, b"xyz"));
        input.extend(go("nope"));
        input.extend(go("vm1"));
        let mut s = Script::new(input);
        let session = handshake(&mut s, &offers(&e), false).unwrap().unwrap();
        assert_eq!(session.export, 0);
        let out = s.output;
        assert_eq!(&out[..18], b"NBDMAGICIHAVEOPT\x00\x03");
        // LIST: one SERVER reply (4 + 3 + 10 bytes) then ACK.
        let r = &out[18..];
        assert_eq!(be32(&r[12..16]), REP_SERVER);
        assert_eq!(be32(&r[16..20]), 17);
        assert_eq!(&r[20..27], b"\x00\x00\x00\x03vm1");
        let r = &r[37..];
        assert_eq!(be32(&r[12..16]), REP_ACK);
        let r = &r[20..];
        assert_eq!(be32(&r[8..12]), 99);
        assert_eq!(be32(&r[12..16]), REP_ERR_UNSUP);
        let r = &r[20 + be32(&r[16..20]) as usize..];
        assert_eq!(be32(&r[12..16]), REP_ERR_UNKNOWN);
        let r = &r[20 + be32(&r[16..20]) as usize..];
        // GO vm1: INFO_EXPORT (size, flags), INFO_BLOCK_SIZE, ACK.
        assert_eq!(be32(&r[12..16]), REP_INFO);
        assert_eq!(be16(&r[20..22]), INFO_EXPORT);
        assert_eq!(be64(&r[22..30]), 1 << 20);
        assert_eq!(be16(&r[30..32]) & TF_READ_ONLY, 0);
        let r = &r[32..];
        assert_eq!(be16(&r[20..22]), INFO_BLOCK_SIZE);
        assert_eq!(be32(&r[22..26]), 1);
        assert_eq!(be32(&r[26..30]), 65536);
        let r = &r[34..];
        assert_eq!(be32(&r[12..16]), REP_ACK);
        assert_eq!(r.len(), 20);
    }

    #[test]
    fn a_client_that_never_chooses_is_dropped_after_max_options() {
        let e = MemExport::new(4096, true);
        let mut input = 1u32.to_be_bytes().to_vec();
        for _ in 0..MAX_OPTIONS {
            input.extend(option(OPT_LIST, &[]));
        }
        input.extend(go("vm1"));
        let mut s = Script::new(input);
        let err = handshake(&mut s, &offers(&e), false).unwrap_err();
        assert!(err.to_string().contains("too many options"), "{err}");
        // One option fewer: the GO is served.
        let mut input = 1u32.to_be_bytes().to_vec();
        for _ in 0..MAX_OPTIONS - 1 {
            input.extend(option(OPT_LIST, &[]));
        }
        input.extend(go("vm1"));
        let mut s = Script::new(input);
        assert!(handshake(&mut s, &offers(&e), false).unwrap().is_some());
    }

    #[test]
    fn meta_context_needs_structured_replies() {
        let e = MemExport::new(4096, true);
        let mut q = 3u32.to_be_bytes().to_vec();
        q.extend_from_slice(b"vm1");
        q.extend_from_slice(&1u32.to_be_bytes());
        q.extend_from_slice(&15u32.to_be_bytes());
        q.extend_from_slice(BASE_ALLOCATION.as_bytes());
        let mut input = 1u32.to_be_bytes().to_vec();
        input.extend(option(OPT_SET_META_CONTEXT, &q));
        input.extend(option(OPT_STRUCTURED_REPLY, &[]));
        input.extend(option(OPT_SET_META_CONTEXT, &q));
        input.extend(go("vm1"));
        let mut s = Script::new(input);
        let session = handshake(&mut s, &offers(&e), false).unwrap().unwrap();
        assert!(session.structured && session.base_allocation);
        let r = &s.output[18..];
        assert_eq!(be32(&r[12..16]), REP_ERR_INVALID);
    }

    #[test]
    fn export_name_and_abort() {
        let e = MemExport::new(8192, true);
        let mut input = 1u32.to_be_bytes().to_vec();
        input.extend(option(OPT_EXPORT_NAME, b"vm1"));
        let mut s = Script::new(input);
        assert!(handshake(&mut s, &offers(&e), false).unwrap().is_some());
        // size, flags, 124 zeros (client did not ask for NO_ZEROES).
        assert_eq!(s.output.len(), 18 + 8 + 2 + 124);
        assert_ne!(be16(&s.output[26..28]) & TF_READ_ONLY, 0);

        let mut input = 3u32.to_be_bytes().to_vec();
        input.extend(option(OPT_ABORT, &[]));
        let mut s = Script::new(input);
        assert!(handshake(&mut s, &offers(&e), false).unwrap().is_none());
        // A name that is not UTF-8 is refused, even if it would decode lossily to one.
        let mut input = 1u32.to_be_bytes().to_vec();
        input.extend(option(OPT_EXPORT_NAME, b"vm\xff"));
        let mut s = Script::new(input);
        let e2 = MemExport::new(8192, true);
        let lossy = vec![Offer {
            name: "vm\u{fffd}".into(),
            description: String::new(),
            export: &e2,
        }];
        assert!(handshake(&mut s, &lossy, false).is_err());
        // Garbage instead of a fixed-newstyle client: dropped.
        let mut s = Script::new(b"GET / HTTP/1.1\r\n".to_vec());
        assert!(handshake(&mut s, &offers(&e), false).is_err());
    }
}
