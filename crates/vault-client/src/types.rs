//! The response envelope (`api.Secret` in the Go client).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::secret::{SecretMap, SecretString};

/// The standard response envelope. Field order matches what the Vault/OpenBao CLI prints
/// with `-format=json`.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Secret {
    #[serde(default)]
    pub request_id: String,
    #[serde(default)]
    pub lease_id: String,
    #[serde(default)]
    pub lease_duration: i64,
    #[serde(default)]
    pub renewable: bool,
    #[serde(default)]
    pub data: Option<SecretMap>,
    #[serde(default)]
    pub warnings: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<SecretAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrap_info: Option<Value>,
}

impl Secret {
    /// Parses a response body. Bodies that are not an envelope (`sys/seal-status`,
    /// `sys/leader`, ...) become the `data` of an otherwise empty envelope, as the Go CLI
    /// shows them.
    pub fn from_value(v: Value) -> Option<Secret> {
        let Value::Object(map) = v else { return None };
        if Self::is_envelope(&map) {
            serde_json::from_value(Value::Object(map)).ok()
        } else {
            Some(Secret {
                data: Some(SecretMap::from(map)),
                ..Default::default()
            })
        }
    }

    /// Parses a body only if it is a response envelope (used for error answers, whose
    /// `{"errors":[...]}` must not become data).
    pub fn from_envelope(v: Value) -> Option<Secret> {
        match v {
            Value::Object(map) if Self::is_envelope(&map) => {
                serde_json::from_value(Value::Object(map)).ok()
            }
            _ => None,
        }
    }

    fn is_envelope(map: &Map<String, Value>) -> bool {
        const ENVELOPE: [&str; 6] = [
            "request_id",
            "data",
            "auth",
            "lease_id",
            "wrap_info",
            "warnings",
        ];
        ENVELOPE.iter().any(|k| map.contains_key(*k))
    }

    /// `data[key]` as a string.
    pub fn data_str(&self, key: &str) -> Option<&str> {
        self.data.as_ref().and_then(|d| d.str(key))
    }

    /// `data[key]`.
    pub fn data_get(&self, key: &str) -> Option<&Value> {
        self.data.as_ref().and_then(|d| d.get(key))
    }

    /// `data.keys` of a list response.
    pub fn keys(&self) -> Vec<String> {
        match self.data_get("keys") {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    }

    pub fn warnings(&self) -> &[String] {
        self.warnings.as_deref().unwrap_or(&[])
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("request_id", &self.request_id)
            .field("lease_duration", &self.lease_duration)
            .field("renewable", &self.renewable)
            .field("data", &self.data)
            .field("warnings", &self.warnings)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// The `auth` block of a login or token-create response.
#[derive(Clone, Default, Debug, Serialize, Deserialize)]
pub struct SecretAuth {
    #[serde(default)]
    pub client_token: SecretString,
    #[serde(default)]
    pub accessor: String,
    #[serde(default)]
    pub policies: Option<Vec<String>>,
    #[serde(default)]
    pub token_policies: Option<Vec<String>>,
    #[serde(default)]
    pub identity_policies: Option<Vec<String>>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default)]
    pub orphan: bool,
    #[serde(default)]
    pub entity_id: String,
    #[serde(default)]
    pub lease_duration: i64,
    #[serde(default)]
    pub renewable: bool,
    #[serde(default)]
    pub mfa_requirement: Option<Value>,
}
