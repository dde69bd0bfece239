//! Customization through a FUSE file: the tools (sfdisk, e2fsck, resize2fs, debugfs) work on
//! a regular file mounted over the disk's path whose bytes come from the volume on first touch
//! and whose writes land in a sparse overlay, so a run costs what the tools read and write,
//! not the size of the data in the image. Mounted without root through fusermount3; when that
//! cannot be done, the caller falls back to laying the volume out as a sparse raw file.

mod mount;
mod overlay;
mod recent;
mod serve;

pub use overlay::Changes;
pub use serve::Served;

use crate::error::{Error, Result};
use std::path::Path;

/// The environment switch: unset or `auto` (FUSE when it works, else the copy), `0` (always
/// the copy), `1` (FUSE or an error: for tests that must not fall back silently).
pub const ENV: &str = "ARCH_CUSTOMIZE_FUSE";

/// How customization reaches the volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Auto,
    Off,
    Required,
}

/// The mode asked by [`ENV`].
pub fn mode() -> Result<Mode> {
    match std::env::var(ENV).as_deref() {
        Err(_) | Ok("") | Ok("auto") => Ok(Mode::Auto),
        Ok("0") | Ok("no") | Ok("off") => Ok(Mode::Off),
        Ok("1") | Ok("yes") | Ok("on") => Ok(Mode::Required),
        Ok(other) => Err(Error::invalid(format!(
            "{ENV}={other} is not understood: use 1 (FUSE only), 0 (copy the volume to a raw \
             file) or auto"
        ))),
    }
}

/// Lazily unmounts every FUSE mount at or under `dir`: what a customization killed together
/// with its fusermount3 leaves behind (only then; fusermount3 unmounts after a lone arch
/// died). Returns how many were unmounted; errors are left to the removal that follows, which
/// names the path.
pub fn unmount_leftovers(dir: &Path) -> usize {
    let Ok(dir) = dir.canonicalize() else {
        return 0;
    };
    mount::mount_points()
        .into_iter()
        .filter(|p| p.starts_with(&dir))
        .filter(|p| mount::unmount_lazily(p).is_ok())
        .count()
}
