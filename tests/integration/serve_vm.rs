//! A VM boots with a volume served by `arch serve` as its disk (QEMU's NBD block driver,
//! virtio-blk), writes to it and powers off; the data is then in the volume. TCG is used:
//! the machine's /dev/kvm may not boot ordinary guests. Needs qemu-system-x86, a Linux kernel
//! in /boot (linux-image-amd64), busybox-static and cpio (all installed by .ci/run): a
//! missing one fails the test.

use crate::serve::{Server, setup};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The modules the guest needs to see its disk; their dependencies come from the kernel's
/// modules.dep (virtio needs virtio_ring on 6.1.0-56, not on earlier 6.1 builds). A kernel
/// with them built in has none of these files, and loads nothing.
const MODULES: [&str; 2] = [
    "kernel/drivers/virtio/virtio_pci.ko",
    "kernel/drivers/block/virtio_blk.ko",
];

/// The module files of kernel `version` to load for [`MODULES`], each after what it depends
/// on, from /lib/modules/VERSION/modules.dep (`path: dependency...`, paths relative to it).
fn modules_in_load_order(version: &str) -> Vec<PathBuf> {
    let dir = Path::new("/lib/modules").join(version);
    let deps = std::fs::read_to_string(dir.join("modules.dep")).unwrap_or_default();
    let depends_on = |module: &str| -> Vec<String> {
        deps.lines()
            .find_map(|l| l.strip_prefix(module)?.strip_prefix(':'))
            .map(|rest| rest.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    };
    fn visit(m: &str, depends_on: &dyn Fn(&str) -> Vec<String>, order: &mut Vec<String>) {
        if order.iter().any(|o| o == m) {
            return;
        }
        for d in depends_on(m) {
            visit(&d, depends_on, order);
        }
        order.push(m.to_string());
    }
    let mut order = Vec::new();
    for m in MODULES {
        visit(m, &depends_on, &mut order);
    }
    order
        .into_iter()
        .map(|m| dir.join(m))
        .filter(|p| p.exists())
        .collect()
}

/// The newest kernel in /boot and its version.
fn kernel() -> (PathBuf, String) {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/boot")
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    found.retain(|p| {
        p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("vmlinuz-")
    });
    found.sort();
    let k = found
        .pop()
        .expect("a kernel in /boot/vmlinuz-* is needed (apt-get install linux-image-amd64)");
    let version = k.file_name().unwrap().to_string_lossy()["vmlinuz-".len()..].to_string();
    (k, version)
}

/// A gzip-less newc initramfs: busybox, the virtio modules, and an init that writes
/// `pattern` (one 4 KiB sector run) at byte 1 MiB of /dev/vda, syncs and powers off.
fn initramfs(dir: &Path, version: &str) -> PathBuf {
    let root = dir.join("initramfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox is needed (apt-get install busybox-static)");
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    let mut insmod = String::new();
    for src in modules_in_load_order(version) {
        let name = src.file_name().unwrap().to_string_lossy().to_string();
        std::fs::copy(&src, root.join(&name)).unwrap();
        insmod += &format!("/bin/busybox insmod /{name}\n");
    }
    let init = format!(
        "#!/bin/busybox sh\n\
         /bin/busybox mkdir -p /proc /sys /dev\n\
         /bin/busybox mount -t proc proc /proc\n\
         /bin/busybox mount -t sysfs sys /sys\n\
         /bin/busybox mount -t devtmpfs dev /dev\n\
         {insmod}\
         i=0\n\
         while [ ! -b /dev/vda ] && [ $i -lt 300 ]; do /bin/busybox sleep 0.1; i=$((i+1)); done\n\
         [ -b /dev/vda ] || {{ echo arch-vm-no-disk; /bin/busybox poweroff -f; }}\n\
         /bin/busybox yes ARCH-VM-BOOT-WRITE | /bin/busybox head -c 4096 > /pattern\n\
         /bin/busybox dd if=/pattern of=/dev/vda bs=4096 seek=256 conv=fsync\n\
         /bin/busybox sync\n\
         echo arch-vm-done\n\
         /bin/busybox poweroff -f\n"
    );
    std::fs::write(root.join("init"), init).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("init"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = dir.join("initrd.cpio");
    let made = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd '{}' && find . | cpio -o -H newc --quiet > '{}'",
            root.display(),
            out.display()
        ))
        .status()
        .expect("sh");
    assert!(made.success(), "cpio is needed (apt-get install cpio)");
    out
}

#[test]
fn a_vm_booted_from_a_served_volume_writes_to_it() {
    let (repo, img) = setup(4 << 20);
    let (kernel, version) = kernel();
    let initrd = initramfs(&repo.root, &version);
    let srv = Server::start(&repo, &["vm1"]);
    let uri = srv.uri("vm1").to_string();
    let qemu = Command::new("timeout")
        .args(["-k", "5", "50", "qemu-system-x86_64"])
        .args(["-machine", "q35,accel=tcg", "-m", "256", "-smp", "1"])
        .args([
            "-nographic",
            "-no-reboot",
            "-nodefaults",
            "-serial",
            "stdio",
        ])
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .args([
            "-drive",
            &format!("file={uri},format=raw,if=virtio,cache=none"),
        ])
        .stdin(Stdio::null())
        .output()
        .expect("qemu-system-x86_64 is needed (apt-get install qemu-system-x86)");
    let console = String::from_utf8_lossy(&qemu.stdout);
    assert!(
        qemu.status.success() && console.contains("arch-vm-done"),
        "the VM did not finish: {:?}\n{console}\n{}",
        qemu.status,
        String::from_utf8_lossy(&qemu.stderr)
    );
    assert_eq!(srv.stop().0, Some(0));
    let read = repo.ok(&[
        "volume", "read", "vm1", "--offset", "0", "--length", "2097152",
    ]);
    let pattern: Vec<u8> = b"ARCH-VM-BOOT-WRITE\n"
        .iter()
        .copied()
        .cycle()
        .take(4096)
        .collect();
    assert_eq!(&read[1 << 20..(1 << 20) + 4096], &pattern[..]);
    assert_eq!(&read[..1 << 20], &img[..1 << 20], "nothing else changed");
    assert_eq!(&read[(1 << 20) + 4096..], &img[(1 << 20) + 4096..2 << 20]);
}
