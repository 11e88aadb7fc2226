//! Response wrapping (`X-Vault-Wrap-TTL`, `sys/wrapping/*`): a response is replaced by a
//! single-use token whose cubbyhole holds it; unwrapping reads it once and revokes the token.
//! The wrapping token has only the `response-wrapping` policy, so it opens nothing else.

use crate::barrier::View;
use crate::fields;
use crate::request::{ApiError, Operation, Request, Response, Shape};
use crate::token::{NewToken, TokenEntry};
use crate::unsealed::Unsealed;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;
use zeroize::Zeroizing;

const POLICY: &str = "response-wrapping";
const KEY: &str = "response";

/// What a wrapping token's cubbyhole holds.
#[derive(Serialize, Deserialize)]
struct Wrapped {
    data: Option<Value>,
    auth: Option<Value>,
    lease_duration: u64,
    renewable: bool,
    warnings: Vec<String>,
}

fn invalid() -> ApiError {
    ApiError::bad_request("wrapping token is not valid or does not exist")
}

fn cubbyhole(u: &Unsealed, token_hash: &str) -> Result<View, ApiError> {
    let m = u
        .router
        .get("cubbyhole/")
        .ok_or_else(|| ApiError::internal("no cubbyhole mount"))?;
    Ok(u.mount_view(&m.entry, false).sub(&format!("{token_hash}/")))
}

/// Whether a response is wrapped when asked: envelopes only (no 204, no status bodies).
pub fn wrappable(resp: &Response) -> bool {
    matches!(resp.shape, Shape::Envelope | Shape::EnvelopeLegacy) && resp.status == 200
}

/// Replace `resp` by a wrapping token valid for `ttl` seconds.
pub fn wrap(u: &Unsealed, resp: Response, path: &str, ttl: u64) -> Result<Response, ApiError> {
    let data = resp.data_value().map(|d| d.into_owned());
    let wrapped = Wrapped {
        data,
        auth: resp.auth,
        lease_duration: resp.lease_duration,
        renewable: resp.renewable,
        warnings: resp.warnings,
    };
    store(u, &wrapped, path, ttl)
}

fn store(u: &Unsealed, w: &Wrapped, path: &str, ttl: u64) -> Result<Response, ApiError> {
    let (token, entry) = u
        .tokens
        .create(NewToken {
            policies: vec![POLICY.into()],
            no_default_policy: true,
            display_name: "token".into(),
            num_uses: 1,
            ttl,
            explicit_max_ttl: ttl,
            path: path.to_string(),
            ..Default::default()
        })
        .map_err(|e| ApiError::internal(e.to_string()))?;
    cubbyhole(u, &entry.id_hash)?.put_json(KEY, w)?;
    let mut info = json!({
        "token": token.as_str(),
        "accessor": entry.accessor,
        "ttl": entry.creation_ttl,
        "creation_time": rfc3339(entry.creation_time),
        "creation_path": path,
    });
    if let Some(acc) = w.auth.as_ref().and_then(|a| a.get("accessor")) {
        info["wrapped_accessor"] = acc.clone();
    }
    let mut r = Response::data(Value::Null);
    r.data = None;
    r.wrap_info = Some(info);
    Ok(r)
}

fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
        .unwrap_or_default()
}

/// `sys/wrapping/lookup` and `unwrap` need no token of their own: they name the wrapping
/// token (in the body, or as the caller's token).
pub fn unauthenticated(rel: &str) -> bool {
    matches!(rel, "wrapping/lookup" | "wrapping/unwrap")
}

/// The wrapping token a request names, if it is a live one.
fn named(u: &Unsealed, req: &Request) -> Result<Arc<TokenEntry>, ApiError> {
    let token = match fields::opt_str(&req.data, "token")?.filter(|t| !t.is_empty()) {
        Some(t) => Zeroizing::new(t),
        None => match &req.client_token {
            Some(t) if !t.is_empty() => Zeroizing::new(t.to_string()),
            _ => {
                return Err(ApiError::new(
                    403,
                    "error validating wrapping token: token is empty",
                ))
            }
        },
    };
    let e = u.tokens.lookup(&token)?.ok_or_else(invalid)?;
    if e.policies != [POLICY] {
        return Err(invalid());
    }
    Ok(e)
}

fn take(u: &Unsealed, e: &TokenEntry) -> Result<Wrapped, ApiError> {
    let w: Wrapped = cubbyhole(u, &e.id_hash)?
        .get_json(KEY)?
        .ok_or_else(invalid)?;
    u.tokens.revoke_tree(&e.id_hash)?;
    Ok(w)
}

/// `sys/wrapping/{wrap,unwrap,lookup,rewrap}`; `op` is the write of each.
pub fn handle(u: &Unsealed, req: &Request, what: &str) -> Result<Response, ApiError> {
    if !matches!(req.op, Operation::Update | Operation::Create) {
        return Err(ApiError::unsupported_operation());
    }
    match what {
        "wrap" => Err(ApiError::bad_request(
            "endpoint requires response wrapping to be used",
        )),
        "lookup" => {
            let e = named(u, req)?;
            Ok(Response::data(json!({
                "creation_path": e.path,
                "creation_time": rfc3339(e.creation_time),
                "creation_ttl": e.creation_ttl,
            })))
        }
        "unwrap" => {
            let w = take(u, &*named(u, req)?)?;
            let mut r = Response::data(w.data.unwrap_or(Value::Null));
            r.auth = w.auth;
            r.lease_duration = w.lease_duration;
            r.renewable = w.renewable;
            r.warnings = w.warnings;
            Ok(r)
        }
        "rewrap" => {
            let e = named(u, req)?;
            let w = take(u, &e)?;
            store(u, &w, &e.path, e.creation_ttl)
        }
        _ => Err(ApiError::unsupported_path()),
    }
}

/// `sys/wrapping/wrap` with a wrap TTL: the request's own data is the response to wrap.
pub fn wrap_request_data(req: &Request) -> Response {
    Response::data(Value::Object(req.data.clone()))
}
