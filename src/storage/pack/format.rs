//! The pack file format: many small stored blocks in one file, with the index that finds them
//! at its end. Pure encoding and validation; no file system access beyond reading one file.
//!
//! Layout of `packs/<id>` (all integers little-endian):
//!
//! ```text
//! data:   the stored (stripped) bytes of entry 0, entry 1, ... back to back
//! index:  per entry: block hash (32 bytes), stored length (u32)
//! footer: magic "ARCHPAK1" (8 bytes), entry count (u64), data length (u64)
//! ```
//!
//! Invariants a valid pack keeps (checked by [`read_index`] before any entry is trusted):
//! - the file is exactly data + index + footer long, and the entry lengths sum to the data
//!   length, so entry i starts where entry i-1 ends (offsets are never stored, never wrong);
//! - every entry is 1..=`max_entry` bytes (the all-zero block is never stored);
//! - the pack's name is the sha256 of its index and footer. Each entry's name is the sha256
//!   of its bytes, so the name pins the whole content: a reader verifies an entry by its
//!   hash, and the index by the pack's name.

use crate::storage::hash::{BlockHash, HASH_LEN};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::os::unix::fs::FileExt;

/// First bytes of the footer.
pub const MAGIC: &[u8; 8] = b"ARCHPAK1";
/// Bytes of one index entry: hash + u32 length.
pub const ENTRY_LEN: usize = HASH_LEN + 4;
/// Bytes of the footer: magic + entry count + data length.
pub const FOOTER_LEN: usize = 8 + 8 + 8;
/// Most entries a pack holds (its index is then 36 MiB): the writer closes a pack at this
/// count, and a reader refuses a footer counting more, so a hostile pack cannot make a
/// reader allocate more than that for its index, however large the file.
pub const MAX_ENTRIES: u64 = 1 << 20;

/// One block in a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub hash: BlockHash,
    /// Where its stored bytes start in the pack file.
    pub offset: u64,
    /// Its stored length.
    pub len: u32,
}

/// The index and footer for `entries` (hash, stored length) written back to back in this
/// order: the bytes to append after the data. Its sha256 ([`pack_id`]) names the pack.
pub fn encode_tail(entries: &[(BlockHash, u32)]) -> Vec<u8> {
    let mut tail = Vec::with_capacity(entries.len() * ENTRY_LEN + FOOTER_LEN);
    let mut data_len = 0u64;
    for (hash, len) in entries {
        tail.extend_from_slice(&hash.0);
        tail.extend_from_slice(&len.to_le_bytes());
        data_len += u64::from(*len);
    }
    tail.extend_from_slice(MAGIC);
    tail.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    tail.extend_from_slice(&data_len.to_le_bytes());
    tail
}

/// The name of a pack: sha256 of its tail (index + footer).
pub fn pack_id(tail: &[u8]) -> BlockHash {
    BlockHash(Sha256::digest(tail).into())
}

/// Decodes and checks a pack's tail, given the file's length; returns its entries with their
/// offsets. `name`: what the pack is called (its tail must hash to it). Errors say what is
/// wrong, for a `Corrupt` report naming the file.
pub fn decode_tail(
    file_len: u64,
    tail: &[u8],
    name: &BlockHash,
    max_entry: u64,
) -> Result<Vec<Entry>, String> {
    if tail.len() < FOOTER_LEN {
        return Err(format!("{} bytes: too short for a pack footer", tail.len()));
    }
    if pack_id(tail) != *name {
        return Err("pack index does not match its name (sha256)".into());
    }
    let footer = &tail[tail.len() - FOOTER_LEN..];
    if &footer[..8] != MAGIC {
        return Err("no pack footer (magic ARCHPAK1 missing)".into());
    }
    let count = u64::from_le_bytes(footer[8..16].try_into().unwrap());
    let data_len = u64::from_le_bytes(footer[16..24].try_into().unwrap());
    if count > MAX_ENTRIES {
        return Err(format!(
            "footer counts {count} entries, more than a pack holds ({MAX_ENTRIES})"
        ));
    }
    let index_len = count
        .checked_mul(ENTRY_LEN as u64)
        .filter(|&n| n == (tail.len() - FOOTER_LEN) as u64)
        .ok_or_else(|| format!("footer counts {count} entries, the index holds another number"))?;
    let expected = data_len
        .checked_add(index_len + FOOTER_LEN as u64)
        .ok_or("data length overflows")?;
    if expected != file_len {
        return Err(format!(
            "file is {file_len} bytes, its footer describes {expected}"
        ));
    }
    let mut entries = Vec::with_capacity(count as usize);
    let mut offset = 0u64;
    for raw in tail[..index_len as usize].chunks_exact(ENTRY_LEN) {
        let hash = BlockHash(raw[..HASH_LEN].try_into().unwrap());
        let len = u32::from_le_bytes(raw[HASH_LEN..].try_into().unwrap());
        if len == 0 || u64::from(len) > max_entry {
            return Err(format!("entry {hash} is {len} bytes, not 1 to {max_entry}"));
        }
        entries.push(Entry { hash, offset, len });
        offset += u64::from(len);
    }
    if offset != data_len {
        return Err(format!(
            "entries hold {offset} bytes, the footer says {data_len}"
        ));
    }
    Ok(entries)
}

/// Reads and checks the index of the open pack `file` named `name` (see [`decode_tail`]).
/// Reads only the footer and the index, never the data; memory is bounded by the file's
/// length. Outer error: the read failed; inner: the pack is damaged (the reason).
pub fn read_index(
    file: &File,
    name: &BlockHash,
    max_entry: u64,
) -> std::io::Result<Result<Vec<Entry>, String>> {
    let file_len = file.metadata()?.len();
    if file_len < FOOTER_LEN as u64 {
        return Ok(Err(format!("{file_len} bytes: too short for a pack")));
    }
    let mut footer = [0u8; FOOTER_LEN];
    file.read_exact_at(&mut footer, file_len - FOOTER_LEN as u64)?;
    let count = u64::from_le_bytes(footer[8..16].try_into().unwrap());
    if count > MAX_ENTRIES {
        return Ok(Err(format!(
            "footer counts {count} entries, more than a pack holds ({MAX_ENTRIES})"
        )));
    }
    let Some(tail_len) = count
        .checked_mul(ENTRY_LEN as u64)
        .and_then(|n| n.checked_add(FOOTER_LEN as u64))
        .filter(|&n| n <= file_len)
    else {
        return Ok(Err(format!(
            "footer counts {count} entries, more than a {file_len}-byte file holds"
        )));
    };
    let mut tail = vec![0u8; tail_len as usize];
    file.read_exact_at(&mut tail, file_len - tail_len)?;
    Ok(decode_tail(file_len, &tail, name, max_entry))
}

/// True when entry `e` of the pack open as `file` holds bytes that hash to its block (read
/// into `buf`); a short or failed read is a bad entry.
pub fn entry_matches(file: &File, e: &Entry, buf: &mut Vec<u8>) -> bool {
    buf.resize(e.len as usize, 0);
    file.read_exact_at(buf, e.offset).is_ok() && BlockHash::of_bytes(buf) == e.hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pack_bytes(blocks: &[Vec<u8>]) -> (Vec<u8>, BlockHash) {
        let entries: Vec<(BlockHash, u32)> = blocks
            .iter()
            .map(|b| (BlockHash::of_bytes(b), b.len() as u32))
            .collect();
        let tail = encode_tail(&entries);
        let mut bytes: Vec<u8> = blocks.concat();
        bytes.extend_from_slice(&tail);
        (bytes, pack_id(&tail))
    }

    fn decode(bytes: &[u8], name: &BlockHash, max: u64) -> Result<Vec<Entry>, String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pack");
        std::fs::write(&p, bytes).unwrap();
        read_index(&File::open(&p).unwrap(), name, max).unwrap()
    }

    proptest! {
        #[test]
        fn round_trip(blocks in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..300), 0..20)) {
            let (bytes, id) = pack_bytes(&blocks);
            let entries = decode(&bytes, &id, 300).unwrap();
            prop_assert_eq!(entries.len(), blocks.len());
            for (e, b) in entries.iter().zip(&blocks) {
                prop_assert_eq!(e.hash, BlockHash::of_bytes(b));
                let at = e.offset as usize;
                prop_assert_eq!(&bytes[at..at + e.len as usize], &b[..]);
            }
        }

        /// Any change to any byte of the tail, or any other length, is refused: never a panic,
        /// never an entry outside the file.
        #[test]
        fn damage_is_refused(blocks in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..64), 1..8),
                             at in any::<prop::sample::Index>(), flip in 1u8..=255, cut in 0usize..40) {
            let (bytes, id) = pack_bytes(&blocks);
            let data_len: usize = blocks.iter().map(Vec::len).sum();
            let mut bad = bytes.clone();
            let i = data_len + at.index(bytes.len() - data_len);
            bad[i] ^= flip;
            prop_assert!(decode(&bad, &id, 64).is_err());
            let short = &bytes[..bytes.len().saturating_sub(cut + 1)];
            prop_assert!(decode(short, &id, 64).is_err());
        }
    }

    #[test]
    fn a_hostile_pack_with_a_matching_name_is_still_checked() {
        // Whoever writes a pack can name it after its own tail: the structure is checked too.
        let entries = [(BlockHash::of_bytes(b"abc"), 3u32)];
        let tail = encode_tail(&entries);
        let mut bytes = b"abc".to_vec();
        bytes.extend_from_slice(&tail);
        bytes.insert(0, b'x'); // one byte more data than the footer says
        let e = decode(&bytes, &pack_id(&tail), 64).unwrap_err();
        assert!(e.contains("footer describes"), "{e}");
        let long = [(BlockHash::of_bytes(b"abc"), 3u32)];
        let tail = encode_tail(&long);
        let mut bytes = b"abc".to_vec();
        bytes.extend_from_slice(&tail);
        let e = decode(&bytes, &pack_id(&tail), 2).unwrap_err();
        assert!(e.contains("not 1 to 2"), "{e}");
        let zero = [(BlockHash::ZERO, 0u32)];
        let tail = encode_tail(&zero);
        assert!(
            decode(&tail, &pack_id(&tail), 64)
                .unwrap_err()
                .contains("0 bytes")
        );
        let huge = {
            let mut t = encode_tail(&[]);
            let n = t.len();
            t[n - 16..n - 8].copy_from_slice(&u64::MAX.to_le_bytes());
            t
        };
        assert!(
            decode(&huge, &pack_id(&huge), 64)
                .unwrap_err()
                .contains("more than")
        );
    }

    #[test]
    fn an_empty_pack_is_valid() {
        let (bytes, id) = pack_bytes(&[]);
        assert_eq!(decode(&bytes, &id, 64).unwrap(), vec![]);
    }
}
