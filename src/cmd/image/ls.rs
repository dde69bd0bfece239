//! `arch image ls`: images (by default), snapshots, or both, filtered by property and status.

use super::kind_of;
use crate::cmd::rows::{Column, RowWriter};
use crate::cmd::{Context, Status, parse_key_value};
use crate::services::images::{self, Kinds, ListFilter};
use crate::units::format_size;

/// List registered images (snapshots with --snapshots, both with --all).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch image ls\n  arch image ls --snapshots\n  arch image ls --all --property OSFAMILY=linux --status available --json"
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
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let filter = ListFilter {
        kinds: if args.all {
            Kinds::All
        } else if args.snapshots {
            Kinds::Snapshots
        } else {
            Kinds::Images
        },
        properties: args.properties.clone(),
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
