//! `arch customize VOLUME`: run the customization tasks on a volume; the options are shared
//! with `arch clone`.

use super::output::{emit, table};
use super::{Context, Status};
use crate::Error;
use crate::customize::{CustomizeOptions, FileInjection};
use crate::services::volumes::customize::{CustomizeReport, customize_volume, source_properties};
use std::path::PathBuf;

/// Customization inputs (the password is never stored or printed).
#[derive(Debug, Clone, clap::Args)]
pub struct CustomizeArgs {
    /// Host name for /etc/hostname and the 127.0.1.1 line of /etc/hosts.
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Read the password for the USERS (default root) from the first line of FILE.
    #[arg(long, value_name = "FILE", conflicts_with = "password")]
    pub password_file: Option<PathBuf>,
    /// The password itself (visible to other local users in the process list: prefer
    /// --password-file).
    #[arg(long, value_name = "TEXT")]
    pub password: Option<String>,
    /// Public key file appended to ~/.ssh/authorized_keys of the USERS (repeatable).
    #[arg(long = "ssh-key", value_name = "FILE")]
    pub ssh_keys: Vec<PathBuf>,
    /// Inject LOCAL as GUEST_PATH with MODE (octal, default 0644), OWNER and GROUP (default
    /// root) (repeatable).
    #[arg(long = "file", value_name = "LOCAL:GUEST_PATH[:MODE[:OWNER[:GROUP]]]")]
    pub files: Vec<FileInjection>,
}

impl CustomizeArgs {
    /// The library options, reading the password and key files.
    pub fn options(&self) -> anyhow::Result<CustomizeOptions> {
        let password = match (&self.password_file, &self.password) {
            (Some(f), _) => {
                let text = std::fs::read_to_string(f).map_err(|e| Error::SourceUnreadable {
                    path: f.clone(),
                    source: e,
                })?;
                Some(text.lines().next().unwrap_or_default().to_string())
            }
            (None, p) => p.clone(),
        };
        let mut ssh_keys = Vec::new();
        for f in &self.ssh_keys {
            let text = std::fs::read_to_string(f).map_err(|e| Error::SourceUnreadable {
                path: f.clone(),
                source: e,
            })?;
            let keys: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from)
                .collect();
            if keys.is_empty() || keys.iter().any(|k| !k.contains(' ')) {
                return Err(Error::invalid(format!(
                    "--ssh-key {}: not an OpenSSH public key file (lines like `ssh-ed25519 AAAA... comment`)",
                    f.display()
                ))
                .into());
            }
            ssh_keys.extend(keys);
        }
        Ok(CustomizeOptions {
            hostname: self.hostname.clone(),
            password,
            ssh_keys,
            files: self.files.clone(),
        })
    }
}

/// Run the customization tasks (partition and filesystem growth, hostname, machine id,
/// passwords, SSH keys, files) on a volume, offline and without root.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  arch customize vm1 --hostname web1 --ssh-key ~/.ssh/id_ed25519.pub\n  arch customize vm1 --password-file pw.txt --file motd:/etc/motd:0644"
)]
pub struct Args {
    /// The volume.
    pub volume: String,
    #[command(flatten)]
    pub customize: CustomizeArgs,
}

/// Prints the task table of a customization.
pub fn render(ctx: &Context, report: &CustomizeReport) -> anyhow::Result<()> {
    emit(ctx, report, |out| {
        let rows = report
            .tasks
            .iter()
            .map(|t| vec![t.task.clone(), t.status.clone(), t.detail.clone()])
            .collect();
        writeln!(out, "{}", table(&["task", "status", "detail"], rows, &[]))?;
        writeln!(
            out,
            "{} block(s) of {} changed",
            report.blocks_changed, report.volume
        )
    })
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Status> {
    let repo = ctx.repo()?;
    let opts = args.customize.options()?;
    let props = source_properties(&repo, &args.volume)?;
    let report = customize_volume(&repo, &args.volume, &props, &opts, true)?;
    render(ctx, &report)?;
    Ok(Status::Ok)
}
