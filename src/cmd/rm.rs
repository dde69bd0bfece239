//! `arch rm NAME`: remove an object (its blocks are freed by `arch gc`).

use super::output::emit;
use super::{Context, Status};
use crate::services::names::ObjectName;
use crate::services::objects;

/// Remove object NAME (with any image registration). Space is reclaimed by `arch gc`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  arch rm images/old.raw")]
pub struct Args {
    /// Object `container/object` (a volume is removed with `arch volume rm`).
    pub name: String,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Status> {
    let name = match ObjectName::parse(&args.name) {
        Ok(n) => n,
        // Not an object name: when it names a volume, say which command removes it.
        Err(e) => {
            let volume = ctx
                .repo()
                .ok()
                .and_then(|r| r.catalog().ok()?.has_volume(&args.name).ok())
                .unwrap_or(false);
            if volume {
                return Err(crate::Error::invalid(format!(
                    "'{0}' is a volume; `arch rm` removes objects. Remove the volume with \
                     `arch volume rm {0}`",
                    args.name
                ))
                .into());
            }
            return Err(e.into());
        }
    };
    let repo = ctx.repo()?;
    let report = objects::remove(&repo, &name)?;
    emit(ctx, &report, |out| {
        writeln!(
            out,
            "removed {} {} ({})",
            report.kind, report.name, report.uuid
        )
    })?;
    Ok(Status::Ok)
}
