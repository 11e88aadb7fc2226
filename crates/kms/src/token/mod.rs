//! The token store. Tokens are bearer secrets: only their HMAC (keyed by a per-cluster salt
//! kept inside the barrier) is ever stored or used as a key, so neither the storage nor a
//! storage dump can yield a usable token. Accessors are indexed the same way.
//!
//! Layout under `sys/token/`: `salt`, `id/<hmac(token)>` → [`TokenEntry`],
//! `accessor/<hmac(accessor)>` → token hmac, `parent/<parent hmac>/<child hmac>` → "".

mod batch;

use crate::barrier::{BarrierError, BarrierOp, View};
use crate::cidr::Cidr;
use crate::crypto;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Vault's system default and maximum lease TTL: 768h.
pub const DEFAULT_TTL: u64 = 768 * 3600;
pub const MAX_TTL: u64 = 768 * 3600;
const TOKEN_CACHE_MAX: usize = 4096;

/// Service tokens live in storage; batch tokens carry their own sealed entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    #[default]
    Service,
    Batch,
}

impl TokenKind {
    /// A `type` / `token_type` value: service (also `default`, empty) or batch.
    pub fn parse(t: &str) -> Option<TokenKind> {
        match t {
            "" | "default" | "service" | "default-service" => Some(TokenKind::Service),
            "batch" | "default-batch" => Some(TokenKind::Batch),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Service => "service",
            TokenKind::Batch => "batch",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenEntry {
    pub id_hash: String,
    pub accessor: String,
    pub policies: Vec<String>,
    pub parent_hash: Option<String>,
    pub meta: Map<String, Value>,
    pub display_name: String,
    pub num_uses: i64,
    pub creation_time: i64,
    /// TTL at creation (seconds, 0 = none).
    pub creation_ttl: u64,
    pub explicit_max_ttl: u64,
    pub period: u64,
    /// Unix seconds; `None` never expires.
    pub expire_time: Option<i64>,
    pub last_renewal: Option<i64>,
    pub renewable: bool,
    pub path: String,
    pub entity_id: String,
    /// Networks the token may be used from (empty: anywhere).
    #[serde(default)]
    pub bound_cidrs: Vec<Cidr>,
    #[serde(default)]
    pub kind: TokenKind,
}

impl TokenEntry {
    pub fn is_root(&self) -> bool {
        self.policies.iter().any(|p| p == "root")
    }
    pub fn orphan(&self) -> bool {
        self.parent_hash.is_none()
    }
    pub fn ttl_remaining(&self, now: i64) -> u64 {
        self.expire_time
            .map(|e| (e - now).max(0) as u64)
            .unwrap_or(0)
    }

    /// The `data` of lookup / lookup-self / lookup-accessor.
    pub fn lookup_data(&self, id: Option<&str>, now: i64) -> Value {
        let rfc = |t: i64| {
            chrono::DateTime::from_timestamp(t, 0)
                .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
                .unwrap_or_default()
        };
        let mut m = json!({
            "accessor": self.accessor,
            "creation_time": self.creation_time,
            "creation_ttl": self.creation_ttl,
            "display_name": self.display_name,
            "entity_id": self.entity_id,
            "expire_time": self.expire_time.map(rfc),
            "explicit_max_ttl": self.explicit_max_ttl,
            "id": id.unwrap_or(""),
            "meta": if self.meta.is_empty() { Value::Null } else { Value::Object(self.meta.clone()) },
            "num_uses": self.num_uses,
            "orphan": self.orphan(),
            "path": self.path,
            "policies": self.policies,
            "ttl": self.ttl_remaining(now),
            "type": self.kind.as_str(),
        });
        let o = m.as_object_mut().expect("object");
        if self.expire_time.is_some() {
            o.insert("issue_time".into(), json!(rfc(self.creation_time)));
            o.insert("renewable".into(), json!(self.renewable));
        }
        if let Some(t) = self.last_renewal {
            o.insert("last_renewal_time".into(), json!(t));
            o.insert("last_renewal".into(), json!(rfc(t)));
        }
        if self.period > 0 {
            o.insert("period".into(), json!(self.period));
        }
        if !self.bound_cidrs.is_empty() {
            let shown: Vec<String> = self.bound_cidrs.iter().map(|c| c.to_string()).collect();
            o.insert("bound_cidrs".into(), json!(shown));
        }
        m
    }

    /// The `auth` block returned when the token is created.
    pub fn auth_block(&self, token: &str, now: i64) -> Value {
        json!({
            "client_token": token,
            "accessor": self.accessor,
            "policies": self.policies,
            "token_policies": self.policies,
            "metadata": if self.meta.is_empty() { Value::Null } else { Value::Object(self.meta.clone()) },
            "lease_duration": self.ttl_remaining(now),
            "renewable": self.renewable,
            "entity_id": self.entity_id,
            "token_type": self.kind.as_str(),
            "orphan": self.orphan(),
            "mfa_requirement": null,
            "num_uses": self.num_uses,
        })
    }
}

/// Everything needed to mint a token.
#[derive(Clone, Debug, Default)]
pub struct NewToken {
    /// Caller-chosen id (`-id`); otherwise random.
    pub id: Option<Zeroizing<String>>,
    pub policies: Vec<String>,
    pub no_default_policy: bool,
    pub parent_hash: Option<String>,
    pub meta: Map<String, Value>,
    pub display_name: String,
    pub num_uses: i64,
    pub ttl: u64,
    pub explicit_max_ttl: u64,
    pub period: u64,
    pub renewable: bool,
    pub path: String,
    pub entity_id: String,
    pub bound_cidrs: Vec<Cidr>,
    pub kind: TokenKind,
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Policy names as a token carries them: trimmed, lower-cased, no empties, no duplicates
/// (so `Root` is `root` and cannot slip past a check for it).
pub fn sanitize_policies(names: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = names
        .into_iter()
        .map(|n| n.trim().to_lowercase())
        .filter(|n| !n.is_empty())
        .collect();
    out.sort();
    out.dedup();
    out
}

const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn random_b62(n: usize) -> Zeroizing<String> {
    let mut s = Zeroizing::new(String::with_capacity(n));
    while s.len() < n {
        let bytes = crypto::random_vec(n * 2);
        for b in bytes.iter() {
            // rejection sampling keeps the alphabet uniform
            if (*b as usize) < 62 * 4 && s.len() < n {
                s.push(B62[(*b as usize) % 62] as char);
            }
        }
    }
    s
}

pub struct TokenStore {
    view: View,
    salt: Zeroizing<Vec<u8>>,
    cache: RwLock<HashMap<String, Arc<TokenEntry>>>,
    /// Serializes the read-modify-write of use counts, so `num_uses` is exact under
    /// concurrent requests.
    uses: parking_lot::Mutex<()>,
    /// Revoked since the core last collected them (see [`Self::take_revoked`]).
    revoked: parking_lot::Mutex<Vec<String>>,
    /// Seals batch tokens (kept inside the barrier as `batch-key`).
    batch_key: crypto::Aead,
}

/// `num_uses` of a token whose last use is being spent: no further request may use it.
const USES_EXHAUSTED: i64 = -1;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Barrier(#[from] BarrierError),
    #[error("{0}")]
    Invalid(String),
}

impl TokenStore {
    /// Open the store, creating the salt on first use.
    pub fn open(view: View) -> Result<Self, BarrierError> {
        let salt = Self::secret(&view, "salt")?;
        let batch_key = crypto::Aead::new(&Self::secret(&view, "batch-key")?)
            .expect("a 32-byte key is a valid AES-256 key");
        Ok(Self {
            view,
            salt,
            cache: RwLock::new(HashMap::new()),
            uses: parking_lot::Mutex::new(()),
            revoked: parking_lot::Mutex::new(Vec::new()),
            batch_key,
        })
    }

    /// A random 32-byte secret stored under `key`, made on first use.
    fn secret(view: &View, key: &str) -> Result<Zeroizing<Vec<u8>>, BarrierError> {
        if let Some(s) = view.get(key)? {
            return Ok(s);
        }
        let s = crypto::random_vec(32);
        view.put(key, &s)?;
        Ok(s)
    }

    /// Bounded: a storm of token creations must not grow memory without limit. When full,
    /// the cache is simply emptied; hot tokens come back on their next use.
    fn cache_insert(&self, e: Arc<TokenEntry>) {
        let mut c = self.cache.write();
        if c.len() >= TOKEN_CACHE_MAX {
            c.clear();
        }
        c.insert(e.id_hash.clone(), e);
    }

    /// Stored (not necessarily unexpired) tokens.
    pub fn count(&self) -> Result<u64, BarrierError> {
        Ok(self.view.list("id/")?.len() as u64)
    }

    pub fn hash(&self, token: &str) -> String {
        hex::encode(crypto::hmac_sha256(&self.salt, token.as_bytes()))
    }

    fn accessor_key(&self, accessor: &str) -> String {
        format!("accessor/{}", self.hash(&format!("accessor:{accessor}")))
    }

    /// Mint a token. Returns the secret token and its stored entry.
    pub fn create(
        &self,
        spec: NewToken,
    ) -> Result<(Zeroizing<String>, Arc<TokenEntry>), TokenError> {
        let token = match spec.id {
            Some(id) => {
                if id.is_empty() || id.contains('.') && id.len() < 3 {
                    return Err(TokenError::Invalid("invalid token id".into()));
                }
                if self.view.get(&format!("id/{}", self.hash(&id)))?.is_some() {
                    return Err(TokenError::Invalid(
                        "cannot create a token with a duplicate ID".into(),
                    ));
                }
                id
            }
            None => Zeroizing::new(format!("s.{}", &*random_b62(24))),
        };
        let batch = spec.kind == TokenKind::Batch;
        let accessor = if batch {
            String::new()
        } else {
            random_b62(24).to_string()
        };
        let mut policies = sanitize_policies(spec.policies.clone());
        if !spec.no_default_policy && !policies.iter().any(|p| p == "root") {
            policies.push("default".into());
        }
        policies.sort();
        policies.dedup();
        let now = now();
        let is_root = policies.iter().any(|p| p == "root");
        let mut ttl = if spec.period > 0 {
            spec.period
        } else {
            spec.ttl
        };
        if ttl == 0 && !is_root {
            ttl = DEFAULT_TTL;
        }
        if spec.explicit_max_ttl > 0 && (ttl == 0 || ttl > spec.explicit_max_ttl) {
            ttl = spec.explicit_max_ttl;
        }
        if spec.period == 0 && ttl > MAX_TTL {
            ttl = MAX_TTL;
        }
        let entry = TokenEntry {
            id_hash: self.hash(&token),
            accessor: accessor.clone(),
            policies,
            parent_hash: spec.parent_hash.clone(),
            meta: spec.meta,
            display_name: spec.display_name,
            num_uses: spec.num_uses,
            creation_time: now,
            creation_ttl: ttl,
            explicit_max_ttl: spec.explicit_max_ttl,
            period: spec.period,
            expire_time: (ttl > 0).then_some(now + ttl as i64),
            last_renewal: None,
            renewable: spec.renewable && ttl > 0,
            path: spec.path,
            entity_id: spec.entity_id,
            bound_cidrs: spec.bound_cidrs,
            kind: spec.kind,
        };
        if batch {
            let mut entry = TokenEntry {
                renewable: false,
                id_hash: String::new(),
                ..entry
            };
            let token = batch::seal(&self.batch_key, &entry);
            entry.id_hash = self.hash(&token);
            return Ok((token, Arc::new(entry)));
        }
        let mut ops = vec![
            BarrierOp::Put(
                format!("id/{}", entry.id_hash),
                serde_json::to_vec(&entry).expect("entry serializes"),
            ),
            BarrierOp::Put(
                self.accessor_key(&accessor),
                entry.id_hash.clone().into_bytes(),
            ),
        ];
        if let Some(p) = &spec.parent_hash {
            ops.push(BarrierOp::Put(
                format!("parent/{p}/{}", entry.id_hash),
                vec![],
            ));
        }
        self.view.commit(ops)?;
        let entry = Arc::new(entry);
        self.cache_insert(entry.clone());
        Ok((token, entry))
    }

    fn by_hash(&self, hash: &str) -> Result<Option<Arc<TokenEntry>>, BarrierError> {
        if let Some(e) = self.cache.read().get(hash) {
            return Ok(Some(e.clone()));
        }
        let Some(e) = self.view.get_json::<TokenEntry>(&format!("id/{hash}"))? else {
            return Ok(None);
        };
        let e = Arc::new(e);
        self.cache_insert(e.clone());
        Ok(Some(e))
    }

    /// A valid (unexpired, unrevoked, uses left, every ancestor valid, at any depth) token's
    /// entry by hash.
    pub fn valid_by_hash(&self, hash: &str) -> Result<Option<Arc<TokenEntry>>, BarrierError> {
        let now = now();
        let Some(first) = self.by_hash(hash)? else {
            return Ok(None);
        };
        let mut cur = first.clone();
        let mut seen = std::collections::HashSet::new();
        loop {
            if cur.expire_time.is_some_and(|t| t <= now) {
                // lazily remove the expired token and everything below it
                self.revoke_tree(&cur.id_hash)?;
                return Ok(None);
            }
            if cur.num_uses == USES_EXHAUSTED {
                return Ok(None);
            }
            let Some(p) = cur.parent_hash.as_deref() else {
                return Ok(Some(first));
            };
            // only a token with a parent can be on a cycle: a root token allocates nothing
            if !seen.insert(cur.id_hash.clone()) {
                return Ok(None);
            }
            let parent = match self.by_hash(p)? {
                Some(parent) => parent,
                None => return Ok(None),
            };
            cur = parent;
        }
    }

    pub fn lookup(&self, token: &str) -> Result<Option<Arc<TokenEntry>>, BarrierError> {
        if token.is_empty() {
            return Ok(None);
        }
        if token.starts_with(batch::PREFIX) {
            return self.lookup_batch(token);
        }
        self.valid_by_hash(&self.hash(token))
    }

    /// A batch token is valid while unexpired and, unless an orphan, while its parent is.
    fn lookup_batch(&self, token: &str) -> Result<Option<Arc<TokenEntry>>, BarrierError> {
        let Some(mut e) = batch::open(&self.batch_key, token) else {
            return Ok(None);
        };
        if e.expire_time.is_some_and(|t| t <= now()) {
            return Ok(None);
        }
        if let Some(p) = &e.parent_hash {
            if self.valid_by_hash(p)?.is_none() {
                return Ok(None);
            }
        }
        e.id_hash = self.hash(token);
        Ok(Some(Arc::new(e)))
    }

    pub fn lookup_accessor(&self, accessor: &str) -> Result<Option<Arc<TokenEntry>>, BarrierError> {
        let Some(h) = self.view.get(&self.accessor_key(accessor))? else {
            return Ok(None);
        };
        let h = String::from_utf8_lossy(&h).to_string();
        self.valid_by_hash(&h)
    }

    fn store(&self, e: TokenEntry) -> Result<Arc<TokenEntry>, BarrierError> {
        self.view.put_json(&format!("id/{}", e.id_hash), &e)?;
        let e = Arc::new(e);
        self.cache_insert(e.clone());
        Ok(e)
    }

    /// Spend one use of a limited-use token before its request runs. Returns the entry the
    /// request runs with and whether this was its last use (the caller revokes it after the
    /// request); `None` when no use is left.
    pub fn spend_use(
        &self,
        e: &Arc<TokenEntry>,
    ) -> Result<Option<(Arc<TokenEntry>, bool)>, BarrierError> {
        if e.num_uses == 0 {
            return Ok(Some((e.clone(), false)));
        }
        let _serial = self.uses.lock();
        let Some(cur) = self.by_hash(&e.id_hash)? else {
            return Ok(None);
        };
        if cur.num_uses <= 0 {
            return Ok(None);
        }
        let last = cur.num_uses == 1;
        let mut n = (*cur).clone();
        n.num_uses = if last {
            USES_EXHAUSTED
        } else {
            cur.num_uses - 1
        };
        self.store(n)?;
        Ok(Some((cur, last)))
    }

    fn remove_one(&self, e: &TokenEntry, ops: &mut Vec<BarrierOp>) {
        ops.push(BarrierOp::Delete(format!("id/{}", e.id_hash)));
        ops.push(BarrierOp::Delete(self.accessor_key(&e.accessor)));
        if let Some(p) = &e.parent_hash {
            ops.push(BarrierOp::Delete(format!("parent/{p}/{}", e.id_hash)));
        }
    }

    /// Revoke a token and all its descendants, at any depth. Their hashes are kept for
    /// [`Self::take_revoked`], so what lives per token (cubbyholes) dies with them.
    pub fn revoke_tree(&self, hash: &str) -> Result<(), BarrierError> {
        let mut ops = Vec::new();
        let mut stack = vec![hash.to_string()];
        let mut gone = Vec::new();
        while let Some(h) = stack.pop() {
            for child in self.view.list(&format!("parent/{h}/"))? {
                stack.push(child.clone());
                ops.push(BarrierOp::Delete(format!("parent/{h}/{child}")));
            }
            if let Some(e) = self.by_hash(&h)? {
                self.remove_one(&e, &mut ops);
            }
            gone.push(h);
        }
        self.view.commit(ops)?;
        let mut c = self.cache.write();
        for h in &gone {
            c.remove(h);
        }
        self.revoked.lock().extend(gone);
        Ok(())
    }

    /// Hashes of tokens revoked since the last call.
    pub fn take_revoked(&self) -> Vec<String> {
        std::mem::take(&mut *self.revoked.lock())
    }

    /// Revoke only this token; its children become orphans.
    pub fn revoke_orphan(&self, hash: &str) -> Result<(), BarrierError> {
        let mut ops = Vec::new();
        for child in self.view.list(&format!("parent/{hash}/"))? {
            ops.push(BarrierOp::Delete(format!("parent/{hash}/{child}")));
            if let Some(c) = self.by_hash(&child)? {
                let mut c = (*c).clone();
                c.parent_hash = None;
                ops.push(BarrierOp::Put(
                    format!("id/{}", c.id_hash),
                    serde_json::to_vec(&c).expect("entry serializes"),
                ));
                self.cache.write().remove(&c.id_hash);
            }
        }
        if let Some(e) = self.by_hash(hash)? {
            self.remove_one(&e, &mut ops);
        }
        self.view.commit(ops)?;
        self.cache.write().remove(hash);
        self.revoked.lock().push(hash.to_string());
        Ok(())
    }

    /// Extend a token's lease. `increment` 0 means "its original TTL".
    pub fn renew(
        &self,
        e: &TokenEntry,
        increment: u64,
    ) -> Result<(Arc<TokenEntry>, Vec<String>), TokenError> {
        if e.expire_time.is_none() {
            return Err(TokenError::Invalid("invalid lease ID".into()));
        }
        if !e.renewable {
            return Err(TokenError::Invalid("lease is not renewable".into()));
        }
        let now = now();
        let mut warnings = vec![];
        let mut ttl = if e.period > 0 {
            e.period
        } else if increment > 0 {
            increment
        } else {
            e.creation_ttl
        };
        let max_end = match (e.explicit_max_ttl, e.period) {
            (m, _) if m > 0 => Some(e.creation_time + m as i64),
            (_, 0) => Some(e.creation_time + MAX_TTL as i64),
            _ => None,
        };
        if let Some(max_end) = max_end {
            if now + ttl as i64 > max_end {
                let capped = (max_end - now).max(0) as u64;
                warnings.push(format!(
                    "TTL of \"{}\" exceeded the effective max_ttl of \"{}\"; TTL value is capped accordingly",
                    crate::duration::format_short(ttl),
                    crate::duration::format_short(capped)
                ));
                ttl = capped;
            }
        }
        let mut n = e.clone();
        n.expire_time = Some(now + ttl as i64);
        n.last_renewal = Some(now);
        Ok((self.store(n)?, warnings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::barrier::Barrier;
    use crate::storage::InmemStorage;

    fn store() -> TokenStore {
        let b = Arc::new(Barrier::new(Arc::new(InmemStorage::new())));
        let k = crypto::random_bytes::<32>();
        b.initialize(&k[..], vec![]).unwrap();
        b.unseal(&k[..]).unwrap();
        TokenStore::open(View::new(b, "sys/token/")).unwrap()
    }

    fn spec(policies: &[&str]) -> NewToken {
        NewToken {
            policies: policies.iter().map(|s| s.to_string()).collect(),
            renewable: true,
            path: "auth/token/create".into(),
            ..Default::default()
        }
    }

    #[test]
    fn create_lookup_and_cascade_revoke() {
        let s = store();
        let (parent, pe) = s.create(spec(&["ocs"])).unwrap();
        assert!(parent.starts_with("s.") && parent.len() == 26);
        assert_eq!(pe.policies, vec!["default", "ocs"]);
        assert_eq!(pe.creation_ttl, DEFAULT_TTL);
        let mut c = spec(&["x"]);
        c.parent_hash = Some(pe.id_hash.clone());
        let (child, ce) = s.create(c).unwrap();
        assert!(s.lookup(&child).unwrap().is_some());
        assert!(s.lookup_accessor(&ce.accessor).unwrap().is_some());
        s.revoke_tree(&pe.id_hash).unwrap();
        assert!(s.lookup(&parent).unwrap().is_none());
        assert!(s.lookup(&child).unwrap().is_none());
        assert!(s.lookup_accessor(&ce.accessor).unwrap().is_none());
        assert!(s.lookup("bogus").unwrap().is_none());
    }

    #[test]
    fn revoke_orphan_keeps_children() {
        let s = store();
        let (_p, pe) = s.create(spec(&["a"])).unwrap();
        let mut c = spec(&["b"]);
        c.parent_hash = Some(pe.id_hash.clone());
        let (child, _) = s.create(c).unwrap();
        s.revoke_orphan(&pe.id_hash).unwrap();
        let ce = s.lookup(&child).unwrap().unwrap();
        assert!(ce.orphan());
    }

    #[test]
    fn expired_tokens_and_their_children_are_invalid() {
        let s = store();
        let (p, pe) = s.create(spec(&["a"])).unwrap();
        let mut c = spec(&["b"]);
        c.parent_hash = Some(pe.id_hash.clone());
        let (child, _) = s.create(c).unwrap();
        let mut expired = (*pe).clone();
        expired.expire_time = Some(now() - 1);
        s.store(expired).unwrap();
        assert!(s.lookup(&child).unwrap().is_none());
        assert!(s.lookup(&p).unwrap().is_none());
    }

    #[test]
    fn use_limits_and_renew_caps() {
        let s = store();
        let mut sp = spec(&["a"]);
        sp.num_uses = 2;
        sp.ttl = 600;
        sp.explicit_max_ttl = 900;
        let (t, e) = s.create(sp).unwrap();
        let (r, w) = s.renew(&e, 3600).unwrap();
        assert_eq!(
            w.len(),
            1,
            "renewal past explicit max is capped with a warning"
        );
        assert!(r.ttl_remaining(now()) <= 900);
        let (_, last) = s
            .spend_use(&s.lookup(&t).unwrap().unwrap())
            .unwrap()
            .unwrap();
        assert!(!last);
        assert_eq!(s.lookup(&t).unwrap().unwrap().num_uses, 1);
        let (_, last) = s
            .spend_use(&s.lookup(&t).unwrap().unwrap())
            .unwrap()
            .unwrap();
        assert!(last, "the second use is the last");
        assert!(
            s.lookup(&t).unwrap().is_none(),
            "no use left: invalid at once"
        );
        let (_, root) = s.create(spec(&["root"])).unwrap();
        assert!(root.expire_time.is_none());
        assert_eq!(
            s.renew(&root, 0).unwrap_err().to_string(),
            "invalid lease ID"
        );
    }

    #[test]
    fn use_limits_are_exact_under_concurrency() {
        let s = Arc::new(store());
        let mut sp = spec(&["a"]);
        sp.num_uses = 2;
        let (t, _) = s.create(sp).unwrap();
        let t = Arc::new(t);
        let granted: usize = (0..16)
            .map(|_| {
                let (s, t) = (s.clone(), t.clone());
                std::thread::spawn(move || {
                    s.lookup(&t)
                        .unwrap()
                        .and_then(|e| s.spend_use(&e).unwrap())
                        .is_some() as usize
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(granted, 2, "num_uses=2 grants exactly two requests");
    }

    #[test]
    fn expiry_reaches_descendants_at_any_depth() {
        let s = store();
        let (_, top) = s.create(spec(&["a"])).unwrap();
        let mut parent = top.clone();
        let mut leaf = None;
        for _ in 0..100 {
            let mut c = spec(&["a"]);
            c.parent_hash = Some(parent.id_hash.clone());
            let (t, e) = s.create(c).unwrap();
            parent = e;
            leaf = Some(t);
        }
        let leaf = leaf.unwrap();
        assert!(s.lookup(&leaf).unwrap().is_some());
        let mut expired = (*top).clone();
        expired.expire_time = Some(now() - 1);
        s.store(expired).unwrap();
        assert!(
            s.lookup(&leaf).unwrap().is_none(),
            "a token 100 levels below an expired one is invalid"
        );
        assert_eq!(s.take_revoked().len(), 101, "the whole tree was revoked");
    }

    #[test]
    fn periodic_tokens_stop_at_explicit_max_ttl() {
        let s = store();
        let mut sp = spec(&["a"]);
        sp.period = 3600;
        sp.explicit_max_ttl = 600;
        let (_, e) = s.create(sp).unwrap();
        assert!(e.ttl_remaining(now()) <= 600);
        let mut old = (*e).clone();
        old.creation_time -= 500;
        let (r, w) = s.renew(&old, 0).unwrap();
        assert!(r.ttl_remaining(now()) <= 100, "{}", r.ttl_remaining(now()));
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn policies_are_sanitized() {
        assert_eq!(
            sanitize_policies(vec![" Root".into(), "b".into(), "B".into(), "".into()]),
            vec!["b", "root"]
        );
    }

    #[test]
    fn a_token_storm_does_not_grow_the_cache_without_bound() {
        let s = store();
        for _ in 0..(TOKEN_CACHE_MAX + 100) {
            s.create(spec(&["p"])).unwrap();
        }
        assert!(s.cache.read().len() <= TOKEN_CACHE_MAX);
    }
}
