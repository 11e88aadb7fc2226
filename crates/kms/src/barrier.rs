//! The barrier: everything the key manager stores passes through here and is encrypted with
//! AES-256-GCM under the active term of the keyring, with the storage path as associated data
//! (so a ciphertext cannot be moved to another path).
//!
//! Key hierarchy, as in Vault:
//!   unseal key (32 B, split with Shamir, never stored)
//!     └ seals the root key            at `core/root-key`
//!         └ seals the keyring          at `core/keyring`
//!             └ term keys encrypt every other entry
//! `core/seal-config` holds only share counts and is the one plaintext entry.

use crate::crypto::{self, Aead};
use crate::storage::{Storage, StorageError, TxOp};
use base64::Engine;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use zeroize::Zeroizing;

pub const SEAL_CONFIG_PATH: &str = "core/seal-config";
const ROOT_KEY_PATH: &str = "core/root-key";
const KEYRING_PATH: &str = "core/keyring";
/// The entries a node needs to be unsealed with the cluster's shares (all sealed or
/// plaintext counts): handed to a node joining a raft cluster.
pub const UNSEAL_ENTRIES: [&str; 3] = [SEAL_CONFIG_PATH, ROOT_KEY_PATH, KEYRING_PATH];
const ENTRY_VERSION: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum BarrierError {
    #[error("Vault is sealed")]
    Sealed,
    #[error("barrier is already initialized")]
    AlreadyInitialized,
    #[error("barrier is not initialized")]
    NotInitialized,
    #[error("failed to decrypt keys from storage: cipher: message authentication failed")]
    BadUnsealKey,
    #[error("failed to decrypt entry at {0}")]
    Decrypt(String),
    #[error("unknown keyring term {term} for entry at {path}")]
    UnknownTerm { term: u32, path: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

#[derive(Serialize, Deserialize)]
struct KeyringDoc {
    active: u32,
    /// term -> base64 key
    keys: BTreeMap<u32, String>,
}

struct Keyring {
    active: u32,
    terms: BTreeMap<u32, Aead>,
}

pub struct Barrier {
    storage: Arc<dyn Storage>,
    keyring: RwLock<Option<Keyring>>,
}

/// A batched change through the barrier.
pub enum BarrierOp {
    Put(String, Vec<u8>),
    Delete(String),
}

impl Barrier {
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        Self {
            storage,
            keyring: RwLock::new(None),
        }
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    pub fn is_initialized(&self) -> Result<bool, BarrierError> {
        Ok(self.storage.get(ROOT_KEY_PATH)?.is_some())
    }

    pub fn is_sealed(&self) -> bool {
        self.keyring.read().is_none()
    }

    /// Create the root key and the first keyring term, sealed under `unseal_key`, in one
    /// atomic commit together with the seal configuration. Leaves the barrier sealed.
    pub fn initialize(&self, unseal_key: &[u8], seal_config: Vec<u8>) -> Result<(), BarrierError> {
        if self.is_initialized()? {
            return Err(BarrierError::AlreadyInitialized);
        }
        let root = crypto::random_bytes::<32>();
        let term_key = crypto::random_bytes::<32>();
        let doc = KeyringDoc {
            active: 1,
            keys: BTreeMap::from([(
                1,
                base64::engine::general_purpose::STANDARD.encode(&term_key[..]),
            )]),
        };
        let doc_json = Zeroizing::new(serde_json::to_vec(&doc).expect("keyring serializes"));
        let unseal = Aead::new(unseal_key).map_err(|_| BarrierError::BadUnsealKey)?;
        let root_aead = Aead::new(&root[..]).expect("32-byte key");
        self.storage.commit(vec![
            TxOp::Put(SEAL_CONFIG_PATH.into(), seal_config),
            TxOp::Put(
                ROOT_KEY_PATH.into(),
                unseal.seal(&root[..], ROOT_KEY_PATH.as_bytes()),
            ),
            TxOp::Put(
                KEYRING_PATH.into(),
                root_aead.seal(&doc_json, KEYRING_PATH.as_bytes()),
            ),
        ])?;
        Ok(())
    }

    /// Open the keyring with the unseal key. A wrong key is detected by GCM authentication.
    pub fn unseal(&self, unseal_key: &[u8]) -> Result<(), BarrierError> {
        let sealed_root = self
            .storage
            .get(ROOT_KEY_PATH)?
            .ok_or(BarrierError::NotInitialized)?;
        let unseal = Aead::new(unseal_key).map_err(|_| BarrierError::BadUnsealKey)?;
        let root = unseal
            .open(&sealed_root, ROOT_KEY_PATH.as_bytes())
            .map_err(|_| BarrierError::BadUnsealKey)?;
        let root_aead =
            Aead::new(&root).map_err(|_| BarrierError::Decrypt(ROOT_KEY_PATH.into()))?;
        let sealed_ring = self
            .storage
            .get(KEYRING_PATH)?
            .ok_or_else(|| BarrierError::Decrypt(KEYRING_PATH.into()))?;
        let ring_json = root_aead
            .open(&sealed_ring, KEYRING_PATH.as_bytes())
            .map_err(|_| BarrierError::Decrypt(KEYRING_PATH.into()))?;
        let doc: KeyringDoc = serde_json::from_slice(&ring_json)
            .map_err(|_| BarrierError::Decrypt(KEYRING_PATH.into()))?;
        let mut terms = BTreeMap::new();
        for (t, k) in &doc.keys {
            let raw = Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(k)
                    .map_err(|_| BarrierError::Decrypt(KEYRING_PATH.into()))?,
            );
            terms.insert(
                *t,
                Aead::new(&raw).map_err(|_| BarrierError::Decrypt(KEYRING_PATH.into()))?,
            );
        }
        if !terms.contains_key(&doc.active) {
            return Err(BarrierError::Decrypt(KEYRING_PATH.into()));
        }
        *self.keyring.write() = Some(Keyring {
            active: doc.active,
            terms,
        });
        Ok(())
    }

    /// Forget every key held in memory (the `Aead` keys are dropped with the keyring).
    pub fn seal(&self) {
        *self.keyring.write() = None;
    }

    pub fn active_term(&self) -> Result<u32, BarrierError> {
        Ok(self
            .keyring
            .read()
            .as_ref()
            .ok_or(BarrierError::Sealed)?
            .active)
    }

    fn encrypt(&self, path: &str, value: &[u8]) -> Result<Vec<u8>, BarrierError> {
        let guard = self.keyring.read();
        let ring = guard.as_ref().ok_or(BarrierError::Sealed)?;
        let aead = &ring.terms[&ring.active];
        let mut out = Vec::with_capacity(5 + 28 + value.len());
        out.push(ENTRY_VERSION);
        out.extend_from_slice(&ring.active.to_be_bytes());
        out.extend_from_slice(&aead.seal(value, path.as_bytes()));
        Ok(out)
    }

    fn decrypt(&self, path: &str, raw: &[u8]) -> Result<Zeroizing<Vec<u8>>, BarrierError> {
        let guard = self.keyring.read();
        let ring = guard.as_ref().ok_or(BarrierError::Sealed)?;
        if raw.len() < 5 || raw[0] != ENTRY_VERSION {
            return Err(BarrierError::Decrypt(path.into()));
        }
        let term = u32::from_be_bytes([raw[1], raw[2], raw[3], raw[4]]);
        let aead = ring
            .terms
            .get(&term)
            .ok_or_else(|| BarrierError::UnknownTerm {
                term,
                path: path.into(),
            })?;
        aead.open(&raw[5..], path.as_bytes())
            .map_err(|_| BarrierError::Decrypt(path.into()))
    }

    /// Encrypt `value` under the active term, bound to `path`, without storing it (the raft
    /// join challenge).
    pub fn seal_value(&self, path: &str, value: &[u8]) -> Result<Vec<u8>, BarrierError> {
        self.encrypt(path, value)
    }

    /// Open what [`Self::seal_value`] made for `path`.
    pub fn open_value(&self, path: &str, raw: &[u8]) -> Result<Zeroizing<Vec<u8>>, BarrierError> {
        self.decrypt(path, raw)
    }

    pub fn get(&self, path: &str) -> Result<Option<Zeroizing<Vec<u8>>>, BarrierError> {
        if self.is_sealed() {
            return Err(BarrierError::Sealed);
        }
        match self.storage.get(path)? {
            None => Ok(None),
            Some(raw) => self.decrypt(path, &raw).map(Some),
        }
    }

    pub fn put(&self, path: &str, value: &[u8]) -> Result<(), BarrierError> {
        self.commit(vec![BarrierOp::Put(path.to_string(), value.to_vec())])
    }

    pub fn delete(&self, path: &str) -> Result<(), BarrierError> {
        self.commit(vec![BarrierOp::Delete(path.to_string())])
    }

    pub fn list(&self, prefix: &str) -> Result<Vec<String>, BarrierError> {
        if self.is_sealed() {
            return Err(BarrierError::Sealed);
        }
        Ok(self.storage.list(prefix)?)
    }

    /// Encrypt and apply a batch atomically.
    pub fn commit(&self, ops: Vec<BarrierOp>) -> Result<(), BarrierError> {
        let mut phys = Vec::with_capacity(ops.len());
        for op in ops {
            phys.push(match op {
                BarrierOp::Put(p, v) => {
                    let c = self.encrypt(&p, &v)?;
                    TxOp::Put(p, c)
                }
                BarrierOp::Delete(p) => TxOp::Delete(p),
            });
        }
        Ok(self.storage.commit(phys)?)
    }
}

/// A prefix of the barrier handed to one mount, so a backend cannot reach outside its own
/// storage (`logical/<uuid>/`, `auth/<uuid>/`, ...).
#[derive(Clone)]
pub struct View {
    barrier: Arc<Barrier>,
    prefix: String,
}

impl View {
    pub fn new(barrier: Arc<Barrier>, prefix: impl Into<String>) -> Self {
        Self {
            barrier,
            prefix: prefix.into(),
        }
    }
    pub fn sub(&self, prefix: &str) -> View {
        View::new(self.barrier.clone(), format!("{}{prefix}", self.prefix))
    }
    pub fn get(&self, key: &str) -> Result<Option<Zeroizing<Vec<u8>>>, BarrierError> {
        self.barrier.get(&format!("{}{key}", self.prefix))
    }
    pub fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, BarrierError> {
        match self.get(key)? {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|_| BarrierError::Decrypt(format!("{}{key}", self.prefix))),
        }
    }
    pub fn put(&self, key: &str, value: &[u8]) -> Result<(), BarrierError> {
        self.barrier.put(&format!("{}{key}", self.prefix), value)
    }
    pub fn put_json<T: Serialize>(&self, key: &str, value: &T) -> Result<(), BarrierError> {
        let v = Zeroizing::new(serde_json::to_vec(value).expect("value serializes"));
        self.put(key, &v)
    }
    pub fn delete(&self, key: &str) -> Result<(), BarrierError> {
        self.barrier.delete(&format!("{}{key}", self.prefix))
    }
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, BarrierError> {
        self.barrier.list(&format!("{}{prefix}", self.prefix))
    }
    /// Batch with keys relative to this view.
    pub fn commit(&self, ops: Vec<BarrierOp>) -> Result<(), BarrierError> {
        let ops = ops
            .into_iter()
            .map(|op| match op {
                BarrierOp::Put(k, v) => BarrierOp::Put(format!("{}{k}", self.prefix), v),
                BarrierOp::Delete(k) => BarrierOp::Delete(format!("{}{k}", self.prefix)),
            })
            .collect();
        self.barrier.commit(ops)
    }
    /// Delete every entry below this view (used when a mount is disabled).
    pub fn clear(&self) -> Result<(), BarrierError> {
        let mut stack = vec![String::new()];
        let mut ops = Vec::new();
        while let Some(p) = stack.pop() {
            for k in self.list(&p)? {
                let full = format!("{p}{k}");
                if full.ends_with('/') {
                    stack.push(full);
                } else {
                    ops.push(BarrierOp::Delete(full));
                }
            }
        }
        if ops.is_empty() {
            return Ok(());
        }
        self.commit(ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::InmemStorage;

    #[test]
    fn nothing_readable_without_unseal_and_values_are_encrypted() {
        let st: Arc<dyn Storage> = Arc::new(InmemStorage::new());
        let b = Barrier::new(st.clone());
        let key = crypto::random_bytes::<32>();
        b.initialize(&key[..], b"{}".to_vec()).unwrap();
        assert!(b.is_sealed());
        assert!(matches!(b.get("x"), Err(BarrierError::Sealed)));
        assert!(matches!(
            b.unseal(&[7u8; 32]),
            Err(BarrierError::BadUnsealKey)
        ));
        b.unseal(&key[..]).unwrap();
        b.put("logical/x", b"top secret value").unwrap();
        assert_eq!(
            &b.get("logical/x").unwrap().unwrap()[..],
            b"top secret value"
        );
        let raw = st.get("logical/x").unwrap().unwrap();
        assert!(!raw.windows(6).any(|w| w == b"secret"));
        // moving a ciphertext to another path fails authentication
        st.put("logical/y", raw).unwrap();
        assert!(matches!(b.get("logical/y"), Err(BarrierError::Decrypt(_))));
        b.seal();
        assert!(matches!(b.get("logical/x"), Err(BarrierError::Sealed)));
        assert!(matches!(
            b.initialize(&key[..], vec![]),
            Err(BarrierError::AlreadyInitialized)
        ));
    }

    #[test]
    fn view_is_confined_and_clear_removes_all() {
        let b = Arc::new(Barrier::new(Arc::new(InmemStorage::new())));
        let key = crypto::random_bytes::<32>();
        b.initialize(&key[..], vec![]).unwrap();
        b.unseal(&key[..]).unwrap();
        let v = View::new(b.clone(), "logical/abc/");
        v.put("a", b"1").unwrap();
        v.put("d/b", b"2").unwrap();
        b.put("logical/other", b"3").unwrap();
        assert_eq!(v.list("").unwrap(), vec!["a", "d/"]);
        v.clear().unwrap();
        assert!(v.list("").unwrap().is_empty());
        assert!(b.get("logical/other").unwrap().is_some());
    }
}
