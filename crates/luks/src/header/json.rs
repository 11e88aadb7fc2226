//! JSON area framing (as cryptsetup checks it: `{` first, the JSON text, at least one NUL, then
//! only NULs) around the json-c dialect of `header::jsonc`; compact output.
//!
//! The text a header was read from is kept ([`Source`]) so that a rewrite reproduces every
//! value it did not change exactly as it was written: floats such as `1.5e300`, `2.50` or
//! `1E+2`, integers beyond 64 bits, `-0.0`, numbers beyond the f64 range (`1e400`), `\u`
//! escapes, and whatever else json-c accepts (single quotes, `TRUE`, bytes that are not UTF-8).
//! Unknown tokens and segments, which only cryptsetup or other tools interpret, thus survive
//! our writes byte for byte, and a token whose `keyslots` array we edit keeps the rest of its
//! text. Objects and arrays are written compact, as cryptsetup does, in the order of the
//! metadata map (which preserves the text's order).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::jsonc::{self, escaped_len, Member, Node, Span};
use crate::error::Invalid;
use serde_json::{Map, Value};

fn bad(reason: impl Into<String>) -> Invalid {
    Invalid::new("json area", reason)
}

/// The original JSON text of a header and its index. Cheap to clone.
#[derive(Clone)]
pub struct Source {
    text: Arc<[u8]>,
    root: Arc<Node>,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("len", &self.text.len())
            .finish_non_exhaustive()
    }
}

impl Source {
    fn node_at(&self, path: &[&str]) -> Option<&Node> {
        let mut node = self.root.as_ref();
        for key in path {
            let Node::Object(members) = node else {
                return None;
            };
            // The last occurrence wins, as in the parsed map.
            node = &members.iter().rev().find(|m| m.key == *key)?.node;
        }
        Some(node)
    }
}

/// Parse a JSON area (everything after the binary header, `hdr_size - 4096` bytes): the
/// metadata and the text it came from.
pub fn parse_area(area: &[u8]) -> Result<(Map<String, Value>, Source), Invalid> {
    if area.first() != Some(&b'{') {
        return Err(bad("does not start with '{'"));
    }
    let (root, value, end) = jsonc::parse(area)?;
    if end >= area.len() {
        return Err(bad("JSON text is not NUL-terminated"));
    }
    if area[end..].iter().any(|&b| b != 0) {
        return Err(bad("non-NUL bytes after the JSON text"));
    }
    match value {
        Value::Object(m) => Ok((
            m,
            Source {
                text: Arc::from(&area[..end]),
                root: Arc::new(root),
            },
        )),
        _ => Err(bad("top-level JSON value is not an object")),
    }
}

/// Length of the text json-c writes for `meta` (compact, `/` unescaped), the unchanged values
/// of `source` counted as json-c reads them: cryptsetup checks that it fits the JSON area.
pub fn serialized_len(meta: &Map<String, Value>, source: Option<&Source>) -> usize {
    let root = source.map(|s| s.root.as_ref());
    object_len(meta, root)
}

fn object_len(map: &Map<String, Value>, orig: Option<&Node>) -> usize {
    let members = members_by_key(orig);
    let inner: usize = map
        .iter()
        .map(|(k, v)| {
            let m = members.get(k.as_str());
            let key = m.map_or_else(|| 3 + escaped_len(k.as_bytes()), |m| m.key_len);
            key + value_len(v, m.map(|m| &m.node))
        })
        .sum();
    2 + inner + map.len().saturating_sub(1)
}

fn value_len(cur: &Value, orig: Option<&Node>) -> usize {
    match (cur, orig) {
        (_, Some(Node::Scalar { value, len, .. })) if value == cur => *len,
        (Value::Object(map), _) => object_len(map, orig),
        (Value::Array(items), _) => {
            let nodes = match orig {
                Some(Node::Array(nodes)) => nodes.as_slice(),
                _ => &[],
            };
            let inner: usize = items
                .iter()
                .enumerate()
                .map(|(i, v)| value_len(v, nodes.get(i)))
                .sum();
            2 + inner + items.len().saturating_sub(1)
        }
        (Value::String(s), _) => 2 + escaped_len(s.as_bytes()),
        (other, _) => other.to_string().len(),
    }
}

/// Members of an object node by key; later duplicates overwrite earlier ones, as in the map.
fn members_by_key(orig: Option<&Node>) -> HashMap<&str, &Member> {
    match orig {
        Some(Node::Object(ms)) => ms.iter().map(|m| (m.key.as_str(), m)).collect(),
        _ => HashMap::new(),
    }
}

fn span_text(text: &[u8], span: Span) -> Result<&[u8], Invalid> {
    text.get(span.0..span.1)
        .ok_or_else(|| bad("source text index out of range"))
}

fn write_json(out: &mut Vec<u8>, v: &impl serde::Serialize) -> Result<(), Invalid> {
    serde_json::to_writer(out, v).map_err(|e| bad(format!("cannot encode JSON: {e}")))
}

/// Compact JSON of `cur`; where `orig` (its counterpart in `text`) holds an equal scalar, that
/// scalar's original text.
fn write_value(
    out: &mut Vec<u8>,
    text: &[u8],
    cur: &Value,
    orig: Option<&Node>,
) -> Result<(), Invalid> {
    match (cur, orig) {
        (_, Some(Node::Scalar { span, value, .. })) if value == cur => {
            out.extend_from_slice(span_text(text, *span)?);
        }
        (Value::Object(map), _) => write_object(out, text, map, orig)?,
        (Value::Array(items), _) => {
            let nodes = match orig {
                Some(Node::Array(nodes)) => nodes.as_slice(),
                _ => &[],
            };
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, text, v, nodes.get(i))?;
            }
            out.push(b']');
        }
        _ => write_json(out, cur)?,
    }
    Ok(())
}

/// Compact JSON text (as json-c `PLAIN | NOSLASHESCAPE`), keeping the original text of every
/// unchanged scalar of `source`.
pub fn to_text(meta: &Map<String, Value>, source: Option<&Source>) -> Result<Vec<u8>, Invalid> {
    let mut out = Vec::new();
    match source {
        Some(s) => write_object(&mut out, &s.text, meta, Some(&s.root))?,
        None => write_object(&mut out, b"", meta, None)?,
    }
    Ok(out)
}

fn write_object(
    out: &mut Vec<u8>,
    text: &[u8],
    meta: &Map<String, Value>,
    orig: Option<&Node>,
) -> Result<(), Invalid> {
    out.push(b'{');
    let members = members_by_key(orig);
    for (i, (k, v)) in meta.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let member = members.get(k.as_str());
        match member {
            Some(m) => out.extend_from_slice(span_text(text, m.key_span)?),
            None => write_json(out, k)?,
        }
        out.push(b':');
        write_value(out, text, v, member.map(|m| &m.node))?;
    }
    out.push(b'}');
    Ok(())
}

/// Compact JSON of `value`, the metadata value at `path` (e.g. `["tokens", "0"]`), keeping the
/// original text of its unchanged scalars.
pub fn value_text(
    value: &Value,
    source: Option<&Source>,
    path: &[&str],
) -> Result<String, Invalid> {
    let mut out = Vec::new();
    match source {
        Some(s) => write_value(&mut out, &s.text, value, s.node_at(path))?,
        None => write_value(&mut out, b"", value, None)?,
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Build a full JSON area of `area_len` bytes: text, then zero fill (always ≥ 1 NUL).
pub fn build_area(
    meta: &Map<String, Value>,
    source: Option<&Source>,
    area_len: usize,
) -> Result<Vec<u8>, Invalid> {
    let text = to_text(meta, source)?;
    if text.len() >= area_len {
        return Err(bad(format!(
            "metadata needs {} bytes, the JSON area holds {}",
            text.len() + 1,
            area_len
        )));
    }
    let mut area = vec![0u8; area_len];
    area[..text.len()].copy_from_slice(&text);
    Ok(area)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn area(text: &str) -> Vec<u8> {
        let mut a = text.as_bytes().to_vec();
        a.push(0);
        a
    }

    fn roundtrip(text: &str) -> String {
        let (m, s) = parse_area(&area(text)).unwrap();
        String::from_utf8(to_text(&m, Some(&s)).unwrap()).unwrap()
    }

    #[test]
    fn framing() {
        assert!(parse_area(b"{}\0\0").is_ok());
        assert!(parse_area(b" {}\0").is_err());
        assert!(parse_area(b"{}").is_err(), "no NUL");
        assert!(parse_area(b"{}\0x").is_err(), "garbage after NUL");
        assert!(parse_area(b"{}x\0").is_err(), "garbage after the JSON text");
        assert!(parse_area(b"[]\0").is_err());
        let (m, s) = parse_area(b"{\"a\":\"b/c\"}\0").unwrap();
        assert_eq!(
            to_text(&m, Some(&s)).unwrap(),
            b"{\"a\":\"b/c\"}",
            "compact, no slash escaping"
        );
        assert_eq!(to_text(&m, None).unwrap(), b"{\"a\":\"b/c\"}");
        assert!(build_area(&m, Some(&s), 11).is_err());
        assert_eq!(build_area(&m, Some(&s), 12).unwrap().last(), Some(&0));
    }

    #[test]
    fn invalid_json_rejected() {
        for bad in [
            "{\"a\":-}",
            "{\"a\":tru}",
            "{\"a\":\"\\x\"}",
            "{\"a\" 1}",
            "{\"a\":[1 2]}",
            "{\"a\":1}}",
            "{\"a\":1} x",
            "{\"a\":1}/",
        ] {
            assert!(parse_area(&area(bad)).is_err(), "{bad} must be rejected");
        }
        assert!(parse_area(b"{\"a\":\"\0\"}\0").is_err(), "raw NUL");
    }

    #[test]
    fn json_c_leniency_kept_on_rewrite() {
        // Trailing whitespace and comments after the object are part of the framing.
        assert!(parse_area(b"{\"a\":1} \n/*c*/\0\0").is_ok());
        let text = b"{'a':TRUE,\"b\":\"\xff\x01\",\"c\":012,}";
        let (m, s) = parse_area(&[&text[..], b"\0"].concat()).unwrap();
        assert_eq!(m["a"], true);
        assert_eq!(
            to_text(&m, Some(&s)).unwrap(),
            b"{'a':TRUE,\"b\":\"\xff\x01\",\"c\":012}"
        );
        // json-c writes {"a":true,"b":"<ff>\u0001","c":12}.
        assert_eq!(serialized_len(&m, Some(&s)), 31);
    }

    #[test]
    fn scalars_keep_their_text() {
        let text = r#"{"tokens":{"3":{"type":"x-test","keyslots":["0"],"f":1.5e300,"big":123456789012345678901234567890,"nz":-0.0,"u":"caf\u00e9 \u2603 \ud83d\ude00 \u0001 \/ tab\t","nested":{"a":[1,2.50,{"b":1E+2}],"c":{}},"huge":1e400,"nhuge":-1e400,"small":5e-324,"neg":-123456789012345678901234567890}},"z":[true,false,null]}"#;
        assert_eq!(roundtrip(text), text);
        // Whitespace goes, values stay.
        let spaced = text.replace(",\"", " ,\n\t\"").replace(':', " : ");
        assert_eq!(roundtrip(&spaced), text);
        // Lossy through plain serde_json: this is what the source text is for.
        let plain: Value = serde_json::from_str(&text.replace("1e400", "1")).unwrap();
        assert_ne!(
            serde_json::to_string(&plain).unwrap(),
            text.replace("1e400", "1")
        );
    }

    #[test]
    fn edits_touch_only_what_changed() {
        let text = r#"{"tokens":{"0":{"type":"t","keyslots":["0","1"],"f":2.50,"s":"\u00e9"}},"keyslots":{"0":{"x":1.0}}}"#;
        let (mut m, s) = parse_area(&area(text)).unwrap();
        let tok = m["tokens"]["0"].as_object_mut().unwrap();
        tok["keyslots"].as_array_mut().unwrap().remove(0);
        tok.insert("new".into(), Value::from(1.5));
        m["keyslots"]
            .as_object_mut()
            .unwrap()
            .insert("1".into(), serde_json::json!({"y": "a/b"}));
        m.insert("late".into(), Value::from(1.0));
        assert_eq!(
            String::from_utf8(to_text(&m, Some(&s)).unwrap()).unwrap(),
            r#"{"tokens":{"0":{"type":"t","keyslots":["1"],"f":2.50,"s":"\u00e9","new":1.5}},"keyslots":{"0":{"x":1.0},"1":{"y":"a/b"}},"late":1.0}"#
        );
        assert_eq!(
            value_text(&m["tokens"]["0"], Some(&s), &["tokens", "0"]).unwrap(),
            r#"{"type":"t","keyslots":["1"],"f":2.50,"s":"\u00e9","new":1.5}"#
        );
        // A changed scalar is written anew.
        m["tokens"]["0"]["f"] = Value::from(3.25);
        assert!(String::from_utf8(to_text(&m, Some(&s)).unwrap())
            .unwrap()
            .contains(r#""f":3.25,"#));
    }

    #[test]
    fn huge_numbers_are_large_floats_in_memory() {
        let (m, _) = parse_area(&area(r#"{"a":1e400,"b":-1e400,"c":1e-400}"#)).unwrap();
        assert_eq!(m["a"].as_f64(), Some(f64::MAX));
        assert_eq!(m["b"].as_f64(), Some(f64::MIN));
        assert_eq!(m["c"].as_f64(), Some(0.0));
    }

    #[test]
    fn duplicate_keys_last_wins() {
        let text = r#"{"a":1.50,"b":2,"a":2.50}"#;
        let (m, s) = parse_area(&area(text)).unwrap();
        assert_eq!(m["a"].as_f64(), Some(2.5));
        assert_eq!(
            String::from_utf8(to_text(&m, Some(&s)).unwrap()).unwrap(),
            r#"{"a":2.50,"b":2}"#
        );
    }
}
