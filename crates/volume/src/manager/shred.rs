//! Crypto-shred, one function per step: `Shredding` recorded (the volume never opens again),
//! the key destroyed ([`Manager::destroy_key`]), every keyslot wiped
//! ([`Manager::wipe_keyslots`]), `Shredded` recorded. Re-running finishes an interrupted one.

use super::{fault, lock, Manager, VolumeInfo};
use crate::error::{Error, Result};
use crate::kms::{classify, Call, Credential};
use crate::meta::{now, Protection, StoreSpec, VolumeMeta};
use crate::protect;
use crate::state::{Pending, State};
use crate::store;
use std::path::Path;

impl Manager {
    /// Crypto-shred: destroy the wrapped secret (envelope) or the KV entry (kv), wipe every
    /// keyslot (the whole LUKS2 header area). Works with the admin credential, without the
    /// tenant's token. Audited. Idempotent; an interrupted shred is finished by re-running.
    pub fn shred(&self, id: &str, cred: &Credential) -> Result<VolumeInfo> {
        let (dir, mut m) = self.load(id)?;
        let _l = lock(&dir)?;
        if m.state == State::Shredded {
            return Ok(self.info(&dir, &m));
        }
        self.authorize_any(&m, cred)?;
        self.teardown(&dir, id)?;
        m.transition(&dir, State::Shredding)?;
        self.audit("shred-start", &m, cred.actor(), "ok");
        fault("shred:marked");
        self.cache.evict(id);
        self.destroy_key(&dir, &mut m, cred)?;
        fault("shred:key-destroyed");
        self.wipe_keyslots(&m)?;
        fault("shred:wiped");
        m.pending = None;
        m.shredded_at = Some(now());
        m.transition(&dir, State::Shredded)?;
        self.audit("shred", &m, cred.actor(), "ok");
        Ok(self.info(&dir, &m))
    }

    /// The secret made unrecoverable: the wrapped blobs dropped from the metadata (envelope:
    /// the KMS never had the secret), or the KV entry destroyed with every version.
    fn destroy_key(&self, dir: &Path, m: &mut VolumeMeta, cred: &Credential) -> Result<()> {
        match &mut m.protection {
            Protection::Envelope { wrapped, .. } => {
                if wrapped.take().is_some() {
                    m.store(dir)?;
                }
            }
            Protection::Kv {
                location: Some(at), ..
            } => {
                let c = self.cfg.kms.client(cred.token())?;
                protect::kv_destroy(&c, at)?;
            }
            Protection::Kv { location: None, .. } => {}
        }
        if let Some(Pending::RotateSlot { new_wrapped, .. }) = &mut m.pending {
            *new_wrapped = None;
            m.store(dir)?;
        }
        Ok(())
    }

    /// Zeros over the whole LUKS2 header area (both header copies and every keyslot).
    fn wipe_keyslots(&self, m: &VolumeMeta) -> Result<()> {
        self.say(&format!("wiping every keyslot of {}", m.id));
        let st = store::from_spec(&m.store);
        let Ok(dev) = st.open(true) else {
            return Ok(()); // no store: nothing to wipe
        };
        let len = m.luks.data_offset.min(dev.size().unwrap_or(0));
        let zeros = vec![0u8; 1 << 20];
        let mut off = 0;
        while off < len {
            let n = (len - off).min(zeros.len() as u64) as usize;
            dev.write_at(&zeros[..n], off)
                .map_err(|e| Error::io("wipe keyslots", e))?;
            off += n as u64;
        }
        dev.flush().map_err(|e| Error::io("flush wipe", e))
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
        store::from_spec(&m.store).remove()?;
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io("remove shredded volume", e))
    }

    /// Proves the credential may act on the volume without needing its key material:
    /// tenant → an encrypt under the volume's context with the tenant's transit key (envelope)
    /// or a read of its KV entry; admin → read access to the tenant's transit key / KV delete.
    fn authorize_any(&self, m: &VolumeMeta, cred: &Credential) -> Result<()> {
        let c = self.cfg.kms.client(cred.token())?;
        let check = |e| classify(&c, Call::Other, "check the credential", e);
        match (&m.protection, cred) {
            (Protection::Envelope { mount, key, .. }, Credential::Tenant(_)) => {
                protect::wrap(&c, mount, key, &[0u8; 32], &self.ctx(m)).map(|_| ())
            }
            (Protection::Envelope { mount, key, .. }, Credential::Admin(_)) => {
                match c.transit_read_key(mount, key) {
                    Ok(Some(_)) => Ok(()),
                    Ok(None) => Err(Error::NotFound(format!("transit key {mount}/{key}"))),
                    Err(e) => Err(check(e)),
                }
            }
            // Never protected (crashed create): nothing in KV to check against.
            (Protection::Kv { location: None, .. }, _) => {
                c.token_lookup_self().map(|_| ()).map_err(check)
            }
            (
                Protection::Kv {
                    location: Some(at), ..
                },
                Credential::Admin(_),
            ) if at.version == strongroom_vault_client::KvVersion::V2 => c
                .kv2_read_metadata(&at.mount, &at.path)
                .map(|_| ())
                .or_else(|e| if e.is_not_found() { Ok(()) } else { Err(e) })
                .map_err(check),
            (
                Protection::Kv {
                    location: Some(at), ..
                },
                _,
            ) => protect::kv_read(&c, at).map(|_| ()),
        }
    }
}
