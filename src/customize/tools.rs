//! Running the external tools customization relies on (sfdisk, e2fsprogs, ssh-keygen): a
//! clean environment, stderr captured into the error, and a missing tool named with the
//! Debian package that provides it.

use crate::error::{Error, Result};
use std::ffi::OsStr;
use std::process::{Command, Stdio};

/// The Debian package providing `program`.
fn package_of(program: &str) -> &'static str {
    match program {
        "sfdisk" => "fdisk",
        "ssh-keygen" => "openssh-client",
        _ => "e2fsprogs",
    }
}

/// Runs `program args` (with `stdin` fed when given) for `task`; returns stdout on success.
pub fn run(task: &str, program: &str, args: &[&OsStr], stdin: Option<&[u8]>) -> Result<Vec<u8>> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("LC_ALL", "C")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::invalid(format!(
                "{task}: {program} is not installed; install it (Debian/Ubuntu: apt install {})",
                package_of(program)
            ))
        } else {
            Error::io("run", program, e)
        }
    })?;
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(input)
            .map_err(|e| Error::io("write to", program, e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io("wait for", program, e))?;
    if !out.status.success() {
        return Err(Error::invalid(format!(
            "{task}: {program} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}
