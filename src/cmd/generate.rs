//! `arch generate completions|man DIR` (hidden): shell completions and man pages generated from
//! the clap definitions, so they can never drift from the commands. Output is deterministic.
//! The completions call `arch complete` for repository names ([`super::complete`]); the pages
//! are shaped by [`super::manpage`].

use super::output::emit;
use super::{Context, Status};
use crate::storage::fsutil::atomic_write;
use clap::CommandFactory;
use clap_complete::Shell;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Generate shell completions or man pages (for packagers; the results are committed).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch generate completions completions\n  arch generate man man"
)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

/// What to generate.
#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// bash (`arch.bash`), zsh (`_arch`) and fish (`arch.fish`) completions into DIR.
    #[command(after_help = "Examples:\n  arch generate completions completions")]
    Completions { dir: PathBuf },
    /// `arch.1` and one page per subcommand (`arch-image-register.1`, ...) into DIR.
    #[command(after_help = "Examples:\n  arch generate man man")]
    Man { dir: PathBuf },
}

#[derive(Serialize)]
struct Report {
    files: Vec<PathBuf>,
}

fn write(dir: &Path, name: &str, bytes: &[u8], files: &mut Vec<PathBuf>) -> crate::Result<()> {
    let path = dir.join(name);
    atomic_write(dir, &path, bytes)?;
    files.push(path);
    Ok(())
}

/// Renders the man page of `cmd` (named `name`, invoked as `path`, below page `parent`) and
/// of every visible subcommand below it.
fn man_pages(
    cmd: &clap::Command,
    name: &str,
    path: &str,
    parent: Option<&str>,
    out: &mut Vec<(String, Vec<u8>)>,
) {
    let page = super::manpage::render(cmd, name, path, parent);
    out.push((format!("{name}.1"), page));
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        man_pages(
            sub,
            &format!("{name}-{}", sub.get_name()),
            &format!("{path} {}", sub.get_name()),
            Some(name),
            out,
        );
    }
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Status> {
    let mut cmd = crate::cli::Cli::command();
    cmd.build();
    let mut files = Vec::new();
    match &args.what {
        What::Completions { dir } => {
            std::fs::create_dir_all(dir)?;
            for (shell, name) in [
                (Shell::Bash, "arch.bash"),
                (Shell::Zsh, "_arch"),
                (Shell::Fish, "arch.fish"),
            ] {
                let mut buf = Vec::new();
                clap_complete::generate(shell, &mut cmd, "arch", &mut buf);
                let script = String::from_utf8(buf).expect("clap_complete writes UTF-8");
                let script = super::complete::shell_glue(shell, script);
                write(dir, name, script.as_bytes(), &mut files)?;
            }
        }
        What::Man { dir } => {
            std::fs::create_dir_all(dir)?;
            let mut pages = Vec::new();
            man_pages(&cmd, "arch", "arch", None, &mut pages);
            for (name, bytes) in pages {
                write(dir, &name, &bytes, &mut files)?;
            }
        }
    }
    let report = Report { files };
    emit(ctx, &report, |out| {
        for f in &report.files {
            writeln!(out, "wrote {}", f.display())?;
        }
        Ok(())
    })?;
    Ok(Status::Ok)
}
