//! Availability under floods (issue 15). A real, non-dev `strongroom server` — raft storage,
//! initialized and unsealed with real Shamir shares, so a crash or an OOM kill would bring it
//! back sealed — runs under a 1 GiB memory limit and a 256-descriptor limit while 300 clients
//! send bogus userpass logins (Argon2id, 19 MiB of memory each) and 300 more hold half-sent
//! request headers (and reconnect when closed). Throughout, the server must stay up and
//! unsealed and answer a legitimate request (token lookup-self, KV read) within 1 s; after
//! the flood its RSS must come back within 64 MiB of its idle RSS.
//!
//! The memory limit is a cgroup created below the test's own (v2 `memory.max` or v1
//! `memory.limit_in_bytes`, whichever this machine has). Where no cgroup can be made, the
//! limit is RLIMIT_DATA instead: it counts every private writable mapping (heap, anonymous
//! mmaps, thread stacks) whether touched or not, so it is stricter than a cgroup limit on
//! resident memory, while RLIMIT_AS would also count read-only and PROT_NONE reservations
//! (allocator arenas, the binary) and say little about memory use. The test prints which.

mod common;

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const MEMORY_LIMIT: u64 = 1 << 30;
const FD_LIMIT: u32 = 256;
const LOGIN_FLOODERS: usize = 300;
const SLOW_CLIENTS: usize = 300;
const FLOOD_FOR: Duration = Duration::from_secs(15);
const LEGIT_DEADLINE: Duration = Duration::from_secs(1);
/// "Near idle": the RSS a minute after the flood may exceed the idle RSS by this much.
const RSS_SLACK: u64 = 64 << 20;

/// How the server's memory is limited.
enum MemoryLimit {
    /// A cgroup directory made for this test (removed on drop) and its `cgroup.procs`.
    Cgroup { dir: PathBuf, procs: PathBuf },
    /// `prlimit --data`.
    RlimitData,
}

/// The test's own cgroup directory for the memory controller, and whether it is v2.
fn own_memory_cgroup() -> Option<(PathBuf, bool)> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
        let rel = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "memory") {
            let d = Path::new("/sys/fs/cgroup/memory").join(rel);
            if d.is_dir() {
                return Some((d, false));
            }
        }
        if controllers.is_empty() {
            for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
                let d = Path::new(root).join(rel);
                let ctl = std::fs::read_to_string(Path::new(root).join("cgroup.controllers"));
                if ctl.is_ok_and(|c| c.split_whitespace().any(|c| c == "memory")) && d.is_dir() {
                    return Some((d, true));
                }
            }
        }
    }
    None
}

impl MemoryLimit {
    fn create() -> MemoryLimit {
        match Self::cgroup() {
            Ok(l) => l,
            Err(why) => {
                eprintln!(
                    "\n*** kms_flood: no cgroup memory limit possible here ({why}); \
                     limiting the server with RLIMIT_DATA={MEMORY_LIMIT} instead ***\n"
                );
                MemoryLimit::RlimitData
            }
        }
    }

    fn cgroup() -> Result<MemoryLimit, String> {
        let (own, v2) = own_memory_cgroup().ok_or("no memory cgroup found")?;
        let dir = own.join(format!("strongroom-flood-{}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let (limit_file, swap_file) = if v2 {
            ("memory.max", "memory.swap.max")
        } else {
            ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes")
        };
        let l = MemoryLimit::Cgroup {
            procs: dir.join("cgroup.procs"),
            dir: dir.clone(),
        };
        std::fs::write(dir.join(limit_file), MEMORY_LIMIT.to_string())
            .map_err(|e| format!("{limit_file} in {}: {e}", dir.display()))?;
        // No swapping around the limit either (absent without swap accounting).
        let swap = if v2 { 0 } else { MEMORY_LIMIT };
        let _ = std::fs::write(dir.join(swap_file), swap.to_string());
        eprintln!(
            "kms_flood: server in cgroup {} with {limit_file}={MEMORY_LIMIT}",
            dir.display()
        );
        Ok(l)
    }

    /// The command that runs `args` (a program and its arguments) under this limit and
    /// the descriptor limit; the process ends up as the returned child itself (exec).
    fn command(&self, args: &[String]) -> Command {
        let nofile = format!("--nofile={FD_LIMIT}:{FD_LIMIT}");
        match self {
            MemoryLimit::Cgroup { procs, .. } => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg("echo $$ > \"$0\" && exec \"$@\"")
                    .arg(procs)
                    .args(["prlimit", &nofile, "--"])
                    .args(args);
                c
            }
            MemoryLimit::RlimitData => {
                let mut c = Command::new("prlimit");
                c.arg(&nofile)
                    .arg(format!("--data={MEMORY_LIMIT}:{MEMORY_LIMIT}"))
                    .arg("--")
                    .args(args);
                c
            }
        }
    }
}

impl Drop for MemoryLimit {
    fn drop(&mut self) {
        if let MemoryLimit::Cgroup { dir, .. } = self {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The server under test; killed on drop.
struct Flooded {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Flooded {
    fn start(limit: &MemoryLimit) -> Flooded {
        let dir = tempfile::tempdir().unwrap();
        let port = common::free_port();
        let config = format!(
            "storage \"raft\" {{\n  path = \"{}\"\n  node_id = \"n1\"\n}}\n\
             listener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  tls_disable = true\n}}\n\
             disable_mlock = true\n",
            dir.path().join("raft").display()
        );
        let cfg = dir.path().join("server.hcl");
        std::fs::write(&cfg, config).unwrap();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let args = [
            common::strongroom_bin().display().to_string(),
            "server".into(),
            "-config".into(),
            cfg.display().to_string(),
        ];
        let child = limit
            .command(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start strongroom server");
        let mut s = Flooded {
            child,
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while s.call("GET", "sys/health", None, None).is_err() {
            assert!(s.alive(), "server exited at startup\n{}", s.logs());
            assert!(
                Instant::now() < deadline,
                "server never answered\n{}",
                s.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    }

    fn logs(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// `(VmRSS, VmHWM)` of the server in bytes.
    fn rss(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map_or(0, |kb| kb << 10)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        request(
            self.addr,
            method,
            path,
            token,
            body,
            Duration::from_secs(30),
        )
    }

    /// `call` that must answer `want`.
    fn expect(
        &self,
        want: u16,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> Value {
        let (code, v) = self
            .call(method, path, token, Some(body))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.logs()));
        assert_eq!(code, want, "{method} {path}: {v}");
        v
    }

    /// Initialize with 3 shares (threshold 2), unseal, enable userpass with a user and a KV
    /// mount with a secret. Returns the root token.
    fn init_and_seed(&self) -> String {
        let init = self.expect(
            200,
            "PUT",
            "sys/init",
            None,
            json!({"secret_shares": 3, "secret_threshold": 2}),
        );
        let keys: Vec<String> = serde_json::from_value(init["keys"].clone()).unwrap();
        for k in &keys[..2] {
            self.expect(200, "PUT", "sys/unseal", None, json!({ "key": k }));
        }
        let root = init["root_token"].as_str().unwrap().to_owned();
        let t = Some(root.as_str());
        self.expect(
            204,
            "POST",
            "sys/auth/userpass",
            t,
            json!({"type": "userpass"}),
        );
        let user = json!({"password": "correct horse", "token_policies": ["default"]});
        self.expect(204, "POST", "auth/userpass/users/alice", t, user);
        self.expect(204, "POST", "sys/mounts/kv", t, json!({"type": "kv"}));
        self.expect(204, "POST", "kv/app", t, json!({"v": "legit"}));
        root
    }

    fn sealed(&self) -> Option<bool> {
        let (_, v) = self.call("GET", "sys/seal-status", None, None).ok()?;
        v["sealed"].as_bool()
    }
}

impl Drop for Flooded {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request on a new connection (`Connection: close`); status and JSON body.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    timeout: Duration,
) -> Result<(u16, Value), String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!(
        "{method} /v1/{path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        req.push_str(&format!("X-Vault-Token: {t}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    s.write_all(req.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no HTTP answer: {text:?}"))?;
    let json = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    Ok((code, json))
}

/// Counts of what the flooding clients saw.
#[derive(Default)]
struct Tally {
    logins: AtomicUsize,
    refused_429: AtomicUsize,
    errors: AtomicUsize,
    slow_opened: AtomicUsize,
}

/// One flooding client: bogus logins (an unknown user: the server still runs the hash),
/// back to back until `stop`.
fn login_flooder(addr: SocketAddr, i: usize, stop: &AtomicBool, tally: &Tally) {
    let body = json!({"password": format!("not-the-password-{i}")});
    while !stop.load(Ordering::Relaxed) {
        let path = format!("auth/userpass/login/bogus{i}");
        match request(
            addr,
            "POST",
            &path,
            None,
            Some(body.clone()),
            Duration::from_secs(30),
        ) {
            Ok((429, _)) => tally.refused_429.fetch_add(1, Ordering::Relaxed),
            Ok(_) => tally.logins.fetch_add(1, Ordering::Relaxed),
            Err(_) => {
                std::thread::sleep(Duration::from_millis(20));
                tally.errors.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// Whether a slow connection is still open (nothing answered, no EOF).
fn still_open(s: &TcpStream) -> bool {
    let _ = s.set_nonblocking(true);
    let mut b = [0u8; 1];
    let open = matches!(s.peek(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    let _ = s.set_nonblocking(false);
    open
}

/// `SLOW_CLIENTS` connections that send half a request header and stall; reopened when
/// the server closes them, until `stop`.
fn slow_clients(addr: SocketAddr, stop: &AtomicBool, tally: &Tally) {
    let mut conns: Vec<Option<TcpStream>> = (0..SLOW_CLIENTS).map(|_| None).collect();
    while !stop.load(Ordering::Relaxed) {
        for c in conns.iter_mut() {
            if c.as_ref().is_some_and(still_open) {
                continue;
            }
            *c = TcpStream::connect_timeout(&addr, Duration::from_millis(500))
                .ok()
                .filter(|s| {
                    let mut s = s;
                    s.write_all(b"GET /v1/sys/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                        .is_ok()
                });
            if c.is_some() {
                tally.slow_opened.fetch_add(1, Ordering::Relaxed);
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A legitimate request: alternately the root token's lookup-self and a KV read. Returns
/// how long it took, or what went wrong.
fn legit(addr: SocketAddr, root: &str, n: usize) -> Result<Duration, String> {
    let t0 = Instant::now();
    let path = ["auth/token/lookup-self", "kv/app"][n % 2];
    let (code, v) = request(addr, "GET", path, Some(root), None, Duration::from_secs(5))
        .map_err(|e| format!("{path}: {e} after {:?}", t0.elapsed()))?;
    let took = t0.elapsed();
    if code != 200 {
        return Err(format!("{path}: {code} {v}"));
    }
    Ok(took)
}

#[test]
fn load_tier_survives_login_and_slow_header_floods_under_a_memory_limit() {
    let limit = MemoryLimit::create();
    let mut srv = Flooded::start(&limit);
    let root = srv.init_and_seed();
    let addr = srv.addr;
    // Steady state before measuring idle: a real login ran the password hash once.
    let good = json!({"password": "correct horse"});
    srv.expect(200, "POST", "auth/userpass/login/alice", None, good);
    for n in 0..4 {
        legit(addr, &root, n).unwrap();
    }
    std::thread::sleep(Duration::from_secs(1));
    let (idle, _) = srv.rss();

    let stop = AtomicBool::new(false);
    let tally = Tally::default();
    let mut probes: Vec<Result<Duration, String>> = vec![];
    let mut died = None;
    std::thread::scope(|s| {
        for i in 0..LOGIN_FLOODERS {
            let (stop, tally) = (&stop, &tally);
            s.spawn(move || login_flooder(addr, i, stop, tally));
        }
        s.spawn(|| slow_clients(addr, &stop, &tally));
        let t0 = Instant::now();
        // Let the flood build up before the first probe.
        std::thread::sleep(Duration::from_secs(2));
        while t0.elapsed() < FLOOD_FOR {
            if !srv.alive() {
                died = Some(format!("{:?}", srv.child.try_wait()));
                break;
            }
            probes.push(legit(addr, &root, probes.len()));
            std::thread::sleep(Duration::from_millis(250));
        }
        stop.store(true, Ordering::Relaxed);
    });
    let (_, peak) = srv.rss();
    let log = srv.logs();
    let mut took: Vec<Duration> = probes
        .iter()
        .filter_map(|p| p.as_ref().ok().copied())
        .collect();
    took.sort();
    let worst = took.last().copied();
    let median = took.get(took.len() / 2).copied();
    let failed: Vec<&String> = probes.iter().filter_map(|p| p.as_ref().err()).collect();
    // RSS after: give the allocator a moment to hand memory back.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut after = srv.rss().0;
    while after > idle + RSS_SLACK && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        after = srv.rss().0;
    }
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    eprintln!(
        "kms_flood: idle RSS {:.1} MiB, peak RSS {:.1} MiB, RSS after {:.1} MiB; \
         {} probes, median {median:?}, worst {worst:?}, {} failed; flood: {} logins answered, {} refused with 429, \
         {} client errors, {} slow connections opened",
        mib(idle),
        mib(peak),
        mib(after),
        probes.len(),
        failed.len(),
        tally.logins.load(Ordering::Relaxed),
        tally.refused_429.load(Ordering::Relaxed),
        tally.errors.load(Ordering::Relaxed),
        tally.slow_opened.load(Ordering::Relaxed),
    );
    assert!(
        died.is_none(),
        "the server died during the flood: {died:?}\n{log}"
    );
    assert!(srv.alive(), "the server died after the flood\n{log}");
    assert_eq!(
        srv.sealed(),
        Some(false),
        "the server is not unsealed\n{log}"
    );
    assert!(
        failed.is_empty(),
        "legitimate requests failed: {failed:#?}\n{log}"
    );
    assert!(
        worst.is_some_and(|w| w < LEGIT_DEADLINE),
        "a legitimate request took {worst:?} (limit {LEGIT_DEADLINE:?})\n{log}"
    );
    assert!(
        tally.refused_429.load(Ordering::Relaxed) > 0,
        "the login flood was never shed with 429"
    );
    assert!(
        after <= idle + RSS_SLACK,
        "RSS {:.1} MiB did not come back within {:.0} MiB of idle {:.1} MiB",
        mib(after),
        mib(RSS_SLACK),
        mib(idle)
    );
    legit(addr, &root, 0).expect("a request after the flood");
}
