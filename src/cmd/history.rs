//! `arch history NAME`, `arch restore NAME --version N`, `arch prune-versions`: the kept
//! versions of objects (Pithos semantics; see services::versions).

use super::output::{emit, escape_control, table};
use super::{Context, Status, parse_object_name};
use crate::services::names::ObjectName;
use crate::services::versions::{self, Retention};
use crate::units::format_size;
use serde::Serialize;

/// List the kept versions of NAME, newest first (version, size, hash, modified, content type).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch history images/debian.raw\n  arch history images/debian.raw --json"
)]
pub struct HistoryArgs {
    /// Object `container/object`.
    #[arg(value_parser = parse_object_name)]
    pub name: ObjectName,
}

#[derive(Serialize)]
struct HistoryReport {
    name: String,
    versions: Vec<versions::VersionEntry>,
}

pub fn history(ctx: &Context, args: &HistoryArgs) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let report = HistoryReport {
        name: args.name.full(),
        versions: versions::history(&repo, &args.name)?,
    };
    emit(ctx, &report, |out| {
        let rows = report
            .versions
            .iter()
            .map(|v| {
                vec![
                    format!("{}{}", v.version, if v.current { " (current)" } else { "" }),
                    format_size(v.bytes),
                    v.hash.get(..16).unwrap_or(&v.hash).to_string(),
                    v.modified.clone(),
                    v.content_type.clone(),
                ]
            })
            .collect();
        writeln!(
            out,
            "{}",
            table(
                &["version", "size", "hash", "modified", "content type"],
                rows,
                &[1]
            )
        )
    })?;
    Ok(Status::Ok)
}

/// Make version N of NAME its current content and metadata again, as a new version (no
/// block is copied)
#[derive(Debug, clap::Args)]
#[command(
    disable_version_flag = true,
    after_help = "Examples:\n  arch restore images/debian.raw --version 3"
)]
pub struct RestoreArgs {
    /// Object `container/object`.
    #[arg(value_parser = parse_object_name)]
    pub name: ObjectName,
    /// The version to restore (see `arch history`).
    #[arg(long, value_name = "N")]
    pub version: u64,
}

#[derive(Serialize)]
struct RestoreReport {
    name: String,
    restored: u64,
    version: u64,
}

pub fn restore(ctx: &Context, args: &RestoreArgs) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let version = versions::restore(&repo, &args.name, args.version)?;
    let report = RestoreReport {
        name: args.name.full(),
        restored: args.version,
        version,
    };
    emit(ctx, &report, |out| {
        writeln!(
            out,
            "restored {} version {} as version {}",
            escape_control(&report.name),
            report.restored,
            report.version
        )
    })?;
    Ok(Status::Ok)
}

/// Remove old versions of objects (all objects, or the NAMEs given); current versions are
/// always kept. Space is reclaimed by `arch gc`
#[derive(Debug, clap::Args)]
#[command(
    group = clap::ArgGroup::new("retention").required(true).args(["keep", "older_than"]),
    after_help = "Examples:\n  arch prune-versions --keep 3\n  arch prune-versions images/debian.raw --older-than 30d --dry-run"
)]
pub struct PruneArgs {
    /// Objects `container/object` (default: every object).
    #[arg(value_parser = parse_object_name)]
    pub names: Vec<ObjectName>,
    /// Keep the newest N versions of each object (the current one counts).
    #[arg(long, value_name = "N")]
    pub keep: Option<u64>,
    /// Remove old versions modified longer ago than DURATION (e.g. 30d, 12h).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub older_than: Option<std::time::Duration>,
    /// Show what would be removed; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Serialize)]
struct PruneReport {
    dry_run: bool,
    removed: Vec<versions::Pruned>,
}

pub fn prune(ctx: &Context, args: &PruneArgs) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let retention = match (args.keep, args.older_than) {
        (Some(n), _) => Retention::Keep(n),
        (None, Some(d)) => Retention::OlderThan(d),
        (None, None) => unreachable!("clap requires one of --keep, --older-than"),
    };
    let removed = versions::prune(&repo, &args.names, retention, args.dry_run)?;
    let report = PruneReport {
        dry_run: args.dry_run,
        removed,
    };
    emit(ctx, &report, |out| {
        let verb = if report.dry_run {
            "would remove"
        } else {
            "removed"
        };
        for p in &report.removed {
            writeln!(
                out,
                "{verb} {} version {}",
                escape_control(&p.name),
                p.version
            )?;
        }
        writeln!(out, "{verb} {} versions", report.removed.len())
    })?;
    Ok(Status::Ok)
}
