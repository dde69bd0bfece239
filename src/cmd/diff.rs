//! `arch diff A B [--stat]`: the byte ranges where two resources differ.

use super::output::{emit, table};
use super::{Context, Status};
use crate::services::transfer::diff::diff;
use crate::units::format_size;
use serde::Serialize;

/// Show where two resources (objects, images, snapshots, volumes, or NAME@N versions)
/// differ, block by block, from their maps: shared data is never read. Like `rbd diff`:
/// offset, length and type (`data`: B holds other data; `zero`: B reads zeros there).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch diff snapshots/monday snapshots/tuesday\n  arch diff snapshots/monday vm1 --stat\n  arch diff images/app.raw@1 images/app.raw --json"
)]
pub struct Args {
    /// The first resource.
    pub a: String,
    /// The second resource.
    pub b: String,
    /// Print only counts and bytes.
    #[arg(long)]
    pub stat: bool,
}

/// `--stat --json`: the report without its extents.
#[derive(Serialize)]
struct Stat<'a> {
    from: &'a str,
    to: &'a str,
    from_size: u64,
    to_size: u64,
    extent_count: usize,
    changed_blocks: u64,
    data_bytes: u64,
    zero_bytes: u64,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let r = diff(&repo, &args.a, &args.b)?;
    let stat_line = || {
        format!(
            "{} -> {}: {} ranges, {} blocks differ: {} of other data, {} zeroed; size {} -> {}",
            r.from,
            r.to,
            r.extents.len(),
            r.changed_blocks,
            format_size(r.data_bytes),
            format_size(r.zero_bytes),
            format_size(r.from_size),
            format_size(r.to_size)
        )
    };
    if args.stat {
        let stat = Stat {
            from: &r.from,
            to: &r.to,
            from_size: r.from_size,
            to_size: r.to_size,
            extent_count: r.extents.len(),
            changed_blocks: r.changed_blocks,
            data_bytes: r.data_bytes,
            zero_bytes: r.zero_bytes,
        };
        emit(ctx, &stat, |out| writeln!(out, "{}", stat_line()))?;
        return Ok(Status::Ok);
    }
    emit(ctx, &r, |out| {
        if !r.extents.is_empty() {
            let rows = r
                .extents
                .iter()
                .map(|e| {
                    vec![
                        e.offset.to_string(),
                        e.length.to_string(),
                        e.kind.to_string(),
                    ]
                })
                .collect();
            writeln!(
                out,
                "{}",
                table(&["offset", "length", "type"], rows, &[0, 1])
            )?;
        }
        writeln!(out, "{}", stat_line())
    })?;
    Ok(Status::Ok)
}
