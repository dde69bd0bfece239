//! Customization of a volume: the tasks run on a disk file in `tmp/` that is either a FUSE
//! file backed by the volume (blocks loaded on first touch, writes kept in an overlay: the
//! cost follows what the tools touch) or, when FUSE cannot be used, a sparse raw copy (the
//! cost follows the data). Only the blocks whose bytes changed are written back,
//! copy-on-write.

use super::transfer::write_raw;
use super::{OpenVolume, STATUS_CREATING, creating, find, open_as, record_customization};
use crate::customize::{CustomizeOptions, customize_disk, fuse, validate};
use crate::error::{Error, Result};
use crate::progress::NoProgress;
use crate::repo::Repository;
use crate::repo::records::TaskRecord;
use crate::services::images::properties::EXCLUDE_ALL_TASKS;
use crate::storage::fsutil::remove_path;
use crate::storage::ingest::seek_data;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The image properties that drive the customization of volume `name`: those of the image
/// it was cloned from, when that object still exists.
pub fn source_properties(repo: &Repository, name: &str) -> Result<BTreeMap<String, String>> {
    let cat = repo.catalog()?;
    let vol = find(&cat, name)?;
    let source = match &vol.source_object {
        Some(o) => cat.object(o)?,
        None => None,
    };
    Ok(source
        .and_then(|o| o.image)
        .map(|i| i.properties)
        .unwrap_or_default())
}

/// What [`customize_volume`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CustomizeReport {
    pub volume: String,
    pub tasks: Vec<TaskRecord>,
    /// Blocks whose content the tasks changed (now private to the volume).
    pub blocks_changed: u64,
}

/// Runs the customization tasks on volume `name` with image `properties`; `explicit` (the
/// `arch customize` command) ignores EXCLUDE_ALL_TASKS, which only guards clones.
///
/// A `creating` volume whose creator is gone (a clone killed while it was customized) is
/// finished: its partial output is dropped, so the tasks start again from the source's
/// content, with the options given now (the original ones are not stored), and it becomes
/// `available`. A crash meanwhile leaves it `creating` again.
pub fn customize_volume(
    repo: &Repository,
    name: &str,
    properties: &BTreeMap<String, String>,
    opts: &CustomizeOptions,
    explicit: bool,
) -> Result<CustomizeReport> {
    validate(opts)?;
    let mut vol = open_as(repo, name, true, explicit)?;
    if vol.record.status == STATUS_CREATING {
        let id = vol.record.id.clone();
        // VolumeBlocks caches no file state: once the directory is gone it reads the source.
        creating::restart(repo, name, &id, opts)?;
    }
    customize_open(repo, &mut vol, properties, opts, explicit)
}

/// Customizes `vol`, opened exclusively by the caller, and records the outcome (making a
/// `creating` volume `available`) while the caller still holds the lock.
pub(super) fn customize_open(
    repo: &Repository,
    vol: &mut OpenVolume<'_>,
    properties: &BTreeMap<String, String>,
    opts: &CustomizeOptions,
    explicit: bool,
) -> Result<CustomizeReport> {
    let mut props = properties.clone();
    if explicit {
        props.remove(EXCLUDE_ALL_TASKS);
    }
    let name = vol.name.clone();
    let work = repo.tmp_dir().join(format!(
        "customize-{}",
        crate::services::objects::new_uuid()
    ));
    let scratch = work.join("scratch");
    crate::storage::fsutil::create_dir_all(&scratch, repo.modes())?;
    let disk = work.join("disk.raw");
    let result = (|| -> Result<(Vec<TaskRecord>, u64)> {
        let mode = fuse::mode()?;
        if mode != fuse::Mode::Off {
            match mount_fuse(vol, &disk, &work) {
                Ok(served) => {
                    let blocks = &vol.blocks;
                    let (tasks, changes, overlay) = served
                        .run(&|i, buf| blocks.read_block(i, buf), || {
                            customize_disk(&disk, &props, opts, &scratch)
                        })?;
                    if changes.size != vol.record.size {
                        return Err(Error::invalid(format!(
                            "customization changed the disk's size from {} to {} bytes; \
                             nothing was stored",
                            vol.record.size, changes.size
                        )));
                    }
                    let cache = work.join("cache.raw");
                    let changed = store_changed(vol, overlay.cache(), &cache, changes.written)?;
                    return Ok((tasks, changed));
                }
                Err(why) if mode == fuse::Mode::Required => {
                    return Err(Error::invalid(format!(
                        "{}=1 but the volume cannot be served through FUSE: {why}",
                        fuse::ENV
                    )));
                }
                Err(why) => {
                    eprintln!(
                        "arch: note: customizing a copy of the volume (slower): FUSE is not \
                         usable here: {why}"
                    );
                    // Whatever the attempt created (it unmounted on failure).
                    remove_path(&disk)?;
                    remove_path(&work.join("cache.raw"))?;
                }
            }
        }
        copy_and_customize(vol, &disk, &props, opts, &scratch)
    })();
    let _ = remove_path(&work);
    let (tasks, blocks_changed) = result?;
    record_customization(repo, &name, &vol.record.id, tasks.clone())?;
    Ok(CustomizeReport {
        volume: name,
        tasks,
        blocks_changed,
    })
}

/// Serves `vol` through FUSE on `disk` (created empty here), backed by a cache file in `work`.
/// The error says why FUSE cannot be used.
fn mount_fuse(
    vol: &OpenVolume<'_>,
    disk: &Path,
    work: &Path,
) -> std::result::Result<fuse::Served, String> {
    if !Path::new("/dev/fuse").exists() {
        return Err(
            "there is no /dev/fuse (load the fuse module, or run outside a container \
                    that hides it)"
                .into(),
        );
    }
    let create = |path: &Path| {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))
    };
    drop(create(disk)?);
    let cache = create(&work.join("cache.raw"))?;
    let mut data: BTreeSet<u64> = vol
        .live_private()
        .map_err(|e| e.to_string())?
        .into_iter()
        .collect();
    data.extend(vol.base_entries().iter().map(|e| e.0));
    fuse::Served::mount(disk, cache, vol.record.size, vol.blocks.block_size(), data)
}

/// The fallback: the volume laid out as a sparse raw file, the tasks run on it, and every block
/// holding data on either side compared afterwards.
fn copy_and_customize(
    vol: &mut OpenVolume<'_>,
    disk: &Path,
    props: &BTreeMap<String, String>,
    opts: &CustomizeOptions,
    scratch: &Path,
) -> Result<(Vec<TaskRecord>, u64)> {
    let (size, bs) = (vol.record.size, vol.blocks.block_size());
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(disk)
        .map_err(|e| Error::io("create", disk, e))?;
    write_raw(vol, &file, &NoProgress)?;
    drop(file);
    let tasks = customize_disk(disk, props, opts, scratch)?;
    // Blocks that may differ: those holding data in the volume or in the file now. Holes
    // on both sides are equal, so the cost follows the data, not the virtual size.
    let file = File::open(disk).map_err(|e| Error::io("open", disk, e))?;
    let mut candidates: BTreeSet<u64> = vol.live_private()?.into_iter().collect();
    candidates.extend(vol.base_entries().iter().map(|e| e.0));
    let mut offset = 0;
    while let Some(data) = seek_data(&file, offset).filter(|&d| d < size) {
        candidates.insert(data / bs);
        offset = (data / bs + 1) * bs;
    }
    if seek_data(&file, 0).is_none() {
        // The filesystem cannot tell holes: compare every block.
        candidates.extend(0..vol.block_count());
    }
    let changed = store_changed(vol, &file, disk, candidates)?;
    Ok((tasks, changed))
}

/// Stores the blocks of `candidates` whose bytes in `file` (laid out like the volume) differ
/// from the volume's, copy-on-write, and makes them durable. A block written with the bytes
/// it had stays shared. Returns how many changed.
fn store_changed(
    vol: &mut OpenVolume<'_>,
    file: &File,
    path: &Path,
    candidates: BTreeSet<u64>,
) -> Result<u64> {
    let (size, bs) = (vol.record.size, vol.blocks.block_size());
    let (mut buf, mut new) = (Vec::new(), Vec::new());
    let mut changed = 0;
    let blocks = vol.block_count();
    for i in candidates.into_iter().filter(|&i| i < blocks) {
        let offset = i * bs;
        let len = (size - offset).min(bs) as usize;
        new.clear();
        new.resize(len, 0);
        file.read_exact_at(&mut new, offset)
            .map_err(|e| Error::io("read", path, e))?;
        vol.blocks.read_block(i, &mut buf)?;
        if buf[..len] != new[..] {
            vol.blocks.write_at(offset, &new)?;
            changed += 1;
        }
    }
    vol.blocks.finish()?;
    Ok(changed)
}
