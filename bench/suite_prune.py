"""Garbage scattered over every pack (4 KiB blocks, packs): a 200 MiB file, then an edited
copy of it (one 4 KiB block changed in every MiB), then the first version removed. Each pack
of the first version is then about 0.4% garbage (16 of its 4096 blocks): `gc` either copies the live rest of every pack
(`--max-unused 0`, the default: no unused byte left on disk) or leaves the packs in place
(`--max-unused 5`); restic does the same with its own packs, beside it at the same settings
(its chunks are content-defined, about 1 MiB, so each edit makes one chunk garbage).

Used by bench/run.py (suite "prune"); `h` is that module (its helpers)."""

import os
import subprocess


def edited_copy(src, dst, stride):
    """`dst` = `src` with 16 bytes of the 4 KiB block at every `stride` bytes changed."""
    data = bytearray(src.read_bytes())
    for at in range(0, len(data), stride):
        data[at:at + 16] = os.urandom(16)
    dst.write_bytes(bytes(data))


def suite_prune(work, reps, h):
    t = h.Table("Prune: 200 MiB kept, its previous version removed (1 block in 256 edited)")
    a, b = work / "prune-a.bin", work / "prune-b.bin"
    h.make_random(a, 200 * h.MiB)
    edited_copy(a, b, h.MiB)
    repo = work / "repo-prune"

    def populate():
        h.fresh_repo(repo, "4K", "on")
        h.run_once(h.arch(repo, "put", str(a), "c/f"))
        h.run_once(h.arch(repo, "put", str(b), "c/g"))
        h.run_once(h.arch(repo, "rm", "c/f"))
    gc = {pct: h.measure(h.arch(repo, "gc", "--max-unused", str(pct)), reps, setup=populate)
          for pct in (0, 5)}
    if not h.ensure("restic", "restic"):
        t.row("gc --max-unused 0", gc[0], "gc --max-unused 5", gc[5], "restic not installed")
        return [t]
    rrepo = work / "restic-prune"
    env = {"RESTIC_PASSWORD": "bench", "RESTIC_REPOSITORY": str(rrepo)}
    full_env = {**os.environ, **env}

    def restic(*args):
        subprocess.run(["restic", "-q", *args], check=True, env=full_env, stdout=subprocess.DEVNULL)

    def rpopulate():
        h.rm(rrepo)
        restic("init")
        # The same file name in both snapshots, as the two versions of one object.
        for src, tag in ((a, "f"), (b, "g")):
            subprocess.run(f"restic -q backup --tag {tag} --stdin --stdin-filename data < {src}",
                           shell=True, check=True, env=full_env, stdout=subprocess.DEVNULL)
        restic("forget", "--tag", "f")
    for pct in (0, 5):
        prune = h.measure(["restic", "prune", "-q", "--max-unused", f"{pct}%"], reps,
                          setup=rpopulate, env=env)
        t.row(f"gc --max-unused {pct}", gc[pct], f"restic prune --max-unused {pct}%", prune,
              "default" if pct == 0 else "restic's default")
    return [t]
