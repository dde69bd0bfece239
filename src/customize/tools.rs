//! Running the external tools customization relies on (sfdisk, e2fsprogs, ssh-keygen): a
//! clean environment, stderr captured into the error, and a missing tool named with the
//! Debian package that provides it.

use crate::error::{Error, Result};
use std::ffi::OsStr;
use std::process::Command;

/// Runs `program args` (with `stdin` fed when given) for `task`; returns stdout on success.
pub fn run(task: &str, program: &str, args: &[&OsStr], stdin: Option<&[u8]>) -> Result<Vec<u8>> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", crate::tools::SYSTEM_PATH)
        .env("LC_ALL", "C");
    // A SIGINT/SIGTERM kills the tool and surfaces here as an error: the caller's cleanup
    // (the work directory in tmp/) runs once the tool is gone.
    let out = crate::interrupt::output(&mut cmd, stdin).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::invalid(format!(
                "{task}: {program} is not installed; install it (Debian/Ubuntu: apt install {})",
                crate::tools::package_of(program)
            ))
        } else {
            Error::io("run", program, e)
        }
    })?;
    if !out.status.success() {
        return Err(Error::invalid(format!(
            "{task}: {program} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}
