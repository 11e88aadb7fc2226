//! `strongroom demo` — the whole story on embedded defaults: a dev key manager started
//! in-process, two tenants with their own transit keys, policies and tokens, encrypted
//! volumes for each (sparse files in a temp dir), files written, the backing files searched for
//! plaintext, tenant B refused tenant A's key, a rotation with data intact, a crypto-shred after
//! which nothing (not even the root token) opens the volume. Prints a short report.
//!
//! As root it mounts real filesystems (FUSE + loop + ext4, or dm-crypt where the kernel has
//! it); without root it runs the same story through the library's read/write API and says so.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use strongroom_kms::config::ListenerConfig;
use strongroom_kms::core::{Core, CoreOptions};
use strongroom_kms::storage::InmemStorage;
use strongroom_volume::tenant::{self, TenantLayout};
use strongroom_volume::{
    CreateRequest, Credential, ErrorKind, FsType, KmsConfig, Manager, ManagerConfig,
    ProtectionRequest, RotateKind, SecretString, State,
};

#[derive(Args)]
pub struct DemoArgs {
    /// Keep the temp directory (volumes, audit log) instead of deleting it.
    #[arg(long)]
    keep: bool,
    /// Run the library read/write story even when root (no mounts).
    #[arg(long)]
    no_mount: bool,
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

pub fn run(a: DemoArgs) -> anyhow::Result<i32> {
    println!("strongroom demo: encrypted per-tenant volumes with an embedded key manager\n");
    // 1. The key manager, in-process, in memory.
    let core = Core::new(Arc::new(InmemStorage::new()), CoreOptions::default());
    let (root_token, _) = core
        .init_dev(None)
        .map_err(|e| anyhow::anyhow!("dev key manager: {e:?}"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let l = ListenerConfig {
        address: "127.0.0.1:0".into(),
        tls_disable: true,
        ..Default::default()
    };
    rt.spawn(strongroom_kms::server::serve(core, vec![l], Some(tx)));
    let addr = rt.block_on(rx).context("key manager did not start")?[0];
    let address = format!("http://{addr}");
    println!("key manager: dev mode, in memory, at {address}");

    let kms = KmsConfig::new(address);
    let root = SecretString::new(root_token);
    let admin_client = kms.client(&root)?;
    let layout = TenantLayout::default();
    let mut tokens = Vec::new();
    for t in ["alice", "bob"] {
        let p = tenant::setup_tenant(&admin_client, t, &layout)?;
        tokens.push(tenant::create_token(&admin_client, &[p.as_str()], "1h")?);
        println!(
            "tenant {t}: transit key {} (derived), policy {p}, own token",
            tenant::transit_key(t)
        );
    }
    let admin = tenant::create_token(&admin_client, &[tenant::ADMIN_POLICY], "1h")?;
    println!(
        "platform admin: deletion-only token (policy {})",
        tenant::ADMIN_POLICY
    );
    let (alice, bob) = (
        Credential::Tenant(tokens[0].clone()),
        Credential::Tenant(tokens[1].clone()),
    );

    let tmp = tempfile::Builder::new()
        .prefix("strongroom-demo-")
        .tempdir()?;
    let base: PathBuf = tmp.path().to_path_buf();
    let mgr = Manager::new(ManagerConfig {
        root: base.join("volumes"),
        cluster_id: "demo-cluster".into(),
        kms: kms.clone(),
        cache_ttl: Duration::from_secs(60),
        datapath: None,
    });
    let mount = !a.no_mount && can_mount();
    println!(
        "volumes in {}; data path: {}\n",
        base.display(),
        if mount {
            strongroom_volume::DataPathKind::detect().describe()
        } else {
            "none: not root (or --no-mount), using the library's read/write API instead of mounts"
        }
    );

    let mut rep = Report { lines: vec![] };
    let vols = [
        (
            "alice-db",
            "alice",
            ProtectionRequest::envelope_for("alice"),
            &alice,
        ),
        (
            "bob-logs",
            "bob",
            ProtectionRequest::Kv {
                backend: tenant::kv_backend("secret", "bob"),
            },
            &bob,
        ),
    ];
    let mut markers = Vec::new();
    let r: anyhow::Result<()> = (|| {
        for (id, t, prot, cred) in &vols {
            let info = mgr.create(
                &CreateRequest {
                    id: id.to_string(),
                    tenant: t.to_string(),
                    size: 64 << 20,
                    protection: prot.clone(),
                    store: None,
                    fs_type: FsType::Ext4,
                },
                cred,
            )?;
            rep.check(
                info.state == State::Formatted,
                format!(
                    "{id}: created for {t} ({} protection, LUKS2 aes-xts-plain64/512, 4K sectors)",
                    info.protection
                ),
            );
            for i in 0..3 {
                let m = marker(t, i);
                if mount {
                    let target = base.join("mnt").join(id);
                    mgr.mount(id, cred, &target)?;
                    std::fs::write(target.join(format!("file-{i}.txt")), m.repeat(100))?;
                } else {
                    let v = mgr.open(id, cred)?;
                    v.write((i as u64) * 1_000_000 + 12_345, m.as_bytes())?;
                    v.flush()?;
                }
                markers.push(m);
            }
            rep.check(
                true,
                format!(
                    "{id}: 3 files with known markers written{}",
                    if mount {
                        " through the mounted ext4"
                    } else {
                        " through the library"
                    }
                ),
            );
        }
        if mount {
            for (id, ..) in &vols {
                mgr.unmount(id)?; // flushes everything to the backing file
            }
        }
        // 2. No plaintext in any backing file.
        for (id, ..) in &vols {
            let f = base.join("volumes").join(id).join("volume.img");
            let found = file_has_any(&f, &markers)?;
            rep.check(
                !found,
                format!(
                    "{id}: backing file holds none of the markers (searched {} bytes)",
                    std::fs::metadata(&f)?.len()
                ),
            );
        }
        // 3. Isolation.
        match mgr.open("alice-db", &bob) {
            Err(e) => rep.check(
                e.kind() == ErrorKind::PermissionDenied,
                format!("bob's token on alice-db: refused with {}", e.code()),
            ),
            Ok(_) => rep.check(false, "bob's token opened alice-db"),
        }
        match mgr.rotate("alice-db", &bob, RotateKind::Kek) {
            Err(e) => rep.check(
                e.kind() == ErrorKind::PermissionDenied,
                format!("bob's token rotating alice-db: refused with {}", e.code()),
            ),
            Ok(_) => rep.check(false, "bob rotated alice-db"),
        }
        // 4. Rotation with data intact.
        tenant::rotate_tenant_key(&admin_client, &layout, "alice")?;
        let i = mgr.rotate("alice-db", &alice, RotateKind::Kek)?;
        rep.check(
            i.kek_version == Some(2),
            format!(
                "alice-db: KEK rotated (admin rotated the transit key, volume rewrapped to v{})",
                i.kek_version.unwrap_or(0)
            ),
        );
        mgr.rotate("alice-db", &alice, RotateKind::Slot)?;
        mgr.rotate("bob-logs", &bob, RotateKind::Slot)?;
        rep.check(true, "alice-db and bob-logs: keyslot secrets rotated (new slot added, verified, old removed)");
        for (id, t, _, cred) in &vols {
            let intact = if mount {
                let target = base.join("mnt").join(id);
                mgr.mount(id, cred, &target)?;
                let ok = (0..3).all(|i| {
                    std::fs::read_to_string(target.join(format!("file-{i}.txt")))
                        .is_ok_and(|s| s == marker(t, i).repeat(100))
                });
                mgr.unmount(id)?;
                ok
            } else {
                let v = mgr.open(id, cred)?;
                (0..3).all(|i| {
                    let m = marker(t, i);
                    let mut b = vec![0u8; m.len()];
                    v.read((i as u64) * 1_000_000 + 12_345, &mut b).is_ok() && b == m.as_bytes()
                })
            };
            rep.check(intact, format!("{id}: data intact after rotation"));
        }
        // 5. Shred with the admin's deletion credential (no tenant token).
        let adm = Credential::Admin(admin.clone());
        mgr.shred("alice-db", &adm)?;
        rep.check(true, "alice-db: shredded by the platform admin (wrapped secret destroyed, every keyslot wiped, audited)");
        let by_alice = mgr.open("alice-db", &alice).is_err();
        let by_root = mgr
            .open("alice-db", &Credential::Tenant(root.clone()))
            .is_err();
        let header_gone =
            strongroom_luks::FileDevice::open(&base.join("volumes/alice-db/volume.img"), false)
                .map(|d| strongroom_luks::Volume::open(d).is_err())
                .unwrap_or(true);
        rep.check(by_alice && by_root && header_gone, "alice-db: cannot be opened any more, not by alice, not with the KMS root token (no LUKS2 header left)");
        let audit = std::fs::read_to_string(base.join("volumes/audit.log")).unwrap_or_default();
        rep.check(
            audit.contains("\"op\":\"shred\""),
            "audit log records the shred",
        );
        Ok(())
    })();
    if let Err(e) = &r {
        rep.check(false, format!("demo stopped: {e:#}"));
    }
    for (id, _, _, _) in &vols {
        let _ = mgr.unmount(id);
    }
    let failed = rep.lines.iter().filter(|(ok, _)| !ok).count();
    println!(
        "\nreport: {} checks, {} passed, {} failed{}",
        rep.lines.len(),
        rep.lines.len() - failed,
        failed,
        if mount {
            ""
        } else {
            " (library mode: run as root for real mounts)"
        }
    );
    if a.keep {
        println!("kept {}", tmp.keep().display());
    }
    Ok(if failed == 0 { 0 } else { 1 })
}
