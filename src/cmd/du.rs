//! `arch du [NAME...]`: logical, stored, unique and shared bytes per resource.

use super::output::{emit, table};
use super::{Context, Status};
use crate::integrity::du::du;
use crate::units::format_size;

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
    let report = du(&repo, &args.names)?;
    emit(ctx, &report, |out| {
        let rows = report
            .resources
            .iter()
            .map(|r| {
                vec![
                    r.resource.clone(),
                    format_size(r.logical_bytes),
                    format_size(r.stored_bytes),
                    format_size(r.unique_bytes),
                    format_size(r.shared_bytes),
                ]
            })
            .collect();
        writeln!(
            out,
            "{}",
            table(
                &["resource", "logical", "stored", "unique", "shared"],
                rows,
                &[1, 2, 3, 4]
            )
        )?;
        writeln!(
            out,
            "total: {} logical, {} stored ({} garbage), dedup ratio {:.2}",
            total_size(report.logical_bytes),
            format_size(report.stored_bytes),
            format_size(report.garbage_bytes),
            report.dedup_ratio
        )
    })?;
    Ok(Status::Ok)
}

/// A total for humans: in units when it fits a u64, else exact bytes.
fn total_size(bytes: u128) -> String {
    u64::try_from(bytes).map_or_else(|_| format!("{bytes} B"), format_size)
}
