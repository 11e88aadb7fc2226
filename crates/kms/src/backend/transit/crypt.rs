//! Transit `encrypt`, `decrypt` and `rewrap`: single items and batches.

use super::*;

impl Transit {
    // ---- encrypt / decrypt / rewrap ----------------------------------------------------

    pub(super) fn encrypt(&self, name: &str, req: &Request) -> Result<Response, ApiError> {
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

        let (policy, warning) = self.key_for_encrypt(name, req, &prm, context_set)?;
        let ans = self.encrypt_items(name, &policy, &items, batch_raw.is_some())?;
        let (mut resp, outcomes) = ans.finish();
        if let Some(w) = warning {
            resp = resp.with_warning(w);
        }
        batch_status(resp, &prm, outcomes)
    }

    /// The key to encrypt with, created on first use (upsert), derived iff a context was
    /// given; with OpenBao's warning when a `create` found it already there.
    fn key_for_encrypt(
        &self,
        name: &str,
        req: &Request,
        prm: &Params,
        context_set: bool,
    ) -> Result<(Arc<KeyPolicy>, Option<&'static str>), ApiError> {
        if let Some(p) = self.load_current(name)? {
            let warning = (req.op == Operation::Create).then_some(
                "Attempted creation of the key during the encrypt operation, but it was created beforehand",
            );
            return Ok((p, warning));
        }
        let convergent = prm.bool_or("convergent_encryption", false)?;
        if convergent && !context_set {
            return Err(bad(
                "convergent encryption requires derivation to be enabled, so context is required",
            ));
        }
        let kt = upsert_key_type(&prm.str_or("type", "aes256-gcm96")?)?;
        let _g = self.write_lock.lock();
        if let Some(p) = self.load(name)? {
            return Ok((p, None));
        }
        let mut np = KeyPolicy::new(name, kt, context_set, 0);
        np.convergent = convergent;
        Ok((self.store(&np)?, None))
    }

    /// Encrypts each item into the answer (per-item errors in a batch, the error itself
    /// for a single request); a volume manager's wraps are recorded (see `volumes`).
    fn encrypt_items(
        &self,
        name: &str,
        policy: &KeyPolicy,
        items: &[Item],
        batch: bool,
    ) -> Result<Answer, ApiError> {
        let mut crypter = Crypter::new(policy, items.len());
        let estimate = items
            .iter()
            .map(|it| it.plaintext.len() + it.reference.len() + 96)
            .sum();
        let mut ans = Answer::new(batch, estimate);
        for it in items {
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
                    self.note_wrap(name, it.context, v);
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
        Ok(ans)
    }

    pub(super) fn decrypt(&self, name: &str, d: &Data) -> Result<Response, ApiError> {
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

    pub(super) fn rewrap(&self, name: &str, d: &Data) -> Result<Response, ApiError> {
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
                rewrap_batch_items(&raw_items)?
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
        let mut results = rewrap_items(&policy, &items)?;
        for (r, it) in results.iter().zip(&items) {
            if let Ok((_, v)) = r {
                self.note_wrap(name, it.context, *v);
            }
        }
        if batch_raw.is_some() {
            return Ok(rewrap_batch_response(results, &items));
        }
        let (ct, v) = results
            .pop()
            .expect("one item")
            .map_err(ItemErr::into_api)?;
        Ok(Response::data(batch::object([
            ("ciphertext", Value::String(ct)),
            ("key_version", Value::from(v)),
        ])))
    }
}

/// One item's new ciphertext and key version, or its error.
type Rewrapped = Result<(String, i64), ItemErr>;

/// The items of a rewrap's `batch_input` (`key_version` given as a string, as Go decodes it).
fn rewrap_batch_items(raw_items: &[Map<String, Value>]) -> Result<Vec<Item<'_>>, ApiError> {
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
    Ok(out)
}

/// Decrypts and re-encrypts each item under the requested (default: latest) version; an
/// internal failure fails the whole request.
fn rewrap_items(policy: &KeyPolicy, items: &[Item]) -> Result<Vec<Rewrapped>, ApiError> {
    let mut crypter = Crypter::new(policy, items.len());
    let mut results = Vec::with_capacity(items.len());
    for it in items {
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
    Ok(results)
}

fn rewrap_batch_response(results: Vec<Rewrapped>, items: &[Item]) -> Response {
    let out = results
        .into_iter()
        .zip(items)
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
}

/// The key type an encrypt may create, with OpenBao's wording for the ones it refuses.
fn upsert_key_type(key_type: &str) -> Result<KeyType, ApiError> {
    match KeyType::lookup(key_type) {
        TypeLookup::Supported(kt) => Ok(kt),
        _ if matches!(key_type, "ecdsa-p256" | "ecdsa-p384" | "ecdsa-p521") => Err(bad(format!(
            "key type {key_type} not supported for this operation"
        ))),
        TypeLookup::Unsupported if key_type == "xchacha20-poly1305" => Err(bad(format!(
            "key type {key_type} is not supported by this server"
        ))),
        _ => Err(bad(format!("unknown key type {key_type}"))),
    }
}
