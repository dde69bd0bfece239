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
    /// The options given, as their flags (`--hostname`, ...), for errors about options that
    /// cannot apply.
    pub fn given(&self) -> Vec<&'static str> {
        [
            ("--hostname", self.hostname.is_some()),
            ("--password-file", self.password_file.is_some()),
            ("--password", self.password.is_some()),
            ("--ssh-key", !self.ssh_keys.is_empty()),
            ("--file", !self.files.is_empty()),
        ]
        .into_iter()
        .filter_map(|(flag, set)| set.then_some(flag))
        .collect()
    }

    /// The library options, reading the password and key files.
    pub fn options(&self) -> anyhow::Result<CustomizeOptions> {
        let password = match (&self.password_file, &self.password) {
            (Some(f), _) => {
                let text = read_small_input("--password-file", f, 64 << 10)?;
                Some(text.lines().next().unwrap_or_default().to_string())
            }
            (None, p) => p.clone(),
        };
        let mut ssh_keys = Vec::new();
        for f in &self.ssh_keys {
            let text = read_small_input("--ssh-key", f, 1 << 20)?;
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
    let doc = super::json::Customized {
        volume: &report.volume,
        customization: super::json::Customization::ran(report),
    };
    emit(ctx, &doc, |out| {
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
    crate::tools::require_customize(&format!("arch customize {}", args.volume))?;
    let opts = args.customize.options()?;
    let props = source_properties(&repo, &args.volume)?;
    let report = customize_volume(&repo, &args.volume, &props, &opts, true)?;
    render(ctx, &report)?;
    Ok(Status::Ok)
}

/// Reads the small text file `path` given to option `what`: a regular file or a pipe (so
/// `--password-file <(pass show vm)` works), at most `cap` bytes. A device (`/dev/zero`) is
/// refused, and a FIFO with no writer reads as empty instead of blocking the open forever.
fn read_small_input(what: &str, path: &std::path::Path, cap: u64) -> crate::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    use std::os::unix::io::AsRawFd;
    let unreadable = |source| Error::SourceUnreadable {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(unreadable)?;
    let kind = file.metadata().map_err(unreadable)?.file_type();
    if !kind.is_file() && !kind.is_fifo() {
        return Err(Error::invalid(format!(
            "{what} {}: not a regular file or a pipe",
            path.display()
        )));
    }
    // Back to blocking reads (a pipe's writer may still be writing); a read interrupted by
    // SIGINT/SIGTERM stops the command.
    // SAFETY: fcntl on a descriptor we own, with integer flags only.
    unsafe {
        let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK);
    }
    let mut bytes = Vec::new();
    let mut limited = file.take(cap + 1);
    loop {
        let mut chunk = [0u8; 8192];
        match limited.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => crate::interrupt::check()?,
            Err(e) => return Err(unreadable(e)),
        }
    }
    if bytes.len() as u64 > cap {
        return Err(Error::invalid(format!(
            "{what} {}: larger than {cap} bytes; give the file holding just that",
            path.display()
        )));
    }
    String::from_utf8(bytes)
        .map_err(|_| Error::invalid(format!("{what} {}: not UTF-8 text", path.display())))
}

#[cfg(test)]
mod tests {
    use super::read_small_input;

    #[test]
    fn small_inputs_are_capped_typed_and_never_block_on_a_lone_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "secret\n").unwrap();
        assert_eq!(
            read_small_input("--password-file", &file, 64).unwrap(),
            "secret\n"
        );
        std::fs::write(&file, vec![b'x'; 65]).unwrap();
        let err = read_small_input("--password-file", &file, 64).unwrap_err();
        assert!(err.to_string().contains("larger than 64 bytes"), "{err}");
        let err = read_small_input("--ssh-key", std::path::Path::new("/dev/zero"), 64);
        assert!(
            err.unwrap_err()
                .to_string()
                .contains("not a regular file or a pipe")
        );
        // A FIFO nobody writes to reads as empty at once.
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo reads a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert_eq!(read_small_input("--password-file", &fifo, 64).unwrap(), "");
    }
}
