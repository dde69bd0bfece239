"""Issue 15: send/receive and copy between two repositories beside the tools that move disk
images today. Full: 1 GiB volume snapshot, arch send | arch receive (durable, verified) and
arch copy vs cp + sync of the raw file and restic copy of a snapshot of it. Incremental: 1%
of the volume rewritten (10 MiB in one range), send --base vs rsync --inplace of the raw file
and qemu-img convert -B (an overlay holding only the changed clusters).

Peers that are missing are installed here with apt-get when possible (never in .ci/run).
Used by bench/run.py (suite "send"); `h` is that module (its helpers)."""

import os
import shutil
import subprocess


def ensure(h, tool, package):
    """True when `tool` is on PATH, installing `package` with apt-get first if needed."""
    if h.have(tool):
        return True
    if os.geteuid() == 0 and h.have("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", package], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    return h.have(tool)


def suite_send(work, reps, h):
    GiB, MiB = h.GiB, h.MiB
    src = work / "random-1g.bin"
    h.make_random(src, GiB)
    a, b = work / "repo-send-a", work / "repo-send-b"
    stream, out = work / "send.stream", work / "send-out.bin"
    h.fresh_repo(a)
    h.run_once(h.arch(a, "volume", "import", str(src), "v"))
    h.run_once(h.arch(a, "snapshot", "v", "snap1"))

    full = h.Table("Send: full 1 GiB snapshot into an empty repository (durable)")
    pipe = (f"{h.ARCH} -R {a} -q send snapshots/snap1 | {h.ARCH} -R {b} -q receive")
    arch_full = h.measure(pipe, reps, setup=lambda: h.fresh_repo(b))
    arch_copy = h.measure(h.arch(a, "copy", "snapshots/snap1", "--to", str(b)), reps,
                          setup=lambda: h.fresh_repo(b))
    cp_sync = h.measure(f"cp {src} {out} && sync", reps, setup=lambda: h.rm(out))
    full.row("send | receive", arch_full, "cp && sync", cp_sync)
    full.row("copy --to", arch_copy, "cp && sync", cp_sync)
    if ensure(h, "restic", "restic"):
        env = {"RESTIC_PASSWORD": "bench"}
        r1, r2 = work / "restic-send-a", work / "restic-send-b"
        renv = {**os.environ, **env}
        h.rm(r1)
        subprocess.run(["restic", "-r", str(r1), "init", "-q"], check=True, env=renv,
                       stdout=subprocess.DEVNULL)
        subprocess.run(["restic", "-r", str(r1), "backup", "-q", str(src)], check=True, env=renv,
                       stdout=subprocess.DEVNULL)

        def restic_dest():
            h.rm(r2)
            subprocess.run(["restic", "-r", str(r2), "init", "-q", "--from-repo", str(r1),
                            "--from-password-file", "/dev/stdin", "--copy-chunker-params"],
                           input=b"bench", check=True, env=renv, stdout=subprocess.DEVNULL)
        restic_copy = (f"echo bench > {work}/restic-pw && restic -r {r2} copy -q "
                       f"--from-repo {r1} --from-password-file {work}/restic-pw")
        full.row("send | receive", arch_full, "restic copy",
                 h.measure(restic_copy, reps, setup=restic_dest, env=env))
        h.rm(r1, r2)

    inc = h.Table("Send: incremental, 1% of a 1 GiB volume rewritten (10 MiB)")
    patch = work / "send-patch.bin"
    h.make_random(patch, 10 * MiB)
    h.run_once(h.arch(a, "volume", "write", "v", "--offset", "300M", str(patch)))
    h.run_once(h.arch(a, "snapshot", "v", "snap2"))
    new = work / "send-new.raw"
    h.run_once(h.arch(a, "get", "snapshots/snap2", "-o", str(new), "--force"))
    h.run_once(h.arch(a, "send", "snapshots/snap1", "-o", str(stream), "--force"))
    full_bytes = stream.stat().st_size

    def with_base():
        h.fresh_repo(b)
        h.run_once(h.arch(b, "receive", str(stream)))
    inc_pipe = (f"{h.ARCH} -R {a} -q send snapshots/snap2 --base snapshots/snap1 | "
                f"{h.ARCH} -R {b} -q receive")
    arch_inc = h.measure(inc_pipe, reps, setup=with_base)
    inc_copy = h.measure(h.arch(a, "copy", "snapshots/snap2", "--to", str(b)), reps,
                         setup=with_base)
    h.run_once(h.arch(a, "send", "snapshots/snap2", "--base", "snapshots/snap1", "-o",
                      str(stream), "--force"))
    inc_bytes = stream.stat().st_size
    note = f"stream {inc_bytes / full_bytes:.4f} of the full one"
    inc.row("send --base | receive", arch_inc, "send | receive (full)", arch_full, note)
    inc.row("copy --to (blocks looked up)", inc_copy, "send | receive (full)", arch_full)
    if ensure(h, "rsync", "rsync"):
        dest = work / "send-rsync.raw"
        inc.row("send --base | receive", arch_inc, "rsync --inplace && sync",
                h.measure(f"rsync --inplace --no-whole-file {new} {dest} && sync", reps,
                          setup=lambda: shutil.copyfile(src, dest)))
        h.rm(dest)
    qcow = work / "send-overlay.qcow2"
    inc.row("send --base | receive", arch_inc, "qemu-img convert -B && sync",
            h.measure(f"qemu-img convert -O qcow2 -B {src} -F raw {new} {qcow} && sync", reps,
                      setup=lambda: h.rm(qcow)))
    h.rm(a, b, stream, out, new, qcow, patch)
    return [full, inc]
