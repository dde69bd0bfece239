//! `arch gc [--dry-run]`: remove blocks, maps and temporary files no resource needs.

use super::output::{emit, key_values};
use super::{Context, Status};
use crate::integrity::gc::gc;
use crate::units::format_size;

/// Free the space of deleted objects and volumes, superseded versions and dropped blocks.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch gc --dry-run\n  arch gc --json | jq .bytes_freed\n\nSafe while other arch commands run: it waits for running writers and holds new ones back."
)]
pub struct Args {
    /// Report what would be freed without removing anything.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let progress = super::progress_bar::for_context(ctx, "gc", None);
    let report = gc(&repo, args.dry_run, progress.as_ref());
    progress.finish();
    let report = report?;
    for w in &report.warnings {
        eprintln!("arch: warning: {w}");
    }
    emit(ctx, &report, |out| {
        let verb = if report.dry_run {
            "would free"
        } else {
            "freed"
        };
        if !report.unfinished_volumes_removed.is_empty() {
            let what = if report.dry_run {
                "would remove unfinished volumes"
            } else {
                "removed unfinished volumes"
            };
            let names = report.unfinished_volumes_removed.join(", ");
            writeln!(out, "{what} (left by a dead clone): {names}")?;
        }
        writeln!(
            out,
            "{}",
            key_values(&[
                (
                    verb,
                    format!(
                        "{} blocks ({}), {} maps, {} temp entries, {} volume entries ({}), {} stale locks",
                        report.blocks_freed,
                        format_size(report.bytes_freed),
                        report.maps_freed,
                        report.temp_entries_removed,
                        report.volume_entries_removed,
                        format_size(report.volume_bytes_freed),
                        report.stale_locks_removed
                    )
                ),
                (
                    "packs",
                    format!(
                        "{} removed, {} of them rewritten ({} copied)",
                        report.packs_removed,
                        report.packs_rewritten,
                        format_size(report.bytes_rewritten)
                    )
                ),
                (
                    "kept",
                    format!(
                        "{} blocks ({})",
                        report.blocks_kept,
                        format_size(report.bytes_kept)
                    )
                ),
            ])
        )
    })?;
    Ok(Status::Ok)
}
