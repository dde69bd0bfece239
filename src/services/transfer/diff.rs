//! `diff`: the byte ranges, at block granularity, where two resources differ, computed from
//! their maps and (volumes) the hashes of their private blocks; shared data is never read.
//!
//! Two blocks are equal exactly when their hashes are (the block rule strips trailing zeros,
//! so a short last block equals the same bytes zero-extended). Past the end of the shorter
//! resource, bytes compare as zeros; the sizes are reported beside the ranges.

use super::{Content, load_content, resolve_target};
use crate::error::{Error, Result};
use crate::repo::Repository;
use serde::Serialize;

/// One range where the resources differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffExtent {
    pub offset: u64,
    pub length: u64,
    /// `data`: B holds other data here; `zero`: B reads zeros where A held data.
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// What [`diff`] found.
#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    pub from: String,
    pub to: String,
    pub from_kind: &'static str,
    pub to_kind: &'static str,
    pub from_size: u64,
    pub to_size: u64,
    pub block_size: u32,
    pub extents: Vec<DiffExtent>,
    /// Blocks that differ.
    pub changed_blocks: u64,
    /// Bytes of the `data` extents.
    pub data_bytes: u64,
    /// Bytes of the `zero` extents.
    pub zero_bytes: u64,
}

/// Compares resources `a` and `b` (names as [`resolve_target`] takes them).
pub fn diff(repo: &Repository, a: &str, b: &str) -> Result<DiffReport> {
    let cat = repo.catalog()?;
    let (ta, tb) = (resolve_target(&cat, a)?, resolve_target(&cat, b)?);
    drop(cat);
    let _data = repo.lock_data_shared()?;
    let (ca, cb) = (load_content(repo, &ta)?, load_content(repo, &tb)?);
    if ca.block_size != cb.block_size {
        return Err(Error::invalid(format!(
            "{a} has blocks of {} bytes and {b} of {}; only resources of one block size compare",
            ca.block_size, cb.block_size
        )));
    }
    let extents = compare(&ca, &cb);
    let sum = |k: &str| {
        extents
            .iter()
            .filter(|e| e.kind == k)
            .map(|e| e.length)
            .sum()
    };
    let bs = ca.block_size as u64;
    Ok(DiffReport {
        from: ta.label(),
        to: tb.label(),
        from_kind: ta.kind(),
        to_kind: tb.kind(),
        from_size: ca.size,
        to_size: cb.size,
        block_size: ca.block_size,
        changed_blocks: extents
            .iter()
            .map(|e| (e.offset + e.length).div_ceil(bs) - e.offset / bs)
            .sum(),
        data_bytes: sum("data"),
        zero_bytes: sum("zero"),
        extents,
    })
}

/// The differing ranges of `a` and `b` (same block size), adjacent blocks of one type merged.
/// Cost: O(data blocks of both), never O(size).
pub fn compare(a: &Content, b: &Content) -> Vec<DiffExtent> {
    let bs = a.block_size as u64;
    let end = a.size.max(b.size);
    let mut indexes = a.data_indexes();
    indexes.extend(b.data_indexes());
    indexes.sort_unstable();
    indexes.dedup();
    let mut out: Vec<DiffExtent> = Vec::new();
    for i in indexes {
        let (ha, hb) = (a.hash_at(i), b.hash_at(i));
        if ha == hb {
            continue;
        }
        let kind = if hb.is_zero() { "zero" } else { "data" };
        let offset = i * bs;
        let length = bs.min(end - offset);
        match out.last_mut() {
            Some(last) if last.kind == kind && last.offset + last.length == offset => {
                last.length += length;
            }
            _ => out.push(DiffExtent {
                offset,
                length,
                kind,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{BlockHash, BlockMap};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const BS: u32 = 4096;

    fn content(size: u64, map: &[(u64, u8)], private: &[(u64, u8)]) -> Content {
        let h = |b: u8| {
            if b == 0 {
                BlockHash::ZERO
            } else {
                BlockHash::of_bytes(&[b])
            }
        };
        Content {
            size,
            block_size: BS,
            map: BlockMap::from_entries(BS, size, map.iter().map(|&(i, b)| (i, h(b))).collect())
                .unwrap(),
            private: private.iter().map(|&(i, b)| (i, h(b))).collect(),
        }
    }

    /// The content block by block, zero-extended to `blocks`.
    fn dense(c: &Content, blocks: u64) -> Vec<BlockHash> {
        (0..blocks).map(|i| c.hash_at(i)).collect()
    }

    #[test]
    fn ranges_are_merged_and_typed() {
        let a = content(10 * 4096, &[(0, 1), (1, 2), (2, 3), (5, 4)], &[]);
        // Block 1 changed, 2 zeroed by a private block, 5 gone, 7 new; 0 the same.
        let b = content(
            10 * 4096,
            &[(0, 1), (1, 9), (5, 4), (7, 8)],
            &[(2, 0), (5, 0)],
        );
        assert_eq!(
            compare(&a, &b),
            vec![
                DiffExtent {
                    offset: 4096,
                    length: 4096,
                    kind: "data"
                },
                DiffExtent {
                    offset: 8192,
                    length: 4096,
                    kind: "zero"
                },
                DiffExtent {
                    offset: 5 * 4096,
                    length: 4096,
                    kind: "zero"
                },
                DiffExtent {
                    offset: 7 * 4096,
                    length: 4096,
                    kind: "data"
                },
            ]
        );
        assert!(compare(&a, &a).is_empty());
    }

    #[test]
    fn a_short_last_block_ends_at_the_larger_size() {
        let a = content(4096 + 100, &[(1, 1)], &[]);
        let b = content(4096 + 100, &[(1, 2)], &[]);
        assert_eq!(
            compare(&a, &b),
            vec![DiffExtent {
                offset: 4096,
                length: 100,
                kind: "data"
            }]
        );
    }

    proptest! {
        /// The extents cover exactly the blocks whose hashes differ.
        #[test]
        fn extents_are_exactly_the_differing_blocks(
            sa in 1u64..40, sb in 1u64..40,
            ma in proptest::collection::btree_map(0u64..40, 0u8..3, 0..20),
            mb in proptest::collection::btree_map(0u64..40, 0u8..3, 0..20),
            pb in proptest::collection::btree_map(0u64..40, 0u8..3, 0..10),
        ) {
            let keep = |m: &BTreeMap<u64, u8>, n: u64| -> Vec<(u64, u8)> {
                m.iter().filter(|e| *e.0 < n).map(|(&i, &b)| (i, b)).collect()
            };
            let a = content(sa * 4096, &keep(&ma, sa), &[]);
            let b = content(sb * 4096, &keep(&mb, sb), &keep(&pb, sb));
            let n = sa.max(sb);
            let (da, db) = (dense(&a, n), dense(&b, n));
            let mut covered = vec![false; n as usize];
            for e in compare(&a, &b) {
                for i in e.offset / 4096..(e.offset + e.length) / 4096 {
                    covered[i as usize] = true;
                    prop_assert_eq!(e.kind == "zero", db[i as usize].is_zero());
                }
            }
            for i in 0..n as usize {
                prop_assert_eq!(covered[i], da[i] != db[i], "block {}", i);
            }
        }
    }
}
