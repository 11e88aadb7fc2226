# Shared by bench/volume.sh and bench/rbd.sh (sourced): fio over a mounted stack, with the
# busy CPU time of the whole machine per GB moved, and the engine's own cipher cost.

# Busy CPU time of the whole machine so far, in clock ticks: user, system, irq, softirq (not
# idle, iowait, or steal: time the hypervisor gave to someone else is not this run's cost; not
# nice: every process of the stack runs at nice 0, and a job someone runs beside the bench at
# `nice -n 19` — a build — would otherwise be counted as the stack's CPU).
busy_ticks() { awk '/^cpu /{print $2+$4+$7+$8}' /proc/stat; }

# run_fio DIR RW BS: prints "MB/s CPU-s/GB" of one job: MB/s in 10^6 bytes/s; CPU-s/GB = busy
# CPU time of the whole machine (every process and the kernel: fio, loop, FUSE, ext4, and for
# RBD the OSD) per 10^9 bytes moved. Needs FIO_SIZE and RUNTIME.
run_fio() {
  local dir=$1 rw=$2 bs=$3 t0 t1 out
  sync; echo 3 >/proc/sys/vm/drop_caches
  t0=$(busy_ticks)
  out=$(fio --name=bench --directory="$dir" --filename=fio.dat --size="$FIO_SIZE" --rw="$rw" --bs="$bs" \
      --ioengine=libaio --direct=1 --iodepth=16 --numjobs=1 --runtime="$RUNTIME" --time_based \
      --group_reporting --output-format=json 2>/dev/null)
  t1=$(busy_ticks)
  python3 -c 'import json,sys; j=json.loads(sys.argv[1])["jobs"][0]; k="read" if j["read"]["io_bytes"]>0 else "write"; b=j[k]["io_bytes"]; print("%.1f %.3f" % (j[k]["bw_bytes"]/1e6, (int(sys.argv[3])-int(sys.argv[2]))/float(sys.argv[4])/(b/1e9) if b else 0))' \
    "$out" "$t0" "$t1" "$(getconf CLK_TCK)"
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

# extra_fields ENC_CPU PLAIN_CPU RW: "extra_cpu_s_per_gb=… cipher_cpu_s_per_gb=…
# extra_vs_cipher=… goal_extra_vs_cipher=1.3 meets_goal=yes|no", the cipher pass being a
# decryption for reads and an encryption for writes.
extra_fields() {
  local cipher
  if [[ $3 == *read ]]; then cipher=$(cipher_of decrypt); else cipher=$(cipher_of encrypt); fi
  python3 -c 'import sys
e, p, c = (float(x) for x in sys.argv[1:4])
x = e - p
vs = x / c if c > 0 else float("inf")
print("extra_cpu_s_per_gb=%.3f cipher_cpu_s_per_gb=%.3f extra_vs_cipher=%.2f goal_extra_vs_cipher=1.3 meets_goal=%s" % (x, c, vs, "yes" if vs <= 1.3 else "no"))' "$1" "$2" "$cipher"
}

# compare_stacks ENC_DIR PLAIN_DIR PREFIX: for each workload in WORKLOADS, ROUNDS rounds of
# the two stacks back to back (order alternating), medians; appends one line per workload to
# RESULTS: "PREFIX<workload> encrypted_mbps=… unencrypted_same_stack_mbps=… ratio=…
# encrypted_cpu_s_per_gb=… unencrypted_cpu_s_per_gb=… <extra_fields>".
compare_stacks() {
  local enc_dir=$1 plain_dir=$2 prefix=$3 wl e p i
  for wl in "seq_read_1m read 1M" "seq_write_1m write 1M" "rand_read_4k randread 4k" "rand_write_4k randwrite 4k"; do
    set -- $wl
    [[ " $WORKLOADS " == *" $1 "* ]] || continue
    echo "== $prefix$1 (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    local es=() ps=() ecpu=() pcpu=()
    for ((i = 1; i <= ROUNDS; i++)); do
      if ((i % 2)); then e=$(run_fio "$enc_dir" "$2" "$3"); p=$(run_fio "$plain_dir" "$2" "$3")
      else p=$(run_fio "$plain_dir" "$2" "$3"); e=$(run_fio "$enc_dir" "$2" "$3"); fi
      es+=("${e% *}"); ecpu+=("${e#* }"); ps+=("${p% *}"); pcpu+=("${p#* }")
    done
    local enc plain enc_cpu plain_cpu rounds ratio
    enc=$(median 1 "${es[@]}"); plain=$(median 1 "${ps[@]}")
    enc_cpu=$(median 3 "${ecpu[@]}"); plain_cpu=$(median 3 "${pcpu[@]}")
    rounds=$(python3 -c "import sys; n=len(sys.argv)//2; print(' '.join('%.3f' % (float(e)/float(p) if float(p) > 0 else 0) for e, p in zip(sys.argv[1:n+1], sys.argv[n+1:])))" "${es[@]}" "${ps[@]}")
    ratio=$(median 3 $rounds)
    echo "   encrypted ${es[*]} MB/s, unencrypted ${ps[*]} MB/s; ratios $rounds"
    echo "   CPU-s/GB (whole machine): encrypted ${ecpu[*]}, unencrypted ${pcpu[*]}"
    RESULTS+=("$prefix$1 encrypted_mbps=$enc unencrypted_same_stack_mbps=$plain ratio=$ratio encrypted_cpu_s_per_gb=$enc_cpu unencrypted_cpu_s_per_gb=$plain_cpu $(extra_fields "$enc_cpu" "$plain_cpu" "$2")")
  done
}
