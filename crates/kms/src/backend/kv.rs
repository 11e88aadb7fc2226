//! Key/value secrets: KV v1 (verbatim JSON at a path), KV v2 (versioned, with metadata,
//! soft delete, destroy, check-and-set and merge-patch) and the per-token cubbyhole.
//!
//! v2 storage inside the mount's view: `meta/<path>` → [`Metadata`],
//! `vdata/<path>/@<version>` → the version's data, `config` → mount-wide settings.

use super::Backend;
use crate::barrier::{BarrierOp, View};
use crate::fields::{self, Data};
use crate::request::{ApiError, Operation, Request, Response};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// KV v1 reads report the system default lease (768h), as Vault does.
const KV1_LEASE: u64 = 768 * 3600;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    V1,
    V2,
    Cubbyhole,
}

pub struct Kv {
    view: View,
    mode: Mode,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct VersionMeta {
    created_time: String,
    #[serde(default)]
    deletion_time: String,
    #[serde(default)]
    destroyed: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Metadata {
    created_time: String,
    updated_time: String,
    current_version: u64,
    oldest_version: u64,
    max_versions: u64,
    cas_required: bool,
    delete_version_after: u64,
    custom_metadata: Option<Map<String, Value>>,
    versions: BTreeMap<u64, VersionMeta>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Config {
    max_versions: u64,
    cas_required: bool,
    delete_version_after: u64,
}

/// A version lookup: the key's metadata, the version number, its data unless deleted.
type VersionRead = (Metadata, u64, Option<Map<String, Value>>);

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn clean(p: &str) -> Result<String, ApiError> {
    if p.split('/').any(|s| s == ".." || s == ".") {
        return Err(ApiError::bad_request("invalid path"));
    }
    Ok(p.to_string())
}

impl Kv {
    pub fn new(view: View, version: u8) -> Self {
        Self {
            view,
            mode: if version == 2 { Mode::V2 } else { Mode::V1 },
        }
    }

    pub fn cubbyhole(view: View) -> Self {
        Self {
            view,
            mode: Mode::Cubbyhole,
        }
    }

    /// The storage view for this request: a cubbyhole is private to the calling token.
    fn view_for(&self, req: &Request) -> Result<View, ApiError> {
        match self.mode {
            Mode::Cubbyhole => {
                let t = req.token.as_ref().ok_or_else(ApiError::permission_denied)?;
                if t.kind != crate::token::TokenKind::Service {
                    return Err(ApiError::bad_request(
                        "cubbyhole operations are only supported by 'service' type tokens",
                    ));
                }
                Ok(self.view.sub(&format!("{}/", t.id_hash)))
            }
            _ => Ok(self.view.clone()),
        }
    }

    // ------------------------------------------------------------------ v1
    fn v1(&self, req: &Request) -> Result<Response, ApiError> {
        let view = self.view_for(req)?;
        let path = clean(&req.rel)?;
        match req.op {
            Operation::Read => {
                if path.is_empty() || path.ends_with('/') {
                    return self.v1_list(&view, &path);
                }
                let v: Map<String, Value> =
                    view.get_json(&path)?.ok_or_else(ApiError::not_found)?;
                let mut r = Response::data(Value::Object(v));
                if self.mode == Mode::V1 {
                    r.lease_duration = KV1_LEASE;
                }
                Ok(r)
            }
            Operation::List => self.v1_list(&view, &path),
            Operation::Create | Operation::Update => {
                if path.is_empty() {
                    return Err(ApiError::bad_request("missing path"));
                }
                if req.data.is_empty() {
                    return Err(ApiError::bad_request("missing data fields"));
                }
                view.put_json(&path, &req.data)?;
                Ok(Response::no_content())
            }
            Operation::Delete => {
                view.delete(&path)?;
                Ok(Response::no_content())
            }
            Operation::Patch => Err(ApiError::unsupported_operation()),
        }
    }

    fn v1_list(&self, view: &View, path: &str) -> Result<Response, ApiError> {
        let prefix = if path.is_empty() || path.ends_with('/') {
            path.to_string()
        } else {
            format!("{path}/")
        };
        let keys = view.list(&prefix)?;
        if keys.is_empty() {
            return Err(ApiError::not_found());
        }
        Ok(Response::data(json!({ "keys": keys })))
    }

    // ------------------------------------------------------------------ v2
    fn config(&self) -> Result<Config, ApiError> {
        Ok(self.view.get_json("config")?.unwrap_or(Config {
            max_versions: 0,
            cas_required: false,
            delete_version_after: 0,
        }))
    }

    fn meta(&self, p: &str) -> Result<Option<Metadata>, ApiError> {
        Ok(self.view.get_json(&format!("meta/{p}"))?)
    }

    fn vkey(p: &str, v: u64) -> String {
        format!("vdata/{p}/@{v}")
    }

    fn version_meta_json(m: &Metadata, v: u64) -> Value {
        let vm = m.versions.get(&v).cloned().unwrap_or_default();
        json!({
            "created_time": vm.created_time,
            "custom_metadata": m.custom_metadata,
            "deletion_time": vm.deletion_time,
            "destroyed": vm.destroyed,
            "version": v,
        })
    }

    fn metadata_json(m: &Metadata) -> Value {
        let versions: Map<String, Value> = m
            .versions
            .iter()
            .map(|(v, vm)| {
                (
                    v.to_string(),
                    json!({"created_time": vm.created_time, "deletion_time": vm.deletion_time, "destroyed": vm.destroyed}),
                )
            })
            .collect();
        json!({
            "cas_required": m.cas_required,
            "created_time": m.created_time,
            "current_version": m.current_version,
            "custom_metadata": m.custom_metadata,
            "delete_version_after": crate::duration::format_go(m.delete_version_after),
            "max_versions": m.max_versions,
            "oldest_version": m.oldest_version,
            "updated_time": m.updated_time,
            "versions": versions,
        })
    }

    fn versions_arg(d: &Data) -> Result<Vec<u64>, ApiError> {
        let vs = fields::opt_str_list(d, "versions")?.unwrap_or_default();
        if vs.is_empty() {
            return Err(ApiError::bad_request("no version number provided"));
        }
        vs.iter()
            .map(|s| {
                s.parse::<u64>()
                    .map_err(|_| ApiError::bad_request(format!("invalid version {s:?}")))
            })
            .collect()
    }

    fn write_version(
        &self,
        p: &str,
        data: Map<String, Value>,
        cas: Option<i64>,
    ) -> Result<Response, ApiError> {
        let cfg = self.config()?;
        let mut m = self.meta(p)?.unwrap_or_default();
        let cas_required = m.cas_required || cfg.cas_required;
        match cas {
            None if cas_required => {
                return Err(ApiError::bad_request(
                    "check-and-set parameter required for this call",
                ))
            }
            Some(c) if c < 0 || c as u64 != m.current_version => {
                return Err(ApiError::bad_request(
                    "check-and-set parameter did not match the current version",
                ))
            }
            _ => {}
        }
        let t = now();
        if m.created_time.is_empty() {
            m.created_time = t.clone();
        }
        m.updated_time = t.clone();
        m.current_version += 1;
        let v = m.current_version;
        if m.oldest_version == 0 {
            m.oldest_version = v;
        }
        m.versions.insert(
            v,
            VersionMeta {
                created_time: t,
                ..Default::default()
            },
        );
        let max = if m.max_versions > 0 {
            m.max_versions
        } else if cfg.max_versions > 0 {
            cfg.max_versions
        } else {
            10
        };
        let mut ops = vec![BarrierOp::Put(
            Self::vkey(p, v),
            serde_json::to_vec(&data).expect("data serializes"),
        )];
        while m.versions.len() as u64 > max {
            let (&old, _) = m.versions.iter().next().expect("non-empty");
            m.versions.remove(&old);
            ops.push(BarrierOp::Delete(Self::vkey(p, old)));
        }
        m.oldest_version = *m.versions.keys().next().unwrap_or(&v);
        ops.push(BarrierOp::Put(
            format!("meta/{p}"),
            serde_json::to_vec(&m).expect("metadata serializes"),
        ));
        self.view.commit(ops)?;
        Ok(Response::data(Self::version_meta_json(&m, v)))
    }

    fn read_version(&self, p: &str, d: &Data) -> Result<VersionRead, ApiError> {
        let m = self.meta(p)?.ok_or_else(ApiError::not_found)?;
        let want = fields::i64_or(d, "version", 0)?;
        let v = if want <= 0 {
            m.current_version
        } else {
            want as u64
        };
        let Some(vm) = m.versions.get(&v) else {
            return Err(ApiError::not_found());
        };
        let data = if vm.destroyed || !vm.deletion_time.is_empty() {
            None
        } else {
            self.view.get_json(&Self::vkey(p, v))?
        };
        Ok((m, v, data))
    }

    fn v2(&self, req: &Request) -> Result<Response, ApiError> {
        let rel = clean(&req.rel)?;
        let (head, p) = rel.split_once('/').unwrap_or((rel.as_str(), ""));
        let d = &req.data;
        let write = matches!(req.op, Operation::Create | Operation::Update);
        match (head, req.op) {
            ("config", Operation::Read) => {
                let c = self.config()?;
                Ok(Response::data(json!({
                    "cas_required": c.cas_required,
                    "delete_version_after": crate::duration::format_go(c.delete_version_after),
                    "max_versions": c.max_versions,
                })))
            }
            ("config", _) if write => {
                let mut c = self.config()?;
                if let Some(v) = fields::opt_i64(d, "max_versions")? {
                    c.max_versions = v.max(0) as u64;
                }
                if let Some(v) = fields::opt_bool(d, "cas_required")? {
                    c.cas_required = v;
                }
                if let Some(v) = fields::opt_duration(d, "delete_version_after")? {
                    c.delete_version_after = v;
                }
                self.view.put_json("config", &c)?;
                Ok(Response::no_content())
            }
            ("data", _) if p.is_empty() || p.ends_with('/') => Err(ApiError::unsupported_path()),
            ("data", Operation::Read) => {
                let (m, v, data) = self.read_version(p, d)?;
                let body = json!({"data": data, "metadata": Self::version_meta_json(&m, v)});
                let status = if data.is_none() { 404 } else { 200 };
                Ok(Response::data(body).with_status(status))
            }
            ("data", _) if write => {
                let data = match d.get("data") {
                    Some(Value::Object(o)) => o.clone(),
                    Some(Value::Null) | None => {
                        return Err(ApiError::bad_request("no data provided"))
                    }
                    Some(_) => return Err(ApiError::bad_request("data must be a JSON object")),
                };
                let cas = match d.get("options") {
                    Some(Value::Object(o)) => fields::opt_i64(o, "cas")?,
                    _ => None,
                };
                self.write_version(p, data, cas)
            }
            ("data", Operation::Patch) => {
                let ct = req.content_type.clone().unwrap_or_default();
                if !ct.starts_with("application/merge-patch+json") {
                    return Err(ApiError::new(
                        415,
                        format!("PATCH requires Content-Type of application/merge-patch+json, provided {ct}"),
                    ));
                }
                let (m, _, current) = self.read_version(p, &Data::new())?;
                let Some(mut current) = current else {
                    return Err(ApiError::not_found());
                };
                let patch = match d.get("data") {
                    Some(Value::Object(o)) => o.clone(),
                    _ => return Err(ApiError::bad_request("no data provided")),
                };
                merge_patch(&mut current, &patch);
                let cas = match d.get("options") {
                    Some(Value::Object(o)) => fields::opt_i64(o, "cas")?,
                    _ => None,
                };
                let cas = cas.or(Some(m.current_version as i64));
                self.write_version(p, current, cas)
            }
            ("data", Operation::Delete) => {
                if let Some(mut m) = self.meta(p)? {
                    let v = m.current_version;
                    if let Some(vm) = m.versions.get_mut(&v) {
                        if vm.deletion_time.is_empty() && !vm.destroyed {
                            vm.deletion_time = now();
                        }
                    }
                    self.view.put_json(&format!("meta/{p}"), &m)?;
                }
                Ok(Response::no_content())
            }
            ("delete" | "undelete" | "destroy", _) if write && !p.is_empty() => {
                let versions = Self::versions_arg(d)?;
                let Some(mut m) = self.meta(p)? else {
                    return Ok(Response::no_content());
                };
                let mut ops = vec![];
                for v in versions {
                    if let Some(vm) = m.versions.get_mut(&v) {
                        match head {
                            "delete" if vm.deletion_time.is_empty() && !vm.destroyed => {
                                vm.deletion_time = now()
                            }
                            "undelete" if !vm.destroyed => vm.deletion_time.clear(),
                            "destroy" => {
                                vm.destroyed = true;
                                ops.push(BarrierOp::Delete(Self::vkey(p, v)));
                            }
                            _ => {}
                        }
                    }
                }
                ops.push(BarrierOp::Put(
                    format!("meta/{p}"),
                    serde_json::to_vec(&m).expect("serializes"),
                ));
                self.view.commit(ops)?;
                Ok(Response::no_content())
            }
            ("metadata", Operation::List) | ("metadata", Operation::Read)
                if p.is_empty() || p.ends_with('/') || req.op == Operation::List =>
            {
                let prefix = if p.is_empty() || p.ends_with('/') {
                    p.to_string()
                } else {
                    format!("{p}/")
                };
                let keys = self.view.list(&format!("meta/{prefix}"))?;
                if keys.is_empty() {
                    return Err(ApiError::not_found());
                }
                Ok(Response::data(json!({"keys": keys})))
            }
            ("metadata", Operation::Read) => {
                let m = self.meta(p)?.ok_or_else(ApiError::not_found)?;
                Ok(Response::data(Self::metadata_json(&m)))
            }
            ("metadata", _) if write => {
                let t = now();
                let mut m = self.meta(p)?.unwrap_or_else(|| Metadata {
                    created_time: t.clone(),
                    ..Default::default()
                });
                m.updated_time = t;
                if let Some(v) = fields::opt_i64(d, "max_versions")? {
                    m.max_versions = v.max(0) as u64;
                }
                if let Some(v) = fields::opt_bool(d, "cas_required")? {
                    m.cas_required = v;
                }
                if let Some(v) = fields::opt_duration(d, "delete_version_after")? {
                    m.delete_version_after = v;
                }
                if let Some(cm) = fields::opt_str_map(d, "custom_metadata")? {
                    m.custom_metadata = Some(cm);
                }
                self.view.put_json(&format!("meta/{p}"), &m)?;
                Ok(Response::no_content())
            }
            ("metadata", Operation::Delete) => {
                if let Some(m) = self.meta(p)? {
                    let mut ops: Vec<BarrierOp> = m
                        .versions
                        .keys()
                        .map(|v| BarrierOp::Delete(Self::vkey(p, *v)))
                        .collect();
                    ops.push(BarrierOp::Delete(format!("meta/{p}")));
                    self.view.commit(ops)?;
                }
                Ok(Response::no_content())
            }
            ("subkeys", Operation::Read) => {
                let (m, v, data) = self.read_version(p, d)?;
                let data = data.ok_or_else(ApiError::not_found)?;
                Ok(Response::data(json!({
                    "subkeys": subkeys(&Value::Object(data)),
                    "metadata": Self::version_meta_json(&m, v),
                })))
            }
            ("config" | "data" | "delete" | "undelete" | "destroy" | "metadata" | "subkeys", _) => {
                Err(ApiError::unsupported_operation())
            }
            _ => Err(ApiError::unsupported_path()),
        }
    }
}

fn merge_patch(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (k, v) in patch {
        match v {
            Value::Null => {
                target.remove(k);
            }
            Value::Object(p) => {
                let entry = target
                    .entry(k.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !entry.is_object() {
                    *entry = Value::Object(Map::new());
                }
                if let Value::Object(t) = entry {
                    merge_patch(t, p);
                }
            }
            other => {
                target.insert(k.clone(), other.clone());
            }
        }
    }
}

fn subkeys(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(o.iter().map(|(k, x)| (k.clone(), subkeys(x))).collect()),
        _ => Value::Null,
    }
}

impl Backend for Kv {
    /// A cubbyhole dies with its token.
    fn tokens_revoked(&self, hashes: &[String]) -> Result<(), ApiError> {
        if self.mode == Mode::Cubbyhole {
            for h in hashes {
                self.view.sub(&format!("{h}/")).clear()?;
            }
        }
        Ok(())
    }

    fn handle(&self, req: &Request) -> Result<Response, ApiError> {
        match self.mode {
            Mode::V2 => self.v2(req),
            _ => self.v1(req),
        }
    }

    fn exists(&self, req: &Request) -> Result<Option<bool>, ApiError> {
        let rel = clean(&req.rel)?;
        match self.mode {
            Mode::V2 => {
                let (head, p) = rel.split_once('/').unwrap_or((rel.as_str(), ""));
                match head {
                    "data" | "metadata" => Ok(Some(self.meta(p)?.is_some())),
                    "config" => Ok(Some(true)),
                    _ => Ok(None),
                }
            }
            _ => Ok(Some(self.view_for(req)?.get(&rel)?.is_some())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_follows_rfc7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}})
            .as_object()
            .unwrap()
            .clone();
        let p = json!({"a": "z", "c": {"f": null}, "n": 1})
            .as_object()
            .unwrap()
            .clone();
        merge_patch(&mut t, &p);
        assert_eq!(Value::Object(t), json!({"a": "z", "c": {"d": "e"}, "n": 1}));
    }

    #[test]
    fn subkeys_nulls_leaves() {
        assert_eq!(
            subkeys(&json!({"a": 1, "b": {"c": "x"}})),
            json!({"a": null, "b": {"c": null}})
        );
    }
}
