//! Transit `keys/*` and `export/*`: create, read, list, configure, rotate, trim, soft-delete
//! and delete keys (key material is never exported).

use super::*;

impl Transit {
    // ---- keys ------------------------------------------------------------------------

    pub(super) fn list_keys(&self) -> Result<Response, ApiError> {
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

    pub(super) fn read_key(&self, name: &str) -> Result<Response, ApiError> {
        match self.load_current(name)? {
            Some(p) => Ok(Response::data(p.info())),
            None => Err(ApiError::not_found()),
        }
    }

    pub(super) fn write_key(&self, name: &str, d: &Data) -> Result<Response, ApiError> {
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

    pub(super) fn delete_key(&self, name: &str) -> Result<Response, ApiError> {
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
        self.forget_volumes(name)?;
        Ok(Response::no_content())
    }

    /// `keys/<k>/soft-delete` (DELETE) and `keys/<k>/soft-delete-restore` (UPDATE).
    pub(super) fn soft_delete(&self, name: &str, delete: bool) -> Result<Response, ApiError> {
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

    pub(super) fn config_key(&self, name: &str, d: &Data) -> Result<Response, ApiError> {
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
        let (mut persist, warning) = set_min_decryption(&mut p, min_dec)?;
        persist |= set_min_encryption(&mut p, min_enc)?;
        if let Some(v) = deletion_allowed.filter(|v| *v != p.deletion_allowed) {
            p.deletion_allowed = v;
            persist = true;
        }
        refuse_export_settings(exportable, plaintext_backup)?;
        persist |= set_auto_rotate(&mut p, auto_rotate)?;
        if persist {
            check_min_available(&p)?;
            self.store(&p)?;
        }
        let mut resp = Response::data(p.info());
        if let Some(w) = warning {
            resp = resp.with_warning(w);
        }
        Ok(resp)
    }

    pub(super) fn rotate_key(&self, name: &str, d: &Data) -> Result<Response, ApiError> {
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

    pub(super) fn trim_key(&self, name: &str, d: &Data) -> Result<Response, ApiError> {
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

    /// Nothing is exportable here; the refusals follow OpenBao's checks in order.
    pub(super) fn export(&self, kind: &str, name: &str) -> Result<Response, ApiError> {
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

/// `min_decryption_version` (0 means 1, with OpenBao's warning); whether it changed.
fn set_min_decryption(
    p: &mut KeyPolicy,
    min_dec: Option<i64>,
) -> Result<(bool, Option<&'static str>), ApiError> {
    let Some(mut v) = min_dec else {
        return Ok((false, None));
    };
    if v < 0 {
        return Err(bad("min decryption version cannot be negative"));
    }
    let mut warning = None;
    if v == 0 {
        v = 1;
        warning = Some("since Vault 0.3 (prior to the OpenBao fork), transit key numbering starts at 1; forcing minimum to 1");
    }
    if v == p.min_decryption_version {
        return Ok((false, warning));
    }
    if v > p.latest_version {
        return Err(bad(format!(
            "cannot set min decryption version of {v}, latest key version is {}",
            p.latest_version
        )));
    }
    p.min_decryption_version = v;
    Ok((true, warning))
}

/// `min_encryption_version`, which may not fall below the minimum decryption version;
/// whether it changed.
fn set_min_encryption(p: &mut KeyPolicy, min_enc: Option<i64>) -> Result<bool, ApiError> {
    let mut changed = false;
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
            changed = true;
        }
    }
    if p.min_encryption_version > 0 && p.min_encryption_version < p.min_decryption_version {
        return Err(bad(format!(
            "cannot set min encryption/decryption values; min encryption version of {} must be greater than or equal to min decryption version of {}",
            p.min_encryption_version, p.min_decryption_version
        )));
    }
    Ok(changed)
}

/// Key material never leaves this server: turning on export or plaintext backup is refused.
fn refuse_export_settings(
    exportable: Option<bool>,
    plaintext_backup: Option<bool>,
) -> Result<(), ApiError> {
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
    Ok(())
}

/// `auto_rotate_period` (0 or at least an hour); whether it changed.
fn set_auto_rotate(p: &mut KeyPolicy, auto_rotate: Option<u64>) -> Result<bool, ApiError> {
    let Some(secs) = auto_rotate else {
        return Ok(false);
    };
    if secs != 0 && secs < 3600 {
        return Err(bad(
            "auto rotate period must be 0 to disable or at least an hour",
        ));
    }
    if secs == p.auto_rotate_period {
        return Ok(false);
    }
    p.auto_rotate_period = secs;
    Ok(true)
}

/// Neither minimum may fall below the oldest version still kept (after a trim).
fn check_min_available(p: &KeyPolicy) -> Result<(), ApiError> {
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
    Ok(())
}
