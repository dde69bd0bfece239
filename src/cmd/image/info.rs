//! `arch image info REF`: one image's Glance/Plankton fields.

use super::write_image;
use crate::cmd::output::emit;
use crate::cmd::{Context, Status};
use crate::services::images;

/// Show an image or snapshot.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch image info images/debian.raw\n  arch image info \"Debian 12\" --json | jq .properties"
)]
pub struct Args {
    /// Image id (or unique prefix of at least 8 characters), object name, or display name.
    pub reference: String,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let entry = images::info(&repo, &args.reference)?;
    emit(ctx, &entry, |out| {
        write_image(out, &entry.object, &entry.image)
    })?;
    Ok(Status::Ok)
}
