//! JSON area framing: `{` first, the text, at least one NUL, then only NULs; compact output.

use crate::error::Invalid;
use serde_json::{Map, Value};

/// Parse a JSON area (everything after the binary header, `hdr_size - 4096` bytes).
pub fn parse_area(area: &[u8]) -> Result<Map<String, Value>, Invalid> {
    if area.first() != Some(&b'{') {
        return Err(Invalid::new("json area", "does not start with '{'"));
    }
    let end = area
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| Invalid::new("json area", "JSON text is not NUL-terminated"))?;
    if area[end..].iter().any(|&b| b != 0) {
        return Err(Invalid::new(
            "json area",
            "non-NUL bytes after the JSON text",
        ));
    }
    let text = &area[..end];
    let value: Value = serde_json::from_slice(text)
        .map_err(|e| Invalid::new("json area", format!("invalid JSON: {e}")))?;
    match value {
        Value::Object(m) => Ok(m),
        _ => Err(Invalid::new(
            "json area",
            "top-level JSON value is not an object",
        )),
    }
}

/// Compact JSON text (as json-c `PLAIN | NOSLASHESCAPE`).
pub fn to_text(meta: &Map<String, Value>) -> Vec<u8> {
    // Serializing a Map of Values cannot fail.
    serde_json::to_vec(meta).unwrap_or_default()
}

/// Build a full JSON area of `area_len` bytes: text, then zero fill (always ≥ 1 NUL).
pub fn build_area(meta: &Map<String, Value>, area_len: usize) -> Result<Vec<u8>, Invalid> {
    let text = to_text(meta);
    if text.len() >= area_len {
        return Err(Invalid::new(
            "json area",
            format!(
                "metadata needs {} bytes, the JSON area holds {}",
                text.len() + 1,
                area_len
            ),
        ));
    }
    let mut area = vec![0u8; area_len];
    area[..text.len()].copy_from_slice(&text);
    Ok(area)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing() {
        assert!(parse_area(b"{}\0\0").is_ok());
        assert!(parse_area(b" {}\0").is_err());
        assert!(parse_area(b"{}").is_err(), "no NUL");
        assert!(parse_area(b"{}\0x").is_err(), "garbage after NUL");
        assert!(parse_area(b"{}x\0").is_err(), "garbage after the JSON text");
        assert!(parse_area(b"[]\0").is_err());
        let m = parse_area(b"{\"a\":\"b/c\"}\0").unwrap();
        assert_eq!(
            to_text(&m),
            b"{\"a\":\"b/c\"}",
            "compact, no slash escaping"
        );
        assert!(build_area(&m, 11).is_err());
        assert_eq!(build_area(&m, 12).unwrap().last(), Some(&0));
    }
}
