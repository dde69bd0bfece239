//! Command-line definitions (clap). Each subcommand's arguments live beside its code in
//! `cmd/<verb>.rs`; this file only assembles them.

use crate::cmd;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// The help heading of the options every command takes, listed apart from its own.
pub const GLOBAL: &str = "Global options";

/// Objects, images, snapshots and copy-on-write volumes over one content-addressed store.
#[derive(Debug, Parser)]
#[command(
    name = "arch",
    version,
    about,
    propagate_version = true,
    after_help = "Examples:\n  arch init ./repo\n  arch -R ./repo put disk.raw images/debian.raw\n  arch -R ./repo info images/debian.raw --json\n\nExit codes: 0 ok, 1 a check found problems, 2 usage or operational error."
)]
pub struct Cli {
    /// Repository directory (default: $ARCH_REPO, else the current directory or a parent).
    #[arg(
        short = 'R',
        long = "repo",
        global = true,
        env = "ARCH_REPO",
        value_name = "DIR",
        help_heading = GLOBAL
    )]
    pub repo: Option<PathBuf>,
    /// Print one JSON document on stdout instead of tables.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,
    /// Print nothing but data and errors.
    #[arg(short, long, global = true, help_heading = GLOBAL)]
    pub quiet: bool,
    /// Never show progress bars.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub no_progress: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    Init(cmd::init::Args),
    Put(cmd::put::Args),
    Get(cmd::get::Args),
    Ls(cmd::ls::Args),
    Info(cmd::info::Args),
    Meta(cmd::meta::Args),
    Cp(cmd::cp::Args),
    Mv(cmd::mv::Args),
    Rm(cmd::rm::Args),
    Hashmap(cmd::hashmap::Args),
    History(cmd::history::HistoryArgs),
    Restore(cmd::history::RestoreArgs),
    PruneVersions(cmd::history::PruneArgs),
    Fsck(cmd::fsck::Args),
    Gc(cmd::gc::Args),
    Du(cmd::du::Args),
    Image(cmd::image::Args),
    Clone(cmd::clone::Args),
    Snapshot(cmd::snapshot::Args),
    Serve(cmd::serve::Args),
    Volume(cmd::volume::Args),
    Customize(cmd::customize::Args),
    Send(cmd::send::Args),
    Receive(cmd::receive::Args),
    Copy(cmd::copy::Args),
    Diff(cmd::diff::Args),
    #[command(hide = true)]
    Generate(cmd::generate::Args),
    #[command(hide = true)]
    Complete(cmd::complete::Args),
}
