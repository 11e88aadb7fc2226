#!/usr/bin/env bash
# csi-sanity.sh — run the real csi-sanity (kubernetes-csi/csi-test) against `strongroom csi`.
#
#   scripts/csi-sanity.sh [--rbd [--split]] [--holder-host] CSI_SANITY_BIN [csi-sanity args...]
#
# Starts a dev key manager (`strongroom server -dev`) with one tenant and the driver's admin
# token, then the driver (`--mode all`: a file-backed volume lives on the node that made it),
# writes csi-sanity's secrets and parameters files, runs the binary
# and prints the counts: `csi-sanity backend=file passed=N failed=N skipped=N pending=N`.
# Exit status: csi-sanity's (non-zero on any failure); 2 usage; 3 missing prerequisites.
#
# --rbd: the volumes are RBD images on a throwaway Ceph (scripts/ceph/dev-cluster.sh, started
# and stopped here), Ceph credentials in every secret, monitors from a ceph-csi cluster map.
# --split (with --rbd): a controller process (`--mode controller`, csi-sanity's
# --csi.controllerendpoint) and a node plugin (`--mode node`) with separate roots, as deployed.
# --holder-host: the node plugin's volume holders are started by a holder host
# (`strongroom volume holder-host`, as the chart's node DaemonSet runs it).
#
# This script builds and downloads nothing of csi-sanity: bring a binary (see the README's
# testing section). The strongroom binary: $STRONGROOM_BIN, else target/debug/strongroom
# (built with `cargo build -p strongroom --bin strongroom` when missing).
# Environment: SANITY_VOLUME_SIZE (bytes, default 64 MiB: sparse files / thin images);
# SANITY_PARAMS, more StorageClass parameters as YAML lines (e.g. 'protection: kv' or
# 'fsType: xfs'); SANITY_KEEP=1 keeps the work directory (logs) after the run.
#
# After csi-sanity, the run also fails when anything is left behind: a mount under the work
# directory, a volume in the driver's root, an image or trash entry in the pool (--rbd), a KV
# entry under the tenant's path. (csi-sanity deletes what it creates; a driver whose deletes
# only pretend would pass it.)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'csi-sanity.sh: %s\n' "$*" >&2; }
backend=file split=0 hosted=0
while [ $# -gt 0 ]; do
  case $1 in
    --rbd) backend=rbd ;;
    --split) split=1 ;;
    --holder-host) hosted=1 ;;
    *) break ;;
  esac
  shift
done
usage="usage: $0 [--rbd [--split]] [--holder-host] CSI_SANITY_BIN [csi-sanity args...]"
[ $# -ge 1 ] || { say "$usage"; exit 2; }
[ "$split" = 0 ] || [ "$backend" = rbd ] || { say "--split needs --rbd"; say "$usage"; exit 2; }
sanity=$(realpath "$1")
shift
[ -x "$sanity" ] || { say "$sanity is not an executable csi-sanity"; exit 3; }
BIN=${STRONGROOM_BIN:-target/debug/strongroom}
[ -x "$BIN" ] || cargo build -q -p strongroom --bin strongroom
BIN=$(realpath "$BIN")
size=${SANITY_VOLUME_SIZE:-$((64 << 20))}

work=$(mktemp -d /tmp/sr-csi-sanity.XXXXXX)
pids=()
cleanup() {
  local rc=$? p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "$backend" = rbd ] && [ -d "$work/ceph" ]; then
    scripts/ceph/dev-cluster.sh stop "$work/ceph" >/dev/null 2>&1 || true
  fi
  # whatever a failed case left mounted under the driver's root
  { grep -o " $work/[^ ]*" /proc/self/mounts || true; } | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  if [ "${SANITY_KEEP:-0}" = 1 ] || [ "$rc" != 0 ]; then
    say "logs kept in $work"
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# The key manager: a dev server (in memory), root token "root", one tenant "sanity".
start_kms() {
  local port
  port=$(free_port)
  export VAULT_ADDR=http://127.0.0.1:$port
  "$BIN" server -dev -dev-root-token-id=root -dev-listen-address="127.0.0.1:$port" \
    >"$work/kms.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 300); do
    curl -sf -H 'X-Vault-Token: root' "$VAULT_ADDR/v1/sys/mounts" 2>/dev/null |
      grep -q '"secret/"' && break
    sleep 0.1
  done
  printf root >"$work/root.token"
  "$BIN" volume --root "$work/cli" --address "$VAULT_ADDR" setup-tenant sanity \
    --token-file "$work/root.token" --token-out "$work/tenant.token" --token-ttl 2h >/dev/null
  VAULT_TOKEN=root "$BIN" token create -policy=strongroom-volume-admin -ttl=2h -field=token \
    >"$work/admin.token"
  chmod 600 "$work/admin.token"
  mkdir -p "$work/kms-config"
  cat >"$work/kms-config/config.json" <<EOF
{"strongroom-kms": {"KMS_PROVIDER": "vaulttokens", "VAULT_ADDR": "$VAULT_ADDR",
 "VAULT_BACKEND_PATH": "secret/strongroom/\${pvc.namespace}", "VAULT_BACKEND": "kv-v2"}}
EOF
}

# A throwaway Ceph on free ports; the cluster map; the admin key for the secrets.
start_ceph() {
  CEPH_DEV_V2_PORT=$(free_port) CEPH_DEV_V1_PORT=$(free_port) \
    scripts/ceph/dev-cluster.sh start "$work/ceph" || exit 3
  local mons
  mons=$(sed -n 's/^mon host = //p' "$work/ceph/ceph.conf")
  printf '[{"clusterID": "sanity-ceph", "monitors": ["%s"]}]\n' "$mons" >"$work/cluster-map.json"
  ceph_key=$(ceph-authtool -p -n client.admin "$work/ceph/ceph.client.admin.keyring")
  ceph_pool=$(cat "$work/ceph/pool")
}

# driver NAME MODE: `strongroom csi --mode MODE` on $work/NAME.sock, root $work/NAME, log
# $work/NAME.log.
driver() {
  local name=$1 mode=$2 extra=()
  [ "$backend" = rbd ] && extra=(--ceph-cluster-map "$work/cluster-map.json")
  [ "$hosted" = 1 ] && [ "$mode" != controller ] && extra+=(--holder-host "$work/holder-host.sock")
  "$BIN" csi --endpoint "unix://$work/$name.sock" --node-id sanity-node --mode "$mode" \
    --root "$work/$name" --kms-config-dir "$work/kms-config" \
    --kms-secrets-dir "$work/kms-secrets" --default-kms-id strongroom-kms \
    --cluster-id sanity --admin-token-file "$work/admin.token" "${extra[@]}" \
    >"$work/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 200); do [ -S "$work/$name.sock" ] && return 0; sleep 0.1; done
  say "the driver never opened its socket:"; tail -20 "$work/$name.log" >&2; exit 1
}

# One process serving all (the file backend's volumes live on the node), or with --split a
# controller and a node plugin that share nothing but Ceph and the KMS.
start_driver() {
  endpoints=(--csi.endpoint "unix://$work/node.sock")
  if [ "$hosted" = 1 ]; then
    "$BIN" volume --root "$work/node" holder-host --socket "$work/holder-host.sock" \
      </dev/null 2>"$work/holder-host.log" &
    pids+=($!)
    for _ in $(seq 1 200); do [ -S "$work/holder-host.sock" ] && break; sleep 0.1; done
  fi
  if [ "$split" = 1 ]; then
    driver controller controller
    driver node node
    endpoints+=(--csi.controllerendpoint "unix://$work/controller.sock")
  else
    driver node all
  fi
}

# csi-sanity's files: every secret carries the tenant's token (and the Ceph user for RBD);
# the parameters are a StorageClass's as external-provisioner passes them.
write_files() {
  local tok kv=() k
  tok=$(cat "$work/tenant.token")
  kv+=("    token: \"$tok\"")
  if [ "$backend" = rbd ]; then
    kv+=("    userID: admin" "    userKey: \"$ceph_key\"")
  fi
  : >"$work/secrets.yaml"
  chmod 600 "$work/secrets.yaml"
  for k in CreateVolumeSecret DeleteVolumeSecret ControllerPublishVolumeSecret \
    ControllerUnpublishVolumeSecret ControllerValidateVolumeCapabilitiesSecret \
    NodeStageVolumeSecret NodePublishVolumeSecret CreateSnapshotSecret DeleteSnapshotSecret \
    ControllerExpandVolumeSecret ControllerModifyVolumeSecret ListSnapshotsSecret; do
    printf '%s:\n%s\n' "$k" "$(printf '%s\n' "${kv[@]}")" >>"$work/secrets.yaml"
  done
  {
    echo 'csi.storage.k8s.io/pvc/namespace: sanity'
    echo 'csi.storage.k8s.io/pvc/name: sanity-pvc'
    echo 'encrypted: "true"'
    if [ "$backend" = rbd ]; then
      echo 'clusterID: sanity-ceph'
      echo "pool: $ceph_pool"
    fi
    [ -z "${SANITY_PARAMS:-}" ] || printf '%s\n' "$SANITY_PARAMS"
  } >"$work/params.yaml"
}

# What csi-sanity's volumes and snapshots left behind, one line each (nothing: empty).
leftovers() {
  { grep -o " $work/[^ ]*" /proc/self/mounts || true; } | sed 's/^ /mount:/'
  # (an empty .holders: where holders of long volume ids keep their sockets; not a volume)
  find "$work"/node "$work"/controller -mindepth 1 -maxdepth 1 -type d \
    ! \( -name .holders -empty \) -printf 'volume:%f\n' 2>/dev/null || true
  find "$work"/node "$work"/controller -path '*/.holders/*' -printf 'socket:%f\n' \
    2>/dev/null || true
  if [ "$backend" = rbd ]; then
    rbd --conf "$work/ceph/ceph.conf" ls "$ceph_pool" | sed 's/^/image:/'
    rbd --conf "$work/ceph/ceph.conf" trash ls "$ceph_pool" | sed 's/^/trash:/'
  fi
  VAULT_TOKEN=root "$BIN" kv list -format=json secret/strongroom/sanity 2>/dev/null |
    tr -d '[]" \n' | tr ',' '\n' | sed '/^$/d; s/^/kv:/' || true
}

start_kms
[ "$backend" = rbd ] && start_ceph
start_driver
write_files
set +e
"$sanity" "${endpoints[@]}" \
  --csi.stagingdir "$work/staging" --csi.mountdir "$work/mount" \
  --csi.secrets "$work/secrets.yaml" --csi.testvolumeparameters "$work/params.yaml" \
  --csi.testvolumesize "$size" --ginkgo.no-color --ginkgo.junit-report "$work/junit.xml" \
  "$@" 2>&1 | tee "$work/sanity.log"
rc=${PIPESTATUS[0]}
set -e
# Ginkgo's summary line: "Ran N of M Specs ... / FAIL! -- P Passed | F Failed | Pe Pending | S Skipped"
summary=$(grep -E '[0-9]+ Passed \| [0-9]+ Failed' "$work/sanity.log" | tail -1)
count() { sed -nE "s/.*[^0-9]([0-9]+) $1.*/\1/p" <<<" $summary"; }
left=$(leftovers)
[ -z "$left" ] || { say "left behind after csi-sanity:"; echo "$left" >&2; }
echo "csi-sanity backend=$backend passed=$(count Passed) failed=$(count Failed)" \
  "skipped=$(count Skipped) pending=$(count Pending) leftovers=$(grep -c . <<<"$left") exit=$rc"
[ "$rc" = 0 ] && [ -n "$summary" ] && [ "$(count Failed)" = 0 ] && [ -z "$left" ] || exit 1
