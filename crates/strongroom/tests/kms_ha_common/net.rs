//! A private network for N nodes, made of network namespaces the test creates and deletes:
//!
//! - one namespace holds a bridge `br0`; each node's namespace is joined to it by a veth pair
//!   (`cl` in the node, `nK` on the bridge) with the node's cluster address `10.A.B.K+1/25`;
//! - each node has a second veth pair to the test's own namespace (`ho` in the node, a /30 at
//!   `10.A.B.128+4K`), which is how the test's clients reach it: never over the bridge.
//!
//! [`Net::isolate`] takes a node's bridge port down: it can still be reached by the test but
//! no longer by the other nodes; [`Net::heal`] brings it back. Nothing outside these
//! namespaces and the test's veth ends is touched; dropping the `Net` deletes them all.

use std::process::Command;

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
