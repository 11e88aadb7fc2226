//! Pure, dependency-free decoding of transit wire values, kept separate so it can be fuzzed
//! (`crates/kms/fuzz`, target `transit_ciphertext`, includes this file by path).
//!
//! * [`go_b64_decode`]: Go's `base64.StdEncoding.DecodeString`, bit for bit — same accepted
//!   inputs (newlines skipped, non-zero trailing bits tolerated) and the same
//!   `illegal base64 data at input byte N` positions, because clients see those messages.
//! * [`parse_versioned`]: `vault:v<N>:<base64>` as OpenBao's `DecryptWithFactory` reads it:
//!   prefix, field split, Go `strconv.Atoi` version; the payload is decoded separately so that
//!   callers can apply the version policy checks first, in OpenBao's order.
//! * [`split_nonce`]: `nonce ‖ ciphertext ‖ tag`.
//!
//! Nothing here panics on any input.

use std::fmt;

/// The version prefix every transit ciphertext, HMAC and signature starts with.
pub const PREFIX: &str = "vault:v";

/// Go's `base64.CorruptInputError`: the offending byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct B64Error(pub usize);

impl fmt::Display for B64Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "illegal base64 data at input byte {}", self.0)
    }
}

fn decode_sym(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Standard padded base64, as Go's `base64.StdEncoding.EncodeToString`.
pub fn b64_encode(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Go's `base64.StdEncoding.DecodeString` (padded, non-strict). A port of Go's
/// `decodeQuantum`, which defines both what is accepted and where an error is reported.
pub fn go_b64_decode(s: &str) -> Result<Vec<u8>, B64Error> {
    // Fast path: what strict RFC 4648 accepts, Go accepts identically (the fuzz target
    // checks this); the careful decoder below runs only for inputs that need Go's rules
    // or Go's exact error position.
    {
        use base64::Engine;
        if let Ok(v) = base64::engine::general_purpose::STANDARD.decode(s) {
            return Ok(v);
        }
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    go_decode_careful(s.as_bytes(), &mut out)?;
    Ok(out)
}

/// The most bytes [`go_b64_decode_into`] writes for an input of `len` bytes.
pub fn decoded_capacity(len: usize) -> usize {
    len.div_ceil(4) * 3
}

/// [`go_b64_decode`] into `out` (cleared first), reusing its allocation. With
/// [`decoded_capacity`] bytes of capacity, `out` is never reallocated (so a wiped scratch
/// buffer leaves no stray copy); on error it is left empty.
pub fn go_b64_decode_into(s: &str, out: &mut Vec<u8>) -> Result<(), B64Error> {
    use base64::Engine;
    out.clear();
    if base64::engine::general_purpose::STANDARD
        .decode_vec(s, out)
        .is_ok()
    {
        return Ok(());
    }
    out.clear();
    let r = go_decode_careful(s.as_bytes(), out);
    if r.is_err() {
        out.clear();
    }
    r
}

/// Go's decoder proper, appending to `out`.
fn go_decode_careful(src: &[u8], out: &mut Vec<u8>) -> Result<(), B64Error> {
    let mut si = 0usize;
    while si < src.len() {
        let mut dbuf = [0u8; 4];
        let mut dlen = 4usize;
        let mut j = 0usize;
        let mut trailing: Option<B64Error> = None;
        while j < 4 {
            if si == src.len() {
                if j == 0 {
                    return Ok(());
                }
                // j == 1, or any short quantum with padding expected
                return Err(B64Error(si - j));
            }
            let c = src[si];
            si += 1;
            if let Some(v) = decode_sym(c) {
                dbuf[j] = v;
                j += 1;
                continue;
            }
            if c == b'\n' || c == b'\r' {
                continue;
            }
            if c != b'=' {
                return Err(B64Error(si - 1));
            }
            // padding
            match j {
                0 | 1 => return Err(B64Error(si - 1)),
                2 => {
                    while si < src.len() && (src[si] == b'\n' || src[si] == b'\r') {
                        si += 1;
                    }
                    if si == src.len() {
                        return Err(B64Error(src.len()));
                    }
                    if src[si] != b'=' {
                        return Err(B64Error(si - 1));
                    }
                    si += 1;
                }
                _ => {}
            }
            while si < src.len() && (src[si] == b'\n' || src[si] == b'\r') {
                si += 1;
            }
            if si < src.len() {
                trailing = Some(B64Error(si));
            }
            dlen = j;
            break;
        }
        let val = (u32::from(dbuf[0]) << 18)
            | (u32::from(dbuf[1]) << 12)
            | (u32::from(dbuf[2]) << 6)
            | u32::from(dbuf[3]);
        let bytes = [(val >> 16) as u8, (val >> 8) as u8, val as u8];
        // dlen is 2, 3 or 4 here (0/1 returned above)
        out.extend_from_slice(&bytes[..dlen - 1]);
        if let Some(e) = trailing {
            return Err(e);
        }
    }
    Ok(())
}

/// Go's `strconv.Atoi` on a 64-bit platform: optional sign, at least one ASCII digit,
/// nothing else, no overflow.
pub fn go_atoi(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let (neg, digits) = match b.first() {
        Some(b'+') => (false, &b[1..]),
        Some(b'-') => (true, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let digit = i64::from(d - b'0');
        v = if neg {
            v.checked_mul(10)?.checked_sub(digit)?
        } else {
            v.checked_mul(10)?.checked_add(digit)?
        };
    }
    Some(v)
}

/// Why a `vault:v<N>:...` value could not even be split. The texts are OpenBao's, for
/// ciphertexts; HMAC verification words them differently (see [`VersionedError::hmac_msg`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionedError {
    NoPrefix,
    WrongFields,
    BadVersion,
}

impl VersionedError {
    pub fn ciphertext_msg(self) -> &'static str {
        match self {
            VersionedError::NoPrefix => "invalid ciphertext: no prefix",
            VersionedError::WrongFields => "invalid ciphertext: wrong number of fields",
            VersionedError::BadVersion => "invalid ciphertext: version number could not be decoded",
        }
    }
    pub fn hmac_msg(self) -> &'static str {
        match self {
            VersionedError::NoPrefix => "invalid HMAC to verify: no prefix",
            VersionedError::WrongFields => "invalid HMAC: wrong number of fields",
            VersionedError::BadVersion => "invalid HMAC: version number could not be decoded",
        }
    }
}

/// A split `vault:v<N>:<body>` value. `version` is as written (may be 0 or negative);
/// `body` is still base64 — decode it with [`Versioned::payload`] after the version checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versioned<'a> {
    pub version: i64,
    pub body: &'a str,
}

impl Versioned<'_> {
    pub fn payload(&self) -> Result<Vec<u8>, B64Error> {
        go_b64_decode(self.body)
    }
}

pub fn parse_versioned(s: &str) -> Result<Versioned<'_>, VersionedError> {
    let rest = s.strip_prefix(PREFIX).ok_or(VersionedError::NoPrefix)?;
    let (ver, body) = rest.split_once(':').ok_or(VersionedError::WrongFields)?;
    let version = go_atoi(ver).ok_or(VersionedError::BadVersion)?;
    Ok(Versioned { version, body })
}

/// `vault:v<N>:<base64(payload)>`.
pub fn format_versioned(version: i64, payload: &[u8]) -> String {
    let mut s = String::with_capacity(PREFIX.len() + 21 + encoded_len(payload.len()));
    push_versioned(&mut s, version, payload);
    s
}

/// Append `vault:v<N>:<base64(payload)>` to `out`.
pub fn push_versioned(out: &mut String, version: i64, payload: &[u8]) {
    out.push_str(PREFIX);
    push_int(out, version);
    out.push(':');
    b64_encode_into(out, payload);
}

/// Append the decimal form of `v` (as `{v}` formats it).
pub fn push_int(out: &mut String, v: i64) {
    let mut digits = [0u8; 20];
    let mut n = v.unsigned_abs();
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.push('-');
    }
    out.extend(digits[i..].iter().map(|&d| char::from(d)));
}

/// Length of the padded base64 of `n` bytes.
pub fn encoded_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// Append standard padded base64 of `data` to `out`.
pub fn b64_encode_into(out: &mut String, data: &[u8]) {
    use base64::Engine;
    out.reserve(encoded_len(data.len()));
    base64::engine::general_purpose::STANDARD.encode_string(data, out);
}

/// Split an AEAD payload into nonce and sealed part (ciphertext ‖ tag). Too short for a
/// nonce → OpenBao's `invalid ciphertext length`; a sealed part shorter than the tag is left
/// to the AEAD, which reports an authentication failure (as Go's `cipher.AEAD.Open` does).
pub fn split_nonce(payload: &[u8], nonce_len: usize) -> Result<(&[u8], &[u8]), &'static str> {
    if payload.len() < nonce_len {
        return Err("invalid ciphertext length");
    }
    Ok(payload.split_at(nonce_len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b64_matches_go_errors() {
        // positions observed on OpenBao 2.7.2
        assert_eq!(go_b64_decode("not base64!!"), Err(B64Error(3)));
        assert_eq!(go_b64_decode("aGk"), Err(B64Error(0)));
        assert_eq!(go_b64_decode("!!"), Err(B64Error(0)));
        assert_eq!(go_b64_decode("1"), Err(B64Error(0)));
        assert_eq!(go_b64_decode("bad!"), Err(B64Error(3)));
        assert_eq!(go_b64_decode("x"), Err(B64Error(0)));
        // Go semantics: padding rules, trailing garbage, newlines
        assert_eq!(go_b64_decode("aGk=aGk="), Err(B64Error(4)));
        assert_eq!(go_b64_decode("aG=="), Ok(b"h".to_vec()));
        assert_eq!(go_b64_decode("aG="), Err(B64Error(3)));
        assert_eq!(go_b64_decode("a==="), Err(B64Error(1)));
        assert_eq!(go_b64_decode("===="), Err(B64Error(0)));
        assert_eq!(go_b64_decode("aG=x"), Err(B64Error(2)));
        assert_eq!(go_b64_decode("aGk=\n"), Ok(b"hi".to_vec()));
        assert_eq!(go_b64_decode("aG\r\nk="), Ok(b"hi".to_vec()));
        assert_eq!(go_b64_decode("aGl="), Ok(b"hi".to_vec())); // non-zero trailing bits
        assert_eq!(go_b64_decode(""), Ok(vec![]));
        assert_eq!(go_b64_decode("\n"), Ok(vec![]));
        assert_eq!(
            go_b64_decode("aGVsbG8gb3BlbmJhbw=="),
            Ok(b"hello openbao".to_vec())
        );
    }

    #[test]
    fn decode_into_matches_and_keeps_its_buffer() {
        let cases = [
            "aGVsbG8gb3BlbmJhbw==",
            "aGk=\n",
            "aG\r\nk=",
            "aGl=",
            "",
            "not base64!!",
            "aGk=aGk=",
            "aG=",
        ];
        let mut buf = Vec::with_capacity(64);
        let ptr = buf.as_ptr();
        for c in cases {
            let r = go_b64_decode_into(c, &mut buf);
            assert!(decoded_capacity(c.len()) <= 64);
            match go_b64_decode(c) {
                Ok(v) => assert_eq!((r, &buf[..]), (Ok(()), &v[..]), "{c:?}"),
                Err(e) => assert_eq!((r, buf.len()), (Err(e), 0), "{c:?}"),
            }
            assert_eq!(buf.as_ptr(), ptr, "no reallocation for {c:?}");
        }
        for n in 0..40 {
            let data: Vec<u8> = (0..n).map(|i| i as u8).collect();
            let mut s = String::from("x");
            b64_encode_into(&mut s, &data);
            assert_eq!(s[1..], b64_encode(&data));
            assert_eq!(encoded_len(n), b64_encode(&data).len());
            assert!(decoded_capacity(encoded_len(n)) >= n);
        }
        for v in [0, 1, 9, 10, 99, 1234567, -1, -10, i64::MAX, i64::MIN] {
            let mut s = String::from("x");
            push_int(&mut s, v);
            assert_eq!(s, format!("x{v}"));
        }
        let mut s = String::new();
        push_versioned(&mut s, -3, b"hi");
        assert_eq!(s, "vault:v-3:aGk=");
        assert_eq!(format_versioned(12, b"hi"), "vault:v12:aGk=");
    }

    #[test]
    fn b64_roundtrip() {
        for n in 0..70u8 {
            let data: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37).wrapping_add(n)).collect();
            let e = b64_encode(&data);
            assert_eq!(go_b64_decode(&e).unwrap(), data);
        }
        assert_eq!(b64_encode(b"hello openbao"), "aGVsbG8gb3BlbmJhbw==");
    }

    #[test]
    fn atoi_like_go() {
        assert_eq!(go_atoi("1"), Some(1));
        assert_eq!(go_atoi("+1"), Some(1));
        assert_eq!(go_atoi("-1"), Some(-1));
        assert_eq!(go_atoi("01"), Some(1));
        assert_eq!(go_atoi("-0"), Some(0));
        assert_eq!(go_atoi(""), None);
        assert_eq!(go_atoi("+"), None);
        assert_eq!(go_atoi("1_0"), None);
        assert_eq!(go_atoi(" 1"), None);
        assert_eq!(go_atoi("9223372036854775807"), Some(i64::MAX));
        assert_eq!(go_atoi("-9223372036854775808"), Some(i64::MIN));
        assert_eq!(go_atoi("9223372036854775808"), None);
        assert_eq!(go_atoi("99999999999999999999"), None);
    }

    #[test]
    fn versioned_parsing() {
        assert_eq!(parse_versioned("garbage"), Err(VersionedError::NoPrefix));
        assert_eq!(parse_versioned("vault:"), Err(VersionedError::NoPrefix));
        assert_eq!(
            parse_versioned("vault:v1"),
            Err(VersionedError::WrongFields)
        );
        assert_eq!(
            parse_versioned("vault:vx:AAAA"),
            Err(VersionedError::BadVersion)
        );
        assert_eq!(
            parse_versioned("vault:v:AAAA"),
            Err(VersionedError::BadVersion)
        );
        let v = parse_versioned("vault:v12:AA:AA").unwrap();
        assert_eq!((v.version, v.body), (12, "AA:AA"));
        let v = parse_versioned("vault:v1:").unwrap();
        assert_eq!(v.payload().unwrap(), Vec::<u8>::new());
        let s = format_versioned(3, b"\x00\x01payload");
        let v = parse_versioned(&s).unwrap();
        assert_eq!(
            (v.version, v.payload().unwrap()),
            (3, b"\x00\x01payload".to_vec())
        );
        assert_eq!(split_nonce(&[0; 3], 12), Err("invalid ciphertext length"));
        assert_eq!(split_nonce(&[0; 12], 12).unwrap().1.len(), 0);
    }
}
