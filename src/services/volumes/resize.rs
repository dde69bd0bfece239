//! Resizing a volume. Growing only changes the size; shrinking (explicitly allowed) truncates
//! the base map and drops private blocks past the new end.
//!
//! Invariant kept for growth: no stored byte at or past the volume's size is ever non-zero in
//! the base map, and growth zeroes the tail of a private last block first, so the new tail
//! always reads as zeros.

use super::blockio::BlockSource;
use super::open;
use crate::error::{Error, Result};
use crate::repo::Repository;
use crate::storage::fsutil::remove_path;
use crate::time::now_rfc3339;
use serde::Serialize;

/// What [`resize`] did.
#[derive(Debug, Clone, Serialize)]
pub struct ResizeReport {
    pub volume: String,
    pub old_size: u64,
    pub new_size: u64,
    /// Private blocks dropped past the new end (shrink only).
    pub private_blocks_dropped: u64,
}

/// Sets the size of volume `name`; shrinking needs `allow_shrink`.
pub fn resize(
    repo: &Repository,
    name: &str,
    new_size: u64,
    allow_shrink: bool,
) -> Result<ResizeReport> {
    crate::storage::map::check_resource_size("new size", new_size)?;
    let vol = open(repo, name, true)?;
    let old = vol.record.size;
    let bs = vol.blocks.block_size();
    if new_size < old && !allow_shrink {
        return Err(Error::invalid(format!(
            "{new_size} bytes is smaller than volume '{name}' ({old} bytes): shrinking drops \
             data; pass --allow-shrink if that is what you want"
        )));
    }
    let keep_blocks = new_size.min(old).div_ceil(bs);
    let stray: Vec<u64> = vol
        .blocks
        .private_indexes()?
        .range(keep_blocks..)
        .copied()
        .collect();
    let mut base_map = vol.record.base_map;
    if new_size > old {
        // Leftovers of an interrupted shrink must not reappear in the new tail.
        for &i in &stray {
            remove_path(&vol.blocks.private_path(i))?;
        }
        if old % bs != 0 && matches!(vol.blocks.source(old / bs)?, BlockSource::Private(_)) {
            let tail = vec![0u8; (bs - old % bs) as usize];
            vol.blocks.write_at(old, &tail)?;
        }
    } else if new_size < old {
        if new_size % bs != 0 {
            // The partial last block must hold nothing past the new end: make it private and
            // zero its tail (this also covers a shared block whose data runs past the end).
            let end = ((new_size / bs) + 1) * bs;
            let tail = vec![0u8; (end.min(old) - new_size) as usize];
            vol.blocks.write_at(new_size, &tail)?;
        }
        let base = vol.blocks.base();
        let cut = base
            .resized(base.size().min(new_size))
            .map_err(|e| Error::invalid(format!("resize volume '{name}': {e}")))?;
        base_map = repo.backend().put_map(&cut)?;
    }
    vol.blocks.finish()?;
    if new_size != old {
        repo.transact(|cat| {
            let mut v = super::find(cat, name)?;
            v.size = new_size;
            v.base_map = base_map;
            v.modified_at = now_rfc3339();
            cat.put_volume(name, &v)
        })?;
    }
    let mut dropped = 0;
    if new_size < old {
        for &i in &stray {
            remove_path(&vol.blocks.private_path(i))?;
            dropped += 1;
        }
    }
    Ok(ResizeReport {
        volume: name.to_string(),
        old_size: old,
        new_size,
        private_blocks_dropped: dropped,
    })
}
