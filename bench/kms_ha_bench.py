#!/usr/bin/env python3
"""KMS HA benchmark: three strongroom raft nodes vs three OpenBao raft nodes on loopback.

Each cluster: node1 initialized (one share) and unsealed, nodes 2 and 3 joined
(`sys/storage/raft/join`) and unsealed, then we wait until all three are voters. The load goes
to the active node (wrk, as in kms_bench.py); the CPU is that of all three processes. Then
failover rounds: kill -9 the active node, and time from the kill to the first acknowledged KV
write sent through a surviving node (attempts alternate between the two, with our client's
documented retry: pauses of 200 ms, 400 ms, ...; 60 s timeout each); the killed node is restarted and unsealed before the next round.

OpenBao runs twice: with its default raft timers (performance_multiplier 5) and with its
fastest sane setting (performance_multiplier = 1). Lines:

  kms ha_<workload> strongroom_rps=… openbao_rps=… cpu_ratio=… openbao_pm1_rps=… cpu_ratio_pm1=…
  kms failover strongroom_ms=… openbao_ms=… openbao_pm1_ms=…
"""
import os
import signal
import statistics
import subprocess
import time
import urllib.error

import kms_bench as kb

# empty: the failover rounds only
HA_WORKLOADS = [w for w in os.environ.get("BENCH_HA_WORKLOADS", "kv1_write,token_create,transit_encrypt_4k").split(",") if w]
ROUNDS = int(os.environ.get("BENCH_FAILOVER_ROUNDS", "3"))
# the first pause of our client's documented retry (crates/vault-client `retry`)
RETRY_BACKOFF_S = 0.2


class Node:
    def __init__(self, name, argv0, work, extra_raft=""):
        self.name, self.argv0 = name, argv0
        self.port, self.cport = kb.free_port(), kb.free_port()
        self.addr = f"http://127.0.0.1:{self.port}"
        self.dir = os.path.join(work, name)
        os.makedirs(os.path.join(self.dir, "data"))
        self.cfg = os.path.join(self.dir, "server.hcl")
        with open(self.cfg, "w") as f:
            f.write(f'''storage "raft" {{
  path    = "{self.dir}/data"
  node_id = "{name}"
{extra_raft}}}
listener "tcp" {{
  address         = "127.0.0.1:{self.port}"
  cluster_address = "127.0.0.1:{self.cport}"
  tls_disable     = true
}}
api_addr      = "{self.addr}"
cluster_addr  = "https://127.0.0.1:{self.cport}"
disable_mlock = true
''')
        self.proc = None
        self.start()

    def start(self):
        log = open(os.path.join(self.dir, "server.log"), "a")
        env = dict(os.environ, HOME=self.dir)
        self.proc = subprocess.Popen([self.argv0, "server", "-config", self.cfg], stdout=log, stderr=log, env=env)
        wait_for(f"{self.name} listening", 30, lambda: reachable(self.addr))

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def stop(self):
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / kb.CLK


def reachable(addr):
    try:
        kb.http(addr, "GET", "sys/health")
        return True
    except Exception:
        return False


def wait_for(what, secs, f, every=0.1):
    deadline = time.monotonic() + secs
    while True:
        try:
            if f():
                return
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(every)


class Cluster:
    """Three nodes of one implementation, formed as an operator does."""

    def __init__(self, label, argv0, work, extra_raft=""):
        self.label = label
        self.name = label
        self.attempts = []
        self.nodes = [Node(f"{label}-{i}", argv0, work, extra_raft) for i in (1, 2, 3)]
        first = self.nodes[0].addr
        st, init = kb.http(first, "PUT", "sys/init", body={"secret_shares": 1, "secret_threshold": 1})
        assert st == 200, (label, st, init)
        self.key, self.token = init["keys_base64"][0], init["root_token"]
        self.unseal(self.nodes[0])
        wait_for(f"{label}: node1 active", 120, lambda: kb.http(first, "GET", "sys/health")[0] == 200)
        for n in self.nodes[1:]:
            st, r = kb.http(n.addr, "PUT", "sys/storage/raft/join", body={"leader_api_addr": first})
            assert st == 200, (label, n.name, st, r)
            self.unseal(n)
        wait_for(f"{label}: three voters", 180, self.three_voters, every=0.5)
        self.addr = self.active().addr
        kb.Server.setup(self)

    def unseal(self, n):
        wait_for(f"{n.name} unsealed", 60,
                 lambda: kb.http(n.addr, "PUT", "sys/unseal", body={"key": self.key})[1]["sealed"] is False, every=0.2)

    def three_voters(self):
        st, r = kb.http(self.nodes[0].addr, "GET", "sys/storage/raft/configuration", self.token)
        servers = r["data"]["config"]["servers"] if st == 200 else []
        return len(servers) == 3 and all(s["voter"] for s in servers)

    def active(self):
        for n in self.nodes:
            if n.proc and kb.http(n.addr, "GET", "sys/health")[0] == 200:
                return n
        return None

    def settled_active(self):
        """The active node once every node names it and it stayed active for a second: a
        node just restarted may still force an election (it stood for election while it was
        sealed and could not hear the leader), and killing a node that is about to lose its
        leadership anyway would time that election, not a failover."""
        def agreed():
            a = self.active()
            if a is None:
                return None
            for n in self.nodes:
                st, r = kb.http(n.addr, "GET", "sys/leader")
                if st != 200 or r.get("leader_address") != a.addr:
                    return None
            return a
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            a = agreed()
            time.sleep(1)
            if a is not None and agreed() is a:
                return a
        raise SystemExit(f"{self.label}: no settled active node within 60 s")

    def cpu_seconds(self):
        return sum(n.cpu_seconds() for n in self.nodes if n.proc)

    def rss_kib(self):
        return 0

    def measure(self, workload, work):
        spec = kb.bodies(work, self)[workload]
        method, path, body, unique = spec
        kb.wrk(self, method, path + ("-warm" if unique else ""), body, unique, kb.WARMUP)
        c0 = self.cpu_seconds()
        r = kb.wrk(self, method, path, body, unique, kb.DURATION)
        r["cpu_s"] = max(self.cpu_seconds() - c0, 1e-9)
        r["rps"] = r["requests"] / r["seconds"]
        r["per_cpu_s"] = r["requests"] / r["cpu_s"]
        return r

    def failover_ms(self, round_no):
        """Kill -9 the active node; ms until a write through a survivor is acknowledged.

        The client retries as ours does (crates/vault-client: `retry(6, 200 ms)`, the
        documented choice against a cluster): a failed attempt is repeated after 200 ms, then
        400 ms, ... (capped at 30 s), each attempt on the next survivor (the killed node
        refuses its connection, so a multi-address client moves on at once), with the
        client's default request timeout (60 s)."""
        leader = self.settled_active()
        survivors = [n for n in self.nodes if n is not leader]
        leader.kill9()
        t0 = time.monotonic()
        i, delay = 0, RETRY_BACKOFF_S
        while time.monotonic() - t0 < 120:
            n = survivors[i % 2]
            i += 1
            try:
                st, _ = kb.http(n.addr, "PUT", f"ocs/failover-{round_no}-{i}", self.token, {"value": "x"}, timeout=60)
                if st in (200, 204):
                    ms = (time.monotonic() - t0) * 1000
                    break
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(delay)
            delay = min(delay * 2, 30)
        else:
            raise SystemExit(f"{self.label}: no write acknowledged within 120 s of the kill")
        self.attempts.append(i)
        leader.start()
        self.unseal(leader)
        wait_for(f"{self.label}: three voters again", 180, self.three_voters, every=0.5)
        self.addr = self.active().addr
        return ms

    def stop(self):
        for n in self.nodes:
            n.stop()


def run(ours_bin, work):
    """Returns the HA result lines and whether each met its goal."""
    clusters = []
    try:
        ours = Cluster("strongroom", ours_bin, work)
        clusters.append(ours)
        bao = Cluster("openbao", kb.bao_bin(), work)
        clusters.append(bao)
        bao1 = Cluster("openbao_pm1", kb.bao_bin(), work, "  performance_multiplier = 1\n")
        clusters.append(bao1)
        print(f"# HA clusters formed; load: {kb.load()}", flush=True)
        results = []
        for wl in HA_WORKLOADS:
            res = {}
            for c in (bao, bao1, ours):
                res[c.label] = r = c.measure(wl, work)
                print(f"# ha_{wl:20} {c.label:12} rps={r['rps']:9.0f} p99={r['p99_ms']:.2f}ms "
                      f"req/cpu-s={r['per_cpu_s']:9.0f} errors={r['errors']} load: {kb.load()}", flush=True)
            o, b, b1 = res["strongroom"], res["openbao"], res["openbao_pm1"]
            ratio = o["per_cpu_s"] / b["per_cpu_s"]
            ratio1 = o["per_cpu_s"] / b1["per_cpu_s"]
            goal = kb.goal("ha_" + wl)
            results.append((
                f"kms ha_{wl} strongroom_rps={o['rps']:.0f} openbao_rps={b['rps']:.0f} cpu_ratio={ratio:.2f} "
                f"openbao_pm1_rps={b1['rps']:.0f} cpu_ratio_pm1={ratio1:.2f} goal_cpu_ratio>={goal} "
                f"errors={o['errors']}/{b['errors']}/{b1['errors']}",
                min(ratio, ratio1) >= goal and o["errors"] == 0))
        if ROUNDS < 1:
            print("# failover: not measured (BENCH_FAILOVER_ROUNDS=0)", flush=True)
            return results
        fo = {}
        for c in (ours, bao, bao1):
            fo[c.label] = [c.failover_ms(i) for i in range(ROUNDS)]
            print(f"# failover {c.label:12} ms={['%.0f' % x for x in fo[c.label]]} attempts={c.attempts} "
                  f"load: {kb.load()}", flush=True)
        o, b, b1 = (statistics.median(fo[k]) for k in ("strongroom", "openbao", "openbao_pm1"))
        results.append((
            f"kms failover strongroom_ms={o:.0f} openbao_ms={b:.0f} openbao_pm1_ms={b1:.0f} "
            f"goal=strongroom_ms<=openbao_ms/2 (pm1: {'met' if o <= b1 / 2 else 'not met'}) rounds={ROUNDS}",
            o <= b / 2))
        return results
    finally:
        for c in clusters:
            c.stop()
