//! `arch fsck [--read-data] [--repair]`: check the repository; exit 1 when damaged.

use super::output::{emit, key_values, table};
use super::{Context, Status};
use crate::integrity::fsck::{FsckOptions, fsck};
use crate::units::format_size;

/// Check that every resource's map and blocks are present (and intact with --read-data).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch fsck\n  arch fsck --read-data --json\n  arch fsck --repair\n  arch fsck --read-data --repair   # quarantine corrupt blocks\n\nExit codes: 0 no damage (garbage may exist: `arch gc` removes it), 1 damage found, 2 error."
)]
pub struct Args {
    /// Rehash every stored block and report corrupted ones with the resources using them.
    #[arg(long)]
    pub read_data: bool,
    /// Remove what is provably garbage (temporary files, leftover private-block files, stale locks); never
    /// anything a resource references. Move corrupt blocks and maps (with --read-data, every
    /// corrupt block) to quarantine/, so the next put of their data writes them again; restrict
    /// permissions wider than the repository's.
    #[arg(long)]
    pub repair: bool,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Status> {
    let repo = ctx.repo_for_check()?;
    if let Some(s3) = repo.backend().as_s3() {
        // Listing a large bucket takes a while: a bar (on a terminal) while it runs.
        s3.set_listing_progress(super::progress_bar::for_context(
            ctx,
            "listing blocks",
            None,
        ));
    }
    let report = fsck(
        &repo,
        FsckOptions {
            read_data: args.read_data,
            repair: args.repair,
        },
    )?;
    emit(ctx, &report, |out| {
        for line in &report.repaired {
            writeln!(out, "repair: {line}")?;
        }
        for line in &report.warnings {
            writeln!(out, "warning: {line}")?;
        }
        let g = &report.garbage;
        writeln!(
            out,
            "{}",
            key_values(&[
                ("objects", report.objects.to_string()),
                ("volumes", report.volumes.to_string()),
                ("maps", report.maps.to_string()),
                (
                    "blocks",
                    format!("{} ({})", report.blocks, format_size(report.stored_bytes))
                ),
                ("blocks rehashed", report.blocks_read.to_string()),
                (
                    "garbage",
                    format!(
                        "{} blocks ({}), {} maps, {} temp entries, {} volume entries ({}), {} stale locks, {} unfinished volumes",
                        g.unreferenced_blocks,
                        format_size(g.unreferenced_bytes),
                        g.unreferenced_maps,
                        g.temp_entries,
                        g.volume_entries,
                        format_size(g.volume_bytes),
                        g.stale_locks,
                        g.unfinished_volumes
                    ) + &if g.extra_copies > 0 {
                        format!(
                            ", {} extra copies of packed blocks ({})",
                            g.extra_copies,
                            format_size(g.extra_copy_bytes)
                        )
                    } else {
                        String::new()
                    }
                ),
            ])
        )?;
        if report.clean() {
            writeln!(out, "no damage found")
        } else {
            let rows = report
                .problems
                .iter()
                .map(|p| vec![p.kind.clone(), p.resources.join(" "), p.message.clone()])
                .collect();
            writeln!(
                out,
                "{}",
                table(&["problem", "resources", "detail"], rows, &[])
            )
        }
    })?;
    Ok(if report.clean() {
        Status::Ok
    } else {
        Status::Problems
    })
}
