"""Issue 17: blocks on S3. put and get of 1 GiB through Ceph RGW beside boto3's
upload_file/download_file with the same part size (4 MiB, arch's block size) and the same
concurrency (16 requests in flight, arch's batch), and a put, from a second directory joined
to the same store, of an image the store already holds: its PUT requests and bytes are
counted by arch itself (ARCH_STORE_STATS=1) and must be zero.

Needs ARCH_BENCH_STORE=s3://BUCKET (an existing bucket) and the AWS_* variables of the
store (ceph-s3.sh's DIR/env); skipped with a message otherwise. Each run uses its own prefix.
Used by bench/run.py (suite "remote"); `h` is that module (its helpers)."""

import json
import os
import subprocess
import sys
import uuid

PART = 4 << 20
CONCURRENCY = 16

BOTO = r"""
import sys, boto3
from boto3.s3.transfer import TransferConfig
op, path, bucket, key = sys.argv[1:5]
cfg = TransferConfig(multipart_threshold=%(part)d, multipart_chunksize=%(part)d,
                     max_concurrency=%(conc)d, use_threads=True)
s3 = boto3.client("s3")
if op == "put":
    s3.upload_file(path, bucket, key, Config=cfg)
else:
    s3.download_file(bucket, key, path, Config=cfg)
""" % {"part": PART, "conc": CONCURRENCY}


def init(h, repo, url):
    h.rm(repo)
    subprocess.run([str(h.ARCH), "init", "-q", "--block-size", "4M", "--store", url, str(repo)],
                   check=True)


def suite_remote(work, reps, h):
    base = os.environ.get("ARCH_BENCH_STORE", "")
    if not base.startswith("s3://"):
        print("remote suite skipped: set ARCH_BENCH_STORE=s3://BUCKET and the AWS_* variables "
              "(S3_PORT=7481 bash ../shared/services/ceph-s3.sh start DIR; set -a; . DIR/env)",
              file=sys.stderr)
        return []
    bucket = base[len("s3://"):].split("/", 1)[0]
    src = work / "random-1g.bin"
    h.make_random(src, h.GiB)
    out = work / "remote-out.bin"
    script = work / "boto_transfer.py"
    script.write_text(BOTO)
    a, b = work / "repo-remote-a", work / "repo-remote-b"
    url = f"{base.rstrip('/')}/bench-{uuid.uuid4().hex[:12]}"

    def fresh():
        # A new prefix per run: every put sends all its blocks.
        nonlocal url
        url = f"{base.rstrip('/')}/bench-{uuid.uuid4().hex[:12]}"
        init(h, a, url)

    t = h.Table("Remote store: 1 GiB through Ceph RGW (4 MiB parts, 16 in flight)")
    arch_put = h.measure(h.arch(a, "put", str(src), "images/one.raw"), reps, setup=fresh)
    boto_key = f"bench-boto-{uuid.uuid4().hex[:12]}/one.raw"
    boto_put = h.measure([sys.executable, str(script), "put", str(src), bucket, boto_key], reps)
    t.row("put (durable in the store)", arch_put, "boto3 upload_file", boto_put)
    arch_get = h.measure(h.arch(a, "get", "images/one.raw", "-o", str(out), "--force"), reps,
                         setup=lambda: h.rm(out))
    boto_get = h.measure([sys.executable, str(script), "get", str(out), bucket, boto_key], reps,
                         setup=lambda: h.rm(out))
    t.row("get (verified)", arch_get, "boto3 download_file", boto_get)

    # A second host joins the store and puts the same image: HEADs only, no block data.
    init(h, b, url)
    env = {**os.environ, "ARCH_STORE_STATS": "1"}
    r = subprocess.run(h.arch(b, "put", str(src), "images/same.raw"), env=env,
                       capture_output=True, text=True, check=True)
    line = next(l for l in r.stderr.splitlines() if l.startswith("arch-store-stats "))
    stats = json.loads(line.split(" ", 1)[1])
    if stats["puts"] != 0 or stats["put_bytes"] != 0:
        raise SystemExit(f"a put of data the store holds sent data: {stats}")
    dedup = h.measure(h.arch(b, "put", str(src), "images/again.raw"), reps)
    d = h.Table("Remote store: put of a 1 GiB image the store already holds (from another DIR)")
    d.row("put, data already stored", dedup, "put into an empty prefix", arch_put,
          f"{stats['puts']} PUT requests, {stats['put_bytes']} bytes sent, "
          f"{stats['heads']} HEADs")
    h.rm(a, b, out)
    return [t, d]
