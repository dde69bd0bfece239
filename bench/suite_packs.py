"""Packs at scale (4 KiB blocks, `--packs on`): a repository of 2048 small packs (64 MiB of
blocks, 8 to a pack, made by splitting the packs of one put into valid smaller ones), where
every command's first lookup loads every pack's index: `gc` with nothing to collect and `get`
of a 10 KB object, with the packs' pages in the cache (warm) and evicted from it (cold:
posix_fadvise DONTNEED on each pack, the rest of the machine's cache left alone); and `put`
of 200 MiB of new 4 KiB blocks into an empty packed repository.

Used by bench/run.py (suite "packs"); `h` is that module (its helpers)."""

import hashlib
import os
import struct


def split_packs(repo, per_pack):
    """Rewrites every pack of `repo` holding more than `per_pack` entries as packs of
    `per_pack` entries (docs/FORMAT.md "Packs": data, index, footer; named by the sha256 of
    index + footer), then removes it."""
    d = repo / "packs"
    for name in sorted(os.listdir(d)):
        p = d / name
        b = p.read_bytes()
        count, data_len = struct.unpack("<QQ", b[-16:])
        assert b[-24:-16] == b"ARCHPAK1"
        if count <= per_pack:
            continue
        entries, off = [], 0
        for i in range(count):
            e = b[data_len + 36 * i:data_len + 36 * i + 36]
            n = struct.unpack("<I", e[32:])[0]
            entries.append((e, off, n))
            off += n
        for s in range(0, count, per_pack):
            chunk = entries[s:s + per_pack]
            data = b"".join(b[o:o + n] for _, o, n in chunk)
            tail = (b"".join(e for e, _, _ in chunk) + b"ARCHPAK1"
                    + struct.pack("<QQ", len(chunk), len(data)))
            out = d / hashlib.sha256(tail).hexdigest()
            out.write_bytes(data + tail)
            out.chmod(0o400)
        p.unlink()


def evict(directory):
    """Drops the page cache of the files in `directory` (only theirs)."""
    for name in os.listdir(directory):
        fd = os.open(directory / name, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)


def suite_packs(work, reps, h):
    MiB = h.MiB
    t = h.CostTable("Packs: 2048 packs of 8 blocks (every command loads every pack's index)")
    repo = work / "repo-many-packs"
    big, one = work / "packs-64m.bin", work / "packs-10k.bin"
    h.make_random(big, 64 * MiB)
    h.make_random(one, 10000)
    h.fresh_repo(repo, "4K", "on")
    h.run_once(h.arch(repo, "put", str(big), "c/big"))
    h.run_once(h.arch(repo, "put", str(one), "c/one"))
    split_packs(repo, 8)
    packs = len(os.listdir(repo / "packs"))
    h.run_once(h.arch(repo, "fsck", "--read-data"))

    def cold():
        evict(repo / "packs")
    for op, args in (("gc (nothing to collect)", ("gc",)), ("get of a 10 KB object", ("get", "c/one"))):
        t.row(f"{op}, warm", h.measure(h.arch(repo, *args), reps), f"{packs} packs")
        t.row(f"{op}, cold", h.measure(h.arch(repo, *args), reps, setup=cold),
              f"{packs} packs, their pages evicted first")
    src = work / "packs-200m.bin"
    h.make_random(src, 200 * MiB)
    fresh = work / "repo-packs-put"
    t.row("put 200 MiB of new 4 KiB blocks", h.measure(h.arch(fresh, "put", str(src), "c/x"), reps,
                                                       setup=lambda: h.fresh_repo(fresh, "4K", "on")),
          "empty packed repository")
    return [t]
