#!/usr/bin/env python3
"""Interleaved A/B of the serve suite's sequential read: arch binaries and qemu-nbd take
turns in every round, on the fixture of `bench/run --suite serve` (a 1 GiB volume cloned from
an image with 256 MiB of data in 4 MiB extents, 4 MiB blocks).

Per round and binary: `arch serve` of a fresh clone, one `nbdcopy URI null:` (first pass:
every stored copy verified), two more (warm), stop; then qemu-nbd on the raw file, two
nbdcopy. Prints, per binary, wall time, the server's CPU (user+sys from /proc around each
pass), the client's CPU and the server's peak RSS. On a shared machine run it under
`chrt -f 10` so that the measured processes are not preempted by the others. nbdcopy asks
for requests of the export's preferred block size within a 16 MiB queue: 4 MiB requests, 4
in flight, from arch (4 MiB blocks); its default 256 KiB, 64 in flight, from qemu-nbd
(4 KiB); on one connection each (neither advertises multi-conn without --shared > 1). The
warm passes start right after the previous client left: they measure how soon a waiting
client is accepted too.

--client qemu-img reads with `qemu-img convert -n --target-is-zero` into a null-co target of
the export's size instead of nbdcopy (2 MiB requests, 8 in flight: each 4 MiB block is
asked for in two halves).

With --writes, the serve suite's random writes instead: per round and binary, the blocks read
once (warm: `put` wrote them around the page cache, qemu-nbd's raw file is cached), `arch serve`
of a fresh clone, 1000 random 4 KiB writes + flush by qemu-io (first touch), the same again
(blocks already private), stop; then qemu-nbd on a fresh qcow2 overlay of the raw file, the
same writes; then the floor of the first touches' copies: as many new 4 MiB files as the
writes copy data blocks, written one by one by dd with conv=fdatasync, buffered and with
oflag=direct. `--cold` drops the block files from the page cache before each arch round
instead of reading them (posix_fadvise DONTNEED). Prints wall times, the server's CPU and peak RSS, per-round ratios to
qemu-nbd, and the floors. qemu-io's default cache mode is writethrough: it sends a FLUSH after every write
(`strace -f -c` of the server: 1000 fdatasync for 1000 writes), so each write pays its own
durability and nothing is batched; `--qemu-io-cache writeback` sends only the final flush.

Usage: bench/ab_serve.py [--reps N] [--dir DIR] [--client nbdcopy|qemu-img]
                         [--writes [--cold] [--qemu-io-cache MODE]] ARCH_BINARY...
"""

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

import run  # bench/run.py: the fixture helpers

TCK = os.sysconf("SC_CLK_TCK")


def cpu(pid):
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TCK


CLIENTS = run.READ_CLIENTS
CLIENT = CLIENTS["nbdcopy"]


def read_pass(uri, server_pid):
    """(wall, server CPU, client CPU) of one sequential read of `uri` by the chosen client."""
    c0, start = cpu(server_pid), time.perf_counter()
    p = subprocess.Popen(CLIENT(uri), stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    if status != 0:
        raise SystemExit(f"{CLIENT(uri)} failed")
    return time.perf_counter() - start, cpu(server_pid) - c0, usage.ru_utime + usage.ru_stime


def stop(p):
    p.terminate()
    _, _, usage = os.wait4(p.pid, 0)
    return usage.ru_maxrss // 1024


def timed(cmd, server_pid):
    """(wall, server CPU) of one run of `cmd`."""
    c0, start = cpu(server_pid), time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start, cpu(server_pid) - c0


def evict_blocks(repo):
    """Drops every stored block file of `repo` from the page cache (POSIX_FADV_DONTNEED on
    those files only), as `put` leaves them: the --cold variant of run.warm_blocks."""
    for f in (repo / "blocks").rglob("*"):
        if f.is_file():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def dd_floor(work, blocks, direct):
    """Seconds for `blocks` new files of 4 MiB written one by one by `dd ... conv=fdatasync`
    (`oflag=direct` when `direct`): the device's cost of that many first-touch copies."""
    src, out = work / "ab-floor-src", work / "ab-floor"
    if not src.exists() or src.stat().st_size != 4 * run.MiB:
        src.write_bytes(os.urandom(4 * run.MiB))
    run.rm(out)
    out.mkdir()
    flags = ["oflag=direct"] if direct else []
    start = time.perf_counter()
    for i in range(blocks):
        subprocess.run(["dd", f"if={src}", f"of={out / str(i)}", "bs=4M", "count=1",
                        "conv=fdatasync", "status=none", *flags], check=True)
    took = time.perf_counter() - start
    run.rm(out)
    return took


def writes(args, work):
    """The --writes A/B (see the module docstring)."""
    repo, gib, sock = work / "repo-ab-serve", work / "serve-1g.raw", work / "ab-qemu-nbd.sock"
    overlay = work / "ab-overlay.qcow2"
    run.make_sparse(gib, run.GiB, 256 * run.MiB)
    run.ARCH = Path(args.binaries[0])
    run.fresh_repo(repo)
    run.run_once(run.arch(repo, "put", str(gib), "i/gib"))
    offsets = [run.random.Random(7 + i).randrange(0, run.GiB // 4096) * 4096 for i in range(1000)]
    cmds = ["-t", args.qemu_io_cache] if args.qemu_io_cache else []
    for o in offsets:
        cmds += ["-c", f"write -P 7 {o} 4k"]
    cmds += ["-c", "flush"]
    # The data blocks the writes touch first (make_sparse: one 4 MiB extent per stride).
    stride = run.GiB // (256 * run.MiB // (4 * run.MiB))
    touched = {o // (4 * run.MiB) for o in offsets}
    copies = sum(1 for i in range(run.GiB // stride) if i * stride // (4 * run.MiB) in touched)
    results = {b: ([], [], [], []) for b in args.binaries}
    peer, floor, n = [], ([], []), 0
    for _ in range(args.reps):
        for b in args.binaries:
            n += 1
            (evict_blocks if args.cold else run.warm_blocks)(repo)
            run.run_once(run.arch(repo, "clone", "i/gib", f"w{n}"))
            p = subprocess.Popen([b, "-R", str(repo), "--json", "serve", f"w{n}"],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            uri = json.loads(p.stdout.readline())["uri"]
            first = timed(["qemu-io", "-f", "raw", *cmds, uri], p.pid)
            again = timed(["qemu-io", "-f", "raw", *cmds, uri], p.pid)
            results[b][0].append(first)
            results[b][1].append(again)
            results[b][2].append(stop(p))
            run.run_once(run.arch(repo, "volume", "rm", f"w{n}"))
        run.rm(overlay, sock)
        run.sh(f"qemu-img create -q -f qcow2 -b {gib} -F raw {overlay}")
        p = subprocess.Popen(["qemu-nbd", "-f", "qcow2", "-t", f"--socket={sock}", str(overlay)])
        while not sock.exists():
            time.sleep(0.01)
        peer.append(timed(["qemu-io", "-f", "raw", *cmds, f"nbd+unix:///?socket={sock}"], p.pid))
        stop(p)
        for direct in (False, True):
            floor[direct].append(dd_floor(work, copies, direct))
        for b in args.binaries:
            results[b][3].append(results[b][0][-1][0] / peer[-1][0])

    def cell(rows, i):
        v = [r[i] for r in rows]
        return f"{min(v):.3f}-{max(v):.3f} s (median {statistics.median(v):.3f})"
    print(f"qemu-nbd (qcow2 overlay): wall {cell(peer, 0)}, server CPU {cell(peer, 1)}")
    for direct in (False, True):
        how = "dd conv=fdatasync" + (" oflag=direct" if direct else "")
        print(f"floor, {copies} x {how} of 4 MiB: {cell([(t,) for t in floor[direct]], 0)}")
    for b in args.binaries:
        first, again, rss, ratios = results[b]
        print(f"{b} first touch: wall {cell(first, 0)}, server CPU {cell(first, 1)}; "
              f"ratio to qemu-nbd per round {min(ratios):.2f}-{max(ratios):.2f} "
              f"(median {statistics.median(ratios):.2f})")
        print(f"{b} again: wall {cell(again, 0)}, server CPU {cell(again, 1)}")
        print(f"{b} server peak RSS: {max(rss)} MiB")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=4)
    ap.add_argument("--dir", type=Path, default=run.ROOT / "target" / "bench")
    ap.add_argument("--client", choices=sorted(CLIENTS), default="nbdcopy")
    ap.add_argument("--writes", action="store_true", help="random 4 KiB writes instead of reads")
    ap.add_argument("--cold", action="store_true",
                    help="--writes: drop the blocks from the page cache before each arch round instead of reading them")
    ap.add_argument("--qemu-io-cache", help="qemu-io -t MODE for --writes (default: qemu-io's, writethrough)")
    ap.add_argument("binaries", nargs="+")
    args = ap.parse_args()
    if args.writes:
        args.dir.mkdir(parents=True, exist_ok=True)
        return writes(args, args.dir)
    global CLIENT
    CLIENT = CLIENTS[args.client]
    work = args.dir
    work.mkdir(parents=True, exist_ok=True)
    run.ARCH = Path(args.binaries[0])
    repo, gib, sock = work / "repo-ab-serve", work / "serve-1g.raw", work / "ab-qemu-nbd.sock"
    run.make_sparse(gib, run.GiB, 256 * run.MiB)
    run.fresh_repo(repo)
    run.run_once(run.arch(repo, "put", str(gib), "i/gib"))
    # put writes blocks around the page cache: read them once, so no binary's first round
    # pays for the disk.
    for f in (repo / "blocks").rglob("*"):
        if f.is_file():
            f.read_bytes()
    results = {b: ([], [], []) for b in args.binaries}
    peer, n = [], 0
    for _ in range(args.reps):
        for b in args.binaries:
            n += 1
            run.run_once(run.arch(repo, "clone", "i/gib", f"ab{n}"))
            p = subprocess.Popen([b, "-R", str(repo), "--json", "serve", f"ab{n}"],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            uri = json.loads(p.stdout.readline())["uri"]
            first, warm = read_pass(uri, p.pid), [read_pass(uri, p.pid) for _ in range(2)]
            results[b][0].append(first)
            results[b][1].extend(warm)
            results[b][2].append(stop(p))
        run.rm(sock)
        p = subprocess.Popen(["qemu-nbd", "-f", "raw", "-r", "-t", f"--socket={sock}", str(gib)])
        while not sock.exists():
            time.sleep(0.01)
        peer.extend(read_pass(f"nbd+unix:///?socket={sock}", p.pid) for _ in range(2))
        stop(p)

    def cell(rows, i):
        v = [r[i] for r in rows]
        return f"{min(v):.3f}-{max(v):.3f} s (median {statistics.median(v):.3f})"
    base = statistics.median(r[0] for r in peer)
    print(f"client {args.client}; load average {os.getloadavg()[0]:.2f}")
    print(f"qemu-nbd: wall {cell(peer, 0)}, server CPU {cell(peer, 1)}, client CPU {cell(peer, 2)}")
    for b in args.binaries:
        first, warm, rss = results[b]
        for label, rows in (("first", first), ("warm", warm)):
            ratio = statistics.median(r[0] for r in rows) / base
            print(f"{b} {label}: wall {cell(rows, 0)} = {ratio:.2f}x qemu-nbd, "
                  f"server CPU {cell(rows, 1)}, client CPU {cell(rows, 2)}")
        print(f"{b} server peak RSS: {max(rss)} MiB")


if __name__ == "__main__":
    main()
