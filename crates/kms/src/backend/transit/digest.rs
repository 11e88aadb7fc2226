//! Transit `hmac`, `verify` and `hash`: keyed and plain digests.

use super::*;

impl Transit {
    /// OpenBao's `Policy.HMACKey`.
    pub(super) fn hmac_key(p: &KeyPolicy, ver: i64) -> Result<&[u8], String> {
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

    pub(super) fn hmac(
        &self,
        name: &str,
        url_alg: Option<&str>,
        d: &Data,
    ) -> Result<Response, ApiError> {
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

    pub(super) fn verify(
        &self,
        name: &str,
        url_alg: Option<&str>,
        d: &Data,
    ) -> Result<Response, ApiError> {
        let prm = Params::validated(d);
        let batch_raw = d.get("batch_input").filter(|v| !v.is_null());
        let items = verify_items(batch_raw, &prm)?;
        let kind = verify_kind(&items, batch_raw.is_none())?;
        let alg_name = verify_alg(url_alg, &prm)?;
        if kind == Proof::Signature {
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
        let mut results: Vec<Result<bool, String>> = items
            .iter()
            .map(|m| Self::verify_hmac(&policy, alg, m))
            .collect();
        if batch_raw.is_none() {
            let valid = results.pop().expect("one item").map_err(bad)?;
            return Ok(Response::data(json!({ "valid": valid })));
        }
        Ok(verify_batch_response(results, &items))
    }

    /// One HMAC check: the versioned HMAC against the key version it names.
    fn verify_hmac(
        policy: &KeyPolicy,
        alg: HashAlg,
        m: &Map<String, Value>,
    ) -> Result<bool, String> {
        let input = item_str(m, "input").ok_or("missing input")?;
        let input =
            go_b64_decode(&input).map_err(|e| format!("unable to decode input as base64: {e}"))?;
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
        let key = Self::hmac_key(policy, v.version)?;
        Ok(crate::crypto::ct_eq(&keys::hmac(alg, key, &input), &given))
    }

    /// `hash[/<algo>]`: a plain digest of `input`, hex or base64 (no key involved).
    pub(super) fn hash(&self, url_alg: Option<&str>, d: &Data) -> Result<Response, ApiError> {
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
}

/// What a verify request proves: a signature or an HMAC.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Proof {
    Signature,
    Hmac,
}

/// The items to verify: `batch_input`, or the request's own fields as one item.
fn verify_items(
    batch_raw: Option<&Value>,
    prm: &Params,
) -> Result<Vec<Map<String, Value>>, ApiError> {
    if let Some(raw) = batch_raw {
        let v = decode_batch_loose(raw, false, &[])?;
        if v.is_empty() {
            return Err(bad("missing batch input to process"));
        }
        return Ok(v);
    }
    let mut m = Map::new();
    m.insert("input".into(), json!(prm.str_or("input", "")?));
    if let Some(s) = prm.str("signature")? {
        m.insert("signature".into(), json!(s));
    }
    if let Some(h) = prm.str("hmac")? {
        m.insert("hmac".into(), json!(h));
    }
    m.insert("context".into(), json!(prm.str_or("context", "")?));
    Ok(vec![m])
}

/// Every item must carry the same kind of proof (OpenBao's wording for each mix).
fn verify_kind(items: &[Map<String, Value>], single: bool) -> Result<Proof, ApiError> {
    let sig = items.iter().any(|m| m.contains_key("signature"));
    let hmac = items
        .iter()
        .any(|m| !m.contains_key("signature") && m.contains_key("hmac"));
    let missing = items
        .iter()
        .any(|m| !m.contains_key("signature") && !m.contains_key("hmac"));
    let err = match (single, sig, hmac, missing) {
        (true, true, true, _) => "provide one of 'signature' or 'hmac'",
        (true, false, false, _) => "neither a 'signature' nor an 'hmac' were given to verify",
        (false, true, true, _) => {
            "elements of batch_input must all provide 'signature' or all provide 'hmac'"
        }
        (false, true, false, true) => "some elements of batch_input are missing 'signature'",
        (false, false, true, true) => "some elements of batch_input are missing 'hmac'",
        (false, false, false, _) => "no batch_input elements have 'signature' or 'hmac'",
        (_, _, true, _) => return Ok(Proof::Hmac),
        _ => return Ok(Proof::Signature),
    };
    Err(bad(err))
}

/// The hash algorithm: from the URL, else `hash_algorithm`, else `algorithm`, else sha2-256.
fn verify_alg(url_alg: Option<&str>, prm: &Params) -> Result<String, ApiError> {
    if let Some(a) = url_alg.filter(|a| !a.is_empty()) {
        return Ok(a.to_string());
    }
    for field in ["hash_algorithm", "algorithm"] {
        let v = prm.str_or(field, "")?;
        if !v.is_empty() {
            return Ok(v);
        }
    }
    Ok("sha2-256".to_string())
}

/// `batch_results`: `valid: true` only when valid, the error otherwise, the reference always.
fn verify_batch_response(
    results: Vec<Result<bool, String>>,
    items: &[Map<String, Value>],
) -> Response {
    let out: Vec<Value> = results
        .into_iter()
        .zip(items)
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
            let reference = item_str(m, "reference").unwrap_or_default();
            o.insert("reference".into(), Value::String(reference));
            Value::Object(o)
        })
        .collect();
    Response::data(batch::object([("batch_results", Value::Array(out))]))
}
