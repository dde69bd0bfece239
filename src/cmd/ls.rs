//! `arch ls [CONTAINER[/PREFIX]] [--prefix P] [--delimiter D] [--marker M] [--limit N] [-l]`:
//! list containers, or the objects of a container (Swift/Pithos listing semantics). Names
//! are printed one per line with control characters escaped, so a listing always has one
//! line per entry; plain and JSON listings are written as they are read (streamed) past their
//! first 4 MiB, which are held back so that an early error leaves only the error document.

use super::output::{emit, escape_control, table};
use super::{Context, Status};
use crate::services::listing::{self, ListOptions, Listed};
use crate::services::objects;
use crate::units::format_size;
use serde::Serialize;
use std::io::{self, Write};

/// List containers (no argument) or the objects of CONTAINER whose names start with PREFIX.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch ls\n  arch ls images -l\n  arch ls images/debian/ --json\n  \
                  arch ls images --delimiter / --prefix debian/\n  \
                  arch ls images --marker debian/12.raw --limit 1000"
)]
pub struct Args {
    /// `CONTAINER` or `CONTAINER/PREFIX`.
    pub path: Option<String>,
    /// Long listing: kind, size, modified time and hash.
    #[arg(short, long)]
    pub long: bool,
    /// Only objects whose name (inside the container) starts with P.
    #[arg(long, value_name = "P")]
    pub prefix: Option<String>,
    /// Roll names up to the first D after the prefix into pseudo-folders (`subdir`).
    #[arg(long, value_name = "D")]
    pub delimiter: Option<String>,
    /// Only names after M (the last name of the previous page).
    #[arg(long, value_name = "M")]
    pub marker: Option<String>,
    /// At most N entries (objects and pseudo-folders).
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
}

/// A folder in a `--delimiter` listing: `{"subdir": "a/"}`.
#[derive(Serialize)]
struct Subdir<'a> {
    subdir: &'a str,
}

#[derive(Serialize)]
struct ContainersReport {
    containers: Vec<objects::ContainerEntry>,
}

#[derive(Serialize)]
struct ObjectsReport {
    container: String,
    prefix: String,
    objects: Vec<objects::ObjectEntry>,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let Some(path) = &args.path else {
        let containers = objects::list_containers(&repo)?;
        let report = ContainersReport { containers };
        emit(ctx, &report, |out| {
            if !args.long {
                for c in &report.containers {
                    writeln!(out, "{}", escape_control(&c.name))?;
                }
                return Ok(());
            }
            let rows = report
                .containers
                .iter()
                .map(|c| vec![c.name.clone(), c.count.to_string(), format_size(c.bytes)])
                .collect();
            writeln!(
                out,
                "{}",
                table(&["container", "objects", "size"], rows, &[1, 2])
            )
        })?;
        return Ok(Status::Ok);
    };
    let (container, in_path) = path.split_once('/').unwrap_or((path.as_str(), ""));
    let prefix = match (&args.prefix, in_path) {
        (Some(p), "") => p.clone(),
        (None, p) => p.to_string(),
        (Some(_), _) => {
            return Err(crate::Error::invalid(format!(
                "the prefix is given twice ('{path}' and --prefix); use one: arch ls {container} --prefix P"
            ))
            .into());
        }
    };
    let opts = ListOptions {
        prefix: prefix.clone(),
        delimiter: args.delimiter.clone(),
        marker: args.marker.clone(),
        limit: args.limit,
    };
    if args.long && !ctx.json {
        return long_listing(ctx, &repo, container, &opts);
    }
    // Streamed: each entry is written as it is read, past the first SPILL bytes (kept back so
    // that an error early in a listing still leaves stdout one JSON document: the error's).
    let mut out = Spill::new(SPILL);
    if ctx.json {
        write!(
            out,
            "{{\"container\":{},\"prefix\":{},\"objects\":[",
            serde_json::to_string(container)?,
            serde_json::to_string(&prefix)?
        )?;
    }
    let mut first = true;
    listing::list(&repo, container, &opts, &mut |entry| {
        let written = if ctx.json {
            let sep = if first { "" } else { "," };
            let doc = match &entry {
                Listed::Object(o) => serde_json::to_string(o),
                Listed::Folder(f) => serde_json::to_string(&Subdir { subdir: f }),
            }
            .expect("entries serialize");
            write!(out, "{sep}{doc}")
        } else if ctx.quiet {
            Ok(())
        } else {
            let name = match &entry {
                Listed::Object(o) => &o.name,
                Listed::Folder(f) => f,
            };
            writeln!(out, "{}", escape_control(name))
        };
        first = false;
        written.map_err(|e| crate::error::Error::io("write", "stdout", e))
    })?;
    if ctx.json {
        writeln!(out, "]}}")?;
    }
    out.flush()?;
    Ok(Status::Ok)
}

/// Output held back before a listing starts streaming to stdout.
pub(super) const SPILL: usize = 4 << 20;

/// A stdout writer that keeps the first `limit` bytes in memory and streams the rest: when
/// the command fails before the limit, nothing of the listing was printed.
pub(super) struct Spill {
    held: Option<Vec<u8>>,
    limit: usize,
    out: io::BufWriter<io::StdoutLock<'static>>,
}

impl Spill {
    pub(super) fn new(limit: usize) -> Spill {
        Spill {
            held: Some(Vec::new()),
            limit,
            out: io::BufWriter::new(io::stdout().lock()),
        }
    }
}

impl Write for Spill {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.held {
            Some(held) if held.len() + buf.len() <= self.limit => {
                held.extend_from_slice(buf);
                Ok(buf.len())
            }
            Some(_) => {
                let held = self.held.take().expect("matched Some");
                self.out.write_all(&held)?;
                self.out.write(buf)
            }
            None => self.out.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(held) = self.held.take() {
            self.out.write_all(&held)?;
        }
        self.out.flush()
    }
}

/// `-l`: a table, so the page is collected first (bound it with --limit).
fn long_listing(
    ctx: &Context,
    repo: &crate::repo::Repository,
    container: &str,
    opts: &ListOptions,
) -> anyhow::Result<Status> {
    let mut list = Vec::new();
    listing::list(repo, container, opts, &mut |entry| {
        list.push(match entry {
            Listed::Object(o) => o,
            Listed::Folder(f) => objects::ObjectEntry {
                name: f,
                kind: "folder".into(),
                bytes: 0,
                hash: String::new(),
                content_type: String::new(),
                modified: String::new(),
                uuid: String::new(),
            },
        });
        Ok(())
    })?;
    let report = ObjectsReport {
        container: container.to_string(),
        prefix: opts.prefix.clone(),
        objects: list,
    };
    emit(ctx, &report, |out| {
        let rows = report
            .objects
            .iter()
            .map(|o| {
                vec![
                    o.kind.clone(),
                    format_size(o.bytes),
                    o.modified.clone(),
                    o.hash.get(..16).unwrap_or(&o.hash).to_string(),
                    o.name.clone(),
                ]
            })
            .collect();
        writeln!(
            out,
            "{}",
            table(&["kind", "size", "modified", "hash", "name"], rows, &[1])
        )
    })?;
    Ok(Status::Ok)
}
