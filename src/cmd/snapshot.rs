//! `arch snapshot VOLUME NAME`: freeze a volume as a new read-only Snapshot.

use super::output::{emit, key_values};
use super::{Context, Status};
use crate::services::names::ObjectName;
use crate::services::volumes;
use crate::units::format_size;

/// Freeze VOLUME's current content as the object CONTAINER/NAME, registered as a Snapshot.
/// Only blocks written since the last snapshot are hashed; the volume stays writable.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch snapshot vm1 vm1-monday\n  arch snapshot vm1 golden --container images && arch image mark images/golden image"
)]
pub struct Args {
    /// The volume.
    pub volume: String,
    /// Name of the snapshot object inside CONTAINER.
    pub name: String,
    /// Container of the snapshot object.
    #[arg(long, default_value = "snapshots")]
    pub container: String,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let target = ObjectName::parse(&format!("{}/{}", args.container, args.name))?;
    let report = volumes::snapshot(&repo, &args.volume, &target)?;
    emit(ctx, &report, |out| {
        writeln!(
            out,
            "{}",
            key_values(&[
                ("snapshot", report.object.clone()),
                ("id", report.id.clone()),
                ("size", format_size(report.bytes)),
                ("hash", report.hash.clone()),
                (
                    "blocks hashed",
                    format!(
                        "{} ({} new to the store)",
                        report.blocks_hashed, report.blocks_stored
                    )
                ),
            ])
        )
    })?;
    Ok(Status::Ok)
}
