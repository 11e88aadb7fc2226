//! `auth/token/*`: create, lookup, renew and revoke tokens over the token store.

use crate::backend::table::{self, Captures, Ops, Route};
use crate::fields;
use crate::request::{ApiError, Operation, Request, Response};
use crate::token::{now, NewToken, TokenEntry, TokenError, TokenKind};
use crate::unsealed::Unsealed;
use std::sync::{Arc, Weak};
use zeroize::Zeroizing;

fn tok_err(e: TokenError) -> ApiError {
    match e {
        TokenError::Invalid(m) => ApiError::bad_request(m),
        TokenError::Barrier(b) => b.into(),
    }
}

/// Batch tokens live only in their own text: nothing to renew or revoke.
fn service_only(e: &TokenEntry, verb: &str) -> Result<(), ApiError> {
    match e.kind {
        TokenKind::Service => Ok(()),
        TokenKind::Batch => Err(ApiError::bad_request(format!(
            "batch tokens cannot be {verb}"
        ))),
    }
}

fn caller(req: &Request) -> Result<&Arc<TokenEntry>, ApiError> {
    req.token.as_ref().ok_or_else(ApiError::permission_denied)
}

fn is_sudo(u: &Unsealed, req: &Request) -> Result<bool, ApiError> {
    let t = caller(req)?;
    let acl = u.acl(t)?;
    Ok(acl.is_root()
        || acl
            .capabilities(&req.path)
            .contains(crate::policy::Caps::SUDO))
}

/// `auth/token/` as a backend over the token store.
pub struct TokenBackend {
    unsealed: Weak<Unsealed>,
}

impl TokenBackend {
    pub fn new(unsealed: Weak<Unsealed>) -> Self {
        Self { unsealed }
    }
}

impl crate::backend::Backend for TokenBackend {
    fn handle(&self, req: &Request) -> Result<Response, ApiError> {
        let u = self.unsealed.upgrade().ok_or_else(ApiError::sealed)?;
        table::dispatch(&*u, ROUTES, req)
    }
    fn needs_sudo(&self, rel: &str, _op: Operation) -> bool {
        table::needs_sudo(ROUTES, rel)
    }
}

const W: Ops = Ops::WRITE;
const RW: Ops = Ops::READ.or(Ops::WRITE);

/// Every path of the token store.
static ROUTES: &[Route<Unsealed>] = &[
    Route::new("create", W, None, &[], |u, r, _| create(u, r, false)),
    Route::new("create-orphan", W, None, &[], |u, r, _| create(u, r, true)),
    Route::new("lookup-self", RW, None, &[], lookup_self),
    Route::new("lookup", RW, None, &[], lookup),
    Route::new("lookup-accessor", W, None, &[], lookup_accessor),
    Route::new("renew-self", W, None, &[], |u, r, _| {
        let token = r.client_token.as_ref().map(|c| c.to_string());
        renew(u, r, caller(r)?.clone(), token)
    }),
    Route::new("renew", W, None, &[], |u, r, _| {
        let t = fields::opt_str(&r.data, "token")?
            .ok_or_else(|| ApiError::bad_request("missing token"))?;
        let e = u.tokens.lookup(&t)?;
        renew(
            u,
            r,
            e.ok_or_else(|| ApiError::bad_request("invalid token"))?,
            Some(t),
        )
    }),
    Route::new("renew-accessor", W, None, &[], |u, r, _| {
        renew(u, r, by_accessor(u, r)?, None)
    }),
    Route::new("revoke-self", W, None, &[], |u, r, _| {
        service_only(caller(r)?, "revoked")?;
        u.tokens.revoke_tree(&caller(r)?.id_hash)?;
        Ok(Response::no_content())
    }),
    Route::new("revoke", W, None, &[], |u, r, _| revoke(u, r, false)),
    Route::new("revoke-orphan", W, None, &[], |u, r, _| revoke(u, r, true)).sudo(),
    Route::new("revoke-accessor", W, None, &[], |u, r, _| {
        let a = fields::opt_str(&r.data, "accessor")?
            .ok_or_else(|| ApiError::bad_request("missing accessor"))?;
        if let Some(e) = u.tokens.lookup_accessor(&a)? {
            u.tokens.revoke_tree(&e.id_hash)?;
        }
        Ok(Response::no_content())
    }),
];

fn lookup_self(_: &Unsealed, r: &Request, _: &Captures) -> Result<Response, ApiError> {
    let id = r.client_token.as_ref().map(|c| c.as_str());
    Ok(Response::data(caller(r)?.lookup_data(id, now())))
}

fn lookup(u: &Unsealed, r: &Request, _: &Captures) -> Result<Response, ApiError> {
    let tok = fields::opt_str(&r.data, "token")?
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::bad_request("missing token to lookup"))?;
    let tok = Zeroizing::new(tok);
    let e = u
        .tokens
        .lookup(&tok)?
        .ok_or_else(|| ApiError::bad_request("bad token"))?;
    Ok(Response::data(e.lookup_data(Some(&tok), now())))
}

fn by_accessor(u: &Unsealed, r: &Request) -> Result<Arc<TokenEntry>, ApiError> {
    let acc = fields::opt_str(&r.data, "accessor")?
        .ok_or_else(|| ApiError::bad_request("missing accessor"))?;
    u.tokens
        .lookup_accessor(&acc)?
        .ok_or_else(|| ApiError::bad_request("invalid accessor"))
}

fn lookup_accessor(u: &Unsealed, r: &Request, _: &Captures) -> Result<Response, ApiError> {
    Ok(Response::data(by_accessor(u, r)?.lookup_data(None, now())))
}

fn renew(
    u: &Unsealed,
    r: &Request,
    entry: Arc<TokenEntry>,
    token: Option<String>,
) -> Result<Response, ApiError> {
    service_only(&entry, "renewed")?;
    let inc = fields::duration_or(&r.data, "increment", 0)?;
    let (ne, warnings) = u.tokens.renew(&entry, inc).map_err(tok_err)?;
    let mut resp = Response::data(serde_json::Value::Null);
    resp.data = None;
    resp.auth = Some(ne.auth_block(token.as_deref().unwrap_or(""), now()));
    resp.warnings = warnings;
    Ok(resp)
}

fn revoke(u: &Unsealed, r: &Request, orphan: bool) -> Result<Response, ApiError> {
    let t =
        fields::opt_str(&r.data, "token")?.ok_or_else(|| ApiError::bad_request("missing token"))?;
    if let Some(e) = u.tokens.lookup(&t)? {
        service_only(&e, "revoked")?;
        if orphan {
            u.tokens.revoke_orphan(&e.id_hash)?;
        } else {
            u.tokens.revoke_tree(&e.id_hash)?;
        }
    }
    Ok(Response::no_content())
}

/// `type`: service (also `default` or empty) or batch.
pub fn token_kind(t: Option<&str>) -> Result<TokenKind, ApiError> {
    TokenKind::parse(t.unwrap_or(""))
        .ok_or_else(|| ApiError::bad_request("invalid 'token_type' value"))
}

/// What a batch token cannot be (OpenBao's checks and wording).
fn batch_limits(policies: &[String], d: &fields::Data) -> Result<(), ApiError> {
    if policies.iter().any(|p| p == "root") {
        return Err(ApiError::bad_request("batch tokens cannot be root tokens"));
    }
    for field in ["period", "num_uses"] {
        let set = match field {
            "period" => fields::duration_or(d, field, 0)? > 0,
            _ => fields::i64_or(d, field, 0)? != 0,
        };
        if set {
            return Err(ApiError::bad_request(format!(
                "batch tokens cannot have {field:?} set"
            )));
        }
    }
    if fields::opt_str(d, "id")?.is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::bad_request("batch tokens cannot have custom IDs"));
    }
    Ok(())
}

/// The child's policies: the parent's when none are asked for; otherwise a subset of the
/// parent's (a root parent grants anything). A child never gains `default` its parent lacks.
fn child_policies(parent: &TokenEntry, d: &fields::Data) -> Result<(Vec<String>, bool), ApiError> {
    let asked = fields::opt_str_list(d, "policies")?.unwrap_or_default();
    let mut policies = crate::token::sanitize_policies(asked);
    let mut no_default_policy = fields::bool_or(d, "no_default_policy", false)?;
    if policies.is_empty() {
        policies = parent.policies.clone();
    }
    if !parent.is_root() {
        if !policies.iter().all(|p| parent.policies.contains(p)) {
            return Err(ApiError::bad_request(
                "child policies must be subset of parent",
            ));
        }
        no_default_policy |= !parent.policies.iter().any(|p| p == "default");
    }
    if no_default_policy {
        policies.retain(|p| p != "default");
    }
    Ok((policies, no_default_policy))
}

fn create(u: &Unsealed, req: &Request, orphan_path: bool) -> Result<Response, ApiError> {
    let parent = caller(req)?.clone();
    let d = &req.data;
    let sudo = is_sudo(u, req)?;
    let parent_is_root = parent.is_root();
    if parent.kind == TokenKind::Batch {
        return Err(ApiError::bad_request(
            "batch tokens cannot create more tokens",
        ));
    }
    let kind = token_kind(fields::opt_str(d, "type")?.as_deref())?;
    let no_parent = fields::bool_or(d, "no_parent", false)?;
    if no_parent && !(parent_is_root || sudo) {
        return Err(ApiError::bad_request(
            "root or sudo privileges required to create orphan token",
        ));
    }
    if parent.num_uses != 0 {
        return Err(ApiError::bad_request(
            "restricted use token cannot generate child tokens",
        ));
    }
    let (policies, no_default_policy) = child_policies(&parent, d)?;
    if kind == TokenKind::Batch {
        batch_limits(&policies, d)?;
    }
    let id = fields::opt_str(d, "id")?.filter(|s| !s.is_empty());
    if id.is_some() && !parent_is_root {
        return Err(ApiError::bad_request(
            "root or sudo privileges required to specify token id",
        ));
    }
    let period = fields::duration_or(d, "period", 0)?;
    if period > 0 && !(parent_is_root || sudo) {
        return Err(ApiError::bad_request(
            "root or sudo privileges required to create periodic token",
        ));
    }
    let ttl = fields::duration_or(d, "ttl", 0)?;
    let explicit_max_ttl = fields::duration_or(d, "explicit_max_ttl", 0)?;
    let num_uses = fields::i64_or(d, "num_uses", 0)?;
    if num_uses < 0 {
        return Err(ApiError::bad_request("number of uses cannot be negative"));
    }
    let display = fields::str_or(d, "display_name", "")?;
    let display_name = if display.is_empty() {
        "token".to_string()
    } else {
        format!(
            "token-{}",
            display
                .trim()
                .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "-")
        )
    };
    let mut warnings = vec![];
    let (tok, e) = u
        .tokens
        .create(NewToken {
            id: id.map(Zeroizing::new),
            policies,
            no_default_policy,
            parent_hash: if no_parent || orphan_path {
                None
            } else {
                Some(parent.id_hash.clone())
            },
            meta: fields::opt_str_map(d, "meta")?.unwrap_or_default(),
            display_name,
            num_uses,
            ttl,
            explicit_max_ttl,
            period,
            renewable: fields::bool_or(d, "renewable", true)?,
            path: req.path.clone(),
            entity_id: String::new(),
            bound_cidrs: vec![],
            kind,
        })
        .map_err(tok_err)?;
    if ttl > crate::token::MAX_TTL && period == 0 {
        warnings.push(format!(
            "TTL of \"{}\" exceeded the effective max_ttl of \"{}\"; TTL value is capped accordingly",
            crate::duration::format_short(ttl),
            crate::duration::format_short(crate::token::MAX_TTL)
        ));
    }
    let mut r = Response::data(serde_json::Value::Null);
    r.data = None;
    r.auth = Some(e.auth_block(&tok, now()));
    r.warnings = warnings;
    Ok(r)
}
