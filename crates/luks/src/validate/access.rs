//! Typed, strict accessors for metadata that passed validation (used by [`crate::model`] and
//! [`crate::volume`]): decimal strings without sign or spaces, ids as u32.

use crate::error::Invalid;
use serde_json::{Map, Value};

type V<T = ()> = Result<T, Invalid>;

/// A non-empty decimal string.
pub fn numbered(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Strict u64 from a decimal string: digits only, no sign, no overflow.
pub fn parse_u64(s: &str) -> Option<u64> {
    if !numbered(s) {
        return None;
    }
    s.parse::<u64>().ok()
}

/// Object id ("0", "1", ...) as u32.
pub fn parse_id(s: &str) -> Option<u32> {
    if !numbered(s) {
        return None;
    }
    s.parse::<u32>().ok()
}

pub(crate) fn path(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}.{b}")
    }
}

pub(crate) fn get_obj<'a>(
    m: &'a Map<String, Value>,
    at: &str,
    key: &str,
) -> V<&'a Map<String, Value>> {
    match m.get(key) {
        None => Err(Invalid::new(path(at, key), "missing")),
        Some(Value::Object(o)) => Ok(o),
        Some(_) => Err(Invalid::new(path(at, key), "must be an object")),
    }
}

pub(crate) fn get_str<'a>(m: &'a Map<String, Value>, at: &str, key: &str) -> V<&'a str> {
    match m.get(key) {
        None => Err(Invalid::new(path(at, key), "missing")),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(Invalid::new(path(at, key), "must be a string")),
    }
}

pub(crate) fn get_arr<'a>(m: &'a Map<String, Value>, at: &str, key: &str) -> V<&'a Vec<Value>> {
    match m.get(key) {
        None => Err(Invalid::new(path(at, key), "missing")),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(Invalid::new(path(at, key), "must be an array")),
    }
}

/// A JSON integer (not a float, not a string).
pub(crate) fn get_int(m: &Map<String, Value>, at: &str, key: &str) -> V<i128> {
    match m.get(key) {
        None => Err(Invalid::new(path(at, key), "missing")),
        Some(Value::Number(n)) => {
            if let Some(u) = n.as_u64() {
                Ok(u as i128)
            } else if let Some(i) = n.as_i64() {
                Ok(i as i128)
            } else {
                Err(Invalid::new(path(at, key), "must be an integer"))
            }
        }
        Some(_) => Err(Invalid::new(path(at, key), "must be an integer")),
    }
}

pub(crate) fn get_u32(m: &Map<String, Value>, at: &str, key: &str) -> V<u32> {
    let v = get_int(m, at, key)?;
    u32::try_from(v).map_err(|_| Invalid::new(path(at, key), "must be a 32-bit unsigned integer"))
}

pub(crate) fn get_u64_str(m: &Map<String, Value>, at: &str, key: &str) -> V<u64> {
    let s = get_str(m, at, key)?;
    parse_u64(s).ok_or_else(|| Invalid::new(path(at, key), format!("{s:?} is not a decimal u64")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_u64() {
        assert_eq!(parse_u64("18446744073709551615"), Some(u64::MAX));
        for bad in [
            "18446744073709551616",
            "-512",
            "+1",
            "",
            " 1",
            "1 ",
            "0x10",
            "dynamic",
        ] {
            assert_eq!(parse_u64(bad), None, "{bad:?}");
        }
        assert!(numbered("007"));
        assert!(!numbered("7a"));
    }
}
