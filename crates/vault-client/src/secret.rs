//! Zeroizing holders for tokens and secret values, with redacted `Debug` output.

use std::fmt;
use std::ops::{Deref, DerefMut};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use zeroize::{Zeroize, Zeroizing};

/// A string that must stay secret (a token, a password, an unseal key share). A tenant's token
/// is one of these from the CSI request's secrets to the `X-Vault-Token` header.
///
/// The memory is wiped on drop; `Debug` prints `SecretString(***)` and `Display` `***`. Use
/// [`SecretString::expose`] to read it where it is really needed. It serializes as a plain
/// string (the CLI's JSON output is the one place that prints a token on purpose).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    pub fn new(s: impl Into<String>) -> Self {
        SecretString(Zeroizing::new(s.into()))
    }

    /// The secret value. Do not log it.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretString {
    fn from(s: String) -> Self {
        SecretString::new(s)
    }
}

impl From<&str> for SecretString {
    fn from(s: &str) -> Self {
        SecretString::new(s)
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(***)")
    }
}

/// Prints a redaction: a secret interpolated into a message or log line by mistake shows
/// `***`, never its value.
impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for SecretString {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.expose())
    }
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        // `null` (e.g. a batch token's empty fields) reads as an empty secret.
        let s: Option<String> = Option::deserialize(d)?;
        Ok(SecretString::new(s.unwrap_or_default()))
    }
}

/// Overwrites every string inside a JSON value (recursively) and empties containers.
/// Object keys are not secret and are dropped normally.
pub fn zeroize_value(v: &mut Value) {
    match v {
        Value::String(s) => s.zeroize(),
        Value::Array(a) => {
            for x in a.iter_mut() {
                zeroize_value(x);
            }
            a.clear();
        }
        Value::Object(m) => {
            for (_, x) in m.iter_mut() {
                zeroize_value(x);
            }
            m.clear();
        }
        _ => {}
    }
    *v = Value::Null;
}

/// The `data` of a response: a JSON object whose string values are wiped on drop.
/// `Debug` shows the keys only.
#[derive(Clone, Default, PartialEq)]
pub struct SecretMap(Map<String, Value>);

impl SecretMap {
    pub fn new() -> Self {
        SecretMap(Map::new())
    }

    /// The string value of `key`, if it is a string.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }

    /// Moves the map out; the caller becomes responsible for the values.
    pub fn into_inner(mut self) -> Map<String, Value> {
        std::mem::take(&mut self.0)
    }
}

impl From<Map<String, Value>> for SecretMap {
    fn from(m: Map<String, Value>) -> Self {
        SecretMap(m)
    }
}

impl Deref for SecretMap {
    type Target = Map<String, Value>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for SecretMap {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for SecretMap {
    fn drop(&mut self) {
        for (_, v) in self.0.iter_mut() {
            zeroize_value(v);
        }
    }
}

impl fmt::Debug for SecretMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Serialize for SecretMap {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for SecretMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(SecretMap(Map::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let t = SecretString::new("s.topsecret");
        assert_eq!(format!("{t:?}"), "SecretString(***)");
        assert_eq!(format!("{t}"), "***");
        let mut m = SecretMap::new();
        m.insert("password".into(), Value::String("hunter2".into()));
        let d = format!("{m:?}");
        assert!(d.contains("password") && !d.contains("hunter2"), "{d}");
    }

    #[test]
    fn zeroize_value_clears_nested_strings() {
        let mut v = serde_json::json!({"a": ["x", {"b": "y"}], "n": 1});
        zeroize_value(&mut v);
        assert_eq!(v, Value::Null);
    }
}
