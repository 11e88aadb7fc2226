//! Three `strongroom server` raft nodes for the HA tests: processes on loopback, or each in
//! its own network namespace (made by [`Net`]) so that a test can cut a node off the others.
#![allow(dead_code)] // each test binary uses a part

pub mod lin;
pub mod net;

use net::Net;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use strongroom_vault_client::{retry, Client, ClientConfig, InitRequest, MountInput, SecretString};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where a node listens: `client` is what the test's clients use, `api` what the node
/// advertises to the others (`api_addr`, the address `sys/leader` reports).
struct Addrs {
    listen: String,
    client: String,
    api: String,
    cluster: String,
}

pub struct Node {
    pub name: String,
    pub dir: PathBuf,
    addrs: Addrs,
    /// The network namespace the node runs in (`None`: loopback).
    netns: Option<String>,
    pub child: Option<Child>,
}

impl Node {
    fn new(root: &Path, n: usize, net: Option<&Net>) -> Self {
        let name = format!("node{n}");
        let dir = root.join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let addrs = match net {
            None => {
                let (port, cport) = (free_port(), free_port());
                Addrs {
                    listen: format!("127.0.0.1:{port}"),
                    client: format!("127.0.0.1:{port}"),
                    api: format!("127.0.0.1:{port}"),
                    cluster: format!("127.0.0.1:{cport}"),
                }
            }
            // every node has its own namespace, so every node may use the same ports
            Some(net) => Addrs {
                listen: "0.0.0.0:8200".into(),
                client: format!("{}:8200", net.host_side_ip(n - 1)),
                api: format!("{}:8200", net.cluster_ip(n - 1)),
                cluster: format!("{}:8201", net.cluster_ip(n - 1)),
            },
        };
        let hcl = format!(
            "storage \"raft\" {{\n path = \"{d}/data\"\n node_id = \"{name}\"\n}}\n\
             listener \"tcp\" {{\n address = \"{listen}\"\n tls_disable = true\n}}\n\
             api_addr = \"http://{api}\"\n\
             cluster_addr = \"https://{cluster}\"\ndisable_mlock = true\n",
            d = dir.display(),
            listen = addrs.listen,
            api = addrs.api,
            cluster = addrs.cluster,
        );
        std::fs::write(dir.join("server.hcl"), hcl).unwrap();
        let mut node = Node {
            name,
            dir,
            addrs,
            netns: net.map(|net| net.node_ns(n - 1)),
            child: None,
        };
        node.start();
        node
    }

    /// The address the test's clients use.
    pub fn addr(&self) -> String {
        format!("http://{}", self.addrs.client)
    }

    /// The address the node advertises to the cluster (`leader_address`).
    pub fn api_addr(&self) -> String {
        format!("http://{}", self.addrs.api)
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .unwrap();
        let bin = env!("CARGO_BIN_EXE_strongroom");
        // `ip netns exec` execs the server in place: the child's pid is the server's
        let mut cmd = match &self.netns {
            None => Command::new(bin),
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, bin]);
                c
            }
        };
        let child = cmd
            .args(["server", "-config"])
            .arg(self.dir.join("server.hcl"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let sock: std::net::SocketAddr = self.addrs.client.parse().unwrap();
        while std::net::TcpStream::connect_timeout(&sock, Duration::from_millis(500)).is_err() {
            assert!(Instant::now() < deadline, "{} did not listen", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// kill -9.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait for the process to end (a graceful stop).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = c.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while c.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = c.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn client(addr: &str, token: Option<&str>) -> Client {
    client_timeout(addr, token, Duration::from_secs(60))
}

/// A client whose requests give up after `timeout` (a node cut off by a partition does not
/// answer at all).
pub fn client_timeout(addr: &str, token: Option<&str>, timeout: Duration) -> Client {
    let mut c = ClientConfig::new(addr.to_owned());
    c.timeout = timeout;
    c.connect_timeout = timeout;
    if let Some(t) = token {
        c = c.with_token(t);
    }
    Client::new(c).unwrap()
}

pub fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn kv_map(v: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("v".into(), json!(v));
    m
}

pub fn kv2_mount() -> MountInput {
    let mut m = MountInput::of_type("kv");
    let mut o = Map::new();
    o.insert("version".into(), json!("2"));
    m.options = Some(o);
    m
}

pub struct Cluster {
    // dropped in this order: the processes first, then the namespaces they ran in
    pub nodes: Vec<Node>,
    pub net: Option<Net>,
    _root: tempfile::TempDir,
    pub key: String,
    pub token: String,
}

impl Cluster {
    /// Three nodes on loopback: node1 initialized, 2 and 3 joined, all unsealed and voters.
    pub fn start() -> Self {
        Self::start_on(None)
    }

    /// Three nodes, each in its own network namespace.
    pub fn start_in_namespaces() -> Self {
        Self::start_on(Some(Net::new(3)))
    }

    fn start_on(net: Option<Net>) -> Self {
        let root = tempfile::tempdir().unwrap();
        let nodes: Vec<Node> = (1..=3)
            .map(|n| Node::new(root.path(), n, net.as_ref()))
            .collect();
        let anon = client(&nodes[0].addr(), None);
        let init = anon.init(&InitRequest::shamir(1, 1)).unwrap();
        let key = init.keys[0].expose().to_owned();
        let token = init.root_token.expose().to_owned();
        anon.unseal(&SecretString::new(key.clone())).unwrap();
        for n in &nodes[1..] {
            let c = client(&n.addr(), None);
            let body = json!({"leader_api_addr": nodes[0].api_addr()});
            c.write("sys/storage/raft/join", Some(&body)).unwrap();
            // catching up may outlast one unseal call on a loaded machine: unseal again
            let unsealed = retry(5, Duration::from_millis(200), || {
                c.unseal(&SecretString::new(key.clone()))
            });
            unsealed.unwrap_or_else(|e| panic!("unsealing joined {}: {e}", n.name));
        }
        let c = Cluster {
            nodes,
            net,
            _root: root,
            key,
            token,
        };
        wait_for("three voters", 60, || c.voters() == Some(3));
        c
    }

    /// How many voters the first node's raft configuration lists.
    fn voters(&self) -> Option<usize> {
        let s = client(&self.nodes[0].addr(), Some(&self.token))
            .read("sys/storage/raft/configuration")
            .ok()
            .flatten()?;
        let cfg = s.data.and_then(|d| d.get("config").cloned())?;
        let servers = cfg["servers"].as_array()?.clone();
        Some(servers.iter().filter(|s| s["voter"] == json!(true)).count())
    }

    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(Node::addr).collect()
    }

    /// The active node as node `i` sees it (`None`: it knows none, or does not answer).
    pub fn leader_seen_by(&self, i: usize) -> Option<usize> {
        if !self.nodes[i].running() {
            return None;
        }
        let c = client_timeout(&self.nodes[i].addr(), None, Duration::from_secs(2));
        let v = c.leader().ok()?;
        let addr = v.get("leader_address").and_then(Value::as_str)?;
        self.nodes.iter().position(|m| m.api_addr() == addr)
    }

    /// The active node as the running nodes among `ask` say, if it is one of them (the
    /// majority's view when `ask` is the majority side of a partition).
    pub fn leader_among(&self, ask: &[usize]) -> Option<usize> {
        ask.iter()
            .filter_map(|&i| self.leader_seen_by(i))
            .find(|l| ask.contains(l) && self.nodes[*l].running())
    }

    pub fn leader(&self) -> Option<usize> {
        self.leader_among(&[0, 1, 2])
    }

    pub fn unseal(&self, i: usize) {
        let c = client(&self.nodes[i].addr(), None);
        wait_for("unseal", 30, || {
            c.unseal(&SecretString::new(self.key.clone())).is_ok()
        });
    }

    /// The active node among `ask`, once it says it is active and unsealed.
    pub fn wait_leader_among(&self, ask: &[usize]) -> usize {
        let mut l = None;
        wait_for("an active node", 60, || {
            l = self.leader_among(ask);
            l.is_some_and(|i| {
                client_timeout(&self.nodes[i].addr(), None, Duration::from_secs(2))
                    .health()
                    .is_ok_and(|h| !h.standby && !h.sealed)
            })
        });
        l.unwrap()
    }

    pub fn wait_leader(&self) -> usize {
        self.wait_leader_among(&[0, 1, 2])
    }

    /// kill -9 node `i`, start it again and unseal it.
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].kill();
        self.nodes[i].start();
        self.unseal(i);
    }

    /// Every node killed, started and unsealed.
    pub fn full_restart(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
        for n in &mut self.nodes {
            n.start();
        }
        for i in 0..self.nodes.len() {
            self.unseal(i);
        }
    }

    pub fn admin(&self) -> Client {
        client(&self.nodes[self.wait_leader()].addr(), Some(&self.token))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for n in &self.nodes {
                let log = std::fs::read_to_string(n.dir.join("server.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- {} log (last lines)", n.name);
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
        for n in &mut self.nodes {
            n.kill();
        }
    }
}

/// Sets the flag when dropped: a test's load threads stop even when the test panics
/// (a scope waits for its threads before the panic goes on).
pub struct StopOnDrop<'a>(pub &'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
