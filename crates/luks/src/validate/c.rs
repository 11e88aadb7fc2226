//! The C semantics cryptsetup's checks have, on json-c values: what `numbered()`, `strtoull`,
//! `atoi`, `json_contains()` and friends accept. Strings are already cut at their first NUL
//! (see [`crate::header::jsonc`]).

use crate::error::Invalid;
use serde_json::{Map, Value};

pub(super) type V<T = ()> = Result<T, Invalid>;

pub(super) fn fail<T>(field: impl Into<String>, reason: impl Into<String>) -> V<T> {
    Err(Invalid::new(field, reason))
}

/// cryptsetup `numbered()`: every byte a decimal digit; the empty string passes.
pub(super) fn numbered(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit())
}

/// cryptsetup `json_str_to_uint64()`: `strtoull(s, &end, 10)` with nothing left over and no
/// overflow. Leading whitespace and a sign pass (`-1` wraps), the empty string is 0.
pub(super) fn str_to_u64(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let mut i = b
        .iter()
        .position(|c| !matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))
        .unwrap_or(b.len());
    let negative = b.get(i) == Some(&b'-');
    if matches!(b.get(i), Some(b'+' | b'-')) {
        i += 1;
    }
    let digits = &s[i..];
    let n = digits.bytes().take_while(u8::is_ascii_digit).count();
    if n == 0 {
        // No conversion: `end` is the start of the string, which is its end only for "".
        return b.is_empty().then_some(0);
    }
    if n != digits.len() {
        return None;
    }
    let v: u64 = digits.parse().ok()?;
    Some(if negative { v.wrapping_neg() } else { v })
}

/// cryptsetup `crypt_jobj_get_uint64()`: [`str_to_u64`] of a string value, else 0.
pub(super) fn u64_of(v: Option<&Value>) -> u64 {
    v.and_then(Value::as_str).and_then(str_to_u64).unwrap_or(0)
}

/// glibc `atoi` of a [`numbered`] key: `(int) strtol(s)`, saturated to 64 bits then cut to 32.
pub(super) fn atoi(s: &str) -> i32 {
    if s.is_empty() {
        return 0;
    }
    s.parse::<i64>().unwrap_or(i64::MAX) as i32
}

/// The `"%u"` name of an `int` id.
pub(super) fn id_name(i: i32) -> String {
    (i as u32).to_string()
}

/// `json_contains(..., json_type_object)`.
pub(super) fn obj<'a>(parent: &'a Value, key: &str) -> Option<&'a Map<String, Value>> {
    parent.as_object()?.get(key)?.as_object()
}

pub(super) fn arr<'a>(parent: &'a Value, key: &str) -> Option<&'a Vec<Value>> {
    parent.as_object()?.get(key)?.as_array()
}

/// `json_contains(..., json_type_int)`: a JSON integer (not a float).
pub(super) fn int<'a>(parent: &'a Value, key: &str) -> Option<&'a Value> {
    let v = parent.as_object()?.get(key)?;
    v.as_number()
        .is_some_and(|n| n.is_i64() || n.is_u64())
        .then_some(v)
}

/// `json_contains_string()`: a non-empty string.
pub(super) fn string<'a>(parent: &'a Value, key: &str) -> Option<&'a str> {
    parent
        .as_object()?
        .get(key)?
        .as_str()
        .filter(|s| !s.is_empty())
}

/// `validate_json_uint32()` of an integer value.
pub(super) fn uint32(v: &Value) -> Option<u32> {
    v.as_u64().and_then(|u| u32::try_from(u).ok())
}

/// Whether a key exists (whatever its value, `null` included).
pub(super) fn has(parent: &Value, key: &str) -> bool {
    parent.as_object().is_some_and(|o| o.contains_key(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtoull_semantics() {
        assert_eq!(str_to_u64("12288"), Some(12288));
        assert_eq!(str_to_u64(" +12288"), Some(12288));
        assert_eq!(str_to_u64("-1"), Some(u64::MAX));
        assert_eq!(str_to_u64(""), Some(0));
        assert_eq!(str_to_u64("18446744073709551615"), Some(u64::MAX));
        for bad in [
            " ",
            "-",
            "+",
            "1 ",
            "0x1",
            "18446744073709551616",
            "1e3",
            "dynamic",
        ] {
            assert_eq!(str_to_u64(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn atoi_semantics() {
        assert_eq!(atoi("007"), 7);
        assert_eq!(atoi(""), 0);
        assert_eq!(id_name(atoi("4294967296")), "0");
        assert_eq!(id_name(atoi("4294967297")), "1");
        assert_eq!(id_name(atoi("2147483648")), "2147483648");
        assert_eq!(id_name(atoi("99999999999999999999")), "4294967295");
    }
}
