#!/usr/bin/env python3
"""arch benchmark: runs arch beside its peers on the same data, in one go, and prints ratio
tables; with --write it rewrites docs/BENCHMARKS.md.

Each timing is the median of --reps runs (wall clock); peak RSS comes from wait4(). Ratios
are arch time / peer time (below 1.0: arch is faster). Absolute times drift on shared
machines; the ratios are what to read.

Usage: bench/run [--reps N] [--dir DIR] [--suite NAME ...] [--write]
"""

import argparse
import json
import os
import platform
import shutil
import random
import statistics
import subprocess
import tempfile
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARCH = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "arch"
# ARCH_BIN: measure this arch binary instead of building the release one.
ARCH = Path(os.environ["ARCH_BIN"]) if os.environ.get("ARCH_BIN") else ARCH
TiB = 1 << 40
GiB = 1 << 30
MiB = 1 << 20


def run_once(cmd, env=None, stdout=None, fail_ok=False):
    """Runs cmd (list, or str for the shell); returns (seconds, peak RSS in KiB). With
    fail_ok, a failing command is timed too and its stderr is kept in run_once.last_error.
    The RSS is the one /usr/bin/time reports for the command (and what it waited for):
    wait4 on a child forked from this Python would report Python's own size whenever that
    is larger (the high-water mark of the memory the child had before its exec)."""
    shell = isinstance(cmd, str)
    out = open(os.devnull, "wb") if stdout is None else stdout
    argv = ["sh", "-c", cmd] if shell else list(cmd)
    rss_file = None
    if Path("/usr/bin/time").exists():
        fd, rss_file = tempfile.mkstemp(prefix="arch-bench-rss-")
        os.close(fd)
        argv = ["/usr/bin/time", "-q", "-f", "%M", "-o", rss_file, *argv]
    start = time.perf_counter()
    p = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE,
                         env={**os.environ, **(env or {})})
    _, status, usage = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - start
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    rss = usage.ru_maxrss
    if rss_file:
        text = Path(rss_file).read_text().split()
        os.unlink(rss_file)
        rss = int(text[-1]) if text and text[-1].isdigit() else rss
    run_once.last_error = err.strip() if p.returncode != 0 else ""
    if p.returncode != 0 and not fail_ok:
        raise SystemExit(f"benchmark command failed ({p.returncode}): {cmd}\n{err}")
    return elapsed, rss


def measure(cmd, reps, setup=None, env=None):
    """Median time and max RSS over reps runs; setup() runs untimed before each."""
    times, rss = [], 0
    for _ in range(reps):
        if setup:
            setup()
        t, r = run_once(cmd, env=env)
        times.append(t)
        rss = max(rss, r)
    return statistics.median(times), rss


def sh(cmd):
    subprocess.run(cmd, shell=True, check=True, stdout=subprocess.DEVNULL)


def rm(*paths):
    for p in paths:
        p = Path(p)
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def have(tool):
    return shutil.which(tool) is not None


def ensure(tool, package):
    """Installs a missing peer with apt-get when running as root (restic for gc's peer)."""
    if not have(tool) and have("apt-get") and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", package], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    return have(tool)


def arch(repo, *args):
    return [str(ARCH), "-R", str(repo), "-q", *args]


def fresh_repo(repo, block_size="4M", packs="auto"):
    rm(repo)
    subprocess.run([str(ARCH), "init", "-q", "--block-size", block_size, "--packs", packs,
                    str(repo)], check=True)


def make_random(path, size):
    if not path.exists() or path.stat().st_size != size:
        sh(f"head -c {size} /dev/urandom > {path}")


def make_sparse(path, size, data):
    """`size` bytes with `data` bytes of random data spread in 4 MiB extents."""
    if path.exists() and path.stat().st_size == size:
        return
    rm(path)
    extents = data // (4 * MiB)
    stride = size // extents
    with open(path, "wb") as f:
        f.truncate(size)
        for i in range(extents):
            f.seek(i * stride)
            f.write(os.urandom(4 * MiB))


class Table:
    def __init__(self, title):
        self.title, self.rows = title, []

    def row(self, op, arch_result, peer, peer_result, note=""):
        (at, ar), (pt, pr) = arch_result, peer_result
        self.rows.append((op, at, ar, peer, pt, pr, at / pt if pt > 0 else float("inf"), note))

    def markdown(self):
        lines = [f"### {self.title}", "",
                 "| operation | arch | peer | peer time | ratio arch/peer | arch peak RSS | peer peak RSS | note |",
                 "|---|---:|---|---:|---:|---:|---:|---|"]
        for op, at, ar, peer, pt, pr, ratio, note in self.rows:
            op, peer = op.replace("|", "\\|"), peer.replace("|", "\\|")
            lines.append(f"| {op} | {at:.3f} s | {peer} | {pt:.3f} s | **{ratio:.2f}** | "
                         f"{ar / 1024:.0f} MiB | {pr / 1024:.0f} MiB | {note} |")
        return "\n".join(lines) + "\n"


def suite_objects(work, reps):
    """Issue 2: put / dedup put / get against cp, sha256sum, cat and friends."""
    tables = []
    datasets = [
        ("1 GiB random", work / "random-1g.bin", lambda p: make_random(p, GiB)),
        ("4 GiB sparse, 1 GiB data", work / "sparse-4g.bin", lambda p: make_sparse(p, 4 * GiB, GiB)),
    ]
    repo, out = work / "repo-objects", work / "out.bin"
    for label, src, make in datasets:
        make(src)
        t = Table(f"Objects: {label}")
        put_new = measure(arch(repo, "put", str(src), "bench/x"), reps,
                          setup=lambda: fresh_repo(repo))
        # Every peer that writes a file syncs it (arch put is durable).
        peers = [
            ("cp && sync", f"cp {src} {out} && sync", lambda: rm(out)),
            ("sha256sum", ["sha256sum", str(src)], None),
            ("qemu-img convert -O qcow2 && sync", f"qemu-img convert -O qcow2 {src} {out} && sync",
             lambda: rm(out)),
        ]
        if have("restic"):
            rrepo = work / "restic-repo"
            env = {"RESTIC_PASSWORD": "bench", "RESTIC_REPOSITORY": str(rrepo)}

            def restic_setup(rrepo=rrepo, env=env):
                rm(rrepo)
                subprocess.run(["restic", "init", "-q"], check=True, env={**os.environ, **env},
                               stdout=subprocess.DEVNULL)
            peers.append(("restic backup", ["restic", "backup", "-q", str(src)], restic_setup, env))
        if have("borg"):
            brepo = work / "borg-repo"
            env = {"BORG_PASSPHRASE": "", "BORG_REPO": str(brepo)}

            def borg_setup(brepo=brepo, env=env):
                rm(brepo)
                subprocess.run(["borg", "init", "-e", "none", str(brepo)], check=True,
                               env={**os.environ, **env}, stdout=subprocess.DEVNULL)
            peers.append(("borg create", ["borg", "create", f"{brepo}::a", str(src)], borg_setup, env))
        for peer in peers:
            name, cmd, setup = peer[:3]
            env = peer[3] if len(peer) > 3 else None
            t.row("put (new data, durable)", put_new, name, measure(cmd, reps, setup=setup, env=env))
        fresh_repo(repo)
        run_once(arch(repo, "put", str(src), "bench/x"))
        again = measure(arch(repo, "put", str(src), "bench/y"), reps)
        t.row("put again (dedup)", again, "sha256sum", measure(["sha256sum", str(src)], reps))
        if have("openssl"):
            t.row("put again (dedup)", again, "openssl dgst -sha256",
                  measure(["openssl", "dgst", "-sha256", str(src)], reps))
        # get -o FILE is durable (one fsync at the end): its peers sync too.
        get_file = measure(arch(repo, "get", "bench/x", "-o", str(out), "--force"), reps,
                           setup=lambda: rm(out))
        cat_sync = measure(f"cat {src} > {out} && sync", reps, setup=lambda: rm(out))
        t.row("get -o FILE (verified)", get_file, "cat > FILE && sync", cat_sync)
        get_nv_file = measure(arch(repo, "get", "--no-verify", "bench/x", "-o", str(out), "--force"),
                              reps, setup=lambda: rm(out))
        t.row("get -o FILE --no-verify", get_nv_file, "cat > FILE && sync", cat_sync)
        t.row("get -o FILE (verified)", get_file, "cp --sparse=always && sync",
              measure(f"cp --sparse=always {src} {out} && sync", reps, setup=lambda: rm(out)))
        t.row("get -o FILE (verified)", get_file, "qemu-img convert -O raw && sync",
              measure(f"qemu-img convert -O raw {src} {out} && sync", reps, setup=lambda: rm(out)))
        get_pipe = measure(f"{ARCH} -R {repo} get bench/x | cat > /dev/null", reps)
        t.row("get | pipe (verified)", get_pipe, "cat | pipe",
              measure(f"cat {src} | cat > /dev/null", reps))
        get_nv = measure(f"{ARCH} -R {repo} get --no-verify bench/x | cat > /dev/null", reps)
        t.row("get --no-verify | pipe", get_nv, "cat | pipe",
              measure(f"cat {src} | cat > /dev/null", reps))
        rm(out)
        tables.append(t)
    return tables


def suite_integrity(work, reps):
    """Issue 5 and 16: gc and fsck --read-data on a repository of 100k blocks (4 KiB blocks),
    with packs (the default for block sizes up to 64 KiB) and with one file per block."""
    t = Table("Integrity: 100k blocks (400 MiB, 4 KiB blocks), half of it garbage for gc")
    repo = work / "repo-integrity"
    a, b = work / "int-a.bin", work / "int-b.bin"
    make_random(a, 200 * MiB)
    make_random(b, 200 * MiB)

    garbage = work / "int-garbage.lst"

    def blocks():
        return {str(f) for shard in (repo / "blocks").iterdir() for f in shard.iterdir()}

    def populate(packs="auto"):
        fresh_repo(repo, "4K", packs)
        run_once(arch(repo, "put", str(a), "c/a"))
        before = blocks()
        run_once(arch(repo, "put", str(b), "c/b"))
        garbage.write_text("".join(f + "\0" for f in sorted(blocks() - before)))
        run_once(arch(repo, "rm", "c/b"))

    def populate_loose():
        populate("off")
    gc = measure(arch(repo, "gc"), reps, setup=populate)
    gc_loose = measure(arch(repo, "gc"), reps, setup=populate_loose)
    # Issue 16: the floor of one file per block, the same block files removed by rm + syncfs,
    # by one rm and by 32 at once (gc's sweep threads: on a disk whose filesystem discards
    # freed blocks synchronously, only removals in flight together overlap the discards).
    loose = "gc, one file per block (--packs off)"
    t.row(loose, gc_loose, "floor: xargs rm of the same files + syncfs",
          measure(f"xargs -0 rm -f < {garbage} && sync -f {repo}/blocks", reps,
                  setup=populate_loose))
    t.row(loose, gc_loose, "floor: 32 rm at once (xargs -P 32) + syncfs",
          measure(f"xargs -0 -P 32 -n 1600 rm -f < {garbage} && sync -f {repo}/blocks", reps,
                  setup=populate_loose))
    populate()
    fsck = measure(arch(repo, "fsck", "--read-data"), reps)
    if have("restic"):
        rrepo = work / "restic-integrity"
        env = {"RESTIC_PASSWORD": "bench", "RESTIC_REPOSITORY": str(rrepo)}
        full_env = {**os.environ, **env}

        def rpopulate():
            rm(rrepo)
            subprocess.run(["restic", "init", "-q"], check=True, env=full_env, stdout=subprocess.DEVNULL)
            subprocess.run(["restic", "backup", "-q", "--tag", "a", str(a)], check=True, env=full_env,
                           stdout=subprocess.DEVNULL)
            subprocess.run(["restic", "backup", "-q", "--tag", "b", str(b)], check=True, env=full_env,
                           stdout=subprocess.DEVNULL)
            subprocess.run(["restic", "forget", "-q", "--tag", "b"], check=True, env=full_env,
                           stdout=subprocess.DEVNULL)
        prune = measure(["restic", "prune", "-q"], reps, setup=rpopulate, env=env)
        t.row("gc (sweep 50k of 100k blocks, packs)", gc, "restic prune", prune)
        t.row(loose, gc_loose, "restic prune", prune)
        rpopulate()
        t.row("fsck --read-data", fsck, "restic check --read-data",
              measure(["restic", "check", "-q", "--read-data"], reps, env=env))
    else:
        t.row("fsck --read-data", fsck, "sha256sum of the same data",
              measure(["sha256sum", str(a)], reps))
    return [t]


def suite_volumes(work, reps):
    """Issues 3, 4, 7: metadata-only image operations, clones, CoW writes, snapshot, export,
    clone + customize."""
    repo = work / "repo-volumes"
    fresh_repo(repo)
    small, big, huge = work / "vol-10m.raw", work / "vol-10g.raw", work / "vol-100g.raw"
    make_random(small, 10 * MiB)
    make_sparse(big, 10 * GiB, 64 * MiB)
    make_sparse(huge, 100 * GiB, 64 * MiB)
    gib = work / "vol-1g.raw"
    make_sparse(gib, GiB, 256 * MiB)
    for path, name in [(small, "i/small"), (big, "i/big"), (huge, "i/huge"), (gib, "i/gib")]:
        run_once(arch(repo, "put", str(path), name))
    img = Table("Images: metadata only, whatever the size")
    for op in (["image", "register", "{}", "--name", "{}"], ["image", "mark", "{}", "snapshot"]):
        def timed(name):
            def setup():
                subprocess.run(arch(repo, "image", "unregister", name), stderr=subprocess.DEVNULL)
                if op[1] == "mark":
                    run_once(arch(repo, "image", "register", name, "--name", name))
            return measure(arch(repo, *[a.format(name) for a in op]), reps, setup=setup)
        img.row(f"image {op[1]} (10 GiB object)", timed("i/big"), f"image {op[1]} (10 MiB object)", timed("i/small"))
    vol = Table("Volumes: thin clones, copy-on-write, snapshot, export")
    overlay = work / "overlay.qcow2"
    n = [0]

    for src, path, label in [("i/gib", gib, "1 GiB"), ("i/huge", huge, "100 GiB")]:
        def clone_cmd():
            n[0] += 1
            return arch(repo, "clone", src, f"c{n[0]}")
        times = []
        for _ in range(reps):
            times.append(run_once(clone_cmd()))
        a = (statistics.median(t for t, _ in times), max(r for _, r in times))
        q = measure(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(path), "-F", "raw", str(overlay)], reps,
                    setup=lambda: rm(overlay))
        vol.row(f"clone of a {label} sparse source", a, "qemu-img create -b (qcow2 overlay)", q)
    cp_dst = work / "copy.raw"
    vol.row("clone of a 1 GiB sparse source", (statistics.median([run_once(clone_cmd())[0] for _ in range(reps)]), 0),
            "cp --sparse=always", measure(["cp", "--sparse=always", str(gib), str(cp_dst)], reps, setup=lambda: rm(cp_dst)))
    # 1000 random 4 KiB writes, one arch command each (what a script does) vs one qemu-io run.
    run_once(arch(repo, "clone", "i/gib", "w"))
    page = work / "page.bin"
    make_random(page, 4096)
    offsets = [random.Random(7 + i).randrange(0, GiB // 4096) * 4096 for i in range(1000)]
    script = work / "writes.sh"
    script.write_text("".join(f"{ARCH} -R {repo} -q volume write w --offset {o} {page}\n" for o in offsets))
    wa = measure(["bash", str(script)], 1)
    rm(overlay)
    sh(f"qemu-img create -q -f qcow2 -b {gib} -F raw {overlay}")
    qargs = ["qemu-io", "-f", "qcow2"]
    for o in offsets:
        qargs += ["-c", f"write -P 7 {o} 4k"]
    qargs += ["-c", "flush", str(overlay)]
    wq = measure(qargs, 1)
    vol.row("1000 random 4 KiB writes (one arch process each, each durable)", wa, "qemu-io, one process, 1000 writes + flush", wq)
    # Snapshot of a 10 GiB volume with 1% written (100 MiB).
    chunk = work / "chunk.bin"
    make_random(chunk, 4 * MiB)

    def dirty():
        subprocess.run(arch(repo, "volume", "rm", "s"), stderr=subprocess.DEVNULL)
        run_once(arch(repo, "clone", "i/big", "s"))
        for i in range(25):
            run_once(arch(repo, "volume", "write", "s", "--offset", str(i * 400 * MiB), str(chunk)))
        n[0] += 1
    snaps = []
    for _ in range(reps):
        dirty()
        snaps.append(run_once(arch(repo, "snapshot", "s", f"snap{n[0]}")))
    sa = (statistics.median(t for t, _ in snaps), max(r for _, r in snaps))
    vol.row("snapshot of a 10 GiB volume, 1% (100 MiB) written", sa, "sha256sum of the 100 MiB written",
            measure(f"for i in $(seq 25); do cat {chunk}; done | sha256sum", reps))
    out = work / "export.raw"
    vol.row("volume export (1 GiB, 256 MiB data, 1000 4 KiB writes)",
            measure(arch(repo, "volume", "export", "w", "-o", str(out), "--force"), reps),
            "qemu-img convert -O raw (overlay) && sync",
            measure(f"qemu-img convert -O raw {overlay} {out} && sync", reps))
    # Issue 16: a 1 GiB clone with 64 MiB written (16 blocks of 4 MiB) vs the same qcow2 overlay.
    run_once(arch(repo, "clone", "i/gib", "e64"))
    rm(overlay)
    sh(f"qemu-img create -q -f qcow2 -b {gib} -F raw {overlay}")
    qargs = ["qemu-io", "-f", "qcow2"]
    for i in range(16):
        o = i * 64 * MiB + 8 * MiB
        run_once(arch(repo, "volume", "write", "e64", "--offset", str(o), str(chunk)))
        qargs += ["-c", f"write -P 7 {o} 4M"]
    run_once(qargs + [str(overlay)])
    vol.row("volume export (1 GiB clone, 64 MiB written)",
            measure(arch(repo, "volume", "export", "e64", "-o", str(out), "--force"), reps),
            "qemu-img convert -O raw (overlay) && sync",
            measure(f"qemu-img convert -O raw {overlay} {out} && sync", reps))
    rm(out)
    tables = [img, vol]
    # Clone + customize of the GPT fixture at 1 GiB and 10 GiB vs a full copy of the image.
    fx = work / "fixtures"
    sh(f"bash {ROOT}/fixtures/build.sh {fx}")
    run_once(arch(repo, "put", str(fx / "gpt-ext4.raw"), "i/gpt"))
    subprocess.run(arch(repo, "image", "register", "i/gpt", "--name", "gpt"), check=True, stdout=subprocess.DEVNULL)
    cust = Table("Clone + customize (GPT ext4 fixture: partition and filesystem growth, hostname, keys)")
    results = {}
    for size in ("1G", "10G"):
        runs = []
        for _ in range(reps):
            n[0] += 1
            runs.append(run_once(arch(repo, "clone", "gpt", f"k{n[0]}", "--size", size, "--hostname", "bench")))
        results[size] = (statistics.median(t for t, _ in runs), max(r for _, r in runs))
    full = work / "full-1g.raw"
    sh(f"cp {fx / 'gpt-ext4.raw'} {full} && truncate -s 1G {full}")
    cust.row("clone + customize, 1 GiB disk", results["1G"], "full copy of the 1 GiB image (cp --sparse=never)",
             measure(["cp", "--sparse=never", str(full), str(cp_dst)], reps, setup=lambda: rm(cp_dst)))
    cust.row("clone + customize, 10 GiB disk", results["10G"], "clone + customize, 1 GiB disk", results["1G"])
    tables.append(cust)
    return tables


class CostTable:
    """Absolute time and peak RSS per operation, for cases without a peer."""

    def __init__(self, title):
        self.title, self.rows = title, []

    def row(self, op, result, note=""):
        self.rows.append((op, result[0], result[1], note))

    def markdown(self):
        lines = [f"### {self.title}", "", "| operation | arch | arch peak RSS | note |",
                 "|---|---:|---:|---|"]
        for op, t, rss, note in self.rows:
            op, note = op.replace("|", "\\|"), note.replace("|", "\\|")
            lines.append(f"| {op} | {t:.3f} s | {rss / 1024:.0f} MiB | {note} |")
        return "\n".join(lines) + "\n"


def suite_sizes(work, reps):
    """Issue 11: every command on a 64 TiB volume with one written block, 4 KiB blocks (2^34
    blocks, the worst case): the cost must follow the data (target: < 2 s, < 100 MiB each)."""
    t = CostTable("Sizes: 64 TiB volume, one written block, 4 KiB blocks (2^34 blocks)")
    repo = work / "repo-sizes"
    fresh_repo(repo, "4K")
    one = work / "one-block.bin"
    make_random(one, 4096)
    run_once(arch(repo, "put", str(one), "i/one"))
    at = str(40 * TiB)
    n = [0]

    def fresh_volume():
        n[0] += 1
        run_once(arch(repo, "clone", "i/one", f"big{n[0]}", "--size", "64T"))
        run_once(arch(repo, "volume", "write", f"big{n[0]}", "--offset", at, str(one)))

    def timed(make_cmd, setup=None, fail_ok=False):
        times, rss = [], 0
        for _ in range(reps):
            if setup:
                setup()
            s, r = run_once(make_cmd(), fail_ok=fail_ok)
            times.append(s)
            rss = max(rss, r)
        return statistics.median(times), rss

    def new_name():
        n[0] += 1
        return f"big{n[0]}"
    t.row("clone --size 64T", timed(lambda: arch(repo, "clone", "i/one", new_name(), "--size", "64T")))
    fresh_volume()
    vol = f"big{n[0]}"
    t.row("volume write (one 4 KiB block at 40 TiB)",
          timed(lambda: arch(repo, "volume", "write", vol, "--offset", at, str(one))))
    t.row("volume info", timed(lambda: arch(repo, "volume", "info", vol)))
    t.row(f"volume ls ({n[0]} volumes of 64 TiB)", timed(lambda: arch(repo, "volume", "ls")))
    t.row("volume read (4 KiB at 40 TiB)",
          timed(lambda: arch(repo, "volume", "read", vol, "--offset", at, "--length", "4096")))
    t.row("snapshot", timed(lambda: arch(repo, "snapshot", f"big{n[0]}", f"snap{n[0]}"),
                            setup=fresh_volume))
    maps = sorted((repo / "maps").rglob("*"), key=lambda p: p.stat().st_mtime)
    newest = [p for p in maps if p.is_file()][-1]
    snap = f"snapshots/snap{n[0]}"
    t.row("clone of the snapshot", timed(lambda: arch(repo, "clone", snap, new_name())),
          f"snapshot map file: {newest.stat().st_size} bytes")
    out = work / "big-export.raw"
    rm(out)
    res = timed(lambda: arch(repo, "volume", "export", vol, "-o", str(out), "--force"), fail_ok=True)
    note = "sparse file written" if out.exists() else f"refused: {run_once.last_error[:160]}"
    t.row("volume export -o FILE", res, note)
    rm(out)
    t.row("du", timed(lambda: arch(repo, "du")))
    t.row("fsck", timed(lambda: arch(repo, "fsck")))
    t.row("gc", timed(lambda: arch(repo, "gc")))
    tables = [t]
    # Customization of a clone grown to 64 TiB: needs a sparse 64 TiB work file in tmp/.
    fx = work / "fixtures"
    if have("sfdisk") and have("debugfs"):
        if not (fx / "mbr-ext4.raw").exists():
            sh(f"bash {ROOT}/fixtures/build.sh {fx}")
        run_once(arch(repo, "put", str(fx / "mbr-ext4.raw"), "i/mbr"))
        subprocess.run(arch(repo, "image", "register", "i/mbr", "--name", "mbr"), check=True,
                       stdout=subprocess.DEVNULL)
        # The fixture's 63 MiB ext4 reserves growth room for ~63 GiB only (resize_inode), so
        # resize2fs cannot take it to 2 TiB: the filesystem tasks are excluded, the partition
        # table, hostname and file tasks run.
        subprocess.run(arch(repo, "image", "modify", "mbr",
                            "-p", "EXCLUDE_TASK_FILESYSTEMRESIZEUNMOUNTED=yes",
                            "-p", "EXCLUDE_TASK_FILESYSTEMRESIZEMOUNTED=yes"), check=True)
        c = CostTable("Sizes: clone + customize of the MBR ext4 fixture grown past 2 TiB "
                      "(filesystem resize excluded)")
        for size in ("3T", "64T"):
            res = timed(lambda: arch(repo, "clone", "mbr", new_name(), "--size", size,
                                     "--hostname", "bench"), fail_ok=True)
            note = run_once.last_error[:200]
            if not note:
                info = subprocess.run([str(ARCH), "-R", str(repo), "--json", "volume", "info",
                                       f"big{n[0]}"], capture_output=True, text=True, check=True)
                tasks = json.loads(info.stdout)["customization"]
                note = next((t["detail"] for t in tasks if t["task"] == "FixPartitionTable"), "")
            c.row(f"clone --size {size} + customize", res, note)
        tables.append(c)
    return tables


class Daemon:
    """A server in the background (arch serve, qemu-nbd); stop() returns its peak RSS (KiB)."""

    def __init__(self, cmd, socket=None):
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        if socket is None:  # arch serve --json: the first line is the export's URI
            self.uri = json.loads(self.p.stdout.readline())["uri"]
        else:
            for _ in range(500):
                if Path(socket).exists():
                    break
                time.sleep(0.01)
            self.uri = f"nbd+unix:///?socket={socket}"

    def stop(self):
        self.p.terminate()
        _, status, usage = os.wait4(self.p.pid, 0)
        return usage.ru_maxrss


# Sequential readers of an NBD export, by name: each takes the URI and reads every byte.
READ_CLIENTS = {
    "nbdcopy": lambda uri: ["nbdcopy", uri, "null:"],
    "qemu-img": lambda uri: ["qemu-img", "convert", "-n", "--target-is-zero", "-f", "raw", uri,
                             "--target-image-opts", f"driver=null-co,size={GiB}"],
}


def warm_blocks(repo):
    """Reads every stored block of `repo` once. `put` writes blocks around the page cache
    (O_DIRECT), while a peer's backing file was just written by Python and is cached: warming
    makes both sides start from the page cache."""
    for f in (repo / "blocks").rglob("*"):
        if f.is_file():
            f.read_bytes()


def suite_serve(work, reps):
    """Issue 13: arch serve over NBD beside qemu-nbd and qemu-io (qcow2 overlay). Before each
    arch round the repository's blocks are read once (warm_blocks), as the peers' raw file
    is in the page cache from being written."""
    repo = work / "repo-serve"
    fresh_repo(repo)
    gib = work / "serve-1g.raw"
    make_sparse(gib, GiB, 256 * MiB)
    run_once(arch(repo, "put", str(gib), "i/gib"))
    offsets = [random.Random(7 + i).randrange(0, GiB // 4096) * 4096 for i in range(1000)]
    writes = []
    for o in offsets:
        writes += ["-c", f"write -P 7 {o} 4k"]
    writes += ["-c", "flush"]
    t = Table("arch serve (NBD): random writes, sequential reads, server memory")
    overlay, sock = work / "serve-overlay.qcow2", work / "qemu-nbd.sock"

    def new_overlay():
        rm(overlay)
        sh(f"qemu-img create -q -f qcow2 -b {gib} -F raw {overlay}")

    # First touch: every write lands in a block (4 MiB / 64 KiB cluster) not yet private.
    n = [0]

    def serve_volume():
        n[0] += 1
        warm_blocks(repo)
        run_once(arch(repo, "clone", "i/gib", f"s{n[0]}"))
        return Daemon([str(ARCH), "-R", str(repo), "--json", "serve", f"s{n[0]}"])
    a_first, q_first, n_first = [], [], []
    a_again = []
    rss_arch, rss_qnbd = 0, 0
    for _ in range(reps):
        d = serve_volume()
        a_first.append(run_once(["qemu-io", "-f", "raw", *writes, d.uri])[0])
        a_again.append(run_once(["qemu-io", "-f", "raw", *writes, d.uri])[0])
        rss_arch = max(rss_arch, d.stop())
        new_overlay()
        q_first.append(run_once(["qemu-io", "-f", "qcow2", *writes, str(overlay)])[0])
        new_overlay()
        rm(sock)
        d = Daemon(["qemu-nbd", "-f", "qcow2", "-t", f"--socket={sock}", str(overlay)], socket=sock)
        n_first.append(run_once(["qemu-io", "-f", "raw", *writes, d.uri])[0])
        rss_qnbd = max(rss_qnbd, d.stop())
    med = statistics.median
    t.row("1000 random 4 KiB writes + flush, qemu-io via arch serve (first touch)", (med(a_first), rss_arch),
          "same via qemu-nbd on a qcow2 overlay", (med(n_first), rss_qnbd),
          "RSS columns: the servers; arch's blocks read once before each round (warm, as the peers' file)")
    t.row("1000 random 4 KiB writes + flush, qemu-io via arch serve (first touch)", (med(a_first), rss_arch),
          "qemu-io on the qcow2 overlay file (no server)", (med(q_first), 0))
    t.row("the same 1000 writes again (blocks already private)", (med(a_again), rss_arch),
          "same via qemu-nbd on a qcow2 overlay (first touch)", (med(n_first), rss_qnbd))
    # Sequential read of the whole 1 GiB volume (256 MiB data, the rest holes), by two clients.
    # A server verifies each shared block the first time it sends it: the first pass (a fresh
    # server per rep) hashes all 256 MiB, later passes on the same server do not.
    for name, cmd in READ_CLIENTS.items():
        first, warm, rss_read = [], [], 0
        for _ in range(reps):
            d = serve_volume()
            first.append(run_once(cmd(d.uri))[0])
            warm += [run_once(cmd(d.uri))[0] for _ in range(2)]
            rss_read = max(rss_read, d.stop())
        rm(sock)
        d = Daemon(["qemu-nbd", "-f", "raw", "-r", "-t", f"--socket={sock}", str(gib)], socket=sock)
        rq = [run_once(cmd(d.uri))[0] for _ in range(reps)]
        rss_q = d.stop()
        t.row(f"sequential read of a 1 GiB volume ({name}), first pass (every block verified)",
              (med(first), rss_read), "the same from qemu-nbd on the raw file", (med(rq), rss_q),
              "RSS columns: the servers; a fresh server per rep")
        t.row(f"sequential read of a 1 GiB volume ({name}), later passes (blocks verified once per server)",
              (med(warm), rss_read), "the same from qemu-nbd on the raw file", (med(rq), rss_q), "")
    return [t]


class CatalogTable:
    """Rows: operation x catalog size, for the SQLite catalog and the JSON one."""

    def __init__(self, title, sizes):
        self.title, self.sizes, self.rows = title, sizes, []

    def row(self, op, cells):
        self.rows.append((op, cells))

    def markdown(self):
        head = "| operation | " + " | ".join(f"{n:,} objects" for n in self.sizes) + " |"
        lines = [f"### {self.title}", "", head, "|---" * (len(self.sizes) + 1) + "|"]
        for op, cells in self.rows:
            lines.append(f"| {op} | " + " | ".join(cells.get(n, "-") for n in self.sizes) + " |")
        return "\n".join(lines) + "\n"


def suite_catalog(work, reps):
    """Single-object commands and listings at 100 .. 1M objects. The SQLite catalog is
    populated through arch's own catalog code in one transaction (examples/populate_catalog);
    the JSON catalog of the format-1 binary (ARCH_FORMAT1) is written as that binary writes
    it. CATALOG_SIZES overrides the sizes (comma-separated); JSON_MAX caps the JSON runs."""
    sizes = [int(n) for n in os.environ.get("CATALOG_SIZES", "100,10000,100000,1000000").split(",")]
    json_max = int(os.environ.get("JSON_MAX", "100000"))
    old = os.environ.get("ARCH_FORMAT1")
    populate = Path(os.environ.get("POPULATE_BIN", ARCH.parent / "examples" / "populate_catalog"))
    new_t = CatalogTable("Catalog: SQLite (`meta/catalog.db`), median ms / peak RSS MiB", sizes)
    old_t = CatalogTable("Catalog: JSON (`meta/catalog.json`, format 1), median ms / peak RSS MiB", sizes)
    small = work / "small"
    small.write_bytes(b"abc")
    ops = {}

    def measure_rss(cmd, reps, setup=None):
        """Median time and the true peak RSS of cmd: /usr/bin/time reports the process's own
        (wait4 on a child forked from this large Python would report Python's size)."""
        times, rss = [], 0
        out = work / "rss"
        for _ in range(reps):
            if setup:
                setup()
            t, _ = run_once(["/usr/bin/time", "-f", "%M", "-o", str(out), *cmd])
            times.append(t)
            rss = max(rss, int(out.read_text().split()[-1]))
        return statistics.median(times), rss

    def cell(t_rss):
        t, rss = t_rss
        return f"{t * 1000:.1f} ms / {rss // 1024} MiB"

    def run_ops(binary, repo, n, table_cells, new):
        a = lambda *args: [str(binary), "-R", str(repo), "-q", *args]
        res = {}
        names = iter(range(10**9))
        def put_cmd():
            return a("put", str(small), f"c/new{next(names)}")
        runs = [measure_rss(put_cmd(), 1) for _ in range(reps)]
        res["put (3 bytes, new object)"] = (statistics.median(t for t, _ in runs),
                                             max(r for _, r in runs))
        res["info"] = measure_rss(a("info", "bulk/o0000050"), reps)
        res["image register"] = measure_rss(a("image", "register", "c/base", "--name", "Bench"), reps)
        sh(" ".join(a("mv", "bulk/o0000060", "c/moved")))
        res["mv"] = measure_rss(a("mv", "c/moved", "c/moved2"), reps,
                            setup=lambda: sh(" ".join(a("mv", "c/moved2", "c/moved")) + " 2>/dev/null || true"))
        res["rm"] = measure_rss(a("rm", "c/victim"), reps,
                            setup=lambda: sh(" ".join(a("cp", "c/base", "c/victim"))))
        if new:
            res["ls --limit 1000"] = measure_rss(a("ls", "bulk", "--limit", "1000"), reps)
            t, rss = measure_rss(a("ls", "bulk"), 1)
            res["ls (all, names/s)"] = (t, rss)
            size = (repo / "meta" / "catalog.db").stat().st_size
        else:
            res["ls (first 1000 by prefix)"] = measure_rss(a("ls", "bulk/o0000"), reps)
            t, rss = measure_rss(a("ls", "bulk"), 1)
            res["ls (all, names/s)"] = (t, rss)
            size = (repo / "meta" / "catalog.json").stat().st_size
        for op, v in res.items():
            if op.startswith("ls (all"):
                table_cells.setdefault(op, {})[n] = f"{n / v[0]:,.0f} names/s / {v[1] // 1024} MiB"
            else:
                table_cells.setdefault(op, {})[n] = cell(v)
        table_cells.setdefault("catalog bytes per object", {})[n] = f"{size / (n + 2):.0f} B"

    new_cells, old_cells = {}, {}
    for n in sizes:
        repo = work / f"catalog-{n}"
        rm(repo)
        sh(f"{ARCH} -q init {repo} --block-size 4K")
        sh(f"{ARCH} -R {repo} -q put {small} c/base")
        t0 = time.perf_counter()
        sh(f"{populate} {repo} c/base bulk {n}")
        print(f"populated {n:,} objects in {time.perf_counter() - t0:.1f} s", flush=True)
        run_ops(ARCH, repo, n, new_cells, True)
        rm(repo)
        if old and n <= json_max:
            repo = work / f"catalog-json-{n}"
            rm(repo)
            sh(f"{old} -q init {repo} --block-size 4K")
            sh(f"{old} -R {repo} -q put {small} c/base")
            path = repo / "meta" / "catalog.json"
            cat = json.loads(path.read_text())
            base = cat["objects"]["c/base"]
            for i in range(n):
                rec = dict(base)
                rec["uuid"] = f"{i:08x}-0000-4000-8000-{random.getrandbits(48):012x}"
                cat["objects"][f"bulk/o{i:07}"] = rec
            path.write_text(json.dumps(cat, indent=2))
            run_ops(Path(old), repo, n, old_cells, False)
            rm(repo)
    for op, cells in new_cells.items():
        new_t.row(op, cells)
    for op, cells in old_cells.items():
        old_t.row(op, cells)
    return [new_t, old_t] if old else [new_t]


CACHE = Path(os.environ.get("ARCH_BENCH_CACHE", Path.home() / ".cache" / "arch-bench"))


def debian_disk():
    """A real Debian 12 disk: mmdebstrap (minbase + systemd, linux-image-amd64, openssh-server)
    into a directory, then `mkfs.ext4 -d` into partition 1 of a 2 GiB GPT disk (sfdisk; no
    root or loop device needed). Cached under ~/.cache/arch-bench (ARCH_BENCH_CACHE)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    disk = CACHE / "bookworm-2g-gpt.raw"
    if disk.exists():
        return disk
    root = CACHE / "bookworm-rootfs"
    if not (root / "etc" / "os-release").exists():
        rm(root)
        mode = "root" if os.geteuid() == 0 else "unshare"
        subprocess.run(["mmdebstrap", f"--mode={mode}", "--variant=minbase",
                        "--include=systemd,systemd-sysv,linux-image-amd64,openssh-server",
                        "bookworm", str(root)], check=True)
    size, start = 2 * GiB, MiB
    part_sectors = (size - start) // 512 - 34
    fs = CACHE / "rootfs.ext4"
    rm(fs)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(root), str(fs),
                    f"{part_sectors * 512 // 1024}k"], check=True)
    tmp = CACHE / "disk.tmp"
    rm(tmp)
    with open(tmp, "wb") as f:
        f.truncate(size)
    subprocess.run(["sfdisk", "-q", str(tmp)], check=True, text=True,
                   input=f"label: gpt\nstart=2048, size={part_sectors}, type=linux\n")
    sh(f"dd if={fs} of={tmp} bs=4M seek={start} oflag=seek_bytes conv=notrunc,sparse status=none")
    rm(fs)
    os.rename(tmp, disk)
    return disk


def suite_customize(work, reps):
    """Issue 16: clone + customize of a real Debian 12 image (2 GiB GPT, ext4) grown to 4 GiB,
    with hostname, password and ssh key, through FUSE and through the raw-copy fallback,
    beside `cp --sparse=always` of the image + sync."""
    if not (have("mmdebstrap") and have("mkfs.ext4") and have("sfdisk")):
        print("customize suite skipped: needs mmdebstrap, e2fsprogs and fdisk", file=sys.stderr)
        return []
    disk = debian_disk()
    used = int(subprocess.run(["du", "-B1", str(disk)], capture_output=True, text=True).stdout.split()[0])
    repo = work / "repo-customize"
    fresh_repo(repo)
    run_once(arch(repo, "put", str(disk), "i/debian"))
    subprocess.run(arch(repo, "image", "register", "i/debian", "--name", "debian"), check=True,
                   stdout=subprocess.DEVNULL)
    pw, key = work / "password", work / "key.pub"
    pw.write_text("bench-password\n")
    if not key.exists():
        sh(f"ssh-keygen -q -t ed25519 -N '' -C bench -f {work / 'key'}")
    t = Table(f"Customize: Debian 12 image (2 GiB GPT ext4, {used / 1e6:.0f} MB used) cloned, "
              "grown to 4 GiB, hostname + password + ssh key")
    n = [0]
    private = {}

    def run(mode):
        times, rss = [], 0
        for _ in range(reps):
            n[0] += 1
            name = f"d{n[0]}"
            tt, r = run_once(arch(repo, "clone", "debian", name, "--size", "4G", "--hostname", "bench",
                                  "--password-file", str(pw), "--ssh-key", str(key)),
                             env={"ARCH_CUSTOMIZE_FUSE": mode})
            times.append(tt)
            rss = max(rss, r)
            info = json.loads(subprocess.run(arch(repo, "volume", "info", name, "--json"),
                                             capture_output=True, text=True, check=True).stdout)
            private[mode] = info["private_blocks"]
            subprocess.run(arch(repo, "volume", "rm", name), check=True, stdout=subprocess.DEVNULL)
        return statistics.median(times), rss

    dst = work / "debian-copy.raw"
    peer = measure(f"cp --sparse=always {disk} {dst} && sync", reps, setup=lambda: rm(dst))
    rm(dst)
    fuse = run("1")
    copy = run("0")
    t.row("clone + customize through FUSE", fuse, "cp --sparse=always of the image + sync", peer,
          f"{private['1']} private 4 MiB blocks")
    t.row("clone + customize, raw-copy fallback (ARCH_CUSTOMIZE_FUSE=0)", copy,
          "cp --sparse=always of the image + sync", peer, f"{private['0']} private 4 MiB blocks")
    rm(repo)
    return [t]


SUITES = {"objects": suite_objects, "integrity": suite_integrity, "volumes": suite_volumes,
          "sizes": suite_sizes, "serve": suite_serve, "catalog": suite_catalog,
          "customize": suite_customize}
# Issue 15 (send/receive/copy): its suite lives in bench/suite_send.py.
SUITES["send"] = lambda work, reps: __import__("suite_send").suite_send(work, reps, sys.modules[__name__])
# Issue 17 (blocks on S3): bench/suite_remote.py; needs ARCH_BENCH_STORE and AWS_*.
SUITES["remote"] = lambda work, reps: __import__("suite_remote").suite_remote(work, reps, sys.modules[__name__])
# Packs at scale (many packs, the packed put): bench/suite_packs.py.
SUITES["packs"] = lambda work, reps: __import__("suite_packs").suite_packs(work, reps, sys.modules[__name__])
# Garbage scattered over every pack: gc --max-unused beside restic prune (bench/suite_prune.py).
SUITES["prune"] = lambda work, reps: __import__("suite_prune").suite_prune(work, reps, sys.modules[__name__])


def versions():
    def first_line(cmd):
        try:
            r = subprocess.run(cmd, shell=True, capture_output=True, text=True)
            return (r.stdout or r.stderr).strip().splitlines()[0]
        except Exception:
            return "not installed"
    tools = {"cp": "cp --version", "sha256sum": "sha256sum --version", "cat": "cat --version",
             "openssl": "openssl version", "qemu-img": "qemu-img --version",
             "restic": "restic version", "borg": "borg --version", "arch": f"{ARCH} --version"}
    return {k: first_line(v) if (k == "arch" or have(k)) else "not installed"
            for k, v in tools.items()}


def machine():
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return f"{os.cpu_count()} cores ({cpu}), {int(mem) // 1024 // 1024} GiB RAM, Linux {platform.release()}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=ROOT / "target" / "bench")
    ap.add_argument("--suite", action="append", choices=sorted(SUITES))
    ap.add_argument("--write", action="store_true", help="rewrite docs/BENCHMARKS.md")
    args = ap.parse_args()
    if not os.environ.get("ARCH_BIN"):
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
        subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "populate_catalog"],
                       cwd=ROOT, check=True)
    args.dir.mkdir(parents=True, exist_ok=True)
    ensure("restic", "restic")
    fs = subprocess.run(["df", "-T", str(args.dir)], capture_output=True, text=True).stdout.splitlines()[-1].split()[1]
    header = [
        "# Benchmarks", "",
        "Generated by `bench/run --write` (median of "
        f"{args.reps} runs; ratio = arch time / peer time, below 1 means arch is faster).", "",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- Machine: {machine()}",
        f"- Bench directory filesystem: {fs} (page cache warm: data files are re-read from memory)",
        "- Peers: " + "; ".join(f"{k}: {v}" for k, v in versions().items()), "",
        "arch put is durable (it syncs the filesystem before committing); plain `cp` is not, so",
        "`cp && sync` is the like-for-like peer. Verified get hashes every block (sha256 on all",
        "cores); `get --no-verify` shows the I/O path alone.", "",
    ]
    body = []
    for name in args.suite or sorted(SUITES):
        for table in SUITES[name](args.dir, args.reps):
            text = table.markdown()
            print(text, flush=True)
            body.append(text)
    if args.write:
        (ROOT / "docs" / "BENCHMARKS.md").write_text("\n".join(header) + "\n" + "\n".join(body))
        print("wrote docs/BENCHMARKS.md")


if __name__ == "__main__":
    sys.exit(main())
