//! `arch volume rollback VOL SNAPSHOT [--force]`: give a volume a snapshot's content.

use crate::cmd::output::emit;
use crate::cmd::{Context, Status};
use crate::services::volumes::rollback::rollback;
use crate::units::format_size;

/// Put VOL back to SNAPSHOT: its content and size become the snapshot's and every block
/// written since is dropped (metadata and private-block deletion only, one atomic commit).
/// SNAPSHOT must have been taken from VOL unless --force. Refused while VOL is served or
/// in use by another arch process.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch snapshot vm1 before-upgrade\n  arch volume rollback vm1 snapshots/before-upgrade"
)]
pub struct Args {
    /// The volume.
    pub volume: String,
    /// The snapshot (object name or image reference).
    pub snapshot: String,
    /// Accept a snapshot that was not taken from VOL (any object of the repository).
    #[arg(long)]
    pub force: bool,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let r = rollback(&repo, &args.volume, &args.snapshot, args.force)?;
    emit(ctx, &r, |out| {
        writeln!(
            out,
            "volume {} rolled back to {} ({} -> {}, {} private blocks dropped)",
            r.volume,
            r.snapshot,
            format_size(r.old_size),
            format_size(r.new_size),
            r.private_blocks_dropped
        )
    })?;
    Ok(Status::Ok)
}
