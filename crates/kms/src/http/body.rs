//! Request body decoding with Go's error texts: JSON objects (`null` and empty count as no
//! data), `application/x-www-form-urlencoded` pairs; anything else is a 400.

use crate::request::ApiError;
use serde_json::{Map, Value};

pub fn form_pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (unescape(k), unescape(v))
        })
        .collect()
}

fn unescape(s: &str) -> String {
    percent_decode(&s.replace('+', " "))
}

fn hexval(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// `%XX` decoding on bytes (never slices inside a UTF-8 sequence).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hexval(b[i + 1]), hexval(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Array(_) => "array",
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        _ => "value",
    }
}

/// Whether [`decode`] reads `body` as a form. Like OpenBao: a form content type counts only
/// when the body does not look like JSON (curl and urllib send JSON bodies with the form
/// type by default).
pub fn is_form(body: &[u8], content_type: Option<&str>) -> bool {
    content_type.is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
        && !matches!(body.trim_ascii().first(), Some(b'{' | b'[') | None)
}

pub fn decode(body: &[u8], content_type: Option<&str>) -> Result<Map<String, Value>, ApiError> {
    let trimmed = body.trim_ascii();
    if trimmed.is_empty() {
        return Ok(Map::new());
    }
    if is_form(body, content_type) {
        let s = std::str::from_utf8(trimmed)
            .map_err(|_| ApiError::bad_request("failed to parse form body"))?;
        return Ok(form_pairs(s)
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect());
    }
    match serde_json::from_slice::<Value>(trimmed) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(other) => Err(ApiError::bad_request(format!(
            "failed to decode JSON input: json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
            go_type(&other)
        ))),
        Err(e) => {
            let first = trimmed[0];
            let msg = if !matches!(first, b'{' | b'[' | b'"' | b't' | b'f' | b'n' | b'-' | b'0'..=b'9') {
                format!(
                    "invalid character '{}' looking for beginning of value",
                    char::from(first).escape_default()
                )
            } else if e.is_eof() {
                "unexpected EOF".to_string()
            } else {
                e.to_string()
            };
            Err(ApiError::bad_request(format!("failed to decode JSON input: {msg}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_texts_for_bad_json() {
        assert_eq!(
            decode(b"bogus", None).unwrap_err().errors,
            vec![
                "failed to decode JSON input: invalid character 'b' looking for beginning of value"
            ]
        );
        assert_eq!(
            decode(b"[1]", None).unwrap_err().errors,
            vec!["failed to decode JSON input: json: cannot unmarshal array into Go value of type map[string]interface {}"]
        );
        assert!(decode(b"{\"a\":", None).unwrap_err().errors[0].contains("unexpected EOF"));
        assert!(decode(b"null", None).unwrap().is_empty());
        assert!(decode(b"", None).unwrap().is_empty());
    }

    #[test]
    fn form_bodies() {
        let m = decode(b"a=b&c=d%20e", Some("application/x-www-form-urlencoded")).unwrap();
        assert_eq!(m["a"], "b");
        assert_eq!(m["c"], "d e");
        let j = decode(b" {\"a\":1}", Some("application/x-www-form-urlencoded")).unwrap();
        assert_eq!(j["a"], 1);
    }
}
