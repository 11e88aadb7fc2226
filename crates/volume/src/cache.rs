//! In-memory cache of unwrapped keyslot secrets, keyed by volume *and* by the fingerprint of
//! the token that unwrapped them (so another token never gets a hit), with a TTL. Entries are
//! `Zeroizing` and wiped when evicted, expired or when the cache is dropped. Never on disk.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

type Key = (String, [u8; 32]);

/// A stable, non-reversible handle of a token for cache keys (SHA-256 of it).
pub(crate) fn fingerprint(token: &strongroom_vault_client::SecretString) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.expose().as_bytes()).into()
}
type Entry = (Instant, Zeroizing<Vec<u8>>);

pub struct KeyCache {
    ttl: Duration,
    entries: Mutex<HashMap<Key, Entry>>,
}

impl KeyCache {
    pub fn new(ttl: Duration) -> Self {
        KeyCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, volume: &str, token_fp: &[u8; 32]) -> Option<Zeroizing<Vec<u8>>> {
        let mut m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        m.retain(|_, (t, _)| now.duration_since(*t) < self.ttl); // dropped values zeroize
        m.get(&(volume.to_owned(), *token_fp))
            .map(|(_, v)| Zeroizing::new(v.to_vec()))
    }

    pub fn put(&self, volume: &str, token_fp: &[u8; 32], secret: &[u8]) {
        if self.ttl.is_zero() {
            return;
        }
        let mut m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        m.insert(
            (volume.to_owned(), *token_fp),
            (Instant::now(), Zeroizing::new(secret.to_vec())),
        );
    }

    /// Forget every cached secret of `volume` (unmount, rotation, shred).
    pub fn evict(&self, volume: &str) {
        let mut m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|(v, _), _| v != volume);
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map(|m| m.len()).unwrap_or(0)
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_and_token_binding() {
        let c = KeyCache::new(Duration::from_millis(50));
        c.put("v1", &[1; 32], b"secret");
        assert_eq!(
            c.get("v1", &[1; 32]).as_deref().map(|v| v.as_slice()),
            Some(&b"secret"[..])
        );
        assert!(c.get("v1", &[2; 32]).is_none(), "another token never hits");
        std::thread::sleep(Duration::from_millis(60));
        assert!(c.get("v1", &[1; 32]).is_none(), "expired");
        assert!(c.is_empty());
        c.put("v1", &[1; 32], b"x");
        c.evict("v1");
        assert!(c.is_empty());
    }
}
