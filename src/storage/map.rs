//! Block maps: the byte size of a resource and the hashes of its blocks that hold data, kept
//! sparse (memory follows the data, not the virtual size), and their binary codec.
//!
//! Encoding (all integers little-endian), specified in docs/FORMAT.md "Maps":
//! - version 2 (written): `b"ARCHMAP\0"` | 2 u32 | block_size u32 | size u64 | extent count u64
//!   | per extent: start u64, len u64, len x 32-byte non-zero hashes. Extents are sorted,
//!   separated by at least one zero block, and inside the map, so each map has exactly one
//!   encoding.
//! - version 1 (still read): `b"ARCHMAP\0"` | 1 u32 | block_size u32 | size u64 | count u64 |
//!   count x 32-byte hashes.
//!
//! A map file is named by the sha256 of its encoded bytes, so a stored map is immutable and
//! self-verifying.

use super::hash::{BlockHash, HASH_LEN, sparse_top_hash};

const MAGIC: &[u8; 8] = b"ARCHMAP\0";
const VERSION_DENSE: u32 = 1;
const VERSION_EXTENTS: u32 = 2;
const HEADER_LEN: usize = 8 + 4 + 4 + 8 + 8;
const EXTENT_HEADER_LEN: usize = 16;

/// Identity of a stored map: sha256 of its encoding.
pub type MapId = BlockHash;

/// A resource's layout: block `i` names bytes `[i*block_size, (i+1)*block_size)`.
///
/// Invariants: `entries` is sorted by index, has no duplicate index, holds no
/// [`BlockHash::ZERO`], and every index is below [`BlockMap::block_count`]; every other block
/// is all-zero. `size <= MAX_RESOURCE_SIZE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockMap {
    block_size: u32,
    size: u64,
    entries: Vec<(u64, BlockHash)>,
}

/// Why bytes are not a valid map.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapDecodeError {
    #[error("too short for a map header ({0} bytes)")]
    TooShort(usize),
    #[error("bad magic (not an arch map)")]
    BadMagic,
    #[error("map version {0} is not supported (this arch reads versions 1 and 2)")]
    UnsupportedVersion(u32),
    #[error("block size {0} is not a power of two between 4 KiB and 64 MiB")]
    BadBlockSize(u32),
    #[error("size {0} is larger than the largest resource ({MAX_RESOURCE_SIZE} bytes, 64 TiB)")]
    TooLarge(u64),
    #[error("header says {count} hashes but {available} bytes follow (truncated or padded map)")]
    LengthMismatch { count: u64, available: usize },
    #[error("{count} hashes cannot describe {size} bytes with blocks of {block_size}")]
    CountMismatch {
        count: u64,
        size: u64,
        block_size: u32,
    },
    #[error("extent {extent} is {reason}")]
    BadExtent { extent: u64, reason: &'static str },
    #[error("{0} bytes follow the last extent")]
    TrailingBytes(usize),
}

/// Why hashes cannot form a map.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapBuildError {
    #[error("size {0} is larger than the largest resource ({MAX_RESOURCE_SIZE} bytes, 64 TiB)")]
    TooLarge(u64),
    #[error("block index {index} is past the end ({blocks} blocks)")]
    OutOfRange { index: u64, blocks: u64 },
    #[error("block indexes are not strictly increasing at {0}")]
    Unsorted(u64),
}

/// Smallest and largest block sizes a repository may use.
pub const MIN_BLOCK_SIZE: u64 = 4 * 1024;
pub const MAX_BLOCK_SIZE: u64 = 64 * 1024 * 1024;

/// Largest size of any resource (object, image, snapshot or volume): 64 TiB. Larger sizes are
/// refused wherever they enter (put, import, clone --size, resize) and reported as corrupt
/// when read from the repository.
pub const MAX_RESOURCE_SIZE: u64 = 64 << 40;

/// Refuses a size past [`MAX_RESOURCE_SIZE`]; `what` names the thing (e.g. "--size").
pub fn check_resource_size(what: &str, size: u64) -> crate::error::Result<()> {
    if size > MAX_RESOURCE_SIZE {
        return Err(crate::error::Error::invalid(format!(
            "{what} {size} bytes is larger than the largest resource arch supports \
             ({MAX_RESOURCE_SIZE} bytes, 64 TiB); choose at most 64T"
        )));
    }
    Ok(())
}

/// True when `bs` is a power of two within [`MIN_BLOCK_SIZE`, `MAX_BLOCK_SIZE`].
pub fn valid_block_size(bs: u64) -> bool {
    bs.is_power_of_two() && (MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&bs)
}

impl BlockMap {
    /// A map of `size` bytes whose blocks are all zero.
    pub fn zeros(block_size: u32, size: u64) -> Result<BlockMap, MapBuildError> {
        BlockMap::from_entries(block_size, size, Vec::new())
    }

    /// A map from its non-zero blocks `(index, hash)`, strictly increasing by index; zero
    /// hashes among them are dropped.
    pub fn from_entries(
        block_size: u32,
        size: u64,
        mut entries: Vec<(u64, BlockHash)>,
    ) -> Result<BlockMap, MapBuildError> {
        if size > MAX_RESOURCE_SIZE {
            return Err(MapBuildError::TooLarge(size));
        }
        let blocks = size.div_ceil(block_size as u64);
        entries.retain(|(_, h)| !h.is_zero());
        for (k, &(index, _)) in entries.iter().enumerate() {
            if index >= blocks {
                return Err(MapBuildError::OutOfRange { index, blocks });
            }
            if k > 0 && entries[k - 1].0 >= index {
                return Err(MapBuildError::Unsorted(index));
            }
        }
        Ok(BlockMap {
            block_size,
            size,
            entries,
        })
    }

    /// A map from one hash per block (`hashes.len()` must be `ceil(size / block_size)`).
    pub fn from_dense(
        block_size: u32,
        size: u64,
        hashes: &[BlockHash],
    ) -> Result<BlockMap, MapBuildError> {
        let blocks = size.div_ceil(block_size as u64);
        if hashes.len() as u64 != blocks {
            return Err(MapBuildError::OutOfRange {
                index: hashes.len() as u64,
                blocks,
            });
        }
        let entries = hashes
            .iter()
            .enumerate()
            .map(|(i, h)| (i as u64, *h))
            .collect();
        BlockMap::from_entries(block_size, size, entries)
    }

    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// Length of the resource in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Number of blocks, zero blocks included: `ceil(size / block_size)`.
    pub fn block_count(&self) -> u64 {
        self.size.div_ceil(self.block_size as u64)
    }

    /// The blocks that hold data, `(index, hash)` by increasing index.
    pub fn entries(&self) -> &[(u64, BlockHash)] {
        &self.entries
    }

    /// Number of blocks that hold data.
    pub fn data_blocks(&self) -> u64 {
        self.entries.len() as u64
    }

    /// Hash of block `index` (the zero hash for a zero block or past the end).
    pub fn hash_at(&self, index: u64) -> BlockHash {
        match self.entries.binary_search_by_key(&index, |e| e.0) {
            Ok(k) => self.entries[k].1,
            Err(_) => BlockHash::ZERO,
        }
    }

    /// Every block's hash in order, zero blocks included, generated lazily (for the Pithos
    /// hashmap, which lists them all).
    pub fn all_hashes(&self) -> impl Iterator<Item = BlockHash> + '_ {
        let mut next = self.entries.iter().peekable();
        (0..self.block_count()).map(move |i| match next.peek() {
            Some(&&(index, h)) if index == i => {
                next.next();
                h
            }
            _ => BlockHash::ZERO,
        })
    }

    /// The same content cut (or zero-extended) to `size` bytes. The caller makes sure the
    /// bytes of a cut last block past `size` are zero (they are not part of the hash rule).
    pub fn resized(&self, size: u64) -> Result<BlockMap, MapBuildError> {
        let blocks = size.div_ceil(self.block_size as u64);
        let keep = self.entries.partition_point(|e| e.0 < blocks);
        BlockMap::from_entries(self.block_size, size, self.entries[..keep].to_vec())
    }

    /// The Pithos object hash of this map, in O(data blocks x log blocks).
    pub fn top_hash(&self) -> BlockHash {
        sparse_top_hash(self.block_count(), &self.entries)
    }

    /// Length of block `index` (the last block may be short).
    pub fn block_len(&self, index: u64) -> usize {
        let start = index.saturating_mul(self.block_size as u64);
        (self.size.saturating_sub(start)).min(self.block_size as u64) as usize
    }

    /// Runs of consecutive data blocks: `(start, hashes)`.
    fn extents(&self) -> Vec<(u64, &[(u64, BlockHash)])> {
        let mut out = Vec::new();
        let mut start = 0;
        for k in 1..=self.entries.len() {
            if k == self.entries.len() || self.entries[k].0 != self.entries[k - 1].0 + 1 {
                out.push((self.entries[start].0, &self.entries[start..k]));
                start = k;
            }
        }
        out
    }

    /// Binary encoding (version 2); its sha256 is the map's [`MapId`].
    pub fn encode(&self) -> Vec<u8> {
        let extents = self.extents();
        let mut out = Vec::with_capacity(
            HEADER_LEN + extents.len() * EXTENT_HEADER_LEN + self.entries.len() * HASH_LEN,
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION_EXTENTS.to_le_bytes());
        out.extend_from_slice(&self.block_size.to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&(extents.len() as u64).to_le_bytes());
        for (start, run) in extents {
            out.extend_from_slice(&start.to_le_bytes());
            out.extend_from_slice(&(run.len() as u64).to_le_bytes());
            for (_, h) in run {
                out.extend_from_slice(&h.0);
            }
        }
        out
    }

    /// The id this map has once stored.
    pub fn id(&self) -> MapId {
        BlockHash::of_bytes(&self.encode())
    }

    /// Decodes and validates a map (version 1 or 2). Never allocates more than the input's
    /// size, whatever the header claims.
    pub fn decode(bytes: &[u8]) -> Result<BlockMap, MapDecodeError> {
        if bytes.len() < HEADER_LEN {
            return Err(MapDecodeError::TooShort(bytes.len()));
        }
        if &bytes[..8] != MAGIC {
            return Err(MapDecodeError::BadMagic);
        }
        let version = u32_at(bytes, 8);
        if version != VERSION_DENSE && version != VERSION_EXTENTS {
            return Err(MapDecodeError::UnsupportedVersion(version));
        }
        let block_size = u32_at(bytes, 12);
        if !valid_block_size(block_size as u64) {
            return Err(MapDecodeError::BadBlockSize(block_size));
        }
        let size = u64_at(bytes, 16);
        if size > MAX_RESOURCE_SIZE {
            return Err(MapDecodeError::TooLarge(size));
        }
        let count = u64_at(bytes, 24);
        let body = &bytes[HEADER_LEN..];
        let blocks = size.div_ceil(block_size as u64);
        let entries = if version == VERSION_DENSE {
            decode_dense(body, count, size, block_size)?
        } else {
            decode_extents(body, count, blocks)?
        };
        Ok(BlockMap {
            block_size,
            size,
            entries,
        })
    }
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

fn hash_at(b: &[u8], o: usize) -> BlockHash {
    BlockHash(b[o..o + HASH_LEN].try_into().unwrap())
}

/// Version 1 body: `count` hashes, one per block.
fn decode_dense(
    body: &[u8],
    count: u64,
    size: u64,
    block_size: u32,
) -> Result<Vec<(u64, BlockHash)>, MapDecodeError> {
    if count.checked_mul(HASH_LEN as u64) != Some(body.len() as u64) {
        return Err(MapDecodeError::LengthMismatch {
            count,
            available: body.len(),
        });
    }
    if count != size.div_ceil(block_size as u64) {
        return Err(MapDecodeError::CountMismatch {
            count,
            size,
            block_size,
        });
    }
    Ok(body
        .chunks_exact(HASH_LEN)
        .enumerate()
        .map(|(i, c)| (i as u64, BlockHash(c.try_into().unwrap())))
        .filter(|(_, h)| !h.is_zero())
        .collect())
}

/// Version 2 body: `count` extents, canonical (sorted, not touching, inside, no zero hash).
fn decode_extents(
    body: &[u8],
    count: u64,
    blocks: u64,
) -> Result<Vec<(u64, BlockHash)>, MapDecodeError> {
    // Each extent takes at least 16 + 32 bytes: a larger count cannot be honest.
    if count > (body.len() / (EXTENT_HEADER_LEN + HASH_LEN)) as u64 {
        return Err(MapDecodeError::LengthMismatch {
            count,
            available: body.len(),
        });
    }
    let bad = |extent, reason| Err(MapDecodeError::BadExtent { extent, reason });
    let mut entries = Vec::new();
    let mut pos = 0usize;
    // First block index an extent may start at (the previous end + 1 zero block).
    let mut min_start = 0u64;
    for extent in 0..count {
        if body.len() - pos < EXTENT_HEADER_LEN {
            return Err(MapDecodeError::LengthMismatch {
                count,
                available: body.len(),
            });
        }
        let start = u64_at(body, pos);
        let len = u64_at(body, pos + 8);
        pos += EXTENT_HEADER_LEN;
        if len == 0 {
            return bad(extent, "empty");
        }
        if start < min_start {
            return bad(
                extent,
                "out of order, overlapping or touching the previous one",
            );
        }
        match start.checked_add(len) {
            Some(end) if end <= blocks => min_start = end.saturating_add(1),
            _ => return bad(extent, "past the end of the map"),
        }
        let bytes = len
            .checked_mul(HASH_LEN as u64)
            .filter(|&n| n <= (body.len() - pos) as u64);
        let Some(bytes) = bytes else {
            return Err(MapDecodeError::LengthMismatch {
                count,
                available: body.len(),
            });
        };
        for k in 0..len {
            let h = hash_at(body, pos + (k as usize) * HASH_LEN);
            if h.is_zero() {
                return bad(extent, "holding a zero hash (zero blocks are left out)");
            }
            entries.push((start + k, h));
        }
        pos += bytes as usize;
    }
    if pos != body.len() {
        return Err(MapDecodeError::TrailingBytes(body.len() - pos));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> BlockMap {
        let hashes = [
            BlockHash::of_bytes(b"a"),
            BlockHash::ZERO,
            BlockHash::of_bytes(b"c"),
        ];
        BlockMap::from_dense(4096, 4096 * 2 + 7, &hashes).unwrap()
    }

    /// Version 1 encoding of `m`, as arch wrote it before version 2.
    fn encode_v1(m: &BlockMap) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&m.block_size().to_le_bytes());
        out.extend_from_slice(&m.size().to_le_bytes());
        out.extend_from_slice(&m.block_count().to_le_bytes());
        for h in m.all_hashes() {
            out.extend_from_slice(&h.0);
        }
        out
    }

    #[test]
    fn round_trip() {
        let m = sample();
        assert_eq!(m.hash_at(1), BlockHash::ZERO);
        assert_eq!(m.hash_at(2), BlockHash::of_bytes(b"c"));
        assert_eq!(BlockMap::decode(&m.encode()).unwrap(), m);
        assert_eq!(BlockMap::decode(&encode_v1(&m)).unwrap(), m);
    }

    #[test]
    fn one_block_in_64_tib_is_tiny() {
        let h = BlockHash::of_bytes(b"x");
        let m = BlockMap::from_entries(4096, MAX_RESOURCE_SIZE, vec![(12345, h)]).unwrap();
        let enc = m.encode();
        assert_eq!(enc.len(), HEADER_LEN + EXTENT_HEADER_LEN + HASH_LEN);
        assert_eq!(BlockMap::decode(&enc).unwrap(), m);
        assert_eq!(m.block_count(), 1 << 34);
    }

    #[test]
    fn sizes_past_the_limit_are_refused() {
        assert_eq!(
            BlockMap::zeros(4096, MAX_RESOURCE_SIZE + 1),
            Err(MapBuildError::TooLarge(MAX_RESOURCE_SIZE + 1))
        );
        let mut enc = BlockMap::zeros(4096, 0).unwrap().encode();
        enc[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(
            BlockMap::decode(&enc),
            Err(MapDecodeError::TooLarge(u64::MAX))
        );
    }

    #[test]
    fn truncation_and_bad_header_are_errors() {
        for enc in [sample().encode(), encode_v1(&sample())] {
            assert!(matches!(
                BlockMap::decode(&enc[..enc.len() - 1]),
                Err(MapDecodeError::LengthMismatch { .. })
            ));
            let mut bad = enc.clone();
            bad[0] = b'X';
            assert_eq!(BlockMap::decode(&bad), Err(MapDecodeError::BadMagic));
            let mut bad = enc.clone();
            bad[12..16].copy_from_slice(&3000u32.to_le_bytes());
            assert_eq!(
                BlockMap::decode(&bad),
                Err(MapDecodeError::BadBlockSize(3000))
            );
        }
    }

    #[test]
    fn non_canonical_extents_are_refused() {
        let h = BlockHash::of_bytes(b"h");
        let enc = |extents: &[(u64, u64, BlockHash)]| {
            let mut out = BlockMap::zeros(4096, 4096 * 10).unwrap().encode();
            out[24..32].copy_from_slice(&(extents.len() as u64).to_le_bytes());
            for &(start, len, hash) in extents {
                out.extend_from_slice(&start.to_le_bytes());
                out.extend_from_slice(&len.to_le_bytes());
                for _ in 0..len {
                    out.extend_from_slice(&hash.0);
                }
            }
            BlockMap::decode(&out)
        };
        assert!(enc(&[(0, 1, h), (2, 1, h)]).is_ok());
        let extent_error = |r: Result<BlockMap, MapDecodeError>| {
            matches!(r, Err(MapDecodeError::BadExtent { .. }))
        };
        assert!(extent_error(enc(&[(0, 1, h), (1, 1, h)])), "touching");
        assert!(extent_error(enc(&[(3, 1, h), (0, 1, h)])), "unsorted");
        assert!(extent_error(enc(&[(0, 2, h), (1, 1, h)])), "overlapping");
        assert!(extent_error(enc(&[(9, 2, h)])), "past the end");
        assert!(extent_error(enc(&[(u64::MAX, 2, h)])), "overflow");
        assert!(enc(&[(0, 0, h)]).is_err(), "empty");
        assert!(extent_error(enc(&[(0, 1, BlockHash::ZERO)])), "zero hash");
    }

    #[test]
    fn huge_counts_do_not_allocate() {
        let mut enc = encode_v1(&sample());
        enc[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(BlockMap::decode(&enc).is_err());
        let mut enc = sample().encode();
        enc[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(BlockMap::decode(&enc).is_err());
        // One extent claiming 2^60 hashes in a 64 TiB map.
        let mut enc = BlockMap::zeros(4096, MAX_RESOURCE_SIZE).unwrap().encode();
        enc[24..32].copy_from_slice(&1u64.to_le_bytes());
        enc.extend_from_slice(&0u64.to_le_bytes());
        enc.extend_from_slice(&(1u64 << 60).to_le_bytes());
        enc.extend_from_slice(&[1u8; 32]);
        assert!(BlockMap::decode(&enc).is_err());
    }

    fn arb_map() -> impl Strategy<Value = BlockMap> {
        (
            0usize..60,
            1u64..=4096,
            proptest::collection::vec(0u8..4, 60),
        )
            .prop_map(|(n, tail, kinds)| {
                let size = if n == 0 {
                    0
                } else {
                    (n as u64 - 1) * 4096 + tail
                };
                let hashes: Vec<_> = (0..n)
                    .map(|i| match kinds[i] {
                        0 | 1 => BlockHash::ZERO,
                        k => BlockHash::of_bytes(&[k, i as u8]),
                    })
                    .collect();
                BlockMap::from_dense(4096, size, &hashes).unwrap()
            })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = BlockMap::decode(&bytes);
        }

        #[test]
        fn mutated_maps_never_panic(m in arb_map(), at in any::<usize>(), byte in any::<u8>()) {
            let mut enc = m.encode();
            let i = at % enc.len();
            enc[i] = byte;
            if let (Ok(d), VERSION_EXTENTS) = (BlockMap::decode(&enc), u32_at(&enc, 8)) {
                // Any version 2 map accepted is canonical: it encodes back to the same bytes.
                prop_assert_eq!(d.encode(), enc);
            }
        }

        #[test]
        fn arbitrary_maps_round_trip(m in arb_map()) {
            prop_assert_eq!(BlockMap::decode(&m.encode()).unwrap(), m.clone());
            prop_assert_eq!(BlockMap::decode(&encode_v1(&m)).unwrap(), m.clone());
            let dense: Vec<_> = m.all_hashes().collect();
            prop_assert_eq!(dense.len() as u64, m.block_count());
            for (i, h) in dense.iter().enumerate() {
                prop_assert_eq!(*h, m.hash_at(i as u64));
            }
            prop_assert_eq!(m.top_hash(), crate::storage::hash::top_hash(&dense));
        }
    }
}
