//! `arch mv SRC DST [--force]`: rename an object, keeping its uuid.

use super::output::emit;
use super::{Context, Status, parse_object_name};
use crate::services::names::ObjectName;
use crate::services::objects;

/// Move object SRC to DST, keeping its uuid and image registration.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  arch mv incoming/debian.raw images/debian-12.raw")]
pub struct Args {
    #[arg(value_parser = parse_object_name)]
    pub src: ObjectName,
    #[arg(value_parser = parse_object_name)]
    pub dst: ObjectName,
    /// Replace DST if it exists.
    #[arg(long)]
    pub force: bool,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let report = objects::rename(&repo, &args.src, &args.dst, args.force)?;
    emit(ctx, &report, |out| {
        writeln!(
            out,
            "moved {} -> {} ({})",
            report.source, report.destination, report.uuid
        )
    })?;
    Ok(Status::Ok)
}
