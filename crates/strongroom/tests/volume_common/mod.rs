//! Shared helpers of the volume tests: a dev key manager (OpenBao or strongroom) with tenants
//! set up by the admin, a manager over a temp root, CLI runs, marker scans, cleanup guards.
#![allow(dead_code)]

use super::common::{Server, ServerKind};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use strongroom_volume::tenant::{self, TenantLayout};
use strongroom_volume::{
    CreateRequest, Credential, FsType, KmsConfig, Manager, ManagerConfig, ProtectionRequest,
    SecretString,
};

pub fn layout() -> TenantLayout {
    TenantLayout {
        transit_mount: "transit".into(),
        kv2_mount: Some("secret".into()),
        kv1_mount: Some("kv1".into()),
    }
}

pub struct Env {
    pub server: Server,
    pub root: SecretString,
    pub admin: SecretString,
    pub tenants: Vec<(String, SecretString)>,
    pub dir: tempfile::TempDir,
}

pub fn env(kind: ServerKind, tenants: &[&str]) -> Env {
    let server = Server::start_dev(kind, "root");
    let c = server.client();
    let l = layout();
    let mut toks = Vec::new();
    for t in tenants {
        let p = tenant::setup_tenant(&c, t, &l)
            .unwrap_or_else(|e| panic!("setup tenant: {e:?}\nserver log:\n{}", server.logs()));
        let tok = tenant::create_token(&c, &[p.as_str()], "1h").expect("tenant token");
        toks.push((t.to_string(), tok));
    }
    let admin = tenant::create_token(&c, &[tenant::ADMIN_POLICY], "1h").expect("admin token");
    let dir = tempfile::Builder::new()
        .prefix("sr-vol-test-")
        .tempdir()
        .expect("tempdir");
    Env {
        server,
        root: SecretString::new("root"),
        admin,
        tenants: toks,
        dir,
    }
}

impl Env {
    pub fn kms(&self) -> KmsConfig {
        KmsConfig::new(self.server.addr())
    }
    pub fn vol_root(&self) -> PathBuf {
        self.dir.path().join("volumes")
    }
    pub fn manager(&self) -> Manager {
        Manager::new(ManagerConfig {
            root: self.vol_root(),
            cluster_id: "test-cluster".into(),
            kms: self.kms(),
            cache_ttl: Duration::from_secs(30),
            datapath: None,
        })
    }
    pub fn tenant(&self, i: usize) -> Credential {
        Credential::Tenant(self.tenants[i].1.clone())
    }
    pub fn admin(&self) -> Credential {
        Credential::Admin(self.admin.clone())
    }
    /// Write a token to a 0600 file and return its path.
    pub fn token_file(&self, name: &str, t: &SecretString) -> PathBuf {
        let p = self.dir.path().join(format!("{name}.token"));
        std::fs::write(&p, t.expose()).unwrap();
        p
    }
    /// `strongroom volume --root R --address A --cluster-id test-cluster <args>`.
    pub fn cli(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = Command::new(super::common::strongroom_bin());
        c.arg("volume")
            .arg("--root")
            .arg(self.vol_root())
            .arg("--address")
            .arg(self.server.addr())
            .arg("--cluster-id")
            .arg("test-cluster")
            .args(args)
            .stdin(Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("run strongroom volume")
    }
}

pub fn out_text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn req(id: &str, tenant: &str, prot: ProtectionRequest) -> CreateRequest {
    CreateRequest {
        id: id.into(),
        tenant: tenant.into(),
        size: 32 << 20,
        protection: prot,
        store: None,
        fs_type: FsType::Ext4,
    }
}

/// The three protection modes every lifecycle test runs.
pub fn modes(tenant: &str) -> Vec<(&'static str, ProtectionRequest)> {
    vec![
        ("envelope", ProtectionRequest::envelope_for(tenant)),
        (
            "kv2",
            ProtectionRequest::Kv {
                backend: tenant::kv_backend("secret", tenant),
            },
        ),
        (
            "kv1",
            ProtectionRequest::Kv {
                backend: tenant::kv_backend("kv1", tenant),
            },
        ),
    ]
}

pub fn marker(tag: &str) -> String {
    format!("SRMARKER<{tag}>-plaintext-must-never-reach-the-disk")
}

/// True if any marker appears anywhere in the file (streamed, overlapping chunk borders).
pub fn file_contains_any(path: &Path, markers: &[String]) -> bool {
    use std::io::Read;
    let mut f = std::fs::File::open(path).expect("open backing file");
    let keep = markers.iter().map(|m| m.len()).max().unwrap_or(1);
    let mut buf = vec![0u8; 4 << 20];
    let mut carry = Vec::new();
    loop {
        let n = f.read(&mut buf).expect("read backing file");
        if n == 0 {
            return false;
        }
        let mut chunk = std::mem::take(&mut carry);
        chunk.extend_from_slice(&buf[..n]);
        if markers
            .iter()
            .any(|m| memchr::memmem::find(&chunk, m.as_bytes()).is_some())
        {
            return true;
        }
        carry = chunk[chunk.len().saturating_sub(keep)..].to_vec();
    }
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Skip (with a message) when loop devices / FUSE / mount are not available.
pub fn can_mount() -> bool {
    if !is_root() {
        eprintln!("SKIP: needs root for loop devices, FUSE and mount");
        return false;
    }
    if !Path::new("/dev/fuse").exists() || !Path::new("/dev/loop-control").exists() {
        eprintln!("SKIP: /dev/fuse or /dev/loop-control missing");
        return false;
    }
    true
}

/// Everything under `root` that is mounted, and loop devices backed by files under it.
pub fn leftovers(root: &Path) -> Vec<String> {
    let r = root.to_string_lossy().into_owned();
    let mut v: Vec<String> = strongroom_volume::mount_points()
        .into_iter()
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| p.starts_with(&r))
        .collect();
    let lo = Command::new("losetup").arg("-a").output().unwrap();
    for l in String::from_utf8_lossy(&lo.stdout).lines() {
        if l.contains(&r) {
            v.push(l.to_owned());
        }
    }
    v
}

/// Removes any mount / loop device under a directory on drop (also when a test panics).
pub struct Cleanup(pub PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let r = self.0.to_string_lossy().into_owned();
        let mut mps: Vec<PathBuf> = strongroom_volume::mount_points()
            .into_iter()
            .filter(|p| p.to_string_lossy().starts_with(&r))
            .collect();
        // Filesystems first (longest path first), then loop devices, then FUSE mounts.
        mps.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
        for p in mps.iter().filter(|p| !p.ends_with("fuse")) {
            let _ = Command::new("umount").arg("-l").arg(p).status();
        }
        let lo = Command::new("losetup").arg("-a").output();
        if let Ok(lo) = lo {
            for l in String::from_utf8_lossy(&lo.stdout).lines() {
                if l.contains(&r) {
                    if let Some(dev) = l.split(':').next() {
                        let _ = Command::new("losetup").arg("-d").arg(dev).status();
                    }
                }
            }
        }
        for p in mps.iter().filter(|p| p.ends_with("fuse")) {
            let _ = Command::new("fusermount3").arg("-u").arg(p).status();
            let _ = Command::new("umount").arg("-l").arg(p).status();
        }
    }
}
