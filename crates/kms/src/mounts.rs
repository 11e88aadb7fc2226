//! The mount tables (secrets engines under `/`, auth methods under `auth/`) and the router
//! that maps a request path to the longest matching mount.

use crate::backend::{kv, transit, userpass, Backend};
use crate::barrier::View;
use crate::request::ApiError;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

pub const MOUNTS_PATH: &str = "core/mounts";
pub const AUTH_PATH: &str = "core/auth";

#[derive(Clone, Debug, Serialize, Deserialize, Default)]
pub struct MountConfig {
    #[serde(default)]
    pub default_lease_ttl: u64,
    #[serde(default)]
    pub max_lease_ttl: u64,
    #[serde(default)]
    pub force_no_cache: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MountEntry {
    /// With trailing slash, without the `auth/` prefix for auth mounts: `secret/`, `userpass/`.
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub description: String,
    pub accessor: String,
    pub uuid: String,
    #[serde(default)]
    pub config: MountConfig,
    #[serde(default)]
    pub options: Option<Map<String, Value>>,
    #[serde(default)]
    pub local: bool,
    #[serde(default)]
    pub seal_wrap: bool,
    #[serde(default)]
    pub external_entropy_access: bool,
}

impl MountEntry {
    pub fn new(path: &str, kind: &str, description: &str) -> Self {
        let short = kind.split('-').next().unwrap_or(kind);
        let rnd = crate::crypto::random_bytes::<4>();
        Self {
            path: path.to_string(),
            kind: kind.to_string(),
            description: description.to_string(),
            accessor: format!("{short}_{}", hex::encode(&rnd[..])),
            uuid: uuid::Uuid::new_v4().to_string(),
            config: MountConfig::default(),
            options: None,
            local: false,
            seal_wrap: false,
            external_entropy_access: false,
        }
    }

    pub fn kv_version(&self) -> u8 {
        match self.options.as_ref().and_then(|o| o.get("version")) {
            Some(Value::String(s)) if s == "2" => 2,
            _ => 1,
        }
    }

    /// The entry as `sys/mounts` and `sys/auth` show it.
    pub fn render(&self) -> Value {
        let mut config = json!({
            "default_lease_ttl": self.config.default_lease_ttl,
            "force_no_cache": self.config.force_no_cache,
            "max_lease_ttl": self.config.max_lease_ttl,
        });
        if self.kind == "token" {
            config["token_type"] = json!("default-service");
        }
        json!({
            "accessor": self.accessor,
            "config": config,
            "deprecation_status": if matches!(self.kind.as_str(), "kv" | "transit" | "userpass") { json!("supported") } else { Value::Null },
            "description": self.description,
            "external_entropy_access": self.external_entropy_access,
            "local": self.local,
            "options": self.options,
            "plugin_version": "",
            "running_plugin_version": format!("v{}+builtin.strongroom", env!("CARGO_PKG_VERSION")),
            "running_sha256": "",
            "seal_wrap": self.seal_wrap,
            "type": self.kind,
            "uuid": self.uuid,
        })
    }
}

#[derive(Clone)]
pub struct Mount {
    pub entry: MountEntry,
    /// Full logical prefix: `secret/`, `auth/userpass/`.
    pub prefix: String,
    pub handler: Arc<dyn Backend>,
    pub is_auth: bool,
}

pub const SECRET_TYPES: &[&str] = &["kv", "kv-v1", "kv-v2", "transit", "cubbyhole"];
pub const AUTH_TYPES: &[&str] = &["userpass", "token"];

/// Instantiate the backend for a mount entry over its storage view (the catalog of
/// mountable engines; the built-in `sys/`, `auth/token/` and `identity/` are made by the
/// core at unseal).
pub fn instantiate(entry: &MountEntry, view: View) -> Result<Arc<dyn Backend>, ApiError> {
    Ok(match entry.kind.as_str() {
        "kv" => Arc::new(kv::Kv::new(view, entry.kv_version())),
        "cubbyhole" => Arc::new(kv::Kv::cubbyhole(view)),
        "transit" => Arc::new(transit::Transit::new(view)),
        "userpass" => Arc::new(userpass::Userpass::new(view)),
        other => {
            return Err(ApiError::bad_request(format!(
                "plugin not found in the catalog: {other}"
            )))
        }
    })
}

/// Storage prefix for a mount's view.
pub fn view_prefix(entry: &MountEntry, is_auth: bool) -> String {
    if is_auth {
        format!("auth/{}/", entry.uuid)
    } else {
        format!("logical/{}/", entry.uuid)
    }
}

#[derive(Default)]
pub struct Router {
    mounts: RwLock<BTreeMap<String, Arc<Mount>>>,
}

impl Router {
    pub fn insert(&self, m: Mount) {
        self.mounts.write().insert(m.prefix.clone(), Arc::new(m));
    }

    pub fn remove(&self, prefix: &str) -> Option<Arc<Mount>> {
        self.mounts.write().remove(prefix)
    }

    pub fn get(&self, prefix: &str) -> Option<Arc<Mount>> {
        self.mounts.read().get(prefix).cloned()
    }

    /// Longest mount prefix of `path` (matching whole segments; `secret` matches `secret/`).
    pub fn route(&self, path: &str) -> Option<Arc<Mount>> {
        let mounts = self.mounts.read();
        let with_slash = format!("{path}/");
        let mut best: Option<&Arc<Mount>> = None;
        for (i, c) in with_slash.char_indices() {
            if c == '/' {
                if let Some(m) = mounts.get(&with_slash[..=i]) {
                    best = Some(m);
                }
            }
        }
        best.cloned()
    }

    pub fn all(&self) -> Vec<Arc<Mount>> {
        self.mounts.read().values().cloned().collect()
    }

    /// Whether a new mount at `prefix` would overlap an existing one.
    pub fn conflicts(&self, prefix: &str) -> Option<String> {
        self.mounts
            .read()
            .keys()
            .find(|k| k.starts_with(prefix) || prefix.starts_with(k.as_str()))
            .cloned()
    }
}
