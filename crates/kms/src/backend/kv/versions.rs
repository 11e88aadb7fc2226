//! KV v2 storage inside the mount's view: `meta/<path>` → [`Metadata`],
//! `vdata/<path>/@<version>` → the version's data, `config` → mount-wide [`Config`].
//! Writing a version (check-and-set, max_versions pruning) and reading one live here.

use crate::barrier::{BarrierOp, View};
use crate::fields::{self, Data};
use crate::request::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Versions kept when neither the key nor the mount sets `max_versions` (OpenBao's 10).
const DEFAULT_MAX_VERSIONS: u64 = 10;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct VersionMeta {
    pub created_time: String,
    #[serde(default)]
    pub deletion_time: String,
    #[serde(default)]
    pub destroyed: bool,
}

impl VersionMeta {
    /// Neither soft-deleted nor destroyed.
    fn live(&self) -> bool {
        !self.destroyed && self.deletion_time.is_empty()
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct Metadata {
    pub created_time: String,
    pub updated_time: String,
    pub current_version: u64,
    pub oldest_version: u64,
    pub max_versions: u64,
    pub cas_required: bool,
    pub delete_version_after: u64,
    pub custom_metadata: Option<Map<String, Value>>,
    pub versions: BTreeMap<u64, VersionMeta>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct Config {
    pub max_versions: u64,
    pub cas_required: bool,
    pub delete_version_after: u64,
}

/// A version lookup: the key's metadata, the version number, its data unless deleted.
pub(super) type VersionRead = (Metadata, u64, Option<Map<String, Value>>);

pub(super) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

pub(super) fn meta_key(p: &str) -> String {
    format!("meta/{p}")
}

pub(super) fn version_key(p: &str, v: u64) -> String {
    format!("vdata/{p}/@{v}")
}

pub(super) fn config(view: &View) -> Result<Config, ApiError> {
    Ok(view.get_json("config")?.unwrap_or_default())
}

pub(super) fn metadata(view: &View, p: &str) -> Result<Option<Metadata>, ApiError> {
    Ok(view.get_json(&meta_key(p))?)
}

/// The `metadata` object of a data read or write.
pub(super) fn version_json(m: &Metadata, v: u64) -> Value {
    let vm = m.versions.get(&v).cloned().unwrap_or_default();
    json!({
        "created_time": vm.created_time,
        "custom_metadata": m.custom_metadata,
        "deletion_time": vm.deletion_time,
        "destroyed": vm.destroyed,
        "version": v,
    })
}

/// The answer of a `metadata/<path>` read.
pub(super) fn metadata_json(m: &Metadata) -> Value {
    let versions: Map<String, Value> = m
        .versions
        .iter()
        .map(|(v, vm)| {
            let j = json!({"created_time": vm.created_time, "deletion_time": vm.deletion_time, "destroyed": vm.destroyed});
            (v.to_string(), j)
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

/// Check-and-set: `cas` must name the current version when given, and is required when
/// the key or the mount says so.
fn check_cas(m: &Metadata, cfg: &Config, cas: Option<i64>) -> Result<(), ApiError> {
    match cas {
        None if m.cas_required || cfg.cas_required => Err(ApiError::bad_request(
            "check-and-set parameter required for this call",
        )),
        Some(c) if c < 0 || c as u64 != m.current_version => Err(ApiError::bad_request(
            "check-and-set parameter did not match the current version",
        )),
        _ => Ok(()),
    }
}

/// Writes a new version of `p` (one atomic commit with its metadata, pruning the oldest
/// versions beyond max_versions); returns the key's metadata and the new version.
pub(super) fn write(
    view: &View,
    p: &str,
    data: &Map<String, Value>,
    cas: Option<i64>,
) -> Result<(Metadata, u64), ApiError> {
    let cfg = config(view)?;
    let mut m = metadata(view, p)?.unwrap_or_default();
    check_cas(&m, &cfg, cas)?;
    let t = now();
    if m.created_time.is_empty() {
        m.created_time = t.clone();
    }
    m.updated_time = t.clone();
    m.current_version += 1;
    let v = m.current_version;
    m.versions.insert(
        v,
        VersionMeta {
            created_time: t,
            ..Default::default()
        },
    );
    let mut ops = vec![BarrierOp::Put(version_key(p, v), to_vec(data))];
    let max = [m.max_versions, cfg.max_versions, DEFAULT_MAX_VERSIONS]
        .into_iter()
        .find(|&n| n > 0)
        .unwrap_or(DEFAULT_MAX_VERSIONS);
    while m.versions.len() as u64 > max {
        let Some((old, _)) = m.versions.pop_first() else {
            break;
        };
        ops.push(BarrierOp::Delete(version_key(p, old)));
    }
    m.oldest_version = m.versions.keys().next().copied().unwrap_or(v);
    ops.push(BarrierOp::Put(meta_key(p), to_vec(&m)));
    view.commit(ops)?;
    Ok((m, v))
}

/// Reads version `version` of `p` (0 or absent: the current one); data is `None` when the
/// version is deleted or destroyed.
pub(super) fn read(view: &View, p: &str, d: &Data) -> Result<VersionRead, ApiError> {
    let m = metadata(view, p)?.ok_or_else(ApiError::not_found)?;
    let want = fields::i64_or(d, "version", 0)?;
    let v = if want <= 0 {
        m.current_version
    } else {
        want as u64
    };
    let vm = m.versions.get(&v).ok_or_else(ApiError::not_found)?;
    let data = match vm.live() {
        true => view.get_json(&version_key(p, v))?,
        false => None,
    };
    Ok((m, v, data))
}

/// What `delete`, `undelete` and `destroy` do to the listed versions.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum VersionAction {
    Delete,
    Undelete,
    Destroy,
}

/// Applies `action` to `versions` of `p` in one commit (a missing key is not an error).
pub(super) fn apply(
    view: &View,
    p: &str,
    versions: &[u64],
    action: VersionAction,
) -> Result<(), ApiError> {
    let Some(mut m) = metadata(view, p)? else {
        return Ok(());
    };
    let mut ops = vec![];
    for v in versions {
        let Some(vm) = m.versions.get_mut(v) else {
            continue;
        };
        match action {
            VersionAction::Delete if vm.live() => vm.deletion_time = now(),
            VersionAction::Undelete if !vm.destroyed => vm.deletion_time.clear(),
            VersionAction::Destroy => {
                vm.destroyed = true;
                ops.push(BarrierOp::Delete(version_key(p, *v)));
            }
            _ => {}
        }
    }
    ops.push(BarrierOp::Put(meta_key(p), to_vec(&m)));
    Ok(view.commit(ops)?)
}

/// Soft-deletes the current version of `p`.
pub(super) fn delete_current(view: &View, p: &str) -> Result<(), ApiError> {
    let Some(m) = metadata(view, p)? else {
        return Ok(());
    };
    apply(view, p, &[m.current_version], VersionAction::Delete)
}

/// Removes `p` with every version and its metadata.
pub(super) fn delete_all(view: &View, p: &str) -> Result<(), ApiError> {
    let Some(m) = metadata(view, p)? else {
        return Ok(());
    };
    let mut ops: Vec<BarrierOp> = m
        .versions
        .keys()
        .map(|v| BarrierOp::Delete(version_key(p, *v)))
        .collect();
    ops.push(BarrierOp::Delete(meta_key(p)));
    Ok(view.commit(ops)?)
}

fn to_vec<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("JSON maps and plain structs always serialize")
}
