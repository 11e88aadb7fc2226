//! Key/value secrets: KV v1 (verbatim JSON at a path), KV v2 (versioned, with metadata,
//! soft delete, destroy, check-and-set and merge-patch; paths in [`v2`], storage in
//! [`versions`]) and the per-token cubbyhole (v1's paths, in a view private to the token).

mod v2;
mod versions;

use super::table::{self, Captures, Ops, Route};
use super::Backend;
use crate::barrier::View;
use crate::request::{ApiError, Operation, Request, Response};
use serde_json::{json, Value};

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
    /// Serializes v2 changes: a version number and a check-and-set are read-modify-writes
    /// of the key's metadata (two concurrent writes took the same version without it).
    changes: parking_lot::Mutex<()>,
}

/// KV v1 and the cubbyhole: every path is a key, or a directory when it ends in `/`.
static V1_ROUTES: &[Route<Kv>] = &[Route::new(
    "*path",
    Ops::READ.or(Ops::WRITE).or(Ops::DELETE).or(Ops::LIST),
    None,
    &[],
    v1,
)];

/// A key path with `.`/`..` segments is refused.
fn clean(p: &str) -> Result<&str, ApiError> {
    if p.split('/').any(|s| s == ".." || s == ".") {
        return Err(ApiError::bad_request("invalid path"));
    }
    Ok(p)
}

impl Kv {
    pub fn new(view: View, version: u8) -> Self {
        let mode = if version == 2 { Mode::V2 } else { Mode::V1 };
        Self {
            view,
            mode,
            changes: parking_lot::Mutex::new(()),
        }
    }

    pub fn cubbyhole(view: View) -> Self {
        Self {
            view,
            mode: Mode::Cubbyhole,
            changes: parking_lot::Mutex::new(()),
        }
    }

    fn routes(&self) -> &'static [Route<Kv>] {
        match self.mode {
            Mode::V2 => v2::ROUTES,
            Mode::V1 | Mode::Cubbyhole => V1_ROUTES,
        }
    }

    /// The storage view for this request: a cubbyhole is private to the calling token.
    fn view_for(&self, req: &Request) -> Result<View, ApiError> {
        if self.mode != Mode::Cubbyhole {
            return Ok(self.view.clone());
        }
        let t = req.token.as_ref().ok_or_else(ApiError::permission_denied)?;
        if t.kind != crate::token::TokenKind::Service {
            return Err(ApiError::bad_request(
                "cubbyhole operations are only supported by 'service' type tokens",
            ));
        }
        Ok(self.view.sub(&format!("{}/", t.id_hash)))
    }
}

/// KV v1: the whole path (with its trailing `/`, which makes a read a list) is the key.
fn v1(b: &Kv, req: &Request, _: &Captures) -> Result<Response, ApiError> {
    let view = b.view_for(req)?;
    let path = clean(&req.rel)?;
    match req.op {
        Operation::List => v1_list(&view, path),
        // a read is never a list (OpenBao: `GET kv/` is 404, not the keys)
        Operation::Read if path.is_empty() => Err(ApiError::not_found()),
        Operation::Read => {
            let v: serde_json::Map<String, Value> =
                view.get_json(path)?.ok_or_else(ApiError::not_found)?;
            let mut r = Response::data(Value::Object(v));
            if b.mode == Mode::V1 {
                r.lease_duration = KV1_LEASE;
            }
            Ok(r)
        }
        Operation::Delete => {
            view.delete(path)?;
            Ok(Response::no_content())
        }
        _ if path.is_empty() => Err(ApiError::bad_request("missing path")),
        _ if req.data.is_empty() => Err(ApiError::bad_request("missing data fields")),
        _ => {
            view.put_json(path, &req.data)?;
            Ok(Response::no_content())
        }
    }
}

fn v1_list(view: &View, path: &str) -> Result<Response, ApiError> {
    let prefix = match path {
        "" => String::new(),
        p => format!("{}/", p.trim_end_matches('/')),
    };
    let keys = view.list(&prefix)?;
    if keys.is_empty() {
        return Err(ApiError::not_found());
    }
    Ok(Response::data(json!({ "keys": keys })))
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
        // held while a v2 change is computed and handed to storage (not while it is made
        // durable: commits are deferred), so the next writer sees it
        let changing = self.mode == Mode::V2
            && !matches!(
                req.op,
                crate::request::Operation::Read | crate::request::Operation::List
            );
        let _changing = changing.then(|| self.changes.lock());
        table::dispatch(self, self.routes(), req)
    }

    fn exists(&self, req: &Request) -> Result<Option<bool>, ApiError> {
        let rel = clean(&req.rel)?;
        if self.mode != Mode::V2 {
            return Ok(Some(self.view_for(req)?.get(rel)?.is_some()));
        }
        let (head, p) = rel.split_once('/').unwrap_or((rel, ""));
        match head {
            "data" | "metadata" => Ok(Some(versions::metadata(&self.view, p)?.is_some())),
            "config" => Ok(Some(true)),
            _ => Ok(None),
        }
    }
}
