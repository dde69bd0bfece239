//! `arch volume ls|info|rm|resize`: volume metadata and lifecycle.

use crate::cmd::json::Volume;
use crate::cmd::output::{emit, key_values};
use crate::cmd::rows::{Column, RowWriter};
use crate::cmd::{Context, Status};
use crate::services::volumes::{self, NewSize, VolumeInfo, lineage};
use crate::units::format_size;

/// List volumes with their size, source and private block count.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch volume ls\n  arch volume ls --json | jq -r '.volumes[].name'"
)]
pub struct LsArgs {}

/// Show a volume: size, source, private/shared/zero blocks, customization, times.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch volume info vm1\n  arch volume info vm1 --json | jq .private_blocks"
)]
pub struct InfoArgs {
    /// The volume.
    pub volume: String,
}

/// Remove a volume and free its private blocks (shared blocks are left to `arch gc`).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  arch volume rm vm1")]
pub struct RmArgs {
    /// The volume.
    pub volume: String,
}

/// Rename a volume (metadata only: its data, id and snapshots stay).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  arch volume rename vm1 web1")]
pub struct RenameArgs {
    /// The volume.
    pub volume: String,
    /// Its new name.
    pub new_name: String,
}

/// Grow a volume (the new tail reads as zeros); shrinking needs --allow-shrink.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch volume resize vm1 40G\n  arch volume resize vm1 +1G\n  arch volume resize vm1 -1G --allow-shrink"
)]
pub struct ResizeArgs {
    /// The volume.
    pub volume: String,
    /// New size (40G), or a change of size (+1G, -512M).
    #[arg(value_parser = NewSize::parse, allow_hyphen_values = true)]
    pub size: NewSize,
    /// Allow a smaller size (drops the data past it).
    #[arg(long)]
    pub allow_shrink: bool,
}

pub fn run_ls(ctx: &Context, _args: &LsArgs) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    // Streamed: each volume is written as it is read.
    let mut w = RowWriter::start(ctx, "volumes", LS_COLUMNS)?;
    volumes::list(&repo, &mut |v| {
        w.row(&Volume::new(&v), || {
            vec![
                v.name.clone(),
                status_text(&v),
                format_size(v.size),
                v.private_blocks.to_string(),
                source_text(&v),
                v.created_at.clone(),
            ]
        })
    })?;
    w.finish::<()>(None, None)?;
    Ok(Status::Ok)
}

const LS_COLUMNS: &[Column] = &[
    ("name", 16, false),
    ("status", 10, false),
    ("size", 10, true),
    ("private", 8, true),
    ("source", 24, false),
    ("created", 0, false),
];

pub fn run_info(ctx: &Context, args: &InfoArgs) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let mut v = volumes::info(&repo, &args.volume)?;
    let snapshots = lineage::snapshots_of(&repo, &v.id)?;
    v.snapshots = Some(snapshots.clone());
    emit(ctx, &Volume::new(&v), |out| {
        let mut rows = vec![
            ("name", v.name.clone()),
            ("id", v.id.clone()),
            (
                "size",
                format!("{} ({} bytes)", format_size(v.size), v.size),
            ),
            ("status", status_text(&v)),
            ("source", source_long(&v)),
            (
                "blocks",
                format!(
                    "{} x {}: {} private, {} shared, {} zero",
                    v.blocks,
                    format_size(v.block_size as u64),
                    v.private_blocks,
                    v.shared_blocks,
                    v.zero_blocks
                ),
            ),
            ("epoch", v.epoch.to_string()),
            ("created", v.created_at.clone()),
            ("modified", v.modified_at.clone()),
        ];
        if let Some(c) = &v.creation {
            rows.push((
                "creator",
                format!(
                    "arch pid {} on {} since {} ({})",
                    c.record.pid, c.record.host, c.record.started, c.record.operation
                ),
            ));
            if !c.creator_running {
                let again = match c.record.options.as_slice() {
                    [] => String::new(),
                    o => format!(" with {} again", o.join(", ")),
                };
                rows.push((
                    "fix",
                    format!(
                        "not customized, do not use: run `arch customize {}`{again} to finish \
                         it, or `arch volume rm {}`",
                        v.name, v.name
                    ),
                ));
            }
        }
        for t in &v.customization {
            rows.push(("task", format!("{} {} {}", t.task, t.status, t.detail)));
        }
        if snapshots.is_empty() {
            rows.push(("snapshots", "none".into()));
        }
        for s in &snapshots {
            let kind = if s.is_snapshot { "snapshot" } else { "image" };
            rows.push((
                "snapshot",
                format!("{} ({kind} {}, {})", s.object, s.id, s.created_at),
            ));
        }
        writeln!(out, "{}", key_values(&rows))
    })?;
    Ok(Status::Ok)
}

/// The source column of `volume ls`: the source object's current name, `(removed)`, or `-`
/// for an imported volume.
fn source_text(v: &VolumeInfo) -> String {
    match (&v.source_object, v.source_removed) {
        (Some(name), _) => name.clone(),
        (None, true) => "(removed)".into(),
        (None, false) => "-".into(),
    }
}

/// The source line of `volume info`: what the source is now, found by its id.
fn source_long(v: &VolumeInfo) -> String {
    let (kind, id) = v
        .source
        .as_deref()
        .and_then(|s| s.split_once(':'))
        .unwrap_or(("", ""));
    match (&v.source_object, v.source_removed) {
        (Some(name), _) => format!("{name} ({kind} {id})"),
        (None, true) => format!("removed ({kind} {id}); the volume keeps its data"),
        (None, false) => "imported (no source)".into(),
    }
}

/// `available`, `creating`, or `creating (unfinished: creator gone)`.
fn status_text(v: &VolumeInfo) -> String {
    match &v.creation {
        Some(c) if !c.creator_running => format!("{} (unfinished: creator gone)", v.status),
        _ => v.status.clone(),
    }
}

pub fn run_rm(ctx: &Context, args: &RmArgs) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let report = volumes::remove(&repo, &args.volume)?;
    emit(ctx, &report, |out| {
        writeln!(
            out,
            "removed volume {} ({} private blocks freed)",
            report.volume, report.private_blocks_freed
        )
    })?;
    Ok(Status::Ok)
}

pub fn run_resize(ctx: &Context, args: &ResizeArgs) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let report = volumes::resize_to(&repo, &args.volume, args.size, args.allow_shrink)?;
    emit(ctx, &report, |out| {
        writeln!(
            out,
            "volume {}: {} -> {}",
            report.volume,
            format_size(report.old_size),
            format_size(report.new_size)
        )
    })?;
    Ok(Status::Ok)
}

pub fn run_rename(ctx: &Context, args: &RenameArgs) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let report = volumes::rename(&repo, &args.volume, &args.new_name)?;
    emit(ctx, &report, |out| {
        writeln!(
            out,
            "renamed volume {} -> {} ({})",
            report.from, report.to, report.id
        )
    })?;
    Ok(Status::Ok)
}
