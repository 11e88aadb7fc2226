//! Key-manager HA: three `strongroom server` raft nodes as processes on loopback.
//!
//! - kill -9 the active node under mixed concurrent load (KV writes, token creates, transit
//!   key rotations, volume creates by the volume manager, every client given all three
//!   addresses): every acknowledged change is on the new active node, and still there after
//!   a full restart;
//! - a rolling restart of all three nodes under load: no request fails beyond the documented
//!   retry.
//!
//! Partitions and the linearizability runs are in kms_ha_partition.rs, the clients'
//! failover (vault-client, CLI, volume manager) in kms_ha_clients.rs.

mod kms_ha_common;

use kms_ha_common::{kv_map, wait_for, Cluster};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use strongroom_vault_client::{
    retry, Client, ClientConfig, MountInput, SecretString, TokenCreateRequest,
};
use strongroom_volume::tenant::{self, TenantLayout};
use strongroom_volume::{
    CreateRequest, Credential, FsType, KmsConfig, Manager, ManagerConfig, ProtectionRequest,
};

/// A client of the whole cluster (all three addresses), starting at node `first`.
fn cluster_client(c: &Cluster, first: usize, token: &str) -> Client {
    let mut addrs = c.addrs();
    let n = addrs.len();
    addrs.rotate_left(first % n);
    let mut cfg = ClientConfig::with_addresses(addrs).with_token(token);
    cfg.timeout = Duration::from_secs(10);
    Client::new(cfg).unwrap()
}

fn layout() -> TenantLayout {
    TenantLayout {
        transit_mount: "transit".into(),
        kv2_mount: Some("secret".into()),
        kv1_mount: None,
    }
}

/// What the load got acknowledged, per kind.
#[derive(Default)]
struct Acked {
    kv: Mutex<Vec<(String, String)>>,
    tokens: Mutex<Vec<SecretString>>,
    rotations: Mutex<u64>,
    /// Unix second each acknowledged rotation was answered in (for the diagnosis of a
    /// missing version: transit records each version's creation second).
    rotated_at: Mutex<Vec<u64>>,
    volumes: Mutex<Vec<String>>,
    /// The first acknowledgement of a request sent after the kill.
    first_after_kill: Mutex<Option<Instant>>,
    killed_at: Mutex<Option<Instant>>,
    failed: Mutex<u64>,
}

impl Acked {
    /// Count a request's outcome; after a failure the worker pauses a little (no busy loop
    /// while there is no active node).
    fn note(&self, sent: Instant, ok: bool) {
        if !ok {
            *self.failed.lock().unwrap() += 1;
            std::thread::sleep(Duration::from_millis(20));
        } else if self.killed_at.lock().unwrap().is_some_and(|k| sent > k) {
            self.first_after_kill
                .lock()
                .unwrap()
                .get_or_insert(Instant::now());
        }
    }
}

struct Load<'a> {
    c: &'a Cluster,
    acked: &'a Acked,
    stop: &'a AtomicBool,
    tenant_token: SecretString,
    vol_root: std::path::PathBuf,
}

impl Load<'_> {
    fn kv(&self, w: usize) {
        let cl = cluster_client(self.c, w, &self.c.token);
        let mut i = 0;
        while !self.stop.load(Ordering::SeqCst) {
            let (path, val) = (format!("w{w}/k{i}"), format!("value-{w}-{i}"));
            let sent = Instant::now();
            let r = cl.kv1_write("kv", &path, &kv_map(&val));
            self.acked.note(sent, r.is_ok());
            if r.is_ok() {
                self.acked.kv.lock().unwrap().push((path, val));
            }
            i += 1;
        }
    }

    fn tokens(&self) {
        let cl = cluster_client(self.c, 1, &self.c.token);
        while !self.stop.load(Ordering::SeqCst) {
            let sent = Instant::now();
            let r = cl.token_create(&TokenCreateRequest::with_policies(&["default"]), None);
            let tok = r.ok().and_then(|s| s.auth).map(|a| a.client_token);
            self.acked.note(sent, tok.is_some());
            self.acked.tokens.lock().unwrap().extend(tok);
        }
    }

    fn rotations(&self) {
        let cl = cluster_client(self.c, 2, &self.c.token);
        while !self.stop.load(Ordering::SeqCst) {
            let sent = Instant::now();
            let r = tenant::rotate_tenant_key(&cl, &layout(), "t1");
            self.acked.note(sent, r.is_ok());
            if r.is_ok() {
                *self.acked.rotations.lock().unwrap() += 1;
                self.acked.rotated_at.lock().unwrap().push(unix_now());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn volumes(&self) {
        let m = manager(self.c, &self.vol_root);
        let cred = Credential::Tenant(self.tenant_token.clone());
        let mut i = 0;
        while !self.stop.load(Ordering::SeqCst) {
            let id = format!("vol{i}");
            let req = CreateRequest {
                id: id.clone(),
                tenant: "t1".into(),
                size: 16 << 20,
                protection: ProtectionRequest::envelope_for("t1"),
                store: None,
                fs_type: FsType::Ext4,
            };
            let sent = Instant::now();
            let r = m.create(&req, &cred);
            self.acked.note(sent, r.is_ok());
            if r.is_ok() {
                self.acked.volumes.lock().unwrap().push(id);
            }
            i += 1;
        }
    }
}

/// A volume manager whose key manager is the cluster (all three addresses).
fn manager(c: &Cluster, root: &std::path::Path) -> Manager {
    let mut kms = KmsConfig::with_addresses(c.addrs());
    kms.timeout = Duration::from_secs(10);
    Manager::new(ManagerConfig {
        root: root.to_path_buf(),
        cluster_id: "ha-test".into(),
        kms,
        cache_ttl: Duration::from_secs(0),
        datapath: None,
    })
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Per second: rotations acknowledged vs key versions created (where they differ is where a
/// version went missing, or a rotation ran twice).
fn rotation_seconds(acked: &[u64], key: &serde_json::Map<String, serde_json::Value>) -> String {
    let mut per: std::collections::BTreeMap<u64, (u64, u64)> = Default::default();
    for s in acked {
        per.entry(*s).or_default().0 += 1;
    }
    for v in key
        .get("keys")
        .and_then(|k| k.as_object())
        .into_iter()
        .flatten()
    {
        if let Some(t) = v.1.as_u64() {
            per.entry(t).or_default().1 += 1;
        }
    }
    per.iter()
        .filter(|(_, (a, v))| a != v)
        .map(|(s, (a, v))| format!("second {s}: {a} acknowledged, {v} versions created"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every acknowledged change is readable (tolerating the refusals right after an election).
fn check_acked(c: &Cluster, acked: &Acked, tenant_token: &SecretString, root: &std::path::Path) {
    let l = c.wait_leader();
    let admin = kms_ha_common::client(&c.nodes[l].addr(), Some(&c.token));
    let again = |n| (n, Duration::from_millis(100));
    for (path, val) in acked.kv.lock().unwrap().iter() {
        let (n, d) = again(20);
        let got = retry(n, d, || admin.kv1_read("kv", path)).unwrap();
        let got = got.unwrap_or_else(|| panic!("kv {path} lost"));
        assert_eq!(got.str("v"), Some(val.as_str()), "kv {path}");
    }
    for t in acked.tokens.lock().unwrap().iter() {
        let (n, d) = again(20);
        retry(n, d, || admin.token_lookup(t)).expect("an acknowledged token is gone");
    }
    let key = retry(20, Duration::from_millis(100), || {
        admin.transit_read_key("transit", &tenant::transit_key("t1"))
    });
    let key = key.unwrap().and_then(|s| s.data).expect("the tenant key");
    let latest = key.get("latest_version").and_then(|v| v.as_u64()).unwrap();
    let rotations = *acked.rotations.lock().unwrap();
    assert!(
        latest > rotations,
        "{rotations} acknowledged rotations, latest version {latest}\n{}",
        rotation_seconds(&acked.rotated_at.lock().unwrap(), &key)
    );
    let m = manager(c, root);
    let cred = Credential::Tenant(tenant_token.clone());
    for id in acked.volumes.lock().unwrap().iter() {
        m.open(id, &cred)
            .unwrap_or_else(|e| panic!("volume {id} does not open: {e:?}"));
    }
}

#[test]
fn kill_the_leader_under_mixed_load_no_acknowledged_change_is_lost() {
    let mut c = Cluster::start();
    let leader = c.wait_leader();
    let admin = kms_ha_common::client(&c.nodes[leader].addr(), Some(&c.token));
    admin
        .mount_enable("kv", &MountInput::of_type("kv"))
        .unwrap();
    let policy = tenant::setup_tenant(&admin, "t1", &layout()).unwrap();
    let tenant_token = tenant::create_token(&admin, &[policy.as_str()], "1h").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let vol_root = dir.path().join("volumes");
    let acked = Acked::default();
    let stop = AtomicBool::new(false);
    let load = Load {
        c: &c,
        acked: &acked,
        stop: &stop,
        tenant_token: tenant_token.clone(),
        vol_root: vol_root.clone(),
    };
    let killed = std::thread::scope(|s| {
        for w in 0..3 {
            let load = &load;
            s.spawn(move || load.kv(w));
        }
        s.spawn(|| load.tokens());
        s.spawn(|| load.rotations());
        s.spawn(|| load.volumes());
        let _stop_on_panic = kms_ha_common::StopOnDrop(&stop);
        std::thread::sleep(Duration::from_secs(3));
        let killed = Instant::now();
        *acked.killed_at.lock().unwrap() = Some(killed);
        // the test's own handle: the load threads only borrow the cluster
        kill_pid(&c, leader);
        wait_for("a change acknowledged after the kill", 60, || {
            acked.first_after_kill.lock().unwrap().is_some()
        });
        std::thread::sleep(Duration::from_secs(3));
        stop.store(true, Ordering::SeqCst);
        killed
    });
    drop(load);
    c.nodes[leader].kill(); // reap
    let failover = acked.first_after_kill.lock().unwrap().unwrap() - killed;
    eprintln!(
        "kms ha kill_under_mixed_load failover_ms={} kv={} tokens={} rotations={} volumes={} \
         failed={}",
        failover.as_millis(),
        acked.kv.lock().unwrap().len(),
        acked.tokens.lock().unwrap().len(),
        acked.rotations.lock().unwrap(),
        acked.volumes.lock().unwrap().len(),
        acked.failed.lock().unwrap(),
    );
    assert!(acked.kv.lock().unwrap().len() > 50, "too little KV load");
    assert!(!acked.tokens.lock().unwrap().is_empty(), "no token created");
    assert!(*acked.rotations.lock().unwrap() > 0, "no rotation");
    assert!(
        !acked.volumes.lock().unwrap().is_empty(),
        "no volume created"
    );
    check_acked(&c, &acked, &tenant_token, &vol_root);
    c.full_restart();
    check_acked(&c, &acked, &tenant_token, &vol_root);
}

/// SIGKILL node `i` by pid while other threads use the cluster (its `Child` is reaped later).
fn kill_pid(c: &Cluster, i: usize) {
    let pid = c.nodes[i].child.as_ref().unwrap().id().to_string();
    let st = std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .unwrap();
    assert!(st.success());
}

/// The retry the clients of a cluster are documented to use (`retry` in vault-client):
/// 6 attempts, 200 ms doubling — 6.2 s, an election and a node's restart.
const RETRY_ATTEMPTS: u32 = 6;
const RETRY_BACKOFF: Duration = Duration::from_millis(200);

#[test]
fn a_rolling_restart_under_load_fails_no_request_beyond_the_documented_retry() {
    let t0 = Instant::now();
    let mut c = Cluster::start();
    c.admin()
        .mount_enable("kv", &MountInput::of_type("kv"))
        .unwrap();
    let stop = AtomicBool::new(false);
    let acked: Mutex<Vec<(String, String)>> = Mutex::default();
    let failures: Mutex<Vec<String>> = Mutex::default();
    let (addrs, token) = (c.addrs(), c.token.clone());
    let order: Vec<usize> = {
        // followers first, the active node last (as an operator rolls a cluster)
        let l = c.wait_leader();
        (0..3).filter(|&i| i != l).chain([l]).collect()
    };
    std::thread::scope(|s| {
        for w in 0..4 {
            let (stop, acked, failures, addrs, token) = (&stop, &acked, &failures, &addrs, &token);
            s.spawn(move || {
                let mut a = addrs.clone();
                a.rotate_left(w % 3);
                let mut cfg = ClientConfig::with_addresses(a).with_token(token.as_str());
                cfg.timeout = Duration::from_secs(10);
                let cl = Client::new(cfg).unwrap();
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let (path, val) = (format!("r{w}/k{i}"), format!("{w}-{i}"));
                    let wrote = retry(RETRY_ATTEMPTS, RETRY_BACKOFF, || {
                        cl.kv1_write("kv", &path, &kv_map(&val))
                    });
                    let read = wrote.and_then(|_| {
                        retry(RETRY_ATTEMPTS, RETRY_BACKOFF, || cl.kv1_read("kv", &path))
                    });
                    match read {
                        Ok(Some(m)) if m.str("v") == Some(val.as_str()) => {
                            acked.lock().unwrap().push((path, val))
                        }
                        Ok(other) => failures
                            .lock()
                            .unwrap()
                            .push(format!("{path}: read back {:?}", other.map(|m| m.len()))),
                        Err(e) => failures.lock().unwrap().push(format!("{path}: {e}")),
                    }
                    i += 1;
                }
            });
        }
        let _stop_on_panic = kms_ha_common::StopOnDrop(&stop);
        std::thread::sleep(Duration::from_secs(1));
        for &i in &order {
            c.nodes[i].stop();
            std::thread::sleep(Duration::from_millis(300));
            c.nodes[i].start();
            c.unseal(i);
            wait_for("the restarted node to serve", 60, || {
                kms_ha_common::client(&c.nodes[i].addr(), None)
                    .health()
                    .is_ok_and(|h| !h.sealed)
            });
            std::thread::sleep(Duration::from_secs(1));
        }
        stop.store(true, Ordering::SeqCst);
    });
    let failures = failures.into_inner().unwrap();
    let acked = acked.into_inner().unwrap();
    eprintln!(
        "kms ha rolling_restart requests={} failed_after_retry={} wall_s={:.1}",
        acked.len() + failures.len(),
        failures.len(),
        t0.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "failed beyond the retry: {failures:#?}"
    );
    assert!(acked.len() > 50, "too little load: {}", acked.len());
    let admin = c.admin();
    for (path, val) in &acked {
        let got = retry(RETRY_ATTEMPTS, RETRY_BACKOFF, || admin.kv1_read("kv", path));
        let got = got.unwrap().unwrap_or_else(|| panic!("{path} lost"));
        assert_eq!(got.str("v"), Some(val.as_str()));
    }
}

/// `sys/step-down` five times under read load, every client talking to one node without
/// retries. A read that reached the active node as it stepped down found at its read
/// barrier that the node no longer led, and was answered 500 ("local node not active…");
/// it is now sent on to the new active node, as a standby sends it. Reads change nothing,
/// so no read may fail, and every one returns the value written before.
#[test]
fn reads_through_every_node_across_step_downs_all_succeed() {
    let t0 = Instant::now();
    let c = Cluster::start();
    let admin = c.admin();
    admin
        .mount_enable("kv", &MountInput::of_type("kv"))
        .unwrap();
    admin.kv1_write("kv", "k", &kv_map("before")).unwrap();
    let stop = AtomicBool::new(false);
    let reads = std::sync::atomic::AtomicUsize::new(0);
    let failures: Mutex<Vec<String>> = Mutex::default();
    let (addrs, token) = (c.addrs(), c.token.clone());
    let mut rounds = Vec::new();
    std::thread::scope(|s| {
        for w in 0..6 {
            let (stop, reads, failures) = (&stop, &reads, &failures);
            let cl = kms_ha_common::client_timeout(
                &addrs[w % 3],
                Some(token.as_str()),
                Duration::from_secs(30),
            );
            s.spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match cl.kv1_read("kv", "k") {
                        Ok(Some(m)) if m.str("v") == Some("before") => {
                            reads.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(other) => failures.lock().unwrap().push(format!(
                            "node {}: read {:?}",
                            w % 3,
                            other.map(|m| m.len())
                        )),
                        Err(e) => failures
                            .lock()
                            .unwrap()
                            .push(format!("node {}: {e}", w % 3)),
                    }
                }
            });
        }
        let _stop_on_panic = kms_ha_common::StopOnDrop(&stop);
        std::thread::sleep(Duration::from_millis(500));
        for _ in 0..5 {
            let old = c.wait_leader();
            let before = reads.load(Ordering::SeqCst);
            let t = Instant::now();
            kms_ha_common::client(&c.nodes[old].addr(), Some(c.token.as_str()))
                .write("sys/step-down", None)
                .unwrap();
            wait_for("another active node", 30, || {
                c.leader().is_some_and(|l| l != old)
            });
            rounds.push((t.elapsed().as_millis(), before));
            eprintln!(
                "step-down {} of node {old}: {:?}",
                rounds.len(),
                t.elapsed()
            );
            std::thread::sleep(Duration::from_millis(700));
        }
        stop.store(true, Ordering::SeqCst);
    });
    let failures = failures.into_inner().unwrap();
    let reads = reads.into_inner();
    eprintln!(
        "kms ha step_downs reads={reads} failed={} wall_s={:.1} rounds(ms, reads before)={rounds:?}",
        failures.len(),
        t0.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "reads failed: {failures:#?}");
    assert!(reads > 200, "too little load: {reads}");
}
