//! `arch image unregister|modify|mark`: metadata changes of an existing image.

use super::register::visibility;
use super::{kind_of, write_image};
use crate::cmd::json::ImageChanged;
use crate::cmd::output::emit;
use crate::cmd::{Context, Status, parse_key_value};
use crate::services::images::{self, ModifyOptions};

/// Remove the image registration; the object stays, byte-identical.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch image unregister \"Debian 12\"\n  arch image unregister images/debian.raw --json"
)]
pub struct UnregisterArgs {
    /// Image id (or unique prefix of at least 8 characters), object name, or display name.
    pub reference: String,
}

/// Change an image's display name, properties or visibility.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch image modify \"Debian 12\" --name \"Debian 12.5\" -p USERS=\"root admin\"\n  arch image modify images/debian.raw --property-del ROOT_PARTITION --public"
)]
pub struct ModifyArgs {
    /// Image id (or unique prefix of at least 8 characters), object name, or display name.
    pub reference: String,
    /// New display name.
    #[arg(long = "name", value_name = "NAME")]
    pub display_name: Option<String>,
    /// Set property KEY=VALUE (repeatable).
    #[arg(short = 'p', long = "property", value_parser = parse_key_value, value_name = "KEY=VALUE")]
    pub properties: Vec<(String, String)>,
    /// Delete property KEY (repeatable).
    #[arg(long = "property-del", value_name = "KEY")]
    pub property_del: Vec<String>,
    /// Make the image public.
    #[arg(long, conflicts_with = "private")]
    pub public: bool,
    /// Make the image private.
    #[arg(long)]
    pub private: bool,
}

/// What `mark` turns the image into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MarkAs {
    /// A snapshot: EXCLUDE_ALL_TASKS=yes, clones are not customized.
    Snapshot,
    /// An image: the snapshot flag cleared, clones are customized.
    Image,
}

/// Turn an image into a snapshot or a snapshot back into an image (metadata only).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch image mark \"Debian 12\" snapshot\n  arch image mark snapshots/db-monday image"
)]
pub struct MarkArgs {
    /// Image id (or unique prefix of at least 8 characters), object name, or display name.
    pub reference: String,
    /// snapshot or image.
    #[arg(value_enum)]
    pub mark_as: MarkAs,
}

pub fn run_unregister(ctx: &Context, args: &UnregisterArgs) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let entry = images::unregister(&repo, &args.reference)?;
    emit(ctx, &entry, |out| {
        writeln!(
            out,
            "unregistered {} {}; object {} kept",
            kind_of(&entry.image),
            entry.image.id,
            entry.object
        )
    })?;
    Ok(Status::Ok)
}

pub fn run_modify(ctx: &Context, args: &ModifyArgs) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let opts = ModifyOptions {
        display_name: args.display_name.clone(),
        set_properties: args.properties.clone(),
        delete_properties: args.property_del.clone(),
        is_public: visibility(args.public, args.private),
    };
    let report = images::modify(&repo, &args.reference, &opts)?;
    emit(ctx, &ImageChanged::new(&report), |out| {
        write_image(out, &report.object, &report.image)
    })?;
    Ok(Status::Ok)
}

pub fn run_mark(ctx: &Context, args: &MarkArgs) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let report = images::mark(&repo, &args.reference, args.mark_as == MarkAs::Snapshot)?;
    emit(ctx, &ImageChanged::new(&report), |out| {
        let state = if report.changed {
            "is now"
        } else {
            "was already"
        };
        let article = if report.image.is_snapshot { "a" } else { "an" };
        writeln!(
            out,
            "{} ({}) {state} {article} {}",
            report.image.name,
            report.object,
            kind_of(&report.image)
        )
    })?;
    Ok(Status::Ok)
}
