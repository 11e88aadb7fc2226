//! The volumes a transit key protects, as the key manager sees them: the volume manager wraps
//! each volume's keyslot secret with `encrypt/<key>` under the context
//! `strongroom/v1\ncluster=..\ntenant=..\nvolume=..` and rotates it with `rewrap/<key>`. Each
//! successful wrap of such a context is recorded (never the plaintext or ciphertext: the
//! identity, the key version and when), and `volumes/<key>` (read) lists them with the state
//! that follows from the key: `current` (wrapped with the latest version), `stale` (an older
//! version still allowed to decrypt: a rewrap is due) or `undecryptable` (below
//! `min_decryption_version`: the volume cannot be opened any more).
//!
//! Records live under `volume/<key>/<sha256 of the context>` in the mount's view and are
//! removed with the key.

use super::ciphertext::go_b64_decode;
use super::keys::{now_unix, KeyPolicy};
use super::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const VOLUME_PREFIX: &str = "volume/";
const CONTEXT_MAGIC: &str = "strongroom/v1\n";
/// Base64 of the magic's first 12 bytes: other contexts are passed over without decoding.
const CONTEXT_MAGIC_B64: &str = "c3Ryb25ncm9vbS92";

/// One wrap of a volume's secret.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct VolumeRecord {
    pub cluster: String,
    pub tenant: String,
    pub volume: String,
    pub key_version: i64,
    /// Unix seconds of the first wrap seen.
    pub first_wrapped: i64,
    /// Unix seconds of the latest wrap (creation or rewrap).
    pub last_wrapped: i64,
    /// How many times the secret was wrapped or rewrapped.
    pub wraps: u64,
}

/// The identity in a volume manager's context, `None` for any other context.
fn parse_context(context: &[u8]) -> Option<(String, String, String)> {
    let text = std::str::from_utf8(context)
        .ok()?
        .strip_prefix(CONTEXT_MAGIC)?;
    let mut fields = [None, None, None];
    for line in text.lines() {
        let (k, v) = line.split_once('=')?;
        let i = ["cluster", "tenant", "volume"]
            .iter()
            .position(|n| *n == k)?;
        fields[i] = Some(v.to_string());
    }
    let [Some(c), Some(t), Some(v)] = fields else {
        return None;
    };
    Some((c, t, v))
}

fn record_key(key: &str, context: &[u8]) -> String {
    let digest = Sha256::digest(context);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{VOLUME_PREFIX}{key}/{hex}")
}

/// The state of a volume wrapped at `version` under key `p`.
fn state_of(p: &KeyPolicy, version: i64) -> &'static str {
    if version < p.min_decryption_version {
        "undecryptable"
    } else if version < p.latest_version {
        "stale"
    } else {
        "current"
    }
}

impl Transit {
    /// Record a successful wrap with a volume manager's context (base64 as sent). Other
    /// contexts are not recorded; a failed write is logged, not returned: the ciphertext is
    /// already the caller's.
    pub(super) fn note_wrap(&self, key: &str, context_b64: &str, version: i64) {
        if !context_b64.starts_with(CONTEXT_MAGIC_B64) {
            return;
        }
        let Ok(context) = go_b64_decode(context_b64) else {
            return;
        };
        let Some((cluster, tenant, volume)) = parse_context(&context) else {
            return;
        };
        let path = record_key(key, &context);
        let now = now_unix();
        let old: Option<VolumeRecord> = self.view.get_json(&path).ok().flatten();
        let rec = VolumeRecord {
            cluster,
            tenant,
            volume,
            key_version: version,
            first_wrapped: old.as_ref().map_or(now, |o| o.first_wrapped),
            last_wrapped: now,
            wraps: old.as_ref().map_or(0, |o| o.wraps) + 1,
        };
        if let Err(e) = self.view.put_json(&path, &rec) {
            tracing::warn!(key, error = %e, "transit: recording a volume wrap failed");
        }
    }

    /// `volumes/<key>` (read): the recorded volumes with their state under the key.
    pub(super) fn read_volumes(&self, name: &str) -> Result<Response, ApiError> {
        let p = self.load(name)?.ok_or_else(ApiError::not_found)?;
        let prefix = format!("{VOLUME_PREFIX}{name}/");
        let mut volumes = Vec::new();
        for id in self.view.list(&prefix)? {
            let Some(r) = self
                .view
                .get_json::<VolumeRecord>(&format!("{prefix}{id}"))?
            else {
                continue;
            };
            let mut v = serde_json::to_value(&r).map_err(|_| internal("encoding a record"))?;
            v["state"] = json!(state_of(&p, r.key_version));
            volumes.push(v);
        }
        volumes.sort_by(|a, b| a["volume"].as_str().cmp(&b["volume"].as_str()));
        let latest_rotation = p.keys.get(&p.latest_version).map(|k| k.creation_time);
        Ok(Response::data(json!({
            "key": name,
            "latest_version": p.latest_version,
            "min_decryption_version": p.min_decryption_version,
            "latest_rotation": latest_rotation,
            "volumes": volumes,
        })))
    }

    /// Forget the records of a deleted key.
    pub(super) fn forget_volumes(&self, name: &str) -> Result<(), ApiError> {
        let prefix = format!("{VOLUME_PREFIX}{name}/");
        for id in self.view.list(&prefix)? {
            self.view.delete(&format!("{prefix}{id}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn contexts_of_the_volume_manager_parse_and_others_do_not() {
        let ok = b"strongroom/v1\ncluster=c1\ntenant=alice\nvolume=db";
        assert_eq!(
            parse_context(ok),
            Some(("c1".into(), "alice".into(), "db".into()))
        );
        assert_eq!(parse_context(b"strongroom/v1\ncluster=c1\ntenant=a"), None);
        assert_eq!(parse_context(b"other context"), None);
        assert_eq!(
            parse_context(b"strongroom/v1\nx=1\ntenant=a\nvolume=v"),
            None
        );
        assert_eq!(parse_context(&[0xff, 0xfe]), None);
    }

    #[test]
    fn the_base64_prefix_is_the_magic() {
        let b64 = super::super::ciphertext::b64_encode(CONTEXT_MAGIC.as_bytes());
        assert!(b64.starts_with(CONTEXT_MAGIC_B64), "{b64}");
    }

    #[test]
    fn record_keys_differ_per_context_and_stay_under_the_key() {
        let a = record_key("k", b"strongroom/v1\ncluster=c\ntenant=t\nvolume=a");
        let b = record_key("k", b"strongroom/v1\ncluster=c\ntenant=t\nvolume=b");
        assert_ne!(a, b);
        assert!(a.starts_with("volume/k/") && a.len() == "volume/k/".len() + 64);
    }
}
