//! `sys/*`: mounts, auth methods, policies, capabilities, audit devices, the UI mounts
//! preflight, seal and key status. Paths that answer while sealed are in `seal.rs`.

use crate::audit::DeviceConfig;
use crate::backend::table::{self, Captures, Ops, Route};
use crate::backend::Backend;
use crate::fields::{self, Data};
use crate::mounts::{self, Mount, MountEntry};
use crate::policy::Acl;
use crate::request::{ApiError, Operation, Request, Response};
use crate::system::System;
use crate::unsealed::Unsealed;
use serde_json::{json, Map, Value};
use std::sync::{Arc, Weak};

/// Paths where a valid token is enough and the handler filters by the token's ACL itself:
/// the UI's mounts preflight answers for a mount the token has some access under.
pub fn decides_own_access(rel: &str, op: Operation) -> bool {
    op == Operation::Read
        && (rel.trim_end_matches('/') == "internal/ui/mounts"
            || rel.starts_with("internal/ui/mounts/")
            || rel == "internal/ui/resultant-acl")
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
        table::dispatch(
            &Ctx {
                sys: self.sys.clone(),
                u,
            },
            ROUTES,
            req,
        )
    }
    fn unauthenticated(&self, rel: &str) -> bool {
        table::unauthenticated(ROUTES, rel)
    }
    /// The table's root paths, and enabling or disabling an auth method (not reading it,
    /// nor tuning it).
    fn needs_sudo(&self, rel: &str, op: Operation) -> bool {
        let auth_change =
            rel.starts_with("auth/") && !rel.ends_with("/tune") && op != Operation::Read;
        table::needs_sudo(ROUTES, rel) || auth_change
    }
    fn decides_own_access(&self, rel: &str, op: Operation) -> bool {
        decides_own_access(rel, op)
    }
    fn canonical_rel(&self, rel: &str) -> Option<String> {
        canonical_rel(rel)
    }
}

/// What a `sys/` handler works with.
struct Ctx {
    sys: Arc<System>,
    u: Arc<Unsealed>,
}

/// A `sys/` path (no declared fields, no captures warned about).
const fn rt(pattern: &'static str, ops: Ops, handler: table::Handler<Ctx>) -> Route<Ctx> {
    Route::new(pattern, ops, None, &[], handler)
}

type R = Result<Response, ApiError>;
const W: Ops = Ops::WRITE;
const READ: Ops = Ops::READ;
const RL: Ops = Ops::READ.or(Ops::LIST);
const RWD: Ops = Ops::READ.or(Ops::WRITE).or(Ops::DELETE);

/// Every path of the system backend, with what each needs.
static ROUTES: &[Route<Ctx>] = &[
    rt("mounts", READ, |c, _, _| {
        Ok(Response::legacy(mount_list(&c.u, false)))
    }),
    rt("mounts/*path", RWD, |c, r, p| {
        mount_or_tune(&c.u, p.get("path"), false, r)
    }),
    rt("auth", READ, |c, _, _| {
        Ok(Response::legacy(mount_list(&c.u, true)))
    }),
    rt("auth/*path", RWD, |c, r, p| {
        mount_or_tune(&c.u, p.get("path"), true, r)
    }),
    rt("policy", RL, |c, _, _| {
        let names = c.u.policies.list()?;
        Ok(Response::legacy(json!({"keys": names, "policies": names})))
    }),
    rt("policy/*name", RWD, |c, r, p| {
        policy_op(&c.u, p.get("name"), r, true)
    }),
    rt("policies/acl", RL, |c, _, _| {
        Ok(Response::data(json!({"keys": c.u.policies.list()?})))
    }),
    rt("policies/acl/*name", RWD, |c, r, p| {
        policy_op(&c.u, p.get("name"), r, false)
    }),
    rt("capabilities", W, |c, r, _| capabilities(&c.u, r)),
    rt("capabilities-self", W, |c, r, _| capabilities(&c.u, r)),
    rt("audit", READ, |c, _, _| audit_list(&c.u)).sudo(),
    rt("audit/*path", RWD, |c, r, p| {
        audit_op(&c.sys, &c.u, &norm_mount(p.get("path")), r)
    })
    .sudo(),
    rt("audit-hash/*path", W, |c, r, p| {
        audit_hash(&c.u, p.get("path"), r)
    }),
    rt("metrics", READ, |c, r, _| metrics(c, r)),
    rt("seal", W, |c, _, _| {
        let leading = c.sys.raft.as_ref().filter(|r| r.is_leader());
        c.sys.seal_now();
        if let Some(r) = leading {
            crate::ha::endpoints::await_handover(r)?;
        }
        Ok(Response::no_content())
    })
    .sudo(),
    rt("locked-users", READ, |c, _, _| locked_users(&c.u)),
    rt("locked-users/:accessor/unlock/*alias", W, |c, _, p| {
        let mount =
            c.u.router
                .all()
                .into_iter()
                .find(|m| m.entry.accessor == p.get("accessor"));
        if let Some(m) = mount {
            m.handler.unlock_user(p.get("alias"));
        }
        Ok(Response::no_content())
    }),
    rt("key-status", READ, |c, _, _| {
        Ok(Response::legacy(json!({
            "term": c.u.barrier.active_term()?,
            "install_time": c.u.active_since.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            "encryptions": 0,
        })))
    }),
    rt("internal/ui/mounts", READ, |c, r, _| ui_mounts(&c.u, r)),
    rt("internal/ui/resultant-acl", READ, |c, r, _| {
        resultant_acl(&c.u, r)
    }),
    rt("internal/ui/mounts/*path", READ, |c, r, p| {
        ui_mount(&c.u, p.get("path"), r)
    }),
    rt("wrapping/wrap", W, |c, r, _| match r.wrap_ttl {
        Some(_) => Ok(crate::wrapping::wrap_request_data(r)),
        None => crate::wrapping::handle(&c.u, r, "wrap"),
    }),
    rt("wrapping/unwrap", W, |c, r, _| {
        crate::wrapping::handle(&c.u, r, "unwrap")
    })
    .unauthenticated(),
    rt("wrapping/lookup", W, |c, r, _| {
        crate::wrapping::handle(&c.u, r, "lookup")
    })
    .unauthenticated(),
    rt("wrapping/rewrap", W, |c, r, _| {
        crate::wrapping::handle(&c.u, r, "rewrap")
    }),
    // answered by the HTTP layer while sealed; reached by another name, they need no token
    rt("health", READ, not_here).unauthenticated(),
    rt("seal-status", READ, not_here).unauthenticated(),
    rt("init", RWD, not_here).unauthenticated(),
    rt("unseal", W, not_here).unauthenticated(),
    rt("leader", READ, not_here).unauthenticated(),
    // root paths of OpenBao's we do not serve: still sudo, so a refusal looks the same
    rt("raw/*path", RWD, not_here).sudo(),
    rt("rotate", W, not_here).sudo(),
    rt("step-down", W, |c, _, _| {
        let r = raft_of(c)?;
        crate::ha::endpoints::step_down(r)?;
        Ok(Response::no_content())
    })
    .sudo(),
    rt("ha-status", READ, |c, _, _| {
        Ok(Response::data(crate::ha::endpoints::ha_status(raft_of(c)?)))
    })
    .sudo(),
    rt("storage/raft/configuration", READ, |c, _, _| {
        Ok(Response::data(crate::ha::endpoints::configuration(
            raft_of(c)?,
        )))
    })
    .sudo(),
    rt("storage/raft/bootstrap/challenge", W, |c, r, _| {
        raft_of(c)?;
        let v = crate::ha::join::challenge(&c.sys.ha, &c.u.barrier, &r.data)?;
        Ok(Response::data(v))
    })
    .unauthenticated(),
    rt("storage/raft/bootstrap/answer", W, |c, r, _| {
        let v = crate::ha::join::answer(&c.sys.ha, &c.u.barrier, raft_of(c)?, &r.data)?;
        Ok(Response::data(v))
    })
    .unauthenticated(),
    rt("storage/raft/autopilot/state", READ, |c, _, _| {
        Ok(Response::data(crate::ha::autopilot::state(raft_of(c)?)?))
    }),
    rt(
        "storage/raft/autopilot/configuration",
        READ.or(W),
        |c, r, _| {
            let raft = raft_of(c)?;
            if r.op == Operation::Read {
                return Ok(Response::data(crate::ha::autopilot::get_config(raft)?));
            }
            crate::ha::autopilot::set_config(raft, &r.data)?;
            Ok(Response::no_content())
        },
    ),
    // the snapshot itself travels in the HTTP layer (binary); this authorizes it
    rt("storage/raft/snapshot", READ.or(W), |c, _, _| {
        raft_of(c)?;
        Ok(Response::no_content())
    }),
    rt("storage/raft/snapshot-force", W, |c, _, _| {
        raft_of(c)?;
        Ok(Response::no_content())
    }),
    rt("storage/raft/remove-peer", W, |c, r, _| {
        let id = fields::opt_str(&r.data, "server_id")?.unwrap_or_default();
        crate::ha::endpoints::remove_peer(raft_of(c)?, &id)?;
        Ok(Response::no_content())
    })
    .sudo(),
];

/// The raft node, or OpenBao's answer on a server without raft storage.
fn raft_of(c: &Ctx) -> Result<&crate::storage::raft::RaftStorage, ApiError> {
    c.sys
        .raft
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("raft storage is not in use"))
}

/// `sys/locked-users`: who is locked out, per auth mount (OpenBao's shape).
fn locked_users(u: &Unsealed) -> R {
    let mut mounts = vec![];
    let mut total = 0;
    for m in u.router.all().iter().filter(|m| m.is_auth) {
        let names = m.handler.locked_users();
        if !names.is_empty() {
            total += names.len();
            mounts.push(json!({"mount_accessor": m.entry.accessor, "counts": names.len(), "alias_identifiers": names}));
        }
    }
    let by_namespace = match total {
        0 => json!([]),
        n => {
            json!([{"namespace_id": "root", "namespace_path": "", "counts": n, "mount_accessors": mounts}])
        }
    };
    Ok(Response::data(
        json!({"by_namespace": by_namespace, "total": total}),
    ))
}

fn not_here(_: &Ctx, _: &Request, _: &Captures) -> R {
    Err(ApiError::unsupported_path())
}

fn mount_or_tune(u: &Unsealed, path: &str, auth: bool, req: &Request) -> R {
    match path.strip_suffix("/tune") {
        Some(p) => tune(u, &norm_mount(p), auth, req),
        None => mount_op(u, &norm_mount(path), auth, req),
    }
}

fn audit_list(u: &Unsealed) -> R {
    let mut m = Map::new();
    for c in u.audit.list() {
        m.insert(
            c.path.clone(),
            json!({"type": c.kind, "description": c.description, "options": c.options, "local": c.local, "path": c.path}),
        );
    }
    Ok(Response::legacy(Value::Object(m)))
}

fn audit_hash(u: &Unsealed, path: &str, req: &Request) -> R {
    let dev = u
        .audit
        .get(&norm_mount(path))
        .ok_or_else(|| ApiError::bad_request("unknown audit backend"))?;
    let input = fields::opt_str(&req.data, "input")?.unwrap_or_default();
    Ok(Response::legacy(json!({"hash": dev.hash(&input)})))
}

fn metrics(c: &Ctx, req: &Request) -> R {
    let g = crate::metrics::Gauges {
        sealed: c.u.barrier.is_sealed(),
        tokens: c.u.tokens.count().ok(),
    };
    match fields::opt_str(&req.data, "format")?.as_deref() {
        Some("prometheus") => {
            let mut r = Response::data(Value::String(c.sys.metrics.prometheus(&g)));
            r.shape = crate::request::Shape::Text;
            Ok(r)
        }
        None | Some("") | Some("json") => Ok(Response::raw(200, c.sys.metrics.json(&g))),
        Some(f) => Err(ApiError::bad_request(format!(
            "unsupported metrics format: {f}"
        ))),
    }
}

fn ui_mounts(u: &Unsealed, req: &Request) -> R {
    let acl = caller_acl(u, req)?;
    let visible = |m: &Mount| ui_visible(&acl, m);
    let secret = mount_list_where(u, false, visible);
    let auth = mount_list_where(u, true, visible);
    Ok(Response::data(json!({"secret": secret, "auth": auth})))
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

/// The caller's own merged rules (what the UI may offer it): OpenBao's `exact_paths` and
/// `glob_paths` (without the trailing `*`), and whether it is root.
fn resultant_acl(u: &Unsealed, req: &Request) -> R {
    let acl = caller_acl(u, req)?;
    let render = |rules: &mut dyn Iterator<Item = (&str, crate::policy::Caps)>| {
        let mut m = Map::new();
        for (p, c) in rules {
            let p = p.strip_suffix('*').unwrap_or(p);
            m.insert(p.to_string(), json!({ "capabilities": c.names() }));
        }
        Value::Object(m)
    };
    Ok(Response::data(json!({
        "exact_paths": render(&mut acl.exact_rules()),
        "glob_paths": render(&mut acl.glob_rules()),
        "root": acl.is_root(),
    })))
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
        Operation::Update | Operation::Create => mount(u, path, prefix, auth, req),
        Operation::Delete => unmount(u, path, &prefix, auth),
        _ => Err(ApiError::unsupported_operation()),
    }
}

/// `sys/mounts/<path>` or `sys/auth/<path>` written: a new mount of the requested type.
fn mount(
    u: &Unsealed,
    path: &str,
    prefix: String,
    auth: bool,
    req: &Request,
) -> Result<Response, ApiError> {
    let kind = fields::opt_str(&req.data, "type")?
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::bad_request("backend type must be specified as a string"))?;
    check_mountable(u, path, &prefix, auth, &kind)?;
    let (kind, options) = mount_options(kind, fields::opt_str_map(&req.data, "options")?)?;
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

/// OpenBao's refusals, in its order: an unknown or singleton type, a reserved path, a path
/// overlapping an existing mount.
fn check_mountable(
    u: &Unsealed,
    path: &str,
    prefix: &str,
    auth: bool,
    kind: &str,
) -> Result<(), ApiError> {
    let allowed = if auth {
        mounts::AUTH_TYPES
    } else {
        mounts::SECRET_TYPES
    };
    if !allowed.contains(&kind) || kind == "token" || kind == "cubbyhole" {
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
    if let Some(c) = u.router.conflicts(prefix) {
        let shown = c.strip_prefix("auth/").filter(|_| auth).unwrap_or(&c);
        return Err(ApiError::bad_request(format!(
            "path is already in use at {shown}"
        )));
    }
    Ok(())
}

/// The stored type and options of a new mount: `kv-v1`/`kv-v2` become `kv` with a
/// `version` option; KV version 1 is stored as no option; empty options as none.
fn mount_options(
    kind: String,
    options: Option<Map<String, Value>>,
) -> Result<(String, Option<Map<String, Value>>), ApiError> {
    let (kind, mut options) = match kind.as_str() {
        "kv-v2" | "kv-v1" => {
            let mut o = options.unwrap_or_default();
            o.insert("version".into(), json!(&kind[4..]));
            ("kv".to_string(), Some(o))
        }
        _ => (kind, options),
    };
    if kind == "kv" {
        if let Some(o) = options.as_mut() {
            match o.get("version").and_then(|v| v.as_str()) {
                None | Some("") | Some("1") => {
                    o.remove("version");
                }
                Some("2") => {}
                Some(v) => return Err(ApiError::bad_request(format!("invalid KV version {v:?}"))),
            }
        }
    }
    Ok((kind, options.filter(|o| !o.is_empty())))
}

fn unmount(u: &Unsealed, path: &str, prefix: &str, auth: bool) -> Result<Response, ApiError> {
    if !auth && matches!(path, "sys/" | "cubbyhole/" | "identity/") || auth && path == "token/" {
        return Err(ApiError::bad_request(format!("cannot unmount \"{path}\"")));
    }
    if let Some(m) = u.router.remove(prefix) {
        u.save_mounts(auth)?;
        u.mount_view(&m.entry, auth).clear()?;
    }
    Ok(Response::no_content())
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
