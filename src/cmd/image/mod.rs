//! `arch image ...`: the image service commands (register, unregister, ls, info, modify, mark)
//! and the rendering they share.

pub mod change;
pub mod info;
pub mod ls;
pub mod register;

use super::output::key_values;
use super::{Context, Status};
use crate::services::images::ImageView;
use crate::units::format_size;
use std::io::{self, Write};

/// Register objects as images or snapshots and manage their metadata (metadata only: no data
/// is ever copied).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch image register images/debian.raw --name \"Debian 12\" -p OSFAMILY=linux\n  arch image ls --all\n  arch image mark \"Debian 12\" snapshot\n\nREF is an image id (or a unique prefix of at least 8 characters), an object name\n`container/object`, or a display name when it is unique."
)]
pub struct Args {
    #[command(subcommand)]
    pub command: ImageCommand,
}

/// The image subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    Register(register::Args),
    Unregister(change::UnregisterArgs),
    Ls(ls::Args),
    Info(info::Args),
    Modify(change::ModifyArgs),
    Mark(change::MarkArgs),
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Status> {
    match &args.command {
        ImageCommand::Register(a) => register::run(ctx, a),
        ImageCommand::Unregister(a) => change::run_unregister(ctx, a),
        ImageCommand::Ls(a) => ls::run(ctx, a),
        ImageCommand::Info(a) => info::run(ctx, a),
        ImageCommand::Modify(a) => change::run_modify(ctx, a),
        ImageCommand::Mark(a) => change::run_mark(ctx, a),
    }
}

/// `image` or `snapshot`.
pub fn kind_of(view: &ImageView) -> &'static str {
    if view.is_snapshot {
        "snapshot"
    } else {
        "image"
    }
}

/// Prints the key/value description of an image.
pub fn write_image(out: &mut dyn Write, object: &str, v: &ImageView) -> io::Result<()> {
    let props: Vec<String> = v
        .properties
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let rows = [
        ("id", v.id.clone()),
        ("name", v.name.clone()),
        ("kind", kind_of(v).to_string()),
        ("object", object.to_string()),
        ("status", v.status.clone()),
        (
            "size",
            format!("{} ({} bytes)", format_size(v.size), v.size),
        ),
        ("checksum", v.checksum.clone()),
        ("disk format", v.disk_format.clone()),
        ("container format", v.container_format.clone()),
        ("public", v.is_public.to_string()),
        ("owner", v.owner.clone()),
        ("created", v.created_at.clone()),
        ("updated", v.updated_at.clone()),
        ("version", v.version.to_string()),
        ("properties", props.join(", ")),
    ];
    writeln!(out, "{}", key_values(&rows))
}
