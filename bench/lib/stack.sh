# Shared by bench/volume.sh and bench/rbd.sh (sourced): fio over a mounted stack, with the
# busy CPU time of the whole machine per GB moved, and the engine's own cipher cost.

# Busy CPU time of the whole machine so far, in clock ticks: user, system, irq, softirq (not
# idle, iowait, or steal: time the hypervisor gave to someone else is not this run's cost; not
# nice: every process of the stack runs at nice 0, and a job someone runs beside the bench at
# `nice -n 19` — a build — would otherwise be counted as the stack's CPU).
busy_ticks() { awk '/^cpu /{print $2+$4+$7+$8}' /proc/stat; }

# CPU ticks (user + system) of the Ceph daemons so far (0 without a cluster): what the cluster
# spends, as opposed to the client node (fio, FUSE, loop, ext4, the holder and its librbd).
daemon_ticks() {
  cat /proc/[0-9]*/stat 2>/dev/null |
    awk '$2 ~ /^\(ceph-(osd|mon|mgr)\)$/ {s += $14 + $15} END {print s + 0}'
}

# run_fio DIR RW BS [RATE]: prints "MB/s CPU-s/GB CLIENT-CPU-s/GB" of one job: MB/s in 10^6
# bytes/s; CPU-s/GB = busy CPU time of the whole machine (every process and the kernel: fio,
# loop, FUSE, ext4, and for RBD the OSD) per 10^9 bytes moved; CLIENT-: the same without the
# Ceph daemons. RATE (bytes/s): fio holds the job to it. Needs FIO_SIZE and RUNTIME.
run_fio() {
  local dir=$1 rw=$2 bs=$3 rate=${4:-} t0 t1 d0 d1 out
  sync; echo 3 >/proc/sys/vm/drop_caches
  t0=$(busy_ticks); d0=$(daemon_ticks)
  out=$(fio --name=bench --directory="$dir" --filename=fio.dat --size="$FIO_SIZE" --rw="$rw" --bs="$bs" \
      --ioengine=libaio --direct=1 --iodepth=16 --numjobs=1 --runtime="$RUNTIME" --time_based \
      ${rate:+--rate="$rate"} --group_reporting --output-format=json 2>/dev/null)
  t1=$(busy_ticks); d1=$(daemon_ticks)
  python3 -c 'import json,sys
j = json.loads(sys.argv[1])["jobs"][0]; k = "read" if j["read"]["io_bytes"] > 0 else "write"
b = j[k]["io_bytes"] / 1e9; busy, daemons, hz = (float(x) for x in sys.argv[2:5])
print("%.1f %.3f %.3f" % (j[k]["bw_bytes"] / 1e6, busy / hz / b if b else 0, (busy - daemons) / hz / b if b else 0))' \
    "$out" "$((t1 - t0))" "$((d1 - d0))" "$(getconf CLK_TCK)"
}

# layout DIR...: write fio's file once in each mounted stack (its read jobs need it).
layout() {
  local d
  for d in "$@"; do
    fio --name=layout --directory="$d" --filename=fio.dat --size="$FIO_SIZE" --rw=write --bs=1M \
        --ioengine=libaio --direct=1 --iodepth=16 >/dev/null 2>&1
  done
}

# median DIGITS VALUES...: the median, with DIGITS decimals.
median() { python3 -c "import statistics, sys; print('%.*f' % (int(sys.argv[1]), statistics.median(float(x) for x in sys.argv[2:])))" "$@"; }

# The engine's own cipher cost in this run (`strongroom luks benchmark`: one thread, per
# CPU-second): the floor of what encryption can add to a stack, one pass over the data.
# cipher_init BIN sets CIPHER; cipher_of encrypt|decrypt prints its CPU-s per GB.
cipher_init() { CIPHER=$("$1" luks benchmark --json --seconds 2); echo "== cipher: $CIPHER"; }
cipher_of() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2] + "_cpu_s_per_gb"])' "$CIPHER" "$1"; }

# paired_extra ENC_CPU... -- PLAIN_CPU...: "MEAN STDERR" of the rounds' differences (encrypted
# minus unencrypted CPU-s/GB, round by round). The two stacks of a round run back to back in
# alternating order (ABBA), so over an even number of rounds a drift of the machine during the
# bench (its throughput, hence its CPU-s/GB, moved by 30 % in 20 minutes in one run here, more
# than the cipher's whole cost) cancels in the mean; a difference of two medians does not
# cancel it, and one slow round moved it by 3x the cipher's cost. STDERR: the mean's
# standard error over the rounds, the resolution of the line.
paired_extra() {
  python3 -c 'import statistics, sys
a = sys.argv[1:]; k = a.index("--"); e, p = a[:k], a[k + 1:]
d = [float(x) - float(y) for x, y in zip(e, p)]
se = statistics.stdev(d) / len(d) ** 0.5 if len(d) > 1 else 0.0
print("%.3f %.3f" % (statistics.mean(d), se))' "$@"
}

# even_rounds: ROUNDS made even (drift cancels over ABBA pairs only), said when changed.
even_rounds() {
  if ((ROUNDS % 2)); then ROUNDS=$((ROUNDS + 1)); echo "(ROUNDS made even: $ROUNDS)" >&2; fi
}

# extra_fields EXTRA STDERR RW: "extra_cpu_s_per_gb=… extra_cpu_stderr=… cipher_cpu_s_per_gb=…
# extra_vs_cipher=… goal_extra_vs_cipher=1.3 meets_goal=yes|no", the cipher pass being a
# decryption for reads and an encryption for writes.
extra_fields() {
  local cipher
  if [[ $3 == *read ]]; then cipher=$(cipher_of decrypt); else cipher=$(cipher_of encrypt); fi
  python3 -c 'import sys
x, se, c = (float(v) for v in sys.argv[1:4])
vs = x / c if c > 0 else float("inf")
print("extra_cpu_s_per_gb=%.3f extra_cpu_stderr=%.3f cipher_cpu_s_per_gb=%.3f extra_vs_cipher=%.2f goal_extra_vs_cipher=1.3 meets_goal=%s" % (x, se, c, vs, "yes" if vs <= 1.3 else "no"))' "$1" "$2" "$cipher"
}

# cost_rounds ENC_DIR PLAIN_DIR RW BS MBPS: the CPU cost of encryption, measured with both
# stacks held to the same throughput (MBPS, below what either reaches). At full speed the
# slower stack's CPU-s/GB also carries what running slower costs everything else on the
# machine (measured: at full speed the OSD spent +0.1 CPU-s/GB more under the encrypted stack,
# which writes 12 % slower on 2 saturated vCPUs; held to one rate, the OSD's costs agree
# within ±0.05); held to one rate, the difference is what encryption adds per byte. ROUNDS
# rounds, ABBA. Prints "encrypted_cpu_s_per_gb=… unencrypted_cpu_s_per_gb=… <extra_fields>
# client_extra_cpu_s_per_gb=… client_extra_cpu_stderr=…" (client: without the Ceph daemons,
# which do the same work for both stacks; less noisy). The per-round figures go to stderr.
cost_rounds() {
  local enc_dir=$1 plain_dir=$2 rw=$3 bs=$4 rate e p i
  rate=$(python3 -c "print(int(float('$5') * 1e6))")
  local ecpu=() pcpu=() ecl=() pcl=()
  for ((i = 1; i <= ROUNDS; i++)); do
    if ((i % 2)); then e=$(run_fio "$enc_dir" "$rw" "$bs" "$rate"); p=$(run_fio "$plain_dir" "$rw" "$bs" "$rate")
    else p=$(run_fio "$plain_dir" "$rw" "$bs" "$rate"); e=$(run_fio "$enc_dir" "$rw" "$bs" "$rate"); fi
    e=${e#* }; p=${p#* }
    ecpu+=("${e% *}"); ecl+=("${e#* }"); pcpu+=("${p% *}"); pcl+=("${p#* }")
  done
  echo "   at $5 MB/s, CPU-s/GB (whole machine): encrypted ${ecpu[*]}, unencrypted ${pcpu[*]}" >&2
  echo "   at $5 MB/s, CPU-s/GB (client, no Ceph daemons): encrypted ${ecl[*]}, unencrypted ${pcl[*]}" >&2
  local client
  client=$(paired_extra "${ecl[@]}" -- "${pcl[@]}")
  echo "encrypted_cpu_s_per_gb=$(median 3 "${ecpu[@]}") unencrypted_cpu_s_per_gb=$(median 3 "${pcpu[@]}")" \
    "$(extra_fields $(paired_extra "${ecpu[@]}" -- "${pcpu[@]}") "$rw")" \
    "client_extra_cpu_s_per_gb=${client% *} client_extra_cpu_stderr=${client#* }"
}

# cost_rate ENC_MBPS PLAIN_MBPS: the common rate of cost_rounds, 80 % of the slower stack's.
cost_rate() { python3 -c "import sys; print('%.1f' % (0.8 * min(float(sys.argv[1]), float(sys.argv[2]))))" "$1" "$2"; }

# compare_stacks ENC_DIR PLAIN_DIR PREFIX: for each workload in WORKLOADS, ROUNDS rounds (made
# even) of the two stacks back to back at full speed (order alternating): MB/s medians and the
# median of the rounds' ratios; then the cost of encryption at a common rate (cost_rounds).
# Appends one line per workload to RESULTS: "PREFIX<workload> encrypted_mbps=…
# unencrypted_same_stack_mbps=… ratio=… cost_at_mbps=… <cost_rounds' fields>".
compare_stacks() {
  local enc_dir=$1 plain_dir=$2 prefix=$3 wl e p i
  even_rounds
  for wl in "seq_read_1m read 1M" "seq_write_1m write 1M" "rand_read_4k randread 4k" "rand_write_4k randwrite 4k"; do
    set -- $wl
    [[ " $WORKLOADS " == *" $1 "* ]] || continue
    echo "== $prefix$1 (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    local es=() ps=()
    for ((i = 1; i <= ROUNDS; i++)); do
      if ((i % 2)); then e=$(run_fio "$enc_dir" "$2" "$3"); p=$(run_fio "$plain_dir" "$2" "$3")
      else p=$(run_fio "$plain_dir" "$2" "$3"); e=$(run_fio "$enc_dir" "$2" "$3"); fi
      es+=("${e%% *}"); ps+=("${p%% *}")
    done
    local enc plain rounds ratio rate cost
    enc=$(median 1 "${es[@]}"); plain=$(median 1 "${ps[@]}")
    rounds=$(python3 -c "import sys; n=len(sys.argv)//2; print(' '.join('%.3f' % (float(e)/float(p) if float(p) > 0 else 0) for e, p in zip(sys.argv[1:n+1], sys.argv[n+1:])))" "${es[@]}" "${ps[@]}")
    ratio=$(median 3 $rounds)
    echo "   encrypted ${es[*]} MB/s, unencrypted ${ps[*]} MB/s; ratios $rounds"
    rate=$(cost_rate "$enc" "$plain")
    cost=$(cost_rounds "$enc_dir" "$plain_dir" "$2" "$3" "$rate")
    RESULTS+=("$prefix$1 encrypted_mbps=$enc unencrypted_same_stack_mbps=$plain ratio=$ratio cost_at_mbps=$rate $cost")
  done
}
