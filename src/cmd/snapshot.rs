//! `arch snapshot VOLUME NAME`: freeze a volume as a new read-only Snapshot.

use super::output::{emit, key_values};
use super::{Context, Status};
use crate::services::names::ObjectName;
use crate::services::volumes;
use crate::units::format_size;

/// Freeze VOLUME's current content as a Snapshot object: NAME in CONTAINER (default
/// `snapshots/`), or NAME itself when it holds a `/` (`container/object`).
/// Only blocks written since the last snapshot are hashed; the volume stays writable.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch snapshot vm1 vm1-monday\n  arch snapshot vm1 backups/vm1-monday\n  arch snapshot vm1 images/golden && arch image mark images/golden image"
)]
pub struct Args {
    /// The volume.
    pub volume: String,
    /// Name of the snapshot: an object name in CONTAINER, or a full `container/object`.
    pub name: String,
    /// Container of the snapshot object when NAME has no `/` [default: snapshots].
    #[arg(long, value_name = "CONTAINER")]
    pub container: Option<String>,
}

/// The object a snapshot NAME designates: a NAME with a `/` is a full object name (and
/// then `--container` would be ambiguous), else it goes in `container` (default `snapshots`).
pub fn target_name(name: &str, container: Option<&str>) -> crate::Result<ObjectName> {
    match (name.contains('/'), container) {
        (true, Some(c)) => Err(crate::Error::invalid(format!(
            "'{name}' is already a full object name, so --container {c} does not apply; \
             drop --container, or give only the object name"
        ))),
        (true, None) => ObjectName::parse(name),
        (false, c) => ObjectName::parse(&format!("{}/{name}", c.unwrap_or("snapshots"))),
    }
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let target = target_name(&args.name, args.container.as_deref())?;
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
