//! Transit secrets engine: encryption as a service, wire-compatible with OpenBao's `transit`
//! (paths, parameters, status codes and error texts; see `protocol-notes.md` §8).
//!
//! Paths (relative to the mount):
//! `keys` (list) · `keys/<k>` (read/create/delete) · `keys/<k>/config` · `keys/<k>/rotate` ·
//! `keys/<k>/trim` · `keys/<k>/soft-delete` · `keys/<k>/soft-delete-restore` ·
//! `encrypt/<k>` (creates a missing key: upsert) · `decrypt/<k>` · `rewrap/<k>` ·
//! `datakey/{plaintext,wrapped}/<k>` · `random[/<source>][/<bytes>]` · `hmac/<k>[/<algo>]` ·
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
pub mod keys;
pub mod params;

#[cfg(test)]
mod tests;

use super::Backend;
use crate::barrier::View;
use crate::fields::Data;
use crate::request::{multierror, ApiError, Operation, Request, Response};
use batch::{decode_batch, Answer, Crypter, Item, Outcomes};
use ciphertext::{format_versioned, go_b64_decode, parse_versioned};
use keys::{HashAlg, KeyPolicy, KeyType, TypeLookup};
use params::{go_type, ignored_warning, Params};
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

/// OpenBao's `GenericNameRegex`: `\w(([\w-.]+)?\w)?` (ASCII).
fn is_name(s: &str) -> bool {
    let b = s.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    match (b.first(), b.last()) {
        (Some(&f), Some(&l)) => {
            word(f) && word(l) && b.iter().all(|&c| word(c) || c == b'-' || c == b'.')
        }
        _ => false,
    }
}

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

/// The framework's warnings, appended after the handler's own: body fields the path does
/// not declare, and body values overridden by a value captured from the path.
fn framework_warnings(
    resp: Result<Response, ApiError>,
    d: &Data,
    known: &[&str],
    captures: &[&str],
) -> Result<Response, ApiError> {
    let mut resp = resp?;
    if let Some(w) = ignored_warning(d, known) {
        resp = resp.with_warning(w);
    }
    let mut replaced: Vec<&str> = captures
        .iter()
        .copied()
        .filter(|k| d.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    if !replaced.is_empty() {
        replaced.sort_unstable();
        resp = resp.with_warning(format!(
            "Endpoint replaced the value of these parameters with the values captured from the endpoint's path: [{}]",
            replaced.join(" ")
        ));
    }
    Ok(resp)
}

fn is_write(op: Operation) -> bool {
    matches!(op, Operation::Create | Operation::Update)
}

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

    /// A private copy of a key document, to change and [`Transit::store`].
    fn load_owned(&self, name: &str) -> Result<Option<KeyPolicy>, ApiError> {
        Ok(self.load(name)?.map(Arc::unwrap_or_clone))
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

    // ---- keys ------------------------------------------------------------------------

    fn list_keys(&self) -> Result<Response, ApiError> {
        let mut names: Vec<String> = self
            .view
            .list(POLICY_PREFIX)?
            .into_iter()
            .filter(|n| !n.ends_with('/'))
            .collect();
        if names.is_empty() {
            return Err(ApiError::not_found());
        }
        names.sort();
        Ok(Response::data(json!({ "keys": names })))
    }

    fn read_key(&self, name: &str) -> Result<Response, ApiError> {
        match self.load_current(name)? {
            Some(p) => Ok(Response::data(p.info())),
            None => Err(ApiError::not_found()),
        }
    }

    fn write_key(&self, name: &str, d: &Data) -> Result<Response, ApiError> {
        let p = Params::validated(d);
        let derived = p.bool_or("derived", false)?;
        let convergent = p.bool_or("convergent_encryption", false)?;
        let key_type = p.str_or("type", "aes256-gcm96")?;
        let key_size = p.int_or("key_size", 0)?;
        let exportable = p.bool_or("exportable", false)?;
        let external_key_ref = p.str_or("external_key_ref", "")?;
        let plaintext_backup = p.bool_or("allow_plaintext_backup", false)?;
        let auto_rotate = p.duration("auto_rotate_period")?.unwrap_or(0);
        p.str("context")?;

        if auto_rotate != 0 && auto_rotate < 3600 {
            return Err(bad(
                "auto rotate period must be 0 to disable or at least an hour",
            ));
        }
        if !derived && convergent {
            return Err(bad(
                "convergent encryption requires derivation to be enabled",
            ));
        }
        let kt = match KeyType::lookup(&key_type) {
            TypeLookup::Supported(kt) => kt,
            TypeLookup::Unsupported => {
                return Err(bad(format!(
                    "key type {key_type} is not supported by this server; supported types: aes256-gcm96, aes128-gcm96, chacha20-poly1305"
                )))
            }
            TypeLookup::Unknown => return Err(bad(format!("unknown key type {key_type}"))),
        };
        if key_size != 0 {
            return Err(bad(format!(
                "key_size is not valid for algorithm {}",
                kt.as_str()
            )));
        }
        if !external_key_ref.is_empty() {
            return Err(bad(
                "must provide type=external-key to use external_key_ref",
            ));
        }
        if exportable {
            return Err(bad(
                "exportable keys are not supported by this server: key material never leaves it",
            ));
        }
        if plaintext_backup {
            return Err(bad(
                "allow_plaintext_backup is not supported by this server: key material never leaves it",
            ));
        }

        let _g = self.write_lock.lock();
        let policy = match self.load(name)? {
            Some(existing) => existing,
            None => {
                let mut np = KeyPolicy::new(name, kt, derived, auto_rotate);
                np.convergent = convergent;
                self.store(&np)?
            }
        };
        Ok(Response::data(policy.info()))
    }

    fn delete_key(&self, name: &str) -> Result<Response, ApiError> {
        let _g = self.write_lock.lock();
        let p = self.load(name)?.ok_or_else(|| {
            bad(format!(
                "error deleting policy {name}: could not delete key; not found"
            ))
        })?;
        if !p.deletion_allowed {
            return Err(bad(format!(
                "error deleting policy {name}: deletion is not allowed for this key"
            )));
        }
        self.view.delete(&format!("{POLICY_PREFIX}{name}"))?;
        self.cache.write().remove(name);
        Ok(Response::no_content())
    }

    /// `keys/<k>/soft-delete` (DELETE) and `keys/<k>/soft-delete-restore` (UPDATE).
    fn soft_delete(&self, name: &str, delete: bool) -> Result<Response, ApiError> {
        let _g = self.write_lock.lock();
        let Some(mut p) = self.load_owned(name)? else {
            return Ok(Response::no_content());
        };
        let changed = p.soft_deleted != delete;
        p.soft_deleted = delete;
        self.store(&p)?;
        let resp = Response::data(p.info());
        Ok(match (changed, delete) {
            (false, true) => resp.with_warning("key was already marked as soft deleted"),
            (false, false) => resp.with_warning("key was already restored"),
            _ => resp,
        })
    }

    fn config_key(&self, name: &str, d: &Data) -> Result<Response, ApiError> {
        let prm = Params::validated(d);
        let min_dec = prm.int("min_decryption_version")?;
        let min_enc = prm.int("min_encryption_version")?;
        let deletion_allowed = prm.bool("deletion_allowed")?;
        let exportable = prm.bool("exportable")?;
        let plaintext_backup = prm.bool("allow_plaintext_backup")?;
        let auto_rotate = prm.duration("auto_rotate_period")?;

        let _g = self.write_lock.lock();
        let mut p = self
            .load_owned(name)?
            .ok_or_else(|| bad(format!("no existing key named {name} could be found")))?;
        let mut warning = None;
        let mut persist = false;

        if let Some(mut v) = min_dec {
            if v < 0 {
                return Err(bad("min decryption version cannot be negative"));
            }
            if v == 0 {
                v = 1;
                warning = Some("since Vault 0.3 (prior to the OpenBao fork), transit key numbering starts at 1; forcing minimum to 1");
            }
            if v != p.min_decryption_version {
                if v > p.latest_version {
                    return Err(bad(format!(
                        "cannot set min decryption version of {v}, latest key version is {}",
                        p.latest_version
                    )));
                }
                p.min_decryption_version = v;
                persist = true;
            }
        }
        if let Some(v) = min_enc {
            if v < 0 {
                return Err(bad("min encryption version cannot be negative"));
            }
            if v != p.min_encryption_version {
                if v > p.latest_version {
                    return Err(bad(format!(
                        "cannot set min encryption version of {v}, latest key version is {}",
                        p.latest_version
                    )));
                }
                p.min_encryption_version = v;
                persist = true;
            }
        }
        if p.min_encryption_version > 0 && p.min_encryption_version < p.min_decryption_version {
            return Err(bad(format!(
                "cannot set min encryption/decryption values; min encryption version of {} must be greater than or equal to min decryption version of {}",
                p.min_encryption_version, p.min_decryption_version
            )));
        }
        if let Some(v) = deletion_allowed {
            if v != p.deletion_allowed {
                p.deletion_allowed = v;
                persist = true;
            }
        }
        if exportable == Some(true) {
            return Err(bad(
                "exportable keys are not supported by this server: key material never leaves it",
            ));
        }
        if plaintext_backup == Some(true) {
            return Err(bad(
                "allow_plaintext_backup is not supported by this server: key material never leaves it",
            ));
        }
        if let Some(secs) = auto_rotate {
            if secs != 0 && secs < 3600 {
                return Err(bad(
                    "auto rotate period must be 0 to disable or at least an hour",
                ));
            }
            if secs != p.auto_rotate_period {
                p.auto_rotate_period = secs;
                persist = true;
            }
        }
        if persist {
            if p.min_available_version > p.min_encryption_version {
                return Err(bad(
                    "min encryption version should not be less than min available version",
                ));
            }
            if p.min_available_version > p.min_decryption_version {
                return Err(bad(
                    "min decryption version should not be less then min available version",
                ));
            }
            self.store(&p)?;
        }
        let mut resp = Response::data(p.info());
        if let Some(w) = warning {
            resp = resp.with_warning(w);
        }
        Ok(resp)
    }

    fn rotate_key(&self, name: &str, d: &Data) -> Result<Response, ApiError> {
        let prm = Params::validated(d);
        let ext = prm.str_or("external_key_ref", "")?;
        let _g = self.write_lock.lock();
        let mut p = self.load_owned(name)?.ok_or_else(|| bad("key not found"))?;
        if !ext.is_empty() {
            return Err(bad(format!(
                "cannot use external_key_ref on key of type {}",
                p.key_type.as_str()
            )));
        }
        if p.soft_deleted {
            return Err(internal(keys::SOFT_DELETED));
        }
        p.rotate();
        self.store(&p)?;
        Ok(Response::data(p.info()))
    }

    fn trim_key(&self, name: &str, d: &Data) -> Result<Response, ApiError> {
        let prm = Params::validated(d);
        let min_avail = prm.int("min_available_version")?;
        let _g = self.write_lock.lock();
        let mut p = self
            .load_owned(name)?
            .ok_or_else(|| bad("invalid key name"))?;
        let Some(v) = min_avail else {
            return Err(bad("missing min_available_version"));
        };
        let msg = if v < p.min_available_version {
            Some("minimum available version cannot be decremented")
        } else if p.min_encryption_version == 0 {
            Some("minimum available version cannot be set when minimum encryption version is not set")
        } else if p.min_decryption_version == 0 {
            Some("minimum available version cannot be set when minimum decryption version is not set")
        } else if v > p.min_encryption_version {
            Some("minimum available version cannot be greater than minmum encryption version")
        } else if v > p.min_decryption_version {
            Some("minimum available version cannot be greater than minimum decryption version")
        } else if v < 0 {
            Some("minimum available version cannot be negative")
        } else if v == 0 {
            Some("minimum available version should be positive")
        } else {
            None
        };
        if let Some(m) = msg {
            return Err(bad(m));
        }
        p.min_available_version = v;
        p.trim();
        self.store(&p)?;
        Ok(Response::data(p.info()))
    }

    // ---- encrypt / decrypt / rewrap ----------------------------------------------------

    fn encrypt(&self, name: &str, req: &Request) -> Result<Response, ApiError> {
        let d = &req.data;
        let prm = Params::lazy(d);
        let batch_raw = d.get("batch_input").filter(|v| !v.is_null());
        let single: (String, String, String);
        let items = match batch_raw {
            Some(raw) => {
                let items = decode_batch(raw, true, false)?;
                if items.is_empty() {
                    return Err(bad("missing batch input to process"));
                }
                items
            }
            None => {
                let Some(plaintext) = prm.str("plaintext")? else {
                    return Err(bad("missing plaintext to encrypt"));
                };
                let context = prm.str_or("context", "")?;
                let key_version = prm.int_or("key_version", 0)?;
                single = (plaintext, context, prm.str_or("associated_data", "")?);
                vec![Item {
                    plaintext: &single.0,
                    context: &single.1,
                    key_version,
                    associated_data: &single.2,
                    ..Item::default()
                }]
            }
        };
        // Before the key is looked up or created; input decoding fails per item.
        batch::check_contexts(&items)?;
        let context_set = !items[0].context.is_empty();

        // Look up the key; create it on first use (upsert), derived iff a context was given.
        let mut warning = None;
        let policy = match self.load_current(name)? {
            Some(p) => {
                if req.op == Operation::Create {
                    warning = Some("Attempted creation of the key during the encrypt operation, but it was created beforehand");
                }
                p
            }
            None => {
                let convergent = Params::lazy(d).bool_or("convergent_encryption", false)?;
                if convergent && !context_set {
                    return Err(bad("convergent encryption requires derivation to be enabled, so context is required"));
                }
                let key_type = prm.str_or("type", "aes256-gcm96")?;
                let kt = match KeyType::lookup(&key_type) {
                    TypeLookup::Supported(kt) => kt,
                    _ if key_type.starts_with("ecdsa-p")
                        && matches!(
                            key_type.as_str(),
                            "ecdsa-p256" | "ecdsa-p384" | "ecdsa-p521"
                        ) =>
                    {
                        return Err(bad(format!(
                            "key type {key_type} not supported for this operation"
                        )))
                    }
                    TypeLookup::Unsupported if key_type == "xchacha20-poly1305" => {
                        return Err(bad(format!(
                            "key type {key_type} is not supported by this server"
                        )))
                    }
                    _ => return Err(bad(format!("unknown key type {key_type}"))),
                };
                let _g = self.write_lock.lock();
                match self.load(name)? {
                    Some(p) => p,
                    None => {
                        let mut np = KeyPolicy::new(name, kt, context_set, 0);
                        np.convergent = convergent;
                        self.store(&np)?
                    }
                }
            }
        };

        let mut crypter = Crypter::new(&policy, items.len());
        let estimate = items
            .iter()
            .map(|it| it.plaintext.len() + it.reference.len() + 96)
            .sum();
        let mut ans = Answer::new(batch_raw.is_some(), estimate);
        for it in &items {
            ans.begin_item();
            let mark = ans.out.len();
            ans.out.push_str("\"ciphertext\":\"");
            let r = crypter
                .set_plaintext(it.plaintext)
                .and_then(|()| crypter.set_context(it.context))
                .and_then(|()| {
                    crypter.encrypt_into(it.key_version, it.associated_data, &mut ans.out)
                });
            match ans.outcome(r)? {
                Ok(v) => {
                    ans.out.push_str("\",\"key_version\":");
                    ciphertext::push_int(&mut ans.out, v);
                }
                Err(e) => {
                    ans.out.truncate(mark);
                    ans.error_field(&e);
                }
            }
            ans.end_item(it.reference);
        }
        let (mut resp, outcomes) = ans.finish();
        if let Some(w) = warning {
            resp = resp.with_warning(w);
        }
        batch_status(resp, &prm, outcomes)
    }

    fn decrypt(&self, name: &str, d: &Data) -> Result<Response, ApiError> {
        let prm = Params::validated(d);
        let batch_raw = d.get("batch_input").filter(|v| !v.is_null());
        let single: (String, String, String);
        let items = match batch_raw {
            Some(raw) => {
                let items = decode_batch(raw, false, true)?;
                if items.is_empty() {
                    return Err(bad("missing batch input to process"));
                }
                items
            }
            None => {
                single = (
                    prm.str_or("ciphertext", "")?,
                    prm.str_or("context", "")?,
                    prm.str_or("associated_data", "")?,
                );
                if single.0.is_empty() {
                    return Err(bad("missing ciphertext to decrypt"));
                }
                vec![Item {
                    ciphertext: &single.0,
                    context: &single.1,
                    associated_data: &single.2,
                    ..Item::default()
                }]
            }
        };
        batch::check_contexts(&items)?;
        let policy = self
            .load(name)?
            .ok_or_else(|| bad("encryption key not found"))?;

        let mut crypter = Crypter::new(&policy, 0);
        let estimate = items
            .iter()
            .map(|it| it.ciphertext.len() + it.reference.len() + 48)
            .sum();
        let mut ans = Answer::new(batch_raw.is_some(), estimate);
        for it in &items {
            let r = if it.ciphertext.is_empty() {
                Err(ItemErr::User("missing ciphertext to decrypt".into()))
            } else {
                crypter
                    .set_context(it.context)
                    .and_then(|()| crypter.decrypt(it.ciphertext, it.associated_data))
            };
            let r = ans.outcome(r)?;
            ans.begin_item();
            ans.out.push_str("\"plaintext\":\"");
            match r {
                Ok(()) => {
                    ciphertext::b64_encode_into(&mut ans.out, &crypter.plaintext);
                    ans.out.push('"');
                }
                Err(e) => {
                    ans.out.push_str("\",");
                    ans.error_field(&e);
                }
            }
            ans.end_item(it.reference);
        }
        let (resp, outcomes) = ans.finish();
        batch_status(resp, &prm, outcomes)
    }

    fn rewrap(&self, name: &str, d: &Data) -> Result<Response, ApiError> {
        let prm = Params::validated(d);
        let batch_raw = d.get("batch_input").filter(|v| !v.is_null());
        let raw_items;
        let single: (String, String);
        let items: Vec<Item> = match batch_raw {
            Some(raw) => {
                raw_items = decode_batch_loose(raw, true, &["key_version"])?;
                if raw_items.is_empty() {
                    return Err(bad("missing batch input to process"));
                }
                fn field<'m>(m: &'m Map<String, Value>, k: &str) -> &'m str {
                    m.get(k).and_then(Value::as_str).unwrap_or_default()
                }
                let mut out = Vec::with_capacity(raw_items.len());
                for (i, m) in raw_items.iter().enumerate() {
                    let key_version = match m.get("key_version").and_then(Value::as_str) {
                        None => 0,
                        Some(s) => s.parse::<i64>().map_err(|_| {
                            internal(&format!(
                                "failed to parse batch input: decoding failed due to the following error(s):\n\ncannot parse '[{i}].key_version' as int: strconv.ParseInt: parsing \"{s}\": invalid syntax"
                            ))
                        })?,
                    };
                    out.push(Item {
                        ciphertext: field(m, "ciphertext"),
                        context: field(m, "context"),
                        reference: field(m, "reference"),
                        key_version,
                        ..Item::default()
                    });
                }
                out
            }
            None => {
                let ciphertext = prm.str_or("ciphertext", "")?;
                let context = prm.str_or("context", "")?;
                let key_version = prm.int_or("key_version", 0)?;
                if ciphertext.is_empty() {
                    return Err(bad("missing ciphertext to decrypt"));
                }
                single = (ciphertext, context);
                vec![Item {
                    ciphertext: &single.0,
                    context: &single.1,
                    key_version,
                    ..Item::default()
                }]
            }
        };
        batch::check_contexts(&items)?;
        let policy = self
            .load_current(name)?
            .ok_or_else(|| bad("encryption key not found"))?;
        let mut crypter = Crypter::new(&policy, items.len());
        let mut results = Vec::with_capacity(items.len());
        for it in &items {
            let r = if it.ciphertext.is_empty() {
                Err(ItemErr::User("missing ciphertext to decrypt".into()))
            } else {
                crypter
                    .set_context(it.context)
                    .and_then(|()| crypter.decrypt(it.ciphertext, ""))
                    .and_then(|()| crypter.encrypt(it.key_version, ""))
            };
            if let Err(ItemErr::Internal(m)) = &r {
                return Err(internal(m));
            }
            results.push(r);
        }
        let resp = if batch_raw.is_some() {
            let out = results
                .into_iter()
                .zip(&items)
                .map(|(r, it)| {
                    let reference = Value::String(it.reference.to_owned());
                    match r {
                        Ok((ct, v)) => batch::object([
                            ("ciphertext", Value::String(ct)),
                            ("key_version", Value::from(v)),
                            ("reference", reference),
                        ]),
                        Err(e) => batch::object([
                            ("error", Value::String(e.msg().to_owned())),
                            ("reference", reference),
                        ]),
                    }
                })
                .collect();
            Response::data(batch::object([("batch_results", Value::Array(out))]))
        } else {
            let (ct, v) = results
                .pop()
                .expect("one item")
                .map_err(ItemErr::into_api)?;
            Response::data(batch::object([
                ("ciphertext", Value::String(ct)),
                ("key_version", Value::from(v)),
            ]))
        };
        Ok(resp)
    }

    // ---- datakey / random / hmac / verify ----------------------------------------------

    fn datakey(&self, kind: &str, name: &str, d: &Data) -> Result<Response, ApiError> {
        let prm = Params::validated(d);
        let ver = prm.int_or("key_version", 0)?;
        let bits = prm.int_or("bits", 256)?;
        let context_raw = prm.str_or("context", "")?;
        let ad = prm.str_or("associated_data", "")?;
        let with_plaintext = match kind {
            "plaintext" => true,
            "wrapped" => false,
            _ => return Err(bad("Invalid path, must be 'plaintext' or 'wrapped'")),
        };
        let context = if context_raw.is_empty() {
            vec![]
        } else {
            go_b64_decode(&context_raw).map_err(|_| bad("failed to base64-decode context"))?
        };
        let policy = self
            .load_current(name)?
            .ok_or_else(|| bad("encryption key not found"))?;
        let len = match bits {
            512 => 64,
            256 => 32,
            128 => 16,
            _ => return Err(bad("invalid bit length")),
        };
        let new_key = crate::crypto::random_vec(len);
        let mut crypter = Crypter::new(&policy, 1);
        crypter.set_context_bytes(&context);
        crypter.set_plaintext_bytes(&new_key);
        let (ct, v) = crypter.encrypt(ver, &ad).map_err(ItemErr::into_api)?;
        let mut data = batch::object([
            ("ciphertext", Value::String(ct)),
            ("key_version", Value::from(v)),
        ]);
        if with_plaintext {
            if let Value::Object(m) = &mut data {
                m.insert(
                    "plaintext".into(),
                    Value::String(ciphertext::b64_encode(&new_key)),
                );
            }
        }
        Ok(Response::data(data))
    }

    fn random(&self, rest: Option<&str>, d: &Data) -> Result<Response, ApiError> {
        let prm = Params::validated(d);
        let body_bytes = prm.int_or("bytes", 32)?;
        let format = prm.str_or("format", "base64")?;
        // `random(/<source>)?(/<urlbytes>.+)?` where <source> is a generic name.
        let (src, url): (&str, &str) = match rest {
            None => ("", ""),
            Some(r) => {
                let (first, tail) = match r.split_once('/') {
                    Some((a, b)) => (a, Some(b)),
                    None => (r, None),
                };
                if is_name(first) {
                    (first, tail.unwrap_or(""))
                } else {
                    ("", r)
                }
            }
        };
        let atoi = |s: &str| -> Result<i64, ApiError> {
            s.parse::<i64>().map_err(|e| {
                let why = if matches!(
                    e.kind(),
                    std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow
                ) {
                    "value out of range"
                } else {
                    "invalid syntax"
                };
                bad(format!(
                    "error parsing url-set byte count: strconv.Atoi: parsing {s:?}: {why}"
                ))
            })
        };
        let valid_source = |s: &str| matches!(s, "" | "platform" | "seal" | "all");
        let (source, bytes) = if src.is_empty() {
            ("platform", body_bytes)
        } else if url.is_empty() && valid_source(src) {
            (src, body_bytes)
        } else if url.is_empty() {
            ("platform", atoi(src)?)
        } else {
            (src, atoi(url)?)
        };
        if bytes < 1 {
            return Err(bad("'bytes' cannot be less than 1"));
        }
        if bytes > RANDOM_MAX_BYTES {
            return Err(bad(format!(
                "'bytes' should be less than {RANDOM_MAX_BYTES}"
            )));
        }
        if format != "hex" && format != "base64" {
            return Err(bad(format!(
                "unsupported encoding format {format:?}; must be \"hex\" or \"base64\""
            )));
        }
        let warning = match source {
            "" | "platform" | "all" => None,
            "seal" => Some("no seal/entropy augmentation available, using platform entropy source"),
            other => {
                return Err(bad(format!(
                    "unsupported entropy source {other:?}; must be \"platform\" or \"seal\", or \"all\""
                )))
            }
        };
        let buf = crate::crypto::random_vec(bytes as usize);
        let out = if format == "hex" {
            hex::encode(&buf[..])
        } else {
            ciphertext::b64_encode(&buf)
        };
        let mut resp = Response::data(json!({ "random_bytes": out }));
        if let Some(w) = warning {
            resp = resp.with_warning(w);
        }
        Ok(resp)
    }

    /// OpenBao's `Policy.HMACKey`.
    fn hmac_key(p: &KeyPolicy, ver: i64) -> Result<&[u8], String> {
        if p.soft_deleted {
            return Err(keys::SOFT_DELETED.into());
        }
        if ver < 0 {
            return Err("key version does not exist (cannot be negative)".into());
        }
        if ver > p.latest_version {
            return Err(format!(
                "key version does not exist; latest key version is {}",
                p.latest_version
            ));
        }
        p.entry(ver)
            .map(|e| &e.hmac_key.0[..])
            .ok_or_else(|| "no such key version".to_string())
    }

    fn hmac(&self, name: &str, url_alg: Option<&str>, d: &Data) -> Result<Response, ApiError> {
        let prm = Params::validated(d);
        let ver = prm.int_or("key_version", 0)?;
        let alg_name = match url_alg {
            Some(a) if !a.is_empty() => a.to_string(),
            _ => prm.str_or("algorithm", "sha2-256")?,
        };
        let policy = self
            .load_current(name)?
            .ok_or_else(|| bad("encryption key not found"))?;
        let ver = if ver == 0 {
            policy.latest_version
        } else if ver != policy.latest_version
            && policy.min_encryption_version > 0
            && ver < policy.min_encryption_version
        {
            return Err(bad(
                "cannot generate HMAC: version is too old (disallowed by policy)",
            ));
        } else {
            ver
        };
        let key = Zeroizing::new(Self::hmac_key(&policy, ver).map_err(bad)?.to_vec());
        let Some(alg) = HashAlg::parse(&alg_name) else {
            // OpenBao prints the zero value of its hash type here
            return Err(bad("unsupported algorithm '\\x00'"));
        };
        let batch_raw = d.get("batch_input").filter(|v| !v.is_null());
        let inputs: Vec<Map<String, Value>> = match batch_raw {
            Some(raw) => {
                let v = decode_batch_loose(raw, false, &[])?;
                if v.is_empty() {
                    return Err(bad("missing batch input to process"));
                }
                v
            }
            None => {
                let Some(input) = prm.str("input")? else {
                    return Err(bad("missing input for HMAC"));
                };
                let mut m = Map::new();
                m.insert("input".into(), json!(input));
                vec![m]
            }
        };
        let mut results: Vec<Result<String, String>> = Vec::with_capacity(inputs.len());
        for m in &inputs {
            let r = match item_str(m, "input") {
                None => Err("missing input for HMAC".to_string()),
                Some(s) => match go_b64_decode(&s) {
                    Err(e) => Err(format!("unable to decode input as base64: {e}")),
                    Ok(input) => Ok(format_versioned(ver, &keys::hmac(alg, &key, &input))),
                },
            };
            results.push(r);
        }
        let resp = if batch_raw.is_some() {
            let out: Vec<Value> = results
                .into_iter()
                .zip(&inputs)
                .map(|(r, m)| {
                    let mut o = Map::new();
                    match r {
                        Ok(h) => o.insert("hmac".into(), Value::String(h)),
                        Err(e) => o.insert("error".into(), Value::String(e)),
                    };
                    o.insert(
                        "reference".into(),
                        Value::String(item_str(m, "reference").unwrap_or_default()),
                    );
                    Value::Object(o)
                })
                .collect();
            Response::data(batch::object([("batch_results", Value::Array(out))]))
        } else {
            let h = results.pop().expect("one item").map_err(bad)?;
            Response::data(batch::object([("hmac", Value::String(h))]))
        };
        Ok(resp)
    }

    fn verify(&self, name: &str, url_alg: Option<&str>, d: &Data) -> Result<Response, ApiError> {
        let prm = Params::validated(d);
        let batch_raw = d.get("batch_input").filter(|v| !v.is_null());
        let items: Vec<Map<String, Value>> = match batch_raw {
            Some(raw) => {
                let v = decode_batch_loose(raw, false, &[])?;
                if v.is_empty() {
                    return Err(bad("missing batch input to process"));
                }
                v
            }
            None => {
                let mut m = Map::new();
                m.insert("input".into(), json!(prm.str_or("input", "")?));
                if let Some(s) = prm.str("signature")? {
                    m.insert("signature".into(), json!(s));
                }
                if let Some(h) = prm.str("hmac")? {
                    m.insert("hmac".into(), json!(h));
                }
                m.insert("context".into(), json!(prm.str_or("context", "")?));
                vec![m]
            }
        };
        let (mut sig_found, mut hmac_found, mut missing) = (false, false, false);
        for m in &items {
            if m.contains_key("signature") {
                sig_found = true;
            } else if m.contains_key("hmac") {
                hmac_found = true;
            } else {
                missing = true;
            }
        }
        let single = batch_raw.is_none();
        let err = if single && sig_found && hmac_found {
            Some("provide one of 'signature' or 'hmac'")
        } else if single && !sig_found && !hmac_found {
            Some("neither a 'signature' nor an 'hmac' were given to verify")
        } else if sig_found && hmac_found {
            Some("elements of batch_input must all provide 'signature' or all provide 'hmac'")
        } else if missing && sig_found {
            Some("some elements of batch_input are missing 'signature'")
        } else if missing && hmac_found {
            Some("some elements of batch_input are missing 'hmac'")
        } else if missing {
            Some("no batch_input elements have 'signature' or 'hmac'")
        } else {
            None
        };
        if let Some(e) = err {
            return Err(bad(e));
        }
        let alg_name = match url_alg {
            Some(a) if !a.is_empty() => a.to_string(),
            _ => match prm.str_or("hash_algorithm", "")? {
                s if !s.is_empty() => s,
                _ => match prm.str_or("algorithm", "")? {
                    s if !s.is_empty() => s,
                    _ => "sha2-256".to_string(),
                },
            },
        };
        if !hmac_found {
            // signatures: no signing key types exist here
            if HashAlg::parse(&alg_name).is_none() && alg_name != "none" {
                return Err(bad(format!("invalid hash algorithm {alg_name:?}")));
            }
            let p = self
                .load(name)?
                .ok_or_else(|| bad("signature verification key not found"))?;
            return Err(bad(format!(
                "key type {} does not support verification",
                p.key_type.as_str()
            )));
        }
        let policy = self
            .load(name)?
            .ok_or_else(|| bad("encryption key not found"))?;
        let Some(alg) = HashAlg::parse(&alg_name) else {
            return Err(bad(format!("invalid hash algorithm {alg_name:?}")));
        };
        let mut results: Vec<Result<bool, String>> = Vec::with_capacity(items.len());
        for m in &items {
            results.push((|| {
                let input = item_str(m, "input").ok_or("missing input")?;
                let input = go_b64_decode(&input)
                    .map_err(|e| format!("unable to decode input as base64: {e}"))?;
                let mac = item_str(m, "hmac").ok_or("missing hmac")?;
                let v = parse_versioned(&mac).map_err(|e| e.hmac_msg().to_string())?;
                let given = v
                    .payload()
                    .map_err(|e| format!("unable to decode verification HMAC as base64: {e}"))?;
                if v.version > policy.latest_version {
                    return Err("invalid HMAC: version is too new".to_string());
                }
                if policy.min_decryption_version > 0 && v.version < policy.min_decryption_version {
                    return Err(
                        "cannot verify HMAC: version is too old (disallowed by policy)".to_string(),
                    );
                }
                let key = Self::hmac_key(&policy, v.version)?;
                Ok(crate::crypto::ct_eq(&keys::hmac(alg, key, &input), &given))
            })());
        }
        let resp = if batch_raw.is_some() {
            let out: Vec<Value> = results
                .into_iter()
                .zip(&items)
                .map(|(r, m)| {
                    let mut o = Map::new();
                    match r {
                        Ok(true) => {
                            o.insert("valid".into(), json!(true));
                        }
                        Ok(false) => {}
                        Err(e) => {
                            o.insert("error".into(), Value::String(e));
                        }
                    }
                    o.insert(
                        "reference".into(),
                        Value::String(item_str(m, "reference").unwrap_or_default()),
                    );
                    Value::Object(o)
                })
                .collect();
            Response::data(batch::object([("batch_results", Value::Array(out))]))
        } else {
            let valid = results.pop().expect("one item").map_err(bad)?;
            Response::data(json!({ "valid": valid }))
        };
        Ok(resp)
    }

    /// `hash[/<algo>]`: a plain digest of `input`, hex or base64 (no key involved).
    fn hash(&self, url_alg: Option<&str>, d: &Data) -> Result<Response, ApiError> {
        let prm = Params::validated(d);
        // the framework converts every declared field before the handler runs
        let input = prm.str("input")?;
        let format = prm.str_or("format", "hex")?;
        let body_alg = prm.str_or("algorithm", "sha2-256")?;
        // present-but-null is the empty string, as for any string field
        let input = match (input, d.contains_key("input")) {
            (Some(s), _) => s,
            (None, true) => String::new(),
            (None, false) => return Err(bad("input missing")),
        };
        let alg_name = match url_alg {
            Some(a) if !a.is_empty() => a,
            _ => body_alg.as_str(),
        };
        let input = go_b64_decode(&input)
            .map_err(|e| bad(format!("unable to decode input as base64: {e}")))?;
        if format != "hex" && format != "base64" {
            return Err(bad(format!(
                "unsupported encoding format {format}; must be \"hex\" or \"base64\""
            )));
        }
        let alg = match HashAlg::parse(alg_name) {
            Some(a) if a != HashAlg::Sha1 => a,
            _ => return Err(bad(format!("unsupported algorithm {alg_name}"))),
        };
        let sum = keys::digest(alg, &input);
        let out = if format == "hex" {
            hex::encode(sum)
        } else {
            ciphertext::b64_encode(&sum)
        };
        Ok(Response::data(batch::object([("sum", Value::String(out))])))
    }

    /// Nothing is exportable here; the refusals follow OpenBao's checks in order.
    fn export(&self, kind: &str, name: &str) -> Result<Response, ApiError> {
        if !matches!(
            kind,
            "encryption-key" | "signing-key" | "hmac-key" | "public-key" | "certificate-chain"
        ) {
            return Err(bad(format!("invalid export type: {kind}")));
        }
        let p = self.load(name)?.ok_or_else(ApiError::not_found)?;
        match kind {
            "public-key" => Err(internal(&format!(
                "unknown key type {} for export type public-key",
                p.key_type.as_str()
            ))),
            "certificate-chain" => Err(bad(
                "certificate chain not supported for keys that do not support signing",
            )),
            _ => Err(bad("private key material is not exportable")),
        }
    }
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
        let rel = req.rel.as_str();
        let op = req.op;
        let d = &req.data;
        let parts: Vec<&str> = rel.split('/').collect();
        let unsupported_op = || Err(ApiError::unsupported_operation());
        let fw = |r, known, caps| framework_warnings(r, d, known, caps);
        if is_write(op) && rel.ends_with('/') {
            return Err(bad("cannot write to a path ending in '/'"));
        }
        match parts.as_slice() {
            ["keys"] | ["keys", ""] => match op {
                Operation::List => self.list_keys(),
                _ => unsupported_op(),
            },
            ["keys", name] if is_name(name) => match op {
                Operation::Read => self.read_key(name),
                Operation::Create | Operation::Update => {
                    fw(self.write_key(name, d), KEYS_FIELDS, &["name"])
                }
                Operation::Delete => self.delete_key(name),
                _ => unsupported_op(),
            },
            ["keys", name, "soft-delete"] if is_name(name) => match op {
                Operation::Delete => self.soft_delete(name, true),
                _ => unsupported_op(),
            },
            ["keys", name, "soft-delete-restore"] if is_name(name) => {
                if !is_write(op) {
                    return unsupported_op();
                }
                fw(self.soft_delete(name, false), &["name"], &["name"])
            }
            ["keys", name, action] if is_name(name) => {
                if !matches!(*action, "config" | "rotate" | "trim") {
                    return Err(ApiError::unsupported_path());
                }
                if !is_write(op) {
                    return unsupported_op();
                }
                match *action {
                    "config" => fw(self.config_key(name, d), CONFIG_FIELDS, &["name"]),
                    "rotate" => fw(self.rotate_key(name, d), ROTATE_FIELDS, &["name"]),
                    _ => fw(self.trim_key(name, d), TRIM_FIELDS, &["name"]),
                }
            }
            [verb @ ("encrypt" | "decrypt" | "rewrap"), name] if is_name(name) => {
                if !is_write(op) {
                    return unsupported_op();
                }
                match *verb {
                    "encrypt" => fw(self.encrypt(name, req), ENCRYPT_FIELDS, &["name"]),
                    "decrypt" => fw(self.decrypt(name, d), DECRYPT_FIELDS, &["name"]),
                    _ => fw(self.rewrap(name, d), REWRAP_FIELDS, &["name"]),
                }
            }
            ["datakey", kind, name] if is_name(kind) && is_name(name) => {
                if !is_write(op) {
                    return unsupported_op();
                }
                fw(
                    self.datakey(kind, name, d),
                    DATAKEY_FIELDS,
                    &["name", "plaintext"],
                )
            }
            ["random", ..] => {
                if !is_write(op) {
                    return unsupported_op();
                }
                let rest = rel.strip_prefix("random/").filter(|r| !r.is_empty());
                if rel != "random" && rest.is_none() {
                    return Err(ApiError::unsupported_path());
                }
                fw(self.random(rest, d), RANDOM_FIELDS, &["source", "urlbytes"])
            }
            ["hash", ..] => {
                // `hash(/<urlalgorithm>.+)?`
                let alg = rel.strip_prefix("hash/");
                if rel != "hash" && alg.is_none_or(str::is_empty) {
                    return Err(ApiError::unsupported_path());
                }
                if !is_write(op) {
                    return unsupported_op();
                }
                fw(self.hash(alg, d), HASH_FIELDS, &["urlalgorithm"])
            }
            [verb @ ("hmac" | "verify"), name, ..] if is_name(name) => {
                let prefix_len = verb.len() + 1 + name.len();
                let alg = rel.get(prefix_len..).and_then(|r| r.strip_prefix('/'));
                if rel.len() > prefix_len && alg.is_none_or(str::is_empty) {
                    return Err(ApiError::unsupported_path());
                }
                if !is_write(op) {
                    return unsupported_op();
                }
                // unmatched optional groups are captured too (as "")
                let caps: &[&str] = &["name", "urlalgorithm"];
                if *verb == "hmac" {
                    fw(self.hmac(name, alg, d), HMAC_FIELDS, caps)
                } else {
                    fw(self.verify(name, alg, d), VERIFY_FIELDS, caps)
                }
            }
            ["export", kind, name] | ["export", kind, name, _]
                if is_name(kind) && is_name(name) =>
            {
                if op != Operation::Read {
                    return unsupported_op();
                }
                self.export(kind, name)
            }
            _ => Err(ApiError::unsupported_path()),
        }
    }

    fn exists(&self, req: &Request) -> Result<Option<bool>, ApiError> {
        match req.rel.split_once('/') {
            Some(("encrypt", name)) if is_name(name) => Ok(Some(self.load(name)?.is_some())),
            _ => Ok(None),
        }
    }
}
