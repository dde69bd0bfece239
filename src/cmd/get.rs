//! `arch get NAME [-o FILE]`: export an object's content, verified block by block.

use super::output::{emit, key_values};
use super::{Context, Status, parse_object_name, progress_bar};
use crate::Error;
use crate::services::names::ObjectName;
use crate::services::objects;
use crate::storage::export::Sink;
use crate::storage::packed::name_pack_of_corrupt_block;
use crate::units::format_size;

use std::io::Write;
use std::path::PathBuf;

/// Write object NAME to stdout or to a file (zero blocks become holes in a file).
#[derive(Debug, clap::Args)]
// `--version N` names an object version here; `arch --version` still prints arch's.
#[command(
    disable_version_flag = true,
    after_help = "Examples:\n  arch get images/debian.raw -o debian.raw\n  arch get images/notes.txt | less"
)]
pub struct Args {
    /// Object `container/object`.
    #[arg(value_parser = parse_object_name)]
    pub name: ObjectName,
    /// Output file, or `-` for stdout (the default). A file is written to a temporary name
    /// and renamed when complete.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
    /// Skip verifying blocks against their hashes.
    #[arg(long)]
    pub no_verify: bool,
    /// Read version N instead of the current one (see `arch history`).
    #[arg(long, value_name = "N")]
    pub version: Option<u64>,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let verify = !args.no_verify;
    // `-o -` is stdout, as in qemu-img, rbd and curl.
    let Some(path) = args.output.as_ref().filter(|p| !is_stdout(p)) else {
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
            args.version,
            Sink::Stream(&mut out),
            verify,
            progress.as_ref(),
        );
        progress.finish();
        r.map_err(|e| name_pack_of_corrupt_block(repo.backend(), e))?;
        out.flush()?;
        return Ok(Status::Ok);
    };
    let report = crate::storage::fsutil::write_file_atomically(path, args.force, |file| {
        let progress = progress_bar::for_context(ctx, "get", None);
        let r = objects::get(
            &repo,
            &args.name,
            args.version,
            Sink::File(file),
            verify,
            progress.as_ref(),
        );
        progress.finish();
        r.map_err(|e| name_pack_of_corrupt_block(repo.backend(), e))
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

/// True for the `-o -` that names stdout.
pub fn is_stdout(path: &std::path::Path) -> bool {
    path.as_os_str() == "-"
}
