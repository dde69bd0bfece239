#!/usr/bin/env bash
# The README's five-minute tour as a script: builds nothing, runs the release binary on a
# throw-away repository in a temp directory and prints what each step shows.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ARCH="${ARCH:-$ROOT/target/release/arch}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export ARCH_REPO="$WORK/repo"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
[ -n "${NO_COLOR:-}" ] && step() { printf '\n$ %s\n' "$*"; "$@"; }

step "$ARCH" init "$WORK/repo"
# A 64 MiB sparse disk with a little data in it.
truncate -s 64M "$WORK/disk.raw"
printf 'hello from arch\n' | dd of="$WORK/disk.raw" bs=1 seek=$((5 << 20)) conv=notrunc status=none
step "$ARCH" put "$WORK/disk.raw" images/disk.raw --meta origin=tour
step "$ARCH" ls -l images
step "$ARCH" info images/disk.raw
step "$ARCH" cp images/disk.raw backup/disk.raw
printf '\n$ arch hashmap images/disk.raw | cut -c1-160\n'
"$ARCH" hashmap images/disk.raw | cut -c1-160
step "$ARCH" get images/disk.raw -o "$WORK/out.raw"
step cmp "$WORK/disk.raw" "$WORK/out.raw"
step du -h --apparent-size "$WORK/out.raw"
step du -h "$WORK/out.raw"
echo
echo "tour complete: the exported disk is byte-identical and sparse."
