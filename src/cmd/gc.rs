//! `arch gc [--dry-run] [--max-unused PERCENT]`: remove blocks, maps and temporary files no resource needs.

use super::output::{emit, key_values};
use super::{Context, Status};
use crate::integrity::gc::{GcOptions, gc};
use crate::units::format_size;

/// Free the space of deleted objects and volumes, superseded versions and dropped blocks.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch gc --dry-run\n  arch gc --json | jq .bytes_freed\n  arch gc --max-unused 10\n\nSafe while other arch commands run: it waits for running writers and holds new ones back."
)]
pub struct Args {
    /// Report what would be freed without removing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Leave packs that are partly unused in place while the unused bytes they hold stay
    /// under PERCENT of the bytes kept in packs; packs with the largest unused share are
    /// rewritten first. Whole unused packs are always removed. Default 0: every unused byte
    /// is freed (deleted data is gone from disk).
    #[arg(long, value_name = "PERCENT", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=100))]
    pub max_unused: u32,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let progress = super::progress_bar::for_context(ctx, "gc", None);
    let opts = GcOptions {
        dry_run: args.dry_run,
        max_unused_percent: args.max_unused,
    };
    let report = gc(&repo, &opts, progress.as_ref());
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
        let freed = format!(
            "{} blocks ({}), {} maps, {} temp entries, {} volume entries ({}), {} stale locks",
            report.blocks_freed,
            format_size(report.bytes_freed),
            report.maps_freed,
            report.temp_entries_removed,
            report.volume_entries_removed,
            format_size(report.volume_bytes_freed),
            report.stale_locks_removed
        );
        let mut rows = vec![(verb, freed)];
        // Only a repository with packs has a line about them.
        if repo.config().packs {
            let partial = if report.packs_kept_partial > 0 {
                format!(
                    "; {} kept partly unused ({} unused, within --max-unused)",
                    report.packs_kept_partial,
                    format_size(report.bytes_unused_kept)
                )
            } else {
                String::new()
            };
            let packs = format!(
                "{} removed, {} of them rewritten ({} copied){partial}",
                report.packs_removed,
                report.packs_rewritten,
                format_size(report.bytes_rewritten),
            );
            rows.push(("packs", packs));
        }
        let kept = format!(
            "{} blocks ({})",
            report.blocks_kept,
            format_size(report.bytes_kept)
        );
        rows.push(("kept", kept));
        writeln!(out, "{}", key_values(&rows))
    })?;
    Ok(Status::Ok)
}
