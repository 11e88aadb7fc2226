//! The JSON dialect of the LUKS2 metadata as cryptsetup reads it: json-c 0.16's tokener in its
//! default (non-strict) mode with its default depth limit of 32. It accepts more than RFC 8259
//! and this reader accepts exactly the same:
//!
//! - `/* */` and `//` comments wherever whitespace may stand (a `*` right before the closing
//!   `*/` of a block comment does not end it: `**/` leaves the comment open);
//! - strings in single quotes; raw control characters and bytes that are not UTF-8 inside
//!   strings (a raw NUL ends the input: rejected); unpaired surrogate escapes become U+FFFD;
//! - `true`, `false`, `null`, `NaN` and `Infinity` in any letter case, `-Infinity`;
//! - numbers with leading zeros (`012`), a bare fraction dot (`1.`), a dangling exponent
//!   (`1e`, `1e+`, cut off), integers beyond 64 bits (clamped to the 64-bit range);
//! - a trailing comma before `}` or `]`; duplicate keys (the last value wins, at the position
//!   of the first);
//! - a comment right after a complete value that runs into a NUL ends the parse successfully,
//!   the result being that value (after the root object: the root; inside it: the inner value,
//!   which the caller then checks like a root).
//!
//! Values in memory follow json-c's C view of them: a string (or key) ends at its first NUL
//! (`\u0000`), bytes that are not UTF-8 become U+FFFD. Each scalar keeps its source span and
//! the length json-c gives it when it writes the metadata back (for the `json_size` rule).

use crate::error::Invalid;
use serde_json::{Map, Value};

/// json-c's default nesting limit: a value may stand at depth 31 at most (the root is 0).
const MAX_DEPTH: usize = 32;
const REPLACEMENT: &[u8] = "\u{fffd}".as_bytes();

/// Byte range of a value (or an object key, quotes included) in the source text.
pub(crate) type Span = (usize, usize);

#[derive(Debug)]
pub(crate) struct Member {
    pub key: String,
    pub key_span: Span,
    /// json-c's serialized length of `"key":`.
    pub key_len: usize,
    pub node: Node,
}

/// Where each value of the source text stands; scalars also carry the value parsed from it and
/// json-c's serialized length.
#[derive(Debug)]
pub(crate) enum Node {
    Scalar {
        span: Span,
        value: Value,
        len: usize,
    },
    Object(Vec<Member>),
    Array(Vec<Node>),
}

fn bad(reason: &str) -> Invalid {
    Invalid::new("json area", format!("invalid JSON: {reason}"))
}

fn eof() -> Invalid {
    bad("unexpected end of the JSON text")
}

/// Why parsing stopped early.
enum Stop {
    Bad(Invalid),
    /// A NUL inside a comment right after a complete value: json-c ends there, successfully,
    /// with that value as the result (`end` is past the NUL).
    Halt(Box<(Node, Value)>, usize),
}

impl From<Invalid> for Stop {
    fn from(e: Invalid) -> Self {
        Stop::Bad(e)
    }
}

/// Where whitespace is skipped: json-c treats the end of the input and a NUL inside a comment
/// differently right after a value.
#[derive(Clone, Copy, PartialEq)]
enum Ws {
    Inside,
    AfterValue,
    AfterRoot,
}

/// Length of `bytes` escaped as json-c writes strings (`/` unescaped).
pub(crate) fn escaped_len(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .map(|&c| match c {
            b'\x08' | b'\n' | b'\r' | b'\t' | b'\x0c' | b'"' | b'\\' => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum()
}

fn c_string(raw: &[u8]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

fn push_utf8(out: &mut Vec<u8>, ucs: u32) {
    match char::from_u32(ucs) {
        Some(ch) => out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes()),
        None => out.extend_from_slice(REPLACEMENT),
    }
}

/// A number's text as strtod would take it whole: `-?(d+(.d*)?|.d+)([eE][+-]?d+)?`.
fn strtod_whole(t: &[u8]) -> bool {
    let t = t.strip_prefix(b"-").unwrap_or(t);
    let (mant, exp) = match t.iter().position(|&c| c == b'e' || c == b'E') {
        Some(p) => (&t[..p], Some(&t[p + 1..])),
        None => (t, None),
    };
    let (int, frac) = match mant.iter().position(|&c| c == b'.') {
        Some(p) => (&mant[..p], &mant[p + 1..]),
        None => (mant, &[][..]),
    };
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let mant_ok = digits(int) && digits(frac) && !(int.is_empty() && frac.is_empty());
    let exp_ok = exp.is_none_or(|e| {
        let e = e.strip_prefix(b"+").or(e.strip_prefix(b"-")).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mant_ok && exp_ok
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Result<u8, Invalid> {
        self.b.get(self.pos).copied().ok_or_else(eof)
    }

    /// Whitespace and comments. `Some(end)` when a comment after a value runs into a NUL.
    fn skip_ws(&mut self, at: Ws) -> Result<Option<usize>, Invalid> {
        loop {
            match self.b.get(self.pos) {
                None if at == Ws::AfterRoot => return Ok(None),
                None => return Err(eof()),
                Some(b' ' | b'\t' | b'\n' | b'\r') => self.pos += 1,
                Some(b'/') => {
                    self.pos += 1;
                    if self.comment()? {
                        if at == Ws::Inside {
                            return Err(bad("NUL in a comment"));
                        }
                        return Ok(Some(self.pos + 1));
                    }
                }
                Some(_) => return Ok(None),
            }
        }
    }

    /// After a `/`: true when the comment runs into a NUL (left at the current position).
    fn comment(&mut self) -> Result<bool, Invalid> {
        match self.peek()? {
            b'*' => {
                self.pos += 1;
                loop {
                    match self.peek()? {
                        0 => return Ok(true),
                        b'*' => {
                            self.pos += 1;
                            // The byte after a `*` either closes the comment or is skipped.
                            match self.peek()? {
                                b'/' => {
                                    self.pos += 1;
                                    return Ok(false);
                                }
                                0 => return Ok(true),
                                _ => self.pos += 1,
                            }
                        }
                        _ => self.pos += 1,
                    }
                }
            }
            b'/' => loop {
                match self.peek()? {
                    0 => return Ok(true),
                    b'\n' => {
                        self.pos += 1;
                        return Ok(false);
                    }
                    _ => self.pos += 1,
                }
            },
            _ => Err(bad("'/' that starts no comment")),
        }
    }

    /// Whitespace after a member or element; a NUL in a comment ends the parse with it.
    fn after_value(&mut self, node: Node, value: Value) -> Result<(Node, Value), Stop> {
        match self.skip_ws(Ws::AfterValue)? {
            Some(end) => Err(Stop::Halt(Box::new((node, value)), end)),
            None => Ok((node, value)),
        }
    }

    fn scalar(&self, start: usize, value: Value, len: usize) -> (Node, Value) {
        let node = Node::Scalar {
            span: (start, self.pos),
            value: value.clone(),
            len,
        };
        (node, value)
    }

    fn value(&mut self, depth: usize) -> Result<(Node, Value), Stop> {
        let start = self.pos;
        match self.peek()? {
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            b'I' | b'i' => Ok(self.infinity(start, false)?),
            b'N' | b'n' => Ok(self.null_or_nan(start)?),
            b'T' | b't' | b'F' | b'f' => Ok(self.boolean(start)?),
            b'"' | b'\'' => {
                let raw = self.string()?;
                let len = 2 + escaped_len(&raw);
                Ok(self.scalar(start, Value::String(c_string(&raw)), len))
            }
            b'0'..=b'9' | b'-' => Ok(self.number(start)?),
            _ => Err(bad("unexpected character").into()),
        }
    }

    fn object(&mut self, depth: usize) -> Result<(Node, Value), Stop> {
        self.pos += 1;
        let mut members = Vec::new();
        let mut map = Map::new();
        self.skip_ws(Ws::Inside)?;
        if self.peek()? == b'}' {
            self.pos += 1;
            return Ok((Node::Object(members), Value::Object(map)));
        }
        loop {
            if !matches!(self.peek()?, b'"' | b'\'') {
                return Err(bad("object key expected").into());
            }
            let key_start = self.pos;
            let raw = self.string()?;
            let key_span = (key_start, self.pos);
            self.skip_ws(Ws::Inside)?;
            if self.peek()? != b':' {
                return Err(bad("':' expected").into());
            }
            self.pos += 1;
            self.skip_ws(Ws::Inside)?;
            if depth + 1 >= MAX_DEPTH {
                return Err(bad("nested too deeply").into());
            }
            let (node, value) = self.value(depth + 1)?;
            let (node, value) = self.after_value(node, value)?;
            let key_c = &raw[..raw.iter().position(|&b| b == 0).unwrap_or(raw.len())];
            let key = c_string(key_c);
            map.insert(key.clone(), value);
            members.push(Member {
                key,
                key_span,
                key_len: 3 + escaped_len(key_c),
                node,
            });
            match self.peek()? {
                b'}' => break,
                b',' => {
                    self.pos += 1;
                    self.skip_ws(Ws::Inside)?;
                    if self.peek()? == b'}' {
                        break;
                    }
                }
                _ => return Err(bad("',' or '}' expected").into()),
            }
        }
        self.pos += 1;
        Ok((Node::Object(members), Value::Object(map)))
    }

    fn array(&mut self, depth: usize) -> Result<(Node, Value), Stop> {
        self.pos += 1;
        let mut nodes = Vec::new();
        let mut values = Vec::new();
        self.skip_ws(Ws::Inside)?;
        if self.peek()? != b']' {
            loop {
                if depth + 1 >= MAX_DEPTH {
                    return Err(bad("nested too deeply").into());
                }
                let (node, value) = self.value(depth + 1)?;
                let (node, value) = self.after_value(node, value)?;
                nodes.push(node);
                values.push(value);
                match self.peek()? {
                    b']' => break,
                    b',' => {
                        self.pos += 1;
                        self.skip_ws(Ws::Inside)?;
                        if self.peek()? == b']' {
                            break;
                        }
                    }
                    _ => return Err(bad("',' or ']' expected").into()),
                }
            }
        }
        self.pos += 1;
        Ok((Node::Array(nodes), Value::Array(values)))
    }

    /// `Infinity` in any letter case, at the current position (after a `-` when `negative`).
    fn infinity(&mut self, start: usize, negative: bool) -> Result<(Node, Value), Invalid> {
        for (lower, upper) in b"infinity".iter().zip(b"INFINITY") {
            let c = self.peek()?;
            if c != *lower && c != *upper {
                return Err(bad("invalid literal"));
            }
            self.pos += 1;
        }
        // In memory the largest float stands for an infinity (serde_json has none).
        let (v, len) = if negative {
            (f64::MIN, "-Infinity".len())
        } else {
            (f64::MAX, "Infinity".len())
        };
        Ok(self.scalar(start, Value::from(v), len))
    }

    /// json-c's incremental prefix match of `null`/`NaN`, in any letter case. The byte that
    /// completes the match is not part of the literal.
    fn null_or_nan(&mut self, start: usize) -> Result<(Node, Value), Invalid> {
        let same = |a: &[u8], b: &[u8]| a.eq_ignore_ascii_case(b);
        let mut buf = Vec::new();
        loop {
            let st = buf.len();
            buf.push(self.peek()?);
            let size = (st + 1).min(4);
            if same(&b"null"[..size], &buf[..size]) {
                if st == 4 {
                    return Ok(self.scalar(start, Value::Null, 4));
                }
            } else {
                let size = (st + 1).min(3);
                if !same(&b"nan"[..size], &buf[..size]) {
                    return Err(bad("invalid literal"));
                }
                if st == 3 {
                    return Ok(self.scalar(start, Value::from(0.0), 3));
                }
            }
            self.pos += 1;
        }
    }

    fn boolean(&mut self, start: usize) -> Result<(Node, Value), Invalid> {
        let same = |a: &[u8], b: &[u8]| a.eq_ignore_ascii_case(b);
        let mut buf = Vec::new();
        loop {
            let st = buf.len();
            buf.push(self.peek()?);
            let size = (st + 1).min(4);
            if same(&b"true"[..size], &buf[..size]) {
                if st == 4 {
                    return Ok(self.scalar(start, Value::Bool(true), 4));
                }
            } else {
                let size = (st + 1).min(5);
                if !same(&b"false"[..size], &buf[..size]) {
                    return Err(bad("invalid literal"));
                }
                if st == 5 {
                    return Ok(self.scalar(start, Value::Bool(false), 5));
                }
            }
            self.pos += 1;
        }
    }

    fn number(&mut self, start: usize) -> Result<(Node, Value), Invalid> {
        let (mut is_double, mut is_exponent) = (false, false);
        let (mut neg_ok, mut pos_ok) = (true, false);
        loop {
            let c = self.peek()?;
            let takes = c.is_ascii_digit()
                || (!is_exponent && (c == b'e' || c == b'E'))
                || (neg_ok && c == b'-')
                || (pos_ok && c == b'+')
                || (!is_double && c == b'.');
            if c == 0 || !takes {
                break;
            }
            neg_ok = false;
            pos_ok = false;
            match c {
                b'.' => {
                    is_double = true;
                    (neg_ok, pos_ok) = (true, true);
                }
                b'e' | b'E' => {
                    is_exponent = true;
                    is_double = true;
                    (neg_ok, pos_ok) = (true, true);
                }
                _ => {}
            }
            self.pos += 1;
        }
        let next = self.peek()?;
        if !matches!(
            next,
            b',' | b']' | b'}' | b'/' | b'I' | b'i' | b' ' | b'\t' | b'\n' | b'\r'
        ) {
            return Err(bad("invalid number"));
        }
        let text = &self.b[start..self.pos];
        if text == b"-" && (next == b'I' || next == b'i') {
            return self.infinity(start, true);
        }
        if is_double {
            let mut t = text;
            while t.len() > 1 && matches!(t[t.len() - 1], b'e' | b'E' | b'+' | b'-') {
                t = &t[..t.len() - 1];
            }
            if !strtod_whole(t) {
                return Err(bad("invalid number"));
            }
            let f = std::str::from_utf8(t)
                .ok()
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or(0.0);
            let f = if f.is_finite() {
                f
            } else if f > 0.0 {
                f64::MAX
            } else {
                f64::MIN
            };
            return Ok(self.scalar(start, Value::from(f), t.len()));
        }
        let (digits, negative) = match text.strip_prefix(b"-") {
            Some(d) => (d, true),
            None => (text, false),
        };
        if digits.is_empty() {
            return Err(bad("invalid number"));
        }
        // strtoll/strtoull: out-of-range values are clamped.
        let magnitude = std::str::from_utf8(digits)
            .ok()
            .and_then(|s| s.parse::<u128>().ok())
            .unwrap_or(u128::MAX);
        let value = if negative {
            let v = i64::try_from(-(magnitude.min(1 << 63) as i128)).unwrap_or(i64::MIN);
            Value::from(v)
        } else if magnitude <= i64::MAX as u128 {
            Value::from(magnitude as i64)
        } else {
            Value::from(u64::try_from(magnitude).unwrap_or(u64::MAX))
        };
        let len = value.to_string().len();
        Ok(self.scalar(start, value, len))
    }

    /// A string from its opening quote (`"` or `'`): its bytes, escapes resolved.
    fn string(&mut self) -> Result<Vec<u8>, Invalid> {
        let quote = self.peek()?;
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.peek()? {
                c if c == quote => {
                    self.pos += 1;
                    return Ok(out);
                }
                b'\\' => {
                    self.pos += 1;
                    self.escape(&mut out)?;
                }
                0 => return Err(bad("NUL inside a string")),
                c => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// The escape code after a `\`.
    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), Invalid> {
        let c = self.peek()?;
        let byte = match c {
            b'"' | b'\\' | b'/' => c,
            b'b' => 0x08,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'f' => 0x0c,
            b'u' => {
                self.pos += 1;
                return self.unicode(out);
            }
            _ => return Err(bad("invalid escape")),
        };
        out.push(byte);
        self.pos += 1;
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, Invalid> {
        let mut v = 0;
        for _ in 0..4 {
            let d = (self.peek()? as char)
                .to_digit(16)
                .ok_or_else(|| bad("invalid \\u escape"))?;
            v = v << 4 | d;
            self.pos += 1;
        }
        Ok(v)
    }

    /// After `\u`; a high surrogate must be followed by `\u` and a low one, else it becomes
    /// U+FFFD and what follows is read normally.
    fn unicode(&mut self, out: &mut Vec<u8>) -> Result<(), Invalid> {
        let mut high: Option<u32> = None;
        loop {
            let mut ucs = self.hex4()?;
            if let Some(h) = high.take() {
                if (0xdc00..=0xdfff).contains(&ucs) {
                    ucs = (((h & 0x3ff) << 10) | (ucs & 0x3ff)) + 0x10000;
                } else {
                    out.extend_from_slice(REPLACEMENT);
                }
            }
            if !(0xd800..=0xdbff).contains(&ucs) {
                push_utf8(out, ucs);
                return Ok(());
            }
            high = Some(ucs);
            if self.peek()? != b'\\' {
                out.extend_from_slice(REPLACEMENT);
                return Ok(());
            }
            self.pos += 1;
            if self.peek()? != b'u' {
                out.extend_from_slice(REPLACEMENT);
                return self.escape(out);
            }
            self.pos += 1;
        }
    }
}

/// Parse the JSON value at the start of `area` as json-c does with the area's length as the
/// input length. Returns the tree, the value and where parsing stopped (after the value and
/// any whitespace and comments that follow it).
pub(crate) fn parse(area: &[u8]) -> Result<(Node, Value, usize), Invalid> {
    let mut r = Reader { b: area, pos: 0 };
    match r.value(0) {
        Ok((node, value)) => match r.skip_ws(Ws::AfterRoot)? {
            Some(end) => Ok((node, value, end)),
            None => Ok((node, value, r.pos)),
        },
        Err(Stop::Halt(nv, end)) => Ok((nv.0, nv.1, end)),
        Err(Stop::Bad(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Value {
        let mut a = text.as_bytes().to_vec();
        a.push(0);
        match parse(&a) {
            Ok((_, v, end)) => {
                assert_eq!(end, text.len(), "{text}: stops at its end");
                v
            }
            Err(e) => panic!("{text}: {e}"),
        }
    }

    fn rejected(text: &[u8]) -> bool {
        let mut a = text.to_vec();
        a.push(0);
        parse(&a).is_err()
    }

    #[test]
    fn json_c_extensions() {
        assert_eq!(ok("{'a':'b\"c'}")["a"], "b\"c");
        assert_eq!(ok("{/*x*/\"a\"//y\n:1}")["a"], 1);
        assert_eq!(ok("{\"a\":[1,],}")["a"], serde_json::json!([1]));
        assert_eq!(ok("{\"a\":TRUE,\"b\":fAlSe,\"c\":NULL}")["b"], false);
        assert_eq!(ok("{\"a\":012}")["a"], 12);
        assert_eq!(ok("{\"a\":1.}")["a"], 1.0);
        assert_eq!(ok("{\"a\":1e}")["a"], 1.0);
        assert_eq!(ok("{\"a\":18446744073709551616}")["a"], u64::MAX);
        assert_eq!(ok("{\"a\":-99999999999999999999}")["a"], i64::MIN);
        assert_eq!(ok("{\"a\":-iNfInItY,\"b\":NaN}")["a"], f64::MIN);
        assert_eq!(ok("{\"a\":\"x\\u0000y\",\"k\\u0000z\":1}")["a"], "x");
        assert_eq!(ok("{\"a\":\"x\\u0000y\",\"k\\u0000z\":1}")["k"], 1);
        assert_eq!(ok("{\"a\":\"\\ud800x\"}")["a"], "\u{fffd}x");
        assert_eq!(ok("{\"a\":\"\\ud83d\\ude00\"}")["a"], "\u{1f600}");
        assert_eq!(
            ok("{\"a\":1,\"b\":2,\"a\":3}"),
            serde_json::json!({"a":3,"b":2})
        );
        let mut raw = b"{\"a\":\"\x01\xff\"}\0".to_vec();
        assert!(parse(&raw).is_ok(), "raw control and non-UTF-8 bytes");
        raw[6] = 0;
        assert!(parse(&raw).is_err(), "raw NUL inside a string");
    }

    #[test]
    fn nul_in_a_comment_after_a_value_ends_the_parse() {
        let (_, v, end) = parse(b"{\"a\":1}//c\0\0").unwrap();
        assert_eq!((v, end), (serde_json::json!({"a":1}), 11));
        let (_, v, end) = parse(b"{\"a\":1} /* x *\0\0").unwrap();
        assert_eq!((v, end), (serde_json::json!({"a":1}), 15));
        let (_, v, _) = parse(b"{\"a\":{\"b\":1}/*\0").unwrap();
        assert_eq!(
            v,
            serde_json::json!({"b":1}),
            "the inner object is the result"
        );
        assert!(parse(b"{/*\0").is_err(), "not after a value");
        assert!(parse(b"{\"a\":1}/*").is_err(), "end of input in a comment");
    }

    #[test]
    fn json_c_rejections() {
        for bad in [
            &b"{\"a\":+1}"[..],
            b"{\"a\":-}",
            b"{\"a\":0x1}",
            b"{\"a\":1.-5}",
            b"{\"a\":.5}",
            b"{\"a\":tru}",
            b"{\"a\":nul}",
            b"{\"a\":\"\\x\"}",
            b"{\"a\":\"\\'\"}",
            b"{\"a\" 1}",
            b"{\"a\":[1 2]}",
            b"{a:1}",
            b"{\"a\":1,,}",
            b"{\"a\":1/x}",
            b"{/* a **/\"a\":1}",
        ] {
            assert!(rejected(bad), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn depth_limit_is_json_c_s() {
        for (depth, accepted) in [(30, true), (31, false), (29, true)] {
            // The root object is depth 0; `depth` nested arrays put the 1 at depth+1.
            let text = format!("{{\"a\":{}1{}}}", "[".repeat(depth), "]".repeat(depth));
            assert_eq!(!rejected(text.as_bytes()), accepted, "depth {depth}");
        }
        let text = format!("{{\"a\":{}{}}}", "[".repeat(31), "]".repeat(31));
        assert!(
            !rejected(text.as_bytes()),
            "an empty array may stand at depth 31"
        );
    }

    #[test]
    fn serialized_lengths() {
        let mut a = b"{\"a\":\"\x01/\"}\0".to_vec();
        let (node, _, _) = parse(&a).unwrap();
        let Node::Object(m) = &node else { panic!() };
        let Node::Scalar { len, .. } = &m[0].node else {
            panic!()
        };
        assert_eq!(*len, "\"\\u0001/\"".len());
        a = b"{\"a\":-0}\0".to_vec();
        let (node, _, _) = parse(&a).unwrap();
        let Node::Object(m) = &node else { panic!() };
        let Node::Scalar { len, .. } = &m[0].node else {
            panic!()
        };
        assert_eq!(*len, 1, "-0 is written 0");
    }
}
