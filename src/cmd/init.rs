//! `arch init DIR [--block-size SIZE] [--shared-group GROUP] [--packs auto|on|off]`: create a
//! repository, private to its owner or shared with a group.

use super::output::{emit, key_values};
use super::repo_info::{RepoIdentity, on_off};
use super::{Context, Status, parse_size_arg};
use crate::repo::Repository;
use crate::repo::config::{DEFAULT_BLOCK_SIZE, PacksChoice};
use crate::repo::group::Group;
use crate::units::format_size;
use serde::Serialize;
use std::path::PathBuf;

/// Create a repository in DIR (created if missing; must be empty).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch init ./repo\n  arch init /srv/arch --block-size 64K\n  arch init /srv/team-arch --shared-group team\n  arch init ./repo --store s3://arch-images/team\n\nA repository is private to its owner (directories 0700, files 0600). With --shared-group the\ntree belongs to GROUP, directories are setgid 2770 and files 0660: every member reads and\nwrites it, nobody else can.\n\nWith --store the blocks and maps live in the bucket (Ceph RGW, MinIO, AWS S3...) and DIR\nkeeps the catalog and local scratch. Set AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,\nAWS_ENDPOINT_URL (and AWS_ALLOW_HTTP=true for http://), or use ~/.aws. arch does not\ncreate buckets."
)]
pub struct Args {
    /// Directory to create the repository in.
    pub dir: PathBuf,
    /// Block size: a power of two from 4K to 64M.
    #[arg(long, value_parser = parse_size_arg, default_value_t = DEFAULT_BLOCK_SIZE)]
    pub block_size: u64,
    /// Share the repository with GROUP (a name or numeric id you are a member of).
    #[arg(long, value_name = "GROUP")]
    pub shared_group: Option<String>,
    /// Keep the catalog in PostgreSQL (postgres://USER@HOST[:PORT]/DB[?schema=NAME]), shared
    /// by every host that runs the same init; the password comes from PGPASSWORD or
    /// ~/.pgpass, never from the URL.
    #[arg(long, value_name = "URL")]
    pub catalog: Option<String>,
    /// Keep blocks and maps in an S3-compatible object store, s3://BUCKET[/PREFIX]: creates
    /// the repository there, or joins it when it exists (another host ran the same command).
    /// Credentials come from AWS_* or ~/.aws, never from the URL.
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// Store blocks many to a file (`packs/`), so that gc removes a few large files instead of
    /// one per block: auto = on for block sizes up to 64K in a local store; never with
    /// --store. Fixed at init.
    #[arg(long, value_enum, default_value_t = PacksChoice::Auto)]
    pub packs: PacksChoice,
}

#[derive(Serialize)]
struct Report {
    #[serde(flatten)]
    repo: RepoIdentity,
    /// The group the repository is shared with; null when private to its owner.
    shared_group: Option<String>,
    /// Permission bits of the root directory, in octal.
    mode: String,
    /// The catalog's PostgreSQL URL (without credentials); null for the local SQLite file.
    catalog: Option<String>,
    /// Where blocks and maps live: the object store's URL, or null for this directory.
    store: Option<String>,
    /// False when `--store` joined a repository that already existed there.
    created: bool,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Status> {
    let group = args
        .shared_group
        .as_deref()
        .map(Group::resolve)
        .transpose()?;
    let (repo, created) = Repository::init_with(
        &args.dir,
        args.block_size,
        group.as_ref(),
        args.store.as_deref(),
        args.catalog.as_deref(),
        args.packs,
    )?;
    let report = Report {
        repo: RepoIdentity::of(&repo),
        shared_group: group.map(|g| g.name),
        mode: format!("{:04o}", repo.modes().dir()),
        catalog: repo.catalog_url().map(|u| u.to_string()),
        store: repo.config().store.clone(),
        created,
    };
    emit(ctx, &report, |out| {
        // Where the repository lives: the store when there is one, else the catalog.
        let remote = report.store.as_ref().or(report.catalog.as_ref());
        match remote {
            None => writeln!(out, "Initialized arch repository in {}", report.repo.path)?,
            Some(url) if report.created => writeln!(
                out,
                "Initialized arch repository in {} with its data in {url}",
                report.repo.path
            )?,
            Some(url) => writeln!(
                out,
                "Joined the arch repository in {url} from {}",
                report.repo.path
            )?,
        }
        writeln!(
            out,
            "{}",
            key_values(&[
                ("block size", format_size(report.repo.block_size)),
                ("hash", report.repo.hash.clone()),
                ("packs", on_off(report.repo.packs).into()),
                (
                    "access",
                    match &report.shared_group {
                        Some(g) => format!("shared with group {g} (mode {})", report.mode),
                        None => format!("private to its owner (mode {})", report.mode),
                    }
                ),
                (
                    "catalog",
                    report
                        .catalog
                        .clone()
                        .unwrap_or_else(|| "meta/catalog.db (SQLite)".into()),
                ),
            ])
        )
    })?;
    Ok(Status::Ok)
}
