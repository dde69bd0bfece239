//! `arch receive [FILE|-] [--rename OLD=NEW]...`: check a stream from `arch send` and apply
//! it, all or nothing.

use super::output::emit;
use super::{Context, Status, parse_key_value, progress_bar};
use crate::Error;
use crate::services::transfer::receive::{ReceiveReport, receive};
use crate::services::transfer::renames;
use crate::units::format_size;
use std::io::IsTerminal;
use std::path::PathBuf;

/// Apply a stream written by `arch send`: every block is verified against its hash and the
/// trailer checksum is checked before anything becomes visible; then the resources appear
/// in one catalog commit. Blocks already present are not written again.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch receive monday.arch\n  ssh build arch send snapshots/golden | arch receive\n  arch receive vm1.arch --rename vm1=vm1-copy"
)]
pub struct Args {
    /// The stream file, or - for stdin (the default).
    #[arg(value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Receive the resource named OLD in the stream as NEW (repeatable).
    #[arg(long = "rename", value_name = "OLD=NEW", value_parser = parse_key_value)]
    pub renames: Vec<(String, String)>,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let renames = renames(&args.renames)?;
    let path = args.input.as_ref().filter(|p| p.as_os_str() != "-");
    let report = match path {
        Some(path) => {
            let file = std::fs::File::open(path).map_err(|e| Error::SourceUnreadable {
                path: path.clone(),
                source: e,
            })?;
            let total = file.metadata().map(|m| m.len()).ok();
            let progress = progress_bar::for_context(ctx, "receive", total);
            // Unbuffered: the stream reader buffers what it needs; block data goes straight
            // from the file into the block's buffer.
            let mut input = file;
            let r = receive(&repo, &mut input, &renames, progress.as_ref());
            progress.finish();
            r?
        }
        None => {
            if std::io::stdin().is_terminal() {
                return Err(Error::invalid(
                    "stdin is a terminal; pipe a stream into `arch receive` or name its file",
                )
                .into());
            }
            let progress = progress_bar::for_context(ctx, "receive", None);
            let stdin = std::io::stdin();
            crate::services::transfer::widen_pipe(&stdin);
            let mut input = stdin.lock();
            let r = receive(&repo, &mut input, &renames, progress.as_ref());
            progress.finish();
            r?
        }
    };
    emit(ctx, &report, |out| write!(out, "{}", summary(&report)))?;
    Ok(Status::Ok)
}

/// The human summary of a receive.
pub fn summary(r: &ReceiveReport) -> String {
    let mut s = String::new();
    for res in &r.resources {
        let from = match &res.renamed_from {
            Some(f) => format!(" (was {f})"),
            None => String::new(),
        };
        s.push_str(&format!(
            "received {} {}{from} ({})\n",
            res.kind,
            res.name,
            format_size(res.bytes)
        ));
    }
    s.push_str(&format!(
        "{} blocks written ({}), {} already present, {} maps; stream {}\n",
        r.blocks_received,
        format_size(r.bytes_received),
        r.blocks_skipped,
        r.maps_received,
        format_size(r.stream_bytes)
    ));
    s
}
