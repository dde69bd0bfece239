//! `arch du [NAME...]`: logical, stored, unique and shared bytes per resource.
//!
//! Rows are written as they are computed (streamed): a plain table with fixed columns, or
//! one JSON document written incrementally (`{"resources":[...], totals}`), held back for
//! its first 4 MiB so that an early error leaves only the error document.

use super::ls::Spill;
use super::output::escape_control;
use super::{Context, Status};
use crate::error::Error;
use crate::integrity::du::{DuTotals, du};
use crate::units::format_size;
use std::io::Write;

/// Show space use: per resource and for the whole repository, with the deduplication ratio.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch du\n  arch du images/debian.raw vol1 --json\n\nunique = what deleting the resource would free (after gc); shared = stored bytes other resources also use."
)]
pub struct Args {
    /// Objects (`container/object`) or volumes; all resources when omitted.
    pub names: Vec<String>,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let mut out = Spill::new(super::ls::SPILL);
    let io = |e| Error::io("write", "stdout", e);
    if ctx.json {
        write!(out, "{{\"resources\":[").map_err(io)?;
    } else if !ctx.quiet {
        writeln!(
            out,
            "{}",
            line("resource", ["logical", "stored", "unique", "shared"])
        )
        .map_err(io)?;
    }
    let mut first = true;
    let totals = du(&repo, &args.names, &mut |r| {
        if ctx.json {
            let sep = if first { "" } else { "," };
            let doc = serde_json::to_string(&r).expect("a usage row serializes");
            write!(out, "{sep}{doc}").map_err(io)?;
        } else if !ctx.quiet {
            let sizes = [
                r.logical_bytes,
                r.stored_bytes,
                r.unique_bytes,
                r.shared_bytes,
            ];
            let cells = sizes.map(format_size);
            writeln!(
                out,
                "{}",
                line(
                    &escape_control(&r.resource),
                    cells.each_ref().map(String::as_str)
                )
            )
            .map_err(io)?;
        }
        first = false;
        Ok(())
    })?;
    if ctx.json {
        let doc = serde_json::to_string(&totals)?;
        // The totals object's fields follow the resources in the same document.
        writeln!(out, "],{}", &doc[1..])?;
    } else if !ctx.quiet {
        writeln!(out, "{}", summary(&totals))?;
    }
    out.flush()?;
    Ok(Status::Ok)
}

/// One row of the plain table: the resource, then four right-aligned sizes.
fn line(resource: &str, sizes: [&str; 4]) -> String {
    let [a, b, c, d] = sizes;
    format!("{resource:<40} {a:>10} {b:>10} {c:>10} {d:>10}")
        .trim_end()
        .to_string()
}

fn summary(t: &DuTotals) -> String {
    format!(
        "total: {} logical, {} stored ({} garbage), dedup ratio {:.2}",
        total_size(t.logical_bytes),
        format_size(t.stored_bytes),
        format_size(t.garbage_bytes),
        t.dedup_ratio
    )
}

/// A total for humans: in units when it fits a u64, else exact bytes.
fn total_size(bytes: u128) -> String {
    u64::try_from(bytes).map_or_else(|_| format!("{bytes} B"), format_size)
}
