//! A private network for N nodes, made of network namespaces the test creates and deletes:
//!
//! - one namespace holds a bridge `br0`; each node's namespace is joined to it by a veth pair
//!   (`cl` in the node, `nK` on the bridge) with the node's cluster address `10.A.B.K+1/25`;
//! - each node has a second veth pair to the test's own namespace (`ho` in the node, a /30 at
//!   `10.A.B.128+4K`), which is how the test's clients reach it: never over the bridge.
//!
//! [`Net::isolate`] takes a node's bridge port down: it can still be reached by the test but
//! no longer by the other nodes; [`Net::heal`] brings it back. [`Net::one_way`] and
//! [`Net::lossy`] degrade the cluster links with nftables rules and a tbf qdisc in the node
//! namespaces (`nft` from the nftables package; this kernel has no netem, so a slow link is
//! a narrow one, not a fixed delay); [`Net::clear_faults`] removes them. Nothing outside
//! these namespaces and the test's veth ends is touched; dropping the `Net` deletes them all.

use std::io::Write;
use std::process::{Command, Stdio};

/// Which way a node's cluster link still carries packets in [`Net::one_way`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// The node sends to the others but receives nothing from them.
    SendOnly,
    /// The node receives from the others but sends them nothing.
    ReceiveOnly,
}

/// The nftables table the faults live in (one per node namespace).
const FAULT_TABLE: &str = "strongroom_fault";

/// Load an nftables script in namespace `ns`.
fn nft(ns: &str, script: &str) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running nft in {ns}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(script.as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "nft in {ns}: {} (the nftables package is needed: scripts/test.sh installs it)\n{script}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

pub struct Net {
    /// Prefix of every namespace and of the veth ends in the test's namespace.
    prefix: String,
    /// The private /24: `10.a.b.0`.
    a: u8,
    b: u8,
    nodes: usize,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running ip {args:?}: {e} (iproute2 is needed)"));
    assert!(
        out.status.success(),
        "ip {}: {} (network namespaces need root: CAP_NET_ADMIN and CAP_SYS_ADMIN)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Whether any interface of the test's namespace already has an address in `10.a.b.0/24`.
fn subnet_in_use(a: u8, b: u8) -> bool {
    let out = Command::new("ip").args(["-o", "-4", "addr"]).output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    text.unwrap_or_default().contains(&format!(" 10.{a}.{b}."))
}

impl Net {
    pub fn new(nodes: usize) -> Net {
        use std::sync::atomic::{AtomicU32, Ordering};
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let (mut a, mut b, mut prefix);
        loop {
            let seq = SEQ.fetch_add(1, Ordering::SeqCst);
            let k = (std::process::id().wrapping_mul(8).wrapping_add(seq)) % 25_600;
            (a, b) = (100 + (k / 256) as u8, (k % 256) as u8);
            prefix = format!("sr{k:05x}");
            let taken = std::path::Path::new(&format!("/run/netns/{prefix}-br")).exists();
            if !taken && !subnet_in_use(a, b) {
                break;
            }
        }
        let net = Net {
            prefix,
            a,
            b,
            nodes,
        };
        net.create();
        net
    }

    fn bridge_ns(&self) -> String {
        format!("{}-br", self.prefix)
    }

    pub fn node_ns(&self, k: usize) -> String {
        format!("{}-n{k}", self.prefix)
    }

    /// Node `k`'s address on the bridge (its `api_addr` and `cluster_addr` host).
    pub fn cluster_ip(&self, k: usize) -> String {
        format!("10.{}.{}.{}", self.a, self.b, k + 1)
    }

    /// Node `k`'s address on its link to the test.
    pub fn host_side_ip(&self, k: usize) -> String {
        format!("10.{}.{}.{}", self.a, self.b, 130 + 4 * k)
    }

    fn test_side_ip(&self, k: usize) -> String {
        format!("10.{}.{}.{}", self.a, self.b, 129 + 4 * k)
    }

    fn create(&self) {
        let br = self.bridge_ns();
        ip(&["netns", "add", &br]);
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &br, "link", "set", "br0", "up"]);
        for k in 0..self.nodes {
            self.create_node(k);
        }
    }

    fn create_node(&self, k: usize) {
        let (br, ns) = (self.bridge_ns(), self.node_ns(k));
        let port = format!("n{k}");
        let host = format!("{}h{k}", self.prefix);
        ip(&["netns", "add", &ns]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        // the cluster link: node ↔ bridge
        ip(&[
            "-n", &ns, "link", "add", "cl", "type", "veth", "peer", "name", &port, "netns", &br,
        ]);
        ip(&["-n", &br, "link", "set", &port, "master", "br0", "up"]);
        let cl = format!("{}/25", self.cluster_ip(k));
        ip(&["-n", &ns, "addr", "add", &cl, "dev", "cl"]);
        ip(&["-n", &ns, "link", "set", "cl", "up"]);
        // the client link: the test's namespace ↔ node
        ip(&[
            "link", "add", &host, "type", "veth", "peer", "name", "ho", "netns", &ns,
        ]);
        let ho = format!("{}/30", self.host_side_ip(k));
        ip(&["-n", &ns, "addr", "add", &ho, "dev", "ho"]);
        ip(&["-n", &ns, "link", "set", "ho", "up"]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", self.test_side_ip(k)),
            "dev",
            &host,
        ]);
        ip(&["link", "set", &host, "up"]);
    }

    /// Cut node `k` off the other nodes (the test still reaches it).
    pub fn isolate(&self, k: usize) {
        self.bridge_port(k, "down");
    }

    pub fn heal(&self, k: usize) {
        self.bridge_port(k, "up");
    }

    /// Node `k`'s cluster link carries packets only `way` (its link to the test is kept).
    pub fn one_way(&self, k: usize, way: Way) {
        let chain = match way {
            Way::SendOnly => {
                "chain input { type filter hook input priority 0; iifname \"cl\" drop; }"
            }
            Way::ReceiveOnly => {
                "chain output { type filter hook output priority 0; oifname \"cl\" drop; }"
            }
        };
        nft(
            &self.node_ns(k),
            &format!("table inet {FAULT_TABLE} {{\n{chain}\n}}\n"),
        );
    }

    /// Every cluster link loses `loss_pct` % of the packets each node receives, and carries
    /// at most `kbit` kbit/s out of each node.
    pub fn lossy(&self, loss_pct: u8, kbit: u32) {
        for k in 0..self.nodes {
            let ns = self.node_ns(k);
            nft(
                &ns,
                &format!(
                    "table inet {FAULT_TABLE} {{\nchain input {{ type filter hook input \
                     priority 0; iifname \"cl\" numgen random mod 100 < {loss_pct} drop; }}\n}}\n"
                ),
            );
            let rate = format!("{kbit}kbit");
            let out = Command::new("tc")
                .args(["-n", &ns, "qdisc", "replace", "dev", "cl", "root", "tbf"])
                .args(["rate", &rate, "burst", "8kb", "latency", "300ms"])
                .output()
                .expect("running tc (iproute2)");
            assert!(
                out.status.success(),
                "tc tbf in {ns}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }

    /// Undo [`Self::one_way`] and [`Self::lossy`] on every node.
    pub fn clear_faults(&self) {
        for k in 0..self.nodes {
            let ns = self.node_ns(k);
            let quiet = |c: &mut Command| {
                let _ = c.stdout(Stdio::null()).stderr(Stdio::null()).status();
            };
            quiet(Command::new("ip").args([
                "netns",
                "exec",
                &ns,
                "nft",
                "delete",
                "table",
                "inet",
                FAULT_TABLE,
            ]));
            quiet(Command::new("tc").args(["-n", &ns, "qdisc", "del", "dev", "cl", "root"]));
        }
    }

    /// Node `k`'s port on the bridge, `up` or `down`.
    fn bridge_port(&self, k: usize, state: &str) {
        let port = format!("n{k}");
        ip(&["-n", &self.bridge_ns(), "link", "set", &port, state]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // deleting a namespace deletes its veth ends, and with them their peers
        for k in 0..self.nodes {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.node_ns(k)])
                .status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.bridge_ns()])
            .status();
    }
}
