//! Block maps: the ordered block hashes and byte size of a resource, and their binary codec.
//!
//! Encoding (all integers little-endian), specified in docs/FORMAT.md:
//! `b"ARCHMAP\0"` | version u32 = 1 | block_size u32 | size u64 | count u64 | count x 32-byte hashes.
//! A map file is named by the sha256 of its encoded bytes, so a stored map is immutable and
//! self-verifying.

use super::hash::{BlockHash, HASH_LEN, top_hash};

const MAGIC: &[u8; 8] = b"ARCHMAP\0";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 4 + 8 + 8;

/// Identity of a stored map: sha256 of its encoding.
pub type MapId = BlockHash;

/// A resource's layout: `hashes[i]` names bytes `[i*block_size, (i+1)*block_size)`.
///
/// Invariant: `hashes.len() == size.div_ceil(block_size)` for maps of read-only resources.
/// All-zero blocks are listed as [`BlockHash::ZERO`] (as Pithos lists them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockMap {
    pub block_size: u32,
    pub size: u64,
    pub hashes: Vec<BlockHash>,
}

/// Why bytes are not a valid map.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapDecodeError {
    #[error("too short for a map header ({0} bytes)")]
    TooShort(usize),
    #[error("bad magic (not an arch map)")]
    BadMagic,
    #[error("map version {0} is not supported (this arch reads version 1)")]
    UnsupportedVersion(u32),
    #[error("block size {0} is not a power of two between 4 KiB and 64 MiB")]
    BadBlockSize(u32),
    #[error("header says {count} hashes but {available} bytes follow (truncated or padded map)")]
    LengthMismatch { count: u64, available: usize },
    #[error("{count} hashes cannot describe {size} bytes with blocks of {block_size}")]
    CountMismatch {
        count: u64,
        size: u64,
        block_size: u32,
    },
}

/// Smallest and largest block sizes a repository may use.
pub const MIN_BLOCK_SIZE: u64 = 4 * 1024;
pub const MAX_BLOCK_SIZE: u64 = 64 * 1024 * 1024;

/// Largest size of any resource (object, image, snapshot or volume): 64 TiB. Larger sizes are
/// refused wherever they enter (put, import, clone --size, resize) and reported as corrupt
/// when read from the repository.
pub const MAX_RESOURCE_SIZE: u64 = 64 << 40;

/// True when `bs` is a power of two within [`MIN_BLOCK_SIZE`, `MAX_BLOCK_SIZE`].
pub fn valid_block_size(bs: u64) -> bool {
    bs.is_power_of_two() && (MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&bs)
}

impl BlockMap {
    /// A map of `size` bytes whose blocks are all zero.
    pub fn zeros(block_size: u32, size: u64) -> BlockMap {
        let n = size.div_ceil(block_size as u64) as usize;
        BlockMap {
            block_size,
            size,
            hashes: vec![BlockHash::ZERO; n],
        }
    }

    /// The Pithos object hash of this map.
    pub fn top_hash(&self) -> BlockHash {
        top_hash(&self.hashes)
    }

    /// Length of block `index` (the last block may be short).
    pub fn block_len(&self, index: usize) -> usize {
        let start = index as u64 * self.block_size as u64;
        (self.size.saturating_sub(start)).min(self.block_size as u64) as usize
    }

    /// Binary encoding; its sha256 is the map's [`MapId`].
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.hashes.len() * HASH_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.block_size.to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&(self.hashes.len() as u64).to_le_bytes());
        for h in &self.hashes {
            out.extend_from_slice(&h.0);
        }
        out
    }

    /// The id this map has once stored.
    pub fn id(&self) -> MapId {
        BlockHash::of_bytes(&self.encode())
    }

    /// Decodes and validates a map. Never allocates more than the input's size.
    pub fn decode(bytes: &[u8]) -> Result<BlockMap, MapDecodeError> {
        if bytes.len() < HEADER_LEN {
            return Err(MapDecodeError::TooShort(bytes.len()));
        }
        if &bytes[..8] != MAGIC {
            return Err(MapDecodeError::BadMagic);
        }
        let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap());
        let version = u32_at(8);
        if version != VERSION {
            return Err(MapDecodeError::UnsupportedVersion(version));
        }
        let block_size = u32_at(12);
        if !valid_block_size(block_size as u64) {
            return Err(MapDecodeError::BadBlockSize(block_size));
        }
        let size = u64_at(16);
        let count = u64_at(24);
        let body = &bytes[HEADER_LEN..];
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
        let hashes = body
            .chunks_exact(HASH_LEN)
            .map(|c| BlockHash(c.try_into().unwrap()))
            .collect();
        Ok(BlockMap {
            block_size,
            size,
            hashes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> BlockMap {
        BlockMap {
            block_size: 4096,
            size: 4096 * 2 + 7,
            hashes: vec![
                BlockHash::of_bytes(b"a"),
                BlockHash::ZERO,
                BlockHash::of_bytes(b"c"),
            ],
        }
    }

    #[test]
    fn round_trip() {
        let m = sample();
        assert_eq!(BlockMap::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn truncation_and_bad_header_are_errors() {
        let enc = sample().encode();
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

    #[test]
    fn huge_count_does_not_allocate() {
        let mut enc = sample().encode();
        enc[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(BlockMap::decode(&enc).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = BlockMap::decode(&bytes);
        }

        #[test]
        fn arbitrary_maps_round_trip(n in 0usize..50, tail in 1u64..=4096) {
            let hashes: Vec<_> = (0..n).map(|i| BlockHash::of_bytes(&i.to_le_bytes())).collect();
            let size = if n == 0 { 0 } else { (n as u64 - 1) * 4096 + tail };
            let m = BlockMap { block_size: 4096, size, hashes };
            prop_assert_eq!(BlockMap::decode(&m.encode()).unwrap(), m);
        }
    }
}
