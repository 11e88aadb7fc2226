//! `strongroom demo` — the whole story on embedded defaults: a dev key manager started
//! in-process, two tenants with their own transit keys, policies and tokens, encrypted
//! volumes for each (sparse files in a temp dir), files written, the backing files searched for
//! plaintext, tenant B refused tenant A's key, a rotation with data intact, a crypto-shred after
//! which nothing (not even the root token) opens the volume. Prints a short report.
//!
//! As root it mounts real filesystems (FUSE + loop + ext4, or dm-crypt where the kernel has
//! it); without root it runs the same story through the library's read/write API and says so.
//!
//! `--backend rbd`: the volumes are RBD images in a throwaway Ceph cluster the demo starts
//! itself (scripts/ceph/dev-cluster.sh: 1 monitor + 1 memstore OSD on loopback) and stops at
//! the end; the plaintext search reads every RADOS object of each image.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use strongroom_kms::config::ListenerConfig;
use strongroom_kms::core::{Core, CoreOptions};
use strongroom_kms::storage::InmemStorage;
use strongroom_rbd::dev::{DevCluster, INSTALL_HINT};
use strongroom_volume::tenant::{self, TenantLayout};
use strongroom_volume::{
    new_image_name, CephRef, CreateRequest, Credential, ErrorKind, FsType, KmsConfig, Manager,
    ManagerConfig, ProtectionRequest, RotateKind, SecretString, State, StoreSpec,
};

#[derive(Args)]
pub struct DemoArgs {
    /// Keep the temp directory (volumes, audit log) instead of deleting it.
    #[arg(long)]
    keep: bool,
    /// Run the library read/write story even when root (no mounts).
    #[arg(long)]
    no_mount: bool,
    /// `file` (sparse files in a temp dir) or `rbd` (images in a throwaway Ceph cluster).
    #[arg(long, value_enum, default_value = "file")]
    backend: DemoBackend,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DemoBackend {
    File,
    Rbd,
}

struct Report {
    lines: Vec<(bool, String)>,
}

impl Report {
    fn check(&mut self, ok: bool, what: impl Into<String>) {
        let what = what.into();
        println!("  [{}] {what}", if ok { "ok" } else { "FAILED" });
        self.lines.push((ok, what));
    }
}

fn marker(tenant: &str, i: usize) -> String {
    format!("STRONGROOM-DEMO-MARKER-{tenant}-{i}-confidential")
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

/// Search a (sparse) backing file for any of the markers, streaming.
fn file_has_any(path: &Path, needles: &[String]) -> anyhow::Result<bool> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 4 << 20];
    let keep = needles.iter().map(|n| n.len()).max().unwrap_or(0);
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(false);
        }
        let mut chunk = std::mem::take(&mut carry);
        chunk.extend_from_slice(&buf[..n]);
        if needles.iter().any(|x| contains(&chunk, x.as_bytes())) {
            return Ok(true);
        }
        let start = chunk.len().saturating_sub(keep);
        carry = chunk[start..].to_vec();
    }
}

fn can_mount() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false);
    root && Path::new("/dev/fuse").exists() && Path::new("/dev/loop-control").exists()
}

/// The in-process dev key manager, serving on a loopback port: (address, root token). The
/// runtime must stay alive while it is used.
fn start_kms(rt: &tokio::runtime::Runtime) -> anyhow::Result<(String, SecretString)> {
    let core = Core::new(Arc::new(InmemStorage::new()), CoreOptions::default());
    let (root_token, _) = core
        .init_dev(None)
        .map_err(|e| anyhow::anyhow!("dev key manager: {e:?}"))?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let l = ListenerConfig {
        address: "127.0.0.1:0".into(),
        tls_disable: true,
        ..Default::default()
    };
    rt.spawn(strongroom_kms::server::serve(core, vec![l], Some(tx)));
    let addr = rt.block_on(rx).context("key manager did not start")?[0];
    Ok((format!("http://{addr}"), SecretString::new(root_token)))
}

/// A demo volume: id, tenant, protection, the tenant's credential.
struct DemoVolume {
    id: &'static str,
    tenant: &'static str,
    protection: ProtectionRequest,
    cred: Credential,
    /// `None`: a sparse file in the volume's directory.
    store: Option<StoreSpec>,
}

/// Everything the demo's steps share.
struct Demo {
    mgr: Manager,
    base: PathBuf,
    /// Real mounts (root), or the library's read/write API.
    mount: bool,
    vols: Vec<DemoVolume>,
    markers: Vec<String>,
    /// The throwaway Ceph cluster (`--backend rbd`).
    ceph: Option<DevCluster>,
    admin_client: strongroom_vault_client::Client,
    layout: TenantLayout,
    root: SecretString,
    admin: SecretString,
    rep: Report,
}

/// Tenants alice and bob (transit key, policy, token each) and the platform's deletion
/// token; returns their volumes-to-be and the admin token.
fn setup_tenants(
    admin_client: &strongroom_vault_client::Client,
    layout: &TenantLayout,
) -> anyhow::Result<(Vec<DemoVolume>, SecretString)> {
    let mut tokens = Vec::new();
    for t in ["alice", "bob"] {
        let p = tenant::setup_tenant(admin_client, t, layout)?;
        tokens.push(tenant::create_token(admin_client, &[p.as_str()], "1h")?);
        println!(
            "tenant {t}: transit key {} (derived), policy {p}, own token",
            tenant::transit_key(t)
        );
    }
    let admin = tenant::create_token(admin_client, &[tenant::ADMIN_POLICY], "1h")?;
    println!(
        "platform admin: deletion-only token (policy {})",
        tenant::ADMIN_POLICY
    );
    let vols = vec![
        DemoVolume {
            id: "alice-db",
            tenant: "alice",
            protection: ProtectionRequest::envelope_for("alice"),
            cred: Credential::Tenant(tokens[0].clone()),
            store: None,
        },
        DemoVolume {
            id: "bob-logs",
            tenant: "bob",
            protection: ProtectionRequest::Kv {
                backend: tenant::kv_backend("secret", "bob"),
            },
            cred: Credential::Tenant(tokens[1].clone()),
            store: None,
        },
    ];
    Ok((vols, admin))
}

/// The throwaway cluster for `--backend rbd`, or why there is none (with the install command).
fn start_ceph(base: &Path) -> Result<DevCluster, String> {
    if let Err(why) = DevCluster::available() {
        return Err(format!(
            "--backend rbd needs Ceph, which is not installed here ({why}).\n\
             Install it (Debian 12) with:\n  {INSTALL_HINT}"
        ));
    }
    println!("starting a throwaway Ceph cluster (1 monitor + 1 memstore OSD on 127.0.0.1)...");
    let c = DevCluster::start(base)?;
    println!(
        "ceph: {} (stopped and removed when the demo ends)",
        c.conf().display()
    );
    Ok(c)
}

/// Each volume an RBD image `csi-vol-<uuid>` in the cluster's pool.
fn rbd_stores(vols: &mut [DemoVolume], c: &DevCluster) {
    for v in vols {
        v.store = Some(StoreSpec::Rbd {
            pool: c.pool().into(),
            namespace: String::new(),
            image: new_image_name(),
            ceph: CephRef {
                conf: Some(c.conf().to_string_lossy().into_owned()),
                user: "admin".into(),
                monitors: None,
                ms_mode: None,
            },
            layout: Default::default(),
        });
    }
}

pub fn run(a: DemoArgs) -> anyhow::Result<i32> {
    println!("strongroom demo: encrypted per-tenant volumes with an embedded key manager\n");
    let tmp = tempfile::Builder::new()
        .prefix("strongroom-demo-")
        .tempdir()?;
    let base: PathBuf = tmp.path().to_path_buf();
    let ceph = match a.backend {
        DemoBackend::File => None,
        DemoBackend::Rbd => match start_ceph(&base) {
            Ok(c) => Some(c),
            Err(why) => {
                eprintln!("strongroom demo: {why}");
                return Ok(1);
            }
        },
    };
    // 1. The key manager, in-process, in memory.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (address, root) = start_kms(&rt)?;
    println!("key manager: dev mode, in memory, at {address}");
    let kms = KmsConfig::new(address);
    let admin_client = kms.client(&root)?;
    let layout = TenantLayout::default();
    let (mut vols, admin) = setup_tenants(&admin_client, &layout)?;
    if let Some(c) = &ceph {
        rbd_stores(&mut vols, c);
    }
    let mgr = Manager::new(ManagerConfig {
        root: base.join("volumes"),
        cluster_id: "demo-cluster".into(),
        kms,
        cache_ttl: Duration::from_secs(60),
        datapath: None,
    });
    let mount = !a.no_mount && can_mount();
    println!("volumes in {}", base.display());
    if !mount {
        println!(
            "data path: none: not root (or --no-mount), using the library's read/write API \
             instead of mounts"
        );
    } else if let Some(why) = strongroom_volume::DataPathKind::kernel_missing() {
        println!("only the userspace data path (FUSE + loop) is possible here.");
        println!("for the kernel one (dm-crypt): {why}");
    }
    println!();
    let mut d = Demo {
        mgr,
        base,
        mount,
        vols,
        markers: Vec::new(),
        ceph,
        admin_client,
        layout,
        root,
        admin,
        rep: Report { lines: vec![] },
    };
    let failed = d.run_steps();
    if a.keep {
        println!("kept {}", tmp.keep().display());
    }
    Ok(if failed == 0 { 0 } else { 1 })
}

impl Demo {
    /// Every step, then the report; returns the number of failed checks.
    fn run_steps(&mut self) -> usize {
        let r = self
            .create_and_write()
            .and_then(|()| self.check_no_plaintext())
            .and_then(|()| self.check_isolation())
            .and_then(|()| self.rotate())
            .and_then(|()| self.shred());
        if let Err(e) = &r {
            self.rep.check(false, format!("demo stopped: {e:#}"));
        }
        for v in &self.vols {
            let _ = self.mgr.unmount(v.id);
        }
        let lines = &self.rep.lines;
        let failed = lines.iter().filter(|(ok, _)| !ok).count();
        println!(
            "\nreport: {} checks, {} passed, {} failed{}",
            lines.len(),
            lines.len() - failed,
            failed,
            if self.mount {
                ""
            } else {
                " (library mode: run as root for real mounts)"
            }
        );
        failed
    }

    /// Each volume created and three files with known markers written to it.
    fn create_and_write(&mut self) -> anyhow::Result<()> {
        for v in &self.vols {
            let req = CreateRequest {
                id: v.id.to_string(),
                tenant: v.tenant.to_string(),
                size: 64 << 20,
                protection: v.protection.clone(),
                store: v.store.clone(),
                fs_type: FsType::Ext4,
            };
            let info = self.mgr.create(&req, &v.cred)?;
            self.rep.check(
                info.state == State::Formatted,
                format!(
                    "{}: created for {} ({} protection, LUKS2 aes-xts-plain64/512, 4K sectors)",
                    v.id, v.tenant, info.protection
                ),
            );
            for i in 0..3 {
                let m = marker(v.tenant, i);
                if self.mount {
                    let target = self.base.join("mnt").join(v.id);
                    let info = self.mgr.mount(v.id, &v.cred, &target)?;
                    if i == 0 {
                        let d = info.datapath.map_or("none", |d| d.describe());
                        println!("{}: mounted on the {d} data path", v.id);
                    }
                    std::fs::write(target.join(format!("file-{i}.txt")), m.repeat(100))?;
                } else {
                    let o = self.mgr.open(v.id, &v.cred)?;
                    o.write((i as u64) * 1_000_000 + 12_345, m.as_bytes())?;
                    o.flush()?;
                }
                self.markers.push(m);
            }
            let how = if self.mount {
                " through the mounted ext4"
            } else {
                " through the library"
            };
            self.rep.check(
                true,
                format!("{}: 3 files with known markers written{how}", v.id),
            );
        }
        if self.mount {
            for v in &self.vols {
                self.mgr.unmount(v.id)?; // flushes everything to the backing file
            }
        }
        Ok(())
    }

    /// 2. No plaintext in any backing file (or in any RADOS object of an image).
    fn check_no_plaintext(&mut self) -> anyhow::Result<()> {
        for v in &self.vols {
            let (found, what) = match (&v.store, &self.ceph) {
                (Some(StoreSpec::Rbd { image, .. }), Some(c)) => {
                    let data = c.object_data(image).map_err(anyhow::Error::msg)?;
                    let found = self.markers.iter().any(|m| contains(&data, m.as_bytes()));
                    (found, format!("RADOS objects of {image} hold"))
                }
                _ => {
                    let f = self.base.join("volumes").join(v.id).join("volume.img");
                    let found = file_has_any(&f, &self.markers)?;
                    (found, "backing file holds".to_string())
                }
            };
            self.rep
                .check(!found, format!("{}: {what} none of the markers", v.id));
        }
        Ok(())
    }

    /// 3. Isolation: bob's token neither opens nor rotates alice's volume.
    fn check_isolation(&mut self) -> anyhow::Result<()> {
        let bob = &self.vols[1].cred;
        match self.mgr.open("alice-db", bob) {
            Err(e) => self.rep.check(
                e.kind() == ErrorKind::PermissionDenied,
                format!("bob's token on alice-db: refused with {}", e.code()),
            ),
            Ok(_) => self.rep.check(false, "bob's token opened alice-db"),
        }
        match self.mgr.rotate("alice-db", bob, RotateKind::Kek) {
            Err(e) => self.rep.check(
                e.kind() == ErrorKind::PermissionDenied,
                format!("bob's token rotating alice-db: refused with {}", e.code()),
            ),
            Ok(_) => self.rep.check(false, "bob rotated alice-db"),
        }
        Ok(())
    }

    /// 4. KEK and keyslot rotations, with the data intact after them.
    fn rotate(&mut self) -> anyhow::Result<()> {
        let (alice, bob) = (&self.vols[0].cred, &self.vols[1].cred);
        tenant::rotate_tenant_key(&self.admin_client, &self.layout, "alice")?;
        let i = self.mgr.rotate("alice-db", alice, RotateKind::Kek)?;
        self.rep.check(
            i.kek_version == Some(2),
            format!(
                "alice-db: KEK rotated (admin rotated the transit key, volume rewrapped to v{})",
                i.kek_version.unwrap_or(0)
            ),
        );
        self.mgr.rotate("alice-db", alice, RotateKind::Slot)?;
        self.mgr.rotate("bob-logs", bob, RotateKind::Slot)?;
        self.rep.check(true, "alice-db and bob-logs: keyslot secrets rotated (new slot added, verified, old removed)");
        for i in 0..self.vols.len() {
            let intact = self.data_intact(&self.vols[i])?;
            self.rep.check(
                intact,
                format!("{}: data intact after rotation", self.vols[i].id),
            );
        }
        Ok(())
    }

    /// Whether the volume's three marker files read back.
    fn data_intact(&self, v: &DemoVolume) -> anyhow::Result<bool> {
        if self.mount {
            let target = self.base.join("mnt").join(v.id);
            self.mgr.mount(v.id, &v.cred, &target)?;
            let ok = (0..3).all(|i| {
                std::fs::read_to_string(target.join(format!("file-{i}.txt")))
                    .is_ok_and(|s| s == marker(v.tenant, i).repeat(100))
            });
            self.mgr.unmount(v.id)?;
            return Ok(ok);
        }
        let o = self.mgr.open(v.id, &v.cred)?;
        Ok((0..3).all(|i| {
            let m = marker(v.tenant, i);
            let mut b = vec![0u8; m.len()];
            o.read((i as u64) * 1_000_000 + 12_345, &mut b).is_ok() && b == m.as_bytes()
        }))
    }

    /// 5. Shred with the admin's deletion credential (no tenant token): nobody opens it.
    fn shred(&mut self) -> anyhow::Result<()> {
        self.mgr
            .shred("alice-db", &Credential::Admin(self.admin.clone()))?;
        self.rep.check(true, "alice-db: shredded by the platform admin (wrapped secret destroyed, every keyslot wiped, audited)");
        let by_alice = self.mgr.open("alice-db", &self.vols[0].cred).is_err();
        let by_root = self
            .mgr
            .open("alice-db", &Credential::Tenant(self.root.clone()))
            .is_err();
        let header_gone = self.header_gone(&self.vols[0]);
        self.rep.check(by_alice && by_root && header_gone, "alice-db: cannot be opened any more, not by alice, not with the KMS root token (no LUKS2 header left)");
        let audit =
            std::fs::read_to_string(self.base.join("volumes/audit.log")).unwrap_or_default();
        self.rep.check(
            audit.contains("\"op\":\"shred\""),
            "audit log records the shred",
        );
        Ok(())
    }

    /// Whether no LUKS2 header opens on the volume's store any more.
    fn header_gone(&self, v: &DemoVolume) -> bool {
        let Some(StoreSpec::Rbd { pool, image, .. }) = &v.store else {
            let img = self.base.join("volumes").join(v.id).join("volume.img");
            return strongroom_luks::FileDevice::open(&img, false)
                .map(|d| strongroom_luks::Volume::open(d).is_err())
                .unwrap_or(true);
        };
        let Some(c) = &self.ceph else { return false };
        let img = strongroom_rbd::Cluster::from_conf(Some(&c.conf()), "admin")
            .and_then(|cl| cl.ioctx(pool, "", false))
            .and_then(|io| io.open(image));
        match img {
            Ok(img) => {
                strongroom_luks::Volume::open(strongroom_volume::RbdDevice::new(img)).is_err()
            }
            Err(_) => true,
        }
    }
}
