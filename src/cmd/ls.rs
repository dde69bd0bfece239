//! `arch ls [CONTAINER[/PREFIX]] [-l]`: list containers, or the objects of a container.
//! Names are printed one per line with control characters escaped, so a listing always has
//! one line per entry.

use super::output::{emit, escape_control, table};
use super::{Context, Status};
use crate::services::objects;
use crate::units::format_size;
use serde::Serialize;

/// List containers (no argument) or the objects of CONTAINER whose names start with PREFIX.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch ls\n  arch ls images -l\n  arch ls images/debian/ --json"
)]
pub struct Args {
    /// `CONTAINER` or `CONTAINER/PREFIX`.
    pub path: Option<String>,
    /// Long listing: kind, size, modified time and hash.
    #[arg(short, long)]
    pub long: bool,
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
    let (container, prefix) = path.split_once('/').unwrap_or((path.as_str(), ""));
    let list = objects::list_objects(&repo, container, prefix)?;
    let report = ObjectsReport {
        container: container.to_string(),
        prefix: prefix.to_string(),
        objects: list,
    };
    emit(ctx, &report, |out| {
        if !args.long {
            for o in &report.objects {
                writeln!(out, "{}", escape_control(&o.name))?;
            }
            return Ok(());
        }
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
