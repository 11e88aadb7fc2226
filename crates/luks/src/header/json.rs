//! JSON area framing: `{` first, the text, at least one NUL, then only NULs; compact output.
//!
//! The text a header was read from is kept ([`Source`]) so that a rewrite reproduces every
//! value it did not change exactly as it was written: floats such as `1.5e300`, `2.50` or
//! `1E+2`, integers beyond 64 bits, `-0.0`, numbers beyond the f64 range (`1e400`, which json-c
//! accepts), `\u` escapes. Unknown tokens and segments, which only cryptsetup or other tools
//! interpret, thus survive our writes byte for byte, and a token whose `keyslots` array we edit
//! keeps the rest of its text. Objects and arrays are written compact, as cryptsetup does, in
//! the order of the metadata map (which preserves the text's order).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::error::Invalid;
use serde_json::{Map, Value};

/// Most objects and arrays nested in one another (serde_json's default recursion limit, which
/// this parser had before it kept the source text).
const MAX_NESTING: usize = 127;

fn bad(reason: impl Into<String>) -> Invalid {
    Invalid::new("json area", reason)
}

/// Byte range of a value (or an object key, quotes included) in [`Source::text`].
type Span = (usize, usize);

#[derive(Debug)]
struct Member {
    key: String,
    key_span: Span,
    node: Node,
}

/// Where each value of the source text stands; scalars also carry the value parsed from it.
#[derive(Debug)]
enum Node {
    Scalar { span: Span, value: Value },
    Object(Vec<Member>),
    Array(Vec<Node>),
}

/// The original JSON text of a header and its index. Cheap to clone.
#[derive(Clone)]
pub struct Source {
    text: Arc<str>,
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

/// Recursive-descent indexer over text that serde_json has already checked to be one valid
/// JSON value; every unexpected byte is still reported as an error, never a panic.
struct Scanner<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&mut self) -> Option<u8> {
        let bytes = self.text.as_bytes();
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = bytes.get(self.pos) {
            self.pos += 1;
        }
        bytes.get(self.pos).copied()
    }

    fn slice(&self, span: Span) -> Result<&'a str, Invalid> {
        self.text
            .get(span.0..span.1)
            .ok_or_else(|| bad("invalid JSON: truncated value"))
    }

    /// A string starting at the current `"`: its span, quotes included.
    fn string(&mut self) -> Result<Span, Invalid> {
        let start = self.pos;
        let bytes = self.text.as_bytes();
        self.pos += 1;
        loop {
            match bytes.get(self.pos) {
                Some(b'\\') => self.pos += 2,
                Some(b'"') => {
                    self.pos += 1;
                    return Ok((start, self.pos));
                }
                Some(_) => self.pos += 1,
                None => return Err(bad("invalid JSON: unterminated string")),
            }
        }
    }

    /// A number or literal: everything up to the next delimiter.
    fn bare(&mut self) -> Span {
        let start = self.pos;
        let bytes = self.text.as_bytes();
        while let Some(c) = bytes.get(self.pos) {
            if matches!(c, b',' | b']' | b'}' | b':' | b' ' | b'\t' | b'\n' | b'\r') {
                break;
            }
            self.pos += 1;
        }
        (start, self.pos)
    }

    fn scalar(&self, span: Span) -> Result<Value, Invalid> {
        let raw = self.slice(span)?;
        match serde_json::from_str::<Value>(raw) {
            Ok(v) => Ok(v),
            // The syntax was checked already, so this is a number beyond the f64 range; json-c
            // accepts it (as ±inf), and its text is kept. In memory it is the largest float.
            Err(_) if raw.starts_with('-') => Ok(Value::from(f64::MIN)),
            Err(_) if raw.starts_with(|c: char| c.is_ascii_digit()) => Ok(Value::from(f64::MAX)),
            Err(e) => Err(bad(format!("invalid JSON: {e}"))),
        }
    }

    fn value(&mut self, depth: usize) -> Result<(Node, Value), Invalid> {
        match self.peek() {
            Some(open @ (b'{' | b'[')) => {
                if depth >= MAX_NESTING {
                    return Err(bad("invalid JSON: nested too deeply"));
                }
                self.pos += 1;
                if open == b'{' {
                    self.object(depth)
                } else {
                    self.array(depth)
                }
            }
            Some(c) => {
                let span = if c == b'"' {
                    self.string()?
                } else {
                    self.bare()
                };
                let value = self.scalar(span)?;
                Ok((
                    Node::Scalar {
                        span,
                        value: value.clone(),
                    },
                    value,
                ))
            }
            None => Err(bad("invalid JSON: value expected")),
        }
    }

    /// Consume `c` if it comes next.
    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        if hit {
            self.pos += 1;
        }
        hit
    }

    /// After a member or element: `,` (false, more follow) or `close` (true).
    fn closed(&mut self, close: u8) -> Result<bool, Invalid> {
        if self.eat(b',') {
            Ok(false)
        } else if self.eat(close) {
            Ok(true)
        } else {
            Err(bad(format!(
                "invalid JSON: ',' or '{}' expected",
                close as char
            )))
        }
    }

    /// After `{`.
    fn object(&mut self, depth: usize) -> Result<(Node, Value), Invalid> {
        let mut map = Map::new();
        let mut members = Vec::new();
        let mut done = self.eat(b'}');
        while !done {
            if self.peek() != Some(b'"') {
                return Err(bad("invalid JSON: object key expected"));
            }
            let key_span = self.string()?;
            let key: String = serde_json::from_str(self.slice(key_span)?)
                .map_err(|e| bad(format!("invalid JSON: {e}")))?;
            if !self.eat(b':') {
                return Err(bad("invalid JSON: ':' expected"));
            }
            let (node, value) = self.value(depth + 1)?;
            map.insert(key.clone(), value);
            members.push(Member {
                key,
                key_span,
                node,
            });
            done = self.closed(b'}')?;
        }
        Ok((Node::Object(members), Value::Object(map)))
    }

    /// After `[`.
    fn array(&mut self, depth: usize) -> Result<(Node, Value), Invalid> {
        let mut nodes = Vec::new();
        let mut values = Vec::new();
        let mut done = self.eat(b']');
        while !done {
            let (node, value) = self.value(depth + 1)?;
            nodes.push(node);
            values.push(value);
            done = self.closed(b']')?;
        }
        Ok((Node::Array(nodes), Value::Array(values)))
    }
}

/// Parse a JSON area (everything after the binary header, `hdr_size - 4096` bytes): the
/// metadata and the text it came from.
pub fn parse_area(area: &[u8]) -> Result<(Map<String, Value>, Source), Invalid> {
    if area.first() != Some(&b'{') {
        return Err(bad("does not start with '{'"));
    }
    let end = area
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| bad("JSON text is not NUL-terminated"))?;
    if area[end..].iter().any(|&b| b != 0) {
        return Err(bad("non-NUL bytes after the JSON text"));
    }
    let text = std::str::from_utf8(&area[..end])
        .map_err(|e| bad(format!("invalid JSON: not UTF-8: {e}")))?;
    // Full syntax check (one value, nothing after it) without building anything; number
    // ranges and string contents are checked while indexing.
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let mut scanner = Scanner { text, pos: 0 };
    let (root, value) = scanner.value(0)?;
    match value {
        Value::Object(m) => Ok((
            m,
            Source {
                text: Arc::from(text),
                root: Arc::new(root),
            },
        )),
        _ => Err(bad("top-level JSON value is not an object")),
    }
}

fn span_text(text: &str, span: Span) -> Result<&str, Invalid> {
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
    text: &str,
    cur: &Value,
    orig: Option<&Node>,
) -> Result<(), Invalid> {
    match (cur, orig) {
        (_, Some(Node::Scalar { span, value })) if value == cur => {
            out.extend_from_slice(span_text(text, *span)?.as_bytes());
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
        None => write_object(&mut out, "", meta, None)?,
    }
    Ok(out)
}

fn write_object(
    out: &mut Vec<u8>,
    text: &str,
    meta: &Map<String, Value>,
    orig: Option<&Node>,
) -> Result<(), Invalid> {
    out.push(b'{');
    // Later duplicates overwrite earlier ones, as in the parsed map.
    let members: HashMap<&str, &Member> = match orig {
        Some(Node::Object(ms)) => ms.iter().map(|m| (m.key.as_str(), m)).collect(),
        _ => HashMap::new(),
    };
    for (i, (k, v)) in meta.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let member = members.get(k.as_str());
        match member {
            Some(m) => out.extend_from_slice(span_text(text, m.key_span)?.as_bytes()),
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
        None => write_value(&mut out, "", value, None)?,
    }
    String::from_utf8(out).map_err(|_| bad("encoded JSON is not UTF-8"))
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
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"a\":-}",
            "{\"a\":tru}",
            "{\"a\":\"\u{1}\"}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\\ud800\"}",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{\"a\":[1 2]}",
            "{\"a\":1}}",
            "{'a':1}",
        ] {
            assert!(parse_area(&area(bad)).is_err(), "{bad} must be rejected");
        }
        assert!(parse_area(b"{\"a\":\"\xff\"}\0").is_err(), "not UTF-8");
    }

    #[test]
    fn nesting_limit_matches_serde_json() {
        for depth in [126, 127, 128, 129, 5000] {
            let text = format!("{{\"a\":{}1{}}}", "[".repeat(depth), "]".repeat(depth));
            let serde_ok = serde_json::from_str::<Value>(&text).is_ok();
            assert_eq!(parse_area(&area(&text)).is_ok(), serde_ok, "depth {depth}");
        }
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
