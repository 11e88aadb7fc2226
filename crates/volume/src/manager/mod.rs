//! The volume manager API used by the CLI and (next) the CSI driver.
//!
//! Every operation: validate → take the volume's lock → load the checksummed metadata →
//! authorize with the KMS as the caller (the unwrap *is* the authorization) → finish any
//! [`Pending`] step left by a crash → do the work, persisting each state change before its
//! effect. Re-running any operation after a crash (kill -9 anywhere) completes or repeats it.

use crate::cache::KeyCache;
use crate::datapath::{self, fuse, loopdev, DataPathKind, Runtime};
use crate::error::{Error, Result};
use crate::kms::{Credential, KmsConfig, Token};
use crate::meta::{now, LuksParams, Protection, StoreSpec, VolumeMeta, META_VERSION};
use crate::protect;
use crate::state::{Pending, State};
use crate::store::{self, BackingStore};
use serde::Serialize;
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strongroom_luks::format::{
    KdfParams, KeyslotParams, DEFAULT_DATA_OFFSET, DEFAULT_PBKDF2_ITERATIONS,
};
use strongroom_luks::xts::Backend;
use strongroom_luks::{BlockDevice, CryptDevice, FormatParams, Volume};
use zeroize::Zeroizing;

/// Environment variable naming a step at which the process aborts (tests of the kill -9
/// promise). Steps are listed in [`FAULT_STEPS`].
pub const FAULT_ENV: &str = "STRONGROOM_FAULT";
pub const FAULT_STEPS: &[&str] = &[
    "create:provisioned",
    "create:store-ready",
    "create:protected-unrecorded",
    "create:key-protected",
    "create:formatted",
    "rotate:new-protected",
    "rotate:slot-added",
    "rotate:kv-promoted",
    "rotate:promoted",
    "rotate:dropped-one",
    "kek:rewrapped",
    "resize:recorded",
    "resize:grown",
    "shred:marked",
    "shred:key-destroyed",
    "shred:wiped",
    "mount:fuse",
    "mount:loop",
];

fn fault(step: &str) {
    if std::env::var(FAULT_ENV).is_ok_and(|v| v == step) {
        eprintln!("fault injection: aborting at {step}");
        std::process::abort();
    }
}

#[derive(Clone, Debug)]
pub struct ManagerConfig {
    /// Volumes live in `<root>/<volume id>/` (metadata, sparse file, runtime record).
    pub root: PathBuf,
    pub cluster_id: String,
    pub kms: KmsConfig,
    pub cache_ttl: Duration,
    /// `None`: detect (dm-crypt when the kernel has device-mapper, else FUSE + loop).
    pub datapath: Option<DataPathKind>,
}

/// How to protect a new volume's secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtectionRequest {
    Envelope { mount: String, key: String },
    Kv { backend: String },
}

impl ProtectionRequest {
    /// The default: the tenant's transit key `tenant-<tenant>` on `transit/`.
    pub fn envelope_for(tenant: &str) -> Self {
        ProtectionRequest::Envelope {
            mount: "transit".into(),
            key: format!("tenant-{tenant}"),
        }
    }
    fn mode(&self) -> &'static str {
        match self {
            ProtectionRequest::Envelope { .. } => "envelope",
            ProtectionRequest::Kv { .. } => "kv",
        }
    }
}

#[derive(Clone, Debug)]
pub struct CreateRequest {
    pub id: String,
    pub tenant: String,
    /// Usable bytes (rounded up to 4 KiB); the store gets this plus the 16 MiB LUKS2 header.
    pub size: u64,
    pub protection: ProtectionRequest,
    /// `None`: a sparse file `<root>/<id>/volume.img`.
    pub store: Option<StoreSpec>,
    pub fs_type: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotateKind {
    /// Rewrap the wrapped secret with the latest version of the tenant's transit key.
    Kek,
    /// New keyslot secret: add a slot, verify it, promote it, remove the old slot(s).
    Slot,
}

/// What `status`/`list` report (no secrets).
#[derive(Debug, Clone, Serialize)]
pub struct VolumeInfo {
    pub id: String,
    pub tenant: String,
    pub state: String,
    pub protection: String,
    pub size: u64,
    pub store: StoreSpec,
    pub fs_type: String,
    pub filesystem_created: bool,
    pub fs_grow_pending: bool,
    pub mounted: bool,
    pub target: Option<PathBuf>,
    /// The decrypted block device while the volume is open on this node.
    pub device: Option<String>,
    pub datapath: Option<String>,
    pub pending: Option<Pending>,
    pub kek_version: Option<u64>,
    pub luks: LuksParams,
    pub created_at: u64,
    pub slot_rotated_at: Option<u64>,
    pub kek_rotated_at: Option<u64>,
    pub shredded_at: Option<u64>,
    pub volume_key_rotation: &'static str,
}

/// An opened volume: plaintext reads and writes through the library (no mount needed).
pub struct OpenVolume {
    crypt: CryptDevice<Box<dyn BlockDevice>>,
}

impl OpenVolume {
    pub fn size(&self) -> u64 {
        self.crypt.size()
    }
    pub fn read(&self, pos: u64, buf: &mut [u8]) -> Result<()> {
        Ok(self.crypt.read(pos, buf)?)
    }
    pub fn write(&self, pos: u64, data: &[u8]) -> Result<()> {
        Ok(self.crypt.write(pos, data)?)
    }
    pub fn flush(&self) -> Result<()> {
        Ok(self.crypt.flush()?)
    }
}

type Progress = Box<dyn Fn(&str) + Send + Sync>;

pub struct Manager {
    cfg: ManagerConfig,
    cache: KeyCache,
    sessions: Mutex<HashMap<String, fuser::BackgroundSession>>,
    progress: Option<Progress>,
}

fn valid_name(kind: &str, s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{kind} {s:?}: use 1-128 characters of [A-Za-z0-9._-], not starting with '.'"
        )))
    }
}

/// An exclusive lock on a volume directory for the duration of an operation.
struct VolLock(#[allow(dead_code)] File);

#[allow(clippy::incompatible_msrv)]
fn lock(dir: &Path) -> Result<VolLock> {
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))
        .map_err(|e| Error::io("open volume lock", e))?;
    f.lock().map_err(|e| Error::io("lock volume", e))?;
    Ok(VolLock(f))
}

fn tenant_token(cred: &Credential) -> Result<&Token> {
    match cred {
        Credential::Tenant(t) => Ok(t),
        Credential::Admin(_) => Err(Error::PermissionDenied(
            "the admin credential is only for shred and unmount; use the tenant's token".into(),
        )),
    }
}

impl Manager {
    pub fn new(cfg: ManagerConfig) -> Self {
        let cache = KeyCache::new(cfg.cache_ttl);
        Manager {
            cfg,
            cache,
            sessions: Mutex::new(HashMap::new()),
            progress: None,
        }
    }

    /// Progress messages for long work (formatting, wiping, resizing).
    pub fn with_progress(mut self, f: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.progress = Some(Box::new(f));
        self
    }

    pub fn config(&self) -> &ManagerConfig {
        &self.cfg
    }

    pub fn cached_keys(&self) -> usize {
        self.cache.len()
    }

    fn say(&self, m: &str) {
        if let Some(p) = &self.progress {
            p(m)
        }
    }

    pub fn volume_dir(&self, id: &str) -> PathBuf {
        self.cfg.root.join(id)
    }

    fn audit(&self, op: &str, meta: &VolumeMeta, actor: &str, result: &str) {
        tracing::info!(volume = %meta.id, tenant = %meta.tenant, op, actor, result, "volume audit");
        let line = serde_json::json!({
            "time": now(), "op": op, "volume": meta.id, "tenant": meta.tenant,
            "actor": actor, "result": result,
            "kek_version": match &meta.protection { Protection::Envelope { key_version, .. } => Some(*key_version), _ => None },
        });
        if let Ok(mut f) = File::options()
            .create(true)
            .append(true)
            .open(self.cfg.root.join("audit.log"))
        {
            let _ = writeln!(f, "{line}");
            let _ = f.sync_data();
        }
    }

    fn load(&self, id: &str) -> Result<(PathBuf, VolumeMeta)> {
        valid_name("volume id", id)?;
        let dir = self.volume_dir(id);
        let m = VolumeMeta::load(&dir)?;
        Ok((dir, m))
    }

    fn ctx(&self, m: &VolumeMeta) -> Vec<u8> {
        protect::context(&m.cluster_id, &m.tenant, &m.id)
    }

    /// The keyslot secret, unwrapped as the tenant (the authorization of every tenant op).
    fn secret(&self, m: &VolumeMeta, cred: &Credential) -> Result<Zeroizing<Vec<u8>>> {
        let tok = tenant_token(cred)?;
        match m.state {
            State::Shredding | State::Shredded => {
                return Err(Error::FailedPrecondition(format!(
                    "volume {} is shredded",
                    m.id
                )))
            }
            State::Provisioning => {
                return Err(Error::FailedPrecondition(format!(
                    "volume {} is still being created: re-run create",
                    m.id
                )))
            }
            _ => {}
        }
        let fp = tok.fingerprint();
        if let Some(s) = self.cache.get(&m.id, &fp) {
            return Ok(s);
        }
        let c = self.cfg.kms.client(tok)?;
        let s = match &m.protection {
            Protection::Envelope {
                mount,
                key,
                wrapped: Some(b),
                ..
            } => protect::unwrap(&c, mount, key, b, &self.ctx(m))?,
            Protection::Envelope { wrapped: None, .. } => {
                return Err(Error::FailedPrecondition("no wrapped secret".into()))
            }
            Protection::Kv {
                mount,
                kv_version,
                path,
                ..
            } => protect::kv_read(&c, mount, *kv_version, path)?
                .0
                .ok_or_else(|| Error::NotFound(format!("no KV entry for volume {}", m.id)))?,
        };
        self.cache.put(&m.id, &fp, &s);
        Ok(s)
    }

    fn require_formatted(m: &VolumeMeta) -> Result<()> {
        match m.state {
            State::Formatted => Ok(()),
            State::Shredding | State::Shredded => Err(Error::FailedPrecondition(format!(
                "volume {} is shredded",
                m.id
            ))),
            _ => Err(Error::FailedPrecondition(format!(
                "volume {} is not created yet ({}): re-run create",
                m.id,
                m.state.as_str()
            ))),
        }
    }

    // ---------------------------------------------------------------- create

    pub fn create(&self, req: &CreateRequest, cred: &Credential) -> Result<VolumeInfo> {
        valid_name("volume id", &req.id)?;
        valid_name("tenant", &req.tenant)?;
        if req.size == 0 {
            return Err(Error::InvalidArgument("size must be positive".into()));
        }
        if !matches!(req.fs_type.as_str(), "ext4" | "xfs") {
            return Err(Error::InvalidArgument(format!(
                "filesystem {:?}: ext4 or xfs",
                req.fs_type
            )));
        }
        let size = req.size.div_ceil(4096) * 4096;
        let tok = tenant_token(cred)?;
        let dir = self.volume_dir(&req.id);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create volume directory", e))?;
        let _l = lock(&dir)?;
        let mut m = match VolumeMeta::load(&dir) {
            Ok(m) => {
                if m.tenant != req.tenant
                    || m.size != size
                    || m.protection.mode() != req.protection.mode()
                {
                    return Err(Error::InvalidArgument(format!(
                        "volume {} already exists with other parameters (tenant {}, {} bytes, {})",
                        m.id,
                        m.tenant,
                        m.size,
                        m.protection.mode()
                    )));
                }
                if matches!(m.state, State::Shredding | State::Shredded) {
                    return Err(Error::FailedPrecondition(format!(
                        "volume {} was shredded; use another id",
                        m.id
                    )));
                }
                m
            }
            Err(Error::NotFound(_)) => {
                let store = req.store.clone().unwrap_or_else(|| StoreSpec::File {
                    path: dir.join("volume.img").to_string_lossy().into_owned(),
                });
                let protection = match &req.protection {
                    ProtectionRequest::Envelope { mount, key } => Protection::Envelope {
                        mount: mount.clone(),
                        key: key.clone(),
                        wrapped: None,
                        key_version: 0,
                    },
                    ProtectionRequest::Kv { backend } => Protection::Kv {
                        backend: backend.trim_matches('/').to_owned(),
                        mount: String::new(),
                        kv_version: 0,
                        path: String::new(),
                    },
                };
                let mut m = VolumeMeta {
                    version: META_VERSION,
                    id: req.id.clone(),
                    tenant: req.tenant.clone(),
                    cluster_id: self.cfg.cluster_id.clone(),
                    created_at: now(),
                    size,
                    store,
                    luks: LuksParams {
                        cipher: "aes-xts-plain64".into(),
                        key_size_bits: 512,
                        sector_size: 4096,
                        pbkdf: "pbkdf2-sha256".into(),
                        pbkdf_iterations: DEFAULT_PBKDF2_ITERATIONS,
                        data_offset: DEFAULT_DATA_OFFSET,
                        uuid: None,
                    },
                    protection,
                    state: State::Provisioning,
                    fs_type: req.fs_type.clone(),
                    filesystem_created: false,
                    fs_grow_pending: false,
                    pending: None,
                    slot_rotated_at: None,
                    kek_rotated_at: None,
                    shredded_at: None,
                    generation: 0,
                };
                m.store(&dir)?;
                fault("create:provisioned");
                m
            }
            Err(e) => return Err(e),
        };
        let st = store::from_spec(&m.store);
        let mut fresh: Option<Zeroizing<Vec<u8>>> = None;
        if m.state == State::Provisioning {
            st.ensure(m.size + m.luks.data_offset)?;
            fault("create:store-ready");
            let secret = protect::new_secret();
            let c = self.cfg.kms.client(tok)?;
            let ctx = self.ctx(&m);
            match &mut m.protection {
                Protection::Envelope {
                    mount,
                    key,
                    wrapped,
                    key_version,
                } => {
                    let (b, v) = protect::wrap(&c, mount, key, &secret, &ctx)?;
                    *wrapped = Some(b);
                    *key_version = v;
                }
                Protection::Kv {
                    backend,
                    mount,
                    kv_version,
                    path,
                } => {
                    let (mt, v, p) = protect::kv_locate(&c, backend)?;
                    let p = if p.is_empty() {
                        m.id.clone()
                    } else {
                        format!("{p}/{}", m.id)
                    };
                    protect::kv_write(&c, &mt, v, &p, &secret, None)?;
                    *mount = mt;
                    *kv_version = v;
                    *path = p;
                }
            }
            fault("create:protected-unrecorded");
            m.transition(&dir, State::KeyProtected)?;
            fault("create:key-protected");
            fresh = Some(secret);
        }
        if m.state == State::KeyProtected {
            let secret = match fresh {
                Some(s) => s,
                None => self.secret(&m, cred)?,
            };
            let dev = st.open(true)?;
            // Only a LUKS2 header that this very secret opens counts as "already formatted"
            // (a crash between the format and its state record). Anything else is overwritten:
            // the state says this volume was never handed out, so it holds no data.
            let formatted = Volume::open(&dev).and_then(|v| {
                v.unlock(&secret, None, false)
                    .map(|_| v.header().uuid.clone())
            });
            let uuid = match formatted {
                Ok(u) => u,
                Err(_) => {
                    self.say(&format!("formatting LUKS2 header of {}", m.id));
                    let params = FormatParams {
                        // LUKS2 labels hold at most 47 bytes (ids are ASCII).
                        label: format!("strongroom:{}", m.id).chars().take(47).collect(),
                        ..Default::default()
                    };
                    let (v, _vk) = Volume::format(&dev, &params, &secret)?;
                    v.header().uuid.clone()
                }
            };
            fault("create:formatted");
            m.luks.uuid = Some(uuid);
            m.transition(&dir, State::Formatted)?;
            self.cache.put(&m.id, &tok.fingerprint(), &secret);
            self.audit("create", &m, "tenant", "ok");
        } else {
            // Already formatted: an idempotent re-run still proves the caller's access.
            self.secret(&m, cred)?;
        }
        Ok(self.info(&dir, &m))
    }

    // ---------------------------------------------------------------- pending steps

    /// Finish whatever a crash interrupted. Needs the tenant's credential.
    fn resume(&self, dir: &Path, m: &mut VolumeMeta, cred: &Credential) -> Result<()> {
        match m.pending.clone() {
            None => Ok(()),
            Some(Pending::Resize { new_size }) => self.finish_resize(dir, m, new_size),
            Some(Pending::RotateSlot { .. }) | Some(Pending::DropOldSlots { .. }) => {
                self.finish_rotate_slot(dir, m, cred)
            }
        }
    }

    fn finish_resize(&self, dir: &Path, m: &mut VolumeMeta, new_size: u64) -> Result<()> {
        self.say(&format!("growing {} to {new_size} bytes", m.id));
        store::from_spec(&m.store).grow(new_size + m.luks.data_offset)?;
        fault("resize:grown");
        m.size = new_size;
        m.pending = None;
        m.store(dir)
    }

    fn finish_rotate_slot(&self, dir: &Path, m: &mut VolumeMeta, cred: &Credential) -> Result<()> {
        let tok = tenant_token(cred)?;
        let c = self.cfg.kms.client(tok)?;
        let ctx = self.ctx(m);
        let st = store::from_spec(&m.store);
        if let Some(Pending::RotateSlot {
            new_wrapped,
            new_key_version,
        }) = m.pending.clone()
        {
            let (new, cur) = match &m.protection {
                Protection::Envelope {
                    mount,
                    key,
                    wrapped,
                    ..
                } => {
                    let nb = new_wrapped.as_deref().ok_or_else(|| {
                        Error::Corrupt("rotation without the new wrapped secret".into())
                    })?;
                    let new = protect::unwrap(&c, mount, key, nb, &ctx)?;
                    let cur = match wrapped {
                        Some(b) => Some(protect::unwrap(&c, mount, key, b, &ctx)?),
                        None => None,
                    };
                    (new, cur)
                }
                Protection::Kv {
                    mount,
                    kv_version,
                    path,
                    ..
                } => {
                    let (data, next) = protect::kv_read(&c, mount, *kv_version, path)?;
                    match next {
                        Some(n) => (n, data),
                        // Already promoted before the crash.
                        None => (
                            data.ok_or_else(|| Error::NotFound("KV entry vanished".into()))?,
                            None,
                        ),
                    }
                }
            };
            let dev = st.open(true)?;
            let mut vol = Volume::open(&dev)?;
            let keep = match vol.unlock(&new, None, false) {
                Ok(u) => u.slot,
                Err(strongroom_luks::Error::WrongKey) => {
                    let cur = cur.ok_or_else(|| {
                        Error::Corrupt("neither the current nor the new secret is known".into())
                    })?;
                    let u = vol.unlock(&cur, None, false)?;
                    let slot = vol.add_keyslot(
                        &u.volume_key,
                        &new,
                        &KeyslotParams {
                            kdf: KdfParams::default(),
                            slot: None,
                            priority: None,
                        },
                    )?;
                    fault("rotate:slot-added");
                    // Verify from a fresh read of the header before anything depends on it.
                    let check = Volume::open(&dev)?;
                    let v = check.unlock(&new, Some(slot), false)?;
                    if v.volume_key != u.volume_key {
                        return Err(Error::Internal("new keyslot verification failed".into()));
                    }
                    slot
                }
                Err(e) => return Err(e.into()),
            };
            match &mut m.protection {
                Protection::Envelope {
                    wrapped,
                    key_version,
                    ..
                } => {
                    *wrapped = new_wrapped;
                    *key_version = new_key_version;
                }
                Protection::Kv {
                    mount,
                    kv_version,
                    path,
                    ..
                } => {
                    protect::kv_write(&c, mount, *kv_version, path, &new, None)?;
                    fault("rotate:kv-promoted");
                }
            }
            m.pending = Some(Pending::DropOldSlots { keep });
            m.store(dir)?;
            self.cache.evict(&m.id);
            fault("rotate:promoted");
        }
        if let Some(Pending::DropOldSlots { keep }) = m.pending.clone() {
            let dev = st.open(true)?;
            let mut vol = Volume::open(&dev)?;
            for (slot, _, _) in vol.keyslots() {
                if slot != keep {
                    vol.remove_keyslot(slot)?;
                    fault("rotate:dropped-one");
                }
            }
            m.pending = None;
            m.slot_rotated_at = Some(now());
            m.store(dir)?;
            self.audit("rotate-slot", m, "tenant", "ok");
        }
        Ok(())
    }

    // ---------------------------------------------------------------- open / read / write

    /// Open a volume for plaintext I/O through the library (no mount, no root needed).
    pub fn open(&self, id: &str, cred: &Credential) -> Result<OpenVolume> {
        let (dir, mut m) = self.load(id)?;
        let _l = lock(&dir)?;
        Self::require_formatted(&m)?;
        let secret = self.secret(&m, cred)?;
        if m.pending.is_some() {
            self.resume(&dir, &mut m, cred)?;
        }
        let secret = if m.pending.is_none() {
            self.secret(&m, cred).unwrap_or(secret)
        } else {
            secret
        };
        let st = store::from_spec(&m.store);
        let vol = Volume::open(st.open(false)?)?;
        let u = vol.unlock(&secret, None, false)?;
        let crypt = vol.crypt_device(st.open(true)?, &u, Backend::Auto)?;
        Ok(OpenVolume { crypt })
    }

    // ---------------------------------------------------------------- mount / unmount

    /// Mount the volume's filesystem at `target` (mkfs once, by state). Idempotent.
    /// Userspace path: the FUSE session runs on a thread of this process until [`Self::unmount`].
    pub fn mount(&self, id: &str, cred: &Credential, target: &Path) -> Result<VolumeInfo> {
        self.activate(id, cred, Some(target))
    }

    /// Open the volume as a decrypted block device without a filesystem (CSI block mode):
    /// `info.device` names it. Idempotent; no mkfs, ever.
    pub fn attach(&self, id: &str, cred: &Credential) -> Result<VolumeInfo> {
        self.activate(id, cred, None)
    }

    /// The shared body of [`Self::mount`] (`target` set) and [`Self::attach`] (`None`).
    fn activate(&self, id: &str, cred: &Credential, target: Option<&Path>) -> Result<VolumeInfo> {
        let (dir, mut m) = self.load(id)?;
        let _l = lock(&dir)?;
        Self::require_formatted(&m)?;
        self.secret(&m, cred)?;
        if m.pending.is_some() {
            self.resume(&dir, &mut m, cred)?;
        }
        let secret = self.secret(&m, cred)?;
        if let Some(rt) = Runtime::load(&dir) {
            let same = match target {
                Some(t) => rt.target.as_deref() == Some(t) && datapath::is_mounted(t),
                None => {
                    rt.target.is_none()
                        && (rt.dm_name.is_some()
                            || rt.loop_dev.as_deref().is_some_and(loopdev::is_attached))
                }
            };
            if same && self.serving(&m.id, &rt) {
                return Ok(self.info(&dir, &m));
            }
            // Another target, another mode, or a data path whose server died (a killed
            // driver): take it all down and set it up again.
            self.teardown(&dir, &m.id)?;
        }
        let kind = self.cfg.datapath.unwrap_or_else(DataPathKind::detect);
        let r = (|| {
            let dev = match kind {
                DataPathKind::Userspace => self.attach_userspace(&dir, &m, &secret)?,
                DataPathKind::Kernel => self.attach_kernel(&dir, &m, &secret)?,
            };
            match target {
                Some(t) => self.mount_fs(&dir, &mut m, &dev, t),
                None => Ok(()),
            }
        })();
        if let Err(e) = r {
            let _ = self.teardown(&dir, &m.id);
            return Err(e);
        }
        self.audit(
            if target.is_some() { "mount" } else { "attach" },
            &m,
            "tenant",
            "ok",
        );
        Ok(self.info(&dir, &m))
    }

    /// Whether the process serving a userspace data path is still alive (dm-crypt lives in
    /// the kernel and always is). A FUSE mount whose server died answers ENOTCONN forever.
    fn serving(&self, id: &str, rt: &Runtime) -> bool {
        if rt.datapath != Some(DataPathKind::Userspace) {
            return true;
        }
        match rt.pid {
            Some(p) if p == std::process::id() => self
                .sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(id),
            Some(p) => process_alive(p),
            None => false,
        }
    }

    fn make_fs_once(&self, dir: &Path, m: &mut VolumeMeta, dev: &str) -> Result<()> {
        if !m.filesystem_created {
            self.say(&format!("making {} filesystem on {}", m.fs_type, m.id));
            datapath::mkfs(&m.fs_type, dev)?;
            m.filesystem_created = true;
            m.fs_grow_pending = false;
            m.store(dir)?;
        } else if m.fs_grow_pending && m.fs_type == "ext4" {
            self.say(&format!(
                "growing the ext4 filesystem of {} (offline)",
                m.id
            ));
            datapath::grow_fs_offline(dev)?;
            m.fs_grow_pending = false;
            m.store(dir)?;
        }
        Ok(())
    }

    /// After the mount: an XFS filesystem can only grow online.
    fn grow_after_mount(
        &self,
        dir: &Path,
        m: &mut VolumeMeta,
        dev: &str,
        target: &Path,
    ) -> Result<()> {
        if m.fs_grow_pending {
            datapath::grow_fs(&m.fs_type, dev, target)?;
            m.fs_grow_pending = false;
            m.store(dir)?;
        }
        Ok(())
    }

    /// FUSE file over the decrypted data segment, then a loop device on it; returns the device.
    fn attach_userspace(&self, dir: &Path, m: &VolumeMeta, secret: &[u8]) -> Result<String> {
        let st = store::from_spec(&m.store);
        let vol = Volume::open(st.open(false)?)?;
        let u = vol.unlock(secret, None, false)?;
        let seg = vol.data_segment()?;
        let io = fuse::CryptIo::new(st.open(true)?, seg, u.volume_key)?;
        let fuse_dir = dir.join("fuse");
        let mut rt = Runtime {
            datapath: Some(DataPathKind::Userspace),
            fuse_dir: Some(fuse_dir.clone()),
            pid: Some(std::process::id()),
            ..Default::default()
        };
        rt.save(dir)?;
        let session = fuse::spawn(Arc::new(io), &fuse_dir)?;
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(m.id.clone(), session);
        fault("mount:fuse");
        let file = fuse_dir.join(fuse::FILE_NAME);
        wait_for(&file)?;
        let lo = loopdev::attach(&file, true, Some(m.luks.sector_size))?;
        rt.loop_dev = Some(lo.clone());
        rt.save(dir)?;
        fault("mount:loop");
        Ok(lo)
    }

    /// dm-crypt over the store (through a loop device for files); returns the mapped device.
    fn attach_kernel(&self, dir: &Path, m: &VolumeMeta, secret: &[u8]) -> Result<String> {
        let st = store::from_spec(&m.store);
        let path = st
            .local_path()
            .ok_or_else(|| Error::InvalidArgument("store has no local path for dm-crypt".into()))?
            .to_path_buf();
        let mut rt = Runtime {
            datapath: Some(DataPathKind::Kernel),
            ..Default::default()
        };
        let dev = if matches!(m.store, StoreSpec::File { .. }) {
            let lo = loopdev::attach(&path, false, None)?;
            rt.loop_dev = Some(lo.clone());
            rt.save(dir)?;
            PathBuf::from(lo)
        } else {
            path
        };
        let name = datapath::dmcrypt::mapper_name(&m.id);
        let mapped = datapath::dmcrypt::open(&dev, &name, secret)?;
        rt.dm_name = Some(name);
        rt.save(dir)?;
        Ok(mapped)
    }

    /// The filesystem (made once, by state) mounted at `target`.
    fn mount_fs(&self, dir: &Path, m: &mut VolumeMeta, dev: &str, target: &Path) -> Result<()> {
        self.make_fs_once(dir, m, dev)?;
        datapath::mount(dev, target, &m.fs_type)?;
        let mut rt = Runtime::load(dir).unwrap_or_default();
        rt.target = Some(target.to_path_buf());
        rt.save(dir)?;
        self.grow_after_mount(dir, m, dev, target)
    }

    /// Remove everything a mount set up, in reverse order. Idempotent, also after a crash.
    fn teardown(&self, dir: &Path, id: &str) -> Result<()> {
        let rt = Runtime::load(dir).unwrap_or_default();
        if let Some(t) = &rt.target {
            datapath::umount(t)?;
        }
        if let Some(n) = &rt.dm_name {
            datapath::dmcrypt::close(n)?;
        }
        if let Some(lo) = &rt.loop_dev {
            loopdev::detach(lo)?;
        }
        if let Some(fd) = &rt.fuse_dir {
            // Any loop device still on the FUSE file (e.g. attached just before a crash).
            for lo in loopdev::attached_to(&fd.join(fuse::FILE_NAME)) {
                let _ = loopdev::detach(&lo);
            }
        }
        // A session served by this process unmounts itself when dropped; unmounting under
        // it first would make its own unmount fail (and log an error).
        if let Some(s) = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)
        {
            drop(s);
        }
        if let Some(fd) = &rt.fuse_dir {
            // Served by another (or a dead) process: unmount it from here.
            datapath::fuse_unmount(fd)?;
        }
        // A CLI mount daemon exits when its FUSE session ends; wait for it briefly.
        if let Some(pid) = rt.pid.filter(|p| *p != std::process::id()) {
            for _ in 0..100 {
                if !process_alive(pid) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.cache.evict(id);
        Runtime::remove(dir);
        Ok(())
    }

    /// Unmount and tear down whatever this node set up for the volume (filesystem, loop
    /// device, FUSE mount or dm-crypt mapping) and drop its cached keys. Needs no credential:
    /// nothing is decrypted or authorised, only this node's own mounts are removed (which root
    /// on the node can do anyway), so it works with the key manager down or the tenant's token
    /// revoked (CSI NodeUnstageVolume carries no secret either). Idempotent; a volume that does
    /// not exist is `NotFound`.
    pub fn unmount(&self, id: &str) -> Result<()> {
        let (dir, m) = self.load(id)?;
        let _l = lock(&dir)?;
        self.teardown(&dir, id)?;
        self.audit("unmount", &m, "node", "ok");
        Ok(())
    }

    /// The FUSE session serving a mount made by this process (the CLI daemon waits on it).
    pub fn take_session(&self, id: &str) -> Option<fuser::BackgroundSession> {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)
    }

    /// Proves the credential may act on the volume without needing its key material:
    /// tenant → an encrypt under the volume's context with the tenant's transit key (envelope)
    /// or a read of its KV entry; admin → read access to the tenant's transit key / KV delete.
    fn authorize_any(&self, m: &VolumeMeta, cred: &Credential) -> Result<()> {
        let c = self.cfg.kms.client(cred.token())?;
        match (&m.protection, cred) {
            (Protection::Envelope { mount, key, .. }, Credential::Tenant(_)) => {
                protect::wrap(&c, mount, key, &[0u8; 32], &self.ctx(m)).map(|_| ())
            }
            (Protection::Envelope { mount, key, .. }, Credential::Admin(_)) => {
                match c.transit_read_key(mount, key) {
                    Ok(Some(_)) => Ok(()),
                    Ok(None) => Err(Error::NotFound(format!("transit key {mount}/{key}"))),
                    Err(e) => Err(crate::kms::classify(&c, "check the admin credential", e)),
                }
            }
            (
                Protection::Kv {
                    mount,
                    kv_version,
                    path,
                    ..
                },
                _,
            ) => {
                if mount.is_empty() {
                    // Never protected (crashed create): nothing in KV to check against.
                    return c
                        .token_lookup_self()
                        .map(|_| ())
                        .map_err(|e| crate::kms::classify(&c, "check the credential", e));
                }
                if *kv_version == 2 && matches!(cred, Credential::Admin(_)) {
                    c.kv2_read_metadata(mount, path)
                        .map(|_| ())
                        .or_else(|e| if e.is_not_found() { Ok(()) } else { Err(e) })
                        .map_err(|e| crate::kms::classify(&c, "check the admin credential", e))
                } else {
                    protect::kv_read(&c, mount, *kv_version, path).map(|_| ())
                }
            }
        }
    }

    // ---------------------------------------------------------------- resize / rotate

    /// Grow the volume to `new_size` usable bytes (online if mounted: the loop device and
    /// the filesystem are grown too). Shrinking is refused.
    pub fn resize(&self, id: &str, cred: &Credential, new_size: u64) -> Result<VolumeInfo> {
        let (dir, mut m) = self.load(id)?;
        let _l = lock(&dir)?;
        Self::require_formatted(&m)?;
        self.secret(&m, cred)?;
        if m.pending.is_some() {
            self.resume(&dir, &mut m, cred)?;
        }
        let new_size = new_size.div_ceil(4096) * 4096;
        if new_size < m.size {
            return Err(Error::InvalidArgument(format!(
                "volume {} has {} bytes; shrinking is not supported",
                m.id, m.size
            )));
        }
        let old_size = m.size;
        if new_size > m.size {
            m.pending = Some(Pending::Resize { new_size });
            m.store(&dir)?;
            fault("resize:recorded");
            self.finish_resize(&dir, &mut m, new_size)?;
        }
        let grown_online = self.grow_online(&dir, &mut m)?;
        if !grown_online && m.filesystem_created && new_size > old_size {
            m.fs_grow_pending = true;
            m.store(&dir)?;
        }
        self.audit("resize", &m, "tenant", "ok");
        Ok(self.info(&dir, &m))
    }

    /// If the volume is open on this node: make the loop (and dm-crypt) device see the
    /// backing store's size and grow a mounted filesystem. Returns whether the filesystem is
    /// taken care of (grown online, or none to grow); `false` leaves it for the next mount.
    /// Needs no key: the data segment is dynamic, so growing the store grows the volume.
    fn grow_online(&self, dir: &Path, m: &mut VolumeMeta) -> Result<bool> {
        let Some(rt) = Runtime::load(dir) else {
            return Ok(false);
        };
        if rt.loop_dev.is_none() && rt.dm_name.is_none() {
            return Ok(false);
        }
        if rt.datapath == Some(DataPathKind::Userspace) {
            if let Some(fd) = &rt.fuse_dir {
                // Make the FUSE file report the new size before the loop re-reads it.
                let _ = std::fs::metadata(fd.join(fuse::FILE_NAME));
            }
        }
        if let Some(lo) = &rt.loop_dev {
            loopdev::refresh_capacity(lo)?;
        }
        if let Some(n) = &rt.dm_name {
            datapath::dmcrypt::resize(n)?;
        }
        let Some(dev) = rt.device() else {
            return Ok(false);
        };
        let Some(t) = rt.target.as_ref().filter(|t| datapath::is_mounted(t)) else {
            // Block mode: the device has its new size; a filesystem made by an earlier mount
            // (if any) grows at the next mount.
            return Ok(!m.filesystem_created);
        };
        self.say(&format!("growing the {} filesystem", m.fs_type));
        if let Err(e) = datapath::grow_fs(&m.fs_type, &dev, t) {
            // E.g. ext4 online resize without CAP_SYS_RESOURCE: grow at next mount.
            self.say(&format!(
                "the filesystem could not be grown online ({e}); it grows at the next mount"
            ));
            m.fs_grow_pending = true;
            m.store(dir)?;
        } else if m.fs_grow_pending {
            m.fs_grow_pending = false;
            m.store(dir)?;
        }
        Ok(true)
    }

    /// After the store was grown (by [`Self::resize`], possibly on another node): grow the
    /// open device and the mounted filesystem here. No credential (CSI NodeExpandVolume may
    /// carry none). A volume not open on this node is `FailedPrecondition`.
    pub fn grow_attached(&self, id: &str) -> Result<VolumeInfo> {
        let (dir, mut m) = self.load(id)?;
        let _l = lock(&dir)?;
        Self::require_formatted(&m)?;
        if let Some(Pending::Resize { new_size }) = m.pending.clone() {
            self.finish_resize(&dir, &mut m, new_size)?;
        }
        if !Runtime::load(&dir).is_some_and(|r| r.loop_dev.is_some() || r.dm_name.is_some()) {
            return Err(Error::FailedPrecondition(format!(
                "volume {id} is not open on this node"
            )));
        }
        if !self.grow_online(&dir, &mut m)? && m.filesystem_created {
            m.fs_grow_pending = true;
            m.store(&dir)?;
        }
        self.audit("grow", &m, "node", "ok");
        Ok(self.info(&dir, &m))
    }

    pub fn rotate(&self, id: &str, cred: &Credential, kind: RotateKind) -> Result<VolumeInfo> {
        let (dir, mut m) = self.load(id)?;
        let _l = lock(&dir)?;
        Self::require_formatted(&m)?;
        let tok = tenant_token(cred)?;
        match kind {
            RotateKind::Kek => {
                let Protection::Envelope {
                    mount,
                    key,
                    wrapped: Some(b),
                    ..
                } = &m.protection
                else {
                    return Err(Error::InvalidArgument(
                        "KEK rotation applies to envelope volumes; in kv mode rotate the keyslot secret"
                            .into(),
                    ));
                };
                let c = self.cfg.kms.client(tok)?;
                // Proves access (and that the blob still unwraps) before changing anything.
                protect::unwrap(&c, mount, key, b, &self.ctx(&m))?;
                if m.pending.is_some() {
                    self.resume(&dir, &mut m, cred)?;
                }
                let (mount, key, b) = match &m.protection {
                    Protection::Envelope {
                        mount,
                        key,
                        wrapped: Some(b),
                        ..
                    } => (mount.clone(), key.clone(), b.clone()),
                    _ => return Err(Error::Internal("protection changed".into())),
                };
                let (nb, v) = protect::rewrap(&c, &mount, &key, &b, &self.ctx(&m))?;
                fault("kek:rewrapped");
                if let Protection::Envelope {
                    wrapped,
                    key_version,
                    ..
                } = &mut m.protection
                {
                    *wrapped = Some(nb);
                    *key_version = v;
                }
                m.kek_rotated_at = Some(now());
                m.store(&dir)?;
                self.audit("rotate-kek", &m, "tenant", "ok");
            }
            RotateKind::Slot => {
                self.secret(&m, cred)?;
                if m.pending.is_some() {
                    self.resume(&dir, &mut m, cred)?;
                }
                let c = self.cfg.kms.client(tok)?;
                let new = protect::new_secret();
                let ctx = self.ctx(&m);
                match &m.protection {
                    Protection::Envelope { mount, key, .. } => {
                        let (nb, v) = protect::wrap(&c, mount, key, &new, &ctx)?;
                        m.pending = Some(Pending::RotateSlot {
                            new_wrapped: Some(nb),
                            new_key_version: v,
                        });
                    }
                    Protection::Kv {
                        mount,
                        kv_version,
                        path,
                        ..
                    } => {
                        let cur = self.secret(&m, cred)?;
                        protect::kv_write(&c, mount, *kv_version, path, &cur, Some(&new))?;
                        m.pending = Some(Pending::RotateSlot {
                            new_wrapped: None,
                            new_key_version: 0,
                        });
                    }
                }
                m.store(&dir)?;
                fault("rotate:new-protected");
                self.finish_rotate_slot(&dir, &mut m, cred)?;
            }
        }
        Ok(self.info(&dir, &m))
    }

    // ---------------------------------------------------------------- shred

    /// Crypto-shred: destroy the wrapped secret (envelope) or the KV entry (kv), wipe every
    /// keyslot (the whole LUKS2 header area). Works with the admin credential, without the
    /// tenant's token. Audited. Idempotent; an interrupted shred is finished by re-running.
    pub fn shred(&self, id: &str, cred: &Credential) -> Result<VolumeInfo> {
        let (dir, mut m) = self.load(id)?;
        let _l = lock(&dir)?;
        let actor = match cred {
            Credential::Tenant(_) => "tenant",
            Credential::Admin(_) => "admin",
        };
        if m.state == State::Shredded {
            return Ok(self.info(&dir, &m));
        }
        self.authorize_any(&m, cred)?;
        self.teardown(&dir, id)?;
        m.transition(&dir, State::Shredding)?;
        self.audit("shred-start", &m, actor, "ok");
        fault("shred:marked");
        self.cache.evict(id);
        match &mut m.protection {
            Protection::Envelope { wrapped, .. } => {
                if wrapped.is_some() {
                    *wrapped = None;
                    m.store(&dir)?;
                }
            }
            Protection::Kv {
                mount,
                kv_version,
                path,
                ..
            } => {
                if !mount.is_empty() {
                    let c = self.cfg.kms.client(cred.token())?;
                    protect::kv_destroy(&c, mount, *kv_version, path)?;
                }
            }
        }
        if let Some(Pending::RotateSlot { new_wrapped, .. }) = &mut m.pending {
            *new_wrapped = None;
            m.store(&dir)?;
        }
        fault("shred:key-destroyed");
        self.say(&format!("wiping every keyslot of {}", m.id));
        let st = store::from_spec(&m.store);
        if let Ok(dev) = st.open(true) {
            let len = m.luks.data_offset.min(dev.size().unwrap_or(0));
            let zeros = vec![0u8; 1 << 20];
            let mut off = 0;
            while off < len {
                let n = (len - off).min(zeros.len() as u64) as usize;
                dev.write_at(&zeros[..n], off)
                    .map_err(|e| Error::io("wipe keyslots", e))?;
                off += n as u64;
            }
            dev.flush().map_err(|e| Error::io("flush wipe", e))?;
        }
        fault("shred:wiped");
        m.pending = None;
        m.shredded_at = Some(now());
        m.transition(&dir, State::Shredded)?;
        self.audit("shred", &m, actor, "ok");
        Ok(self.info(&dir, &m))
    }

    /// Delete what is left of a shredded volume (its directory: metadata without a secret,
    /// a header of zeros and ciphertext nobody can read), so its id can be used again. The
    /// audit log keeps the record. Refused unless the shred finished.
    pub fn remove_shredded(&self, id: &str) -> Result<()> {
        let (dir, m) = self.load(id)?;
        if m.state != State::Shredded {
            return Err(Error::FailedPrecondition(format!(
                "volume {id} is {}; only a shredded volume is removed",
                m.state.as_str()
            )));
        }
        if let StoreSpec::File { path } = &m.store {
            if !Path::new(path).starts_with(&dir) {
                let _ = std::fs::remove_file(path);
            }
        }
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io("remove shredded volume", e))
    }

    // ---------------------------------------------------------------- list / status

    fn info(&self, dir: &Path, m: &VolumeMeta) -> VolumeInfo {
        let rt = Runtime::load(dir);
        let mounted = rt
            .as_ref()
            .and_then(|r| r.target.as_ref())
            .is_some_and(|t| datapath::is_mounted(t));
        VolumeInfo {
            id: m.id.clone(),
            tenant: m.tenant.clone(),
            state: m.state.as_str().into(),
            protection: m.protection.mode().into(),
            size: m.size,
            store: m.store.clone(),
            fs_type: m.fs_type.clone(),
            filesystem_created: m.filesystem_created,
            fs_grow_pending: m.fs_grow_pending,
            mounted,
            target: rt.as_ref().and_then(|r| r.target.clone()),
            device: rt.as_ref().and_then(Runtime::device),
            datapath: rt.and_then(|r| r.datapath).map(|d| d.as_str().into()),
            pending: m.pending.clone(),
            kek_version: match &m.protection {
                Protection::Envelope { key_version, .. } => Some(*key_version),
                _ => None,
            },
            luks: m.luks.clone(),
            created_at: m.created_at,
            slot_rotated_at: m.slot_rotated_at,
            kek_rotated_at: m.kek_rotated_at,
            shredded_at: m.shredded_at,
            volume_key_rotation: "not supported yet: volume-key re-encryption comes later",
        }
    }

    /// Status from the local metadata (no key material, no KMS call).
    pub fn status(&self, id: &str) -> Result<VolumeInfo> {
        let (dir, m) = self.load(id)?;
        Ok(self.info(&dir, &m))
    }

    /// Every volume under the root, sorted by id.
    pub fn list(&self) -> Result<Vec<VolumeInfo>> {
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(&self.cfg.root) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Error::io("list volumes", e)),
        };
        for e in rd.flatten() {
            let dir = e.path();
            if let Ok(m) = VolumeMeta::load(&dir) {
                out.push(self.info(&dir, &m));
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}

/// A live process (not gone, not a zombie waiting for its parent to reap it).
fn process_alive(pid: u32) -> bool {
    let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !st.is_empty()
        && !st
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'))
}

fn wait_for(p: &Path) -> Result<()> {
    for _ in 0..200 {
        if p.exists() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(Error::Command(format!("{} did not appear", p.display())))
}

#[allow(dead_code)]
fn _assert_store_object_safe(_: &dyn BackingStore) {}
