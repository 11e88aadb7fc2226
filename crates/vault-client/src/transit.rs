//! Transit secrets engine: envelope encryption with derived keys (context), rewrap, data keys.
//! Plaintexts and contexts are raw bytes here; base64 is handled internally.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::Serialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::client::{Client, Method};
use crate::error::{Error, Result};
use crate::secret::zeroize_value;
use crate::types::Secret;

/// A transit ciphertext (`vault:v<N>:<base64>`) and the key version that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransitCiphertext {
    pub ciphertext: String,
    pub key_version: u64,
}

/// Which kind of data key to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataKeyKind {
    /// The answer includes the plaintext key.
    Plaintext,
    /// Only the wrapped key.
    Wrapped,
}

/// A generated data key.
pub struct DataKey {
    pub ciphertext: String,
    pub key_version: u64,
    pub plaintext: Option<Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("ciphertext", &self.ciphertext)
            .field("key_version", &self.key_version)
            .field("plaintext", &self.plaintext.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Options for creating a transit key.
#[derive(Clone, Debug, Serialize)]
pub struct TransitKeyOptions {
    #[serde(rename = "type")]
    pub key_type: String,
    /// Key derivation: every operation then needs a `context`.
    pub derived: bool,
    pub exportable: bool,
}

impl Default for TransitKeyOptions {
    fn default() -> Self {
        TransitKeyOptions {
            key_type: "aes256-gcm96".into(),
            derived: false,
            exportable: false,
        }
    }
}

impl TransitKeyOptions {
    /// AES-256-GCM with key derivation (per-context keys), as Strongroom's volume keys use.
    pub fn derived() -> Self {
        TransitKeyOptions {
            derived: true,
            ..Default::default()
        }
    }
}

fn path(mount: &str, op: &str, key: &str) -> String {
    format!("{}/{op}/{key}", mount.trim_matches('/'))
}

impl Client {
    fn transit_data(&self, api: &str, s: Option<Secret>) -> Result<Secret> {
        s.filter(|s| s.data.is_some())
            .ok_or_else(|| Error::InvalidResponse {
                url: self.url(api),
                reason: "response has no data".into(),
            })
    }

    fn ciphertext_of(&self, api: &str, s: &Secret) -> Result<TransitCiphertext> {
        let ciphertext = s
            .data_str("ciphertext")
            .ok_or_else(|| Error::InvalidResponse {
                url: self.url(api),
                reason: "no ciphertext in response".into(),
            })?;
        let key_version = s
            .data_get("key_version")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        Ok(TransitCiphertext {
            ciphertext: ciphertext.to_owned(),
            key_version,
        })
    }

    /// `POST <mount>/keys/<key>`: creates a key (no-op if it exists).
    pub fn transit_create_key(
        &self,
        mount: &str,
        key: &str,
        opts: &TransitKeyOptions,
    ) -> Result<()> {
        let body = serde_json::to_value(opts).map_err(|e| Error::Config(e.to_string()))?;
        self.request(Method::Post, &path(mount, "keys", key), &[], Some(&body))
            .map(|_| ())
    }

    /// `GET <mount>/keys/<key>`: key information; `None` if there is no such key.
    pub fn transit_read_key(&self, mount: &str, key: &str) -> Result<Option<Secret>> {
        self.read(&path(mount, "keys", key))
    }

    /// `POST <mount>/keys/<key>/rotate`.
    pub fn transit_rotate_key(&self, mount: &str, key: &str) -> Result<()> {
        self.request(
            Method::Post,
            &format!("{}/rotate", path(mount, "keys", key)),
            &[],
            None,
        )
        .map(|_| ())
    }

    /// Encrypts `plaintext` (bound to `context` for derived keys).
    pub fn transit_encrypt(
        &self,
        mount: &str,
        key: &str,
        plaintext: &[u8],
        context: Option<&[u8]>,
    ) -> Result<TransitCiphertext> {
        let api = path(mount, "encrypt", key);
        let mut body = json!({ "plaintext": B64.encode(plaintext) });
        if let Some(c) = context {
            body["context"] = Value::String(B64.encode(c));
        }
        let r = self.request_secret(Method::Post, &api, &[], Some(&body));
        zeroize_value(&mut body);
        let s = self.transit_data(&api, r?)?;
        self.ciphertext_of(&api, &s)
    }

    /// Decrypts a transit ciphertext; the plaintext is wiped when dropped.
    pub fn transit_decrypt(
        &self,
        mount: &str,
        key: &str,
        ciphertext: &str,
        context: Option<&[u8]>,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let api = path(mount, "decrypt", key);
        let mut body = json!({ "ciphertext": ciphertext });
        if let Some(c) = context {
            body["context"] = Value::String(B64.encode(c));
        }
        let s = self.transit_data(
            &api,
            self.request_secret(Method::Post, &api, &[], Some(&body))?,
        )?;
        let b64 = s
            .data_str("plaintext")
            .ok_or_else(|| Error::InvalidResponse {
                url: self.url(&api),
                reason: "no plaintext in response".into(),
            })?;
        B64.decode(b64)
            .map(Zeroizing::new)
            .map_err(|e| Error::InvalidResponse {
                url: self.url(&api),
                reason: format!("plaintext is not base64: {e}"),
            })
    }

    /// Re-encrypts a ciphertext with the latest key version (KEK rotation, no plaintext).
    pub fn transit_rewrap(
        &self,
        mount: &str,
        key: &str,
        ciphertext: &str,
        context: Option<&[u8]>,
    ) -> Result<TransitCiphertext> {
        let api = path(mount, "rewrap", key);
        let mut body = json!({ "ciphertext": ciphertext });
        if let Some(c) = context {
            body["context"] = Value::String(B64.encode(c));
        }
        let s = self.transit_data(
            &api,
            self.request_secret(Method::Post, &api, &[], Some(&body))?,
        )?;
        self.ciphertext_of(&api, &s)
    }

    /// Generates a data key of `bits` (128, 256 or 512; default 256).
    pub fn transit_datakey(
        &self,
        mount: &str,
        key: &str,
        kind: DataKeyKind,
        bits: Option<u32>,
        context: Option<&[u8]>,
    ) -> Result<DataKey> {
        let kind_s = match kind {
            DataKeyKind::Plaintext => "plaintext",
            DataKeyKind::Wrapped => "wrapped",
        };
        let api = format!("{}/datakey/{kind_s}/{key}", mount.trim_matches('/'));
        let mut body = json!({});
        if let Some(b) = bits {
            body["bits"] = json!(b);
        }
        if let Some(c) = context {
            body["context"] = Value::String(B64.encode(c));
        }
        let s = self.transit_data(
            &api,
            self.request_secret(Method::Post, &api, &[], Some(&body))?,
        )?;
        let ct = self.ciphertext_of(&api, &s)?;
        let plaintext = match (kind, s.data_str("plaintext")) {
            (DataKeyKind::Plaintext, Some(p)) => {
                Some(Zeroizing::new(B64.decode(p).map_err(|e| {
                    Error::InvalidResponse {
                        url: self.url(&api),
                        reason: format!("plaintext is not base64: {e}"),
                    }
                })?))
            }
            (DataKeyKind::Plaintext, None) => {
                return Err(Error::InvalidResponse {
                    url: self.url(&api),
                    reason: "no plaintext in response".into(),
                })
            }
            (DataKeyKind::Wrapped, _) => None,
        };
        Ok(DataKey {
            ciphertext: ct.ciphertext,
            key_version: ct.key_version,
            plaintext,
        })
    }
}
