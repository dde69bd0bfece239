//! `arch clone SOURCE VOLUME`: a thin copy-on-write volume from a read-only resource.

use super::output::{emit, key_values};
use super::{Context, Status, parse_size_arg};
use crate::services::volumes::{self, CloneOptions};
use crate::units::format_size;

/// Create volume VOLUME as a thin clone of SOURCE (an object name, or an image/snapshot REF).
/// Only metadata is written; the clone shares every block with its source. A clone of an
/// Image (not a Snapshot, not a plain object) is then customized offline.
#[derive(Debug, clap::Args)]
// `--version N` names an object version here; `arch --version` still prints arch's.
#[command(
    disable_version_flag = true,
    after_help = "Examples:\n  arch clone images/debian.raw vm1\n  arch clone \"Debian 12\" vm2 --size 20G\n  arch clone snapshots/vm1-monday vm1-restore\n  arch clone \"Debian 12\" web1 --size 10G --hostname web1 --ssh-key ~/.ssh/id_ed25519.pub"
)]
pub struct Args {
    /// Object `container/object`, or an image id (prefix), or a display name.
    pub source: String,
    /// Name of the new volume.
    pub volume: String,
    /// Size of the volume (default: the source's size; never smaller). E.g. 20G.
    #[arg(long, value_parser = parse_size_arg)]
    pub size: Option<u64>,
    /// Do not customize a clone of an Image.
    #[arg(long)]
    pub no_customize: bool,
    /// Clone version N of the source object instead of its current one (see `arch history`).
    #[arg(long, value_name = "N")]
    pub version: Option<u64>,
    #[command(flatten)]
    pub customize: super::customize::CustomizeArgs,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let opts = CloneOptions {
        size: args.size,
        customize: (!args.no_customize)
            .then(|| args.customize.options())
            .transpose()?,
        version: args.version,
    };
    let report = volumes::clone(&repo, &args.source, &args.volume, &opts)?;
    if let Some(old) = &report.removed_unfinished {
        eprintln!(
            "arch: removed the unfinished volume '{}' left by arch pid {} on {} ({}, started {})",
            args.volume, old.pid, old.host, old.operation, old.started
        );
    }
    if let (Some(c), false) = (&report.customization, ctx.json) {
        super::customize::render(ctx, c)?;
    }
    emit(ctx, &super::json::Cloned::new(&report), |out| {
        writeln!(
            out,
            "{}",
            key_values(&[
                ("volume", report.volume.clone()),
                ("id", report.id.clone()),
                (
                    "size",
                    format!("{} ({} bytes)", format_size(report.size), report.size)
                ),
                (
                    "source",
                    format!("{} ({})", report.source.object, report.source.kind)
                ),
            ])
        )
    })?;
    Ok(Status::Ok)
}
