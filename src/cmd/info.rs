//! `arch info NAME`: everything about one object, including its image view; `arch info`
//! alone: the repository itself (format, block size, where its catalog lives). (`--repo` is
//! already the global `-R DIR`, so the repository view is the command without NAME.)

use super::output::{emit, key_values};
use super::{Context, Status, parse_object_name};
use crate::services::names::ObjectName;
use crate::services::objects;
use crate::units::format_size;

/// Show an object's system fields, user metadata and image/snapshot view.
#[derive(Debug, clap::Args)]
// `--version N` names an object version here; `arch --version` still prints arch's.
#[command(
    disable_version_flag = true,
    after_help = "Examples:\n  arch info images/debian.raw\n  arch info images/debian.raw --json | jq .hash\n  arch info            # the repository: block size, where the catalog lives"
)]
pub struct Args {
    /// Object `container/object`; without it, the repository (format, block size, where
    /// the catalog lives).
    #[arg(value_parser = parse_object_name)]
    pub name: Option<ObjectName>,
    /// Read version N instead of the current one (see `arch history`).
    #[arg(long, value_name = "N")]
    pub version: Option<u64>,
}

/// `arch info --json` (no NAME).
#[derive(serde::Serialize)]
struct RepoReport {
    path: String,
    format: u32,
    block_size: u64,
    hash: String,
    /// `sqlite` or `postgres`.
    catalog_engine: &'static str,
    /// The catalog: `meta/catalog.db` under `path`, or the PostgreSQL URL (no credentials).
    catalog: String,
}

/// Where the catalog of `repo` lives: (engine, location).
pub fn catalog_location(repo: &crate::repo::Repository) -> (&'static str, String) {
    match repo.catalog_url() {
        Some(url) => ("postgres", url.to_string()),
        None => (
            "sqlite",
            repo.root()
                .join(crate::repo::CATALOG_DB)
                .display()
                .to_string(),
        ),
    }
}

fn run_repo(ctx: &Context) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    // Opening the catalog checks that it is reachable and is this repository's.
    drop(repo.catalog()?);
    let root = std::fs::canonicalize(repo.root()).unwrap_or_else(|_| repo.root().to_path_buf());
    let (catalog_engine, catalog) = catalog_location(&repo);
    let report = RepoReport {
        path: root.display().to_string(),
        format: repo.config().format,
        block_size: repo.config().block_size,
        hash: repo.config().hash.clone(),
        catalog_engine,
        catalog,
    };
    emit(ctx, &report, |out| {
        let rows = [
            ("path", report.path.clone()),
            ("format", report.format.to_string()),
            ("block size", format_size(report.block_size)),
            ("hash", report.hash.clone()),
            (
                "catalog",
                format!("{} ({})", report.catalog, report.catalog_engine),
            ),
        ];
        writeln!(out, "{}", key_values(&rows))
    })?;
    Ok(Status::Ok)
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Status> {
    let Some(name) = &args.name else {
        if args.version.is_some() {
            return Err(crate::Error::invalid(
                "--version needs an object NAME (arch info NAME --version N)",
            )
            .into());
        }
        return run_repo(ctx);
    };
    let repo = ctx.repo()?;
    let info = objects::info(&repo, name, args.version)?;
    emit(ctx, &super::json::Object::new(&info), |out| {
        let mut rows = vec![
            ("name", info.name.clone()),
            ("kind", info.kind.clone()),
            ("uuid", info.uuid.clone()),
            (
                "size",
                format!("{} ({} bytes)", format_size(info.bytes), info.bytes),
            ),
            ("hash", info.hash.clone()),
            (
                "blocks",
                format!("{} x {}", info.blocks, format_size(info.block_size as u64)),
            ),
            ("content type", info.content_type.clone()),
            ("version", info.version.to_string()),
            ("created", info.created.clone()),
            ("modified", info.modified.clone()),
        ];
        let meta: Vec<String> = info.meta.iter().map(|(k, v)| format!("{k}={v}")).collect();
        rows.push(("meta", meta.join(", ")));
        if let Some(img) = &info.image {
            rows.push(("image id", img.id.clone()));
            rows.push(("image name", img.name.clone()));
            rows.push(("image status", img.status.clone()));
            rows.push(("snapshot", img.is_snapshot.to_string()));
            let props: Vec<String> = img
                .properties
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            rows.push(("properties", props.join(", ")));
        }
        writeln!(out, "{}", key_values(&rows))
    })?;
    Ok(Status::Ok)
}
