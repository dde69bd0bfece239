//! `arch info` without NAME: the repository itself: its directory, format, block size, and where
//! its blocks, maps and catalog live (never credentials).

use super::output::{emit, key_values};
use super::{Context, Status};
use crate::repo::{CATALOG_DB, DataLocation, Repository};
use crate::units::format_size;
use serde::Serialize;

/// What identifies a repository in `init` and `info` reports: its directory (canonical
/// when it can be resolved), format, block size and hash algorithm.
#[derive(Serialize)]
pub struct RepoIdentity {
    pub path: String,
    pub format: u32,
    pub block_size: u64,
    pub hash: String,
    /// Whether blocks are stored many to a file (`packs/`, format 2).
    pub packs: bool,
}

impl RepoIdentity {
    pub fn of(repo: &Repository) -> RepoIdentity {
        let root = std::fs::canonicalize(repo.root()).unwrap_or_else(|_| repo.root().to_path_buf());
        RepoIdentity {
            path: root.display().to_string(),
            format: repo.config().format,
            block_size: repo.config().block_size,
            hash: repo.config().hash.clone(),
            packs: repo.config().packs,
        }
    }
}

#[derive(Serialize)]
struct Report {
    #[serde(flatten)]
    repo: RepoIdentity,
    /// Where blocks and maps live.
    data: DataLocation,
    /// `sqlite` or `postgres`.
    catalog_engine: &'static str,
    /// Where the catalog lives: `meta/catalog.db` under `path`, or the PostgreSQL URL (no
    /// credentials).
    catalog: String,
}

/// `on` or `off`, as `arch init` and `arch info` show packs.
pub fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// Where the catalog of `repo` lives: (engine, location).
pub fn catalog_location(repo: &Repository) -> (&'static str, String) {
    match repo.catalog_url() {
        Some(url) => ("postgres", url.to_string()),
        None => ("sqlite", repo.root().join(CATALOG_DB).display().to_string()),
    }
}

pub fn run(ctx: &Context) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    // Opening the catalog checks that it is reachable and is this repository's.
    drop(repo.catalog()?);
    let (catalog_engine, catalog) = catalog_location(&repo);
    let report = Report {
        repo: RepoIdentity::of(&repo),
        data: repo.data_location(),
        catalog_engine,
        catalog,
    };
    emit(ctx, &report, |out| {
        writeln!(
            out,
            "{}",
            key_values(&[
                ("repository", report.repo.path.clone()),
                ("format", report.repo.format.to_string()),
                ("block size", format_size(report.repo.block_size)),
                ("hash", report.repo.hash.clone()),
                ("packs", on_off(report.repo.packs).into()),
                ("data", report.data.to_string()),
                ("catalog", report.catalog.clone()),
            ])
        )
    })?;
    Ok(Status::Ok)
}
