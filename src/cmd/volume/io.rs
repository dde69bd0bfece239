//! `arch volume write|read`: byte-range I/O on a volume.

use crate::Error;
use crate::cmd::output::{emit, key_values};
use crate::cmd::{Context, Status, parse_size_arg};
use crate::services::volumes;
use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;

/// Write SRC (a file, `-` or stdin by default) into VOLUME at OFFSET, copy-on-write.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch volume write vm1 --offset 0 mbr.bin\n  printf 'hello' | arch volume write vm1 --offset 1M\n\nstdin, a pipe or a device is buffered in memory (at most the room left in the volume); write large data from a regular file."
)]
pub struct WriteArgs {
    /// The volume.
    pub volume: String,
    /// Byte offset (suffixes K, M, G... allowed).
    #[arg(long, value_parser = parse_size_arg)]
    pub offset: u64,
    /// Input file, or `-` for stdin (the default).
    pub src: Option<PathBuf>,
}

/// Read LENGTH bytes of VOLUME at OFFSET to stdout or FILE.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch volume read vm1 --offset 0 --length 512 | xxd | head\n  arch volume read vm1 --offset 1M --length 4K -o block.bin"
)]
pub struct ReadArgs {
    /// The volume.
    pub volume: String,
    /// Byte offset.
    #[arg(long, value_parser = parse_size_arg)]
    pub offset: u64,
    /// Bytes to read (default: to the end of the volume).
    #[arg(long, value_parser = parse_size_arg)]
    pub length: Option<u64>,
    /// Write to FILE (atomically) instead of stdout (`-o -` is stdout too).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Replace an existing FILE.
    #[arg(long)]
    pub force: bool,
}

pub fn run_write(ctx: &Context, args: &WriteArgs) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let size = volumes::info(&repo, &args.volume)?.size;
    let room = size.saturating_sub(args.offset);
    // A regular file streams with its length known up front; stdin, a pipe or a device
    // (whose length reads as 0) is read into memory first, at most the room left plus one
    // byte, so that an oversized input is refused before anything is written.
    let stream: Box<dyn Read> = match args.src.as_deref() {
        Some(p) if p.as_os_str() != "-" => {
            let mut file = File::open(p).map_err(|e| Error::SourceUnreadable {
                path: p.to_path_buf(),
                source: e,
            })?;
            let meta = file.metadata().map_err(|e| Error::io("stat", p, e))?;
            if meta.is_file() {
                let report =
                    volumes::write(&repo, &args.volume, args.offset, meta.len(), &mut |buf| {
                        buf.resize(4 << 20, 0);
                        file.read(buf).map_err(|e| Error::io("read", p, e))
                    })?;
                return render_write(ctx, &report);
            }
            Box::new(file)
        }
        _ => Box::new(std::io::stdin().lock()),
    };
    let label = match args.src.as_deref() {
        Some(p) if p.as_os_str() != "-" => p.display().to_string(),
        _ => "stdin".to_string(),
    };
    let data = read_limited(stream, room.saturating_add(1), &label)?;
    let len = data.len() as u64;
    let mut once = Some(data);
    let report = volumes::write(&repo, &args.volume, args.offset, len, &mut |buf| {
        Ok(once.take().map_or(0, |d| {
            *buf = d;
            buf.len()
        }))
    })?;
    render_write(ctx, &report)
}

fn render_write(ctx: &Context, report: &volumes::WriteReport) -> anyhow::Result<Status> {
    emit(ctx, report, |out| {
        let s = &report.stats;
        writeln!(
            out,
            "{}",
            key_values(&[
                (
                    "wrote",
                    format!("{} bytes at offset {}", report.bytes, report.offset)
                ),
                (
                    "blocks",
                    format!(
                        "{} copied, {} allocated, {} in place, {} zero skipped",
                        s.blocks_copied, s.blocks_allocated, s.blocks_in_place, s.blocks_skipped
                    )
                ),
            ])
        )
    })?;
    Ok(Status::Ok)
}

/// Reads at most `limit` bytes of stdin; SIGINT/SIGTERM stops a read that is waiting.
/// Reads at most `limit` bytes of `stream`; a read interrupted by SIGINT/SIGTERM stops with
/// [`Error::Interrupted`](crate::Error) instead of waiting for the end of the input.
fn read_limited(stream: Box<dyn Read>, limit: u64, label: &str) -> crate::Result<Vec<u8>> {
    let mut data = Vec::new();
    let mut input = stream.take(limit);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match input.read(&mut buf) {
            Ok(0) => return Ok(data),
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => crate::interrupt::check()?,
            Err(e) => return Err(Error::io("read", label, e)),
        }
    }
}

#[derive(serde::Serialize)]
struct ReadReport {
    volume: String,
    offset: u64,
    bytes: u64,
    path: PathBuf,
}

pub fn run_read(ctx: &Context, args: &ReadArgs) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let length = match args.length {
        Some(l) => l,
        None => volumes::info(&repo, &args.volume)?
            .size
            .saturating_sub(args.offset),
    };
    // `-o -` is stdout, as for `get` and `volume export`.
    let Some(path) = args
        .output
        .as_ref()
        .filter(|p| !crate::cmd::get::is_stdout(p))
    else {
        if ctx.json {
            return Err(Error::invalid(
                "--json reports on stdout, where the data would go; add -o FILE",
            )
            .into());
        }
        let mut out = std::io::stdout().lock();
        volumes::read(&repo, &args.volume, args.offset, length, &mut |piece| {
            out.write_all(piece)
                .map_err(|e| Error::io("write", "stdout", e))
        })?;
        out.flush()?;
        return Ok(Status::Ok);
    };
    crate::storage::fsutil::write_file_atomically(path, args.force, |f| {
        let mut w = std::io::BufWriter::new(f);
        volumes::read(&repo, &args.volume, args.offset, length, &mut |piece| {
            w.write_all(piece).map_err(|e| Error::io("write", path, e))
        })?;
        w.flush().map_err(|e| Error::io("write", path, e))
    })?;
    let report = ReadReport {
        volume: args.volume.clone(),
        offset: args.offset,
        bytes: length,
        path: path.clone(),
    };
    emit(ctx, &report, |out| {
        writeln!(
            out,
            "wrote {} bytes to {}",
            report.bytes,
            report.path.display()
        )
    })?;
    Ok(Status::Ok)
}
