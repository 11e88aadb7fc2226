#!/usr/bin/env bash
# dev-cluster.sh — a throwaway Ceph cluster for tests and the demo: one monitor and one OSD
# (memstore: data in the OSD's memory) on 127.0.0.1, cephx on, an RBD pool, no systemd,
# no manager daemon. Ceph 16.2 from Debian's packages.
#
#   scripts/ceph/dev-cluster.sh start DIR   # create on first use (or restart), wait until IO works
#   scripts/ceph/dev-cluster.sh stop DIR    # stop the daemons (rm -rf DIR to forget the cluster)
#   scripts/ceph/dev-cluster.sh env DIR     # print `export CEPH_CONF=DIR/ceph.conf`
#
# Environment (read when DIR is created): CEPH_DEV_V2_PORT (3300) and CEPH_DEV_V1_PORT (6789),
# the monitor's ports — choose others to run clusters side by side; CEPH_DEV_MSGR2_ONLY=1
# (daemons bind msgr2 only, `ms bind msgr1 = false`: the monitor has no v1 address, as
# clusters set up that way; the v1 port is then unused); CEPH_DEV_POOL (rbd);
# CEPH_DEV_OSD_GB (4, memstore's advertised capacity); CEPH_DEV_TIMEOUT (60 s per wait).
# Install: apt-get install -y --no-install-recommends ceph-mon ceph-osd ceph-common
# Exit status: 0 ok, 1 failure, 2 usage, 3 Ceph packages missing.
set -euo pipefail

say() { printf 'dev-cluster: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
[ $# -eq 2 ] || { say "usage: $0 start|stop|env DIR"; exit 2; }
cmd=$1
mkdir -p "$2"
dir=$(cd "$2" && pwd -P)
conf=$dir/ceph.conf
wait_s=${CEPH_DEV_TIMEOUT:-60}

# The ceph CLI waits forever for an unreachable monitor: always bound it.
ceph_() { timeout "$wait_s" ceph --conf "$conf" --connect-timeout 15 "$@"; }

# poll DESCRIPTION CMD... : retry CMD every 0.2 s until it succeeds or the time is up
poll() {
  local what=$1 end=$((SECONDS + wait_s))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$end" ] || die "gave up after ${wait_s}s waiting for $what (logs: $dir/log)"
    sleep 0.2
  done
}

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# The monitor's address vector: v2 and v1, or v2 alone (CEPH_DEV_MSGR2_ONLY=1).
mon_addrs() {
  if [ "${CEPH_DEV_MSGR2_ONLY:-0}" = 1 ]; then
    echo "[v2:127.0.0.1:$1]"
  else
    echo "[v2:127.0.0.1:$1,v1:127.0.0.1:$2]"
  fi
}

write_conf() {
  local fsid=$1 v2=$2 v1=$3 bytes=$(( ${CEPH_DEV_OSD_GB:-4} << 30 )) msgr1=true
  [ "${CEPH_DEV_MSGR2_ONLY:-0}" = 1 ] && msgr1=false
  cat >"$conf" <<EOF
# throwaway cluster written by scripts/ceph/dev-cluster.sh
[global]
fsid = $fsid
mon initial members = a
mon host = $(mon_addrs "$v2" "$v1")
ms bind msgr1 = $msgr1
public addr = 127.0.0.1
cluster addr = 127.0.0.1
public network = 127.0.0.0/8
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
keyring = $dir/ceph.client.admin.keyring
run dir = $dir/run
pid file = $dir/run/\$name.pid
mon data = $dir/\$name
osd data = $dir/\$name
crash dir = $dir/crash
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 2
mon data avail crit = 1
log to stderr = false
debug ms = 0/0

[client]
# clients (librbd in tests run in parallel) must not share an admin socket or log file
admin socket =
log file =

[mon]
keyring = \$mon_data/keyring
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
# no manager daemon here: do not warn about it
mon mgr mkfs grace = 31536000
# commit map changes at once instead of batching them for a second (start takes 2 s, not 7)
paxos propose interval = 0.05
paxos min wait = 0.01

[osd]
keyring = \$osd_data/keyring
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
osd objectstore = memstore
memstore device bytes = $bytes
osd memory target = 939524096
osd op num shards = 2
osd op num threads per shard = 1
# memstore writes its contents to files only on a clean unmount, which fast shutdown skips
osd fast shutdown = false
EOF
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

create() {
  local v2=${CEPH_DEV_V2_PORT:-3300} v1=${CEPH_DEV_V1_PORT:-6789} pool=${CEPH_DEV_POOL:-rbd}
  local fsid uuid
  port_free "$v2" && port_free "$v1" ||
    die "port $v2 or $v1 on 127.0.0.1 is taken (set CEPH_DEV_V2_PORT / CEPH_DEV_V1_PORT)"
  fsid=$(cat /proc/sys/kernel/random/uuid)
  uuid=$(cat /proc/sys/kernel/random/uuid)
  mkdir -p "$dir"/{run,log,crash,mon.a,osd.0}
  write_conf "$fsid" "$v2" "$v1"
  echo "$pool" >"$dir/pool"
  # Keys: the monitor's, the admin's and the OSD's, all known to the monitor from its mkfs.
  local kr=$dir/mon.a.keyring
  ceph-authtool --create-keyring "$kr" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool --create-keyring "$dir/ceph.client.admin.keyring" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
  ceph-authtool --create-keyring "$dir/osd.0/keyring" --gen-key -n osd.0 \
    --cap mon 'allow profile osd' --cap mgr 'allow profile osd' --cap osd 'allow *' >/dev/null
  ceph-authtool "$kr" --import-keyring "$dir/ceph.client.admin.keyring" >/dev/null
  ceph-authtool "$kr" --import-keyring "$dir/osd.0/keyring" >/dev/null
  monmaptool --create --fsid "$fsid" --addv a "$(mon_addrs "$v2" "$v1")" "$dir/monmap" >/dev/null
  ceph-mon --conf "$conf" --mkfs -i a --monmap "$dir/monmap" --keyring "$kr"
  rm -f "$dir/monmap" "$kr"
  ceph-mon --conf "$conf" -i a
  # The OSD's mkfs needs no monitor: run it while the monitor forms its quorum.
  ceph-osd --conf "$conf" -i 0 --mkfs --osd-uuid "$uuid" >"$dir/log/osd.0.mkfs.log" 2>&1 &
  local mkfs=$!
  poll "the monitor" ceph_ mon stat
  ceph_ osd new "$uuid" 0 >/dev/null
  wait "$mkfs" || die "ceph-osd --mkfs failed: $(tail -3 "$dir/log/osd.0.mkfs.log")"
  start_osd
  ceph_ osd pool create "$pool" 8 8 replicated >/dev/null 2>&1 || die "pool $pool not created"
  timeout "$wait_s" rbd --conf "$conf" pool init "$pool"
}

start_osd() {
  ceph-osd --conf "$conf" -i 0 2>>"$dir/log/osd.0.start.log" ||
    die "ceph-osd failed: $(tail -3 "$dir/log/osd.0.start.log")"
}

# Ready = an object round trip through the OSD.
io_ok() {
  local pool
  pool=$(cat "$dir/pool")
  timeout 10 rados --conf "$conf" -p "$pool" put dev-cluster-probe "$dir/pool" &&
    timeout 10 rados --conf "$conf" -p "$pool" stat dev-cluster-probe
}

start() {
  local bin
  for bin in ceph-mon ceph-osd ceph rbd rados; do
    command -v "$bin" >/dev/null || {
      say "$bin not found; install Ceph: apt-get install -y --no-install-recommends ceph-mon ceph-osd ceph-common"
      exit 3
    }
  done
  if [ -f "$conf" ]; then
    running "$dir/run/mon.a.pid" || ceph-mon --conf "$conf" -i a
    poll "the monitor" ceph_ mon stat
    running "$dir/run/osd.0.pid" || start_osd
  else
    # a failed creation leaves no daemon and no half-made cluster behind
    trap 'if [ $? != 0 ]; then stop; wipe; fi' EXIT
    create
    trap - EXIT
  fi
  poll "object IO" io_ok
  say "ready: export CEPH_CONF=$conf"
}

# stop_daemon PIDFILE: TERM, wait (memstore saves its data on a clean stop), then KILL
stop_daemon() {
  local pf=$1 pid i
  running "$pf" || { rm -f "$pf"; return 0; }
  pid=$(cat "$pf")
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < wait_s * 5; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  kill -0 "$pid" 2>/dev/null && { say "pid $pid did not stop, killing it"; kill -KILL "$pid" || true; }
  rm -f "$pf"
}

wipe() {
  rm -rf "$conf" "$dir"/{run,log,crash,mon.a,osd.0,pool,ceph.client.admin.keyring,mon.a.keyring,monmap}
}

stop() {
  stop_daemon "$dir/run/osd.0.pid"
  stop_daemon "$dir/run/mon.a.pid"
}

case $cmd in
  start) start ;;
  stop) stop; say "stopped" ;;
  env) echo "export CEPH_CONF=$conf" ;;
  *) say "usage: $0 start|stop|env DIR"; exit 2 ;;
esac
