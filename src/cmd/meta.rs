//! `arch meta NAME [--set K=V]... [--unset K]...`: show or change user metadata.

use super::output::{emit, table};
use super::{Context, Status, parse_key_value, parse_object_name};
use crate::services::names::ObjectName;
use crate::services::objects;
use serde::Serialize;
use std::collections::BTreeMap;

/// Show or change an object's user metadata (an empty value deletes a key).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch meta images/debian.raw\n  arch meta images/debian.raw --set owner=ci --unset draft"
)]
pub struct Args {
    /// Object `container/object`.
    #[arg(value_parser = parse_object_name)]
    pub name: ObjectName,
    /// Set KEY=VALUE (repeatable; an empty VALUE deletes KEY).
    #[arg(long = "set", value_parser = parse_key_value, value_name = "KEY=VALUE")]
    pub set: Vec<(String, String)>,
    /// Remove KEY (repeatable).
    #[arg(long = "unset", value_name = "KEY")]
    pub unset: Vec<String>,
}

#[derive(Serialize)]
struct Report {
    name: String,
    meta: BTreeMap<String, String>,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let meta = objects::update_meta(&repo, &args.name, &args.set, &args.unset)?;
    let report = Report {
        name: args.name.full(),
        meta,
    };
    emit(ctx, &report, |out| {
        let rows = report
            .meta
            .iter()
            .map(|(k, v)| vec![k.clone(), v.clone()])
            .collect();
        writeln!(out, "{}", table(&["key", "value"], rows, &[]))
    })?;
    Ok(Status::Ok)
}
