//! `arch put SRC NAME`: import a file or stdin as an object.

use super::output::{emit, key_values};
use super::{Context, Status, parse_key_value, parse_object_name, progress_bar};
use crate::Error;
use crate::services::names::ObjectName;
use crate::services::objects::{self, PutOptions};
use crate::services::volumes::lineage;
use crate::storage::ingest::Source;
use crate::units::format_size;
use std::fs::File;
use std::path::PathBuf;

/// Store a file (or stdin with `-`) as object NAME. Over an existing object: a new version
/// that keeps the uuid, creation time and image registration, and replaces the data, content
/// type and user metadata (the previous version stays in `arch history`).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch put disk.raw images/debian.raw\n  curl -s https://example.org/x.img | arch put - images/x.img --meta src=web"
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
    if let Some(r) = &report.replaced {
        warn_if_cloned(ctx, &repo, &report, r)?;
    }
    emit(ctx, &report, |out| {
        let mut rows = vec![
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
                ),
            ),
            ("stored", format_size(report.bytes_written)),
        ];
        if let Some(r) = &report.replaced {
            let registration = match &r.registered_as {
                Some(kind) => format!(", {kind} registration"),
                None => String::new(),
            };
            rows.push(("kept", format!("uuid, creation time{registration}")));
            let meta = match r.meta_keys.len() {
                0 => String::new(),
                n => format!(" ({n} key(s) before: {})", r.meta_keys.join(", ")),
            };
            rows.push((
                "replaced",
                format!(
                    "data, content type (was {}), user metadata{meta}; version {} stays in \
                     `arch history {}`",
                    r.content_type, r.version, report.name
                ),
            ));
        }
        writeln!(out, "{}", key_values(&rows))
    })?;
    Ok(Status::Ok)
}

/// Warns on stderr when the put changed the content of a registered Image or Snapshot that
/// volumes were cloned from: its checksum changed, and those volumes keep the old content.
fn warn_if_cloned(
    ctx: &Context,
    repo: &crate::repo::Repository,
    report: &objects::PutReport,
    replaced: &objects::Replaced,
) -> anyhow::Result<()> {
    let Some(kind) = &replaced.registered_as else {
        return Ok(());
    };
    if replaced.hash == report.hash || ctx.quiet {
        return Ok(());
    }
    let clones = lineage::volumes_cloned_from(&repo.catalog()?, &report.uuid)?;
    if clones.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = clones.iter().take(5).map(String::as_str).collect();
    let more = match clones.len() {
        n if n > 5 => format!(" and {} more", n - 5),
        _ => String::new(),
    };
    eprintln!(
        "arch: warning: {} is a registered {} that {} volume(s) were cloned from ({}{more}); \
         its checksum changed from {} to {}. Those volumes keep the content they were cloned \
         from; new clones get the new one (the previous version {} stays in `arch history`)",
        report.name,
        if kind == "image" { "Image" } else { "Snapshot" },
        clones.len(),
        shown.join(", "),
        replaced.hash,
        report.hash,
        replaced.version
    );
    Ok(())
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
