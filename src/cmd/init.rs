//! `arch init DIR [--block-size SIZE]`: create a repository.

use super::output::{emit, key_values};
use super::{Context, Status, parse_size_arg};
use crate::repo::Repository;
use crate::repo::config::DEFAULT_BLOCK_SIZE;
use crate::units::format_size;
use serde::Serialize;
use std::path::PathBuf;

/// Create a repository in DIR (created if missing; must be empty).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  arch init ./repo\n  arch init /srv/arch --block-size 64K")]
pub struct Args {
    /// Directory to create the repository in.
    pub dir: PathBuf,
    /// Block size: a power of two from 4K to 64M.
    #[arg(long, value_parser = parse_size_arg, default_value_t = DEFAULT_BLOCK_SIZE)]
    pub block_size: u64,
}

#[derive(Serialize)]
struct Report {
    path: String,
    format: u32,
    block_size: u64,
    hash: String,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Status> {
    let repo = Repository::init(&args.dir, args.block_size)?;
    let root = std::fs::canonicalize(repo.root()).unwrap_or_else(|_| repo.root().to_path_buf());
    let report = Report {
        path: root.display().to_string(),
        format: repo.config().format,
        block_size: repo.config().block_size,
        hash: repo.config().hash.clone(),
    };
    emit(ctx, &report, |out| {
        writeln!(out, "Initialized arch repository in {}", report.path)?;
        writeln!(
            out,
            "{}",
            key_values(&[
                ("block size", format_size(report.block_size)),
                ("hash", report.hash.clone())
            ])
        )
    })?;
    Ok(Status::Ok)
}
