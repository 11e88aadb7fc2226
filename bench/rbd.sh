#!/usr/bin/env bash
# RBD benchmark, library level (no FUSE, no filesystem): one throwaway Ceph cluster
# (scripts/ceph/dev-cluster.sh: 1 monitor + 1 memstore OSD on loopback), one image formatted
# by Strongroom's engine (LUKS2 aes-xts-plain64/512, 4 KiB sectors, data at 16 MiB — the layout
# librbd's own LUKS2 uses), and on it, with the same block size and queue depth:
#   strongroom     our engine over librbd aio (encrypt/decrypt in the client process)
#   librbd_luks2   librbd's own encryption (encryption_load)
#   plain          unencrypted librbd (the payload area of the same image)
# each in its own process (`strongroom volume bench-rbd`), whose CPU time (user + system)
# is the implementation's client CPU. Workloads: seq 1 MiB and random 4 KiB, write and read.
# ROUNDS rounds, the implementations' order rotating per round; reported: medians.
#
#   bench/rbd.sh                                 # builds the release binary first
#   STRONGROOM_BIN=path SECONDS_PER_RUN=8 ROUNDS=3 QD=16 SPAN=512M bench/rbd.sh
#
# Ends with lines:
#   rbd lib_<workload> strongroom_mbps=... librbd_luks2_mbps=... plain_mbps=...
#       ratio_vs_librbd=... strongroom_extra_cpu_s_per_gb=... librbd_extra_cpu_s_per_gb=...
#   (extra = CPU-s per GB encrypted minus the same per GB of the plain run)
#   rbd provision p50_ms=... librbd_format_ms=...  (create + format + open, no mkfs, no KMS)
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${STRONGROOM_BIN:-}
if [ -z "$BIN" ]; then
  cargo build --release -q -p strongroom
  BIN=$PWD/target/release/strongroom
fi
SECS=${SECONDS_PER_RUN:-8}
ROUNDS=${ROUNDS:-3}
QD=${QD:-16}
SPAN=${SPAN:-512M}
case $SPAN in *G) SPAN_B=$(( ${SPAN%G} << 30 ));; *M) SPAN_B=$(( ${SPAN%M} << 20 ));; *) SPAN_B=$SPAN;; esac
PROVISION_COUNT=${PROVISION_COUNT:-20}

W=$(mktemp -d /tmp/strongroom-rbd-bench.XXXXXX)
cleanup() { scripts/ceph/dev-cluster.sh stop "$W/ceph" >/dev/null 2>&1 || true; rm -rf "$W"; }
trap cleanup EXIT

pick_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
CEPH_DEV_V2_PORT=$(pick_port) CEPH_DEV_V1_PORT=$(pick_port) scripts/ceph/dev-cluster.sh start "$W/ceph" >/dev/null
CONF=$W/ceph/ceph.conf
# a benchmark-only passphrase, in a file (never an argument)
(umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$W/key")

b() { "$BIN" volume bench-rbd --ceph-conf "$CONF" --key-file "$W/key" --qd "$QD" --span "$SPAN_B" "$@"; }
b --mode prepare --image bench

for wl in seq-write1m seq-read1m rand-write4k rand-read4k; do
  impls=(strongroom librbd-luks2 plain)
  for ((r = 0; r < ROUNDS; r++)); do
    for ((k = 0; k < 3; k++)); do
      imp=${impls[$(( (r + k) % 3 ))]}
      b --mode run --image bench --imp "$imp" --workload "$wl" --seconds "$SECS" >>"$W/runs"
    done
  done
done

# median of the values of FIELD for imp/workload
median() {
  grep "imp=$1 workload=$2 " "$W/runs" | sed -n "s/.*$3=\([0-9.]*\).*/\1/p" | sort -g |
    awk '{v[NR]=$1} END {if (NR==0) print 0; else if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'
}
# CPU-s per GB of each run, then its median
cpu_per_gb() {
  grep "imp=$1 workload=$2 " "$W/runs" |
    awk '{for(i=1;i<=NF;i++){split($i,kv,"="); f[kv[1]]=kv[2]} print f["cpu_s"]/(f["bytes"]/1e9)}' | sort -g |
    awk '{v[NR]=$1} END {if (NR==0) print 0; else if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'
}

for wl in SeqWrite1m SeqRead1m RandWrite4k RandRead4k; do
  case $wl in SeqWrite1m) name=seq_write_1m;; SeqRead1m) name=seq_read_1m;;
    RandWrite4k) name=rand_write_4k;; RandRead4k) name=rand_read_4k;; esac
  s=$(median Strongroom "$wl" mbps); l=$(median LibrbdLuks2 "$wl" mbps); p=$(median Plain "$wl" mbps)
  sc=$(cpu_per_gb Strongroom "$wl"); lc=$(cpu_per_gb LibrbdLuks2 "$wl"); pc=$(cpu_per_gb Plain "$wl")
  awk -v n="$name" -v s="$s" -v l="$l" -v p="$p" -v sc="$sc" -v lc="$lc" -v pc="$pc" 'BEGIN {
    printf "rbd lib_%s strongroom_mbps=%.1f librbd_luks2_mbps=%.1f plain_mbps=%.1f ratio_vs_librbd=%.2f strongroom_extra_cpu_s_per_gb=%.3f librbd_extra_cpu_s_per_gb=%.3f\n",
      n, s, l, p, (l > 0 ? s / l : 0), sc - pc, lc - pc }'
done
b --mode provision --image prov --count "$PROVISION_COUNT"
