//! The external programs arch runs (qemu-img, sfdisk, e2fsprogs, ssh-keygen): which Debian
//! package provides each, and the check that names a missing one before a command does any
//! work (so a missing tool never costs a long export or leaves a half-made volume).

use crate::error::{Error, Result};
use std::ffi::OsStr;
use std::path::Path;

/// The search path the customization tools run with (their environment is cleared, see
/// `customize::tools`); a program found only elsewhere is not found by them.
pub const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The programs a customization runs: partition table, ext filesystems, SSH host keys.
pub const CUSTOMIZE_TOOLS: &[&str] = &[
    "sfdisk",
    "debugfs",
    "e2fsck",
    "resize2fs",
    "dumpe2fs",
    "ssh-keygen",
];

/// The Debian/Ubuntu package that provides `program`.
pub fn package_of(program: &str) -> &'static str {
    match program {
        "qemu-img" => "qemu-utils",
        "sfdisk" | "fdisk" => "fdisk",
        "sgdisk" => "gdisk",
        "ssh-keygen" => "openssh-client",
        _ => "e2fsprogs",
    }
}

/// True when an executable file `program` is in one of the directories of `search`.
pub fn installed(program: &str, search: &OsStr) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(search).any(|dir| {
        let p: &Path = &dir.join(program);
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Refuses `purpose` unless every program of `programs` is on `search` (the inherited PATH
/// when None), naming each missing one with its package and the one apt line for all.
pub fn require(purpose: &str, programs: &[&str], search: Option<&OsStr>) -> Result<()> {
    let inherited = std::env::var_os("PATH").unwrap_or_default();
    let search = search.unwrap_or(&inherited);
    let missing: Vec<&str> = programs
        .iter()
        .copied()
        .filter(|p| !installed(p, search))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut packages: Vec<&str> = missing.iter().map(|p| package_of(p)).collect();
    packages.dedup();
    let named: Vec<String> = missing
        .iter()
        .map(|p| format!("{p} (package {})", package_of(p)))
        .collect();
    Err(Error::invalid(format!(
        "{purpose} needs {}, not installed; install it first (Debian/Ubuntu: sudo apt install \
         {}); nothing was done",
        named.join(", "),
        packages.join(" ")
    )))
}

/// [`require`] for a customization (`arch clone` of an Image, `arch customize`).
pub fn require_customize(purpose: &str) -> Result<()> {
    require(purpose, CUSTOMIZE_TOOLS, Some(OsStr::new(SYSTEM_PATH)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_is_named_with_its_package() {
        let dir = tempfile::tempdir().unwrap();
        let search = dir.path().as_os_str();
        let err = require("export to qcow2", &["qemu-img", "sgdisk"], Some(search))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("qemu-img (package qemu-utils), sgdisk (package gdisk)")
                && err.contains("sudo apt install qemu-utils gdisk"),
            "{err}"
        );
        // A file that is not executable is not the program.
        std::fs::write(dir.path().join("qemu-img"), b"").unwrap();
        assert!(!installed("qemu-img", search));
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.path().join("qemu-img"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        assert!(require("x", &["qemu-img"], Some(search)).is_ok());
    }
}
