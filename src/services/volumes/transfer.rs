//! Import of disk images as new volumes and export of volumes to files: raw natively (sparse,
//! zero blocks as holes), every other format through `qemu-img`.

use super::blockio::write_nonzero_pages;
use super::{OpenVolume, STATUS_AVAILABLE, open, validate_volume_name};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::repo::records::VolumeRecord;
use crate::services::objects::new_uuid;
use crate::storage::export::{Sink, export};
use crate::storage::fsutil::{sibling_temp, write_file_atomically};
use crate::storage::ingest::{Source, ingest, worker_threads};
use crate::storage::ordered::read_in_order;
use crate::storage::s3::pipeline_threads;
use crate::storage::{BlockHash, BlockMap};
use crate::time::now_rfc3339;
use serde::Serialize;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Formats `export` writes: raw natively, the others through `qemu-img convert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    Raw,
    Qcow2,
    Vmdk,
    Vdi,
    Vhdx,
}

impl ExportFormat {
    /// The format's name, as qemu-img spells it.
    pub fn name(self) -> &'static str {
        match self {
            ExportFormat::Raw => "raw",
            ExportFormat::Qcow2 => "qcow2",
            ExportFormat::Vmdk => "vmdk",
            ExportFormat::Vdi => "vdi",
            ExportFormat::Vhdx => "vhdx",
        }
    }

    /// The format a file name's extension names (`.img` is raw), None for any other.
    pub fn from_extension(path: &Path) -> Option<ExportFormat> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "raw" | "img" => ExportFormat::Raw,
            "qcow2" => ExportFormat::Qcow2,
            "vmdk" => ExportFormat::Vmdk,
            "vdi" => ExportFormat::Vdi,
            "vhdx" => ExportFormat::Vhdx,
            _ => return None,
        })
    }
}

/// What [`export_volume`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub volume: String,
    pub path: PathBuf,
    pub format: ExportFormat,
    pub bytes: u64,
    pub private_blocks: u64,
}

/// Writes the content of volume `name` to `dest` (atomically; an existing file only with
/// `force`). Raw output is sparse; other formats are converted from a sparse raw temporary by
/// qemu-img (checked to be installed before anything is read or written).
pub fn export_volume(
    repo: &Repository,
    name: &str,
    dest: &Path,
    format: ExportFormat,
    force: bool,
    progress: &dyn Progress,
) -> Result<ExportReport> {
    if format != ExportFormat::Raw {
        crate::tools::require(&format!("export to {}", format.name()), &["qemu-img"], None)?;
    }
    let vol = open(repo, name, false)?;
    let size = vol.record.size;
    let mut private_blocks = 0;
    let mut fill = |file: &File| -> Result<()> {
        progress.set_total(size);
        private_blocks = write_raw(&vol, file, progress)?;
        progress.finish();
        Ok(())
    };
    match format {
        ExportFormat::Raw => write_file_atomically(dest, force, &mut fill)?,
        converted => {
            // `dest` stays untouched until the converted file is durable and renamed over it.
            crate::storage::fsutil::check_output_target(dest, force)?;
            let raw = sibling_temp(dest);
            let qcow = sibling_temp(dest);
            let result = (|| {
                let f = File::create(&raw).map_err(|e| Error::io("create", &raw, e))?;
                fill(&f)?;
                drop(f);
                qemu_img(&[
                    "convert".as_ref(),
                    "-f".as_ref(),
                    "raw".as_ref(),
                    "-O".as_ref(),
                    converted.name().as_ref(),
                    raw.as_os_str(),
                    qcow.as_os_str(),
                ])?;
                File::open(&qcow)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| Error::io("fsync", &qcow, e))?;
                std::fs::rename(&qcow, dest).map_err(|e| Error::io("rename to", dest, e))?;
                crate::storage::fsutil::sync_parent(dest)
            })();
            let _ = std::fs::remove_file(&raw);
            let _ = std::fs::remove_file(&qcow);
            result?
        }
    }
    Ok(ExportReport {
        volume: name.to_string(),
        path: dest.to_path_buf(),
        format,
        bytes: size,
        private_blocks,
    })
}

/// Writes the content of `vol` into `file` (empty, or sparse zeros of any length), which ends
/// up exactly the volume's size with zero blocks and zero pages as holes. The shared blocks go
/// through the parallel verified exporter, private blocks are laid on top. Returns the number
/// of private blocks.
pub fn write_raw(vol: &OpenVolume<'_>, file: &File, progress: &dyn Progress) -> Result<u64> {
    let size = vol.record.size;
    let bs = vol.record.block_size as u64;
    let private = vol.live_private()?;
    // The shared blocks the volume still reads (its private ones are laid on top below).
    let entries: Vec<(u64, BlockHash)> = vol
        .base_entries()
        .iter()
        .filter(|(i, _)| private.binary_search(i).is_err())
        .copied()
        .collect();
    let shared = BlockMap::from_entries(vol.record.block_size, size, entries)
        .map_err(|e| Error::invalid(format!("export of volume '{}': {e}", vol.name)))?;
    let resource = format!("volume {}", vol.name);
    export(
        vol.blocks.backend(),
        &shared,
        &resource,
        true,
        Sink::File(file),
        progress,
    )?;
    // Private blocks are read ahead on several threads (each is a request on an object
    // store) and laid down in order.
    let threads = pipeline_threads(vol.blocks.backend(), worker_threads());
    let read = |&i: &u64, buf: &mut Vec<u8>| vol.blocks.read_private(i, buf);
    read_in_order(threads, private.iter().copied(), &read, &mut |i, buf| {
        let len = (size - i * bs).min(bs) as usize;
        write_nonzero_pages(file, &buf[..len], i * bs).map_err(|e| Error::io("write", &resource, e))
    })?;
    Ok(private.len() as u64)
}

/// Runs `qemu-img` and returns its stdout; its stderr becomes the error message.
pub fn qemu_img(args: &[&std::ffi::OsStr]) -> Result<Vec<u8>> {
    let out = crate::interrupt::output(Command::new("qemu-img").args(args), None).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::invalid(
                "qemu-img is not installed; install it (Debian/Ubuntu: apt install qemu-utils) \
                 or use raw images",
            )
        } else {
            Error::io("run", "qemu-img", e)
        }
    })?;
    if !out.status.success() {
        return Err(Error::invalid(format!(
            "qemu-img failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

/// What [`import_volume`] did.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub volume: String,
    pub id: String,
    pub path: PathBuf,
    /// The input format (given, or detected by qemu-img).
    pub format: String,
    pub size: u64,
    pub blocks_written: u64,
    pub zero_blocks: u64,
}

/// The format of a disk image as qemu-img detects it. Without qemu-img only raw can be
/// imported: a file carrying another format's magic is refused, never taken for raw bytes.
fn detect_format(path: &Path) -> Result<String> {
    let out = match qemu_img(&["info".as_ref(), "--output=json".as_ref(), path.as_os_str()]) {
        Ok(out) => out,
        Err(Error::Invalid(m)) if m.starts_with("qemu-img is not installed") => {
            return match super::format::sniff(path)? {
                None => Ok("raw".into()),
                Some(format) => Err(Error::invalid(format!(
                    "{} looks like a {format} image and qemu-img is not installed to convert \
                     it; install it (Debian/Ubuntu: apt install qemu-utils), or pass \
                     --format raw to import the file's bytes as they are",
                    path.display()
                ))),
            };
        }
        Err(Error::Invalid(m)) => {
            return Err(Error::invalid(format!(
                "cannot read {}: {m}",
                path.display()
            )));
        }
        Err(e) => return Err(e),
    };
    let v: serde_json::Value = serde_json::from_slice(&out)
        .map_err(|e| Error::invalid(format!("unexpected qemu-img info output: {e}")))?;
    Ok(v["format"].as_str().unwrap_or("raw").to_string())
}

/// Imports the disk image `path` as new volume `name`: content-addressed and deduplicated
/// like `put`. Raw is read natively (holes skipped); other formats are converted to a sparse
/// raw temporary by qemu-img first.
pub fn import_volume(
    repo: &Repository,
    path: &Path,
    name: &str,
    format: Option<&str>,
    progress: &dyn Progress,
) -> Result<ImportReport> {
    validate_volume_name(name)?;
    let exists = || Error::AlreadyExists {
        kind: "volume",
        name: name.to_string(),
        fix: "choose another name, or remove it with `arch volume rm`".into(),
    };
    if repo.catalog()?.has_volume(name)? {
        return Err(exists());
    }
    if let Err(e) = std::fs::metadata(path) {
        return Err(Error::SourceUnreadable {
            path: path.to_path_buf(),
            source: e,
        });
    }
    let format = match format {
        Some(f) => f.to_ascii_lowercase(),
        None => detect_format(path)?,
    };
    if format != "raw" {
        // Probed again with the format pinned, so what is checked is what convert reads.
        let info = qemu_img(&[
            "info".as_ref(),
            "--output=json".as_ref(),
            "-f".as_ref(),
            format.as_ref(),
            path.as_os_str(),
        ])
        .map_err(|e| Error::invalid(format!("cannot import {}: {e}", path.display())))?;
        let info: serde_json::Value = serde_json::from_slice(&info)
            .map_err(|e| Error::invalid(format!("unexpected qemu-img info output: {e}")))?;
        super::untrusted::check_self_contained(path, &format, &info)?;
    }
    let _data = repo.lock_data_shared()?;
    let converted = (format != "raw").then(|| {
        repo.tmp_dir()
            .join(format!("import-{}-{}", std::process::id(), new_uuid()))
    });
    let result = (|| {
        let input = match &converted {
            Some(tmp) => {
                qemu_img(&[
                    "convert".as_ref(),
                    "-f".as_ref(),
                    format.as_ref(),
                    "-O".as_ref(),
                    "raw".as_ref(),
                    path.as_os_str(),
                    tmp.as_os_str(),
                ])
                .map_err(|e| Error::invalid(format!("cannot import {}: {e}", path.display())))?;
                tmp.clone()
            }
            None => path.to_path_buf(),
        };
        let file = File::open(&input).map_err(|e| Error::SourceUnreadable {
            path: input.clone(),
            source: e,
        })?;
        ingest(
            repo.backend(),
            repo.block_size(),
            Source::File { file, path: input },
            progress,
        )
    })();
    if let Some(tmp) = &converted {
        let _ = std::fs::remove_file(tmp);
    }
    let ingested = result?;
    progress.finish();
    let now = now_rfc3339();
    let id = new_uuid();
    repo.transact(|cat| {
        if cat.has_volume(name)? {
            return Err(exists());
        }
        cat.put_volume(
            name,
            &VolumeRecord {
                id: id.clone(),
                size: ingested.map.size(),
                block_size: repo.block_size(),
                source: None,
                source_object: None,
                base_map: ingested.map_id,
                epoch: 1,
                created_at: now.clone(),
                modified_at: now,
                status: STATUS_AVAILABLE.into(),
                customization: Vec::new(),
                creation: None,
            },
        )
    })?;
    Ok(ImportReport {
        volume: name.to_string(),
        id,
        path: path.to_path_buf(),
        format,
        size: ingested.map.size(),
        blocks_written: ingested.blocks_written,
        zero_blocks: ingested.zero_blocks,
    })
}
