//! `arch cp SRC DST [--force]`: copy an object by sharing its blocks.

use super::output::emit;
use super::{Context, Status, parse_object_name};
use crate::services::names::ObjectName;
use crate::services::objects;

/// Copy object SRC to DST: a new uuid, the same blocks, no data copied.
#[derive(Debug, clap::Args)]
// `--version N` names an object version here; `arch --version` still prints arch's.
#[command(
    disable_version_flag = true,
    after_help = "Examples:\n  arch cp images/debian.raw backup/debian.raw"
)]
pub struct Args {
    #[arg(value_parser = parse_object_name)]
    pub src: ObjectName,
    #[arg(value_parser = parse_object_name)]
    pub dst: ObjectName,
    /// Overwrite DST if it exists (it keeps its uuid, as with put).
    #[arg(long)]
    pub force: bool,
    /// Copy version N of SRC instead of its current one (see `arch history`).
    #[arg(long, value_name = "N")]
    pub version: Option<u64>,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let report = objects::copy(&repo, &args.src, args.version, &args.dst, args.force)?;
    emit(ctx, &report, |out| {
        writeln!(
            out,
            "copied {} -> {} ({})",
            report.source, report.destination, report.uuid
        )
    })?;
    Ok(Status::Ok)
}
