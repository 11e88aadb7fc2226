//! Batch tokens: the token is its own entry, sealed (AES-256-GCM) under a key kept inside the
//! barrier, so minting and checking one writes nothing to storage. They cannot be renewed,
//! revoked, used for cubbyholes or make children; a non-orphan one dies with its parent
//! (checked on every use).

use super::TokenEntry;
use crate::crypto::Aead;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use zeroize::Zeroizing;

pub const PREFIX: &str = "b.";
/// Associated data, so a sealed batch entry cannot be replayed as another kind of blob.
const AAD: &[u8] = b"strongroom batch token v1";

pub fn seal(key: &Aead, entry: &TokenEntry) -> Zeroizing<String> {
    let json = Zeroizing::new(serde_json::to_vec(entry).expect("entry serializes"));
    let sealed = key.seal(&json, AAD);
    Zeroizing::new(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(sealed)))
}

/// The entry a batch token carries; `None` for anything that is not one of ours.
pub fn open(key: &Aead, token: &str) -> Option<TokenEntry> {
    let body = token.strip_prefix(PREFIX)?;
    let sealed = Zeroizing::new(URL_SAFE_NO_PAD.decode(body).ok()?);
    let json = key.open(&sealed, AAD).ok()?;
    serde_json::from_slice(&json).ok()
}
