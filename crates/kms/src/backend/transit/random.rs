//! Transit `datakey/*` and `random`: fresh data keys (wrapped, optionally plaintext) and random bytes.

use super::*;

impl Transit {
    // ---- datakey / random / hmac / verify ----------------------------------------------

    pub(super) fn datakey(&self, kind: &str, name: &str, d: &Data) -> Result<Response, ApiError> {
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

    pub(super) fn random(&self, rest: Option<&str>, d: &Data) -> Result<Response, ApiError> {
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
}
