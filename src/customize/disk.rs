//! The partition table of a raw disk image (MBR or GPT, read and changed with sfdisk) and the
//! choice of the root partition.

use super::tools::run;
use crate::error::{Error, Result};
use std::path::Path;

/// One partition, in 512-byte sectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// 1-based partition number.
    pub number: u32,
    pub start: u64,
    pub sectors: u64,
}

/// A disk's partition table.
#[derive(Debug, Clone)]
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

/// Grows the last partition to the end of the disk (GPT: the backup header moves to the end
/// first). Returns the partition before and after, or None when it already fills the disk.
pub fn grow_last_partition(task: &str, disk: &Path) -> Result<Option<(Partition, Partition)>> {
    let table = read_table(task, disk)?;
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
    let number = last.number.to_string();
    let mut args = quiet.to_vec();
    args.extend(["-N".as_ref(), number.as_ref(), disk.as_os_str()]);
    run(task, "sfdisk", &args, Some(b", +\n"))?;
    let grown = read_table(task, disk)?
        .partition(last.number)
        .cloned()
        .ok_or_else(|| Error::invalid(format!("{task}: partition {number} vanished")))?;
    Ok((grown != last).then_some((last, grown)))
}
