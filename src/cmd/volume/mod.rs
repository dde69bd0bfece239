//! `arch volume ...`: block I/O, listing, removal, resize, import and export of volumes.

pub mod io;
pub mod manage;
pub mod rollback;
pub mod transfer;

use super::{Context, Status};

/// Read, write, list, inspect, rename, resize, remove, import and export volumes.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch volume write vm1 --offset 1M patch.bin\n  arch volume info vm1\n  arch volume export vm1 -o vm1.qcow2 --format qcow2"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: VolumeCommand,
}

/// The volume subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum VolumeCommand {
    Write(io::WriteArgs),
    Read(io::ReadArgs),
    Ls(manage::LsArgs),
    Info(manage::InfoArgs),
    Rm(manage::RmArgs),
    Rename(manage::RenameArgs),
    Resize(manage::ResizeArgs),
    Export(transfer::ExportArgs),
    Import(transfer::ImportArgs),
    Rollback(rollback::Args),
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Status> {
    match &args.command {
        VolumeCommand::Write(a) => io::run_write(ctx, a),
        VolumeCommand::Read(a) => io::run_read(ctx, a),
        VolumeCommand::Ls(a) => manage::run_ls(ctx, a),
        VolumeCommand::Info(a) => manage::run_info(ctx, a),
        VolumeCommand::Rm(a) => manage::run_rm(ctx, a),
        VolumeCommand::Rename(a) => manage::run_rename(ctx, a),
        VolumeCommand::Resize(a) => manage::run_resize(ctx, a),
        VolumeCommand::Export(a) => transfer::run_export(ctx, a),
        VolumeCommand::Import(a) => transfer::run_import(ctx, a),
        VolumeCommand::Rollback(a) => rollback::run(ctx, a),
    }
}
