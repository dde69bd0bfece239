//! The CLI edge: one module per command (parse -> call the library -> render), the shared
//! context (repository discovery, output mode, progress) and exit codes.

pub mod clone;
pub mod complete;
pub mod copy;
pub mod cp;
pub mod customize;
pub mod diff;
pub mod du;
pub mod fsck;
pub mod gc;
pub mod generate;
pub mod get;
pub mod hashmap;
pub mod history;
pub mod image;
pub mod info;
pub mod init;
pub mod json;
pub mod ls;
pub mod manpage;
pub mod meta;
pub mod mv;
pub mod output;
pub mod progress_bar;
pub mod put;
pub mod receive;
pub mod repo_info;
pub mod rm;
pub mod rows;
pub mod send;
pub mod serve;
pub mod snapshot;
pub mod volume;

use crate::cli::{Cli, Command};
use crate::repo::Repository;
use clap::Parser;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: a check found problems.
pub const EXIT_PROBLEMS: u8 = 1;
/// Exit code: usage or operational error.
pub const EXIT_ERROR: u8 = 2;
// Stopped by SIGINT or SIGTERM: 128 + the signal number (130, 143), see `crate::interrupt`.

/// How a command ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// A check ran and found problems (exit 1).
    Problems,
}

/// What every command gets: global options and the way to the repository.
pub struct Context {
    pub repo_arg: Option<PathBuf>,
    pub json: bool,
    pub quiet: bool,
    pub show_progress: bool,
}

impl Context {
    fn from_cli(cli: &Cli) -> Context {
        Context {
            repo_arg: cli.repo.clone(),
            json: cli.json,
            quiet: cli.quiet,
            show_progress: !cli.json
                && !cli.quiet
                && !cli.no_progress
                && std::io::stderr().is_terminal(),
        }
    }

    /// Opens the repository named by `-R`/`ARCH_REPO`, else found from the current directory.
    pub fn repo(&self) -> anyhow::Result<Repository> {
        let cwd = std::env::current_dir()?;
        Ok(Repository::discover(self.repo_arg.as_deref(), &cwd)?)
    }

    /// The repository for `arch fsck`: opened even when its layout is damaged, which fsck
    /// reports.
    pub fn repo_for_check(&self) -> anyhow::Result<Repository> {
        let cwd = std::env::current_dir()?;
        Ok(Repository::discover_for_check(
            self.repo_arg.as_deref(),
            &cwd,
        )?)
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            return output::report_usage_error(output::json_requested(std::env::args_os()), &e);
        }
    };
    let ctx = Context::from_cli(&cli);
    crate::interrupt::install();
    match run(&ctx, &cli.command) {
        Ok(Status::Ok) => ExitCode::from(EXIT_OK),
        Ok(Status::Problems) => ExitCode::from(EXIT_PROBLEMS),
        Err(err) => match crate::interrupt::received() {
            // Whatever error the interruption surfaced as (EINTR, a killed tool), the command
            // stopped because of the signal: report it so and exit 128 + its number.
            Some(sig) => {
                let err = if err
                    .downcast_ref::<crate::Error>()
                    .is_some_and(|e| matches!(e, crate::Error::Interrupted { .. }))
                {
                    err
                } else {
                    anyhow::Error::from(crate::Error::Interrupted {
                        signal: crate::interrupt::signal_name(sig),
                    })
                };
                output::report_error(&ctx, &err);
                ExitCode::from(crate::interrupt::exit_code(sig))
            }
            None => output::report_error(&ctx, &err),
        },
    }
}

fn run(ctx: &Context, command: &Command) -> anyhow::Result<Status> {
    match command {
        Command::Init(a) => init::run(ctx, a),
        Command::Put(a) => put::run(ctx, a),
        Command::Get(a) => get::run(ctx, a),
        Command::Ls(a) => ls::run(ctx, a),
        Command::Info(a) => info::run(ctx, a),
        Command::Meta(a) => meta::run(ctx, a),
        Command::Cp(a) => cp::run(ctx, a),
        Command::Mv(a) => mv::run(ctx, a),
        Command::Rm(a) => rm::run(ctx, a),
        Command::Hashmap(a) => hashmap::run(ctx, a),
        Command::History(a) => history::history(ctx, a),
        Command::Restore(a) => history::restore(ctx, a),
        Command::PruneVersions(a) => history::prune(ctx, a),
        Command::Fsck(a) => fsck::run(ctx, a),
        Command::Gc(a) => gc::run(ctx, a),
        Command::Du(a) => du::run(ctx, a),
        Command::Image(a) => image::run(ctx, a),
        Command::Clone(a) => clone::run(ctx, a),
        Command::Snapshot(a) => snapshot::run(ctx, a),
        Command::Serve(a) => serve::run(ctx, a),
        Command::Volume(a) => volume::run(ctx, a),
        Command::Generate(a) => generate::run(ctx, a),
        Command::Complete(a) => complete::run(ctx, a),
        Command::Customize(a) => customize::run(ctx, a),
        Command::Send(a) => send::run(ctx, a),
        Command::Receive(a) => receive::run(ctx, a),
        Command::Copy(a) => copy::run(ctx, a),
        Command::Diff(a) => diff::run(ctx, a),
    }
}

/// Parses `KEY=VALUE` (clap value parser).
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("'{s}' is not KEY=VALUE"))
}

/// Parses a size like `10G` (clap value parser).
pub fn parse_size_arg(s: &str) -> Result<u64, String> {
    crate::units::parse_size(s)
}

/// Parses `container/object` (clap value parser).
/// The library error is kept (not turned into text) so that a `--json` usage error reports
/// its kind (`invalid_name`).
pub fn parse_object_name(s: &str) -> Result<crate::services::names::ObjectName, crate::Error> {
    crate::services::names::ObjectName::parse(s)
}
