//! Key-manager HA under network partitions: three `strongroom server` raft nodes, each in its
//! own network namespace (made by the test: a bridge namespace, veth pairs, addresses in a
//! private 10.x.y.0/24; see kms_ha_common/net.rs). Needs root (CAP_NET_ADMIN) and iproute2.
//!
//! - the leader cut off from the majority acknowledges nothing, the majority elects and
//!   serves, and after healing there is one history;
//! - single-key histories (write, read, check-and-set through all nodes) stay linearizable
//!   through randomized partitions, kills and restarts;
//! - and through one-way partitions of the leader (it sends but does not receive, and the
//!   reverse) and lossy, narrow links (10 % loss on every cluster link, alone and with the
//!   leader cut off): the majority elects and serves, the nodes end with one history.

mod kms_ha_common;

use kms_ha_common::lin::{self, Fault, Rng};
use kms_ha_common::net::Way;
use kms_ha_common::{client_timeout, kv2_mount, kv_map, wait_for, Cluster};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One KV v2 write of a fresh key (`w{writer}/{i}`) through one node.
#[derive(Debug, Clone)]
struct Write {
    node: usize,
    key: String,
    val: String,
    start: Instant,
    /// When it was acknowledged, and as which version.
    acked: Option<(Instant, u64)>,
}

/// Writers on every node, each writing fresh keys until `stop`; every attempt recorded.
fn writers<'s>(
    s: &'s std::thread::Scope<'s, '_>,
    c: &'s Cluster,
    stop: &'s AtomicBool,
    log: &'s Mutex<Vec<Write>>,
) {
    for w in 0..4 {
        s.spawn(move || {
            let clients: Vec<_> = c
                .addrs()
                .iter()
                .map(|a| client_timeout(a, Some(&c.token), Duration::from_secs(2)))
                .collect();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let node = (w + i) % 3;
                let (key, val) = (format!("w{w}/{i}"), format!("{w}-{i}"));
                let start = Instant::now();
                let r = clients[node].kv2_write("p", &key, &kv_map(&val), None);
                let acked = r.ok().map(|m| (Instant::now(), m.version));
                log.lock().unwrap().push(Write {
                    node,
                    key,
                    val,
                    start,
                    acked,
                });
                i += 1;
            }
        });
    }
}

#[test]
fn the_isolated_leader_acknowledges_nothing_the_majority_serves_one_history_after_healing() {
    let t0 = Instant::now();
    let c = Cluster::start_in_namespaces();
    let old = c.wait_leader();
    c.admin().mount_enable("p", &kv2_mount()).unwrap();
    let majority: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let net = c.net.as_ref().unwrap();
    let (stop, log) = (AtomicBool::new(false), Mutex::new(Vec::new()));
    let (mut isolated, mut elected, mut healed) = (t0, t0, t0);
    let mut new = old;
    std::thread::scope(|s| {
        writers(s, &c, &stop, &log);
        let _stop_on_panic = kms_ha_common::StopOnDrop(&stop);
        std::thread::sleep(Duration::from_secs(1));
        net.isolate(old);
        isolated = Instant::now();
        new = c.wait_leader_among(&majority);
        elected = Instant::now();
        // the majority serves: acknowledged writes through both of its nodes
        wait_for("acknowledged writes on the majority", 30, || {
            let l = log.lock().unwrap();
            majority.iter().all(|&m| {
                l.iter()
                    .filter(|w| w.node == m && w.start > elected && w.acked.is_some())
                    .count()
                    >= 3
            })
        });
        // long enough for writes through the old leader to time out
        std::thread::sleep(Duration::from_millis(2500));
        net.heal(old);
        healed = Instant::now();
        wait_for("the old leader to follow the new one", 30, || {
            c.leader_seen_by(old) == Some(new)
        });
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::SeqCst);
    });
    let log = log.into_inner().unwrap();
    let during = |w: &&Write| w.start > isolated && w.start < healed;
    let minority_tried = log.iter().filter(|w| w.node == old).filter(during).count();
    let minority_acked: Vec<&Write> = log
        .iter()
        .filter(|w| w.node == old)
        .filter(during)
        .filter(|w| w.acked.is_some_and(|(t, _)| t < healed))
        .collect();
    assert!(minority_tried > 0, "no write went to the isolated node");
    assert!(
        minority_acked.is_empty(),
        "the isolated old leader acknowledged {} writes: {minority_acked:#?}",
        minority_acked.len()
    );
    let majority_acked = log
        .iter()
        .filter(|w| w.node != old)
        .filter(during)
        .filter(|w| w.acked.is_some())
        .count();
    check_one_history(&c, &log);
    eprintln!(
        "kms ha partition: election_ms={} majority_acked={majority_acked} \
         minority_tried={minority_tried} minority_acked=0 writes={} wall_s={:.1}",
        (elected - isolated).as_millis(),
        log.len(),
        t0.elapsed().as_secs_f64()
    );
}

/// After healing, every node shows the same keys; every acknowledged write is there with its
/// value, and no write was applied twice (every key was written once: version 1).
fn check_one_history(c: &Cluster, log: &[Write]) {
    let mut views = vec![];
    for (i, addr) in c.addrs().iter().enumerate() {
        let cl = client_timeout(addr, Some(&c.token), Duration::from_secs(10));
        let mut keys = vec![];
        for w in 0..4 {
            let folder = format!("w{w}/");
            let listed = strongroom_vault_client::retry(20, Duration::from_millis(100), || {
                cl.kv2_list("p", &folder)
            });
            let listed = listed.unwrap_or_else(|e| panic!("listing on node {i}: {e}"));
            keys.extend(listed.into_iter().map(|k| format!("{folder}{k}")));
        }
        keys.sort();
        views.push(keys);
    }
    assert!(
        views.iter().all(|v| *v == views[0]),
        "the nodes disagree on the keys"
    );
    let reader = client_timeout(&c.addrs()[0], Some(&c.token), Duration::from_secs(10));
    for w in log.iter().filter(|w| w.acked.is_some()) {
        assert!(views[0].contains(&w.key), "acknowledged {} lost", w.key);
    }
    for key in &views[0] {
        let got = strongroom_vault_client::retry(20, Duration::from_millis(100), || {
            reader.kv2_read("p", key, None)
        })
        .unwrap()
        .unwrap_or_else(|| panic!("{key} listed but unreadable"));
        assert_eq!(got.metadata.version, 1, "{key} was applied more than once");
        let sent = log
            .iter()
            .find(|w| &w.key == key)
            .expect("a key nobody wrote");
        assert_eq!(got.data.str("v"), Some(sent.val.as_str()), "{key}");
    }
}

#[test]
fn the_checker_finds_a_stale_read() {
    lin::check_the_checker();
}

#[test]
fn single_key_histories_are_linearizable_through_partitions_kills_and_restarts() {
    let runs: u64 = std::env::var("HA_LIN_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("HA_LIN_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed);
    let t0 = Instant::now();
    let mut c = Cluster::start_in_namespaces();
    c.admin().mount_enable("lin", &kv2_mount()).unwrap();
    let mut rng = Rng(seed | 1);
    let (mut total, mut unknown, mut kinds) = (0, 0, [0usize; 4]);
    for run in 0..runs {
        let r = rng.next();
        // the leader or a random node; a kill or a partition
        let (on_leader, partition) = (r & 1 == 0, (r >> 4) & 1 == 1);
        let victim = if on_leader {
            c.wait_leader()
        } else {
            (r >> 8) as usize % 3
        };
        let fault = if partition {
            Fault::Isolate(victim)
        } else {
            Fault::Kill(victim)
        };
        kinds[usize::from(!on_leader) * 2 + usize::from(partition)] += 1;
        let events = lin::one_run(&mut c, seed + run, fault);
        total += events.len();
        unknown += events.iter().filter(|e| e.end.is_none()).count();
        assert!(
            lin::linearizable(&events),
            "run {run} ({fault:?}, seed {seed}): history not linearizable: {events:#?}"
        );
    }
    eprintln!(
        "kms ha linearizability runs={runs} operations={total} unknown_outcome={unknown} \
         leader_kills={} leader_partitions={} node_kills={} node_partitions={} violations=0 \
         wall_s={:.1}",
        kinds[0],
        kinds[1],
        kinds[2],
        kinds[3],
        t0.elapsed().as_secs_f64()
    );
}

/// After healing the nodes converge on one history: the same leader and the same applied
/// raft index on every node at once (a healed node's higher term may force one more
/// election first), and the same `lin/key` (value and version) through each of them.
fn assert_one_history(c: &Cluster) {
    let seen = |i: usize| {
        let cl = client_timeout(&c.nodes[i].addr(), None, Duration::from_secs(2));
        let v = cl.leader().ok()?;
        let applied = v
            .get("raft_applied_index")
            .and_then(serde_json::Value::as_u64)?;
        Some((c.leader_seen_by(i)?, applied))
    };
    wait_for("one leader and one applied log on every node", 30, || {
        let s: Vec<_> = (0..3).map(seen).collect();
        s[0].is_some() && s.iter().all(|x| *x == s[0])
    });
    let views: Vec<_> = c
        .addrs()
        .iter()
        .map(|a| {
            let cl = client_timeout(a, Some(&c.token), Duration::from_secs(5));
            let got = strongroom_vault_client::retry(20, Duration::from_millis(100), || {
                cl.kv2_read("lin", "key", None)
            });
            got.unwrap()
                .map(|s| (s.data.str("v").map(str::to_owned), s.metadata.version))
        })
        .collect();
    assert!(views.iter().all(|v| *v == views[0]), "{views:?}");
}

/// `faults` one after another on one namespaced cluster, each with a fresh history of
/// `lin/key` that must be linearizable and end in one history.
fn degraded_runs(name: &str, faults: impl Fn(&Cluster, usize) -> Fault, runs: usize) {
    let t0 = Instant::now();
    let mut c = Cluster::start_in_namespaces();
    c.admin().mount_enable("lin", &kv2_mount()).unwrap();
    let (mut total, mut unknown) = (0, 0);
    for run in 0..runs {
        let fault = faults(&c, run);
        eprintln!("run {run}: {fault:?}");
        let events = lin::one_run(&mut c, 0xfa17 + run as u64, fault);
        total += events.len();
        unknown += events.iter().filter(|e| e.end.is_none()).count();
        assert!(
            lin::linearizable(&events),
            "run {run} ({fault:?}): history not linearizable: {events:#?}"
        );
        assert_one_history(&c);
    }
    eprintln!(
        "kms ha {name}: runs={runs} operations={total} unknown_outcome={unknown} violations=0 \
         wall_s={:.1}",
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn one_way_partitions_of_the_leader_stay_linearizable_and_the_majority_serves() {
    let ways = [Way::SendOnly, Way::ReceiveOnly];
    degraded_runs(
        "one-way",
        |c, run| Fault::OneWay(c.wait_leader(), ways[run % 2]),
        2,
    );
}

#[test]
fn lossy_narrow_links_stay_linearizable_and_the_majority_serves() {
    degraded_runs(
        "lossy",
        |c, run| Fault::Lossy {
            isolate: (run == 1).then(|| c.wait_leader()),
        },
        2,
    );
}
