//! Offline customization of a raw disk image (snf-image semantics), unprivileged: no loop
//! device, no VM, no root. Partition tables are changed with sfdisk; ext2/3/4 with e2fsck,
//! resize2fs and debugfs working on `DISK?offset=N`; the disk is a FUSE file backed by the
//! volume when fusermount3 allows it (see [`fuse`]), else a raw copy. See docs/CUSTOMIZE.md.

mod disk;
pub mod fuse;
mod guest;
mod hostkeys;
mod tasks;
mod tools;

pub use tasks::TASKS;

use crate::error::{Error, Result};
use crate::repo::records::TaskRecord;
use crate::services::images::properties::{EXCLUDE_ALL_TASKS, is_true};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A file to inject: `LOCAL:GUEST_PATH[:MODE[:OWNER[:GROUP]]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInjection {
    pub local: PathBuf,
    pub guest: String,
    /// Permission bits (default 0644).
    pub mode: u32,
    /// User name or numeric uid in the guest (default root).
    pub owner: String,
    /// Group name or numeric gid in the guest (default root).
    pub group: String,
}

impl std::str::FromStr for FileInjection {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let usage = || format!("'{s}' is not LOCAL:GUEST_PATH[:MODE[:OWNER[:GROUP]]]");
        if parts.len() < 2 || parts.len() > 5 || parts[0].is_empty() || !parts[1].starts_with('/') {
            return Err(usage());
        }
        let mode = match parts.get(2) {
            Some(m) if !m.is_empty() => u32::from_str_radix(m, 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .ok_or_else(|| {
                    format!("mode '{m}' in '{s}' is not octal permission bits like 0600")
                })?,
            _ => 0o644,
        };
        let pick = |i: usize| {
            parts
                .get(i)
                .filter(|p| !p.is_empty())
                .unwrap_or(&"root")
                .to_string()
        };
        Ok(FileInjection {
            local: PathBuf::from(parts[0]),
            guest: parts[1].to_string(),
            mode,
            owner: pick(3),
            group: pick(4),
        })
    }
}

/// The inputs of the customization tasks. The password is never stored or printed.
#[derive(Clone, Default)]
pub struct CustomizeOptions {
    pub hostname: Option<String>,
    pub password: Option<String>,
    /// Public key lines for `authorized_keys`.
    pub ssh_keys: Vec<String>,
    pub files: Vec<FileInjection>,
}

impl std::fmt::Debug for CustomizeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomizeOptions")
            .field("hostname", &self.hostname)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("ssh_keys", &self.ssh_keys.len())
            .field("files", &self.files)
            .finish()
    }
}

/// Checks the options before anything runs, so bad input never half-customizes a volume.
pub fn validate(opts: &CustomizeOptions) -> Result<()> {
    fuse::mode()?;
    if let Some(h) = &opts.hostname {
        let ok = !h.is_empty()
            && h.len() <= 253
            && h.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !ok {
            return Err(Error::invalid(format!(
                "invalid --hostname '{h}': use letters, digits and `-` in dot-separated labels"
            )));
        }
    }
    if let Some(p) = &opts.password
        && (p.is_empty() || p.contains('\n') || p.contains('\0'))
    {
        return Err(Error::invalid(
            "the password is empty or contains a newline or NUL; give one line",
        ));
    }
    for f in &opts.files {
        if !f.local.is_file() {
            return Err(Error::invalid(format!(
                "--file: {} is not a readable file",
                f.local.display()
            )));
        }
    }
    Ok(())
}

fn excluded(props: &BTreeMap<String, String>, task: &str, mounted: bool) -> Option<String> {
    if is_true(props, EXCLUDE_ALL_TASKS) {
        return Some("EXCLUDE_ALL_TASKS=yes".into());
    }
    let key = format!("EXCLUDE_TASK_{}", task.to_ascii_uppercase());
    if is_true(props, &key) {
        return Some(format!("{key}=yes"));
    }
    if mounted && is_true(props, "EXCLUDE_MOUNTED_TASKS") {
        return Some("EXCLUDE_MOUNTED_TASKS=yes".into());
    }
    None
}

/// `err` named by `task` first (once: most task errors already start with it).
fn in_task(task: &str, err: Error) -> Error {
    if err.to_string().starts_with(&format!("{task}: ")) {
        return err;
    }
    Error::InTask {
        task: task.to_string(),
        source: Box::new(err),
    }
}

/// Runs every customization task, in order, on the raw disk image `disk` (already at its final
/// size), honouring the image `properties` (keys upper-case). `scratch` is a private directory
/// for temporary files. Returns what happened to each task; the first failing task stops the
/// run with an error naming it.
pub fn customize_disk(
    disk: &Path,
    properties: &BTreeMap<String, String>,
    opts: &CustomizeOptions,
    scratch: &Path,
) -> Result<Vec<TaskRecord>> {
    validate(opts)?;
    let mut ctx = tasks::Ctx::new(disk, properties, opts, scratch);
    let mut out = Vec::new();
    for task in TASKS {
        crate::interrupt::check()?;
        let record = |status: &str, detail: String| TaskRecord {
            task: task.name.to_string(),
            status: status.to_string(),
            detail,
        };
        if let Some(why) = excluded(properties, task.name, task.mounted) {
            out.push(record("excluded", why));
            continue;
        }
        match (task.run)(&mut ctx).map_err(|e| in_task(task.name, e))? {
            tasks::Outcome::Ran(detail) => out.push(record("ran", detail)),
            tasks::Outcome::Skipped(detail) => out.push(record("skipped", detail)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
