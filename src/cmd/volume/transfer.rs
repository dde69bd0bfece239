//! `arch volume export|import`: volumes to and from disk-image files (raw, or via qemu-img).

use crate::cmd::output::{emit, key_values};
use crate::cmd::{Context, Status, progress_bar};
use crate::services::volumes::transfer::{self, ExportFormat};
use crate::units::format_size;
use std::path::PathBuf;

/// Write a volume to FILE: raw (sparse, zero blocks as holes) or qcow2 (via qemu-img).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch volume export vm1 -o vm1.raw\n  arch volume export vm1 -o vm1.qcow2 --format qcow2 && qemu-img check vm1.qcow2"
)]
pub struct ExportArgs {
    /// The volume.
    pub volume: String,
    /// Output file (written atomically).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "raw")]
    pub format: ExportFormat,
    /// Replace an existing FILE.
    #[arg(long)]
    pub force: bool,
}

/// Import a disk image as a new volume (raw natively; qcow2, vmdk, vdi... through qemu-img).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch volume import disk.raw vm1\n  arch volume import cloud.qcow2 vm2 --format qcow2"
)]
pub struct ImportArgs {
    /// Disk image file.
    pub file: PathBuf,
    /// Name of the new volume.
    pub volume: String,
    /// Input format (default: detected by qemu-img; without qemu-img, raw, and a file with
    /// another format's magic is refused). `raw` imports the file's bytes as they are.
    #[arg(long, value_name = "F")]
    pub format: Option<String>,
}

pub fn run_export(ctx: &Context, args: &ExportArgs) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let progress = progress_bar::for_context(ctx, "export", None);
    let report = transfer::export_volume(
        &repo,
        &args.volume,
        &args.output,
        args.format,
        args.force,
        progress.as_ref(),
    );
    progress.finish();
    let report = report?;
    emit(ctx, &report, |out| {
        writeln!(
            out,
            "{}",
            key_values(&[
                ("wrote", report.path.display().to_string()),
                ("format", format!("{:?}", report.format).to_lowercase()),
                ("size", format_size(report.bytes)),
            ])
        )
    })?;
    Ok(Status::Ok)
}

pub fn run_import(ctx: &Context, args: &ImportArgs) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let progress = progress_bar::for_context(ctx, "import", None);
    let report = transfer::import_volume(
        &repo,
        &args.file,
        &args.volume,
        args.format.as_deref(),
        progress.as_ref(),
    );
    progress.finish();
    let report = report?;
    emit(ctx, &report, |out| {
        writeln!(
            out,
            "{}",
            key_values(&[
                ("volume", report.volume.clone()),
                ("format", report.format.clone()),
                ("size", format_size(report.size)),
                (
                    "blocks",
                    format!("{} new, {} zero", report.blocks_written, report.zero_blocks)
                ),
            ])
        )
    })?;
    Ok(Status::Ok)
}
