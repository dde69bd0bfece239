//! `arch image ls`: images (by default), snapshots, or both, filtered by property and status.

use super::kind_of;
use crate::cmd::rows::{Column, RowWriter};
use crate::cmd::{Context, Status, parse_key_value};
use crate::services::images::{self, Kinds, ListFilter};
use crate::services::volumes::{self, lineage};
use crate::units::format_size;

/// List registered images (snapshots with --snapshots, both with --all).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch image ls\n  arch image ls --snapshots\n  arch image ls --all --property OSFAMILY=linux --status available --json\n  arch image ls --from-volume vm1"
)]
pub struct Args {
    /// List snapshots instead of images.
    #[arg(long, conflicts_with = "all")]
    pub snapshots: bool,
    /// List images and snapshots.
    #[arg(long)]
    pub all: bool,
    /// Only those whose property KEY equals VALUE (repeatable; keys are case-insensitive).
    #[arg(long = "property", value_parser = parse_key_value, value_name = "KEY=VALUE")]
    pub properties: Vec<(String, String)>,
    /// Only those with this status (saving, creating, available, error).
    #[arg(long)]
    pub status: Option<String>,
    /// Only the snapshots taken from volume VOLUME (and images made of them; --snapshots for
    /// snapshots only).
    #[arg(long, value_name = "VOLUME")]
    pub from_volume: Option<String>,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let mut properties = args.properties.clone();
    if let Some(v) = &args.from_volume {
        // By id, so the snapshots follow a renamed volume (see services::volumes::lineage).
        let id = volumes::find(&repo.catalog()?, v)?.id;
        properties.push((lineage::SOURCE_VOLUME_ID.into(), id));
    }
    let filter = ListFilter {
        kinds: if args.all || (args.from_volume.is_some() && !args.snapshots) {
            Kinds::All
        } else if args.snapshots {
            Kinds::Snapshots
        } else {
            Kinds::Images
        },
        properties,
        status: args.status.clone(),
    };
    // Streamed: each image is written as it is read.
    let mut w = RowWriter::start(ctx, "images", COLUMNS)?;
    images::list(&repo, &filter, &mut |e| {
        w.row(&e, || {
            vec![
                e.image.id[..8].to_string(),
                kind_of(&e.image).to_string(),
                e.image.status.clone(),
                format_size(e.image.size),
                e.image.name.clone(),
                e.object.clone(),
            ]
        })
    })?;
    w.finish::<()>(None, None)?;
    Ok(Status::Ok)
}

const COLUMNS: &[Column] = &[
    ("id", 8, false),
    ("kind", 8, false),
    ("status", 9, false),
    ("size", 10, true),
    ("name", 24, false),
    ("object", 0, false),
];
