//! `arch rm NAME`: remove an object (its blocks are freed by `arch gc`).

use super::output::emit;
use super::{Context, Status, parse_object_name};
use crate::services::names::ObjectName;
use crate::services::objects;

/// Remove object NAME (with any image registration). Space is reclaimed by `arch gc`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  arch rm images/old.raw")]
pub struct Args {
    #[arg(value_parser = parse_object_name)]
    pub name: ObjectName,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let report = objects::remove(&repo, &args.name)?;
    emit(ctx, &report, |out| {
        writeln!(
            out,
            "removed {} {} ({})",
            report.kind, report.name, report.uuid
        )
    })?;
    Ok(Status::Ok)
}
