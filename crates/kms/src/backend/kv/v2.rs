//! KV v2's paths, declared in one table as OpenBao's kv plugin declares them: `config`,
//! `data/<path>`, `delete|undelete|destroy/<path>`, `metadata/<path>`, `subkeys/<path>`.
//! The handlers parse the request and call [`super::versions`], which owns the storage.

use super::versions::{self, VersionAction};
use super::Kv;
use crate::backend::table::{Captures, Ops, Route};
use crate::fields::{self, Data};
use crate::request::{ApiError, Operation, Request, Response};
use serde_json::{json, Map, Value};

const R: Ops = Ops::READ;
const W: Ops = Ops::WRITE;
const D: Ops = Ops::DELETE;
const L: Ops = Ops::LIST;

pub(super) static ROUTES: &[Route<Kv>] = &[
    Route::new("config", R.or(W), None, &[], config),
    Route::new("data/**path", R.or(W).or(D).or(Ops::PATCH), None, &[], data),
    Route::new("delete/**path", W, None, &[], |b, r, c| {
        versions_action(b, r, c, VersionAction::Delete)
    }),
    Route::new("undelete/**path", W, None, &[], |b, r, c| {
        versions_action(b, r, c, VersionAction::Undelete)
    }),
    Route::new("destroy/**path", W, None, &[], |b, r, c| {
        versions_action(b, r, c, VersionAction::Destroy)
    }),
    Route::new(
        "metadata/**path",
        R.or(W).or(D).or(L).or(Ops::PATCH),
        None,
        &[],
        metadata,
    ),
    Route::new("subkeys/**path", R, None, &[], subkeys),
];

/// The key a path names: the `*path` capture, refused when it holds `.`/`..` segments.
fn key<'a>(c: &Captures<'a>) -> Result<&'a str, ApiError> {
    super::clean(c.get("path"))
}

fn config(b: &Kv, req: &Request, _: &Captures) -> Result<Response, ApiError> {
    let mut c = versions::config(&b.view)?;
    if req.op == Operation::Read {
        return Ok(Response::data(json!({
            "cas_required": c.cas_required,
            "delete_version_after": crate::duration::format_go(c.delete_version_after),
            "max_versions": c.max_versions,
        })));
    }
    let d = &req.data;
    if let Some(v) = fields::opt_i64(d, "max_versions")? {
        c.max_versions = v.max(0) as u64;
    }
    if let Some(v) = fields::opt_bool(d, "cas_required")? {
        c.cas_required = v;
    }
    if let Some(v) = fields::opt_duration(d, "delete_version_after")? {
        c.delete_version_after = v;
    }
    b.view.put_json("config", &c)?;
    Ok(Response::no_content())
}

fn data(b: &Kv, req: &Request, c: &Captures) -> Result<Response, ApiError> {
    let p = key(c)?;
    if p.is_empty() || p.ends_with('/') {
        return Err(ApiError::unsupported_path());
    }
    match req.op {
        Operation::Read => data_read(b, p, &req.data),
        Operation::Patch => data_patch(b, p, req),
        Operation::Delete => {
            versions::delete_current(&b.view, p)?;
            Ok(Response::no_content())
        }
        _ => {
            let data = body_data(&req.data)?;
            let (m, v) = versions::write(&b.view, p, &data, cas_option(&req.data)?)?;
            Ok(Response::data(versions::version_json(&m, v)))
        }
    }
}

fn data_read(b: &Kv, p: &str, d: &Data) -> Result<Response, ApiError> {
    let (m, v, data) = versions::read(&b.view, p, d)?;
    let status = if data.is_none() { 404 } else { 200 };
    let body = json!({"data": data, "metadata": versions::version_json(&m, v)});
    Ok(Response::data(body).with_status(status))
}

/// JSON merge patch (RFC 7386) of the current version; check-and-set defaults to it.
fn data_patch(b: &Kv, p: &str, req: &Request) -> Result<Response, ApiError> {
    require_merge_patch(req)?;
    let (m, _, current) = versions::read(&b.view, p, &Data::new())?;
    let mut current = current.ok_or_else(ApiError::not_found)?;
    let Some(Value::Object(patch)) = req.data.get("data") else {
        return Err(ApiError::bad_request("no data provided"));
    };
    merge_patch(&mut current, patch);
    let cas = cas_option(&req.data)?.or(Some(m.current_version as i64));
    let (m, v) = versions::write(&b.view, p, &current, cas)?;
    Ok(Response::data(versions::version_json(&m, v)))
}

/// A PATCH must say its body is a JSON merge patch (415 otherwise, OpenBao's wording).
fn require_merge_patch(req: &Request) -> Result<(), ApiError> {
    let ct = req.content_type.as_deref().unwrap_or_default();
    if ct.starts_with("application/merge-patch+json") {
        return Ok(());
    }
    Err(ApiError::new(
        415,
        format!("PATCH requires Content-Type of application/merge-patch+json, provided {ct}"),
    ))
}

/// The `data` object of a write.
fn body_data(d: &Data) -> Result<Map<String, Value>, ApiError> {
    match d.get("data") {
        Some(Value::Object(o)) => Ok(o.clone()),
        Some(Value::Null) | None => Err(ApiError::bad_request("no data provided")),
        Some(_) => Err(ApiError::bad_request("data must be a JSON object")),
    }
}

/// `options.cas` of a write.
fn cas_option(d: &Data) -> Result<Option<i64>, ApiError> {
    match d.get("options") {
        Some(Value::Object(o)) => fields::opt_i64(o, "cas"),
        _ => Ok(None),
    }
}

fn versions_action(
    b: &Kv,
    req: &Request,
    c: &Captures,
    action: VersionAction,
) -> Result<Response, ApiError> {
    let p = key(c)?;
    if p.is_empty() {
        return Err(ApiError::unsupported_path());
    }
    let listed = fields::opt_str_list(&req.data, "versions")?.unwrap_or_default();
    if listed.is_empty() {
        return Err(ApiError::bad_request("no version number provided"));
    }
    let numbers = listed
        .iter()
        .map(|s| {
            s.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid version {s:?}")))
        })
        .collect::<Result<Vec<u64>, _>>()?;
    versions::apply(&b.view, p, &numbers, action)?;
    Ok(Response::no_content())
}

fn metadata(b: &Kv, req: &Request, c: &Captures) -> Result<Response, ApiError> {
    let p = key(c)?;
    if p.is_empty() && req.op != Operation::List {
        return Err(ApiError::not_found());
    }
    match req.op {
        Operation::List => metadata_list(b, p),
        Operation::Patch => metadata_patch(b, p, req),
        Operation::Read => {
            let m = versions::metadata(&b.view, p)?.ok_or_else(ApiError::not_found)?;
            Ok(Response::data(versions::metadata_json(&m)))
        }
        Operation::Delete => {
            versions::delete_all(&b.view, p)?;
            Ok(Response::no_content())
        }
        _ => metadata_write(b, p, &req.data),
    }
}

fn metadata_list(b: &Kv, p: &str) -> Result<Response, ApiError> {
    let prefix = match p {
        "" => String::new(),
        p => format!("{}/", p.trim_end_matches('/')),
    };
    let keys = b.view.list(&versions::meta_key(&prefix))?;
    if keys.is_empty() {
        return Err(ApiError::not_found());
    }
    Ok(Response::data(json!({"keys": keys})))
}

fn metadata_write(b: &Kv, p: &str, d: &Data) -> Result<Response, ApiError> {
    let t = versions::now();
    let mut m = versions::metadata(&b.view, p)?.unwrap_or_else(|| versions::Metadata {
        created_time: t.clone(),
        ..Default::default()
    });
    m.updated_time = t;
    set_metadata_fields(&mut m, d)?;
    if let Some(cm) = fields::opt_str_map(d, "custom_metadata")? {
        m.custom_metadata = Some(cm);
    }
    b.view.put_json(&versions::meta_key(p), &m)?;
    Ok(Response::no_content())
}

/// PATCH of a key's metadata: the settings given replace, `custom_metadata` is merged
/// (RFC 7386); a key without metadata is not found.
fn metadata_patch(b: &Kv, p: &str, req: &Request) -> Result<Response, ApiError> {
    require_merge_patch(req)?;
    let mut m = versions::metadata(&b.view, p)?.ok_or_else(ApiError::not_found)?;
    set_metadata_fields(&mut m, &req.data)?;
    if let Some(Value::Object(patch)) = req.data.get("custom_metadata") {
        let mut cm = m.custom_metadata.take().unwrap_or_default();
        merge_patch(&mut cm, patch);
        m.custom_metadata = Some(cm);
    }
    m.updated_time = versions::now();
    b.view.put_json(&versions::meta_key(p), &m)?;
    Ok(Response::no_content())
}

/// The settings a metadata write or patch may carry.
fn set_metadata_fields(m: &mut versions::Metadata, d: &Data) -> Result<(), ApiError> {
    if let Some(v) = fields::opt_i64(d, "max_versions")? {
        m.max_versions = v.max(0) as u64;
    }
    if let Some(v) = fields::opt_bool(d, "cas_required")? {
        m.cas_required = v;
    }
    if let Some(v) = fields::opt_duration(d, "delete_version_after")? {
        m.delete_version_after = v;
    }
    Ok(())
}

fn subkeys(b: &Kv, req: &Request, c: &Captures) -> Result<Response, ApiError> {
    let p = key(c)?;
    let (m, v, data) = versions::read(&b.view, p, &req.data)?;
    let data = data.ok_or_else(ApiError::not_found)?;
    Ok(Response::data(json!({
        "subkeys": subkey_tree(&Value::Object(data)),
        "metadata": versions::version_json(&m, v),
    })))
}

/// RFC 7386: `null` removes a member, objects merge recursively, anything else replaces.
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

/// The data's shape with every leaf replaced by `null`.
fn subkey_tree(v: &Value) -> Value {
    match v {
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, x)| (k.clone(), subkey_tree(x))).collect())
        }
        _ => Value::Null,
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
            subkey_tree(&json!({"a": 1, "b": {"c": "x"}})),
            json!({"a": null, "b": {"c": null}})
        );
    }
}
