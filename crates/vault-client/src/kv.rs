//! KV secrets engine, versions 1 and 2, and the mount preflight the `kv` CLI uses.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::client::{Client, Method};
use crate::error::{Error, Result};
use crate::secret::{zeroize_value, SecretMap};

/// KV engine version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KvVersion {
    V1,
    V2,
}

impl KvVersion {
    /// The engine's `version` option: 1 or 2.
    pub fn number(self) -> u8 {
        match self {
            KvVersion::V1 => 1,
            KvVersion::V2 => 2,
        }
    }

    /// The version numbered `n` (1 or 2).
    pub fn from_number(n: u8) -> Option<KvVersion> {
        match n {
            1 => Some(KvVersion::V1),
            2 => Some(KvVersion::V2),
            _ => None,
        }
    }
}

/// What `GET sys/internal/ui/mounts/<path>` says about the mount holding a path.
#[derive(Clone, Debug)]
pub struct MountInfo {
    /// Mount path with a trailing `/` (e.g. `ocs/`).
    pub path: String,
    /// Engine type (`kv`, `transit`, ...).
    pub mount_type: String,
    /// `options` of the mount (`{"version":"2"}` for KV v2).
    pub options: Map<String, Value>,
}

impl MountInfo {
    /// KV version of the mount (v1 unless `options.version` is `"2"`).
    pub fn kv_version(&self) -> KvVersion {
        match self.options.get("version").and_then(Value::as_str) {
            Some("2") => KvVersion::V2,
            _ => KvVersion::V1,
        }
    }
}

/// Metadata of one KV v2 version (the answer of a put, and `data.metadata` of a read).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Kv2VersionMetadata {
    #[serde(default)]
    pub created_time: String,
    #[serde(default)]
    pub custom_metadata: Option<Map<String, Value>>,
    #[serde(default)]
    pub deletion_time: String,
    #[serde(default)]
    pub destroyed: bool,
    #[serde(default)]
    pub version: u64,
}

/// A KV v2 read: the data of one version and its metadata.
#[derive(Debug)]
pub struct Kv2Secret {
    pub data: SecretMap,
    pub metadata: Kv2VersionMetadata,
}

fn join(mount: &str, prefix: &str, path: &str) -> String {
    let m = mount.trim_matches('/');
    let p = path.trim_start_matches('/');
    if prefix.is_empty() {
        format!("{m}/{p}")
    } else {
        format!("{m}/{prefix}/{p}")
    }
}

fn invalid(c: &Client, path: &str, reason: &str) -> Error {
    Error::InvalidResponse {
        url: c.url(path),
        reason: reason.to_owned(),
    }
}

impl Client {
    /// `GET sys/internal/ui/mounts/<path>`: the mount a path belongs to. `None` when the
    /// server does not know the path (404).
    pub fn mount_info(&self, path: &str) -> Result<Option<MountInfo>> {
        let api = format!("sys/internal/ui/mounts/{}", path.trim_start_matches('/'));
        let s = match self.request_secret(Method::Get, &api, &[], None) {
            Ok(Some(s)) => s,
            Ok(None) | Err(Error::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mount = s.data_str("path").unwrap_or_default().to_owned();
        if mount.is_empty() {
            return Ok(None);
        }
        let options = match s.data_get("options") {
            Some(Value::Object(o)) => o.clone(),
            _ => Map::new(),
        };
        Ok(Some(MountInfo {
            path: mount,
            mount_type: s.data_str("type").unwrap_or_default().to_owned(),
            options,
        }))
    }

    // ------------------------------------------------------------------ v1

    /// Reads a KV v1 secret; `None` if absent.
    pub fn kv1_read(&self, mount: &str, path: &str) -> Result<Option<SecretMap>> {
        Ok(self
            .read(&join(mount, "", path))?
            .and_then(|mut s| s.data.take()))
    }

    /// Writes a KV v1 secret (replaces it entirely).
    pub fn kv1_write(&self, mount: &str, path: &str, data: &Map<String, Value>) -> Result<()> {
        let mut body = Value::Object(data.clone());
        let r = self.request(Method::Put, &join(mount, "", path), &[], Some(&body));
        zeroize_value(&mut body);
        r.map(|_| ())
    }

    /// Deletes a KV v1 secret (no error if absent).
    pub fn kv1_delete(&self, mount: &str, path: &str) -> Result<()> {
        self.request(Method::Delete, &join(mount, "", path), &[], None)
            .map(|_| ())
    }

    /// Lists keys under a KV v1 folder (folders end in `/`); empty if none.
    pub fn kv1_list(&self, mount: &str, path: &str) -> Result<Vec<String>> {
        self.list_keys(&join(mount, "", path))
    }

    // ------------------------------------------------------------------ v2

    /// Reads the latest (or a given) version of a KV v2 secret. `None` if it does not exist,
    /// or that version is deleted or destroyed.
    pub fn kv2_read(
        &self,
        mount: &str,
        path: &str,
        version: Option<u64>,
    ) -> Result<Option<Kv2Secret>> {
        let api = join(mount, "data", path);
        let v = version.map(|v| v.to_string());
        let query: Vec<(&str, &str)> = v
            .as_deref()
            .map(|v| vec![("version", v)])
            .unwrap_or_default();
        let s = match self.request_secret(Method::Get, &api, &query, None) {
            Ok(Some(s)) => s,
            Ok(None) | Err(Error::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(mut outer) = s.data.clone() else {
            return Ok(None);
        };
        let metadata = match outer.get("metadata") {
            Some(m @ Value::Object(_)) => serde_json::from_value(m.clone())
                .map_err(|e| invalid(self, &api, &e.to_string()))?,
            _ => Kv2VersionMetadata::default(),
        };
        match outer.remove("data") {
            Some(Value::Object(d)) => Ok(Some(Kv2Secret {
                data: SecretMap::from(d),
                metadata,
            })),
            Some(Value::Null) | None => Ok(None),
            Some(_) => Err(invalid(self, &api, "data.data is not an object")),
        }
    }

    /// Writes a new version of a KV v2 secret, with an optional check-and-set version.
    pub fn kv2_write(
        &self,
        mount: &str,
        path: &str,
        data: &Map<String, Value>,
        cas: Option<u64>,
    ) -> Result<Kv2VersionMetadata> {
        let api = join(mount, "data", path);
        let options = match cas {
            Some(c) => json!({ "cas": c }),
            None => json!({}),
        };
        let mut body = json!({ "data": Value::Object(data.clone()), "options": options });
        let r = self.request_secret(Method::Put, &api, &[], Some(&body));
        zeroize_value(&mut body);
        let s = r?.ok_or_else(|| invalid(self, &api, "empty response"))?;
        serde_json::from_value(Value::Object(
            s.data.clone().map(|d| d.into_inner()).unwrap_or_default(),
        ))
        .map_err(|e| invalid(self, &api, &e.to_string()))
    }

    /// Merges `data` into the latest version (HTTP PATCH, JSON merge-patch).
    pub fn kv2_patch(
        &self,
        mount: &str,
        path: &str,
        data: &Map<String, Value>,
    ) -> Result<Kv2VersionMetadata> {
        let api = join(mount, "data", path);
        let mut body = json!({ "data": Value::Object(data.clone()), "options": {} });
        let r = self.patch(&api, &body);
        zeroize_value(&mut body);
        let s = r?.ok_or_else(|| invalid(self, &api, "empty response"))?;
        serde_json::from_value(Value::Object(
            s.data.clone().map(|d| d.into_inner()).unwrap_or_default(),
        ))
        .map_err(|e| invalid(self, &api, &e.to_string()))
    }

    /// Soft-deletes the latest version.
    pub fn kv2_delete(&self, mount: &str, path: &str) -> Result<()> {
        self.request(Method::Delete, &join(mount, "data", path), &[], None)
            .map(|_| ())
    }

    /// Soft-deletes the given versions.
    pub fn kv2_delete_versions(&self, mount: &str, path: &str, versions: &[u64]) -> Result<()> {
        self.kv2_versions_op(mount, "delete", path, versions)
    }

    /// Restores soft-deleted versions.
    pub fn kv2_undelete_versions(&self, mount: &str, path: &str, versions: &[u64]) -> Result<()> {
        self.kv2_versions_op(mount, "undelete", path, versions)
    }

    /// Destroys versions permanently.
    pub fn kv2_destroy_versions(&self, mount: &str, path: &str, versions: &[u64]) -> Result<()> {
        self.kv2_versions_op(mount, "destroy", path, versions)
    }

    fn kv2_versions_op(&self, mount: &str, op: &str, path: &str, versions: &[u64]) -> Result<()> {
        let body =
            json!({ "versions": versions.iter().map(|v| v.to_string()).collect::<Vec<_>>() });
        self.request(Method::Put, &join(mount, op, path), &[], Some(&body))
            .map(|_| ())
    }

    /// Lists keys under a KV v2 folder; empty if none.
    pub fn kv2_list(&self, mount: &str, path: &str) -> Result<Vec<String>> {
        self.list_keys(&join(mount, "metadata", path))
    }

    /// Reads the metadata of a KV v2 secret (all versions); `None` if absent.
    pub fn kv2_read_metadata(&self, mount: &str, path: &str) -> Result<Option<Map<String, Value>>> {
        Ok(self
            .read(&join(mount, "metadata", path))?
            .and_then(|mut s| s.data.take())
            .map(|d| d.into_inner()))
    }

    /// Deletes a KV v2 secret with all its versions and metadata.
    pub fn kv2_delete_metadata(&self, mount: &str, path: &str) -> Result<()> {
        self.request(Method::Delete, &join(mount, "metadata", path), &[], None)
            .map(|_| ())
    }
}

/// A full KV path split into its mount and the rest, with the engine version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvLocation {
    /// Mount path without slashes (`ocs`).
    pub mount: String,
    /// Path inside the mount (`vol-1`).
    pub path: String,
    pub version: KvVersion,
}

impl Client {
    /// Finds the mount and KV version of a full path (`ocs/vol-1`) with the
    /// `sys/internal/ui/mounts` preflight, like `vault kv`. A server without the preflight
    /// (404) is taken as KV v1 with the first segment as the mount.
    pub fn kv_locate(&self, full_path: &str) -> Result<KvLocation> {
        let full = full_path.trim_matches('/');
        match self.mount_info(full)? {
            Some(m) => {
                let mount = m.path.trim_matches('/').to_owned();
                let path = full
                    .strip_prefix(mount.as_str())
                    .unwrap_or(full)
                    .trim_matches('/')
                    .to_owned();
                Ok(KvLocation {
                    mount,
                    path,
                    version: m.kv_version(),
                })
            }
            None => {
                let (mount, path) = full.split_once('/').unwrap_or((full, ""));
                Ok(KvLocation {
                    mount: mount.to_owned(),
                    path: path.to_owned(),
                    version: KvVersion::V1,
                })
            }
        }
    }

    /// Reads a KV secret at a full path, whatever the engine version; `None` if absent.
    pub fn kv_get(&self, full_path: &str) -> Result<Option<SecretMap>> {
        let l = self.kv_locate(full_path)?;
        match l.version {
            KvVersion::V1 => self.kv1_read(&l.mount, &l.path),
            KvVersion::V2 => Ok(self.kv2_read(&l.mount, &l.path, None)?.map(|s| s.data)),
        }
    }

    /// Writes a KV secret at a full path (a new version on KV v2).
    pub fn kv_put(&self, full_path: &str, data: &Map<String, Value>) -> Result<()> {
        let l = self.kv_locate(full_path)?;
        match l.version {
            KvVersion::V1 => self.kv1_write(&l.mount, &l.path, data),
            KvVersion::V2 => self.kv2_write(&l.mount, &l.path, data, None).map(|_| ()),
        }
    }

    /// Deletes a KV secret at a full path. On KV v2 this removes every version and the
    /// metadata (crypto-shred semantics), not just a soft delete of the latest version.
    pub fn kv_destroy(&self, full_path: &str) -> Result<()> {
        let l = self.kv_locate(full_path)?;
        match l.version {
            KvVersion::V1 => self.kv1_delete(&l.mount, &l.path),
            KvVersion::V2 => self.kv2_delete_metadata(&l.mount, &l.path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(join("kv2/", "data", "/app"), "kv2/data/app");
        assert_eq!(join("ocs", "", "a/b"), "ocs/a/b");
    }

    #[test]
    fn kv_version_from_options() {
        let mut m = MountInfo {
            path: "kv/".into(),
            mount_type: "kv".into(),
            options: Map::new(),
        };
        assert_eq!(m.kv_version(), KvVersion::V1);
        m.options.insert("version".into(), json!("2"));
        assert_eq!(m.kv_version(), KvVersion::V2);
        for v in [KvVersion::V1, KvVersion::V2] {
            assert_eq!(KvVersion::from_number(v.number()), Some(v));
        }
        assert_eq!(KvVersion::from_number(0), None);
        assert_eq!(KvVersion::from_number(3), None);
    }
}
