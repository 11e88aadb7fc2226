//! Volumes made from another volume's RBD image: CSI snapshots, restores and clones are all
//! one operation, [`Manager::create_clone`]. The new image is an RBD clone of the source as
//! it is now (copy-on-write); it shares the source's volume key but gets its own keyslot
//! secret, protected under its own volume id: a keyslot for the new secret is added to the
//! clone's header and every other keyslot (the source's) removed from it. Shredding the
//! source leaves the clone readable and shredding the clone leaves the source.
//!
//! One function per transition, as for [`Manager::create`]: `Provisioning` (metadata with
//! its [`Origin`]) → the image cloned ([`RbdStore::clone_from`]) and a new secret protected
//! → `KeyProtected` → the header rekeyed ([`Manager::rekey`]) → `Formatted`. A re-run after
//! a crash anywhere finishes it.

use super::create::validate;
use super::rotate::add_verified_slot;
use super::{fault, lock, tenant_token, unlock, CreateRequest, Manager, VolumeInfo};
use crate::cache::fingerprint;
use crate::error::{Error, Result};
use crate::kms::Credential;
use crate::meta::{Origin, VolumeMeta};
use crate::state::State;
use crate::store::{self, RbdStore};
use std::path::Path;

/// Clones between an image and one without a parent before it is flattened (ceph-csi's
/// default soft limit, `rbdsoftmaxclonedepth`).
pub const MAX_CLONE_DEPTH: u32 = 4;

impl Manager {
    /// Create volume `req` as a copy of volume `source` (same tenant; an RBD image both). Its
    /// size is at least the source's; a larger request grows it. Idempotent, as `create`.
    pub fn create_clone(
        &self,
        req: &CreateRequest,
        source: &str,
        cred: &Credential,
    ) -> Result<VolumeInfo> {
        let size = validate(req)?;
        let tok = tenant_token(cred)?;
        let (_, src) = self.load(source)?;
        check_source(&src, req, size, &self.cfg.cluster_id)?;
        let dir = self.volume_dir(&req.id);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create volume directory", e))?;
        let l = lock(&dir)?;
        let mut m = match VolumeMeta::load(&dir) {
            Ok(m) => same_clone(m, req, source)?,
            Err(Error::NotFound(_)) => self.provision_clone(&dir, req, &src)?,
            Err(e) => return Err(e),
        };
        let fresh = match m.state {
            State::Provisioning => {
                clone_store(&src, &m)?;
                Some(self.protect_key(&dir, &mut m, tok)?)
            }
            _ => None,
        };
        fault("clone:key-protected");
        if m.state == State::KeyProtected {
            let secret = match fresh {
                Some(s) => s,
                None => self.secret(&m, cred)?,
            };
            self.rekey(&dir, &mut m, &src, cred, &secret)?;
            self.cache.put(&m.id, &fingerprint(tok), &secret);
            self.audit("clone", &m, "tenant", "ok");
        } else {
            // Already made: an idempotent re-run still proves the caller's access.
            self.secret(&m, cred)?;
        }
        drop(l);
        if size > m.size {
            return self.resize(&req.id, cred, size);
        }
        Ok(self.info(&dir, &m))
    }

    /// (nothing) → `Provisioning`: the source's LUKS2 layout and filesystem, this volume's
    /// image, tenant and protection.
    fn provision_clone(
        &self,
        dir: &Path,
        req: &CreateRequest,
        src: &VolumeMeta,
    ) -> Result<VolumeMeta> {
        let mut m = self.new_meta(dir, req, src.size);
        m.luks = src.luks.clone();
        m.fs_type = src.fs_type;
        m.filesystem_created = src.filesystem_created;
        let depth = src.origin.as_ref().map_or(0, |o| o.depth) + 1;
        m.origin = Some(Origin {
            volume: src.id.clone(),
            snap: format!("csi-clone-{}", req.id),
            // Too deep: the clone is flattened, and depends on nothing.
            depth: if depth > MAX_CLONE_DEPTH { 0 } else { depth },
        });
        m.store(dir)?;
        fault("clone:provisioned");
        Ok(m)
    }

    /// The clone's header opens with its own secret only: a keyslot for `secret` (added with
    /// the volume key the source's secret opens) and the source's keyslots removed; then
    /// `KeyProtected` → `Formatted`.
    fn rekey(
        &self,
        dir: &Path,
        m: &mut VolumeMeta,
        src: &VolumeMeta,
        cred: &Credential,
        secret: &[u8],
    ) -> Result<()> {
        let st = store::from_spec(&m.store);
        let keep = match unlock(st.as_ref(), secret, false) {
            Ok((_, u)) => u.slot,
            Err(Error::Luks(strongroom_luks::Error::WrongKey)) => {
                let cur = self.secret(src, cred)?;
                add_verified_slot(st.as_ref(), &cur, secret)?
            }
            Err(e) => return Err(e),
        };
        fault("clone:slot-added");
        let mut vol = strongroom_luks::Volume::open(st.open(true)?)?;
        for (slot, _, _) in vol.keyslots() {
            if slot != keep {
                vol.remove_keyslot(slot)?;
            }
        }
        m.luks.uuid = Some(vol.header().uuid.clone());
        fault("clone:rekeyed");
        m.transition(dir, State::Formatted)
    }
}

/// A source a clone may be made from: formatted, of this cluster, an RBD image, and of the
/// same tenant (another tenant's volume is PERMISSION_DENIED, whatever the token).
fn check_source(src: &VolumeMeta, req: &CreateRequest, size: u64, cluster: &str) -> Result<()> {
    if src.tenant != req.tenant || src.cluster_id != cluster {
        return Err(Error::PermissionDenied(format!(
            "volume {} belongs to another tenant: it cannot be copied into tenant {}",
            src.id, req.tenant
        )));
    }
    Manager::require_formatted(src)?;
    if size < src.size {
        return Err(Error::InvalidArgument(format!(
            "{size} bytes is less than the source's {} bytes",
            src.size
        )));
    }
    let rbd = |s: &crate::meta::StoreSpec| RbdStore::of(s).is_some();
    if !rbd(&src.store) || !req.store.as_ref().is_some_and(rbd) {
        return Err(Error::InvalidArgument(
            "snapshots and clones are made of RBD volumes into RBD volumes".into(),
        ));
    }
    Ok(())
}

/// An existing volume with the clone's id must be that clone.
fn same_clone(m: VolumeMeta, req: &CreateRequest, source: &str) -> Result<VolumeMeta> {
    let same_origin = m.origin.as_ref().is_some_and(|o| o.volume == source);
    if m.tenant != req.tenant || !same_origin {
        return Err(Error::InvalidArgument(format!(
            "volume {} already exists, not as a copy of {source}",
            m.id
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

/// The clone's image made from the source's (flattened when the chain got too deep).
fn clone_store(src: &VolumeMeta, m: &VolumeMeta) -> Result<()> {
    let (Some(child), Some(parent), Some(o)) = (
        RbdStore::of(&m.store),
        RbdStore::of(&src.store),
        m.origin.as_ref(),
    ) else {
        return Err(Error::Internal("a clone without an RBD origin".into()));
    };
    child.clone_from(&parent, &o.snap, o.depth == 0)
}

impl Manager {
    /// How a copy of volume `id` is protected when nothing else is asked for (a snapshot):
    /// as the volume is (same transit key, or same KV backend), under its own id.
    pub fn protection_request(&self, id: &str) -> Result<crate::vocab::ProtectionRequest> {
        use crate::meta::Protection;
        use crate::vocab::ProtectionRequest;
        let (_, m) = self.load(id)?;
        Ok(match m.protection {
            Protection::Envelope { mount, key, .. } => ProtectionRequest::Envelope { mount, key },
            Protection::Kv { backend, .. } => ProtectionRequest::Kv { backend },
        })
    }
}
