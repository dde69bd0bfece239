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

/// A new size: absolute (`40G`), or relative to the current one (`+1G`, `-1G`), as
/// `qemu-img resize` and `rbd resize` take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewSize {
    To(u64),
    Grow(u64),
    Shrink(u64),
}

impl NewSize {
    /// Parses `SIZE`, `+SIZE` or `-SIZE` (SIZE as [`crate::units::parse_size`] takes it).
    pub fn parse(s: &str) -> std::result::Result<NewSize, String> {
        let size = |t: &str| crate::units::parse_size(t);
        match s.as_bytes().first() {
            Some(b'+') => size(&s[1..]).map(NewSize::Grow),
            Some(b'-') => size(&s[1..]).map(NewSize::Shrink),
            _ => size(s).map(NewSize::To),
        }
    }

    /// The size this makes of `old` bytes (of volume `name`, for errors).
    pub fn apply(self, name: &str, old: u64) -> Result<u64> {
        match self {
            NewSize::To(n) => Ok(n),
            NewSize::Grow(d) => old.checked_add(d).ok_or_else(|| {
                Error::invalid(format!(
                    "volume '{name}' ({old} bytes) cannot grow by {d} bytes: the size overflows"
                ))
            }),
            NewSize::Shrink(d) => old.checked_sub(d).ok_or_else(|| {
                Error::invalid(format!(
                    "volume '{name}' is {old} bytes; it cannot shrink by {d} bytes (give at \
                     most -{old}, or an absolute size)"
                ))
            }),
        }
    }
}

/// Sets the size of volume `name`; shrinking needs `allow_shrink`.
pub fn resize(
    repo: &Repository,
    name: &str,
    new_size: u64,
    allow_shrink: bool,
) -> Result<ResizeReport> {
    resize_to(repo, name, NewSize::To(new_size), allow_shrink)
}

/// [`resize`] to an absolute or relative size, computed under the volume's lock.
pub fn resize_to(
    repo: &Repository,
    name: &str,
    size: NewSize,
    allow_shrink: bool,
) -> Result<ResizeReport> {
    if let NewSize::To(n) = size {
        crate::storage::map::check_resource_size("new size", n)?;
    }
    let vol = open(repo, name, true)?;
    let old = vol.record.size;
    let new_size = size.apply(name, old)?;
    crate::storage::map::check_resource_size("new size", new_size)?;
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
            vol.blocks.remove_private(i)?;
        }
        if old % bs != 0 && matches!(vol.blocks.source(old / bs)?, BlockSource::Private) {
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
            vol.blocks.remove_private(i)?;
            dropped += 1;
        }
        vol.blocks.finish()?;
    }
    Ok(ResizeReport {
        volume: name.to_string(),
        old_size: old,
        new_size,
        private_blocks_dropped: dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::NewSize;

    #[test]
    fn relative_sizes_parse_and_apply() {
        assert_eq!(NewSize::parse("+1G"), Ok(NewSize::Grow(1 << 30)));
        assert_eq!(NewSize::parse("-4K"), Ok(NewSize::Shrink(4096)));
        assert_eq!(NewSize::parse("40G"), Ok(NewSize::To(40 << 30)));
        assert!(NewSize::parse("+").is_err() && NewSize::parse("-x").is_err());
        assert_eq!(NewSize::Grow(10).apply("v", 5).unwrap(), 15);
        assert_eq!(NewSize::Shrink(5).apply("v", 5).unwrap(), 0);
        let err = NewSize::Shrink(6).apply("v", 5).unwrap_err().to_string();
        assert!(err.contains("cannot shrink by 6 bytes"), "{err}");
        assert!(NewSize::Grow(u64::MAX).apply("v", 1).is_err());
    }
}
