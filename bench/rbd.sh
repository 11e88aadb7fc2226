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
#   LIB_WORKLOADS="rand-write4k" WORKLOADS="seq_write_1m" bench/rbd.sh   # subsets ("" = none)
#
# Ends with lines:
#   rbd lib_<workload> strongroom_mbps=... librbd_luks2_mbps=... plain_mbps=...
#       ratio_vs_librbd=... strongroom_extra_cpu_s_per_gb=... librbd_extra_cpu_s_per_gb=...
#   (extra = CPU-s per GB encrypted minus the same per GB of the plain run of the same round;
#   the median over rounds)
#   rbd lib_<workload>_attributed strongroom_cipher_cpu_s_per_gb=... librbd_libcrypto_cpu_s_per_gb=...
#       ours_vs_librbd=...   (CPU in each implementation's cipher code, from perf samples of one
#       more run each: robust where the subtraction drowns in run-to-run noise, at 4 KiB)
#   rbd mounted_<workload> encrypted_mbps=... unencrypted_same_stack_mbps=... ratio=...
#       cost_at_mbps=... encrypted_cpu_s_per_gb=... unencrypted_cpu_s_per_gb=...
#       extra_cpu_s_per_gb=... extra_cpu_stderr=... cipher_cpu_s_per_gb=... extra_vs_cipher=...
#       goal_extra_vs_cipher=1.3 meets_goal=yes|no client_extra_cpu_s_per_gb=... client_extra_cpu_stderr=...
#   (MB/s at full speed; the CPU fields with both stacks held to cost_at_mbps, 80 % of the
#   slower's, see bench/lib/stack.sh cost_rounds; client_extra: without the Ceph daemons)
#   (the mounted stack, as a pod gets it: `strongroom volume create --backend rbd` + `mount`,
#   FUSE over librbd -> loop -> ext4, against the same stack serving a plain image through the
#   same FUSE layer (`volume passthrough --rbd-image`); fio at queue depth 16, O_DIRECT;
#   CPU-s/GB of the whole machine, OSD included (the same bytes reach it either way); cipher =
#   the engine's own XTS cost from `strongroom luks benchmark` in the same run. Goal: extra
#   <= 1.3 x cipher. Needs root, FUSE and fio; SKIP_MOUNTED=1 leaves it out.)
#   rbd provision p50_ms=... librbd_format_ms=...  (create + format + open, no mkfs, no KMS)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib/stack.sh

BIN=${STRONGROOM_BIN:-}
if [ -z "$BIN" ]; then
  # --features bench: the mounted stack's unencrypted twin (`volume passthrough`).
  cargo build --release -q -p strongroom --features bench
  BIN=$PWD/target/release/strongroom
fi
SECS=${SECONDS_PER_RUN:-8}
ROUNDS=${ROUNDS:-3}
QD=${QD:-16}
SPAN=${SPAN:-512M}
case $SPAN in *G) SPAN_B=$(( ${SPAN%G} << 30 ));; *M) SPAN_B=$(( ${SPAN%M} << 20 ));; *) SPAN_B=$SPAN;; esac
PROVISION_COUNT=${PROVISION_COUNT:-20}

W=$(mktemp -d /tmp/strongroom-rbd-bench.XXXXXX)
SERVER_PID=""; PT_PID=""; PLAIN_LO=""
cleanup() {
  set +e
  mountpoint -q "$W/mnt-plain" && umount "$W/mnt-plain"
  [ -n "$PLAIN_LO" ] && losetup -d "$PLAIN_LO"
  mountpoint -q "$W/pfuse" && fusermount3 -u "$W/pfuse"
  [ -n "$PT_PID" ] && wait "$PT_PID"
  [ -f "$W/tenant.token" ] && "${V[@]}" unmount rbd-enc >/dev/null 2>&1
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" && wait "$SERVER_PID"
  scripts/ceph/dev-cluster.sh stop "$W/ceph" >/dev/null 2>&1
  rm -rf "$W"
}
trap cleanup EXIT

pick_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
CEPH_DEV_V2_PORT=$(pick_port) CEPH_DEV_V1_PORT=$(pick_port) scripts/ceph/dev-cluster.sh start "$W/ceph" >/dev/null
CONF=$W/ceph/ceph.conf
# a benchmark-only passphrase, in a file (never an argument)
(umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$W/key")

BENCH_RBD=("$BIN" volume bench-rbd --ceph-conf "$CONF" --key-file "$W/key" --qd "$QD" --span "$SPAN_B")
b() { "${BENCH_RBD[@]}" "$@"; }
b --mode prepare --image bench

# LIB_WORKLOADS: a subset of the library-level workloads (default all; "" for none)
LIB_WORKLOADS=${LIB_WORKLOADS-seq-write1m seq-read1m rand-write4k rand-read4k}
for wl in $LIB_WORKLOADS; do
  impls=(strongroom librbd-luks2 plain)
  for ((r = 0; r < ROUNDS; r++)); do
    for ((k = 0; k < 3; k++)); do
      imp=${impls[$(( (r + k) % 3 ))]}
      echo "round=$r $(b --mode run --image bench --imp "$imp" --workload "$wl" --seconds "$SECS")" >>"$W/runs"
    done
  done
done

# median_of IMP WORKLOAD FIELD: the median of the values of FIELD for imp/workload
median_of() {
  grep "imp=$1 workload=$2 " "$W/runs" | sed -n "s/.*$3=\([0-9.]*\).*/\1/p" | sort -g |
    awk '{v[NR]=$1} END {if (NR==0) print 0; else if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'
}
# extra_cpu IMP WORKLOAD: the median over rounds of (CPU-s per GB of IMP's run minus that of the
# plain run of the same round). Runs of one round are back to back, so their difference cancels
# most of the machine's drift (neighbours come and go; at 4 KiB a run's CPU-s/GB moves by tens
# of percent with them, more than encryption adds); the median ignores an outlier round.
extra_cpu() {
  grep "workload=$2 " "$W/runs" |
    awk -v imp="$1" '{for(i=1;i<=NF;i++){split($i,kv,"="); f[kv[1]]=kv[2]}
      c=f["cpu_s"]/(f["bytes"]/1e9); if (f["imp"]==imp) e[f["round"]]=c; if (f["imp"]=="Plain") p[f["round"]]=c}
      END {for (r in e) if (r in p) print e[r]-p[r]}' | sort -g |
    awk '{v[NR]=$1} END {if (NR==0) print 0; else if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'
}

for wl in SeqWrite1m SeqRead1m RandWrite4k RandRead4k; do
  grep -q "workload=$wl " "$W/runs" 2>/dev/null || continue
  case $wl in SeqWrite1m) name=seq_write_1m;; SeqRead1m) name=seq_read_1m;;
    RandWrite4k) name=rand_write_4k;; RandRead4k) name=rand_read_4k;; esac
  s=$(median_of Strongroom "$wl" mbps); l=$(median_of LibrbdLuks2 "$wl" mbps); p=$(median_of Plain "$wl" mbps)
  sx=$(extra_cpu Strongroom "$wl"); lx=$(extra_cpu LibrbdLuks2 "$wl")
  awk -v n="$name" -v s="$s" -v l="$l" -v p="$p" -v sx="$sx" -v lx="$lx" 'BEGIN {
    printf "rbd lib_%s strongroom_mbps=%.1f librbd_luks2_mbps=%.1f plain_mbps=%.1f ratio_vs_librbd=%.2f strongroom_extra_cpu_s_per_gb=%.3f librbd_extra_cpu_s_per_gb=%.3f\n",
      n, s, l, p, (l > 0 ? s / l : 0), sx, lx }'
done

# Encryption's CPU attributed within each client process (ATTRIBUTE=0 leaves it out; needs
# perf). At 4 KiB a run's client CPU-s/GB (~15) moves by ±10-25 % between runs with the OSD's
# batching, 10-50 times what encryption adds, so the subtraction above cannot resolve it. Here
# one more run of each encrypted implementation is sampled (perf record) and the share of its
# samples inside its cipher code is turned into CPU-s/GB: ours = the luks crate's symbols
# (`strongroom_luks::`: XTS and the sector loop around it), librbd's = libcrypto's, a lower
# bound for librbd (its own crypto layer, and the allocations it makes for it, are in librbd
# and libc, whose symbols Debian strips). A share of one process's own samples does not move
# with the machine's load as a difference of two runs does.
#   rbd lib_<workload>_attributed strongroom_cipher_cpu_s_per_gb=... librbd_libcrypto_cpu_s_per_gb=...
attributed() { # IMP WORKLOAD SYMBOL_PATTERN
  local data=$W/perf-$1-$2.data out share
  out=$(perf record -q -F 1999 -o "$data" -- "${BENCH_RBD[@]}" --mode run --image bench \
    --imp "$1" --workload "$2" --seconds "$SECS" 2>/dev/null)
  share=$(perf report -i "$data" --stdio --sort dso,sym 2>/dev/null |
    awk -v pat="$3" '$0 !~ /^#/ && $0 ~ pat {s += $1} END {print s + 0}')
  echo "$out" | awk -v share="$share" '{for(i=1;i<=NF;i++){split($i,kv,"="); f[kv[1]]=kv[2]}}
    END {printf "%.3f", share / 100 * f["cpu_s"] / (f["bytes"] / 1e9)}'
}
if [ "${ATTRIBUTE:-1}" != 0 ] && command -v perf >/dev/null; then
  for wl in $LIB_WORKLOADS; do
    case $wl in seq-write1m) name=seq_write_1m;; seq-read1m) name=seq_read_1m;;
      rand-write4k) name=rand_write_4k;; rand-read4k) name=rand_read_4k;; esac
    s=$(attributed strongroom "$wl" 'strongroom_luks::')
    l=$(attributed librbd-luks2 "$wl" 'libcrypto')
    awk -v n="$name" -v s="$s" -v l="$l" 'BEGIN {
      printf "rbd lib_%s_attributed strongroom_cipher_cpu_s_per_gb=%.3f librbd_libcrypto_cpu_s_per_gb=%.3f ours_vs_librbd=%.2f\n",
        n, s, l, (l > 0 ? s / l : 0) }'
  done
elif [ "${ATTRIBUTE:-1}" != 0 ]; then
  echo "(no perf: the attributed lines are left out; apt-get install linux-perf)" >&2
fi

# The mounted stack: an encrypted RBD volume through the volume manager (a dev key manager on
# loopback), against a plain image through the same FUSE layer.
mounted_stack() {
  local port addr
  port=$(pick_port); addr="http://127.0.0.1:$port"
  (umask 077; printf 'bench-root-%s' "$$" >"$W/root.token")
  "$BIN" server -dev -dev-root-token-id="$(cat "$W/root.token")" -dev-listen-address="127.0.0.1:$port" >"$W/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 100); do curl -fs "$addr/v1/sys/health" >/dev/null 2>&1 && break; sleep 0.1; done
  V=("$BIN" volume --root "$W/volumes" --address "$addr" --cluster-id bench)
  "${V[@]}" setup-tenant bench --token-out "$W/tenant.token" --token-file "$W/root.token" >/dev/null
  "${V[@]}" create rbd-enc --tenant bench --size "$MOUNT_SIZE" --backend rbd --pool rbd \
      --ceph-conf "$CONF" --token-file "$W/tenant.token" >/dev/null
  "${V[@]}" mount rbd-enc "$W/mnt-enc" --token-file "$W/tenant.token" >/dev/null

  # The plain image holds its data at the same 16 MiB offset as the encrypted one's.
  # and the features the volume manager gives its images (no object map to keep up).
  rbd --conf "$CONF" create --image-feature layering,exclusive-lock,deep-flatten \
      --size "$(( $(numfmt --from=iec "$MOUNT_SIZE") / 1048576 + 16 ))M" rbd/bench-plain
  "$BIN" volume passthrough --rbd-image bench-plain --pool rbd --ceph-conf "$CONF" --dir "$W/pfuse" >"$W/pt.log" 2>&1 &
  PT_PID=$!
  for _ in $(seq 200); do [ -e "$W/pfuse/volume" ] && break; sleep 0.05; done
  [ -e "$W/pfuse/volume" ] || { echo "volume passthrough did not start: $(cat "$W/pt.log")" >&2; exit 1; }
  PLAIN_LO=$(losetup --find --show --direct-io=on --sector-size 4096 "$W/pfuse/volume")
  mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1 "$PLAIN_LO"
  mkdir -p "$W/mnt-plain" && mount -o noatime "$PLAIN_LO" "$W/mnt-plain"

  cipher_init "$BIN"
  layout "$W/mnt-enc" "$W/mnt-plain"
  compare_stacks "$W/mnt-enc" "$W/mnt-plain" "rbd mounted_"
}

RESULTS=()
if [ -z "${SKIP_MOUNTED:-}" ]; then
  [ "$(id -u)" -eq 0 ] && command -v fio >/dev/null ||
    { echo "the mounted stack needs root and fio (SKIP_MOUNTED=1 to leave it out)" >&2; exit 1; }
  RUNTIME=${RUNTIME:-$SECS}; FIO_SIZE=${FIO_SIZE:-256M}; MOUNT_SIZE=${MOUNT_SIZE:-1G}
  WORKLOADS=${WORKLOADS:-seq_read_1m seq_write_1m rand_read_4k rand_write_4k}
  mounted_stack
  for r in "${RESULTS[@]}"; do echo "$r"; done
fi
b --mode provision --image prov --count "$PROVISION_COUNT"
