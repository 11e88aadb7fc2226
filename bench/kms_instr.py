#!/usr/bin/env python3
"""Instructions per request of `strongroom server` (not a test): a number that does not
depend on machine load, for before/after comparisons of the request paths.

One node runs under valgrind's callgrind; per workload, after a warm-up its counters are
zeroed, N requests go through C concurrent connections (the requests batch as under load),
and the instructions the whole process executed meanwhile, divided by N, are printed:

  kms instr <workload> ir_per_op=… ops=… conns=… storage=… profile=<callgrind dump>

  python3 bench/kms_instr.py path/to/strongroom [N=2000] [C=8]
      [--storage raft|file] [--workloads kv1_write,kv1_read,token_create]

The defaults (kv1_write on `storage "raft"`, as the bench's) keep the original measurement;
`--storage file` holds the storage constant for comparisons with builds from before raft.
Each workload's dump stays on disk for `callgrind_annotate --inclusive=yes <profile>` and
`bench/callgrind_diff.py OLD NEW OPS` (per-function difference of two builds).
"""
import argparse
import glob
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import kms_bench as kb  # noqa: E402

SECRET = json.dumps({"value": "small-secret-value-0123456789abcd"})
TOKEN_BODY = json.dumps({"policies": ["default"], "ttl": "1h"})
# workload: (method, path for the n-th request of a connection tagged `tag`, body, status)
WORKLOADS = {
    "kv1_write": ("PUT", lambda tag, i: f"/v1/ocs/{tag}-{i}", SECRET, 204),
    "kv1_read": ("GET", lambda tag, i: "/v1/ocs/bench", None, 200),
    "token_create": ("POST", lambda tag, i: "/v1/auth/token/create", TOKEN_BODY, 200),
}


def client(port, token, workload, n, tag):
    method, path, body, status = WORKLOADS[workload]
    headers = {"X-Vault-Token": token, "X-Vault-Request": "true"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for i in range(n):
        c.request(method, path(tag, i), body, headers)
        r = c.getresponse()
        r.read()
        assert r.status == status, (workload, r.status)


def burst(port, token, workload, n, conns, tag):
    per = n // conns
    ts = [threading.Thread(target=client, args=(port, token, workload, per, f"{tag}{k}")) for k in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return per * conns


def callgrind_control(*args):
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True)


def dump_total(out, k):
    """The summary of the k-th dump (what ran between the zeroing and that dump)."""
    total, path = 0, None
    for _ in range(50):
        for p in glob.glob(f"{out}.*.{k}"):
            with open(p) as f:
                m = re.search(r"^(?:summary|totals): (\d+)", f.read(), re.M)
            if m and int(m.group(1)) > total:
                total, path = int(m.group(1)), p
        if path:
            return total, path
        time.sleep(0.2)
    sys.exit(f"no callgrind dump {out}.*.{k}")


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary")
    ap.add_argument("n", nargs="?", type=int, default=2000)
    ap.add_argument("conns", nargs="?", type=int, default=8)
    ap.add_argument("--storage", choices=("raft", "file"), default="raft")
    ap.add_argument("--workloads", default="kv1_write")
    a = ap.parse_args()
    a.workloads = [w for w in a.workloads.split(",") if w]
    unknown = [w for w in a.workloads if w not in WORKLOADS]
    if unknown:
        ap.error(f"unknown workload(s) {unknown}; known: {', '.join(WORKLOADS)}")
    return a


def main():
    a = parse_args()
    work = tempfile.mkdtemp(prefix="kms-instr-")
    out = os.path.join(work, "callgrind.out")
    wrapper = os.path.join(work, "vg.sh")
    with open(wrapper, "w") as f:
        f.write(f'#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file={out}.%p '
                f'--dump-instr=no --collect-jumps=no "{a.binary}" "$@"\n')
    os.chmod(wrapper, 0o755)
    s = kb.Server("instr", wrapper, work, storage=a.storage)
    try:
        port = int(s.addr.rsplit(":", 1)[1])
        for k, wl in enumerate(a.workloads, start=1):
            burst(port, s.token, wl, 200, a.conns, f"warm-{wl}")
            callgrind_control("-z", str(s.proc.pid))
            done = burst(port, s.token, wl, a.n, a.conns, f"m-{wl}")
            callgrind_control("-d", wl, str(s.proc.pid))
            total, path = dump_total(out, k)
            print(f"kms instr {wl} ir_per_op={total / done:.0f} ops={done} conns={a.conns} "
                  f"storage={a.storage} profile={path}", flush=True)
    finally:
        s.stop()


if __name__ == "__main__":
    main()
