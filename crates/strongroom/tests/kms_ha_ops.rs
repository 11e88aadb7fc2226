//! The raft operator flow of OpenBao on three `strongroom server` processes on loopback,
//! driven through the real `bao` CLI and plain HTTP:
//!
//! - `retry_join` stanzas (to an HTTPS leader: `leader_ca_cert_file`, client certificate) and
//!   `operator raft join -retry -non-voter`; autopilot promotes the joiner, never the
//!   permanent non-voter; `autopilot state|get-config|set-config`; dead-server cleanup;
//! - `operator raft snapshot save|restore` through a standby, and `-force` with another
//!   cluster's snapshot (the node seals; that cluster's key opens it);
//! - a node started on a single-node (`storage "file"`) database hands its data to joiners;
//! - right after the leader dies, requests to the survivors are held until a leader is known.

mod common;

use common::{Cli, CliKind, Pki};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Node {
    name: String,
    dir: PathBuf,
    port: u16,
    cport: u16,
    /// `https://` listener with the Pki's server certificate, client certificates required.
    tls: Option<PathBuf>,
    child: Option<Child>,
}

impl Node {
    fn new(root: &Path, name: &str) -> Node {
        let dir = root.join(name);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        Node {
            name: name.into(),
            dir,
            port: common::free_port(),
            cport: common::free_port(),
            tls: None,
            child: None,
        }
    }

    fn addr(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Write the config with `storage` (a whole stanza) and start the server.
    fn start(&mut self, storage: &str) {
        let listener = match &self.tls {
            None => "  tls_disable = true\n".to_string(),
            Some(pki) => format!(
                "  tls_cert_file = \"{0}/server.pem\"\n  tls_key_file = \"{0}/server-key.pem\"\n  \
                 tls_client_ca_file = \"{0}/ca.pem\"\n  tls_require_and_verify_client_cert = true\n",
                pki.display()
            ),
        };
        let hcl = format!(
            "{storage}\nlistener \"tcp\" {{\n  address = \"127.0.0.1:{}\"\n{listener}}}\n\
             api_addr = \"{}\"\ncluster_addr = \"https://127.0.0.1:{}\"\ndisable_mlock = true\n",
            self.port,
            self.addr(),
            self.cport
        );
        let cfg = self.dir.join("server.hcl");
        std::fs::write(&cfg, hcl).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .unwrap();
        let child = Command::new(common::strongroom_bin())
            .args(["server", "-config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait_for(&format!("{} to listen", self.name), 30, || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
    }

    fn raft(&self, extra: &str) -> String {
        format!(
            "storage \"raft\" {{\n  path = \"{}\"\n  node_id = \"{}\"\n{extra}}}\n",
            self.dir.join("data").display(),
            self.name
        )
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// The `bao` CLI pointed at this node (with the client certificate for TLS).
    fn bao(&self, token: Option<&str>) -> Cli {
        let mut cli = Cli::new(CliKind::Bao, &self.addr());
        if let Some(p) = &self.tls {
            for (k, f) in [
                ("BAO_CACERT", "ca.pem"),
                ("BAO_CLIENT_CERT", "client.pem"),
                ("BAO_CLIENT_KEY", "client-key.pem"),
            ] {
                cli = cli.with_env(k, &p.join(f).display().to_string());
            }
        }
        match token {
            Some(t) => cli.with_token(t),
            None => cli,
        }
    }

    /// Plain-HTTP API call (nodes without TLS).
    fn http(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, String) {
        common::http(&self.addr(), method, path, token, body)
            .unwrap_or_else(|| panic!("{} did not answer {method} {path}", self.name))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `bao operator init` (one share) on `n`: (unseal key, root token).
fn init(n: &Node) -> (String, String) {
    let out = n.bao(None).run(&[
        "operator",
        "init",
        "-key-shares=1",
        "-key-threshold=1",
        "-format=json",
    ]);
    out.expect_code(0, "operator init");
    let v = out.json();
    let key = v["unseal_keys_b64"][0].as_str().unwrap().to_string();
    (key, v["root_token"].as_str().unwrap().to_string())
}

/// Unseal `n` with the bao CLI once it reports initialized (a joiner: once it holds the
/// challenge); a catching-up joiner may need more than one call.
fn unseal(n: &Node, key: &str) {
    let cli = n.bao(None);
    wait_for(&format!("{} initialized", n.name), 60, || {
        cli.run(&["status", "-format=json"]).json()["initialized"] == json!(true)
    });
    wait_for(&format!("{} unsealed", n.name), 90, || {
        cli.run(&["operator", "unseal", key]).code == 0
            && cli.run(&["status", "-format=json"]).json()["sealed"] == json!(false)
    });
}

/// `list-peers` through the bao CLI: node id → voter.
fn peers(n: &Node, token: &str) -> Vec<(String, bool)> {
    let out = n
        .bao(Some(token))
        .run(&["operator", "raft", "list-peers", "-format=json"]);
    if out.code != 0 {
        return vec![];
    }
    let v = out.json();
    let mut p: Vec<(String, bool)> = v["data"]["config"]["servers"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["node_id"].as_str().unwrap_or("").to_string(),
                        s["voter"] == json!(true),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    p.sort();
    p
}

fn autopilot_state(n: &Node, token: &str) -> Value {
    let out = n
        .bao(Some(token))
        .run(&["operator", "raft", "autopilot", "state", "-format=json"]);
    out.expect_code(0, "autopilot state");
    out.json()
}

#[test]
fn retry_join_non_voters_autopilot_and_dead_server_cleanup() {
    let root = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let pki_dir = pki.path("ca.pem").parent().unwrap().to_path_buf();
    let mut n1 = Node::new(root.path(), "node1");
    n1.tls = Some(pki_dir.clone());
    let mut n2 = Node::new(root.path(), "node2");
    let mut n3 = Node::new(root.path(), "node3");
    n1.start(&n1.raft(""));
    // node2 keeps trying its stanza (an HTTPS leader: CA and client certificate from files)
    let stanza = format!(
        "  retry_join {{\n    leader_api_addr = \"{}\"\n    leader_ca_cert_file = \"{p}/ca.pem\"\n    \
         leader_client_cert_file = \"{p}/client.pem\"\n    leader_client_key_file = \"{p}/client-key.pem\"\n  }}\n",
        n1.addr(),
        p = pki_dir.display()
    );
    n2.start(&n2.raft(&stanza));
    n3.start(&n3.raft(""));
    // node3 joins through the CLI: in the background (-retry), as a permanent non-voter
    let ca = format!("-leader-ca-cert=@{}/ca.pem", pki_dir.display());
    let cert = format!("-leader-client-cert=@{}/client.pem", pki_dir.display());
    let key = format!("-leader-client-key=@{}/client-key.pem", pki_dir.display());
    let out = n3.bao(None).run(&[
        "operator",
        "raft",
        "join",
        "-retry",
        "-non-voter",
        &ca,
        &cert,
        &key,
        &n1.addr(),
    ]);
    out.expect_code(0, "raft join -retry");
    out.expect_stdout(
        "false",
        "a background join reports joined=false, as OpenBao",
    );
    // both wait for the leader to be initialized and unsealed
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        n2.http("GET", "sys/init", None, None).1.trim(),
        r#"{"initialized":false}"#
    );
    let (key, token) = init(&n1);
    unseal(&n1, &key);
    unseal(&n2, &key);
    unseal(&n3, &key);
    let want = vec![
        ("node1".to_string(), true),
        ("node2".to_string(), true),
        ("node3".to_string(), false),
    ];
    wait_for("node2 promoted by autopilot", 90, || {
        peers(&n1, &token) == want
    });
    let promoted = Instant::now();
    let st = autopilot_state(&n1, &token);
    // the CLI's JSON is its own rendering of what it read
    assert_eq!(st["Leader"], "node1", "{st}");
    assert_eq!(st["Voters"], json!(["node1", "node2"]));
    assert_eq!(st["Servers"]["node3"]["Status"], "non-voter");
    assert_eq!(st["Servers"]["node3"]["NodeType"], "non-voter");
    assert_eq!(st["Servers"]["node3"]["NodeStatus"], "alive");
    assert_eq!(st["Servers"]["node2"]["Status"], "voter");
    assert!(st["Servers"]["node2"]["LastContact"]
        .as_str()
        .unwrap()
        .ends_with('s'));
    // the permanent non-voter stays one well past the stabilization time (10 s)
    std::thread::sleep(Duration::from_secs(12).saturating_sub(promoted.elapsed()));
    assert_eq!(
        peers(&n1, &token),
        want,
        "autopilot must not promote a -non-voter join"
    );
    // the state and configuration answer through a standby too (forwarded)
    let cfg = n2.bao(Some(&token)).run(&[
        "operator",
        "raft",
        "autopilot",
        "get-config",
        "-format=json",
    ]);
    cfg.expect_code(0, "autopilot get-config");
    assert_eq!(
        cfg.json(),
        json!({"cleanup_dead_servers": false, "dead_server_last_contact_threshold": "24h0m0s",
               "last_contact_threshold": "10s", "max_trailing_logs": 1000, "min_quorum": 0,
               "server_stabilization_time": "10s"})
    );
    let bad = n2.bao(Some(&token)).run(&[
        "operator",
        "raft",
        "autopilot",
        "set-config",
        "-cleanup-dead-servers=true",
        "-dead-server-last-contact-threshold=10s",
        "-min-quorum=3",
    ]);
    bad.expect_code(2, "a dead-server threshold below 1m is refused");
    bad.expect_stderr(
        "dead_server_last_contact_threshold should not be set to less than 1m; received: 10",
        "OpenBao's message",
    );
    // a dead non-voter is removed once silent past the threshold
    n3.kill();
    n2.bao(Some(&token))
        .run(&[
            "operator",
            "raft",
            "autopilot",
            "set-config",
            "-cleanup-dead-servers=true",
            "-dead-server-last-contact-threshold=1m",
            "-min-quorum=3",
        ])
        .expect_code(0, "autopilot set-config");
    wait_for("node3 failing in autopilot state", 30, || {
        autopilot_state(&n1, &token)["Servers"]["node3"]["Healthy"] == json!(false)
    });
    let killed = Instant::now();
    wait_for("the dead non-voter removed", 120, || {
        peers(&n1, &token).len() == 2
    });
    assert!(
        killed.elapsed() >= Duration::from_secs(45),
        "removed before the threshold"
    );
    // the voters stay: removing one would leave fewer than min_quorum
    assert_eq!(peers(&n1, &token), want[..2].to_vec());
    let st = autopilot_state(&n1, &token);
    assert_eq!(st["Healthy"], json!(true), "{st}");
    eprintln!("node2 log tail:\n{}", tail(&n2.log(), 5));
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Three plain nodes: node1 initialized, 2 and 3 joined (API) and unsealed, all voters.
fn cluster(root: &Path) -> (Vec<Node>, String, String) {
    let mut nodes: Vec<Node> = (1..=3)
        .map(|i| Node::new(root, &format!("node{i}")))
        .collect();
    for n in nodes.iter_mut() {
        let storage = n.raft("");
        n.start(&storage);
    }
    let (key, token) = init(&nodes[0]);
    unseal(&nodes[0], &key);
    join_all(&nodes, &key, &token);
    (nodes, key, token)
}

fn join_all(nodes: &[Node], key: &str, token: &str) {
    for n in &nodes[1..] {
        n.bao(None)
            .run(&["operator", "raft", "join", &nodes[0].addr()])
            .expect_code(0, "raft join");
        unseal(n, key);
    }
    wait_for("three voters", 90, || {
        let p = peers(&nodes[0], token);
        p.len() == 3 && p.iter().all(|(_, v)| *v)
    });
}

fn kv_get(n: &Node, token: &str, path: &str) -> Option<String> {
    let (code, body) = n.http("GET", path, Some(token), None);
    (code == 200).then(|| {
        let v: Value = serde_json::from_str(&body).unwrap();
        v["data"]["v"].as_str().unwrap_or("").to_string()
    })
}

#[test]
fn snapshot_save_and_restore_through_bao() {
    let root = tempfile::tempdir().unwrap();
    let (nodes, key, token) = cluster(root.path());
    let bao = |i: usize| nodes[i].bao(Some(&token));
    bao(0)
        .run(&["secrets", "enable", "-path=kv", "kv"])
        .expect_code(0, "enable kv");
    bao(0)
        .run(&["write", "kv/a", "v=before"])
        .expect_code(0, "write");
    let file = root.path().join("snap.tgz");
    let f = file.display().to_string();
    // saved through a standby (forwarded to the active node)
    bao(1)
        .run(&["operator", "raft", "snapshot", "save", &f])
        .expect_code(0, "snapshot save");
    let raw = std::fs::read(&file).unwrap();
    assert_eq!(&raw[..2], &[0x1f, 0x8b], "a gzip file");
    bao(0)
        .run(&["write", "kv/a", "v=after"])
        .expect_code(0, "write");
    bao(0)
        .run(&["write", "kv/b", "v=new"])
        .expect_code(0, "write");
    bao(2)
        .run(&["operator", "raft", "snapshot", "restore", &f])
        .expect_code(0, "restore");
    for n in &nodes {
        // every node answers with the restored data (standbys forward)
        assert_eq!(
            kv_get(n, &token, "kv/a").as_deref(),
            Some("before"),
            "{}",
            n.name
        );
        assert_eq!(kv_get(n, &token, "kv/b"), None, "{}", n.name);
    }
    // the cluster keeps working: a write after the restore, and after a failover
    bao(1)
        .run(&["write", "kv/c", "v=later"])
        .expect_code(0, "write after restore");
    let garbage = root.path().join("garbage");
    std::fs::write(&garbage, b"not a snapshot").unwrap();
    let out = bao(0).run(&[
        "operator",
        "raft",
        "snapshot",
        "restore",
        &garbage.display().to_string(),
    ]);
    out.expect_code(2, "garbage refused");
    out.expect_stderr("failed to decompress snapshot", "OpenBao's message");
    // without a token: refused
    let (code, _) = nodes[0].http("GET", "sys/storage/raft/snapshot", None, None);
    assert_eq!(code, 403);
    let _ = key;
}

#[test]
fn another_clusters_snapshot_needs_force_and_its_keys() {
    let root = tempfile::tempdir().unwrap();
    let mut a = Node::new(root.path(), "a");
    let mut b = Node::new(root.path(), "b");
    a.start(&a.raft(""));
    b.start(&b.raft(""));
    let (ka, ta) = init(&a);
    let (kb, tb) = init(&b);
    unseal(&a, &ka);
    unseal(&b, &kb);
    a.bao(Some(&ta))
        .run(&["secrets", "enable", "-path=kv", "kv"])
        .expect_code(0, "enable kv");
    a.bao(Some(&ta))
        .run(&["write", "kv/a", "v=from-a"])
        .expect_code(0, "write");
    let file = root.path().join("a.snap").display().to_string();
    a.bao(Some(&ta))
        .run(&["operator", "raft", "snapshot", "save", &file])
        .expect_code(0, "save");
    let out = b
        .bao(Some(&tb))
        .run(&["operator", "raft", "snapshot", "restore", &file]);
    out.expect_code(2, "another cluster's snapshot refused without -force");
    out.expect_stderr("could not verify hash file, possibly the snapshot is using a different set of unseal keys; use the snapshot-force API to bypass this check", "OpenBao's message");
    b.bao(Some(&tb))
        .run(&["operator", "raft", "snapshot", "restore", "-force", &file])
        .expect_code(0, "restore -force");
    // b now holds a's data, which b's keys cannot open: it sealed itself
    wait_for("b sealed", 30, || {
        b.bao(None).run(&["status", "-format=json"]).json()["sealed"] == json!(true)
    });
    assert_ne!(
        b.bao(None).run(&["operator", "unseal", &kb]).code,
        0,
        "b's own key no longer opens it"
    );
    unseal(&b, &ka);
    wait_for("b active", 30, || {
        b.http("GET", "sys/health", None, None).0 == 200
    });
    assert_eq!(kv_get(&b, &ta, "kv/a").as_deref(), Some("from-a"));
    assert_eq!(
        b.http("GET", "kv/a", Some(&tb), None).0,
        403,
        "b's old root token is gone"
    );
}

#[test]
fn a_single_node_database_reaches_every_joiner() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes: Vec<Node> = (1..=3)
        .map(|i| Node::new(root.path(), &format!("node{i}")))
        .collect();
    let file = |n: &Node| {
        format!(
            "storage \"file\" {{\n  path = \"{}\"\n}}\n",
            n.dir.join("data").display()
        )
    };
    // node1 runs as a single-node server first and gets data
    let f1 = file(&nodes[0]);
    nodes[0].start(&f1);
    let (key, token) = init(&nodes[0]);
    unseal(&nodes[0], &key);
    let bao = nodes[0].bao(Some(&token));
    bao.run(&["secrets", "enable", "-path=kv", "kv"])
        .expect_code(0, "enable kv");
    for i in 0..50 {
        bao.run(&["write", &format!("kv/k{i}"), &format!("v=old-{i}")])
            .expect_code(0, "write");
    }
    nodes[0].kill();
    // the same database under storage "raft", then two joiners
    for n in nodes.iter_mut() {
        let storage = n.raft("");
        n.start(&storage);
    }
    unseal(&nodes[0], &key);
    join_all(&nodes, &key, &token);
    nodes[1]
        .bao(Some(&token))
        .run(&["write", "kv/new", "v=raft"])
        .expect_code(0, "write");
    wait_for("every node applied the write", 30, || {
        let st = autopilot_state(&nodes[0], &token);
        let idx: Vec<u64> = ["node1", "node2", "node3"]
            .iter()
            .map(|n| st["Servers"][n]["LastIndex"].as_u64().unwrap_or(0))
            .collect();
        idx.iter().all(|i| *i == idx[0])
    });
    // each node's own copy: stop all, open each alone as a single-node store
    for n in nodes.iter_mut() {
        n.kill();
    }
    for n in nodes.iter_mut() {
        let f = file(n);
        n.start(&f);
        unseal(n, &key);
        for i in [0, 17, 49] {
            assert_eq!(
                kv_get(n, &token, &format!("kv/k{i}")).as_deref(),
                Some(format!("old-{i}").as_str()),
                "{} lacks the single-node data\n{}",
                n.name,
                tail(&n.log(), 20)
            );
        }
        n.kill();
    }
}

#[test]
fn requests_right_after_the_leader_dies_wait_for_the_new_one() {
    let root = tempfile::tempdir().unwrap();
    let (mut nodes, _key, token) = cluster(root.path());
    nodes[0]
        .bao(Some(&token))
        .run(&["secrets", "enable", "-path=kv", "kv"])
        .expect_code(0, "enable kv");
    nodes[0]
        .bao(Some(&token))
        .run(&["write", "kv/a", "v=1"])
        .expect_code(0, "write");
    wait_for("kv/a readable through node2", 30, || {
        kv_get(&nodes[1], &token, "kv/a").as_deref() == Some("1")
    });
    // a client's copy of the cluster's forwarding marker does not make a standby serve
    // from its own copy (which may lag): the write is forwarded and acknowledged
    let spoofed = common::http_with(
        &nodes[1].addr(),
        "PUT",
        "kv/spoofed",
        Some(&token),
        Some(r#"{"v":"3"}"#),
        &[("x-strongroom-forwarded", "1")],
    );
    assert_eq!(spoofed.as_ref().map(|r| r.0), Some(204), "{spoofed:?}");
    assert_eq!(
        kv_get(&nodes[0], &token, "kv/spoofed").as_deref(),
        Some("3")
    );
    nodes[0].kill();
    // at once, before the survivors noticed: every request is held, then served
    let started = Instant::now();
    for i in 0..20 {
        for n in &nodes[1..] {
            let (code, body) = n.http("GET", "kv/a", Some(&token), None);
            assert_eq!(code, 200, "read {i} via {}: {body}", n.name);
        }
    }
    let (code, body) = nodes[2].http("PUT", "kv/b", Some(&token), Some(r#"{"v":"2"}"#));
    assert_eq!(code, 204, "write via node3: {body}");
    assert_eq!(kv_get(&nodes[1], &token, "kv/b").as_deref(), Some("2"));
    eprintln!("served through the election in {:?}", started.elapsed());
}
