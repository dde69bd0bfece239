#!/usr/bin/env python3
"""Interleaved A/B of issue 16's gc and verified get rows: two (or more) arch binaries and the
peers take turns in every round, on the data of `bench/run --suite integrity` (gc) and
`--suite objects` (get), so that a shared machine's drift hits every side alike.

gc, per round and side (the order rotates between rounds): a fresh repository with 4 KiB
blocks gets two 200 MiB random objects (100k blocks), one is removed, then the timed command:
  - `arch gc` of each binary;
  - the floor: the same 50k block files (those the second put added) removed by one
    `xargs rm -f` (and by two in parallel), then `sync -f` of the filesystem (syncfs);
  - `restic prune` after `restic backup` of both files and `restic forget` of the second.
get, per round: `arch get -o FILE` (verified, then `--no-verify`) of a 1 GiB random object
(4 MiB blocks, page cache warm) by each binary; `cat > FILE && sync` and
`cat > FILE && sync FILE` (the file's fsync alone: on a shared machine a global sync also
writes the other users' data).

Prints each cell as the range over the rounds (and the median), with user+sys CPU from
wait4. On a loaded machine run it under `chrt -f 10`, as bench/ab_serve.py.

Usage: bench/ab_gcget.py [--reps N] [--dir DIR] [--only gc|get] ARCH_BINARY...
"""

import argparse
import os
import statistics
import subprocess
import time
from pathlib import Path

import run  # bench/run.py: the fixture helpers


def timed(cmd, env=None):
    """(wall seconds, user+sys CPU seconds, peak RSS MiB) of one command (list or shell)."""
    shell = isinstance(cmd, str)
    start = time.perf_counter()
    p = subprocess.Popen(cmd, shell=shell, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         env={**os.environ, **(env or {})})
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - start
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    if status != 0:
        raise SystemExit(f"failed: {cmd}\n{err}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def tag(i):
    """The name of the i-th binary in the tables (A, B, ...)."""
    return chr(ord("A") + i)


def block_files(repo):
    out = set()
    top = repo / "blocks"
    for shard in top.iterdir():
        for f in shard.iterdir():
            out.add(str(f))
    return out


def gc_rounds(work, bins, reps, results):
    a, b = work / "int-a.bin", work / "int-b.bin"
    run.make_random(a, 200 * run.MiB)
    run.make_random(b, 200 * run.MiB)
    repo = work / "repo-ab-gc"
    garbage_list = work / "ab-gc-garbage.lst"
    arch0 = bins[0]

    def populate():
        run.rm(repo)
        subprocess.run([arch0, "init", "-q", "--block-size", "4K", str(repo)], check=True)
        subprocess.run([arch0, "-R", str(repo), "-q", "put", str(a), "c/a"], check=True)
        before = block_files(repo)
        subprocess.run([arch0, "-R", str(repo), "-q", "put", str(b), "c/b"], check=True)
        garbage = sorted(block_files(repo) - before)
        garbage_list.write_text("\0".join(garbage) + "\0")
        subprocess.run([arch0, "-R", str(repo), "-q", "rm", "c/b"], check=True)
        return len(garbage)

    rrepo = work / "restic-ab-gc"
    renv = {"RESTIC_PASSWORD": "bench", "RESTIC_REPOSITORY": str(rrepo)}

    def rpopulate():
        run.rm(rrepo)
        env = {**os.environ, **renv}
        for args in (["init"], ["backup", "--tag", "a", str(a)], ["backup", "--tag", "b", str(b)],
                     ["forget", "--tag", "b"]):
            subprocess.run(["restic", "-q", *args], check=True, env=env, stdout=subprocess.DEVNULL)

    sides = [(f"gc {tag(i)}", (lambda x=x: [x, "-R", str(repo), "-q", "gc"]), populate)
             for i, x in enumerate(bins)]
    sides.append(("floor: xargs rm + syncfs",
                  lambda: f"xargs -0 rm -f < {garbage_list} && sync -f {repo}/blocks", populate))
    sides.append(("floor: 2 x xargs rm + syncfs",
                  lambda: f"xargs -0 -P 2 -n 2000 rm -f < {garbage_list} && sync -f {repo}/blocks",
                  populate))
    if run.have("restic"):
        sides.append(("restic prune", lambda: ["restic", "-q", "prune"], rpopulate))
    for r in range(reps):
        order = sides[r % len(sides):] + sides[:r % len(sides)]
        for name, cmd, setup in order:
            setup()
            subprocess.run(["sync"], check=True)
            results.setdefault(name, []).append(timed(cmd(), env=renv if "restic" in name else None))
            print(f"round {r}: {name}: {results[name][-1][0]:.3f} s", flush=True)


def get_rounds(work, bins, reps, results):
    src, out = work / "random-1g.bin", work / "ab-get-out.bin"
    run.make_random(src, run.GiB)
    repo = work / "repo-ab-get"
    run.rm(repo)
    subprocess.run([bins[0], "init", "-q", "--block-size", "4M", str(repo)], check=True)
    subprocess.run([bins[0], "-R", str(repo), "-q", "put", str(src), "bench/x"], check=True)
    # Warm the block files and the source, as the median rows of bench/run see them.
    subprocess.run(f"{bins[0]} -R {repo} get bench/x > /dev/null && cat {src} > /dev/null",
                   shell=True, check=True)
    sides = []
    for i, x in enumerate(bins):
        sides.append((f"get -o FILE {tag(i)}", [x, "-R", str(repo), "-q", "get", "bench/x", "-o", str(out), "--force"]))
        sides.append((f"get -o FILE --no-verify {tag(i)}",
                      [x, "-R", str(repo), "-q", "get", "--no-verify", "bench/x", "-o", str(out), "--force"]))
    sides.append(("cat > FILE && sync", f"cat {src} > {out} && sync"))
    sides.append(("cat > FILE && sync FILE", f"cat {src} > {out} && sync {out}"))
    for r in range(reps):
        order = sides[r % len(sides):] + sides[:r % len(sides)]
        for name, cmd in order:
            run.rm(out)
            subprocess.run(["sync"], check=True)
            results.setdefault(name, []).append(timed(cmd))
            print(f"round {r}: {name}: {results[name][-1][0]:.3f} s", flush=True)


def report(results):
    print("\n| command | wall (range, median) | CPU user+sys (range) | peak RSS |")
    print("|---|---:|---:|---:|")
    for name, rows in results.items():
        w = [x[0] for x in rows]
        c = [x[1] for x in rows]
        m = max(x[2] for x in rows)
        print(f"| {name} | {min(w):.2f}-{max(w):.2f} s ({statistics.median(w):.2f}) | "
              f"{min(c):.2f}-{max(c):.2f} s | {m:.0f} MiB |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=run.ROOT / "target" / "bench")
    ap.add_argument("--only", choices=["gc", "get"])
    ap.add_argument("binaries", nargs="+")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    bins = [str(Path(b).resolve()) for b in args.binaries]
    for i, b in enumerate(bins):
        print(f"{tag(i)} = {b}")
    results = {}
    if args.only in (None, "gc"):
        gc_rounds(args.dir, bins, args.reps, results)
    if args.only in (None, "get"):
        get_rounds(args.dir, bins, args.reps, results)
    report(results)


if __name__ == "__main__":
    main()
