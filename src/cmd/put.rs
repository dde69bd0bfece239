//! `arch put SRC NAME`: import a file or stdin as an object.

use super::output::{emit, key_values};
use super::{Context, Status, parse_key_value, parse_object_name, progress_bar};
use crate::Error;
use crate::services::names::ObjectName;
use crate::services::objects::{self, PutOptions};
use crate::storage::ingest::Source;
use crate::units::format_size;
use std::fs::File;
use std::path::PathBuf;

/// Store a file (or stdin with `-`) as object NAME; replaces its data if it exists.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch put disk.raw images/debian.raw\n  curl -s https://example.org/x.img | arch put - images/x.img --meta source=example"
)]
pub struct Args {
    /// Source file, or `-` for stdin.
    pub src: PathBuf,
    /// Destination `container/object`.
    #[arg(value_parser = parse_object_name)]
    pub name: ObjectName,
    /// Content type (default application/octet-stream).
    #[arg(long)]
    pub content_type: Option<String>,
    /// User metadata KEY=VALUE (repeatable).
    #[arg(long = "meta", value_parser = parse_key_value, value_name = "KEY=VALUE")]
    pub meta: Vec<(String, String)>,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let (source, total) = open_source(&args.src)?;
    let progress = progress_bar::for_context(ctx, "put", total);
    let opts = PutOptions {
        content_type: args.content_type.clone(),
        meta: args.meta.clone(),
    };
    let report = objects::put(&repo, source, &args.name, &opts, progress.as_ref());
    progress.finish();
    let report = report?;
    emit(ctx, &report, |out| {
        writeln!(
            out,
            "{}",
            key_values(&[
                ("name", report.name.clone()),
                ("uuid", report.uuid.clone()),
                ("version", report.version.to_string()),
                ("size", format_size(report.bytes)),
                ("hash", report.hash.clone()),
                (
                    "blocks",
                    format!(
                        "{} ({} new, {} zero)",
                        report.blocks, report.blocks_written, report.zero_blocks
                    )
                ),
                ("stored", format_size(report.bytes_written)),
            ])
        )
    })?;
    Ok(Status::Ok)
}

/// Opens SRC: stdin for `-`, positional reads for regular files, a stream otherwise.
pub fn open_source(src: &std::path::Path) -> Result<(Source, Option<u64>), Error> {
    if src.as_os_str() == "-" {
        return Ok((
            Source::Stream {
                reader: Box::new(std::io::stdin()),
                label: "stdin".into(),
            },
            None,
        ));
    }
    let unreadable = |e| Error::SourceUnreadable {
        path: src.to_path_buf(),
        source: e,
    };
    let file = File::open(src).map_err(unreadable)?;
    let meta = file.metadata().map_err(unreadable)?;
    if meta.is_dir() {
        return Err(Error::invalid(format!(
            "source {} is a directory; give a file, or `-` for stdin",
            src.display()
        )));
    }
    if meta.is_file() {
        Ok((
            Source::File {
                file,
                path: src.to_path_buf(),
            },
            Some(meta.len()),
        ))
    } else {
        Ok((
            Source::Stream {
                reader: Box::new(file),
                label: src.display().to_string(),
            },
            None,
        ))
    }
}
