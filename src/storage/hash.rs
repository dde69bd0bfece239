//! Pithos-compatible hashing: block hashes (sha256 of the block with trailing zeros stripped)
//! and the object top hash (a binary Merkle tree over the block hashes), from a dense list or
//! from the non-zero hashes alone.

use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// Length in bytes of a sha256 digest.
pub const HASH_LEN: usize = 32;

/// A sha256 digest naming a block, a map or a resource.
///
/// Invariant for block hashes: `BlockHash::of_block(data)` equals the sha256 of `data` with its
/// trailing 0x00 bytes removed, so the all-zero block of any length is [`BlockHash::ZERO`].
/// A map keyed by block hash. Hashed with ahash, keyed at random per process: the keys may
/// come from files a hostile user wrote (a pack's index names any hashes it likes), and the
/// table must not degrade; and it is several times faster than std's SipHash on 32 bytes.
pub type BlockHashMap<V> = std::collections::HashMap<BlockHash, V, ahash::RandomState>;

/// A set of block hashes, hashed as [`BlockHashMap`].
pub type BlockHashSet = std::collections::HashSet<BlockHash, ahash::RandomState>;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockHash(pub [u8; HASH_LEN]);

impl BlockHash {
    /// sha256 of the empty string: the hash of every all-zero block and of an empty resource.
    pub const ZERO: BlockHash = BlockHash([
        0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9,
        0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52,
        0xb8, 0x55,
    ]);

    /// Hash of a block by the Pithos rule (trailing zero bytes do not count).
    pub fn of_block(data: &[u8]) -> BlockHash {
        BlockHash::of_bytes(strip_trailing_zeros(data))
    }

    /// Plain sha256 of `data`, nothing stripped.
    pub fn of_bytes(data: &[u8]) -> BlockHash {
        BlockHash(Sha256::digest(data).into())
    }

    /// True for the hash every all-zero block has; such blocks are never stored.
    pub fn is_zero(&self) -> bool {
        *self == BlockHash::ZERO
    }

    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(HASH_LEN * 2);
        for b in self.0 {
            s.push(char::from_digit((b >> 4) as u32, 16).unwrap());
            s.push(char::from_digit((b & 15) as u32, 16).unwrap());
        }
        s
    }
}

impl fmt::Display for BlockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for BlockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlockHash({})", self.to_hex())
    }
}

/// Error parsing a hex digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a 64-digit hex sha256 digest")]
pub struct ParseHashError(pub String);

impl FromStr for BlockHash {
    type Err = ParseHashError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        if bytes.len() != HASH_LEN * 2 {
            return Err(ParseHashError(s.to_string()));
        }
        let mut out = [0u8; HASH_LEN];
        for (i, pair) in bytes.chunks(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16);
            let lo = (pair[1] as char).to_digit(16);
            match (hi, lo) {
                (Some(h), Some(l)) => out[i] = (h * 16 + l) as u8,
                _ => return Err(ParseHashError(s.to_string())),
            }
        }
        Ok(BlockHash(out))
    }
}

impl serde::Serialize for BlockHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for BlockHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `data` without its trailing 0x00 bytes: the part of a block that is hashed and stored.
pub fn strip_trailing_zeros(data: &[u8]) -> &[u8] {
    // Word-at-a-time scan from the end; a random block stops at once, a zero block is a
    // memory-bandwidth scan.
    let mut end = data.len();
    while end >= 8 {
        let word = u64::from_ne_bytes(data[end - 8..end].try_into().unwrap());
        if word != 0 {
            break;
        }
        end -= 8;
    }
    while end > 0 && data[end - 1] == 0 {
        end -= 1;
    }
    &data[..end]
}

/// The Pithos object hash of a list of block hashes.
///
/// 0 blocks: sha256(""); 1 block: that block's hash; n >= 2: the list is padded with all-zero
/// 32-byte strings to the next power of two and reduced pairwise with sha256(left || right).
pub fn top_hash(hashes: &[BlockHash]) -> BlockHash {
    match hashes.len() {
        0 => BlockHash::ZERO,
        1 => hashes[0],
        n => {
            let width = n.next_power_of_two();
            let mut level: Vec<[u8; HASH_LEN]> = hashes.iter().map(|h| h.0).collect();
            level.resize(width, [0u8; HASH_LEN]);
            while level.len() > 1 {
                level = level
                    .chunks(2)
                    .map(|pair| {
                        let mut h = Sha256::new();
                        h.update(pair[0]);
                        h.update(pair[1]);
                        h.finalize().into()
                    })
                    .collect();
            }
            BlockHash(level[0])
        }
    }
}

/// sha256(left || right): an inner node of the Pithos tree.
fn node(left: &[u8; HASH_LEN], right: &[u8; HASH_LEN]) -> [u8; HASH_LEN] {
    let mut h = Sha256::new();
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// [`top_hash`] of `blocks` block hashes of which only `entries` (sorted by index, all below
/// `blocks`) may be non-zero; every other block has the zero hash.
///
/// Cost O((entries + 1) x log blocks): a subtree of only zero blocks, or only padding, has a
/// hash that depends on its height alone, taken from two precomputed tables.
pub fn sparse_top_hash(blocks: u64, entries: &[(u64, BlockHash)]) -> BlockHash {
    match blocks {
        0 => return BlockHash::ZERO,
        1 => return entries.first().map_or(BlockHash::ZERO, |e| e.1),
        _ => {}
    }
    let height = blocks.next_power_of_two().trailing_zeros() as usize;
    // zero[l] / pad[l]: hash of a subtree of height l over zero blocks / padding only.
    let mut zero = vec![BlockHash::ZERO.0];
    let mut pad = vec![[0u8; HASH_LEN]];
    for l in 0..height {
        zero.push(node(&zero[l], &zero[l]));
        pad.push(node(&pad[l], &pad[l]));
    }
    let tables = SparseTree { blocks, zero, pad };
    BlockHash(tables.subtree(height, 0, entries))
}

struct SparseTree {
    blocks: u64,
    zero: Vec<[u8; HASH_LEN]>,
    pad: Vec<[u8; HASH_LEN]>,
}

impl SparseTree {
    /// Hash of the subtree of height `level` over leaves `[start, start + 2^level)`, whose
    /// non-zero leaves are `entries`.
    fn subtree(&self, level: usize, start: u64, entries: &[(u64, BlockHash)]) -> [u8; HASH_LEN] {
        if start >= self.blocks {
            return self.pad[level];
        }
        let end = start + (1u64 << level);
        if entries.is_empty() && end <= self.blocks {
            return self.zero[level];
        }
        if level == 0 {
            return entries.first().map_or(BlockHash::ZERO.0, |e| e.1.0);
        }
        let mid = start + (1u64 << (level - 1));
        let split = entries.partition_point(|e| e.0 < mid);
        node(
            &self.subtree(level - 1, start, &entries[..split]),
            &self.subtree(level - 1, mid, &entries[split..]),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_constant_is_sha256_of_empty() {
        assert_eq!(BlockHash::of_bytes(b""), BlockHash::ZERO);
        assert_eq!(BlockHash::of_block(&[0u8; 4096]), BlockHash::ZERO);
    }

    #[test]
    fn trailing_zeros_do_not_count() {
        assert_eq!(
            BlockHash::of_block(b"hello"),
            BlockHash::of_block(b"hello\0\0\0")
        );
        assert_ne!(
            BlockHash::of_block(b"hello"),
            BlockHash::of_block(b"\0hello")
        );
        assert_eq!(strip_trailing_zeros(b"a\0b\0\0\0\0\0\0\0\0\0"), b"a\0b");
        assert_eq!(strip_trailing_zeros(&[0u8; 17]), b"");
    }

    #[test]
    fn hex_round_trip_and_rejects_garbage() {
        let h = BlockHash::of_bytes(b"x");
        assert_eq!(h.to_hex().parse::<BlockHash>().unwrap(), h);
        assert!("zz".parse::<BlockHash>().is_err());
        assert!("g".repeat(64).parse::<BlockHash>().is_err());
    }

    #[test]
    fn top_hash_pads_to_power_of_two() {
        let a = BlockHash::of_bytes(b"a");
        let b = BlockHash::of_bytes(b"b");
        let c = BlockHash::of_bytes(b"c");
        let pair = |l: &BlockHash, r: &[u8; 32]| {
            let mut h = Sha256::new();
            h.update(l.0);
            h.update(r);
            BlockHash(h.finalize().into())
        };
        let ab = pair(&a, &b.0);
        let c0 = pair(&c, &[0u8; 32]);
        assert_eq!(top_hash(&[a, b, c]), pair(&ab, &c0.0));
        assert_eq!(top_hash(&[a]), a);
    }

    proptest::proptest! {
        #[test]
        fn sparse_top_hash_equals_dense(kinds in proptest::collection::vec(0u8..3, 0..70)) {
            let dense: Vec<BlockHash> = kinds
                .iter()
                .enumerate()
                .map(|(i, &k)| if k == 0 { BlockHash::ZERO } else { BlockHash::of_bytes(&[k, i as u8]) })
                .collect();
            let entries: Vec<(u64, BlockHash)> = dense
                .iter()
                .enumerate()
                .filter(|(_, h)| !h.is_zero())
                .map(|(i, h)| (i as u64, *h))
                .collect();
            proptest::prop_assert_eq!(sparse_top_hash(dense.len() as u64, &entries), top_hash(&dense));
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Large, mostly empty maps: the all-zero subtrees the sparse walk skips span many
        /// levels and both sides of the power-of-two padding.
        #[test]
        fn sparse_top_hash_equals_dense_on_large_sparse_maps(
            blocks in 1u64..20_000,
            picks in proptest::collection::vec((0u64..20_000, 1u8..=255), 0..12),
        ) {
            let mut dense = vec![BlockHash::ZERO; blocks as usize];
            for (i, k) in picks {
                let i = i % blocks;
                dense[i as usize] = BlockHash::of_bytes(&[k, i as u8, (i >> 8) as u8]);
            }
            let entries: Vec<(u64, BlockHash)> = dense
                .iter()
                .enumerate()
                .filter(|(_, h)| !h.is_zero())
                .map(|(i, h)| (i as u64, *h))
                .collect();
            proptest::prop_assert_eq!(sparse_top_hash(blocks, &entries), top_hash(&dense));
        }
    }

    #[test]
    fn sparse_top_hash_of_64_tib_is_cheap() {
        // 2^34 blocks with one data block: ~34 x 2 hashes, not 2^35.
        let h = BlockHash::of_bytes(b"x");
        let one = sparse_top_hash(1 << 34, &[(5, h)]);
        assert_ne!(one, sparse_top_hash(1 << 34, &[]));
        assert_ne!(one, sparse_top_hash(1 << 34, &[(6, h)]));
    }
}
