//! `arch du [NAME...]`: logical, stored, unique and shared bytes per resource.
//!
//! Rows are written as they are computed (streamed, see [`super::rows`]): the JSON document
//! is `{"resources":[...], <totals>}`.

use super::rows::{Column, RowWriter};
use super::{Context, Status};
use crate::integrity::du::{DuTotals, du};
use crate::units::format_size;

/// Show space use: per resource and for the whole repository, with the deduplication ratio.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch du\n  arch du images/debian.raw vol1 --json\n\nunique = what deleting the resource would free (after gc); shared = stored bytes other resources also use."
)]
pub struct Args {
    /// Objects (`container/object`) or volumes; all resources when omitted.
    pub names: Vec<String>,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let mut w = RowWriter::start(ctx, "resources", COLUMNS)?;
    let totals = du(&repo, &args.names, &mut |r| {
        w.row(&r, || {
            let sizes = [
                r.logical_bytes,
                r.stored_bytes,
                r.unique_bytes,
                r.shared_bytes,
            ];
            let mut cells = vec![r.resource.clone()];
            cells.extend(sizes.map(format_size));
            cells
        })
    })?;
    let (catalog_engine, catalog) = super::repo_info::catalog_location(&repo);
    let summary = format!("{}; catalog {catalog} ({catalog_engine})", summary(&totals));
    let totals = Totals {
        totals,
        catalog_engine,
        catalog,
    };
    w.finish(Some(&totals), Some(summary))?;
    Ok(Status::Ok)
}

/// The totals of the JSON document, with where the catalog lives.
#[derive(serde::Serialize)]
struct Totals {
    #[serde(flatten)]
    totals: DuTotals,
    /// `sqlite` or `postgres`.
    catalog_engine: &'static str,
    /// `meta/catalog.db`'s path, or the PostgreSQL URL without credentials.
    catalog: String,
}

const COLUMNS: &[Column] = &[
    ("resource", 40, false),
    ("logical", 10, true),
    ("stored", 10, true),
    ("unique", 10, true),
    ("shared", 10, true),
];

fn summary(t: &DuTotals) -> String {
    format!(
        "total: {} logical, {} stored ({} garbage), dedup ratio {:.2}; data in {}",
        total_size(t.logical_bytes),
        format_size(t.stored_bytes),
        format_size(t.garbage_bytes),
        t.dedup_ratio,
        t.data
    )
}

/// A total for humans: in units when it fits a u64, else exact bytes.
fn total_size(bytes: u128) -> String {
    u64::try_from(bytes).map_or_else(|_| format!("{bytes} B"), format_size)
}
