#!/usr/bin/env bash
# LUKS2 engine benchmark: AES-XTS on 4 KiB sectors (strongroom's XTS backends: VAES/AVX-512 where
# the CPU has it, aws-lc, pure Rust; one thread and all cores) against
# `openssl speed -evp aes-256-xts` in the same run, and
# format+unlock with our default profile against cryptsetup's default luksFormat + unlock.
# Ends with (strongroom_gbps is the backend the engine picks by default, named by backend=):
#   luks xts_4k threads=N strongroom_gbps=… openssl_gbps=… ratio=… … backend=…
#   luks format_unlock strongroom_ms=… cryptsetup_default_ms=…
# Throughput is per thread-CPU-second summed over threads, on both sides: `openssl speed` divides by
# CPU user time unless given -elapsed, and the harness measures each thread's CPU time, so load
# from other users of this shared machine does not skew the ratio (wall-clock figures are printed
# too, as wall_gbps).
# Env: LUKS_BENCH_SECONDS (per measurement, default 2), SKIP_CRYPTSETUP=1 to skip cryptsetup.
set -euo pipefail
cd "$(dirname "$0")/.."
N=$(nproc)
SECS=${LUKS_BENCH_SECONDS:-2}
export LUKS_BENCH_SECONDS=$SECS
out=$(mktemp)
trap 'rm -f "$out"' EXIT

echo "== strongroom (cargo bench -p strongroom-luks --bench luks)"
cargo bench -q -p strongroom-luks --bench luks 2>/dev/null | tee "$out"

openssl_gbps() { # threads
  local t=$1 args=()
  [ "$t" -gt 1 ] && args=(-multi "$t")
  openssl speed -seconds "$SECS" "${args[@]}" -evp aes-256-xts -bytes 4096 2>/dev/null |
    awk 'toupper($1)=="AES-256-XTS" {v=$2} END {sub("k","",v); printf "%.2f", v*1000/1e9}'
}

echo "== openssl speed -evp aes-256-xts -bytes 4096"
declare -A OSSL
for t in 1 "$N"; do
  OSSL[$t]=$(openssl_gbps "$t")
  echo "openssl threads=$t gbps=${OSSL[$t]}"
  [ "$N" -eq 1 ] && break
done

cs_ms=NA
if [ -z "${SKIP_CRYPTSETUP:-}" ] && command -v cryptsetup >/dev/null; then
  echo "== cryptsetup default luksFormat + open --test-passphrase (argon2id, benchmarked: takes ~15 s)"
  d=$(mktemp -d)
  truncate -s 17M "$d/v.img"
  printf 'bench' >"$d/k"
  t0=$(date +%s%N)
  cryptsetup -q luksFormat --type luks2 --key-file "$d/k" "$d/v.img"
  cryptsetup open --test-passphrase --key-file "$d/k" "$d/v.img"
  t1=$(date +%s%N)
  cs_ms=$(( (t1 - t0) / 1000000 ))
  rm -rf "$d"
fi

echo "== summary"
auto=$(awk '$1=="xts" && $2 ~ /^auto=/ {sub("auto=","",$2); print $2}' "$out")
gbps_of() { # backend threads
  awk -v b="$1" -v t="$2" '$1=="xts" && $2=="backend="b && $3=="threads="t && $4=="op=encrypt" {sub("gbps=","",$5); print $5}' "$out"
}
for t in 1 "$N"; do
  line=$(awk -v b="$auto" -v t="$t" '$1=="xts" && $2=="backend="b && $3=="threads="t && $4=="op=encrypt"' "$out")
  sr=$(echo "$line" | sed -n 's/.* gbps=\([0-9.]*\).*/\1/p')
  wall=$(echo "$line" | sed -n 's/.*wall_gbps=\([0-9.]*\).*/\1/p')
  rust=$(gbps_of rustcrypto "$t")
  awslc=$(gbps_of awslc "$t")
  o=${OSSL[$t]}
  ratio=$(awk -v a="$sr" -v b="$o" 'BEGIN { if (b > 0) printf "%.2f", a/b; else print "NA" }')
  echo "luks xts_4k threads=$t strongroom_gbps=$sr openssl_gbps=$o ratio=$ratio strongroom_wall_gbps=$wall purerust_gbps=$rust awslc_gbps=$awslc backend=$auto"
  [ "$N" -eq 1 ] && break
done
fu=$(awk '$1=="format_unlock" {sub("strongroom_ms=","",$2); print $2}' "$out")
echo "luks format_unlock strongroom_ms=$fu cryptsetup_default_ms=$cs_ms"
