//! Creation, one function per transition: (nothing) → `Provisioning` ([`Manager::provision`]),
//! → `KeyProtected` ([`Manager::protect_key`]), → `Formatted` ([`Manager::format`]).
//! [`Manager::create`] runs whichever are left, so a re-run after a crash finishes the job.

use super::{fault, lock, tenant_token, unlock, CreateRequest, Manager, VolumeInfo};
use crate::cache::fingerprint;
use crate::error::{Error, Result};
use crate::kms::Credential;
use crate::meta::{now, LuksParams, Protection, StoreSpec, VolumeMeta, META_VERSION};
use crate::protect;
use crate::state::State;
use crate::store;
use crate::vocab::ProtectionRequest;
use std::path::Path;
use strongroom_luks::format::{DEFAULT_DATA_OFFSET, DEFAULT_PBKDF2_ITERATIONS};
use strongroom_luks::{FormatParams, Volume};
use strongroom_vault_client::SecretString;
use zeroize::Zeroizing;

impl Manager {
    /// Create a volume (idempotent: a re-run resumes an interrupted creation, and on a
    /// finished one still proves the caller's access).
    pub fn create(&self, req: &CreateRequest, cred: &Credential) -> Result<VolumeInfo> {
        let size = validate(req)?;
        let tok = tenant_token(cred)?;
        let dir = self.volume_dir(&req.id);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create volume directory", e))?;
        let _l = lock(&dir)?;
        let mut m = match VolumeMeta::load(&dir) {
            Ok(m) => same_volume(m, req, size)?,
            Err(Error::NotFound(_)) => self.provision(&dir, req, size)?,
            Err(e) => return Err(e),
        };
        let fresh = match m.state {
            State::Provisioning => {
                store::from_spec(&m.store).ensure(m.size + m.luks.data_offset)?;
                fault("create:store-ready");
                Some(self.protect_key(&dir, &mut m, tok)?)
            }
            _ => None,
        };
        if m.state != State::KeyProtected {
            // Already formatted: an idempotent re-run still proves the caller's access.
            self.secret(&m, cred)?;
            return Ok(self.info(&dir, &m));
        }
        let secret = match fresh {
            Some(s) => s,
            None => self.secret(&m, cred)?,
        };
        self.format(&dir, &mut m, &secret)?;
        self.cache.put(&m.id, &fingerprint(tok), &secret);
        self.audit("create", &m, "tenant", "ok");
        Ok(self.info(&dir, &m))
    }

    /// (nothing) → `Provisioning`: the metadata, with no key material yet.
    fn provision(&self, dir: &Path, req: &CreateRequest, size: u64) -> Result<VolumeMeta> {
        let mut m = self.new_meta(dir, req, size);
        m.store(dir)?;
        fault("create:provisioned");
        Ok(m)
    }

    /// The metadata of a new volume, not recorded yet.
    pub(super) fn new_meta(&self, dir: &Path, req: &CreateRequest, size: u64) -> VolumeMeta {
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
                location: None,
            },
        };
        VolumeMeta {
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
            fs_type: req.fs_type,
            filesystem_created: false,
            fs_grow_pending: false,
            pending: None,
            slot_rotated_at: None,
            kek_rotated_at: None,
            shredded_at: None,
            generation: 0,
            origin: None,
        }
    }

    /// `Provisioning` → `KeyProtected` once the store exists: a fresh secret is protected by
    /// the KMS (wrapped, or stored in KV) and recorded. Returns the secret.
    pub(super) fn protect_key(
        &self,
        dir: &Path,
        m: &mut VolumeMeta,
        tok: &SecretString,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let secret = protect::new_secret();
        let c = self.cfg.kms.client(tok)?;
        let ctx = self.ctx(m);
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
            Protection::Kv { backend, location } => {
                let mut at = protect::kv_locate(&c, backend)?;
                at.path = if at.path.is_empty() {
                    m.id.clone()
                } else {
                    format!("{}/{}", at.path, m.id)
                };
                protect::kv_write(&c, &at, &secret, None)?;
                *location = Some(at);
            }
        }
        fault("create:protected-unrecorded");
        m.transition(dir, State::KeyProtected)?;
        fault("create:key-protected");
        Ok(secret)
    }

    /// `KeyProtected` → `Formatted`: a LUKS2 header for `secret`. Only a header this very
    /// secret opens counts as already made (a crash between the format and its record);
    /// anything else is overwritten: the state says this volume was never handed out, so it
    /// holds no data.
    fn format(&self, dir: &Path, m: &mut VolumeMeta, secret: &[u8]) -> Result<()> {
        let st = store::from_spec(&m.store);
        let uuid = match unlock(st.as_ref(), secret, false) {
            Ok((v, _)) => v.header().uuid.clone(),
            Err(_) => {
                self.say(&format!("formatting LUKS2 header of {}", m.id));
                let params = FormatParams {
                    // LUKS2 labels hold at most 47 bytes (ids are ASCII).
                    label: format!("strongroom:{}", m.id).chars().take(47).collect(),
                    ..Default::default()
                };
                let dev = st.open(true)?;
                let (v, _vk) = Volume::format(&dev, &params, secret)?;
                v.header().uuid.clone()
            }
        };
        fault("create:formatted");
        m.luks.uuid = Some(uuid);
        m.transition(dir, State::Formatted)
    }
}

/// Checks a request; returns its size rounded up to 4 KiB.
pub(super) fn validate(req: &CreateRequest) -> Result<u64> {
    super::valid_name("volume id", &req.id)?;
    super::valid_name("tenant", &req.tenant)?;
    if req.size == 0 {
        return Err(Error::InvalidArgument("size must be positive".into()));
    }
    Ok(req.size.div_ceil(4096) * 4096)
}

/// An existing volume with the requested id: it must be the one asked for (tenant, size,
/// protection mode) and not shredded.
fn same_volume(m: VolumeMeta, req: &CreateRequest, size: u64) -> Result<VolumeMeta> {
    if m.tenant != req.tenant || m.size != size || m.protection.mode() != req.protection.mode() {
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
    Ok(m)
}
