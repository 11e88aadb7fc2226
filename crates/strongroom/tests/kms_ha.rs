//! Key-manager HA: three `strongroom server` raft nodes as processes on loopback.
//!
//! - kill -9 the active node under concurrent writers sent to every node: every
//!   acknowledged write is on the new active node, and still there after a full restart;
//! - single-key histories (write, read, check-and-set through all nodes, with kills and
//!   restarts) checked for linearizability by a small Wing–Gong checker.

use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use strongroom_vault_client::{retry, Client, ClientConfig, InitRequest, MountInput, SecretString};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Node {
    name: String,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Node {
    fn new(root: &std::path::Path, n: usize) -> Self {
        let name = format!("node{n}");
        let dir = root.join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let cport = free_port();
        let hcl = format!(
            "storage \"raft\" {{\n path = \"{d}/data\"\n node_id = \"{name}\"\n}}\n\
             listener \"tcp\" {{\n address = \"127.0.0.1:{port}\"\n tls_disable = true\n}}\n\
             api_addr = \"http://127.0.0.1:{port}\"\n\
             cluster_addr = \"https://127.0.0.1:{cport}\"\ndisable_mlock = true\n",
            d = dir.display()
        );
        std::fs::write(dir.join("server.hcl"), hcl).unwrap();
        let mut n = Node {
            name,
            dir,
            port,
            child: None,
        };
        n.start();
        n
    }

    fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_strongroom"))
            .args(["server", "-config"])
            .arg(self.dir.join("server.hcl"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "{} did not listen", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn client(addr: &str, token: Option<&str>) -> Client {
    let mut c = ClientConfig::new(addr.to_owned());
    if let Some(t) = token {
        c = c.with_token(t);
    }
    Client::new(c).unwrap()
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Cluster {
    _root: tempfile::TempDir,
    nodes: Vec<Node>,
    key: String,
    token: String,
}

impl Cluster {
    /// Three nodes: node1 initialized, 2 and 3 joined, all unsealed and voters.
    fn start() -> Self {
        let root = tempfile::tempdir().unwrap();
        let nodes: Vec<Node> = (1..=3).map(|n| Node::new(root.path(), n)).collect();
        let anon = client(&nodes[0].addr(), None);
        let init = anon.init(&InitRequest::shamir(1, 1)).unwrap();
        let key = init.keys[0].expose().to_owned();
        let token = init.root_token.expose().to_owned();
        anon.unseal(&SecretString::new(key.clone())).unwrap();
        for n in &nodes[1..] {
            let c = client(&n.addr(), None);
            let body = json!({"leader_api_addr": nodes[0].addr()});
            c.write("sys/storage/raft/join", Some(&body)).unwrap();
            // catching up may outlast one unseal call on a loaded machine: unseal again
            let unsealed = retry(5, Duration::from_millis(200), || {
                c.unseal(&SecretString::new(key.clone()))
            });
            unsealed.unwrap_or_else(|e| panic!("unsealing joined {}: {e}", n.name));
        }
        let c = Cluster {
            _root: root,
            nodes,
            key,
            token,
        };
        wait_for("three voters", 60, || {
            let s = client(&c.nodes[0].addr(), Some(&c.token))
                .read("sys/storage/raft/configuration")
                .ok()
                .flatten();
            let servers = s.and_then(|s| s.data.and_then(|d| d.get("config").cloned()));
            servers.is_some_and(|cfg| {
                let v = &cfg["servers"];
                v.as_array()
                    .is_some_and(|a| a.len() == 3 && a.iter().all(|s| s["voter"] == json!(true)))
            })
        });
        c
    }

    fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(Node::addr).collect()
    }

    /// The index of the active node, as the nodes that answer say.
    fn leader(&self) -> Option<usize> {
        for n in self.nodes.iter().filter(|n| n.child.is_some()) {
            let Ok(v) = client(&n.addr(), None).leader() else {
                continue;
            };
            let Some(addr) = v.get("leader_address").and_then(Value::as_str) else {
                continue;
            };
            if let Some(i) = self.nodes.iter().position(|m| m.addr() == addr) {
                if self.nodes[i].child.is_some() {
                    return Some(i);
                }
            }
        }
        None
    }

    fn unseal(&self, i: usize) {
        let c = client(&self.nodes[i].addr(), None);
        wait_for("unseal", 30, || {
            c.unseal(&SecretString::new(self.key.clone())).is_ok()
        });
    }

    fn wait_leader(&self) -> usize {
        let mut l = None;
        wait_for("an active node", 60, || {
            l = self.leader();
            l.is_some_and(|i| {
                client(&self.nodes[i].addr(), None)
                    .health()
                    .is_ok_and(|h| !h.standby && !h.sealed)
            })
        });
        l.unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for n in &self.nodes {
                let log = std::fs::read_to_string(n.dir.join("server.log")).unwrap_or_default();
                let tail: Vec<&str> = log
                    .lines()
                    .filter(|l| l.contains("strongroom") || l.contains("INFO"))
                    .rev()
                    .take(40)
                    .collect();
                eprintln!("--- {} log (last lines)", n.name);
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

fn kv_map(v: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("v".into(), json!(v));
    m
}

#[test]
fn kill_the_leader_under_load_no_acknowledged_write_is_lost() {
    let mut c = Cluster::start();
    let leader = c.wait_leader();
    let admin = client(&c.nodes[leader].addr(), Some(&c.token));
    admin
        .mount_enable("kv", &MountInput::of_type("kv"))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let first_after_kill: Arc<Mutex<Option<Instant>>> = Arc::default();
    let killed_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let addrs = c.addrs();
    let (acked, failed) = std::thread::scope(|s| {
        let writers: Vec<_> = (0..6)
            .map(|w| {
                let stop = stop.clone();
                let addrs = addrs.clone();
                let token = c.token.clone();
                let first = first_after_kill.clone();
                let killed = killed_at.clone();
                s.spawn(move || {
                    let clients: Vec<Client> =
                        addrs.iter().map(|a| client(a, Some(&token))).collect();
                    let (mut ok, mut failed) = (vec![], 0);
                    let mut i = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let path = format!("w{w}/k{i}");
                        let val = format!("value-{w}-{i}");
                        let sent = Instant::now();
                        match clients[(w + i) % clients.len()].kv1_write("kv", &path, &kv_map(&val))
                        {
                            Ok(_) => {
                                if killed.lock().unwrap().is_some_and(|k| sent > k) {
                                    first.lock().unwrap().get_or_insert(Instant::now());
                                }
                                ok.push((path, val));
                            }
                            Err(_) => failed += 1,
                        }
                        i += 1;
                    }
                    (ok, failed)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(2));
        *killed_at.lock().unwrap() = Some(Instant::now());
        c.nodes[leader].kill();
        // load until the new leader has taken writes for a while
        wait_for("a write acknowledged after the kill", 60, || {
            first_after_kill.lock().unwrap().is_some()
        });
        std::thread::sleep(Duration::from_secs(2));
        stop.store(true, Ordering::SeqCst);
        let mut acked = vec![];
        let mut failed = 0;
        for h in writers {
            let (a, f) = h.join().unwrap();
            acked.extend(a);
            failed += f;
        }
        (acked, failed)
    });
    let failover = first_after_kill.lock().unwrap().unwrap() - killed_at.lock().unwrap().unwrap();
    eprintln!(
        "kms ha failover strongroom_ms={} acked={} failed={failed}",
        failover.as_millis(),
        acked.len()
    );
    assert!(acked.len() > 100, "too little load: {}", acked.len());

    let check = |c: &Cluster, when: &str| {
        let l = c.wait_leader();
        let reader = client(&c.nodes[l].addr(), Some(&c.token));
        for (path, val) in &acked {
            // right after an election a request may be refused (500): clients retry
            let got = retry(20, Duration::from_millis(100), || {
                reader.kv1_read("kv", path)
            })
            .unwrap()
            .unwrap_or_else(|| panic!("{path} lost {when}"));
            assert_eq!(got.str("v"), Some(val.as_str()), "{path} {when}");
        }
    };
    check(&c, "after failover");

    // full restart: every node killed, started, unsealed
    for n in &mut c.nodes {
        n.kill();
    }
    for i in 0..3 {
        c.nodes[i].start();
    }
    for i in 0..3 {
        c.unseal(i);
    }
    check(&c, "after a full restart");
}

// ---------------------------------------------------------------- linearizability

#[derive(Debug, Clone, PartialEq)]
enum Op {
    /// An unconditional write; `Some(v)`: acknowledged as version v.
    Write(String, Option<u64>),
    /// A read: the value and version seen (`None`: no value yet).
    Read(Option<(String, u64)>),
    /// Check-and-set at `expected`; `Some(Some(v))`: done as version v, `Some(None)`:
    /// refused (version mismatch), `None`: outcome unknown.
    Cas(u64, String, Option<Option<u64>>),
}

#[derive(Debug, Clone)]
struct Event {
    start: Instant,
    /// `None`: no answer (the operation may or may not have happened).
    end: Option<Instant>,
    op: Op,
}

/// The register: (value, version); version 0 is "never written".
type State = (Option<String>, u64);

/// Apply `op` to `s` if the model allows what the client observed.
fn step(s: &State, op: &Op) -> Option<State> {
    match op {
        Op::Write(v, seen) => {
            let n = s.1 + 1;
            (seen.is_none() || *seen == Some(n)).then(|| (Some(v.clone()), n))
        }
        Op::Read(seen) => {
            let now = s.0.clone().map(|v| (v, s.1));
            (now == *seen).then(|| s.clone())
        }
        Op::Cas(expected, v, outcome) => {
            let matches = s.1 == *expected;
            match outcome {
                Some(None) => (!matches).then(|| s.clone()),
                Some(Some(n)) => (matches && *n == s.1 + 1).then(|| (Some(v.clone()), *n)),
                None => matches.then(|| (Some(v.clone()), s.1 + 1)),
            }
        }
    }
}

/// Wing–Gong search with memoization: is there an order of the events, consistent with
/// real time, in which every answered event happened and the register explains every
/// answer? Unanswered events may be left out.
fn linearizable(events: &[Event]) -> bool {
    use std::collections::HashSet;
    let n = events.len();
    let far = Instant::now() + Duration::from_secs(86400);
    let end = |e: &Event| e.end.unwrap_or(far);
    let mut seen: HashSet<(Vec<bool>, State)> = HashSet::new();
    let mut stack: Vec<(Vec<bool>, State)> = vec![(vec![false; n], (None, 0))];
    while let Some((done, s)) = stack.pop() {
        if (0..n).all(|i| done[i] || events[i].end.is_none()) {
            return true;
        }
        if !seen.insert((done.clone(), s.clone())) {
            continue;
        }
        // an event may go next if it started before every pending answered event ended
        let horizon = (0..n)
            .filter(|&i| !done[i])
            .map(|i| end(&events[i]))
            .min()
            .unwrap_or(far);
        for i in (0..n).filter(|&i| !done[i] && events[i].start <= horizon) {
            if let Some(next) = step(&s, &events[i].op) {
                let mut d = done.clone();
                d[i] = true;
                stack.push((d, next));
            }
        }
    }
    false
}

#[test]
fn the_checker_finds_a_stale_read() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let ev = |s, e, op| Event {
        start: at(s),
        end: Some(at(e)),
        op,
    };
    let ok = vec![
        ev(0, 10, Op::Write("a".into(), Some(1))),
        ev(5, 20, Op::Read(None)), // concurrent with the write: may precede it
        ev(30, 40, Op::Read(Some(("a".into(), 1)))),
        ev(35, 50, Op::Cas(1, "b".into(), Some(Some(2)))),
        ev(45, 60, Op::Cas(1, "c".into(), Some(None))),
    ];
    assert!(linearizable(&ok));
    // a read after an acknowledged write returning the older value
    let stale = vec![
        ev(0, 10, Op::Write("a".into(), Some(1))),
        ev(20, 30, Op::Write("b".into(), Some(2))),
        ev(40, 50, Op::Read(Some(("a".into(), 1)))),
    ];
    assert!(!linearizable(&stale));
    // an unanswered write may have happened, or not
    let unknown = vec![
        ev(0, 10, Op::Write("a".into(), Some(1))),
        Event {
            start: at(20),
            end: None,
            op: Op::Write("x".into(), None),
        },
        ev(40, 50, Op::Read(Some(("a".into(), 1)))),
        ev(60, 70, Op::Read(Some(("x".into(), 2)))),
    ];
    assert!(linearizable(&unknown));
    let lost = vec![
        ev(0, 10, Op::Write("a".into(), Some(1))),
        ev(20, 30, Op::Read(None)),
    ];
    assert!(!linearizable(&lost));
}

fn kv2_op(c: &Client, w: usize, i: usize, rng: u64) -> Op {
    let val = format!("{w}-{i}");
    match rng % 3 {
        0 => match c.kv2_write("lin", "key", &kv_map(&val), None) {
            Ok(m) => Op::Write(val, Some(m.version)),
            Err(_) => Op::Write(val, None),
        },
        1 => match c.kv2_read("lin", "key", None) {
            Ok(Some(s)) => Op::Read(Some((
                s.data.str("v").unwrap_or_default().to_string(),
                s.metadata.version,
            ))),
            Ok(None) => Op::Read(None),
            Err(_) => Op::Read(Some(("<error>".into(), u64::MAX))),
        },
        _ => {
            let expected = match c.kv2_read("lin", "key", None) {
                Ok(Some(s)) => s.metadata.version,
                Ok(None) => 0,
                Err(_) => 0,
            };
            match c.kv2_write("lin", "key", &kv_map(&val), Some(expected)) {
                Ok(m) => Op::Cas(expected, val, Some(Some(m.version))),
                Err(e) if e.to_string().contains("check-and-set") => {
                    Op::Cas(expected, val, Some(None))
                }
                Err(_) => Op::Cas(expected, val, None),
            }
        }
    }
}

#[test]
fn single_key_histories_are_linearizable_through_kills_and_restarts() {
    let runs: u64 = std::env::var("HA_LIN_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut c = Cluster::start();
    let l = c.wait_leader();
    client(&c.nodes[l].addr(), Some(&c.token))
        .mount_enable("lin", &{
            let mut m = MountInput::of_type("kv");
            let mut o = Map::new();
            o.insert("version".into(), json!("2"));
            m.options = Some(o);
            m
        })
        .unwrap();
    let addrs = c.addrs();
    let mut total = 0;
    for run in 0..runs {
        // each run: a fresh key history, 3 clients on all nodes, one node killed and
        // restarted (the leader on even runs) while they work
        let admin = client(&c.nodes[c.wait_leader()].addr(), Some(&c.token));
        retry(20, Duration::from_millis(100), || {
            admin.delete("lin/metadata/key")
        })
        .unwrap();
        let events: Mutex<Vec<Event>> = Mutex::default();
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            for w in 0..3 {
                let (addrs, token, events, stop) = (&addrs, &c.token, &events, &stop);
                s.spawn(move || {
                    let clients: Vec<Client> =
                        addrs.iter().map(|a| client(a, Some(token))).collect();
                    let mut i = 0;
                    let mut rng = (run * 7919 + w as u64 * 104729) | 1;
                    while !stop.load(Ordering::SeqCst) && i < 40 {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        let start = Instant::now();
                        let op = kv2_op(&clients[(rng as usize >> 3) % 3], w, i, rng);
                        let answered = !matches!(&op, Op::Write(_, None) | Op::Cas(_, _, None));
                        if matches!(&op, Op::Read(Some((v, _))) if v == "<error>") {
                            i += 1;
                            continue; // a failed read says nothing
                        }
                        let end = answered.then(Instant::now);
                        events.lock().unwrap().push(Event { start, end, op });
                        i += 1;
                    }
                });
            }
            std::thread::sleep(Duration::from_millis(300));
            let victim = if run % 2 == 0 {
                c.leader().unwrap_or(0)
            } else {
                (run as usize) % 3
            };
            c.nodes[victim].kill();
            std::thread::sleep(Duration::from_millis(700));
            c.nodes[victim].start();
            c.unseal(victim);
            std::thread::sleep(Duration::from_millis(300));
            stop.store(true, Ordering::SeqCst);
        });
        let events = events.into_inner().unwrap();
        total += events.len();
        assert!(
            linearizable(&events),
            "run {run}: history not linearizable: {events:#?}"
        );
    }
    eprintln!("kms ha linearizability runs={runs} operations={total} violations=0");
}
