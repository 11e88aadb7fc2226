//! Named ACL policies in the barrier (`sys/policy/<name>`), with parsed policies and
//! compiled ACLs cached in memory. Every write bumps a generation and empties the caches;
//! a reader that started before a write never caches what it computed, so once a write
//! returns every token sees the new policy. Both caches are bounded.

use crate::barrier::{BarrierError, View};
use crate::policy::{self, Acl, Policy};
use crate::request::ApiError;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Serialize, Deserialize)]
struct Stored {
    name: String,
    policy: String,
    version: u64,
    modified: String,
}

/// Entries each cache may hold before it is emptied (names and name lists come from
/// tokens, which any caller can make with arbitrary policy names).
const CACHE_MAX: usize = 1024;

#[derive(Default)]
struct Caches {
    generation: u64,
    parsed: HashMap<String, Option<Arc<Policy>>>,
    acls: HashMap<Vec<String>, Arc<Acl>>,
}

impl Caches {
    fn invalidate(&mut self) {
        self.generation += 1;
        self.parsed.clear();
        self.acls.clear();
    }
}

fn bounded_insert<K: std::hash::Hash + Eq, V>(m: &mut HashMap<K, V>, k: K, v: V) {
    if m.len() >= CACHE_MAX {
        m.clear();
    }
    m.insert(k, v);
}

pub struct PolicyStore {
    view: View,
    caches: RwLock<Caches>,
}

fn valid_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 128 && !n.contains(['/', '\\', '*', '+', '\0'])
}

impl PolicyStore {
    pub fn open(view: View) -> Result<Self, BarrierError> {
        Ok(Self {
            view,
            caches: RwLock::new(Caches::default()),
        })
    }

    /// A policy by name. `default` falls back to the built-in text; `root` has no text.
    pub fn get(&self, name: &str) -> Result<Option<Arc<Policy>>, ApiError> {
        let name = name.to_lowercase();
        let generation = {
            let c = self.caches.read();
            if let Some(p) = c.parsed.get(&name) {
                return Ok(p.clone());
            }
            c.generation
        };
        let text = match self.view.get_json::<Stored>(&name)? {
            Some(s) => Some(s.policy),
            None if name == "default" => Some(policy::DEFAULT_POLICY.to_string()),
            None => None,
        };
        let p = match text {
            Some(t) => Some(Arc::new(
                policy::parse(&name, &t).map_err(|e| ApiError::internal(e.to_string()))?,
            )),
            None => None,
        };
        let mut c = self.caches.write();
        if c.generation == generation {
            bounded_insert(&mut c.parsed, name, p.clone());
        }
        Ok(p)
    }

    pub fn put(&self, name: &str, text: &str) -> Result<(), ApiError> {
        let name = name.to_lowercase();
        if !valid_name(&name) {
            return Err(ApiError::bad_request("invalid policy name"));
        }
        if name == "root" {
            return Err(ApiError::bad_request("cannot update \"root\" policy"));
        }
        policy::parse(&name, text).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let version = self
            .view
            .get_json::<Stored>(&name)?
            .map(|s| s.version + 1)
            .unwrap_or(1);
        self.view.put_json(
            &name,
            &Stored {
                name: name.clone(),
                policy: text.to_string(),
                version,
                modified: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            },
        )?;
        self.caches.write().invalidate();
        Ok(())
    }

    pub fn delete(&self, name: &str) -> Result<(), ApiError> {
        let name = name.to_lowercase();
        match name.as_str() {
            "root" => return Err(ApiError::bad_request("cannot delete \"root\" policy")),
            "default" => return Err(ApiError::bad_request("cannot delete \"default\" policy")),
            _ => {}
        }
        self.view.delete(&name)?;
        self.caches.write().invalidate();
        Ok(())
    }

    /// Names as Vault lists them: sorted, with `default` present and `root` last.
    pub fn list(&self) -> Result<Vec<String>, ApiError> {
        let mut names: Vec<String> = self.view.list("")?;
        if !names.iter().any(|n| n == "default") {
            names.push("default".into());
        }
        names.sort();
        names.push("root".into());
        Ok(names)
    }

    pub fn version(&self, name: &str) -> Result<u64, ApiError> {
        Ok(self
            .view
            .get_json::<Stored>(name)?
            .map(|s| s.version)
            .unwrap_or(0))
    }

    pub fn modified(&self, name: &str) -> Result<Option<String>, ApiError> {
        Ok(self.view.get_json::<Stored>(name)?.map(|s| s.modified))
    }

    /// The ACL for a token's policy list (missing policies are simply ignored, as in Vault).
    pub fn acl(&self, names: &[String]) -> Result<Arc<Acl>, ApiError> {
        let generation = {
            let c = self.caches.read();
            if let Some(a) = c.acls.get(names) {
                return Ok(a.clone());
            }
            c.generation
        };
        let root = names.iter().any(|n| n == "root");
        let mut ps = Vec::new();
        for n in names {
            if let Some(p) = self.get(n)? {
                ps.push(p);
            }
        }
        let acl = Arc::new(Acl::new(ps.iter().map(|p| p.as_ref()), root));
        let mut c = self.caches.write();
        if c.generation == generation {
            bounded_insert(&mut c.acls, names.to_vec(), acl.clone());
        }
        Ok(acl)
    }
}
