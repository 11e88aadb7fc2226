//! Transit named keys ("policies" in OpenBao's code): the stored document, per-version key
//! material, and the symmetric crypto done with it.
//!
//! Storage: one JSON document per key at `policy/<name>` in the mount's barrier view (so it is
//! encrypted by the barrier); key bytes are base64 inside it and live in memory only in
//! [`Zeroizing`] buffers.
//!
//! Crypto, chosen to be wire-compatible with OpenBao:
//! * `aes256-gcm96` / `aes128-gcm96` / `chacha20-poly1305` (aws-lc), 96-bit random nonce,
//!   payload = `nonce(12) ‖ ciphertext ‖ tag(16)`, `associated_data` as AEAD AAD.
//! * Derived keys (`derived=true`): the per-request key is
//!   `HKDF-SHA256(IKM = version key, salt = none, info = context)` truncated to the cipher's key
//!   length — OpenBao's `hkdf_sha256` KDF, so a context mismatch yields a different key and the
//!   AEAD tag check fails.
//! * HMAC: each version has a separate random 32-byte HMAC key (as OpenBao), never the
//!   encryption key.

use crate::crypto::random_vec;
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, NONCE_LEN};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use zeroize::Zeroizing;

use super::ciphertext::{b64_encode, go_b64_decode};

pub const TAG_LEN: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyType {
    #[serde(rename = "aes256-gcm96")]
    Aes256Gcm96,
    #[serde(rename = "aes128-gcm96")]
    Aes128Gcm96,
    #[serde(rename = "chacha20-poly1305")]
    ChaCha20Poly1305,
}

/// What a `type` value names.
pub enum TypeLookup {
    Supported(KeyType),
    /// A type OpenBao has that Strongroom does not implement (yet).
    Unsupported,
    Unknown,
}

impl KeyType {
    pub fn lookup(s: &str) -> TypeLookup {
        match s {
            "aes256-gcm96" => TypeLookup::Supported(KeyType::Aes256Gcm96),
            "aes128-gcm96" => TypeLookup::Supported(KeyType::Aes128Gcm96),
            "chacha20-poly1305" => TypeLookup::Supported(KeyType::ChaCha20Poly1305),
            "xchacha20-poly1305" | "ecdsa-p256" | "ecdsa-p384" | "ecdsa-p521" | "ed25519"
            | "rsa-2048" | "rsa-3072" | "rsa-4096" | "hmac" | "external-key" => {
                TypeLookup::Unsupported
            }
            _ => TypeLookup::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Aes256Gcm96 => "aes256-gcm96",
            KeyType::Aes128Gcm96 => "aes128-gcm96",
            KeyType::ChaCha20Poly1305 => "chacha20-poly1305",
        }
    }

    pub fn key_len(self) -> usize {
        match self {
            KeyType::Aes128Gcm96 => 16,
            KeyType::Aes256Gcm96 | KeyType::ChaCha20Poly1305 => 32,
        }
    }

    fn algorithm(self) -> &'static aws_lc_rs::aead::Algorithm {
        match self {
            KeyType::Aes256Gcm96 => &aws_lc_rs::aead::AES_256_GCM,
            KeyType::Aes128Gcm96 => &aws_lc_rs::aead::AES_128_GCM,
            KeyType::ChaCha20Poly1305 => &aws_lc_rs::aead::CHACHA20_POLY1305,
        }
    }

    /// Go's error text for a failed AEAD open (clients see it).
    pub fn auth_error(self) -> &'static str {
        match self {
            KeyType::ChaCha20Poly1305 => "chacha20poly1305: message authentication failed",
            _ => "cipher: message authentication failed",
        }
    }
}

/// Secret bytes, zeroized on drop, stored as base64 in the (barrier-encrypted) document.
#[derive(Clone)]
pub struct Secret(pub Zeroizing<Vec<u8>>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let enc = Zeroizing::new(b64_encode(&self.0));
        s.serialize_str(&enc)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Zeroizing::new(String::deserialize(d)?);
        go_b64_decode(&s)
            .map(|v| Secret(Zeroizing::new(v)))
            .map_err(|_| serde::de::Error::custom("invalid key encoding"))
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyEntry {
    pub key: Secret,
    pub hmac_key: Secret,
    /// Unix seconds (what the API shows in `keys`).
    pub creation_time: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyPolicy {
    pub name: String,
    #[serde(rename = "type")]
    pub key_type: KeyType,
    pub derived: bool,
    /// Always `hkdf_sha256` for keys created here.
    pub kdf: String,
    pub exportable: bool,
    pub allow_plaintext_backup: bool,
    pub deletion_allowed: bool,
    pub min_decryption_version: i64,
    pub min_encryption_version: i64,
    pub min_available_version: i64,
    pub latest_version: i64,
    /// Seconds; 0 = no automatic rotation.
    pub auto_rotate_period: u64,
    pub keys: BTreeMap<i64, KeyEntry>,
    /// Convergent encryption (derived keys only): the nonce is an HMAC of the plaintext, so
    /// equal plaintext + context give equal ciphertexts. OpenBao's convergent version 3.
    #[serde(default)]
    pub convergent: bool,
    /// Soft-deleted keys refuse every cryptographic use until restored.
    #[serde(default)]
    pub soft_deleted: bool,
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl KeyPolicy {
    pub fn new(name: &str, key_type: KeyType, derived: bool, auto_rotate_period: u64) -> Self {
        let mut p = KeyPolicy {
            name: name.to_string(),
            key_type,
            derived,
            kdf: "hkdf_sha256".into(),
            exportable: false,
            allow_plaintext_backup: false,
            deletion_allowed: false,
            min_decryption_version: 1,
            min_encryption_version: 0,
            min_available_version: 0,
            latest_version: 0,
            auto_rotate_period,
            keys: BTreeMap::new(),
            soft_deleted: false,
            convergent: false,
        };
        p.rotate();
        p
    }

    /// Add a fresh key version and make it the latest.
    pub fn rotate(&mut self) {
        let entry = KeyEntry {
            key: Secret(random_vec(self.key_type.key_len())),
            hmac_key: Secret(random_vec(32)),
            creation_time: now_unix(),
        };
        self.latest_version += 1;
        self.keys.insert(self.latest_version, entry);
        if self.min_decryption_version == 0 {
            self.min_decryption_version = 1;
        }
    }

    /// Drop versions below `min_available_version` for good (trim).
    pub fn trim(&mut self) {
        let min = self.min_available_version;
        self.keys.retain(|v, _| *v >= min);
    }

    /// A version as OpenBao's in-memory key map holds it: versions below
    /// `min_decryption_version` are archived and unusable until the minimum is lowered.
    pub fn entry(&self, ver: i64) -> Option<&KeyEntry> {
        if ver < self.min_decryption_version {
            return None;
        }
        self.keys.get(&ver)
    }

    /// Whether automatic rotation is due at `now`.
    pub fn rotation_due(&self, now: i64) -> bool {
        if self.auto_rotate_period == 0 {
            return false;
        }
        match self.keys.get(&self.latest_version) {
            Some(e) => now.saturating_sub(e.creation_time) >= self.auto_rotate_period as i64,
            None => false,
        }
    }

    /// The API's key info (`keys/<name>` read, create, rotate, config, trim).
    pub fn info(&self) -> serde_json::Value {
        let mut keys = serde_json::Map::new();
        for (v, e) in &self.keys {
            if *v >= self.min_decryption_version {
                keys.insert(v.to_string(), serde_json::json!(e.creation_time));
            }
        }
        let mut m = serde_json::json!({
            "allow_plaintext_backup": self.allow_plaintext_backup,
            "auto_rotate_period": self.auto_rotate_period,
            "deletion_allowed": self.deletion_allowed,
            "derived": self.derived,
            "exportable": self.exportable,
            "imported_key": false,
            "keys": keys,
            "latest_version": self.latest_version,
            "min_available_version": self.min_available_version,
            "min_decryption_version": self.min_decryption_version,
            "min_encryption_version": self.min_encryption_version,
            "name": self.name,
            "soft_deleted": self.soft_deleted,
            "supports_decryption": true,
            "supports_derivation": true,
            "supports_encryption": true,
            "supports_signing": false,
            "type": self.key_type.as_str(),
        });
        if self.derived {
            let o = m.as_object_mut().expect("object");
            o.insert("kdf".into(), serde_json::json!(self.kdf));
            o.insert(
                "convergent_encryption".into(),
                serde_json::json!(self.convergent),
            );
            if self.convergent {
                // OpenBao: -1 = versioned per key entry (all entries here are version 3)
                o.insert(
                    "convergent_encryption_version".into(),
                    serde_json::json!(-1),
                );
            }
        }
        m
    }

    /// The encryption key for `ver` (already validated to exist), derived per context for
    /// derived keys. Errors are OpenBao's user-facing texts.
    pub fn enc_key(&self, ver: i64, context: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
        self.derive(ver, context, self.key_type.key_len())
    }

    /// For convergent keys: the encryption key and the 32-byte nonce-HMAC key, both from one
    /// HKDF output (`enc ‖ hmac`); its prefix is exactly [`KeyPolicy::enc_key`].
    pub fn convergent_keys(
        &self,
        ver: i64,
        context: &[u8],
    ) -> Result<(SecretBytes, SecretBytes), String> {
        let n = self.key_type.key_len();
        let both = self.derive(ver, context, n + 32)?;
        Ok((
            Zeroizing::new(both[..n].to_vec()),
            Zeroizing::new(both[n..].to_vec()),
        ))
    }

    fn derive(&self, ver: i64, context: &[u8], n: usize) -> Result<Zeroizing<Vec<u8>>, String> {
        if !self.derived {
            let e = self.entry(ver).ok_or("no such key version")?;
            return Ok(Zeroizing::new(e.key.0[..n.min(e.key.0.len())].to_vec()));
        }
        if ver <= 0 || ver > self.latest_version {
            return Err("invalid key version".into());
        }
        if context.is_empty() {
            return Err(MISSING_CONTEXT.into());
        }
        let e = self.entry(ver).ok_or("no such key version")?;
        Ok(hkdf_sha256(&e.key.0, context, n))
    }
}

/// Key bytes in memory, zeroized on drop.
pub type SecretBytes = Zeroizing<Vec<u8>>;

pub const SOFT_DELETED: &str = "refusing to use soft-deleted key";

pub const MISSING_CONTEXT: &str = "missing 'context' for key derivation; the key was created using a derived key, which means additional, per-request information must be included in order to perform operations with the key";

/// RFC 5869 HKDF-SHA256 with an empty salt (= HashLen zero bytes), `info = context`.
pub fn hkdf_sha256(ikm: &[u8], info: &[u8], len: usize) -> Zeroizing<Vec<u8>> {
    use hmac::{Hmac, Mac};
    type H = Hmac<sha2::Sha256>;
    let mut ext = <H as Mac>::new_from_slice(&[0u8; 32]).expect("any key length");
    ext.update(ikm);
    let prk = Zeroizing::new(ext.finalize().into_bytes().to_vec());
    let mut out = Zeroizing::new(Vec::with_capacity(len + 32));
    let mut t = Zeroizing::new(Vec::<u8>::new());
    let mut counter = 1u8;
    while out.len() < len {
        let mut m = <H as Mac>::new_from_slice(&prk).expect("any key length");
        m.update(&t);
        m.update(info);
        m.update(&[counter]);
        *t = m.finalize().into_bytes().to_vec();
        out.extend_from_slice(&t);
        counter = counter.wrapping_add(1);
    }
    out.truncate(len);
    out
}

fn aead_key(kt: KeyType, key: &[u8]) -> Result<LessSafeKey, String> {
    UnboundKey::new(kt.algorithm(), key)
        .map(LessSafeKey::new)
        .map_err(|_| "could not derive enc key, length not correct".to_string())
}

/// Empty a secret scratch buffer for reuse with room for `n` bytes, without leaving a copy
/// behind: the bytes in use are wiped, and a buffer that must grow is wiped whole and
/// replaced (a `Vec` that reallocates by itself frees the old block unwiped). Bytes past
/// the length (left by a truncation) are wiped with the whole capacity when the buffer is
/// dropped, at the end of the request.
pub fn reserve_secret(buf: &mut Zeroizing<Vec<u8>>, n: usize) {
    use zeroize::Zeroize;
    if buf.capacity() < n {
        *buf = Zeroizing::new(Vec::with_capacity(n.max(64)));
    } else {
        buf.as_mut_slice().zeroize();
        buf.clear();
    }
}

/// Nonces drawn from the RNG in bulk: one RNG call per up to [`NONCE_CHUNK`] items instead
/// of one per item (each call pays for prediction resistance). Nonces are public, so
/// nothing here needs wiping.
struct NoncePool {
    buf: [u8; NONCE_LEN * NONCE_CHUNK],
    pos: usize,
    len: usize,
    /// How many more nonces the caller expects to need (sizes the next refill).
    wanted: usize,
}

const NONCE_CHUNK: usize = 64;

impl NoncePool {
    fn new(wanted: usize) -> Self {
        Self {
            buf: [0; NONCE_LEN * NONCE_CHUNK],
            pos: 0,
            len: 0,
            wanted: wanted.max(1),
        }
    }

    fn next(&mut self) -> [u8; NONCE_LEN] {
        if self.pos == self.len {
            let n = self.wanted.clamp(1, NONCE_CHUNK) * NONCE_LEN;
            aws_lc_rs::rand::fill(&mut self.buf[..n]).expect("system RNG failed");
            self.pos = 0;
            self.len = n;
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&self.buf[self.pos..self.pos + NONCE_LEN]);
        self.pos += NONCE_LEN;
        self.wanted = self.wanted.saturating_sub(1);
        nonce
    }
}

/// The AEAD key of one (version, context), expanded once.
struct ActiveKey {
    ver: i64,
    /// Compared only for derived keys (others ignore the context).
    context: Vec<u8>,
    aead: LessSafeKey,
    /// Convergent keys: the nonce-HMAC key.
    nonce_key: Option<SecretBytes>,
}

/// Encryption and decryption of many items under one key document (a batch, or a single
/// request): the expanded AEAD key of the last (version, context) used is kept for the next
/// item, so a batch under one version pays for one key schedule (and, for derived keys, one
/// HKDF per run of equal contexts) instead of one per item. Errors are OpenBao's
/// user-facing texts, from the same checks in the same order as per-item setup.
pub struct Cipher<'p> {
    policy: &'p KeyPolicy,
    active: Option<ActiveKey>,
    nonces: NoncePool,
}

/// A prepared key: seal or open with it.
pub struct KeyRef<'c> {
    kt: KeyType,
    key: &'c ActiveKey,
    nonces: &'c mut NoncePool,
}

impl<'p> Cipher<'p> {
    /// `items`: how many items will be sealed (sizes the nonce draws; a guess is fine).
    pub fn new(policy: &'p KeyPolicy, items: usize) -> Self {
        Self {
            policy,
            active: None,
            nonces: NoncePool::new(items),
        }
    }

    /// The key for `ver` and `context` ([`KeyPolicy::enc_key`]'s checks and errors).
    pub fn key(&mut self, ver: i64, context: &[u8]) -> Result<KeyRef<'_>, String> {
        let p = self.policy;
        let hit = self
            .active
            .as_ref()
            .is_some_and(|k| k.ver == ver && (!p.derived || k.context == context));
        if !hit {
            self.active = None;
            let (aead, nonce_key) = if p.convergent {
                let (k, nk) = p.convergent_keys(ver, context)?;
                (aead_key(p.key_type, &k)?, Some(nk))
            } else {
                (aead_key(p.key_type, &p.enc_key(ver, context)?)?, None)
            };
            self.active = Some(ActiveKey {
                ver,
                context: if p.derived {
                    context.to_vec()
                } else {
                    Vec::new()
                },
                aead,
                nonce_key,
            });
        }
        match &self.active {
            Some(key) => Ok(KeyRef {
                kt: p.key_type,
                key,
                nonces: &mut self.nonces,
            }),
            None => Err("no such key version".into()),
        }
    }
}

impl KeyRef<'_> {
    /// Encrypt: `out` becomes `nonce ‖ ciphertext ‖ tag` (a fresh random nonce, or for
    /// convergent keys `HMAC-SHA256(nonce key, plaintext)[..12]`). `out` is a secret scratch
    /// buffer: it holds the plaintext for a moment.
    pub fn seal(
        self,
        aad: &[u8],
        plaintext: &[u8],
        out: &mut Zeroizing<Vec<u8>>,
    ) -> Result<(), String> {
        let nonce = match &self.key.nonce_key {
            Some(nk) => {
                let mac = crate::crypto::hmac_sha256(nk, plaintext);
                let mut n = [0u8; NONCE_LEN];
                n.copy_from_slice(&mac[..NONCE_LEN]);
                n
            }
            None => self.nonces.next(),
        };
        reserve_secret(out, NONCE_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .key
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut out[NONCE_LEN..],
            )
            .map_err(|_| "encryption failed".to_string())?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Decrypt a payload produced by [`KeyRef::seal`] (or by OpenBao) in place: `payload`
    /// is `nonce ‖ ciphertext ‖ tag`; on success the plaintext is `payload[NONCE_LEN..][..n]`
    /// for the returned `n`.
    pub fn open_in_place(self, aad: &[u8], payload: &mut [u8]) -> Result<usize, String> {
        let kt = self.kt;
        super::ciphertext::split_nonce(payload, NONCE_LEN).map_err(|e| e.to_string())?;
        let (nonce, sealed) = payload.split_at_mut(NONCE_LEN);
        if sealed.len() < TAG_LEN {
            return Err(kt.auth_error().into());
        }
        let mut n = [0u8; NONCE_LEN];
        n.copy_from_slice(nonce);
        self.key
            .aead
            .open_in_place(Nonce::assume_unique_for_key(n), Aad::from(aad), sealed)
            .map(|pt| pt.len())
            .map_err(|_| kt.auth_error().to_string())
    }
}

/// Decrypt a payload with a raw key (tests and one-off use).
pub fn open(
    kt: KeyType,
    key: &[u8],
    aad: &[u8],
    payload: &[u8],
) -> Result<Zeroizing<Vec<u8>>, String> {
    let (nonce, sealed) =
        super::ciphertext::split_nonce(payload, NONCE_LEN).map_err(|e| e.to_string())?;
    let k = aead_key(kt, key)?;
    if sealed.len() < TAG_LEN {
        return Err(kt.auth_error().into());
    }
    let mut n = [0u8; NONCE_LEN];
    n.copy_from_slice(nonce);
    let mut buf = Zeroizing::new(sealed.to_vec());
    let len = k
        .open_in_place(
            Nonce::assume_unique_for_key(n),
            Aad::from(aad),
            &mut buf[..],
        )
        .map_err(|_| kt.auth_error().to_string())?
        .len();
    buf.truncate(len);
    Ok(buf)
}

/// Hash functions for `hmac/`, `verify/` and `hash/` (OpenBao's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashAlg {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
    Sha3_224,
    Sha3_256,
    Sha3_384,
    Sha3_512,
}

impl HashAlg {
    /// `None` for unknown names and for `none` (no digest: only meaningful for signatures,
    /// which no key type here supports).
    pub fn parse(s: &str) -> Option<HashAlg> {
        Some(match s {
            "sha1" => HashAlg::Sha1,
            "sha2-224" => HashAlg::Sha224,
            "sha2-256" => HashAlg::Sha256,
            "sha2-384" => HashAlg::Sha384,
            "sha2-512" => HashAlg::Sha512,
            "sha3-224" => HashAlg::Sha3_224,
            "sha3-256" => HashAlg::Sha3_256,
            "sha3-384" => HashAlg::Sha3_384,
            "sha3-512" => HashAlg::Sha3_512,
            _ => return None,
        })
    }
}

/// HMAC(key, data) with the given hash.
pub fn hmac(alg: HashAlg, key: &[u8], data: &[u8]) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    fn rc<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
        let mut m = <M as Mac>::new_from_slice(key).expect("any key length");
        m.update(data);
        m.finalize().into_bytes().to_vec()
    }
    match alg {
        HashAlg::Sha224 => rc::<Hmac<sha2::Sha224>>(key, data),
        HashAlg::Sha256 => rc::<Hmac<sha2::Sha256>>(key, data),
        HashAlg::Sha384 => rc::<Hmac<sha2::Sha384>>(key, data),
        HashAlg::Sha512 => rc::<Hmac<sha2::Sha512>>(key, data),
        HashAlg::Sha1 => {
            let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
            aws_lc_rs::hmac::sign(&k, data).as_ref().to_vec()
        }
        HashAlg::Sha3_224 => rc::<Hmac<sha3::Sha3_224>>(key, data),
        HashAlg::Sha3_256 => rc::<Hmac<sha3::Sha3_256>>(key, data),
        HashAlg::Sha3_384 => rc::<Hmac<sha3::Sha3_384>>(key, data),
        HashAlg::Sha3_512 => rc::<Hmac<sha3::Sha3_512>>(key, data),
    }
}

/// The plain digest of `data` (`hash/`).
pub fn digest(alg: HashAlg, data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    match alg {
        HashAlg::Sha1 => {
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, data)
                .as_ref()
                .to_vec()
        }
        HashAlg::Sha224 => sha2::Sha224::digest(data).to_vec(),
        HashAlg::Sha256 => sha2::Sha256::digest(data).to_vec(),
        HashAlg::Sha384 => sha2::Sha384::digest(data).to_vec(),
        HashAlg::Sha512 => sha2::Sha512::digest(data).to_vec(),
        HashAlg::Sha3_224 => sha3::Sha3_224::digest(data).to_vec(),
        HashAlg::Sha3_256 => sha3::Sha3_256::digest(data).to_vec(),
        HashAlg::Sha3_384 => sha3::Sha3_384::digest(data).to_vec(),
        HashAlg::Sha3_512 => sha3::Sha3_512::digest(data).to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn hkdf_rfc5869_case3() {
        // RFC 5869 A.3: zero-length salt and info
        let ikm = [0x0bu8; 22];
        let okm = hkdf_sha256(&ikm, &[], 42);
        assert_eq!(
            hex(&okm),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
        );
    }

    #[test]
    fn hmac_vectors() {
        // python3: hmac.new(b"key", b"The quick brown fox jumps over the lazy dog", H).hexdigest()
        let d = b"The quick brown fox jumps over the lazy dog";
        assert_eq!(
            hex(&hmac(HashAlg::Sha256, b"key", d)),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
        assert_eq!(
            hex(&hmac(HashAlg::Sha1, b"key", d)),
            "de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9"
        );
        assert_eq!(
            hex(&hmac(HashAlg::Sha3_256, b"key", d)),
            "8c6e0683409427f8931711b10ca92a506eb1fafa48fadd66d76126f47ac2c333"
        );
        // key longer than the SHA3-512 block (72 bytes) is hashed first
        let long = [0xaau8; 100];
        assert_eq!(hmac(HashAlg::Sha3_512, &long, d).len(), 64);
    }

    #[test]
    fn seal_open_all_types() {
        for kt in [
            KeyType::Aes256Gcm96,
            KeyType::Aes128Gcm96,
            KeyType::ChaCha20Poly1305,
        ] {
            let p = KeyPolicy::new("k", kt, false, 0);
            let key = p.enc_key(1, b"").unwrap();
            let mut cipher = Cipher::new(&p, 3);
            let mut c = Zeroizing::new(Vec::new());
            cipher
                .key(1, b"")
                .unwrap()
                .seal(b"ad", b"hello", &mut c)
                .unwrap();
            assert_eq!(c.len(), 12 + 5 + 16);
            assert_eq!(&open(kt, &key, b"ad", &c).unwrap()[..], b"hello");
            assert_eq!(open(kt, &key, b"", &c).unwrap_err(), kt.auth_error());
            assert_eq!(
                open(kt, &key, b"ad", &c[..3]).unwrap_err(),
                "invalid ciphertext length"
            );
            assert_eq!(
                open(kt, &key, b"ad", &c[..20]).unwrap_err(),
                kt.auth_error()
            );
            // the same through the cipher, in place
            let mut c2 = Zeroizing::new(Vec::new());
            cipher
                .key(1, b"")
                .unwrap()
                .seal(b"ad", b"hello", &mut c2)
                .unwrap();
            assert_ne!(c[..12], c2[..12], "fresh nonce per item");
            let n = cipher
                .key(1, b"")
                .unwrap()
                .open_in_place(b"ad", &mut c2)
                .unwrap();
            assert_eq!(&c2[12..12 + n], b"hello");
            let mut short = c[..3].to_vec();
            assert_eq!(
                cipher.key(1, b"").unwrap().open_in_place(b"ad", &mut short),
                Err("invalid ciphertext length".to_string())
            );
            let mut no_tag = c[..20].to_vec();
            assert_eq!(
                cipher
                    .key(1, b"")
                    .unwrap()
                    .open_in_place(b"ad", &mut no_tag),
                Err(kt.auth_error().to_string())
            );
            assert_eq!(
                cipher.key(2, b"").err(),
                Some("no such key version".to_string())
            );
        }
    }

    #[test]
    fn cipher_rekeys_per_version_and_context() {
        let mut p = KeyPolicy::new("k", KeyType::Aes256Gcm96, true, 0);
        p.rotate();
        let mut cipher = Cipher::new(&p, 10);
        let mut out = Zeroizing::new(Vec::new());
        for (ver, ctx) in [(1, &b"a"[..]), (1, b"a"), (2, b"a"), (2, b"b"), (1, b"a")] {
            cipher
                .key(ver, ctx)
                .unwrap()
                .seal(b"", b"pt", &mut out)
                .unwrap();
            let k = p.enc_key(ver, ctx).unwrap();
            assert_eq!(&open(p.key_type, &k, b"", &out).unwrap()[..], b"pt");
        }
        assert_eq!(cipher.key(1, b"").err().as_deref(), Some(MISSING_CONTEXT));
        assert_eq!(
            cipher.key(3, b"a").err().as_deref(),
            Some("invalid key version")
        );
        // a failed lookup leaves no stale key behind
        assert!(cipher.key(1, b"a").is_ok());
    }

    #[test]
    fn nonce_pool_draws_in_chunks() {
        let mut pool = NoncePool::new(200);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            assert!(seen.insert(pool.next()));
        }
        // more than announced still works
        assert!(seen.insert(pool.next()));
    }

    #[test]
    fn hmac_sha3_224_and_digests() {
        let d = b"The quick brown fox jumps over the lazy dog";
        // python3: hmac.new(b"key", d, hashlib.sha3_224).hexdigest()
        assert_eq!(
            hex(&hmac(HashAlg::Sha3_224, b"key", d)),
            "ff6fa8447ce10fb1efdccfe62caf8b640fe46c4fb1007912bf85100f"
        );
        assert_eq!(
            hex(&hmac(HashAlg::Sha3_384, b"key", d)),
            "aa739ad9fcdf9be4a04f06680ade7a1bd1e01a0af64accb04366234cf9f6934a0f8589772f857681fcde8acc256091a2"
        );
        // keys longer than the block (SHA3-224: 144 bytes) are hashed first
        assert_eq!(
            hex(&hmac(HashAlg::Sha3_224, &[0xaa; 200], d)),
            "ad85b16eaa28b23044568444672ee71e981e65cca215af4440a13a48"
        );
        assert_eq!(
            hex(&hmac(HashAlg::Sha3_512, &[0xaa; 100], d)),
            "f6163dff6980a46e7119a3dc69a72e418f166a4551344db2cf37a4551e9743714bc6a5d4ac7e322365ec5c53e0f1f3d7c2a3fb56c0f80a03cacf1c2bcd019c35"
        );
        // python3: hashlib.sha3_224(b"hello openbao").hexdigest()
        assert_eq!(
            hex(&digest(HashAlg::Sha3_224, b"hello openbao")),
            "f86574bc024aa2b3cf6047ec97d4d7fc6fcfb6e22a5f2d95582d530b"
        );
        assert_eq!(
            hex(&digest(HashAlg::Sha224, b"hello openbao")),
            "cb3cc93daf60c3a90e557ce677337a2d9258185e264164a0d06316c1"
        );
        for (alg, n) in [
            (HashAlg::Sha1, 20),
            (HashAlg::Sha256, 32),
            (HashAlg::Sha384, 48),
            (HashAlg::Sha512, 64),
            (HashAlg::Sha3_256, 32),
            (HashAlg::Sha3_384, 48),
            (HashAlg::Sha3_512, 64),
        ] {
            assert_eq!(digest(alg, b"x").len(), n);
            assert_eq!(hmac(alg, b"k", b"x").len(), n);
        }
    }
}
