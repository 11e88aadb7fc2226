#!/usr/bin/env python3
"""Instructions per KV write of `strongroom server` (not a test): a number that does not
depend on machine load, for before/after comparisons of the write path.

One node (`storage "raft"`, as the bench's) runs under valgrind's callgrind; after a warm-up
its counters are zeroed, N writes go through C concurrent connections (the requests batch as
under load), and the instructions the whole process executed meanwhile, divided by N, are
printed:

  kms instr kv1_write ir_per_op=… writes=… conns=…

  python3 bench/kms_instr.py path/to/strongroom [N=2000] [C=8]
"""
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


def writer(port, token, n, tag):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    body = json.dumps({"value": "small-secret-value-0123456789abcd"})
    for i in range(n):
        c.request("PUT", f"/v1/ocs/{tag}-{i}", body, {"X-Vault-Token": token})
        r = c.getresponse()
        r.read()
        assert r.status == 204, r.status


def burst(port, token, n, conns, tag):
    ts = [threading.Thread(target=writer, args=(port, token, n // conns, f"{tag}{k}")) for k in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return (n // conns) * conns


def main():
    binary = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    conns = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    work = tempfile.mkdtemp(prefix="kms-instr-")
    out = os.path.join(work, "callgrind.out")
    wrapper = os.path.join(work, "vg.sh")
    with open(wrapper, "w") as f:
        f.write(f'#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file={out}.%p '
                f'--dump-instr=no --collect-jumps=no "{binary}" "$@"\n')
    os.chmod(wrapper, 0o755)
    s = kb.Server("instr", wrapper, work)
    try:
        port = int(s.addr.rsplit(":", 1)[1])
        burst(port, s.token, 200, conns, "warm")
        subprocess.run(["callgrind_control", "-z", str(s.proc.pid)], check=True, capture_output=True)
        done = burst(port, s.token, n, conns, "w")
        subprocess.run(["callgrind_control", "-d", "measured", str(s.proc.pid)], check=True, capture_output=True)
        time.sleep(1)
        # the first dump (".1") holds what ran between the zeroing and the dump
        total = 0
        for p in glob.glob(out + ".*.1"):
            with open(p) as f:
                m = re.search(r"^(?:summary|totals): (\d+)", f.read(), re.M)
            total = max(total, int(m.group(1)))
        print(f"kms instr kv1_write ir_per_op={total / done:.0f} writes={done} conns={conns}", flush=True)
    finally:
        s.stop()


if __name__ == "__main__":
    main()
