//! The per-item machinery of encrypt, decrypt, rewrap and datakey: batch items decoded in
//! place (borrowing from the request), and a [`Crypter`] that carries one key document,
//! one expanded AEAD key per (version, context) run and reusable, wiped scratch buffers
//! through a whole batch. Checks and error texts follow OpenBao's `EncryptWithFactory` /
//! `DecryptWithFactory`, in their order.

use super::ciphertext::{
    decoded_capacity, encoded_len, go_b64_decode_into, parse_versioned, push_versioned, PREFIX,
};
use super::keys::{self, reserve_secret, Cipher, KeyPolicy};
use super::params::go_type;
use super::{bad, internal, ItemErr, TOO_OLD};
use crate::request::ApiError;
use aws_lc_rs::aead::NONCE_LEN;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

/// One element of `batch_input` (or the single request), for encrypt/decrypt/rewrap; the
/// strings are the request's own.
#[derive(Default, Clone, Copy)]
pub(super) struct Item<'a> {
    pub plaintext: &'a str,
    pub ciphertext: &'a str,
    pub context: &'a str,
    pub key_version: i64,
    pub associated_data: &'a str,
    pub reference: &'a str,
}

/// One string field of a batch item, mapstructure-style (see [`decode_batch`]).
fn string_field<'a>(
    v: Option<&'a Value>,
    i: usize,
    errs: &mut Vec<String>,
    name: &str,
    nil_ok: bool,
    required: Option<&str>,
) -> &'a str {
    match v {
        Some(Value::String(s)) => return s,
        Some(Value::Null) if nil_ok => {}
        Some(other) => errs.push(format!(
            "'[{i}].{name}' expected type 'string', got unconvertible type '{}'",
            go_type(other)
        )),
        None => {
            if let Some(what) = required {
                errs.push(format!("'[{i}].{name}' missing {what}"));
            }
        }
    }
    ""
}

/// OpenBao's `decodeBatchRequestItems` (encrypt/decrypt): typed fields, required
/// plaintext/ciphertext. Errors become a 500 `failed to parse batch input: ...`.
pub(super) fn decode_batch(
    raw: &Value,
    require_plaintext: bool,
    require_ciphertext: bool,
) -> Result<Vec<Item<'_>>, ApiError> {
    let fail = |m: String| Err(internal(&format!("failed to parse batch input: {m}")));
    let arr = match raw {
        Value::Array(a) => a,
        other => {
            let t = match other {
                Value::String(_) => "string",
                Value::Bool(_) => "bool",
                Value::Number(_) => "json.Number",
                _ => "map[string]interface {}",
            };
            return fail(format!("source data must be an array or slice, got {t}"));
        }
    };
    const CONTEXT: usize = 0;
    const CIPHERTEXT: usize = 1;
    const PLAINTEXT: usize = 2;
    const KEY_VERSION: usize = 3;
    const AD: usize = 4;
    const REFERENCE: usize = 5;
    let mut items = Vec::with_capacity(arr.len());
    let mut errs: Vec<String> = Vec::new();
    for (i, v) in arr.iter().enumerate() {
        let Value::Object(m) = v else {
            return fail(format!("[{i}] expected a map, got '{}'", go_type(v)));
        };
        // one pass over the item's keys (no per-field hashing); errors below still come
        // in the struct's field order
        let mut f: [Option<&Value>; 6] = [None; 6];
        for (k, val) in m {
            let slot = match k.as_str() {
                "context" => CONTEXT,
                "ciphertext" => CIPHERTEXT,
                "plaintext" => PLAINTEXT,
                "key_version" => KEY_VERSION,
                "associated_data" => AD,
                "reference" => REFERENCE,
                _ => continue,
            };
            f[slot] = Some(val);
        }
        let mut it = Item {
            context: string_field(f[CONTEXT], i, &mut errs, "context", true, None),
            ciphertext: string_field(
                f[CIPHERTEXT],
                i,
                &mut errs,
                "ciphertext",
                true,
                require_ciphertext.then_some("ciphertext to decrypt"),
            ),
            plaintext: string_field(
                f[PLAINTEXT],
                i,
                &mut errs,
                "plaintext",
                false,
                require_plaintext.then_some("plaintext to encrypt"),
            ),
            ..Item::default()
        };
        match f[KEY_VERSION] {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) => match n.as_i64() {
                Some(k) => it.key_version = k,
                None => errs.push(format!(
                    "error decoding json.Number into [{i}].key_version: strconv.ParseInt: parsing \"{n}\": invalid syntax"
                )),
            },
            Some(other) => errs.push(format!(
                "'[{i}].key_version' expected type 'int', got unconvertible type '{}'",
                go_type(other)
            )),
        }
        it.associated_data = string_field(f[AD], i, &mut errs, "associated_data", true, None);
        it.reference = string_field(f[REFERENCE], i, &mut errs, "reference", true, None);
        items.push(it);
    }
    if !errs.is_empty() {
        return fail(errs.join("\n"));
    }
    Ok(items)
}

/// Context must be set in every item or in none (encrypt, decrypt, rewrap).
pub(super) fn check_contexts(items: &[Item]) -> Result<(), ApiError> {
    let context_set = items.first().is_some_and(|it| !it.context.is_empty());
    if items.iter().any(|it| it.context.is_empty() == context_set) {
        return Err(bad(
            "context should be set either in all the request blocks or in none",
        ));
    }
    Ok(())
}

/// A map with exactly these entries, in this order (the wire order).
pub(super) fn object<const N: usize>(entries: [(&str, Value); N]) -> Value {
    let mut m = Map::with_capacity(N);
    for (k, v) in entries {
        m.insert(k.to_owned(), v);
    }
    Value::Object(m)
}

/// Append `s` as a JSON string, escaped exactly as serde_json escapes it (so a response
/// written here is byte for byte the serialized value).
pub(super) fn push_json_str(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        // `b` is ASCII, so `i` is a char boundary
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// How the items of a batch fared (OpenBao's `batchRequestResponse` picks the status).
#[derive(Default, Clone, Copy)]
pub(super) struct Outcomes {
    pub successes: bool,
    pub user_err: bool,
    pub internal_err: bool,
}

/// The `data` of an encrypt or decrypt answer, written as JSON text as the items are
/// processed (no value tree per item): `{"batch_results":[{...,"reference":...},...]}` for a
/// batch, the one item's object otherwise.
pub(super) struct Answer {
    /// The text so far; an item's fields are written straight into it.
    pub out: String,
    batch: bool,
    items: usize,
    outcomes: Outcomes,
}

impl Answer {
    /// `estimate`: the expected length of the items' text.
    pub fn new(batch: bool, estimate: usize) -> Self {
        let mut out = String::with_capacity(estimate + 32);
        if batch {
            out.push_str("{\"batch_results\":[");
        }
        Self {
            out,
            batch,
            items: 0,
            outcomes: Outcomes::default(),
        }
    }

    /// Open the next item's object.
    pub fn begin_item(&mut self) {
        if self.items > 0 {
            self.out.push(',');
        }
        self.items += 1;
        self.out.push('{');
    }

    /// Count an item's result. A single request's error is the whole answer: it comes back
    /// as the `Err` of the outer result.
    pub fn outcome<T>(&mut self, r: Result<T, ItemErr>) -> Result<Result<T, ItemErr>, ApiError> {
        match &r {
            Ok(_) => self.outcomes.successes = true,
            Err(ItemErr::User(_)) => self.outcomes.user_err = true,
            Err(ItemErr::Internal(_)) => self.outcomes.internal_err = true,
        }
        match r {
            Err(e) if !self.batch => Err(e.into_api()),
            r => Ok(r),
        }
    }

    /// Write an `"error":...` field.
    pub fn error_field(&mut self, e: &ItemErr) {
        self.out.push_str("\"error\":");
        push_json_str(&mut self.out, e.msg());
    }

    /// Close the item's object (a batch item ends with its reference).
    pub fn end_item(&mut self, reference: &str) {
        if self.batch {
            self.out.push_str(",\"reference\":");
            push_json_str(&mut self.out, reference);
        }
        self.out.push('}');
    }

    pub fn finish(mut self) -> (crate::request::Response, Outcomes) {
        if self.batch {
            self.out.push_str("]}");
        }
        (crate::request::Response::json(self.out), self.outcomes)
    }
}

/// Encrypts and decrypts items under one key document. The decoded plaintext of the
/// current item lives in [`Crypter::plaintext`], a wiped scratch buffer.
pub(super) struct Crypter<'p> {
    policy: &'p KeyPolicy,
    cipher: Cipher<'p>,
    /// The current item's plaintext (input of [`Crypter::encrypt`], output of
    /// [`Crypter::decrypt`]).
    pub plaintext: Zeroizing<Vec<u8>>,
    /// The current item's decoded context.
    context: Vec<u8>,
    aad: Vec<u8>,
    sealed: Zeroizing<Vec<u8>>,
}

impl<'p> Crypter<'p> {
    /// `items`: how many items will be processed (a guess is fine).
    pub fn new(policy: &'p KeyPolicy, items: usize) -> Self {
        Self {
            policy,
            cipher: Cipher::new(policy, items),
            plaintext: Zeroizing::new(Vec::new()),
            context: Vec::new(),
            aad: Vec::new(),
            sealed: Zeroizing::new(Vec::new()),
        }
    }

    /// Decode an item's base64 context (empty: none).
    pub fn set_context(&mut self, b64: &str) -> Result<(), ItemErr> {
        go_b64_decode_into(b64, &mut self.context).map_err(|e| ItemErr::User(e.to_string()))
    }

    /// Use these raw context bytes.
    pub fn set_context_bytes(&mut self, ctx: &[u8]) {
        self.context.clear();
        self.context.extend_from_slice(ctx);
    }

    /// Decode an item's base64 plaintext.
    pub fn set_plaintext(&mut self, b64: &str) -> Result<(), ItemErr> {
        reserve_secret(&mut self.plaintext, decoded_capacity(b64.len()));
        go_b64_decode_into(b64, &mut self.plaintext).map_err(|e| ItemErr::User(e.to_string()))
    }

    /// Use these raw plaintext bytes.
    pub fn set_plaintext_bytes(&mut self, pt: &[u8]) {
        reserve_secret(&mut self.plaintext, pt.len());
        self.plaintext.extend_from_slice(pt);
    }

    /// `Policy.EncryptWithFactory` for the symmetric types: [`Crypter::plaintext`] under
    /// version `ver` (0: latest) and the current context; returns the ciphertext and the
    /// version used.
    pub fn encrypt(&mut self, ver: i64, ad: &str) -> Result<(String, i64), ItemErr> {
        let mut ct = String::new();
        let ver = self.encrypt_into(ver, ad, &mut ct)?;
        Ok((ct, ver))
    }

    /// [`Crypter::encrypt`], appending the ciphertext (`vault:v<N>:...`) to `out`, which is
    /// untouched on error. Returns the version used.
    pub fn encrypt_into(&mut self, ver: i64, ad: &str, out: &mut String) -> Result<i64, ItemErr> {
        let p = self.policy;
        if p.soft_deleted {
            return Err(ItemErr::User(keys::SOFT_DELETED.into()));
        }
        let ver = match ver {
            0 => p.latest_version,
            v if v < 0 => {
                return Err(ItemErr::User(
                    "requested version for encryption is negative".into(),
                ))
            }
            v if v > p.latest_version => {
                return Err(ItemErr::User(
                    "requested version for encryption is higher than the latest key version".into(),
                ))
            }
            v if v < p.min_encryption_version => return Err(ItemErr::User(
                "requested version for encryption is less than the minimum encryption key version"
                    .into(),
            )),
            v => v,
        };
        let key = self.cipher.key(ver, &self.context).map_err(ItemErr::User)?;
        go_b64_decode_into(ad, &mut self.aad).map_err(|e| {
            ItemErr::Internal(format!(
                "unable to get associated_data/additional_data from factory[0]: {e}"
            ))
        })?;
        key.seal(&self.aad, &self.plaintext, &mut self.sealed)
            .map_err(ItemErr::Internal)?;
        out.reserve(PREFIX.len() + 21 + encoded_len(self.sealed.len()));
        push_versioned(out, ver, &self.sealed);
        Ok(ver)
    }

    /// `Policy.DecryptWithFactory` for the symmetric types: on success the plaintext is in
    /// [`Crypter::plaintext`].
    pub fn decrypt(&mut self, ct: &str, ad: &str) -> Result<(), ItemErr> {
        let p = self.policy;
        if p.soft_deleted {
            return Err(ItemErr::User(keys::SOFT_DELETED.into()));
        }
        let v = parse_versioned(ct).map_err(|e| ItemErr::User(e.ciphertext_msg().into()))?;
        let ver = if v.version == 0 { 1 } else { v.version };
        if ver > p.latest_version {
            return Err(ItemErr::User(
                "invalid ciphertext: version is too new".into(),
            ));
        }
        if p.min_decryption_version > 0 && ver < p.min_decryption_version {
            return Err(ItemErr::User(TOO_OLD.into()));
        }
        // the payload is opened in place, so it goes to the wiped buffer
        let buf = &mut self.plaintext;
        reserve_secret(buf, decoded_capacity(v.body.len()));
        go_b64_decode_into(v.body, buf)
            .map_err(|_| ItemErr::User("invalid ciphertext: could not decode base64".into()))?;
        let key = self.cipher.key(ver, &self.context).map_err(ItemErr::User)?;
        go_b64_decode_into(ad, &mut self.aad).map_err(|e| {
            ItemErr::Internal(format!(
                "unable to get associated_data/additional_data from factory[0]: {e}"
            ))
        })?;
        let n = key.open_in_place(&self.aad, buf).map_err(ItemErr::User)?;
        buf.copy_within(NONCE_LEN..NONCE_LEN + n, 0);
        buf.truncate(n);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_escape_like_serde_json() {
        let mut all = String::new();
        for c in 0u8..0x80 {
            all.push(char::from(c));
        }
        for s in [
            "",
            "plain",
            "a\"b\\c",
            "\n\r\t\u{8}\u{c}\u{1}\u{1f}\u{7f}",
            "é✓😀/<>",
            &all,
        ] {
            let mut out = String::from("x");
            push_json_str(&mut out, s);
            assert_eq!(out[1..], serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }
}
