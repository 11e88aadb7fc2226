//! The volume manager API used by the CLI and the CSI driver.
//!
//! Every operation: validate → take the volume's lock → load the checksummed metadata →
//! authorize with the KMS as the caller (the unwrap *is* the authorization) → finish any
//! [`Pending`] step left by a crash → do the work, persisting each state change before its
//! effect. Re-running any operation after a crash (kill -9 anywhere) completes or repeats it.
//!
//! One file per concern, one function per state transition: [`create`] (provision, protect the
//! key, format), [`rotate`] (KEK rewrap; keyslot secret: protect, add and promote, drop old
//! slots), [`resize`], [`shred`] (mark, destroy the key, wipe), [`attach`] (mount, attach,
//! unmount) and [`info`] (status and listing).

mod attach;
mod clone;
mod create;
mod info;
mod resize;
mod rotate;
mod shred;

pub use info::VolumeInfo;

use crate::cache::{fingerprint, KeyCache};
use crate::error::{Error, Result};
use crate::kms::{Credential, KmsConfig};
use crate::meta::{now, Protection, StoreSpec, VolumeMeta};
use crate::protect;
use crate::state::{Pending, State};
use crate::store::{self, BackingStore};
use crate::vocab::{FsType, ProtectionRequest};
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use strongroom_luks::volume::Unlocked;
use strongroom_luks::xts::Backend;
use strongroom_luks::{BlockDevice, CryptDevice, Volume};
use strongroom_vault_client::SecretString;
use zeroize::Zeroizing;

/// Environment variable naming a step at which the process aborts (tests of the kill -9
/// promise). Steps are listed in [`FAULT_STEPS`].
pub(crate) const FAULT_ENV: &str = "STRONGROOM_FAULT";
#[allow(dead_code)] // the list the tests pick steps from
pub(crate) const FAULT_STEPS: &[&str] = &[
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
    "clone:provisioned",
    "clone:snapped",
    "clone:cloned",
    "clone:key-protected",
    "clone:slot-added",
    "clone:rekeyed",
    "shred:marked",
    "shred:key-destroyed",
    "shred:wiped",
    "mount:fuse",
    "mount:loop",
    "mount:kernel-loop-attached",
    "mount:kernel-loop",
    "mount:dm-opened",
    "mount:dm",
    "mount:mounted",
    "unmount:umounted",
    "unmount:dm-closed",
];

pub(crate) fn fault(step: &str) {
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
    pub datapath: Option<crate::datapath::DataPathKind>,
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
    pub fs_type: FsType,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotateKind {
    /// Rewrap the wrapped secret with the latest version of the tenant's transit key.
    Kek,
    /// New keyslot secret: add a slot, verify it, promote it, remove the old slot(s).
    Slot,
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
    /// Userspace data paths are served by volume holders started so (else in this process).
    holder: Option<crate::datapath::holder::HolderLauncher>,
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

fn tenant_token(cred: &Credential) -> Result<&SecretString> {
    match cred {
        Credential::Tenant(t) => Ok(t),
        Credential::Admin(_) => Err(Error::PermissionDenied(
            "the admin credential is only for shred; use the tenant's token".into(),
        )),
    }
}

/// The volume's LUKS2 header opened on its store and unlocked with `secret`: the one place a
/// volume is opened and unlocked (library I/O, the userspace data path, create's check for a
/// finished format, keyslot rotation). `writable` opens the store for header changes.
fn unlock(
    st: &dyn BackingStore,
    secret: &[u8],
    writable: bool,
) -> Result<(Volume<Box<dyn BlockDevice>>, Unlocked)> {
    let vol = Volume::open(st.open(writable)?)?;
    let u = vol.unlock(secret, None, false)?;
    Ok((vol, u))
}

/// Whether `dir` holds a volume's metadata (created at least as far as `Provisioning`).
pub fn is_volume_dir(dir: &Path) -> bool {
    dir.join(crate::meta::META_FILE).is_file()
}

impl Manager {
    pub fn new(cfg: ManagerConfig) -> Self {
        let cache = KeyCache::new(cfg.cache_ttl);
        Manager {
            cfg,
            cache,
            sessions: Mutex::new(HashMap::new()),
            progress: None,
            holder: None,
        }
    }

    /// Serve userspace data paths from a volume holder per volume, started with `cmd`
    /// (`datapath::holder`), so that they outlive this process.
    pub fn with_holder(mut self, cmd: crate::datapath::holder::HolderCommand) -> Self {
        self.holder = Some(crate::datapath::holder::HolderLauncher::Spawn(cmd));
        self
    }

    /// Where holders come from: started by this process or by a holder host.
    pub fn with_holders(mut self, launcher: crate::datapath::holder::HolderLauncher) -> Self {
        self.holder = Some(launcher);
        self
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
        let kek_version = match &meta.protection {
            Protection::Envelope { key_version, .. } => Some(*key_version),
            Protection::Kv { .. } => None,
        };
        let line = serde_json::json!({
            "time": now(), "op": op, "volume": meta.id, "tenant": meta.tenant,
            "actor": actor, "result": result, "kek_version": kek_version,
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
        let m = Self::newer_from_store(&dir, m)?;
        Ok((dir, m))
    }

    /// A store that keeps the metadata (RBD) is its authority: another node may have moved
    /// the volume on (rotation, resize, shred) since this node's copy was written.
    fn newer_from_store(dir: &Path, local: VolumeMeta) -> Result<VolumeMeta> {
        let bytes = match store::from_spec(&local.store).get_meta() {
            Ok(Some(b)) => b,
            // No record in the store, or no credential for it in this process (an RBD key
            // comes with requests): this node's copy is what is known.
            Ok(None) | Err(Error::Unauthenticated(_)) => return Ok(local),
            Err(e) => return Err(e),
        };
        let shared = VolumeMeta::decode(&bytes)?;
        if shared.id != local.id || shared.generation <= local.generation {
            return Ok(local);
        }
        shared.store_local(dir)?;
        Ok(shared)
    }

    /// Take over a volume whose metadata lives in its store (an RBD image created on another
    /// node): its record is copied into this node's volume directory. Idempotent.
    pub fn import(&self, id: &str, spec: &StoreSpec) -> Result<VolumeInfo> {
        valid_name("volume id", id)?;
        let bytes = store::from_spec(spec)
            .get_meta()?
            .ok_or_else(|| Error::NotFound(format!("no Strongroom volume in {spec:?}")))?;
        let m = VolumeMeta::decode(&bytes)?;
        if m.id != id || !m.store.same_location(spec) {
            return Err(Error::InvalidArgument(format!(
                "the store holds volume {}, not {id}",
                m.id
            )));
        }
        let dir = self.volume_dir(id);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create volume directory", e))?;
        let _l = lock(&dir)?;
        let m = match VolumeMeta::load(&dir) {
            Ok(local) => Self::newer_from_store(&dir, local)?,
            Err(Error::NotFound(_)) => {
                m.store_local(&dir)?;
                m
            }
            Err(e) => return Err(e),
        };
        Ok(self.info(&dir, &m))
    }

    fn ctx(&self, m: &VolumeMeta) -> Vec<u8> {
        protect::context(&m.cluster_id, &m.tenant, &m.id)
    }

    /// The keyslot secret as recorded, fetched as the tenant (cache, else one KMS call: the
    /// unwrap or KV read is the authorization of every tenant operation).
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
            State::KeyProtected | State::Formatted => {}
        }
        let fp = fingerprint(tok);
        if let Some(s) = self.cache.get(&m.id, &fp) {
            return Ok(s);
        }
        let s = self.fetch_secret(m, tok)?;
        self.cache.put(&m.id, &fp, &s);
        Ok(s)
    }

    fn fetch_secret(&self, m: &VolumeMeta, tok: &SecretString) -> Result<Zeroizing<Vec<u8>>> {
        let c = self.cfg.kms.client(tok)?;
        match &m.protection {
            Protection::Envelope {
                mount,
                key,
                wrapped: Some(b),
                ..
            } => protect::unwrap(&c, mount, key, b, &self.ctx(m)),
            Protection::Envelope { wrapped: None, .. } => {
                Err(Error::FailedPrecondition("no wrapped secret".into()))
            }
            Protection::Kv {
                location: Some(at), ..
            } => protect::kv_read(&c, at)?
                .0
                .ok_or_else(|| Error::NotFound(format!("no KV entry for volume {}", m.id))),
            Protection::Kv { location: None, .. } => {
                Err(Error::FailedPrecondition("no KV entry recorded".into()))
            }
        }
    }

    /// The secret that opens a formatted volume now, fetched once as the caller; a step a
    /// crash left pending is finished first (a keyslot rotation in flight promotes its new
    /// secret, which is then the one returned).
    fn authorized_secret(
        &self,
        dir: &Path,
        m: &mut VolumeMeta,
        cred: &Credential,
    ) -> Result<Zeroizing<Vec<u8>>> {
        Self::require_formatted(m)?;
        let secret = self.secret(m, cred)?;
        Ok(self.resume(dir, m, cred, &secret)?.unwrap_or(secret))
    }

    /// Finish whatever a crash interrupted; returns the promoted secret if a keyslot
    /// rotation finished. `cur` is the secret currently recorded.
    fn resume(
        &self,
        dir: &Path,
        m: &mut VolumeMeta,
        cred: &Credential,
        cur: &[u8],
    ) -> Result<Option<Zeroizing<Vec<u8>>>> {
        match m.pending.clone() {
            None => Ok(None),
            Some(Pending::Resize { new_size }) => {
                self.finish_resize(dir, m, new_size)?;
                Ok(None)
            }
            Some(Pending::RotateSlot { .. } | Pending::DropOldSlots { .. }) => {
                self.finish_rotate_slot(dir, m, cred, cur)
            }
        }
    }

    fn require_formatted(m: &VolumeMeta) -> Result<()> {
        match m.state {
            State::Formatted => Ok(()),
            State::Shredding | State::Shredded => Err(Error::FailedPrecondition(format!(
                "volume {} is shredded",
                m.id
            ))),
            State::Provisioning | State::KeyProtected => Err(Error::FailedPrecondition(format!(
                "volume {} is not created yet ({}): re-run create",
                m.id,
                m.state.as_str()
            ))),
        }
    }

    /// Open a volume for plaintext I/O through the library (no mount, no root needed).
    pub fn open(&self, id: &str, cred: &Credential) -> Result<OpenVolume> {
        let (dir, mut m) = self.load(id)?;
        let _l = lock(&dir)?;
        let secret = self.authorized_secret(&dir, &mut m, cred)?;
        let st = store::from_spec(&m.store);
        let (vol, u) = unlock(st.as_ref(), &secret, false)?;
        let crypt = vol.crypt_device(st.open(true)?, &u, Backend::Auto)?;
        Ok(OpenVolume { crypt })
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

#[allow(dead_code)]
fn _assert_store_object_safe(_: &dyn BackingStore) {}
