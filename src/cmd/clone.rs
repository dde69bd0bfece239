//! `arch clone SOURCE VOLUME`: a thin copy-on-write volume from a read-only resource.

use super::output::{emit, key_values};
use super::{Context, Status, parse_size_arg};
use crate::Error;
use crate::services::names::ObjectName;
use crate::services::versions;
use crate::services::volumes::{self, CloneOptions};
use crate::units::format_size;

/// Create volume VOLUME as a thin clone of SOURCE (an object name, or an image/snapshot REF).
/// Only metadata is written; the clone shares every block with its source. A clone of an
/// Image (not a Snapshot, not a plain object) is then customized offline.
#[derive(Debug, clap::Args)]
// `--version N` names an object version here; `arch --version` still prints arch's.
#[command(
    disable_version_flag = true,
    after_help = "Examples:\n  arch clone images/debian.raw vm1\n  arch clone \"Debian 12\" vm2 --size 20G\n  arch clone snapshots/vm1-monday vm1-restore\n  arch clone \"Debian 12\" web1 --size 10G --hostname web1 --ssh-key id.pub"
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

/// What the clone will start from, checked before any work: the options that cannot apply
/// to it are refused, and a customization's tools must be installed. Returns the source's
/// kind and size.
fn check_source(repo: &crate::repo::Repository, args: &Args) -> anyhow::Result<(String, u64)> {
    let given = args.customize.given();
    if args.no_customize && !given.is_empty() {
        return Err(Error::invalid(format!(
            "{} cannot apply with --no-customize: drop --no-customize to customize the clone, \
             or drop {}",
            given.join(", "),
            given.join(", ")
        ))
        .into());
    }
    let cat = repo.catalog()?;
    let src = volumes::resolve_source(&cat, &args.source)?;
    let rec = versions::find_at(&cat, &ObjectName::parse(&src.object)?, args.version)?;
    if src.kind != "image" && !given.is_empty() {
        let never = match src.kind.as_str() {
            "snapshot" => "a Snapshot, which is never customized (it already is a machine)",
            _ => "a plain object, which is never customized (it is not an Image)",
        };
        return Err(Error::invalid(format!(
            "{} cannot apply: '{}' is {never}; drop {}, or clone without them and then run \
             `arch customize {}` with them",
            given.join(", "),
            src.object,
            given.join(", "),
            args.volume,
        ))
        .into());
    }
    if src.kind == "image" && !args.no_customize {
        crate::tools::require_customize(&format!(
            "customizing a clone of Image '{}' (--no-customize skips it)",
            src.object
        ))?;
    }
    Ok((src.kind, rec.bytes))
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let (kind, source_bytes) = check_source(&repo, args)?;
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
    if kind != "image" && report.size > source_bytes && !ctx.quiet {
        let never = if kind == "snapshot" {
            "a Snapshot"
        } else {
            "a plain object"
        };
        eprintln!(
            "arch: warning: volume '{}' is {} but its source '{}' is {}: the partition table \
             and filesystem were not grown ({never} is never customized), the extra space is \
             unallocated. Grow them with `arch customize {}`, or register the source as an \
             Image and clone that",
            report.volume,
            format_size(report.size),
            report.source.object,
            format_size(source_bytes),
            report.volume
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
