//! `arch hashmap NAME`: the Pithos hashmap JSON of an object.

use super::{Context, Status, parse_object_name};
use crate::services::names::ObjectName;
use crate::services::objects;
use std::io::Write;

/// Print the Pithos hashmap of NAME (`{"block_hash","block_size","bytes","hashes"}`).
#[derive(Debug, clap::Args)]
// `--version N` names an object version here; `arch --version` still prints arch's.
#[command(
    disable_version_flag = true,
    after_help = "Examples:\n  arch hashmap images/debian.raw | jq '.hashes | length'"
)]
pub struct Args {
    #[arg(value_parser = parse_object_name)]
    pub name: ObjectName,
    /// Read version N instead of the current one (see `arch history`).
    #[arg(long, value_name = "N")]
    pub version: Option<u64>,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let map = objects::hashmap(&repo, &args.name, args.version)?;
    // The hashmap is data: the same JSON document with or without --json. It is streamed:
    // one hash at a time, whatever the number of blocks.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if ctx.json {
        serde_json::to_writer_pretty(&mut out, &map)?;
    } else {
        serde_json::to_writer(&mut out, &map)?;
    }
    writeln!(out)?;
    out.flush()?;
    Ok(Status::Ok)
}
