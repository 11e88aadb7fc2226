//! Named ACL policies in the barrier (`sys/policy/<name>`), with parsed policies and
//! compiled ACLs cached in memory (invalidated on every write).

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

pub struct PolicyStore {
    view: View,
    parsed: RwLock<HashMap<String, Option<Arc<Policy>>>>,
    acls: RwLock<HashMap<Vec<String>, Arc<Acl>>>,
}

fn valid_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 128 && !n.contains(['/', '\\', '*', '+', '\0'])
}

impl PolicyStore {
    pub fn open(view: View) -> Result<Self, BarrierError> {
        Ok(Self {
            view,
            parsed: RwLock::new(HashMap::new()),
            acls: RwLock::new(HashMap::new()),
        })
    }

    /// A policy by name. `default` falls back to the built-in text; `root` has no text.
    pub fn get(&self, name: &str) -> Result<Option<Arc<Policy>>, ApiError> {
        let name = name.to_lowercase();
        if let Some(p) = self.parsed.read().get(&name) {
            return Ok(p.clone());
        }
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
        self.parsed.write().insert(name, p.clone());
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
        let parsed =
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
        self.parsed.write().insert(name, Some(Arc::new(parsed)));
        self.acls.write().clear();
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
        self.parsed.write().remove(&name);
        self.acls.write().clear();
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
        if let Some(a) = self.acls.read().get(names) {
            return Ok(a.clone());
        }
        let root = names.iter().any(|n| n == "root");
        let mut ps = Vec::new();
        for n in names {
            if let Some(p) = self.get(n)? {
                ps.push(p);
            }
        }
        let acl = Arc::new(Acl::new(ps.iter().map(|p| p.as_ref()), root));
        self.acls.write().insert(names.to_vec(), acl.clone());
        Ok(acl)
    }
}
