//! The tenant's KMS token as it arrives in CSI `secrets`.
//!
//! The Secret named by the StorageClass (`csi.storage.k8s.io/provisioner-secret-*`,
//! `node-stage-secret-*`, templated with `${pvc.namespace}`) holds the token under the key
//! `token` — the same layout as ceph-csi's `ceph-csi-kms-token`, so a tenant's existing
//! Secret works unchanged. Other keys of that Secret are ignored (a CO may pass the same map
//! to every call).
//!
//! The token is the volume manager's [`SecretString`] from here to the `X-Vault-Token` header:
//! zeroized on drop, `Debug`/`Display` redacted, never converted. Never log a generated request
//! message with `{:?}`: prost's derived `Debug` prints the `secrets` map.

use crate::errors::CsiError;
use std::collections::HashMap;
use strongroom_volume::SecretString;

/// The key of the token in the CSI secrets map.
pub const TOKEN_KEY: &str = "token";

/// The token from a request's secrets; UNAUTHENTICATED when absent or blank.
pub fn require_token(
    secrets: &HashMap<String, String>,
    rpc: &str,
) -> Result<SecretString, CsiError> {
    optional_token(secrets)?.ok_or_else(|| {
        CsiError::Unauthenticated(format!(
            "{rpc} needs the tenant's KMS token: the StorageClass must name a Secret with key \
             {TOKEN_KEY:?} in the PVC's namespace (csi.storage.k8s.io/*-secret-namespace: \
             ${{pvc.namespace}})"
        ))
    })
}

/// The token if the secrets carry one (DeleteVolume, expansion); `None` for empty secrets.
/// A present but blank or multi-line value is UNAUTHENTICATED.
pub fn optional_token(secrets: &HashMap<String, String>) -> Result<Option<SecretString>, CsiError> {
    match secrets.get(TOKEN_KEY) {
        None => Ok(None),
        Some(v) => {
            let t = v.trim();
            if t.is_empty() {
                return Err(CsiError::Unauthenticated(format!(
                    "the secret's {TOKEN_KEY:?} value is empty"
                )));
            }
            if t.chars().any(|c| c.is_control() || c == ' ') {
                return Err(CsiError::Unauthenticated(format!(
                    "the secret's {TOKEN_KEY:?} value is not a token (whitespace or control characters)"
                )));
            }
            Ok(Some(SecretString::new(t)))
        }
    }
}

/// ceph-csi's keys for the Ceph user in the same secrets (an RBD volume).
pub const CEPH_USER_ID: &str = "userID";
pub const CEPH_USER_KEY: &str = "userKey";

/// The Ceph user of a request's secrets (`userID` + `userKey`), whose key is handed to the
/// volume manager's in-memory key store (never argv, env or a file); `None` when the secrets
/// carry neither. One without the other, or a malformed id, is UNAUTHENTICATED.
pub fn ceph_user(secrets: &HashMap<String, String>) -> Result<Option<String>, CsiError> {
    let (id, key) = match (secrets.get(CEPH_USER_ID), secrets.get(CEPH_USER_KEY)) {
        (None, None) => return Ok(None),
        (Some(i), Some(k)) => (i.trim(), k.trim()),
        _ => {
            return Err(CsiError::Unauthenticated(format!(
                "the secret must carry both {CEPH_USER_ID:?} and {CEPH_USER_KEY:?}"
            )))
        }
    };
    let ok_id = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    let base64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=');
    if !ok_id || key.is_empty() || !key.chars().all(base64) {
        return Err(CsiError::Unauthenticated(format!(
            "the secret's {CEPH_USER_ID:?}/{CEPH_USER_KEY:?} are not a Ceph user id and a \
             base64 cephx key"
        )));
    }
    let id = id.strip_prefix("client.").unwrap_or(id).to_owned();
    strongroom_volume::provide_ceph_key(&id, SecretString::new(key));
    Ok(Some(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn debug_and_display_are_redacted() {
        let t = require_token(&m(&[("token", "s.supersecret")]), "x").unwrap();
        for d in [format!("{t:?}"), format!("{t}")] {
            assert!(!d.contains("supersecret"), "{d}");
        }
        assert_eq!(t.expose(), "s.supersecret");
    }

    #[test]
    fn token_is_trimmed_and_other_keys_ignored() {
        let s = m(&[("token", " s.abc\n"), ("other", "x")]);
        assert_eq!(require_token(&s, "CreateVolume").unwrap().expose(), "s.abc");
    }

    #[test]
    fn missing_or_blank_token_is_unauthenticated_without_echoing_values() {
        let e = require_token(&m(&[]), "NodeStageVolume").unwrap_err();
        assert!(matches!(e, CsiError::Unauthenticated(ref s) if s.contains("NodeStageVolume")));
        let e = require_token(&m(&[("token", "  ")]), "x").unwrap_err();
        assert!(matches!(e, CsiError::Unauthenticated(_)));
        let e = optional_token(&m(&[("token", "s.a b")])).unwrap_err();
        assert!(!e.to_string().contains("s.a"), "{e}");
    }

    #[test]
    fn ceph_users_need_both_keys_and_never_echo_the_key() {
        assert_eq!(ceph_user(&m(&[("token", "t")])).unwrap(), None);
        let u = ceph_user(&m(&[("userID", "client.csi-a"), ("userKey", "QUJD")])).unwrap();
        assert_eq!(u.as_deref(), Some("csi-a"));
        for bad in [
            m(&[("userID", "a")]),
            m(&[("userKey", "QUJD")]),
            m(&[("userID", "a b"), ("userKey", "QUJD")]),
            m(&[("userID", "a"), ("userKey", "not base64!")]),
        ] {
            let e = ceph_user(&bad).unwrap_err();
            assert!(matches!(e, CsiError::Unauthenticated(_)));
            assert!(!e.to_string().contains("not base64!"), "{e}");
        }
    }

    #[test]
    fn empty_secrets_are_no_token() {
        assert!(optional_token(&m(&[])).unwrap().is_none());
    }
}
