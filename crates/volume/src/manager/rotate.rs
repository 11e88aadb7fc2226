//! Rotations. KEK: one rewrap ([`Manager::rotate_kek`]). Keyslot secret, one function per
//! step, each recorded as [`Pending`] before its first effect so a crash anywhere is finished
//! by the next operation: protect a new secret ([`Manager::start_rotate_slot`]), add a keyslot
//! for it and promote it ([`Manager::promote_new_slot`]), drop the old keyslots
//! ([`Manager::drop_old_slots`]).

use super::{fault, lock, tenant_token, unlock, Manager, RotateKind, VolumeInfo};
use crate::error::{Error, Result};
use crate::kms::Credential;
use crate::meta::{now, Protection, VolumeMeta};
use crate::protect;
use crate::state::Pending;
use crate::store::{self, BackingStore};
use std::path::Path;
use strongroom_luks::format::{KdfParams, KeyslotParams};
use strongroom_vault_client::Client;
use zeroize::Zeroizing;

impl Manager {
    pub fn rotate(&self, id: &str, cred: &Credential, kind: RotateKind) -> Result<VolumeInfo> {
        let (dir, mut m) = self.load(id)?;
        let _l = lock(&dir)?;
        Self::require_formatted(&m)?;
        match kind {
            RotateKind::Kek => self.rotate_kek(&dir, &mut m, cred)?,
            RotateKind::Slot => self.rotate_slot(&dir, &mut m, cred)?,
        }
        Ok(self.info(&dir, &m))
    }

    /// Rewrap the wrapped secret with the latest version of the tenant's transit key (the
    /// data and the keyslots stay as they are).
    fn rotate_kek(&self, dir: &Path, m: &mut VolumeMeta, cred: &Credential) -> Result<()> {
        let tok = tenant_token(cred)?;
        if !matches!(
            m.protection,
            Protection::Envelope {
                wrapped: Some(_),
                ..
            }
        ) {
            return Err(Error::InvalidArgument(
                "KEK rotation applies to envelope volumes; in kv mode rotate the keyslot secret"
                    .into(),
            ));
        }
        // Proves access (and that the blob still unwraps) before changing anything.
        self.authorized_secret(dir, m, cred)?;
        let c = self.cfg.kms.client(tok)?;
        let Protection::Envelope {
            mount,
            key,
            wrapped: Some(b),
            ..
        } = &m.protection
        else {
            return Err(Error::Internal("protection changed".into()));
        };
        let (nb, v) = protect::rewrap(&c, mount, key, b, &self.ctx(m))?;
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
        m.store(dir)?;
        self.audit("rotate-kek", m, "tenant", "ok");
        Ok(())
    }

    /// A new keyslot secret: protected, added, promoted, the old slots dropped.
    fn rotate_slot(&self, dir: &Path, m: &mut VolumeMeta, cred: &Credential) -> Result<()> {
        let cur = self.authorized_secret(dir, m, cred)?;
        let new = self.start_rotate_slot(dir, m, cred, &cur)?;
        self.promote_new_slot(dir, m, cred, &cur, new)?;
        self.drop_old_slots(dir, m)
    }

    /// Protect a new secret beside the current one (envelope: wrapped, kept in the pending
    /// step; kv: the entry's `next` field) and record the rotation as pending.
    fn start_rotate_slot(
        &self,
        dir: &Path,
        m: &mut VolumeMeta,
        cred: &Credential,
        cur: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        let c = self.cfg.kms.client(tenant_token(cred)?)?;
        let new = protect::new_secret();
        m.pending = Some(match &m.protection {
            Protection::Envelope { mount, key, .. } => {
                let (nb, v) = protect::wrap(&c, mount, key, &new, &self.ctx(m))?;
                Pending::RotateSlot {
                    new_wrapped: Some(nb),
                    new_key_version: v,
                }
            }
            Protection::Kv { location, .. } => {
                protect::kv_write(&c, kv_at(location)?, cur, Some(&new))?;
                Pending::RotateSlot {
                    new_wrapped: None,
                    new_key_version: 0,
                }
            }
        });
        m.store(dir)?;
        fault("rotate:new-protected");
        Ok(new)
    }

    /// Finish a keyslot rotation a crash (or [`Self::rotate_slot`]) left pending; returns the
    /// promoted secret when the promotion happened here. `cur` is the recorded secret.
    pub(super) fn finish_rotate_slot(
        &self,
        dir: &Path,
        m: &mut VolumeMeta,
        cred: &Credential,
        cur: &[u8],
    ) -> Result<Option<Zeroizing<Vec<u8>>>> {
        let mut promoted = None;
        if let Some(Pending::RotateSlot { .. }) = &m.pending {
            let c = self.cfg.kms.client(tenant_token(cred)?)?;
            let new = self.pending_new_secret(&c, m, cur)?;
            promoted = Some(self.promote_new_slot(dir, m, cred, cur, new)?);
        }
        self.drop_old_slots(dir, m)?;
        Ok(promoted)
    }

    /// The new secret of a pending rotation, as protected in the KMS.
    fn pending_new_secret(
        &self,
        c: &Client,
        m: &VolumeMeta,
        cur: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        match (&m.protection, &m.pending) {
            (
                Protection::Envelope { mount, key, .. },
                Some(Pending::RotateSlot {
                    new_wrapped: Some(nb),
                    ..
                }),
            ) => protect::unwrap(c, mount, key, nb, &self.ctx(m)),
            (Protection::Envelope { .. }, _) => Err(Error::Corrupt(
                "rotation without the new wrapped secret".into(),
            )),
            // No `next` any more: it was promoted before the crash, `data` (= cur) is it.
            (Protection::Kv { location, .. }, _) => Ok(protect::kv_read(c, kv_at(location)?)?
                .1
                .unwrap_or_else(|| Zeroizing::new(cur.to_vec()))),
        }
    }

    /// Add a keyslot for `new` (unless it opens one already), verify it from a fresh read of
    /// the header, then make `new` the recorded secret; the rotation moves on to
    /// [`Pending::DropOldSlots`]. Returns `new`.
    fn promote_new_slot(
        &self,
        dir: &Path,
        m: &mut VolumeMeta,
        cred: &Credential,
        cur: &[u8],
        new: Zeroizing<Vec<u8>>,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let keep = add_verified_slot(store::from_spec(&m.store).as_ref(), cur, &new)?;
        let Some(Pending::RotateSlot {
            new_wrapped,
            new_key_version,
        }) = m.pending.clone()
        else {
            return Err(Error::Internal("no keyslot rotation pending".into()));
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
            Protection::Kv { location, .. } => {
                let c = self.cfg.kms.client(tenant_token(cred)?)?;
                protect::kv_write(&c, kv_at(location)?, &new, None)?;
                fault("rotate:kv-promoted");
            }
        }
        m.pending = Some(Pending::DropOldSlots { keep });
        m.store(dir)?;
        self.cache.evict(&m.id);
        fault("rotate:promoted");
        Ok(new)
    }

    /// Remove every keyslot but the promoted one; the rotation is done.
    fn drop_old_slots(&self, dir: &Path, m: &mut VolumeMeta) -> Result<()> {
        let Some(Pending::DropOldSlots { keep }) = m.pending else {
            return Ok(());
        };
        let st = store::from_spec(&m.store);
        let mut vol = strongroom_luks::Volume::open(st.open(true)?)?;
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
        Ok(())
    }
}

/// The slot `new` opens: found, or added (unlocked with `cur`) and verified from a fresh read
/// of the header before anything depends on it.
pub(super) fn add_verified_slot(st: &dyn BackingStore, cur: &[u8], new: &[u8]) -> Result<u32> {
    match unlock(st, new, false) {
        Ok((_, u)) => return Ok(u.slot),
        Err(Error::Luks(strongroom_luks::Error::WrongKey)) => {}
        Err(e) => return Err(e),
    }
    let (mut vol, u) = unlock(st, cur, true)?;
    let params = KeyslotParams {
        kdf: KdfParams::default(),
        slot: None,
        priority: None,
    };
    let slot = vol.add_keyslot(&u.volume_key, new, &params)?;
    fault("rotate:slot-added");
    let (_, check) = unlock(st, new, false)?;
    if check.slot != slot || check.volume_key != u.volume_key {
        return Err(Error::Internal("new keyslot verification failed".into()));
    }
    Ok(slot)
}

/// Where a kv volume's secret is, once stored.
fn kv_at(
    location: &Option<strongroom_vault_client::KvLocation>,
) -> Result<&strongroom_vault_client::KvLocation> {
    location
        .as_ref()
        .ok_or_else(|| Error::Corrupt("kv volume without a recorded KV location".into()))
}
