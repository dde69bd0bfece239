//! `arch send NAME... [--base NAME]... [-o FILE]`: write resources as a stream for `arch
//! receive`, without the blocks the `--base` resources hold.

use super::output::{emit, terminal_safe};
use super::{Context, Status, progress_bar};
use crate::Error;
use crate::services::transfer::send::{Bases, SendReport, send};
use crate::units::format_size;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

/// Write objects, images, snapshots and volumes as one self-contained stream (stdout by
/// default) that `arch receive` applies elsewhere. With --base, blocks the base resources
/// hold are left out: the receiver must have received those bases.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch send snapshots/monday -o monday.arch\n  arch send snapshots/tuesday --base snapshots/monday | ssh host arch receive\n  arch send vm1 images/debian.raw -o vm1.arch"
)]
pub struct Args {
    /// Resources to send: volume names, object names, image references.
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
    /// A resource the receiver already has (repeatable): its blocks are not sent.
    #[arg(long = "base", value_name = "NAME")]
    pub bases: Vec<String>,
    /// Output file, or - for stdout (the default). Written to a temporary name and renamed
    /// when complete.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let bases = Bases::of(&repo, &args.bases)?;
    let progress = progress_bar::for_context(ctx, "send", Some(0));
    let path = args.output.as_ref().filter(|p| p.as_os_str() != "-");
    let Some(path) = path else {
        if ctx.json {
            return Err(Error::invalid(
                "--json needs -o FILE: stdout carries the stream (the report would mix with it)",
            )
            .into());
        }
        if std::io::stdout().is_terminal() {
            return Err(Error::invalid(
                "refusing to write a binary stream to a terminal; pipe it (`| arch receive`) or \
                 pass -o FILE",
            )
            .into());
        }
        let stdout = std::io::stdout();
        crate::services::transfer::widen_pipe(&stdout);
        // The stream writer buffers what it needs and writes block data straight from the
        // block's buffer: a raw descriptor (stdout's own handle would line-buffer it).
        let out = std::fs::File::from(
            std::os::fd::AsFd::as_fd(&stdout)
                .try_clone_to_owned()
                .map_err(|e| Error::io("dup", "stdout", e))?,
        );
        let r = send(&repo, &args.names, &bases, out, progress.as_ref());
        progress.finish();
        let (report, mut out) = r?;
        out.flush()?;
        if !ctx.quiet {
            eprint!("{}", terminal_safe(&summary(&report)));
        }
        return Ok(Status::Ok);
    };
    let report = crate::storage::fsutil::write_file_atomically(path, args.force, |file| {
        let r = send(&repo, &args.names, &bases, file, progress.as_ref());
        progress.finish();
        let (report, _) = r?;
        Ok(report)
    })?;
    emit(ctx, &report, |out| write!(out, "{}", summary(&report)))?;
    Ok(Status::Ok)
}

/// The human summary of a send.
fn summary(r: &SendReport) -> String {
    let mut s = String::new();
    for res in &r.resources {
        s.push_str(&format!(
            "sent {} {} ({})\n",
            res.kind,
            res.name,
            format_size(res.bytes)
        ));
    }
    s.push_str(&format!(
        "{} blocks sent ({}), {} left out (the receiver has them), {} maps; stream {}\n",
        r.blocks_sent,
        format_size(r.bytes_sent),
        r.blocks_skipped,
        r.maps_sent,
        format_size(r.stream_bytes)
    ));
    s
}
