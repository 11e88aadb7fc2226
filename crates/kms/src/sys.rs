//! `sys/*`: mounts, auth methods, policies, capabilities, audit devices, the UI mounts
//! preflight, seal and key status. Paths that answer while sealed are in `seal.rs`.

use crate::audit::DeviceConfig;
use crate::backend::Backend;
use crate::fields::{self, Data};
use crate::mounts::{self, Mount, MountEntry};
use crate::policy::Acl;
use crate::request::{ApiError, Operation, Request, Response};
use crate::system::System;
use crate::unsealed::Unsealed;
use serde_json::{json, Map, Value};
use std::sync::{Arc, Weak};

/// sys paths that need no token (they are answered by the HTTP layer before routing, but a
/// request that reaches here by another name must not demand one either).
pub fn unauthenticated(rel: &str) -> bool {
    crate::wrapping::unauthenticated(rel)
        || matches!(
            rel.trim_end_matches('/'),
            "health" | "seal-status" | "init" | "unseal" | "leader"
        )
}

/// Paths that need `sudo` in addition to the operation's capability (OpenBao's root paths
/// of the system backend).
pub fn needs_sudo(rel: &str, op: Operation) -> bool {
    let p = rel.trim_end_matches('/');
    let under = |root: &str| p == root || p.starts_with(&format!("{root}/"));
    under("audit")
        || under("raw")
        || matches!(p, "rotate" | "seal" | "step-down")
        || (p.starts_with("auth/") && !p.ends_with("/tune") && op != Operation::Read)
}

/// Paths where a valid token is enough and the handler filters by the token's ACL itself:
/// the UI's mounts preflight answers for a mount the token has some access under.
pub fn decides_own_access(rel: &str, op: Operation) -> bool {
    op == Operation::Read
        && (rel.trim_end_matches('/') == "internal/ui/mounts"
            || rel.starts_with("internal/ui/mounts/"))
}

/// Policy names are case-insensitive: `policies/acl/Admin` is `admin`.
pub fn canonical_rel(rel: &str) -> Option<String> {
    crate::paths::fold_names(
        rel,
        &["policy/", "policies/acl/"],
        crate::paths::NameFold::TrimLower,
    )
}

fn norm_mount(p: &str) -> String {
    let p = p.trim_matches('/');
    format!("{p}/")
}

const RESERVED: &[&str] = &["sys/", "auth/", "cubbyhole/", "identity/", "audit/"];

/// `sys/` as a backend: its paths, what they need, and a way back to the unsealed state.
pub struct SystemBackend {
    unsealed: Weak<Unsealed>,
    sys: Arc<System>,
}

impl SystemBackend {
    pub fn new(unsealed: Weak<Unsealed>, sys: Arc<System>) -> Self {
        Self { unsealed, sys }
    }
}

impl Backend for SystemBackend {
    fn handle(&self, req: &Request) -> Result<Response, ApiError> {
        let u = self.unsealed.upgrade().ok_or_else(ApiError::sealed)?;
        handle(&self.sys, &u, req)
    }
    fn unauthenticated(&self, rel: &str) -> bool {
        unauthenticated(rel)
    }
    fn needs_sudo(&self, rel: &str, op: Operation) -> bool {
        needs_sudo(rel, op)
    }
    fn decides_own_access(&self, rel: &str, op: Operation) -> bool {
        decides_own_access(rel, op)
    }
    fn canonical_rel(&self, rel: &str) -> Option<String> {
        canonical_rel(rel)
    }
}

fn handle(sys: &System, u: &Unsealed, req: &Request) -> Result<Response, ApiError> {
    let rel = req.rel.trim_end_matches('/');
    let op = req.op;
    let write = matches!(op, Operation::Update | Operation::Create);
    match rel {
        "mounts" if op == Operation::Read => Ok(Response::legacy(mount_list(u, false))),
        "auth" if op == Operation::Read => Ok(Response::legacy(mount_list(u, true))),
        "policy" if matches!(op, Operation::Read | Operation::List) => {
            let names = u.policies.list()?;
            Ok(Response::legacy(json!({"keys": names, "policies": names})))
        }
        "policies/acl" if matches!(op, Operation::List | Operation::Read) => {
            Ok(Response::data(json!({"keys": u.policies.list()?})))
        }
        "capabilities" | "capabilities-self" if write => capabilities(u, req),
        "audit" if op == Operation::Read => {
            let mut m = Map::new();
            for c in u.audit.list() {
                m.insert(
                    c.path.clone(),
                    json!({"type": c.kind, "description": c.description, "options": c.options, "local": c.local, "path": c.path}),
                );
            }
            Ok(Response::legacy(Value::Object(m)))
        }
        "metrics" if op == Operation::Read => {
            let g = crate::metrics::Gauges {
                sealed: u.barrier.is_sealed(),
                tokens: u.tokens.count().ok(),
            };
            match fields::opt_str(&req.data, "format")?.as_deref() {
                Some("prometheus") => {
                    let mut r = Response::data(Value::String(sys.metrics.prometheus(&g)));
                    r.shape = crate::request::Shape::Text;
                    Ok(r)
                }
                None | Some("") | Some("json") => Ok(Response::raw(200, sys.metrics.json(&g))),
                Some(f) => Err(ApiError::bad_request(format!(
                    "unsupported metrics format: {f}"
                ))),
            }
        }
        "seal" if write => {
            sys.seal_now();
            Ok(Response::no_content())
        }
        "key-status" if op == Operation::Read => Ok(Response::legacy(json!({
            "term": u.barrier.active_term()?,
            "install_time": u.active_since.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            "encryptions": 0,
        }))),
        "internal/ui/mounts" if op == Operation::Read => {
            let acl = caller_acl(u, req)?;
            let visible = |m: &Mount| ui_visible(&acl, m);
            let secret = mount_list_where(u, false, visible);
            let auth = mount_list_where(u, true, visible);
            Ok(Response::data(json!({"secret": secret, "auth": auth})))
        }
        _ => {
            if let Some(p) = rel.strip_prefix("mounts/") {
                if let Some(p) = p.strip_suffix("/tune") {
                    return tune(u, &norm_mount(p), false, req);
                }
                return mount_op(u, &norm_mount(p), false, req);
            }
            if let Some(p) = rel.strip_prefix("auth/") {
                if let Some(p) = p.strip_suffix("/tune") {
                    return tune(u, &norm_mount(p), true, req);
                }
                return mount_op(u, &norm_mount(p), true, req);
            }
            if let Some(n) = rel.strip_prefix("policy/") {
                return policy_op(u, n, req, true);
            }
            if let Some(n) = rel.strip_prefix("policies/acl/") {
                return policy_op(u, n, req, false);
            }
            if let Some(p) = rel.strip_prefix("audit/") {
                return audit_op(sys, u, &norm_mount(p), req);
            }
            if let Some(p) = rel.strip_prefix("audit-hash/") {
                if !write {
                    return Err(ApiError::unsupported_operation());
                }
                let dev = u
                    .audit
                    .get(&norm_mount(p))
                    .ok_or_else(|| ApiError::bad_request("unknown audit backend"))?;
                let input = fields::opt_str(&req.data, "input")?.unwrap_or_default();
                return Ok(Response::legacy(json!({"hash": dev.hash(&input)})));
            }
            if rel == "wrapping/wrap" && req.wrap_ttl.is_some() && write {
                return Ok(crate::wrapping::wrap_request_data(req));
            }
            if let Some(what) = rel.strip_prefix("wrapping/") {
                return crate::wrapping::handle(u, req, what);
            }
            if let Some(p) = rel.strip_prefix("internal/ui/mounts/") {
                if op != Operation::Read {
                    return Err(ApiError::unsupported_operation());
                }
                return ui_mount(u, p, req);
            }
            let known = [
                "mounts",
                "auth",
                "policy",
                "policies/acl",
                "capabilities",
                "capabilities-self",
                "audit",
                "seal",
                "key-status",
                "internal/ui/mounts",
            ];
            if known.contains(&rel) {
                return Err(ApiError::unsupported_operation());
            }
            Err(ApiError::unsupported_path())
        }
    }
}

fn mount_list(u: &Unsealed, auth: bool) -> Value {
    mount_list_where(u, auth, |_| true)
}

fn mount_list_where(u: &Unsealed, auth: bool, keep: impl Fn(&Mount) -> bool) -> Value {
    let mut m = Map::new();
    for mt in u
        .router
        .all()
        .iter()
        .filter(|m| m.is_auth == auth && keep(m))
    {
        m.insert(mt.entry.path.clone(), mt.entry.render());
    }
    Value::Object(m)
}

fn caller_acl(u: &Unsealed, req: &Request) -> Result<Arc<Acl>, ApiError> {
    let token = req.token.as_ref().ok_or_else(ApiError::permission_denied)?;
    u.acl(token)
}

/// What the UI may show a token: the mounts every token has (sys, cubbyhole, identity,
/// token) and those it has some capability under.
fn ui_visible(acl: &Acl, m: &Mount) -> bool {
    acl.is_root()
        || matches!(
            m.entry.kind.as_str(),
            "system" | "cubbyhole" | "identity" | "token"
        )
        || acl.any_under(&m.prefix)
}

fn mount_op(u: &Unsealed, path: &str, auth: bool, req: &Request) -> Result<Response, ApiError> {
    let prefix = if auth {
        format!("auth/{path}")
    } else {
        path.to_string()
    };
    match req.op {
        Operation::Read => {
            let m = u
                .router
                .get(&prefix)
                .ok_or_else(|| ApiError::bad_request(format!("no matching mount at \"{path}\"")))?;
            Ok(Response::legacy(m.entry.render()))
        }
        Operation::Update | Operation::Create => {
            let mut kind = fields::opt_str(&req.data, "type")?
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    ApiError::bad_request("backend type must be specified as a string")
                })?;
            let allowed = if auth {
                mounts::AUTH_TYPES
            } else {
                mounts::SECRET_TYPES
            };
            if !allowed.contains(&kind.as_str()) || kind == "token" || kind == "cubbyhole" {
                return Err(ApiError::bad_request(format!(
                    "plugin not found in the catalog: {kind}"
                )));
            }
            if !auth && (RESERVED.iter().any(|r| path.starts_with(r)) || path == "/") {
                return Err(ApiError::bad_request(format!(
                    "cannot mount under reserved path: {path}"
                )));
            }
            if auth && path == "token/" {
                return Err(ApiError::bad_request(
                    "token credential backend cannot be instantiated",
                ));
            }
            if let Some(c) = u.router.conflicts(&prefix) {
                let shown = c
                    .strip_prefix("auth/")
                    .filter(|_| auth)
                    .unwrap_or(&c)
                    .to_string();
                return Err(ApiError::bad_request(format!(
                    "path is already in use at {shown}"
                )));
            }
            let mut options = fields::opt_str_map(&req.data, "options")?;
            if kind == "kv-v2" {
                kind = "kv".into();
                options
                    .get_or_insert_with(Map::new)
                    .insert("version".into(), json!("2"));
            } else if kind == "kv-v1" {
                kind = "kv".into();
                options
                    .get_or_insert_with(Map::new)
                    .insert("version".into(), json!("1"));
            }
            if kind == "kv" {
                if let Some(o) = options.as_mut() {
                    match o.get("version").and_then(|v| v.as_str()) {
                        None | Some("") | Some("1") => {
                            o.remove("version");
                        }
                        Some("2") => {}
                        Some(v) => {
                            return Err(ApiError::bad_request(format!("invalid KV version {v:?}")))
                        }
                    }
                    if o.is_empty() {
                        options = None;
                    }
                }
            } else {
                options = options.filter(|o| !o.is_empty());
            }
            let description = fields::str_or(&req.data, "description", "")?;
            let mut entry = MountEntry::new(path, &kind, &description);
            entry.options = options;
            entry.local = fields::bool_or(&req.data, "local", false)?;
            entry.seal_wrap = fields::bool_or(&req.data, "seal_wrap", false)?;
            if let Some(Value::Object(cfg)) = req.data.get("config") {
                entry.config.default_lease_ttl = fields::duration_or(cfg, "default_lease_ttl", 0)?;
                entry.config.max_lease_ttl = fields::duration_or(cfg, "max_lease_ttl", 0)?;
                entry.config.force_no_cache = fields::bool_or(cfg, "force_no_cache", false)?;
            }
            let view = u.mount_view(&entry, auth);
            let handler = mounts::instantiate(&entry, view)?;
            u.router.insert(Mount {
                entry,
                prefix,
                handler,
                is_auth: auth,
            });
            u.save_mounts(auth)?;
            Ok(Response::no_content())
        }
        Operation::Delete => {
            if !auth && matches!(path, "sys/" | "cubbyhole/" | "identity/")
                || auth && path == "token/"
            {
                return Err(ApiError::bad_request(format!("cannot unmount \"{path}\"")));
            }
            if let Some(m) = u.router.remove(&prefix) {
                u.save_mounts(auth)?;
                u.mount_view(&m.entry, auth).clear()?;
            }
            Ok(Response::no_content())
        }
        _ => Err(ApiError::unsupported_operation()),
    }
}

fn tune(u: &Unsealed, path: &str, auth: bool, req: &Request) -> Result<Response, ApiError> {
    let prefix = if auth {
        format!("auth/{path}")
    } else {
        path.to_string()
    };
    let m = u.router.get(&prefix).ok_or_else(|| {
        ApiError::bad_request(format!("cannot fetch sysview for path \"{path}\""))
    })?;
    let sys_default = crate::token::DEFAULT_TTL;
    match req.op {
        Operation::Read => {
            let e = &m.entry;
            let mut v = json!({
                "default_lease_ttl": if e.config.default_lease_ttl == 0 { sys_default } else { e.config.default_lease_ttl },
                "max_lease_ttl": if e.config.max_lease_ttl == 0 { sys_default } else { e.config.max_lease_ttl },
                "force_no_cache": e.config.force_no_cache,
                "description": e.description,
            });
            if let Some(o) = &e.options {
                v["options"] = Value::Object(o.clone());
            }
            if auth && e.kind == "token" {
                v["token_type"] = json!("default-service");
            }
            Ok(Response::legacy(v))
        }
        Operation::Update | Operation::Create => {
            let mut e = m.entry.clone();
            if let Some(t) = fields::opt_duration(&req.data, "default_lease_ttl")? {
                e.config.default_lease_ttl = t;
            }
            if let Some(t) = fields::opt_duration(&req.data, "max_lease_ttl")? {
                e.config.max_lease_ttl = t;
            }
            if let Some(d) = fields::opt_str(&req.data, "description")? {
                e.description = d;
            }
            if let Some(o) = fields::opt_str_map(&req.data, "options")? {
                if e.kind == "kv"
                    && o.get("version").and_then(|v| v.as_str()) == Some("2")
                    && e.kv_version() == 1
                {
                    return Err(ApiError::bad_request(
                        "upgrading a kv v1 mount to v2 is not supported",
                    ));
                }
            }
            let mut nm = (*m).clone();
            nm.entry = e;
            u.router.insert(nm);
            u.save_mounts(auth)?;
            Ok(Response::no_content())
        }
        _ => Err(ApiError::unsupported_operation()),
    }
}

fn policy_op(u: &Unsealed, name: &str, req: &Request, legacy: bool) -> Result<Response, ApiError> {
    let name = name.trim_end_matches('/').to_lowercase();
    match req.op {
        Operation::Read => {
            if name == "root" {
                let v = if legacy {
                    json!({"name": "root", "rules": ""})
                } else {
                    json!({"name": "root", "policy": ""})
                };
                return Ok(if legacy {
                    Response::legacy(v)
                } else {
                    Response::data(v)
                });
            }
            let p = u.policies.get(&name)?.ok_or_else(ApiError::not_found)?;
            if legacy {
                Ok(Response::legacy(json!({"name": p.name, "rules": p.raw})))
            } else {
                Ok(Response::data(json!({
                    "name": p.name,
                    "policy": p.raw,
                    "version": u.policies.version(&name)?,
                    "cas_required": false,
                    "modified": u.policies.modified(&name)?,
                })))
            }
        }
        Operation::Update | Operation::Create => {
            let text = fields::opt_str(&req.data, "policy")?
                .or(fields::opt_str(&req.data, "rules")?)
                .ok_or_else(|| ApiError::bad_request("'policy' parameter not supplied or empty"))?;
            if text.trim().is_empty() {
                return Err(ApiError::bad_request(
                    "'policy' parameter not supplied or empty",
                ));
            }
            u.policies.put(&name, &text)?;
            Ok(Response::no_content())
        }
        Operation::Delete => {
            u.policies.delete(&name)?;
            Ok(Response::no_content())
        }
        _ => Err(ApiError::unsupported_operation()),
    }
}

fn capabilities(u: &Unsealed, req: &Request) -> Result<Response, ApiError> {
    let paths = fields::opt_str_list(&req.data, "paths")?
        .or(fields::opt_str(&req.data, "path")?.map(|p| vec![p]))
        .unwrap_or_default();
    if paths.is_empty() {
        return Err(ApiError::bad_request("missing paths"));
    }
    let entry = if req.rel == "capabilities-self" {
        req.token.clone().ok_or_else(ApiError::permission_denied)?
    } else {
        let t = fields::opt_str(&req.data, "token")?
            .ok_or_else(|| ApiError::bad_request("missing token"))?;
        u.tokens
            .lookup(&t)?
            .ok_or_else(|| ApiError::bad_request("invalid token"))?
    };
    let acl = u.acl(&entry)?;
    let mut out = Map::new();
    let mut all: Vec<String> = Vec::new();
    for p in &paths {
        let caps = if acl.is_root() {
            vec!["root".to_string()]
        } else {
            acl.capabilities(p.trim_start_matches('/')).names()
        };
        all.extend(caps.iter().cloned());
        out.insert(p.clone(), json!(caps));
    }
    if paths.len() == 1 {
        out.insert("capabilities".into(), json!(all));
    }
    Ok(Response::legacy(Value::Object(out)))
}

fn audit_op(sys: &System, u: &Unsealed, path: &str, req: &Request) -> Result<Response, ApiError> {
    match req.op {
        Operation::Update | Operation::Create if !sys.allow_api_audit_creation => {
            Err(ApiError::bad_request(
                "cannot enable audit device via API; use declarative, config-based audit device management instead",
            ))
        }
        Operation::Update | Operation::Create => {
            let kind = fields::opt_str(&req.data, "type")?
                .ok_or_else(|| ApiError::bad_request("type is required"))?;
            let options: Data = fields::opt_str_map(&req.data, "options")?.unwrap_or_default();
            u.audit.enable(DeviceConfig {
                path: path.to_string(),
                kind,
                description: fields::str_or(&req.data, "description", "")?,
                options,
                local: fields::bool_or(&req.data, "local", false)?,
            })?;
            Ok(Response::no_content())
        }
        Operation::Delete => {
            u.audit.disable(path)?;
            Ok(Response::no_content())
        }
        _ => Err(ApiError::unsupported_operation()),
    }
}

fn ui_mount(u: &Unsealed, path: &str, req: &Request) -> Result<Response, ApiError> {
    let acl = caller_acl(u, req)?;
    let m = u
        .router
        .route(path)
        .filter(|m| !m.is_auth && ui_visible(&acl, m));
    let Some(m) = m else {
        return Err(ApiError::new(
            403,
            format!("preflight capability check returned 403, please ensure client's policies grant access to path \"{path}/\""),
        ));
    };
    let mut v = m.entry.render();
    v["path"] = json!(m.entry.path);
    Ok(Response::data(v))
}
