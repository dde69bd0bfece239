//! `arch get NAME [-o FILE]`: export an object's content, verified block by block.

use super::output::{emit, key_values};
use super::{Context, Status, parse_object_name, progress_bar};
use crate::Error;
use crate::services::names::ObjectName;
use crate::services::objects;
use crate::storage::export::Sink;
use crate::storage::fsutil::sync_parent;
use crate::units::format_size;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Write object NAME to stdout or to a file (zero blocks become holes in a file).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch get images/debian.raw -o debian.raw\n  arch get images/notes.txt | less"
)]
pub struct Args {
    /// Object `container/object`.
    #[arg(value_parser = parse_object_name)]
    pub name: ObjectName,
    /// Output file (default: stdout). Written to a temporary name and renamed when complete.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
    /// Skip verifying blocks against their hashes.
    #[arg(long)]
    pub no_verify: bool,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let verify = !args.no_verify;
    let Some(path) = &args.output else {
        if ctx.json {
            return Err(
                Error::invalid("--json needs -o FILE: stdout carries the object's bytes").into(),
            );
        }
        let progress = progress_bar::for_context(ctx, "get", None);
        let stdout = std::io::stdout();
        let mut lock = stdout.lock();
        let mut out = std::io::BufWriter::with_capacity(1 << 20, &mut lock);
        let r = objects::get(
            &repo,
            &args.name,
            Sink::Stream(&mut out),
            verify,
            progress.as_ref(),
        );
        progress.finish();
        r?;
        out.flush()?;
        return Ok(Status::Ok);
    };
    let report = write_file_atomically(path, args.force, |file| {
        let progress = progress_bar::for_context(ctx, "get", None);
        let r = objects::get(
            &repo,
            &args.name,
            Sink::File(file),
            verify,
            progress.as_ref(),
        );
        progress.finish();
        r
    })?;
    emit(ctx, &report, |out| {
        writeln!(
            out,
            "{}",
            key_values(&[
                ("wrote", path.display().to_string()),
                ("size", format_size(report.bytes)),
                ("hash", report.hash.clone()),
                ("verified", report.verified.to_string()),
            ])
        )
    })?;
    Ok(Status::Ok)
}

/// Creates `path` through a temporary sibling: `fill` writes it, then it is fsynced and
/// renamed over `path`. On error the temporary is removed and `path` is untouched.
/// An existing `path` is refused unless `force`.
pub fn write_file_atomically<T>(
    path: &Path,
    force: bool,
    fill: impl FnOnce(&std::fs::File) -> crate::Result<T>,
) -> anyhow::Result<T> {
    if path.exists() && !force {
        return Err(Error::AlreadyExists {
            kind: "file",
            name: path.display().to_string(),
            fix: "pass --force to replace it, or choose another -o".into(),
        }
        .into());
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::invalid(format!("{} is not a file name", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.arch-tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| Error::io("create", &tmp, e))?;
    let result = fill(&file).and_then(|v| {
        file.sync_all().map_err(|e| Error::io("fsync", &tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| Error::io("rename to", path, e))?;
        sync_parent(path)?;
        Ok(v)
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    Ok(result?)
}
