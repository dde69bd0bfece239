//! Codec tests: round trip, and every truncation, byte flip, reordering and random input is
//! refused before `End` (property tests fuzz the decoder).

use super::*;
use proptest::prelude::*;

const BS: u32 = 4096;

fn block(seed: u8, len: usize) -> (BlockHash, Vec<u8>) {
    let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(seed) | 1).collect();
    (BlockHash::of_bytes(&data), data)
}

/// A record as read, with a block's data.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    Block(BlockHash, Vec<u8>),
    Other(Record),
}

/// A stream of two blocks, a map naming them and a resource.
fn sample() -> (Vec<u8>, Vec<Got>) {
    let (h1, d1) = block(3, 4096);
    let (h2, d2) = block(7, 100);
    let map = BlockMap::from_entries(BS, 3 * 4096, vec![(0, h1), (2, h2)]).unwrap();
    let mut w = StreamWriter::new(Vec::new(), BS).unwrap();
    w.block(&h1, &d1).unwrap();
    w.block(&h2, &d2).unwrap();
    w.map(&map).unwrap();
    w.resource(br#"{"kind":"object"}"#).unwrap();
    let (bytes, len) = w.finish().unwrap();
    assert_eq!(len, bytes.len() as u64);
    let records = vec![
        Got::Block(h1, d1),
        Got::Block(h2, d2),
        Got::Other(Record::Map {
            id: map.id(),
            map: map.clone(),
        }),
        Got::Other(Record::Resource(br#"{"kind":"object"}"#.to_vec())),
        Got::Other(Record::End),
    ];
    (bytes, records)
}

/// Reads every record up to `End`, or the first error.
fn read_all(bytes: &[u8]) -> Result<Vec<Got>> {
    let mut r = StreamReader::new(bytes)?;
    let mut buf = AlignedBuf::new();
    let mut out = Vec::new();
    loop {
        match r.next(&mut buf)? {
            Record::Block { hash, len } => out.push(Got::Block(hash, buf[..len].to_vec())),
            Record::End => {
                out.push(Got::Other(Record::End));
                return Ok(out);
            }
            rec => out.push(Got::Other(rec)),
        }
    }
}

#[test]
fn round_trip() {
    let (bytes, records) = sample();
    assert_eq!(read_all(&bytes).unwrap(), records);
}

#[test]
fn every_truncation_is_refused() {
    let (bytes, _) = sample();
    for cut in 0..bytes.len() {
        let e = read_all(&bytes[..cut]).unwrap_err();
        assert!(matches!(e, Error::BadStream { .. }), "cut {cut}: {e}");
    }
}

#[test]
fn every_byte_flip_is_refused() {
    let (bytes, _) = sample();
    for at in 0..bytes.len() {
        let mut b = bytes.clone();
        b[at] ^= 0x40;
        assert!(read_all(&b).is_err(), "flip at {at} was accepted");
    }
}

#[test]
fn reordered_records_and_trailing_bytes_are_refused() {
    let (bytes, _) = sample();
    // Swap the two block records (each intact on its own).
    let first = 16..16 + 9 + 32 + 4096;
    let second = first.end..first.end + 9 + 32 + 100;
    let mut swapped = bytes[..16].to_vec();
    swapped.extend_from_slice(&bytes[second.clone()]);
    swapped.extend_from_slice(&bytes[first]);
    swapped.extend_from_slice(&bytes[second.end..]);
    assert_eq!(swapped.len(), bytes.len());
    let e = read_all(&swapped).unwrap_err().to_string();
    assert!(e.contains("checksum"), "{e}");
    let mut longer = bytes.clone();
    longer.push(0);
    let e = read_all(&longer).unwrap_err().to_string();
    assert!(e.contains("follow the trailer"), "{e}");
}

#[test]
fn hostile_lengths_allocate_nothing_they_do_not_receive() {
    let mut b = StreamWriter::new(Vec::new(), BS)
        .unwrap()
        .finish()
        .unwrap()
        .0;
    b.truncate(HEADER_LEN);
    // A resource claiming 256 MiB with 3 bytes behind it: truncation, no 256 MiB buffer.
    b.push(TAG_RESOURCE);
    b.extend_from_slice(&MAX_RESOURCE_RECORD.to_le_bytes());
    b.extend_from_slice(b"abc");
    let e = read_all(&b).unwrap_err().to_string();
    assert!(e.contains("truncated"), "{e}");
    // A block longer than a block is refused from its header alone.
    let mut c = b[..HEADER_LEN].to_vec();
    c.push(TAG_BLOCK);
    c.extend_from_slice(&(32u64 + BS as u64 + 1).to_le_bytes());
    let e = read_all(&c).unwrap_err().to_string();
    assert!(e.contains("a block holds"), "{e}");
}

#[test]
fn header_checks_magic_version_and_block_size() {
    let (bytes, _) = sample();
    let mut v3 = bytes.clone();
    v3[8] = 3;
    assert!(read_all(&v3).unwrap_err().to_string().contains("version 3"));
    // Version 1 (block data under the trailer checksum too) is not read any more.
    let mut v1 = bytes.clone();
    v1[8] = 1;
    assert!(read_all(&v1).unwrap_err().to_string().contains("version 1"));
    let mut bs = bytes.clone();
    bs[12..16].copy_from_slice(&1000u32.to_le_bytes());
    assert!(
        read_all(&bs)
            .unwrap_err()
            .to_string()
            .contains("block size")
    );
    assert!(
        read_all(b"ARCHMAP\0xxxxxxxx")
            .unwrap_err()
            .to_string()
            .contains("ARCHSEND")
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary bytes after a valid header never panic and never reach `End`.
    #[test]
    fn fuzz_random_bodies(body in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut b = sample().0[..HEADER_LEN].to_vec();
        b.extend_from_slice(&body);
        prop_assert!(read_all(&b).is_err());
    }

    /// Random edits of a valid stream (overwrite, insert, delete a span) are refused.
    #[test]
    fn fuzz_mutations(at in 0usize..5000, len in 1usize..40, byte in any::<u8>(), op in 0u8..3) {
        let (bytes, records) = sample();
        let at = at % bytes.len();
        let mut b = bytes.clone();
        match op {
            0 => {
                let end = (at + len).min(b.len());
                for x in &mut b[at..end] { *x ^= byte | 1; }
            }
            1 => { b.splice(at..at, std::iter::repeat_n(byte, len)); }
            _ => { let end = (at + len).min(b.len()); b.drain(at..end); }
        }
        // Only an edit that restored the very same bytes may decode (to the same records).
        match read_all(&b) {
            Ok(got) => prop_assert!(b == bytes && got == records),
            Err(e) => prop_assert!(matches!(e, Error::BadStream { .. }), "{e}"),
        }
    }
}

/// Hands out its bytes in uneven reads, as a pipe does.
struct Trickle<'a> {
    bytes: &'a [u8],
    sizes: std::iter::Cycle<std::array::IntoIter<usize, 4>>,
}

impl Read for Trickle<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self
            .sizes
            .next()
            .unwrap()
            .min(out.len())
            .min(self.bytes.len());
        out[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

/// Reads every record of `bytes` through uneven reads into one reused buffer.
fn read_trickled(bytes: &[u8]) -> Result<Vec<Got>> {
    let input = Trickle {
        bytes,
        sizes: [4096, 70_001, 1, PIECE + 3].into_iter().cycle(),
    };
    let mut r = StreamReader::new(input)?;
    let mut buf = AlignedBuf::new();
    let mut out = Vec::new();
    loop {
        match r.next(&mut buf)? {
            Record::Block { hash, len } => out.push(Got::Block(hash, buf[..len].to_vec())),
            Record::End => return Ok(out),
            rec => out.push(Got::Other(rec)),
        }
    }
}

#[test]
fn blocks_of_many_pieces_arrive_whole_or_are_refused() {
    const BIG: u32 = 1 << 20;
    // Two blocks of several pieces each, the second shorter than the first (the buffer is
    // reused: its tail must not leak into the second block).
    let first: Vec<u8> = (0..BIG as usize).map(|i| (i % 253) as u8 | 1).collect();
    let second: Vec<u8> = (0..3 * PIECE + 11).map(|i| (i % 241) as u8 | 2).collect();
    let (h1, h2) = (BlockHash::of_bytes(&first), BlockHash::of_bytes(&second));
    let mut w = StreamWriter::new(Vec::new(), BIG).unwrap();
    w.block(&h1, &first).unwrap();
    w.block(&h2, &second).unwrap();
    let (bytes, _) = w.finish().unwrap();
    let got = read_trickled(&bytes).unwrap();
    assert_eq!(
        got,
        vec![Got::Block(h1, first), Got::Block(h2, second.clone())]
    );
    // Cut in the middle of a piece of the second block: truncated, named as such.
    let second_at = HEADER_LEN + 9 + 32 + BIG as usize + 9 + 32;
    for cut in [
        second_at + PIECE / 2,
        second_at + 2 * PIECE + 1,
        bytes.len() - 60,
    ] {
        let e = read_trickled(&bytes[..cut]).unwrap_err().to_string();
        assert!(e.contains("truncated"), "cut at {cut}: {e}");
    }
    // A wrong byte in the last piece: the block is refused before it is returned.
    let mut bad = bytes.clone();
    bad[second_at + second.len() - 5] ^= 0x10;
    let e = read_trickled(&bad).unwrap_err().to_string();
    assert!(e.contains("does not match its hash"), "{e}");
}
