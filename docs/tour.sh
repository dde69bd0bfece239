#!/usr/bin/env bash
# The README's tour as a script: runs arch on a throw-away repository over a real disk-image
# fixture (built by fixtures/build.sh, no root) and prints what each step shows.
#
# Usage: bash docs/tour.sh              builds arch (release) with cargo and runs that binary
#        ARCH=/path/to/arch bash docs/tour.sh   runs the given binary instead
# cargo is asked where it put the binary, so CARGO_TARGET_DIR and build.target-dir work.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

# Every tool the tour needs, checked before any work, each named with its Debian package.
missing=()
packages=()
for need in qemu-img:qemu-utils sfdisk:fdisk mkfs.ext4:e2fsprogs debugfs:e2fsprogs \
            e2fsck:e2fsprogs resize2fs:e2fsprogs ssh-keygen:openssh-client; do
    tool="${need%%:*}" package="${need#*:}"
    if ! PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null; then
        missing+=("$tool ($package)")
        [[ " ${packages[*]} " == *" $package "* ]] || packages+=("$package")
    fi
done
if ((${#missing[@]})); then
    echo "tour.sh: missing ${missing[*]}; install with: sudo apt install ${packages[*]}" >&2
    exit 2
fi

if [ -z "${ARCH:-}" ]; then
    # The path cargo reports for the `arch` binary it built (wherever its target dir is).
    ARCH="$(cd "$ROOT" && cargo build --release --message-format=json-render-diagnostics |
        sed -n 's/.*"executable":"\([^"]*\/arch\)".*/\1/p' | tail -n 1)"
    [ -n "$ARCH" ] || { echo "tour.sh: cargo did not report the arch binary" >&2; exit 2; }
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export ARCH_REPO="$WORK/repo"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
[ -n "${NO_COLOR:-}" ] && step() { printf '\n$ %s\n' "$*"; "$@"; }

bash "$ROOT/fixtures/build.sh" "$WORK/fixtures" >/dev/null
DISK="$WORK/fixtures/gpt-ext4.raw"           # 64 MiB: GPT, one ext4 root partition

step "$ARCH" init "$WORK/repo"
step "$ARCH" put "$DISK" images/debian.raw --meta origin=tour
step "$ARCH" image register images/debian.raw --name "Debian fixture" -p OSFAMILY=linux -p ROOT_PARTITION=1
step "$ARCH" image ls
step "$ARCH" clone "Debian fixture" vm1 --size 256M --hostname vm1
printf 'hello from arch\n' > "$WORK/hello.txt"
step "$ARCH" volume write vm1 --offset 200M "$WORK/hello.txt"
step "$ARCH" volume info vm1
step "$ARCH" snapshot vm1 vm1-s1
step "$ARCH" clone snapshots/vm1-s1 vm2
step "$ARCH" volume read vm2 --offset 200M --length 16
step "$ARCH" volume export vm2 -o "$WORK/vm2.qcow2"
step qemu-img info "$WORK/vm2.qcow2"
step qemu-img check "$WORK/vm2.qcow2"
step "$ARCH" volume export vm1 -o "$WORK/vm1.raw"
step qemu-img compare "$WORK/vm1.raw" "$WORK/vm2.qcow2"
step "$ARCH" du
step "$ARCH" fsck
echo
echo "tour complete: vm1 was customized (hostname, partition and filesystem grown to 256 MiB),"
echo "the snapshot's clone equals the volume, and qemu-img accepts the export."
