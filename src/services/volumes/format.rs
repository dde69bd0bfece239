//! Disk-image formats recognised by their magic bytes, as qemu's block drivers probe them, so
//! that an import without qemu-img never takes a qcow2 (vmdk, vdi...) file for raw disk content.

use crate::error::{Error, Result};
use std::io::Read;
use std::path::Path;

/// Bytes read from the start of a file to probe it (qemu's `BLOCK_PROBE_BUF_SIZE`).
const PROBE_LEN: u64 = 2048;

/// The qemu-img name of the non-raw image format `path` starts with, or None when it carries
/// no known magic (raw, as far as arch can tell).
pub fn sniff(path: &Path) -> Result<Option<&'static str>> {
    let unreadable = |source| Error::SourceUnreadable {
        path: path.to_path_buf(),
        source,
    };
    let mut head = Vec::new();
    std::fs::File::open(path)
        .map_err(unreadable)?
        .take(PROBE_LEN)
        .read_to_end(&mut head)
        .map_err(unreadable)?;
    Ok(sniff_bytes(&head))
}

/// The format whose magic `head` (the first bytes of a file) starts with.
pub fn sniff_bytes(head: &[u8]) -> Option<&'static str> {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    if at(0, b"QFI\xfb") {
        // qcow2 is version 2 or 3 of the header qcow (version 1) started.
        return Some(if at(4, &[0, 0, 0, 1]) {
            "qcow"
        } else {
            "qcow2"
        });
    }
    const MAGICS: &[(usize, &[u8], &str)] = &[
        (0, b"QED\0", "qed"),
        // VirtualBox: a text banner, then the signature 0xbeda107f (little-endian) at 0x40.
        (0x40, &[0x7f, 0x10, 0xda, 0xbe], "vdi"),
        (0, b"vhdxfile", "vhdx"),
        (0, b"KDMV", "vmdk"),
        (0, b"COWD", "vmdk"),
        // A dynamic VHD starts with a copy of its footer; a fixed one is raw plus a footer,
        // and qemu probes it as raw too.
        (0, b"conectix", "vpc"),
        (0, b"WithoutFreeSpace", "parallels"),
        (0, b"WithouFreSpacExt", "parallels"),
        (0, b"Bochs Virtual HD Image", "bochs"),
        (0, b"LUKS\xba\xbe", "luks"),
    ];
    if let Some((_, _, name)) = MAGICS.iter().find(|(o, m, _)| at(*o, m)) {
        return Some(name);
    }
    vmdk_descriptor(head).then_some("vmdk")
}

/// A text VMDK descriptor: `#` comments and blank lines, then `version=1|2|3`.
fn vmdk_descriptor(head: &[u8]) -> bool {
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.starts_with(b"#") || line.iter().all(|&b| b == b' ') {
            continue;
        }
        return [b"version=1", b"version=2", b"version=3"]
            .contains(&line.try_into().unwrap_or(&[0u8; 9]));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magics_are_recognised_and_raw_is_not() {
        let mut vdi = b"<<< QEMU VM Virtual Disk Image >>>\n".to_vec();
        vdi.resize(0x40, 0);
        vdi.extend([0x7f, 0x10, 0xda, 0xbe]);
        let cases: &[(&[u8], Option<&str>)] = &[
            (b"QFI\xfb\0\0\0\x03rest", Some("qcow2")),
            (b"QFI\xfb\0\0\0\x02rest", Some("qcow2")),
            (b"QFI\xfb\0\0\0\x01rest", Some("qcow")),
            (b"QED\0\0\0\x01\0", Some("qed")),
            (&vdi, Some("vdi")),
            (b"vhdxfileQ\0E\0M\0U\0", Some("vhdx")),
            (b"KDMV\x01\0\0\0", Some("vmdk")),
            (
                b"# Disk DescriptorFile\r\n\nversion=1\r\nCID=1\n",
                Some("vmdk"),
            ),
            (b"conectix\0\0\0\x02", Some("vpc")),
            (b"WithouFreSpacExt\x02", Some("parallels")),
            (b"LUKS\xba\xbe\0\x01", Some("luks")),
            // Raw: an MBR, zeros, text that is no descriptor, a truncated magic, nothing.
            (&[0xeb, 0x63, 0x90, 0x10], None),
            (&[0u8; 4096], None),
            (b"# a comment\nhello=1\n", None),
            (b"# Disk DescriptorFile\nversion=10\n", None),
            (b"QFI", None),
            (b"", None),
        ];
        for (head, want) in cases {
            assert_eq!(
                sniff_bytes(head),
                *want,
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
    }

    /// Every format qemu-img can create here is recognised from the file it writes.
    #[test]
    fn images_made_by_qemu_img_are_recognised() {
        let dir = tempfile::tempdir().unwrap();
        for (fmt, opts) in [
            ("qcow2", ""),
            ("qcow", ""),
            ("qed", ""),
            ("vdi", ""),
            ("vhdx", ""),
            ("vmdk", ""),
            ("vmdk", "subformat=monolithicFlat"),
            ("vpc", ""),
            ("parallels", ""),
        ] {
            let path = dir.path().join(format!("img-{fmt}-{}", opts.len()));
            let mut cmd = std::process::Command::new("qemu-img");
            cmd.args(["create", "-q", "-f", fmt]);
            if !opts.is_empty() {
                cmd.args(["-o", opts]);
            }
            let out = cmd
                .arg(&path)
                .arg("1M")
                .output()
                .expect("qemu-img is installed");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(sniff(&path).unwrap(), Some(fmt), "{fmt} {opts}");
        }
        let raw = dir.path().join("raw");
        std::fs::write(&raw, vec![0u8; 1 << 20]).unwrap();
        assert_eq!(sniff(&raw).unwrap(), None);
    }
}
