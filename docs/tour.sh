#!/usr/bin/env bash
# The README's five-minute tour as a script: runs the release binary on a throw-away
# repository over a real disk-image fixture (built by fixtures/build.sh, no root) and prints
# what each step shows.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ARCH="${ARCH:-$ROOT/target/release/arch}"
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
step "$ARCH" clone "Debian fixture" vm1 --size 256M
printf 'hello from arch\n' > "$WORK/hello.txt"
step "$ARCH" volume write vm1 --offset 200M "$WORK/hello.txt"
step "$ARCH" volume info vm1
step "$ARCH" snapshot vm1 vm1-s1
step "$ARCH" clone snapshots/vm1-s1 vm2
step "$ARCH" volume read vm2 --offset 200M --length 16
step "$ARCH" volume export vm2 -o "$WORK/vm2.qcow2" --format qcow2
step qemu-img info "$WORK/vm2.qcow2"
step qemu-img check "$WORK/vm2.qcow2"
step "$ARCH" volume export vm1 -o "$WORK/vm1.raw"
step qemu-img compare "$WORK/vm1.raw" "$WORK/vm2.qcow2"
step "$ARCH" du
step "$ARCH" fsck
echo
echo "tour complete: the snapshot's clone equals the volume, and qemu-img accepts the export."
