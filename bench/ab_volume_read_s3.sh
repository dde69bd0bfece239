#!/usr/bin/env bash
# A/B of two arch binaries on a volume whose private blocks are in a bucket: `volume read` of
# 64 MiB written into a clone (1024 private 64 KiB blocks, one GET each) and `volume export` of
# the whole 128 MiB volume, interleaved, REPS reps. Starts its own single-node Ceph RGW (port
# 7495, tcp_nodelay as .ci/remote sets it) and stops it on exit.
#
#   bash bench/ab_volume_read_s3.sh OLD_ARCH NEW_ARCH [REPS]
set -euo pipefail
OLD=$1 NEW=$2 REPS=${3:-3}
state=$(mktemp -d /tmp/bench-s3.XXXXXX); chmod 755 "$state"
export S3_PORT=7495 CEPH_STORE_GB=4
svc=${ARCH_SERVICES:-$(cd "$(dirname "$0")/../.." && pwd)/shared/services}
trap 'bash $svc/ceph-s3.sh stop $state/s3 >/dev/null 2>&1 || true' EXIT
bash $svc/ceph-s3.sh start "$state/s3" >/dev/null
set -a; . "$state/s3/env"; set +a
pid=$(cat "$state/s3/run/client.rgw.0.pid"); kill "$pid"
for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
sed -i 's/^\(rgw_frontends = beast .*\)$/\1 tcp_nodelay=1/' "$state/s3/ceph.conf"
radosgw -n client.rgw.0 -c "$state/s3/ceph.conf"
for _ in $(seq 300); do curl -s -o /dev/null --max-time 2 "$AWS_ENDPOINT_URL" && break; sleep 0.2; done
curl -sS -o /dev/null --aws-sigv4 "aws:amz:$AWS_REGION:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
    -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -X PUT "$AWS_ENDPOINT_URL/bench"
cd "$state"
$NEW init r --store s3://bench/r --block-size 64K >/dev/null
head -c 128M /dev/urandom > img
$NEW --repo r put img c/img >/dev/null
$NEW --repo r clone c/img vm >/dev/null
head -c 64M /dev/urandom > w
$NEW --repo r volume write vm --offset 32M w >/dev/null
$NEW --repo r volume ls
t() { local s=$(date +%s.%N); "$@" >/dev/null; echo "$(date +%s.%N) - $s" | bc; }
printf "%-5s %-28s %s\n" bin op seconds
for rep in $(seq $REPS); do
  for which in OLD NEW; do
    bin=${!which}
    printf "%-5s %-28s %s\n" $which "volume read 64M private" $(t sh -c "$bin --repo r volume read vm --offset 32M --length 64M > /dev/null")
    rm -f out.raw
    printf "%-5s %-28s %s\n" $which "volume export (128M)" $(t $bin --repo r volume export vm -o out.raw)
  done
done
cmp <($NEW --repo r volume read vm --offset 0) out.raw && echo "export == read"
