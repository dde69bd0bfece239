//! `arch volume export|import`: volumes to and from disk-image files (raw, or via qemu-img).

use crate::cmd::get::is_stdout;
use crate::cmd::output::{emit, key_values};
use crate::cmd::{Context, Status, progress_bar};
use crate::services::volumes::{
    self,
    transfer::{self, ExportFormat},
};
use crate::units::format_size;
use std::io::{Read, Write};
use std::path::PathBuf;

/// Write a volume to FILE (or stdout with `-o -`): raw (sparse, zero blocks as holes), or
/// qcow2, vmdk, vdi, vhdx through qemu-img. Without --format, FILE's extension chooses.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch volume export vm1 -o vm1.raw\n  arch volume export vm1 -o vm1.qcow2 && qemu-img check vm1.qcow2\n  arch volume export vm1 -o - | gzip > vm1.raw.gz"
)]
pub struct ExportArgs {
    /// The volume.
    pub volume: String,
    /// Output file (written atomically), or `-` for stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Output format [default: from FILE's extension: .qcow2, .vmdk, .vdi, .vhdx; raw for
    /// .raw, .img, any other extension and stdout].
    #[arg(long, value_enum)]
    pub format: Option<ExportFormat>,
    /// Replace an existing FILE.
    #[arg(long)]
    pub force: bool,
}

/// Import a disk image as a new volume (raw natively; qcow2, vmdk, vdi... through qemu-img).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch volume import disk.raw vm1\n  arch volume import cloud.qcow2 vm2 --format qcow2"
)]
pub struct ImportArgs {
    /// Disk image file.
    pub file: PathBuf,
    /// Name of the new volume.
    pub volume: String,
    /// Input format (default: detected by qemu-img; without qemu-img, raw, and a file with
    /// another format's magic is refused). `raw` imports the file's bytes as they are.
    #[arg(long, value_name = "F")]
    pub format: Option<String>,
}

/// The format an export writes, and why: `option` (--format), `extension` (FILE's), or
/// `default` (raw: no known extension, or stdout).
fn choose_format(args: &ExportArgs) -> (ExportFormat, &'static str) {
    match (args.format, ExportFormat::from_extension(&args.output)) {
        (Some(f), _) => (f, "option"),
        (None, Some(f)) if !is_stdout(&args.output) => (f, "extension"),
        (None, _) => (ExportFormat::Raw, "default"),
    }
}

/// What the export wrote, with how its format was chosen.
#[derive(serde::Serialize)]
struct Exported<'a> {
    #[serde(flatten)]
    report: &'a transfer::ExportReport,
    /// option | extension | default.
    format_from: &'static str,
}

pub fn run_export(ctx: &Context, args: &ExportArgs) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let (format, format_from) = choose_format(args);
    if is_stdout(&args.output) {
        return export_to_stdout(ctx, &repo, args, format);
    }
    let progress = progress_bar::for_context(ctx, "export", None);
    let report = transfer::export_volume(
        &repo,
        &args.volume,
        &args.output,
        format,
        args.force,
        progress.as_ref(),
    );
    progress.finish();
    let report = report?;
    let why = match format_from {
        "option" => String::new(),
        "extension" => " (from the file's extension; --format to choose another)".into(),
        _ => match args.output.extension() {
            Some(ext) => format!(
                " (.{} is not a format arch knows: qcow2, vmdk, vdi, vhdx, raw, img)",
                ext.to_string_lossy()
            ),
            None => " (the default; --format or an extension such as .qcow2 to choose)".into(),
        },
    };
    let doc = Exported {
        report: &report,
        format_from,
    };
    emit(ctx, &doc, |out| {
        writeln!(
            out,
            "{}",
            key_values(&[
                ("wrote", report.path.display().to_string()),
                ("format", format!("{}{why}", report.format.name())),
                ("size", format_size(report.bytes)),
            ])
        )
    })?;
    Ok(Status::Ok)
}

/// `-o -`: raw is streamed block by block in order; another format is converted into a
/// temporary file in the repository's `tmp/` (qemu-img needs a seekable file), copied to
/// stdout and removed.
fn export_to_stdout(
    ctx: &Context,
    repo: &crate::repo::Repository,
    args: &ExportArgs,
    format: ExportFormat,
) -> anyhow::Result<Status> {
    if ctx.json {
        return Err(crate::Error::invalid(
            "--json reports on stdout, where the image would go with -o -; give -o FILE",
        )
        .into());
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    let mut put = |piece: &[u8]| {
        out.write_all(piece)
            .map_err(|e| crate::Error::io("write", "stdout", e))
    };
    if format == ExportFormat::Raw {
        let size = volumes::info(repo, &args.volume)?.size;
        volumes::read(repo, &args.volume, 0, size, &mut put)?;
    } else {
        let tmp = crate::storage::fsutil::TempPath::new(repo.tmp_dir().join(format!(
            "export-{}-{}.{}",
            std::process::id(),
            crate::services::objects::new_uuid(),
            format.name()
        )));
        transfer::export_volume(
            repo,
            &args.volume,
            tmp.path(),
            format,
            false,
            &crate::progress::NoProgress,
        )?;
        let mut file =
            std::fs::File::open(tmp.path()).map_err(|e| crate::Error::io("open", tmp.path(), e))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            crate::interrupt::check()?;
            let n = file
                .read(&mut buf)
                .map_err(|e| crate::Error::io("read", tmp.path(), e))?;
            if n == 0 {
                break;
            }
            put(&buf[..n])?;
        }
    }
    out.flush()?;
    Ok(Status::Ok)
}

pub fn run_import(ctx: &Context, args: &ImportArgs) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let progress = progress_bar::for_context(ctx, "import", None);
    let report = transfer::import_volume(
        &repo,
        &args.file,
        &args.volume,
        args.format.as_deref(),
        progress.as_ref(),
    );
    progress.finish();
    let report = report?;
    emit(ctx, &report, |out| {
        writeln!(
            out,
            "{}",
            key_values(&[
                ("volume", report.volume.clone()),
                ("format", report.format.clone()),
                ("size", format_size(report.size)),
                (
                    "blocks",
                    format!("{} new, {} zero", report.blocks_written, report.zero_blocks)
                ),
            ])
        )
    })?;
    Ok(Status::Ok)
}
