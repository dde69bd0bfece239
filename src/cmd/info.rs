//! `arch info NAME`: everything about one object, including its image view (without NAME:
//! the repository itself, see [`super::repo_info`]).

use super::output::{emit, key_values};
use super::{Context, Status, parse_object_name};
use crate::services::names::ObjectName;
use crate::services::objects;
use crate::units::format_size;

/// Show an object's system fields, user metadata and image/snapshot view; without NAME, the repository.
#[derive(Debug, clap::Args)]
// `--version N` names an object version here; `arch --version` still prints arch's.
#[command(
    disable_version_flag = true,
    after_help = "Examples:\n  arch info images/debian.raw\n  arch info images/debian.raw --json | jq .hash\n  arch info        # the repository: where its data and catalog live"
)]
pub struct Args {
    /// Object `container/object`; without it, the repository itself: format, block size,
    /// where its data and catalog live.
    #[arg(value_parser = parse_object_name)]
    pub name: Option<ObjectName>,
    /// Read version N instead of the current one (see `arch history`).
    #[arg(long, value_name = "N", requires = "name")]
    pub version: Option<u64>,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Status> {
    let Some(name) = &args.name else {
        return super::repo_info::run(ctx);
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
