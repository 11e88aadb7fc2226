//! A throwaway Ceph cluster for tests and the demo, started with the project's
//! `scripts/ceph/dev-cluster.sh` (1 monitor + 1 memstore OSD on 127.0.0.1, free ports picked
//! here so that test binaries run side by side). A watchdog process stops the daemons and
//! removes the data directory when the process that started the cluster ends, however it
//! ends (tests exit without running destructors of statics; a kill -9 runs nothing at all).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// How to install what the cluster needs (Debian 12).
pub const INSTALL_HINT: &str = "apt-get install -y --no-install-recommends ceph-mon ceph-osd \
     ceph-common librbd-dev librados-dev python3-rbd";

/// Set to 1 by scripts/test.sh: a test that cannot start Ceph fails instead of skipping.
pub const REQUIRED_ENV: &str = "STRONGROOM_CEPH_REQUIRED";

pub struct DevCluster {
    dir: PathBuf,
    pool: String,
}

impl DevCluster {
    /// The project's script: `$STRONGROOM_CEPH_DEV_SCRIPT`, else the source tree's copy.
    pub fn script() -> PathBuf {
        std::env::var_os("STRONGROOM_CEPH_DEV_SCRIPT")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/ceph/dev-cluster.sh")
            })
    }

    /// Whether the Ceph daemons and tools are installed; `Err` names what is missing.
    pub fn available() -> Result<(), String> {
        for bin in ["ceph-mon", "ceph-osd", "ceph", "rbd", "rados"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {bin}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !found {
                return Err(format!("{bin} is not installed"));
            }
        }
        if !Self::script().exists() {
            return Err(format!("{} not found", Self::script().display()));
        }
        Ok(())
    }

    /// Start a fresh cluster in a new directory under `parent`, stopped and removed when
    /// this process exits.
    pub fn start(parent: &Path) -> Result<DevCluster, String> {
        Self::start_with(parent, false)
    }

    /// [`Self::start`]; `msgr2_only`: the daemons bind msgr2 only (`ms bind msgr1 = false`),
    /// so the monitor has a v2 address and no v1 one.
    pub fn start_with(parent: &Path, msgr2_only: bool) -> Result<DevCluster, String> {
        Self::available()?;
        let dir = parent.join(format!("ceph-{}-{}", std::process::id(), rand_suffix()));
        let (v2, v1) = (free_port()?, free_port()?);
        let out = Command::new(Self::script())
            .arg("start")
            .arg(&dir)
            .env("CEPH_DEV_V2_PORT", v2.to_string())
            .env("CEPH_DEV_V1_PORT", v1.to_string())
            .env("CEPH_DEV_MSGR2_ONLY", if msgr2_only { "1" } else { "0" })
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("run {}: {e}", Self::script().display()))?;
        let c = DevCluster {
            dir,
            pool: "rbd".into(),
        };
        c.spawn_watchdog()?;
        if !out.status.success() {
            return Err(format!(
                "dev-cluster.sh start failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(c)
    }

    /// One cluster shared by a test binary's tests. `None` (after saying why on stderr) when
    /// Ceph is not installed and [`REQUIRED_ENV`] is not 1; a panic when it is.
    pub fn for_tests() -> Option<&'static DevCluster> {
        static C: OnceLock<Result<DevCluster, String>> = OnceLock::new();
        let r = C.get_or_init(|| DevCluster::start(&std::env::temp_dir()));
        match r {
            Ok(c) => Some(c),
            Err(why) if std::env::var(REQUIRED_ENV).as_deref() == Ok("1") => {
                panic!("Ceph required ({REQUIRED_ENV}=1) but unavailable: {why} (install: {INSTALL_HINT})")
            }
            Err(why) => {
                eprintln!("skipping: no Ceph for this test: {why} (install: {INSTALL_HINT})");
                None
            }
        }
    }

    /// Stop the daemons and remove the directory once `std::process::id()` has exited.
    fn spawn_watchdog(&self) -> Result<(), String> {
        let script = "while kill -0 \"$1\" 2>/dev/null; do sleep 0.5; done; \
                      \"$2\" stop \"$3\" >/dev/null 2>&1; rm -rf \"$3\"";
        Command::new("sh")
            .args(["-c", script, "watchdog"])
            .arg(std::process::id().to_string())
            .arg(Self::script())
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(drop)
            .map_err(|e| format!("start the cluster watchdog: {e}"))
    }

    /// Stop the daemons now (the watchdog would, at exit). Also done on drop: a cluster
    /// owned by a value (the demo's) is stopped before its directory can go away.
    pub fn stop(&self) {
        let _ = Command::new(Self::script())
            .arg("stop")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// The ceph.conf for clients (monitors + admin keyring).
    pub fn conf(&self) -> PathBuf {
        self.dir.join("ceph.conf")
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn pool(&self) -> &str {
        &self.pool
    }
    /// The monitors' addresses, as a ceph.conf `mon host` line has them.
    pub fn monitors(&self) -> Result<String, String> {
        conf_value(&self.conf(), "mon host")
    }
    /// The admin's cephx key (for tests of the in-memory credential path).
    pub fn admin_key(&self) -> Result<String, String> {
        conf_value(&self.dir.join("ceph.client.admin.keyring"), "key")
    }
    /// Run a Ceph tool (`rbd`, `rados`, `ceph`) against this cluster; stdout, or stderr as
    /// the error.
    pub fn tool(&self, bin: &str, args: &[&str]) -> Result<Vec<u8>, String> {
        let out = Command::new("timeout")
            .arg("120")
            .arg(bin)
            .arg("--conf")
            .arg(self.conf())
            .args(args)
            .output()
            .map_err(|e| format!("run {bin}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{bin} {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(out.stdout)
    }
}

impl DevCluster {
    /// Every RADOS data object of `image` (in the pool's default namespace), concatenated:
    /// what the cluster stores for it, to search for plaintext.
    pub fn object_data(&self, image: &str) -> Result<Vec<u8>, String> {
        let spec = format!("{}/{image}", self.pool);
        let info = String::from_utf8_lossy(&self.tool("rbd", &["info", &spec])?).into_owned();
        let prefix = info
            .lines()
            .find_map(|l| l.trim().strip_prefix("block_name_prefix: "))
            .ok_or_else(|| format!("no block_name_prefix in `rbd info {spec}`"))?
            .to_string();
        let list =
            String::from_utf8_lossy(&self.tool("rados", &["-p", &self.pool, "ls"])?).into_owned();
        let out = self.dir.join(format!("object-{}", rand_suffix()));
        let mut all = Vec::new();
        for obj in list.lines().filter(|o| o.starts_with(&prefix)) {
            let o = out.to_string_lossy();
            self.tool("rados", &["-p", &self.pool, "get", obj, &o])?;
            all.extend(std::fs::read(&out).map_err(|e| format!("read {obj}: {e}"))?);
        }
        let _ = std::fs::remove_file(&out);
        Ok(all)
    }
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn conf_value(file: &Path, key: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    text.lines()
        .filter_map(|l| l.trim().split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_string())
        .ok_or_else(|| format!("no {key} in {}", file.display()))
}

fn free_port() -> Result<u16, String> {
    // the kernel's pick of a free port; the script checks again before binding it
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("find a free port: {e}"))
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64 % 1_000_000_007)
        .unwrap_or(0)
}
