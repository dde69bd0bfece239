//! The partition table of a raw disk image (MBR or GPT, read and changed with sfdisk), the
//! choice of the root partition, and saving the bytes past a partition while a tool runs.
//!
//! Memory never follows the disk's size: a disk is a sparse file of up to 64 TiB.

use super::tools::run;
use crate::error::{Error, Result};
use crate::storage::ingest::seek_data;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Last sector an MBR partition can reach: its start and length are 32-bit sector counts,
/// and partitioning tools keep the end below 2^32 - 1 sectors (2 TiB - 512 bytes).
pub const MBR_MAX_SECTORS: u64 = u32::MAX as u64;

/// One partition, in 512-byte sectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// 1-based partition number.
    pub number: u32,
    pub start: u64,
    pub sectors: u64,
}

/// A disk's partition table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// `dos` (MBR) or `gpt`.
    pub label: String,
    pub partitions: Vec<Partition>,
}

impl Table {
    pub fn partition(&self, number: u32) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.number == number)
    }

    /// The partition that ends last on the disk.
    pub fn last(&self) -> Option<&Partition> {
        self.partitions.iter().max_by_key(|p| p.start + p.sectors)
    }
}

/// Reads the partition table of `disk`.
pub fn read_table(task: &str, disk: &Path) -> Result<Table> {
    let out = run(task, "sfdisk", &["--json".as_ref(), disk.as_os_str()], None).map_err(|e| {
        Error::invalid(format!(
            "{task}: no MBR or GPT partition table found ({e}); only partitioned Linux disks are supported"
        ))
    })?;
    let v: serde_json::Value = serde_json::from_slice(&out)
        .map_err(|e| Error::invalid(format!("{task}: unexpected sfdisk output: {e}")))?;
    let t = &v["partitiontable"];
    let label = t["label"].as_str().unwrap_or_default().to_string();
    if label != "dos" && label != "gpt" {
        return Err(Error::invalid(format!(
            "{task}: partition table '{label}' is not supported (MBR or GPT only)"
        )));
    }
    let mut partitions = Vec::new();
    for p in t["partitions"].as_array().into_iter().flatten() {
        let node = p["node"].as_str().unwrap_or_default();
        let digits: String = node
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_digit())
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        partitions.push(Partition {
            number: digits.parse().unwrap_or(0),
            start: p["start"].as_u64().unwrap_or(0),
            sectors: p["size"].as_u64().unwrap_or(0),
        });
    }
    Ok(Table { label, partitions })
}

/// What [`grow_last_partition`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Growth {
    pub before: Partition,
    pub after: Partition,
    /// Bytes at the end of the disk no MBR partition can reach (0 for GPT, or a disk of at
    /// most 2 TiB).
    pub unreachable: u64,
    /// The partition table as it is now, for the tasks after (nothing else changes it).
    pub table: Table,
}

/// Grows the last partition to the end of the disk (GPT: the backup header moves to the end
/// first; MBR: at most to the MBR limit, [`MBR_MAX_SECTORS`]).
pub fn grow_last_partition(task: &str, disk: &Path) -> Result<Growth> {
    let table = read_table(task, disk)?;
    let disk_sectors = std::fs::metadata(disk)
        .map_err(|e| Error::io("stat", disk, e))?
        .len()
        / 512;
    let last = table
        .last()
        .cloned()
        .ok_or_else(|| Error::invalid(format!("{task}: the disk has no partition")))?;
    let quiet: [&std::ffi::OsStr; 3] = [
        "--no-reread".as_ref(),
        "--no-tell-kernel".as_ref(),
        "--quiet".as_ref(),
    ];
    if table.label == "gpt" {
        let mut args = quiet.to_vec();
        args.extend([
            "--relocate".as_ref(),
            "gpt-bak-std".as_ref(),
            disk.as_os_str(),
        ]);
        run(task, "sfdisk", &args, None)?;
    }
    let (end, unreachable) = if table.label == "dos" && disk_sectors > MBR_MAX_SECTORS {
        (MBR_MAX_SECTORS, (disk_sectors - MBR_MAX_SECTORS) * 512)
    } else {
        (disk_sectors, 0)
    };
    if last.start + last.sectors >= end {
        return Ok(Growth {
            before: last.clone(),
            after: last,
            unreachable,
            table,
        });
    }
    let number = last.number.to_string();
    let mut args = quiet.to_vec();
    args.extend(["-N".as_ref(), number.as_ref(), disk.as_os_str()]);
    // An explicit size: sfdisk's `+` would stop an MBR partition at 1 TiB on a larger disk.
    let input = if unreachable > 0 {
        format!(", {}\n", end - last.start)
    } else {
        ", +\n".to_string()
    };
    run(task, "sfdisk", &args, Some(input.as_bytes()))?;
    let now = read_table(task, disk)?;
    let grown = now
        .partition(last.number)
        .cloned()
        .ok_or_else(|| Error::invalid(format!("{task}: partition {number} vanished")))?;
    Ok(Growth {
        before: last,
        after: grown,
        unreachable,
        table: now,
    })
}

/// The data of a disk from an offset to its end, copied aside (holes are not copied) so that
/// it can be put back after a tool truncated or rewrote the file. Costs disk space and time
/// proportional to the data there, and a fixed 1 MiB buffer.
pub struct SavedTail {
    start: u64,
    len: u64,
    /// `(offset in the disk, length)` of each copied data range, in the copy back to back.
    extents: Vec<(u64, u64)>,
    copy: PathBuf,
}

const COPY_BUF: usize = 1 << 20;

impl SavedTail {
    /// Copies the data of `disk` from `start` to its end into a new file in `scratch`.
    pub fn save(disk: &Path, start: u64, scratch: &Path) -> Result<SavedTail> {
        let src = File::open(disk).map_err(|e| Error::io("open", disk, e))?;
        let len = src
            .metadata()
            .map_err(|e| Error::io("stat", disk, e))?
            .len();
        let copy = scratch.join(format!("tail-{}", crate::services::objects::new_uuid()));
        let dst = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&copy)
            .map_err(|e| Error::io("create", &copy, e))?;
        let mut extents = Vec::new();
        let mut at = start.min(len);
        let mut copied = 0u64;
        while at < len {
            // Without SEEK_DATA everything is data.
            let data = seek_data(&src, at).unwrap_or(at);
            if data >= len {
                break;
            }
            let end = seek_hole(&src, data).unwrap_or(len).min(len);
            copy_range(&src, disk, data, &dst, &copy, copied, end - data)?;
            extents.push((data, end - data));
            copied += end - data;
            at = end;
        }
        Ok(SavedTail {
            start,
            len,
            extents,
            copy,
        })
    }

    /// Puts the disk back to its saved length and writes the saved data back; the range
    /// between `start` and the end holds exactly what it held when saved (holes as zeros).
    pub fn restore(&self, disk: &Path) -> Result<()> {
        let f = OpenOptions::new()
            .write(true)
            .open(disk)
            .map_err(|e| Error::io("open", disk, e))?;
        let cur = f.metadata().map_err(|e| Error::io("stat", disk, e))?.len();
        // Whatever the tool left past `start` goes: cut there, then extend with zeros.
        f.set_len(self.start.min(cur))
            .map_err(|e| Error::io("resize", disk, e))?;
        f.set_len(self.len)
            .map_err(|e| Error::io("resize", disk, e))?;
        let src = File::open(&self.copy).map_err(|e| Error::io("open", &self.copy, e))?;
        let mut from = 0u64;
        for &(offset, n) in &self.extents {
            copy_range(&src, &self.copy, from, &f, disk, offset, n)?;
            from += n;
        }
        let _ = std::fs::remove_file(&self.copy);
        Ok(())
    }
}

/// Copies `n` bytes at `from` of `src` to `to` of `dst`, skipping all-zero chunks (the
/// destination reads zeros there already).
fn copy_range(
    src: &File,
    src_path: &Path,
    from: u64,
    dst: &File,
    dst_path: &Path,
    to: u64,
    n: u64,
) -> Result<()> {
    let mut buf = vec![0u8; COPY_BUF.min(n as usize)];
    let mut done = 0u64;
    while done < n {
        let k = (n - done).min(COPY_BUF as u64) as usize;
        src.read_exact_at(&mut buf[..k], from + done)
            .map_err(|e| Error::io("read", src_path, e))?;
        if buf[..k].iter().any(|&b| b != 0) {
            dst.write_all_at(&buf[..k], to + done)
                .map_err(|e| Error::io("write", dst_path, e))?;
        }
        done += k as u64;
    }
    Ok(())
}

/// The offset of the first hole at or after `offset` (Linux SEEK_HOLE; the end of the file
/// counts as a hole). None when the filesystem cannot tell.
fn seek_hole(file: &File, offset: u64) -> Option<u64> {
    // SAFETY: lseek on a valid descriptor; reads and writes here are positional.
    let r = unsafe { libc::lseek(file.as_raw_fd(), offset as libc::off_t, libc::SEEK_HOLE) };
    (r >= 0).then_some(r as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sfdisk(disk: &Path, script: &str) {
        let mut child = std::process::Command::new("sfdisk")
            .args(["--quiet", "--no-reread", "--no-tell-kernel"])
            .arg(disk)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
    }

    #[test]
    fn mbr_partition_stops_at_the_mbr_limit_on_a_3_tib_disk() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.raw");
        let f = File::create(&disk).unwrap();
        f.set_len(64 << 20).unwrap();
        sfdisk(&disk, "label: dos\n2048,,83\n");
        f.set_len(3 << 40).unwrap();
        let g = grow_last_partition("FixPartitionTable", &disk).unwrap();
        assert_eq!(g.after.start + g.after.sectors, MBR_MAX_SECTORS);
        assert_eq!(g.unreachable, (3 << 40) - MBR_MAX_SECTORS * 512);
        // Again: nothing to do, still reported as capped.
        let again = grow_last_partition("FixPartitionTable", &disk).unwrap();
        assert_eq!(again.before, again.after);
        assert_eq!(again.unreachable, g.unreachable);
    }

    #[test]
    fn saved_tail_restores_data_and_length_without_reading_holes() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.raw");
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&disk)
            .unwrap();
        f.set_len(1 << 40).unwrap();
        f.write_all_at(b"head", 0).unwrap();
        f.write_all_at(b"tail data", (1 << 40) - 4096).unwrap();
        let saved = SavedTail::save(&disk, 1 << 30, dir.path()).unwrap();
        assert!(saved.extents.iter().map(|e| e.1).sum::<u64>() <= 1 << 20);
        f.set_len(1 << 30).unwrap(); // what resize2fs does to a file
        f.write_all_at(b"new", 100).unwrap();
        saved.restore(&disk).unwrap();
        let r = File::open(&disk).unwrap();
        assert_eq!(r.metadata().unwrap().len(), 1 << 40);
        let mut buf = [0u8; 9];
        r.read_exact_at(&mut buf, (1 << 40) - 4096).unwrap();
        assert_eq!(&buf, b"tail data");
        r.read_exact_at(&mut buf[..4], 0).unwrap();
        assert_eq!(&buf[..4], b"head");
    }
}
