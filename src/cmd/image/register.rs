//! `arch image register NAME --name DISPLAY ...`: make an object an image or a snapshot.

use super::{kind_of, write_image};
use crate::cmd::json::ImageChanged;
use crate::cmd::output::emit;
use crate::cmd::{Context, Status, parse_key_value};
use crate::services::images::{self, RegisterOptions};

/// Register the object NAME as an image (id = object uuid, checksum = object hash). Registering
/// again updates the same image. Only metadata is written.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch image register images/debian.raw --name \"Debian 12\" -p OSFAMILY=linux\n  arch image register snapshots/db-monday --name db-monday --snapshot\n  sum=$(arch info images/debian.raw --json | jq -r .hash)\n  arch image register images/debian.raw --name \"Debian 12\" --checksum \"$sum\""
)]
pub struct Args {
    /// Object `container/object` to register.
    pub name: String,
    /// Display name of the image.
    #[arg(long = "name", value_name = "DISPLAY")]
    pub display_name: String,
    /// diskdump (default), extdump or ntfsdump.
    #[arg(long, value_name = "F")]
    pub disk_format: Option<String>,
    /// bare (default), aki, ari, ami or ovf.
    #[arg(long, value_name = "F")]
    pub container_format: Option<String>,
    /// Make the image public.
    #[arg(long, conflicts_with = "private")]
    pub public: bool,
    /// Make the image private (the default for new images).
    #[arg(long)]
    pub private: bool,
    /// Property KEY=VALUE (repeatable; keys are case-insensitive, stored upper-case).
    #[arg(short = 'p', long = "property", value_parser = parse_key_value, value_name = "KEY=VALUE")]
    pub properties: Vec<(String, String)>,
    /// Register directly as a snapshot (EXCLUDE_ALL_TASKS=yes, no customization on clone).
    #[arg(long)]
    pub snapshot: bool,
    /// Expected size in bytes; refused unless it matches the object.
    #[arg(long, value_name = "BYTES")]
    pub size: Option<u64>,
    /// Expected checksum (object hash, hex); refused unless it matches the object.
    #[arg(long, value_name = "HEX")]
    pub checksum: Option<String>,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let opts = RegisterOptions {
        display_name: args.display_name.clone(),
        disk_format: args.disk_format.clone(),
        container_format: args.container_format.clone(),
        is_public: visibility(args.public, args.private),
        properties: args.properties.clone(),
        snapshot: args.snapshot,
        size: args.size,
        checksum: args.checksum.clone(),
    };
    let report = images::register(&repo, &args.name, &opts)?;
    emit(ctx, &ImageChanged::new(&report), |out| {
        writeln!(
            out,
            "registered {} as {} {}",
            report.object,
            kind_of(&report.image),
            report.image.id
        )?;
        write_image(out, &report.object, &report.image)
    })?;
    Ok(Status::Ok)
}

/// `--public` / `--private` as a change: None when neither was given.
pub fn visibility(public: bool, private: bool) -> Option<bool> {
    match (public, private) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}
