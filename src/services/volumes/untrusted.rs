//! Checks on a disk image received from someone else before qemu-img converts it: it must be
//! self-contained. qcow2 backing files and external data files, and vmdk descriptors naming
//! other extent files, make qemu-img read any local file the importing user can read, so an
//! image carrying one is refused instead of pulling that file into the repository.

use crate::error::{Error, Result};
use crate::storage::map::check_resource_size;
use serde_json::Value;
use std::path::Path;

/// Refuses the image `path` (already probed as `format`) unless `qemu-img info --output=json`
/// output `info` shows a self-contained image of at most the largest resource size.
///
/// Self-contained: no backing file, no external data file, and every file qemu-img opens for
/// it (its children, vmdk extents) is `path` itself.
pub fn check_self_contained(path: &Path, format: &str, info: &Value) -> Result<()> {
    let refuse = |what: String| {
        Err(Error::invalid(format!(
            "{} is a {format} image that {what}; arch imports only self-contained images \
             (a disk image from elsewhere could read any local file this way). Flatten it \
             first where it was made: qemu-img convert -O {format} IMAGE FLAT",
            path.display()
        )))
    };
    for key in ["backing-filename", "full-backing-filename"] {
        if let Some(backing) = info.get(key).and_then(Value::as_str) {
            return refuse(format!("has a backing file ({backing})"));
        }
    }
    let data = &info["format-specific"]["data"];
    if let Some(file) = data.get("data-file").and_then(Value::as_str) {
        return refuse(format!("keeps its data in an external file ({file})"));
    }
    let own = info["filename"].as_str().unwrap_or_default();
    for child in info["children"].as_array().into_iter().flatten() {
        let file = child["info"]["filename"].as_str().unwrap_or_default();
        if file != own {
            return refuse(format!("reads another file ({file})"));
        }
    }
    for extent in data["extents"].as_array().into_iter().flatten() {
        let file = extent["filename"].as_str().unwrap_or_default();
        if file != own {
            return refuse(format!("has an extent in another file ({file})"));
        }
    }
    let size = info["virtual-size"].as_u64().ok_or_else(|| {
        Error::invalid(format!(
            "qemu-img reports no virtual size for {}; is it a disk image?",
            path.display()
        ))
    })?;
    check_resource_size(&format!("disk image {}", path.display()), size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::map::MAX_RESOURCE_SIZE;
    use std::process::Command;

    fn qemu_img(args: &[&str]) -> bool {
        Command::new("qemu-img")
            .args(args)
            .status()
            .is_ok_and(|s| s.success())
    }

    fn info(path: &Path) -> Value {
        let out = Command::new("qemu-img")
            .args(["info", "--output=json"])
            .arg(path)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    }

    #[test]
    fn images_that_read_other_files_are_refused_and_plain_ones_pass() {
        if !qemu_img(&["--version"]) {
            eprintln!("qemu-img not installed: skipped");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        let secret = p("secret");
        std::fs::write(&secret, b"root:x:0:0\n").unwrap();
        let s = secret.to_str().unwrap();
        let backing = p("backing.qcow2");
        assert!(qemu_img(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            &format!("backing_file={s},backing_fmt=raw"),
            backing.to_str().unwrap(),
        ]));
        let data_file = p("data.qcow2");
        assert!(qemu_img(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            &format!("data_file={},data_file_raw=on", p("df").display()),
            data_file.to_str().unwrap(),
            "1M",
        ]));
        let vmdk = p("evil.vmdk");
        std::fs::write(
            &vmdk,
            format!(
                "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n\
                 createType=\"monolithicFlat\"\nRW 8 FLAT \"{s}\" 0\n"
            ),
        )
        .unwrap();
        for (path, format, why) in [
            (&backing, "qcow2", "backing file"),
            (&data_file, "qcow2", "external file"),
            (&vmdk, "vmdk", "another file"),
        ] {
            let err = check_self_contained(path, format, &info(path)).unwrap_err();
            assert!(err.to_string().contains(why), "{}: {err}", path.display());
        }
        for format in ["qcow2", "vmdk", "vdi", "vhdx", "qed", "vpc"] {
            let plain = p(&format!("plain.{format}"));
            assert!(qemu_img(&[
                "create",
                "-q",
                "-f",
                format,
                plain.to_str().unwrap(),
                "1M"
            ]));
            check_self_contained(&plain, format, &info(&plain)).unwrap();
        }
    }

    #[test]
    fn a_virtual_size_past_the_limit_is_refused() {
        let info = serde_json::json!({"filename": "x", "virtual-size": MAX_RESOURCE_SIZE + 1});
        let err = check_self_contained(Path::new("x"), "qcow2", &info).unwrap_err();
        assert!(err.to_string().contains("64"), "{err}");
        let info = serde_json::json!({"filename": "x", "virtual-size": MAX_RESOURCE_SIZE});
        check_self_contained(Path::new("x"), "qcow2", &info).unwrap();
    }
}
