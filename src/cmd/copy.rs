//! `arch copy NAME... --to REPO [--rename OLD=NEW]...`: send | receive between two local
//! repositories, sending only the blocks the destination lacks.

use super::output::emit;
use super::{Context, Status, parse_key_value, progress_bar};
use crate::repo::Repository;
use crate::services::transfer::copy::copy;
use crate::services::transfer::renames;
use crate::units::format_size;
use std::path::PathBuf;

/// Copy objects, images, snapshots and volumes into another repository. Each block the
/// destination lacks is sent once; the destination checks the stream as `arch receive` does
/// and adds the resources in one commit (all or nothing).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch copy images/debian.raw --to /srv/arch\n  arch copy vm1 snapshots/vm1-monday --to ../other --rename vm1=vm1-backup"
)]
pub struct Args {
    /// Resources to copy: volume names, object names, image references.
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
    /// The destination repository.
    #[arg(long, value_name = "REPO")]
    pub to: PathBuf,
    /// Create the resource named OLD as NEW in the destination (repeatable).
    #[arg(long = "rename", value_name = "OLD=NEW", value_parser = parse_key_value)]
    pub renames: Vec<(String, String)>,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let dest = Repository::open(&args.to)?;
    let renames = renames(&args.renames)?;
    let progress = progress_bar::for_context(ctx, "copy", Some(0));
    let r = copy(&repo, &args.names, &dest, &renames, progress.as_ref());
    progress.finish();
    let report = r?;
    emit(ctx, &report, |out| {
        for res in &report.resources {
            writeln!(
                out,
                "copied {} {} to {} ({})",
                res.kind,
                res.name,
                report.to.display(),
                format_size(res.bytes)
            )?;
        }
        writeln!(
            out,
            "{} blocks sent ({}), {} already there",
            report.blocks_sent,
            format_size(report.bytes_sent),
            report.blocks_skipped
        )
    })?;
    Ok(Status::Ok)
}
