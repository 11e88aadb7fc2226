//! Sealing a node of a three-node key-manager cluster (processes on loopback), as OpenBao
//! 2.7 does it (measured on real `bao server` raft nodes: see `sealed` in
//! crates/kms/src/ha/endpoints.rs):
//!
//! - `bao operator seal` on the active node: it gives up the raft leadership, another node
//!   is active within the election time and serves; the sealed node answers `sys/health`
//!   503 (sealed, standby), `sys/leader` and `sys/ha-status` 503, stays a voter and is not
//!   elected again while sealed (not even when the node that took over dies: the third
//!   node is elected with the sealed node's vote); unsealed, it rejoins as a standby (429).
//!   No acknowledged write is lost.
//! - `bao operator seal` on a standby seals that standby, not the active node.

mod common;
mod kms_ha_common;

use common::{Cli, CliKind};
use kms_ha_common::{client_timeout, kv2_mount, kv_map, wait_for, Cluster, StopOnDrop};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use strongroom_vault_client::{retry, Error};

/// One KV v2 write of a fresh key through one node, and when it was acknowledged.
#[derive(Debug, Clone)]
struct Write {
    node: usize,
    key: String,
    val: String,
    start: Instant,
    acked: Option<Instant>,
}

/// Writers of fresh keys through every node in turn until `stop`; every attempt recorded.
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
                .map(|a| client_timeout(a, Some(&c.token), Duration::from_secs(5)))
                .collect();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let node = (w + i) % 3;
                let (key, val) = (format!("w{w}/{i}"), format!("{w}-{i}"));
                let start = Instant::now();
                let r = clients[node].kv2_write("p", &key, &kv_map(&val), None);
                let acked = r.is_ok().then(Instant::now);
                if acked.is_none() {
                    std::thread::sleep(Duration::from_millis(20)); // no busy loop on a sealed node
                }
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

/// `bao operator seal` against node `i`.
fn bao_seal(c: &Cluster, i: usize) {
    let out = Cli::new(CliKind::Bao, &c.nodes[i].addr())
        .with_token(&c.token)
        .run(&["operator", "seal"]);
    out.expect_code(0, "bao operator seal");
    assert!(out.stdout.contains("Vault is sealed"), "{}", out.stdout);
}

/// What the sealed node `i` answers: as OpenBao's sealed cluster member.
fn assert_sealed_answers(c: &Cluster, i: usize) {
    let cl = client_timeout(&c.nodes[i].addr(), Some(&c.token), Duration::from_secs(5));
    let h = cl.health().unwrap();
    assert_eq!((h.status, h.sealed, h.standby), (503, true, true), "{h:?}");
    let leader = cl.leader().unwrap_err();
    assert!(matches!(leader, Error::Sealed(_)), "sys/leader: {leader:?}");
    let ha = cl.read("sys/ha-status").unwrap_err();
    assert!(matches!(ha, Error::Sealed(_)), "sys/ha-status: {ha:?}");
}

/// The raft configuration as node `on` reports it: (node id, leader, voter) per member.
fn raft_config(c: &Cluster, on: usize) -> Vec<(String, bool, bool)> {
    let cl = client_timeout(&c.nodes[on].addr(), Some(&c.token), Duration::from_secs(5));
    let s = cl.read("sys/storage/raft/configuration").unwrap().unwrap();
    let servers = s.data.unwrap()["config"]["servers"].clone();
    let mut v: Vec<_> = servers
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["node_id"].as_str().unwrap().to_string(),
                s["leader"] == true,
                s["voter"] == true,
            )
        })
        .collect();
    v.sort();
    v
}

/// Every acknowledged write is readable with its value through every node.
fn check_acknowledged(c: &Cluster, log: &[Write]) {
    for addr in c.addrs() {
        let cl = client_timeout(&addr, Some(&c.token), Duration::from_secs(10));
        for w in log.iter().filter(|w| w.acked.is_some()) {
            let got = retry(20, Duration::from_millis(100), || {
                cl.kv2_read("p", &w.key, None)
            });
            let got = got
                .unwrap()
                .unwrap_or_else(|| panic!("{} lost on {addr}", w.key));
            assert_eq!(
                got.data.str("v"),
                Some(w.val.as_str()),
                "{} on {addr}",
                w.key
            );
        }
    }
}

#[test]
fn the_sealed_active_node_steps_down_another_serves_and_it_rejoins_as_standby_when_unsealed() {
    let t0 = Instant::now();
    let mut c = Cluster::start();
    let old = c.wait_leader();
    c.admin().mount_enable("p", &kv2_mount()).unwrap();
    let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let (stop, log) = (AtomicBool::new(false), Mutex::new(Vec::new()));
    let (mut sealed_at, mut seal_returned, mut active_at) = (t0, t0, t0);
    let (mut unseal_sent, mut unsealed_at) = (t0, t0);
    let mut new = old;
    std::thread::scope(|s| {
        writers(s, &c, &stop, &log);
        let _stop_on_panic = StopOnDrop(&stop);
        std::thread::sleep(Duration::from_secs(1));
        sealed_at = Instant::now();
        bao_seal(&c, old);
        seal_returned = Instant::now();
        new = c.wait_leader_among(&others);
        active_at = Instant::now();
        assert_sealed_answers(&c, old);
        for &o in &others {
            assert_eq!(c.leader_seen_by(o), Some(new), "node {o}'s leader");
        }
        // the sealed node stays a voter, and is not elected again while sealed (longer
        // than the longest election timeout)
        std::thread::sleep(Duration::from_secs(3));
        for &o in &others {
            assert_eq!(c.leader_seen_by(o), Some(new), "re-elected while sealed?");
        }
        let cfg = raft_config(&c, new);
        let leaders: Vec<_> = cfg.iter().filter(|m| m.1).map(|m| m.0.clone()).collect();
        assert_eq!(leaders, [c.nodes[new].name.clone()], "{cfg:?}");
        assert!(
            cfg.iter().all(|m| m.2),
            "every member still a voter: {cfg:?}"
        );
        // the survivors serve: acknowledged writes through both after the new one is active
        wait_for("writes acknowledged through both survivors", 30, || {
            let l = log.lock().unwrap();
            others.iter().all(|&o| {
                let ok = |w: &&Write| w.node == o && w.start > active_at && w.acked.is_some();
                l.iter().filter(ok).count() >= 3
            })
        });
        unseal_sent = Instant::now();
        c.unseal(old);
        unsealed_at = Instant::now();
        let cl = client_timeout(&c.nodes[old].addr(), None, Duration::from_secs(2));
        wait_for("the unsealed node to be a standby", 30, || {
            cl.health()
                .is_ok_and(|h| h.status == 429 && h.standby && !h.sealed)
        });
        assert_eq!(c.leader_seen_by(old), Some(new));
        wait_for("writes acknowledged through the unsealed node", 30, || {
            let l = log.lock().unwrap();
            let ok = |w: &&Write| w.node == old && w.start > unsealed_at && w.acked.is_some();
            l.iter().filter(ok).count() >= 3
        });
        stop.store(true, Ordering::SeqCst);
    });
    sealed_node_is_never_elected(&mut c);
    let log = log.into_inner().unwrap();
    let while_sealed =
        |w: &&Write| w.node == old && w.start > seal_returned && w.start < unseal_sent;
    let sealed_acked = log
        .iter()
        .filter(while_sealed)
        .filter(|w| w.acked.is_some());
    assert_eq!(
        sealed_acked.count(),
        0,
        "the sealed node acknowledged writes"
    );
    check_acknowledged(&c, &log);
    // the longest time without an acknowledged write around the seal: the failover window
    let mut acks: Vec<Instant> = log.iter().filter_map(|w| w.acked).collect();
    acks.sort();
    let gap = acks
        .windows(2)
        .filter(|p| p[1] > sealed_at && p[0] < active_at + Duration::from_secs(1))
        .map(|p| p[1] - p[0])
        .max()
        .unwrap_or_default();
    let ms = |t: Instant| (t - sealed_at).as_millis();
    eprintln!(
        "kms ha seal: seal_call_ms={} new_active_ms={} no_write_acked_ms={} writes={} acked={} \
         wall_s={:.1}",
        ms(seal_returned),
        ms(active_at),
        gap.as_millis(),
        log.len(),
        log.iter().filter(|w| w.acked.is_some()).count(),
        t0.elapsed().as_secs_f64()
    );
}

/// Seal the active node, then kill the one that took over: the third node must be elected
/// (with the sealed node's vote), never the sealed one. Then everything back.
fn sealed_node_is_never_elected(c: &mut Cluster) {
    let sealed = c.wait_leader();
    bao_seal(c, sealed);
    let others: Vec<usize> = (0..3).filter(|&i| i != sealed).collect();
    let took_over = c.wait_leader_among(&others);
    let third = others.into_iter().find(|&i| i != took_over).unwrap();
    c.nodes[took_over].kill();
    assert_eq!(c.wait_leader_among(&[third]), third);
    assert_sealed_answers(c, sealed);
    c.nodes[took_over].start();
    c.unseal(took_over);
    c.unseal(sealed);
    wait_for("three unsealed nodes, one active", 30, || {
        let healthy = (0..3).filter(|&i| {
            client_timeout(&c.nodes[i].addr(), None, Duration::from_secs(2))
                .health()
                .is_ok_and(|h| !h.sealed && (h.status == 200 || h.status == 429))
        });
        healthy.count() == 3
    });
}

#[test]
fn sealing_a_standby_seals_that_standby_not_the_active_node() {
    let c = Cluster::start();
    let active = c.wait_leader();
    let standby = (active + 1) % 3;
    bao_seal(&c, standby);
    assert_sealed_answers(&c, standby);
    let h = client_timeout(&c.nodes[active].addr(), None, Duration::from_secs(5))
        .health()
        .unwrap();
    assert_eq!(
        (h.status, h.sealed, h.standby),
        (200, false, false),
        "{h:?}"
    );
    assert_eq!(c.leader_seen_by((active + 2) % 3), Some(active));
    c.unseal(standby);
    let cl = client_timeout(&c.nodes[standby].addr(), None, Duration::from_secs(2));
    wait_for("the standby unsealed again", 30, || {
        cl.health().is_ok_and(|h| h.status == 429 && !h.sealed)
    });
    assert_eq!(c.wait_leader(), active, "the active node changed");
}
