//! Shamir seal: `sys/init`, `sys/unseal`, `sys/seal`, `sys/seal-status`, `sys/health`.
//! These answer while sealed and return raw bodies (no envelope), exactly as OpenBao does.

use crate::barrier::{BarrierError, SEAL_CONFIG_PATH};
use crate::core::Core;
use crate::crypto;
use crate::request::ApiError;
use crate::shamir;
use crate::token::NewToken;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use zeroize::Zeroizing;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SealConfig {
    #[serde(rename = "type")]
    pub kind: String,
    pub secret_shares: usize,
    pub secret_threshold: usize,
}

/// Unseal progress: the shares submitted so far (kept only in memory, zeroized on reset).
#[derive(Default)]
pub struct SealState {
    shares: Vec<Zeroizing<Vec<u8>>>,
    nonce: String,
}

impl SealState {
    fn reset(&mut self) {
        self.shares.clear();
        self.nonce.clear();
    }
}

pub const VERSION: &str = "2.7.2";

impl Core {
    pub fn seal_config(&self) -> Result<Option<SealConfig>, ApiError> {
        let raw = self
            .barrier
            .storage()
            .get(SEAL_CONFIG_PATH)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(raw.and_then(|r| serde_json::from_slice(&r).ok()))
    }

    pub fn seal_status(&self) -> Result<Value, ApiError> {
        let cfg = self.seal_config()?;
        let st = self.seal.lock();
        let sealed = self.barrier.is_sealed();
        let mut v = json!({
            "type": "shamir",
            "initialized": cfg.is_some(),
            "sealed": sealed,
            "t": cfg.as_ref().map(|c| c.secret_threshold).unwrap_or(0),
            "n": cfg.as_ref().map(|c| c.secret_shares).unwrap_or(0),
            "progress": st.shares.len(),
            "nonce": st.nonce,
            "version": VERSION,
            "commit_date": "2026-11-01T00:00:00Z",
            "migration": false,
            "recovery_seal": false,
            "storage_type": self.storage_kind(),
        });
        if let Some(u) = self.state.read().as_ref() {
            v["cluster_name"] = json!(u.cluster.name);
            v["cluster_id"] = json!(u.cluster.id);
        }
        Ok(v)
    }

    /// `PUT sys/init`.
    pub fn init(&self, body: &serde_json::Map<String, Value>) -> Result<Value, ApiError> {
        let shares = crate::fields::i64_or(body, "secret_shares", 5)?;
        let threshold = crate::fields::i64_or(body, "secret_threshold", 3)?;
        if self.seal_config()?.is_some() {
            return Err(ApiError::bad_request("Vault is already initialized"));
        }
        if !(1..=255).contains(&shares) {
            return Err(ApiError::bad_request(
                "invalid seal configuration: shares must be at least one",
            ));
        }
        if threshold < 1 || threshold > shares {
            return Err(ApiError::bad_request(
                "invalid seal configuration: threshold must be between one and the number of shares",
            ));
        }
        if threshold == 1 && shares > 1 {
            return Err(ApiError::bad_request(
                "invalid seal configuration: threshold must be greater than one for multiple shares",
            ));
        }
        let (shares, threshold) = (shares as usize, threshold as usize);
        let key = crypto::random_bytes::<32>();
        let parts: Vec<Zeroizing<Vec<u8>>> = if shares == 1 {
            vec![Zeroizing::new(key.to_vec())]
        } else {
            shamir::split(&key[..], shares, threshold)
                .map_err(|e| ApiError::bad_request(e.to_string()))?
        };
        let cfg = SealConfig {
            kind: "shamir".into(),
            secret_shares: shares,
            secret_threshold: threshold,
        };
        self.barrier
            .initialize(
                &key[..],
                serde_json::to_vec(&cfg).expect("config serializes"),
            )
            .map_err(|e| match e {
                BarrierError::AlreadyInitialized => {
                    ApiError::bad_request("Vault is already initialized")
                }
                e => ApiError::internal(e.to_string()),
            })?;
        // Open briefly to create the cluster identity, default mounts and the root token.
        self.barrier.unseal(&key[..])?;
        let root = (|| {
            self.post_unseal()?;
            let u = self.unsealed()?;
            let (tok, _) = u
                .tokens
                .create(NewToken {
                    policies: vec!["root".into()],
                    display_name: "root".into(),
                    path: "auth/token/root".into(),
                    ..Default::default()
                })
                .map_err(|e| ApiError::internal(e.to_string()))?;
            Ok::<_, ApiError>(tok)
        })();
        self.pre_seal();
        let root = root?;
        let b64 = base64::engine::general_purpose::STANDARD;
        Ok(json!({
            "keys": parts.iter().map(|p| hex::encode(&p[..])).collect::<Vec<_>>(),
            "keys_base64": parts.iter().map(|p| b64.encode(&p[..])).collect::<Vec<_>>(),
            "root_token": &*root,
        }))
    }

    /// Initialize and unseal in one step (for `-dev`) and mount kv-v2 at `secret/`; returns the
    /// root token and the unseal key.
    pub fn init_dev(&self, root_token_id: Option<&str>) -> Result<(String, String), ApiError> {
        let out = self.init(&serde_json::Map::from_iter([
            ("secret_shares".to_string(), json!(1)),
            ("secret_threshold".to_string(), json!(1)),
        ]))?;
        let key = out["keys_base64"][0]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.unseal_key(&key)?;
        let mut root = out["root_token"].as_str().unwrap_or_default().to_string();
        if let Some(id) = root_token_id {
            let u = self.unsealed()?;
            let old = u
                .tokens
                .lookup(&root)?
                .ok_or_else(ApiError::permission_denied)?;
            u.tokens
                .create(NewToken {
                    id: Some(Zeroizing::new(id.to_string())),
                    policies: vec!["root".into()],
                    display_name: "root".into(),
                    path: "auth/token/root".into(),
                    ..Default::default()
                })
                .map_err(|e| ApiError::internal(e.to_string()))?;
            u.tokens.revoke_tree(&old.id_hash)?;
            root = id.to_string();
        }
        // like `bao server -dev`: kv-v2 at secret/
        let mut data = serde_json::Map::new();
        data.insert("type".into(), json!("kv"));
        data.insert("options".into(), json!({"version": "2"}));
        self.handle(crate::core::Incoming {
            wrap_ttl: None,
            op: crate::request::Operation::Update,
            path: "sys/mounts/secret".into(),
            data,
            token: Some(Zeroizing::new(root.clone())),
            content_type: None,
            remote_addr: String::new(),
        })?;
        Ok((root, key))
    }

    fn unseal_key(&self, key_text: &str) -> Result<Value, ApiError> {
        let mut body = serde_json::Map::new();
        body.insert("key".into(), json!(key_text));
        self.unseal(&body)
    }

    /// `PUT sys/unseal`: accumulate shares; at the threshold combine and try the barrier.
    pub fn unseal(&self, body: &serde_json::Map<String, Value>) -> Result<Value, ApiError> {
        let cfg = self
            .seal_config()?
            .ok_or_else(|| ApiError::bad_request("Vault is not initialized"))?;
        if crate::fields::bool_or(body, "reset", false)? {
            self.seal.lock().reset();
            return self.seal_status();
        }
        let key_text = crate::fields::opt_str(body, "key")?.ok_or_else(|| {
            ApiError::bad_request(
                "'key' must be specified in request body as JSON, or 'reset' set to true",
            )
        })?;
        let key_text = Zeroizing::new(key_text);
        // a share is at most 33 bytes: 66 hex digits or 44 base64 characters; refuse huge
        // texts before decoding them (an unauthenticated caller chooses the size)
        if key_text.trim().len() > 128 {
            return Err(ApiError::bad_request(
                "invalid key: key is longer than maximum 33 bytes",
            ));
        }
        let key = Zeroizing::new(
            hex::decode(key_text.trim())
                .or_else(|_| base64::engine::general_purpose::STANDARD.decode(key_text.trim()))
                .map_err(|_| ApiError::bad_request("'key' must be a valid hex or base64 string"))?,
        );
        if key.len() < 16 {
            return Err(ApiError::bad_request(
                "invalid key: key is shorter than minimum 16 bytes",
            ));
        }
        if key.len() > 33 {
            return Err(ApiError::bad_request(
                "invalid key: key is longer than maximum 33 bytes",
            ));
        }
        let combined = {
            let mut st = self.seal.lock();
            if st.shares.iter().any(|s| crypto::ct_eq(s, &key)) {
                drop(st);
                return self.seal_status();
            }
            if st.shares.is_empty() {
                st.nonce = uuid::Uuid::new_v4().to_string();
            }
            st.shares.push(key);
            if st.shares.len() < cfg.secret_threshold {
                drop(st);
                return self.seal_status();
            }
            let result = if cfg.secret_threshold == 1 {
                Ok(Zeroizing::new(st.shares[0].to_vec()))
            } else {
                let parts: Vec<&[u8]> = st.shares.iter().map(|s| &s[..]).collect();
                shamir::combine(&parts)
            };
            st.reset();
            result
        };
        let unseal_key = combined.map_err(|e| {
            ApiError::bad_request(format!("unable to retrieve stored keys: invalid key: {e}"))
        })?;
        match self.barrier.unseal(&unseal_key) {
            Ok(()) => {}
            Err(BarrierError::BadUnsealKey) => {
                return Err(ApiError::bad_request(
                    "unable to retrieve stored keys: invalid key: failed to decrypt keys from storage: cipher: message authentication failed",
                ))
            }
            Err(e) => return Err(ApiError::internal(e.to_string())),
        }
        if let Some(r) = &self.options.raft {
            if let Err(e) = crate::ha::join::after_unseal(&self.ha, &self.barrier, r) {
                self.pre_seal();
                return Err(e);
            }
        }
        if let Err(e) = self.post_unseal() {
            self.pre_seal();
            return Err(e);
        }
        if let Some(r) = &self.options.raft {
            crate::ha::endpoints::unsealed(r);
        }
        tracing::info!("vault is unsealed");
        self.seal_status()
    }

    /// Seal; a raft node also gives up the leadership (see [`crate::ha::endpoints::sealed`]).
    pub fn seal_now(&self) {
        self.seal.lock().reset();
        self.pre_seal();
        if let Some(r) = &self.options.raft {
            crate::ha::endpoints::sealed(r);
        }
        tracing::info!("vault is sealed");
    }

    /// `GET sys/health` → (status code, body).
    pub fn health(&self, q: &std::collections::HashMap<String, String>) -> (u16, Value) {
        let code = |k: &str, d: u16| {
            q.get(k)
                .and_then(|v| v.parse::<u16>().ok())
                .filter(|c| (100..=999).contains(c))
                .unwrap_or(d)
        };
        let initialized = self.seal_config().ok().flatten().is_some();
        let sealed = self.barrier.is_sealed();
        let mut body = json!({
            "initialized": initialized,
            "sealed": sealed,
            "standby": sealed,
            "replication_performance_mode": if sealed { "unknown" } else { "disabled" },
            "replication_dr_mode": if sealed { "unknown" } else { "disabled" },
            "server_time_utc": chrono::Utc::now().timestamp(),
            "version": VERSION,
        });
        if let Some(u) = self.state.read().as_ref() {
            body["cluster_name"] = json!(u.cluster.name);
            body["cluster_id"] = json!(u.cluster.id);
            body["replication_performance_mode"] = json!("primary");
        }
        let standby = !sealed && self.options.raft.as_ref().is_some_and(|r| !r.is_leader());
        if standby {
            body["standby"] = json!(true);
            body["replication_performance_mode"] = json!("unknown");
            body["replication_dr_mode"] = json!("unknown");
        }
        let ok = |k: &str| {
            q.get(k)
                .is_some_and(|v| v.is_empty() || v == "true" || v == "1")
        };
        let status = if !initialized {
            code("uninitcode", 501)
        } else if sealed {
            code("sealedcode", 503)
        } else if standby && ok("standbyok") {
            200
        } else if standby {
            code("standbycode", 429)
        } else {
            code("activecode", 200)
        };
        (status, body)
    }
}

#[cfg(test)]
mod tests {
    use crate::core::{Core, CoreOptions};
    use crate::storage::InmemStorage;
    use serde_json::{json, Map, Value};
    use std::sync::Arc;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn init_unseal_threshold_and_wrong_share_resets() {
        let core = Core::new(Arc::new(InmemStorage::new()), CoreOptions::default());
        let out = core
            .init(&body(json!({"secret_shares": 5, "secret_threshold": 3})))
            .unwrap();
        let keys: Vec<String> = out["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect();
        assert_eq!(keys.len(), 5);
        assert!(keys.iter().all(|k| k.len() == 66), "33-byte shares");
        assert!(out["root_token"].as_str().unwrap().starts_with("s."));
        assert_eq!(
            core.init(&body(json!({}))).unwrap_err().errors,
            vec!["Vault is already initialized"]
        );
        // a wrong 33-byte share is accepted into progress, failure at threshold. Its x
        // coordinate (the last byte) differs from the real shares' it is combined with: a
        // duplicate one is refused as such (it was [9; 33], a 1-in-128 flake).
        let tag = |k: &str| hex::decode(k).unwrap()[32];
        let x = (1..=255u8)
            .find(|x| *x != tag(&keys[0]) && *x != tag(&keys[1]))
            .unwrap();
        let mut bogus = [9u8; 33];
        bogus[32] = x;
        let bogus = hex::encode(bogus);
        core.unseal(&body(json!({"key": keys[0]}))).unwrap();
        let s = core.unseal(&body(json!({"key": bogus}))).unwrap();
        assert_eq!(s["progress"], 2);
        let e = core.unseal(&body(json!({"key": keys[1]}))).unwrap_err();
        assert!(
            e.errors[0].contains("message authentication failed"),
            "{e:?}"
        );
        assert_eq!(core.seal_status().unwrap()["progress"], 0);
        // re-submitting the same share neither errors nor advances
        core.unseal(&body(json!({"key": keys[4]}))).unwrap();
        let s = core.unseal(&body(json!({"key": keys[4]}))).unwrap();
        assert_eq!(s["progress"], 1);
        let s = core.unseal(&body(json!({"reset": true}))).unwrap();
        assert_eq!(s["progress"], 0);
        for k in [&keys[4], &keys[2], &keys[0]] {
            core.unseal(&body(json!({"key": k}))).unwrap();
        }
        assert_eq!(core.seal_status().unwrap()["sealed"], false);
        core.seal_now();
        assert_eq!(core.seal_status().unwrap()["sealed"], true);
        let e = core.unseal(&body(json!({"key": "zz!"}))).unwrap_err();
        assert_eq!(e.errors, vec!["'key' must be a valid hex or base64 string"]);
        let e = core.unseal(&body(json!({"key": "abcd"}))).unwrap_err();
        assert_eq!(
            e.errors,
            vec!["invalid key: key is shorter than minimum 16 bytes"]
        );
    }
}
