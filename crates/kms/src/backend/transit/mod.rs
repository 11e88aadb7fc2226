//! Transit secrets engine: encryption as a service, wire-compatible with OpenBao's `transit`
//! (paths, parameters, status codes and error texts; see `protocol-notes.md` §8).
//!
//! Paths (relative to the mount):
//! `keys` (list) · `keys/<k>` (read/create/delete) · `keys/<k>/config` · `keys/<k>/rotate` ·
//! `keys/<k>/trim` · `keys/<k>/soft-delete` · `keys/<k>/soft-delete-restore` ·
//! `encrypt/<k>` (creates a missing key: upsert) · `decrypt/<k>` · `rewrap/<k>` ·
//! `datakey/{plaintext,wrapped}/<k>` · `volumes/<k>` (the volumes it wraps, see [`volumes`]) · `random[/<source>][/<bytes>]` · `hmac/<k>[/<algo>]` ·
//! `verify/<k>[/<algo>]` (HMACs) · `hash[/<algo>]` (plain digests) · `export/<type>/<k>[/<ver>]`
//! (always refused: key material never leaves the server, so
//! `exportable`/`allow_plaintext_backup` are refused too).
//!
//! Hashes (`hmac`, `verify`, `hash`): `sha2-224/256/384/512`, `sha3-224/256/384/512`, and
//! `sha1` for HMACs only, as OpenBao.
//!
//! Key types: `aes256-gcm96` (default), `aes128-gcm96`, `chacha20-poly1305`; `derived` keys
//! (HKDF-SHA256 per context) and `convergent_encryption`. Crypto details and the storage layout
//! are in [`keys`]; the ciphertext decoder is in [`ciphertext`] (pure, fuzzed); OpenBao's field
//! coercion and error texts are in [`params`]; batch items and the per-batch crypto state
//! (one expanded key per version and context, nonces drawn in bulk, reused wiped buffers)
//! are in `batch`.
//!
//! Not implemented: asymmetric/HMAC/xchacha key types, sign, BYOK import, backup/restore,
//! cache config.
//!
//! Automatic rotation (`auto_rotate_period`) happens lazily when a due key is used, and for all
//! keys in [`Transit::rotate_due_keys`], which the core may call periodically (OpenBao checks
//! hourly).

mod batch;
pub mod ciphertext;
mod crypt;
mod digest;
pub mod keys;
mod keys_api;
pub mod params;
mod random;
mod volumes;

#[cfg(test)]
mod tests;

use super::table::{self, Captures, Ops, Route};
use super::Backend;
use crate::barrier::View;
use crate::fields::Data;
use crate::request::{multierror, ApiError, Operation, Request, Response};
use batch::{decode_batch, Answer, Crypter, Item, Outcomes};
use ciphertext::{format_versioned, go_b64_decode, parse_versioned};
use keys::{HashAlg, KeyPolicy, KeyType, TypeLookup};
use params::{go_type, Params};
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use zeroize::Zeroizing;

const POLICY_PREFIX: &str = "policy/";
const TOO_OLD: &str = "ciphertext or signature version is disallowed by policy (too old)";
const RANDOM_MAX_BYTES: i64 = 128 * 1024;

pub struct Transit {
    view: View,
    /// Serializes read-modify-write of key documents (create, upsert, rotate, config, trim,
    /// delete). Encrypt/decrypt only read.
    write_lock: Mutex<()>,
    /// Decrypted key documents by name: every write goes through [`Transit::store`] or the
    /// delete path, which keep it current, so a hot key costs no barrier read per request.
    /// Shared, not copied, with the requests using them. Dropped (and the key bytes
    /// zeroized) with the backend when the core seals, and by the last request still
    /// holding one.
    cache: parking_lot::RwLock<std::collections::HashMap<String, Arc<KeyPolicy>>>,
}

use table::is_name;

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(msg)
}

fn internal(msg: &str) -> ApiError {
    ApiError::internal(multierror(msg))
}

/// A per-item failure; `Internal` ones map to 500 as in OpenBao (`errutil.InternalError`).
#[derive(Clone, Debug)]
enum ItemErr {
    User(String),
    Internal(String),
}

impl ItemErr {
    fn msg(&self) -> &str {
        match self {
            ItemErr::User(m) | ItemErr::Internal(m) => m,
        }
    }
    fn into_api(self) -> ApiError {
        match self {
            ItemErr::User(m) => bad(m),
            ItemErr::Internal(m) => internal(&m),
        }
    }
}

/// mapstructure-style decoding (rewrap into a struct, hmac/verify into `map[string]string`):
/// strings and JSON numbers (a string kind in Go) are accepted for string fields, numbers
/// for `int_fields`; anything else is a 500 `failed to parse batch input: ...`.
fn decode_batch_loose(
    raw: &Value,
    struct_style: bool,
    int_fields: &[&str],
) -> Result<Vec<Map<String, Value>>, ApiError> {
    let fail = |m: String| Err(internal(&format!("failed to parse batch input: {m}")));
    let Value::Array(arr) = raw else {
        return fail(format!(
            "'' source data must be an array or slice, got {}",
            go_type(raw)
        ));
    };
    let mut out = Vec::with_capacity(arr.len());
    let mut errs = Vec::new();
    for (i, v) in arr.iter().enumerate() {
        let Value::Object(m) = v else {
            return fail(format!(
                "decoding failed due to the following error(s):\n\n'[{i}]' expected a map, got '{}'",
                match v {
                    Value::Number(_) => "string",
                    other => go_type(other),
                }
            ));
        };
        let mut norm = Map::new();
        for (k, val) in m {
            let field = if struct_style {
                format!("[{i}].{k}")
            } else {
                format!("[{i}][{k}]")
            };
            let is_int = int_fields.contains(&k.as_str());
            let s = match val {
                Value::Null => continue,
                Value::Number(n) => n.to_string(),
                Value::String(s) if !is_int => s.clone(),
                other => {
                    errs.push(format!(
                        "'{field}' expected type '{}', got unconvertible type '{}'",
                        if is_int { "int" } else { "string" },
                        match other {
                            Value::String(_) => "string",
                            o => go_type(o),
                        }
                    ));
                    continue;
                }
            };
            norm.insert(k.clone(), Value::String(s));
        }
        out.push(norm);
    }
    if !errs.is_empty() {
        return fail(format!(
            "decoding failed due to the following error(s):\n\n{}",
            errs.join("\n")
        ));
    }
    Ok(out)
}

fn item_str(m: &Map<String, Value>, k: &str) -> Option<String> {
    m.get(k).and_then(Value::as_str).map(str::to_string)
}

/// Status for a batch with failures (OpenBao's `batchRequestResponse`).
fn batch_status(resp: Response, p: &Params, outcomes: Outcomes) -> Result<Response, ApiError> {
    let Outcomes {
        successes,
        user_err,
        internal_err,
    } = outcomes;
    if !user_err && !internal_err {
        return Ok(resp);
    }
    let mut code: u16 = if user_err { 400 } else { 500 };
    let mut resp = resp;
    if successes && p.has("partial_failure_response_code") {
        let c = p.int("partial_failure_response_code")?.unwrap_or(0);
        if (1..=599).contains(&c) {
            code = c as u16;
        } else {
            resp = resp.with_warning(format!(
                "invalid HTTP response code override from partial_failure_response_code, reverting to {code}"
            ));
        }
    }
    Ok(resp.with_status(code))
}

const KEYS_FIELDS: &[&str] = &[
    "name",
    "type",
    "derived",
    "convergent_encryption",
    "exportable",
    "allow_plaintext_backup",
    "context",
    "auto_rotate_period",
    "key_size",
    "external_key_ref",
];
const CONFIG_FIELDS: &[&str] = &[
    "name",
    "min_decryption_version",
    "min_encryption_version",
    "deletion_allowed",
    "exportable",
    "allow_plaintext_backup",
    "auto_rotate_period",
];
const ROTATE_FIELDS: &[&str] = &["name", "external_key_ref"];
const TRIM_FIELDS: &[&str] = &["name", "min_available_version"];
const ENCRYPT_FIELDS: &[&str] = &[
    "name",
    "plaintext",
    "context",
    "type",
    "convergent_encryption",
    "key_version",
    "partial_failure_response_code",
    "associated_data",
    "batch_input",
];
const DECRYPT_FIELDS: &[&str] = &[
    "name",
    "ciphertext",
    "context",
    "partial_failure_response_code",
    "associated_data",
    "batch_input",
];
const REWRAP_FIELDS: &[&str] = &[
    "name",
    "ciphertext",
    "context",
    "key_version",
    "batch_input",
];
const DATAKEY_FIELDS: &[&str] = &[
    "name",
    "plaintext",
    "context",
    "bits",
    "key_version",
    "associated_data",
];
const RANDOM_FIELDS: &[&str] = &["urlbytes", "bytes", "format", "source"];
const HASH_FIELDS: &[&str] = &["input", "algorithm", "urlalgorithm", "format"];
const HMAC_FIELDS: &[&str] = &[
    "name",
    "input",
    "algorithm",
    "urlalgorithm",
    "key_version",
    "batch_input",
];
const VERIFY_FIELDS: &[&str] = &[
    "name",
    "context",
    "signature",
    "hmac",
    "input",
    "urlalgorithm",
    "hash_algorithm",
    "algorithm",
    "prehashed",
    "signature_algorithm",
    "marshaling_algorithm",
    "salt_length",
    "batch_input",
];

impl Transit {
    pub fn new(view: View) -> Self {
        Self {
            view,
            write_lock: Mutex::new(()),
            cache: parking_lot::RwLock::new(std::collections::HashMap::new()),
        }
    }

    /// A key document, shared with the cache (no copy of the key material per request).
    fn load(&self, name: &str) -> Result<Option<Arc<KeyPolicy>>, ApiError> {
        if let Some(p) = self.cache.read().get(name) {
            return Ok(Some(p.clone()));
        }
        let p: Option<KeyPolicy> = self.view.get_json(&format!("{POLICY_PREFIX}{name}"))?;
        Ok(p.map(|p| {
            let p = Arc::new(p);
            self.cache.write().insert(name.to_string(), p.clone());
            p
        }))
    }

    /// A private copy of a key document, to change and [`Transit::store`] (callers hold
    /// `write_lock`). Read from storage, not the cache: a read-modify-write based on a copy
    /// older than the stored one would drop what was stored in between (a rotation, an
    /// acknowledged version). A cache that disagrees is replaced, and said so: it should
    /// not happen (the cache of a failed, uncommitted change is the one known way).
    fn load_owned(&self, name: &str) -> Result<Option<KeyPolicy>, ApiError> {
        let stored: Option<KeyPolicy> = self.view.get_json(&format!("{POLICY_PREFIX}{name}"))?;
        let mut cache = self.cache.write();
        match &stored {
            Some(p) => {
                if let Some(c) = cache.get(name) {
                    if c.latest_version != p.latest_version {
                        tracing::warn!(
                            key = name,
                            cached = c.latest_version,
                            stored = p.latest_version,
                            "transit key cache disagreed with storage; storage wins"
                        );
                    }
                }
                cache.insert(name.to_string(), Arc::new(p.clone()));
            }
            None => {
                cache.remove(name);
            }
        }
        Ok(stored)
    }

    /// Load a key for use (encrypt, rewrap, datakey, hmac, read): if its
    /// `auto_rotate_period` has elapsed, rotate it first, so automatic rotation holds even
    /// between runs of [`Transit::rotate_due_keys`].
    fn load_current(&self, name: &str) -> Result<Option<Arc<KeyPolicy>>, ApiError> {
        let Some(p) = self.load(name)? else {
            return Ok(None);
        };
        if !p.rotation_due(keys::now_unix()) {
            return Ok(Some(p));
        }
        let _g = self.write_lock.lock();
        let Some(mut p) = self.load_owned(name)? else {
            return Ok(None);
        };
        if p.rotation_due(keys::now_unix()) {
            p.rotate();
            return self.store(&p).map(Some);
        }
        Ok(Some(Arc::new(p)))
    }

    /// Persist a key document and make it the cached one.
    fn store(&self, p: &KeyPolicy) -> Result<Arc<KeyPolicy>, ApiError> {
        self.view
            .put_json(&format!("{POLICY_PREFIX}{}", p.name), p)?;
        let shared = Arc::new(p.clone());
        self.cache.write().insert(p.name.clone(), shared.clone());
        Ok(shared)
    }

    /// Rotate every key whose `auto_rotate_period` has elapsed since its latest version was
    /// created. Returns how many keys were rotated. Meant to be called periodically by the core.
    pub fn rotate_due_keys(&self) -> Result<usize, ApiError> {
        let now = keys::now_unix();
        let mut n = 0;
        for name in self.view.list(POLICY_PREFIX)? {
            if name.ends_with('/') {
                continue;
            }
            let Some(p) = self.load(&name)? else { continue };
            if !p.rotation_due(now) {
                continue;
            }
            let _g = self.write_lock.lock();
            if let Some(mut p) = self.load_owned(&name)? {
                if p.rotation_due(now) {
                    p.rotate();
                    self.store(&p)?;
                    n += 1;
                }
            }
        }
        Ok(n)
    }
}

const W: Ops = Ops::WRITE;

/// Every path of the engine: pattern, operations, declared body fields, path captures.
static ROUTES: &[Route<Transit>] = &[
    route("keys", Ops::LIST, None, &[], |t, _, _| t.list_keys()),
    route(
        "keys/:name",
        Ops::READ.or(W).or(Ops::DELETE),
        Some(KEYS_FIELDS),
        &["name"],
        keys_name,
    ),
    route(
        "keys/:name/soft-delete",
        Ops::DELETE,
        None,
        &[],
        |t, _, c| t.soft_delete(c.get("name"), true),
    ),
    route(
        "keys/:name/soft-delete-restore",
        W,
        Some(&["name"]),
        &["name"],
        |t, _, c| t.soft_delete(c.get("name"), false),
    ),
    route(
        "keys/:name/config",
        W,
        Some(CONFIG_FIELDS),
        &["name"],
        |t, r, c| t.config_key(c.get("name"), &r.data),
    ),
    route(
        "keys/:name/rotate",
        W,
        Some(ROTATE_FIELDS),
        &["name"],
        |t, r, c| t.rotate_key(c.get("name"), &r.data),
    ),
    route(
        "keys/:name/trim",
        W,
        Some(TRIM_FIELDS),
        &["name"],
        |t, r, c| t.trim_key(c.get("name"), &r.data),
    ),
    route(
        "encrypt/:name",
        W,
        Some(ENCRYPT_FIELDS),
        &["name"],
        |t, r, c| t.encrypt(c.get("name"), r),
    ),
    route(
        "decrypt/:name",
        W,
        Some(DECRYPT_FIELDS),
        &["name"],
        |t, r, c| t.decrypt(c.get("name"), &r.data),
    ),
    route(
        "rewrap/:name",
        W,
        Some(REWRAP_FIELDS),
        &["name"],
        |t, r, c| t.rewrap(c.get("name"), &r.data),
    ),
    route(
        "datakey/:plaintext/:name",
        W,
        Some(DATAKEY_FIELDS),
        &["name", "plaintext"],
        |t, r, c| t.datakey(c.get("plaintext"), c.get("name"), &r.data),
    ),
    route(
        "random/*rest",
        W,
        Some(RANDOM_FIELDS),
        &["source", "urlbytes"],
        |t, r, c| t.random(c.opt("rest"), &r.data),
    ),
    route(
        "hash/*urlalgorithm",
        W,
        Some(HASH_FIELDS),
        &["urlalgorithm"],
        |t, r, c| t.hash(c.opt("urlalgorithm"), &r.data),
    ),
    // unmatched optional groups are captured too (as "")
    route(
        "hmac/:name/*urlalgorithm",
        W,
        Some(HMAC_FIELDS),
        &["name", "urlalgorithm"],
        |t, r, c| t.hmac(c.get("name"), c.opt("urlalgorithm"), &r.data),
    ),
    route(
        "verify/:name/*urlalgorithm",
        W,
        Some(VERIFY_FIELDS),
        &["name", "urlalgorithm"],
        |t, r, c| t.verify(c.get("name"), c.opt("urlalgorithm"), &r.data),
    ),
    route("volumes/:name", Ops::READ, None, &[], |t, _, c| {
        t.read_volumes(c.get("name"))
    }),
    route("export/:type/:name", Ops::READ, None, &[], export),
    route("export/:type/:name/:version", Ops::READ, None, &[], export),
];

const fn route(
    pattern: &'static str,
    ops: Ops,
    fields: Option<&'static [&'static str]>,
    captures: &'static [&'static str],
    handler: table::Handler<Transit>,
) -> Route<Transit> {
    Route::new(pattern, ops, fields, captures, handler)
}

fn keys_name(t: &Transit, r: &Request, c: &Captures) -> Result<Response, ApiError> {
    let name = c.get("name");
    match r.op {
        Operation::Read => t.read_key(name),
        Operation::Delete => t.delete_key(name),
        _ => t.write_key(name, &r.data),
    }
}

fn export(t: &Transit, _: &Request, c: &Captures) -> Result<Response, ApiError> {
    t.export(c.get("type"), c.get("name"))
}

impl Backend for Transit {
    /// `encrypt/<key>`, `decrypt/<key>`, ..., `datakey/<type>/<key>`.
    fn key_operation<'a>(&self, rel: &'a str) -> Option<(&'a str, &'static str)> {
        let mut parts = rel.splitn(3, '/');
        let (kind, key) = (parts.next()?, parts.next()?);
        let kind = ["encrypt", "decrypt", "rewrap", "datakey", "hmac", "verify"]
            .into_iter()
            .find(|k| *k == kind)?;
        let key = if kind == "datakey" {
            parts.next().unwrap_or(key)
        } else {
            key
        };
        Some((key, kind))
    }

    fn handle(&self, req: &Request) -> Result<Response, ApiError> {
        table::dispatch(self, ROUTES, req)
    }

    fn exists(&self, req: &Request) -> Result<Option<bool>, ApiError> {
        match req.rel.split_once('/') {
            Some(("encrypt", name)) if is_name(name) => Ok(Some(self.load(name)?.is_some())),
            _ => Ok(None),
        }
    }
}
