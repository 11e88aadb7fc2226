//! Fuzz the transit ciphertext decoder (`vault:v<N>:<base64>`), the Go-compatible base64
//! decoder and the nonce split. The decoder is included by path so the target builds
//! without the key manager's heavy dependencies (aws-lc) under the sanitizers.
//!
//! Run: `cd crates/kms/fuzz && cargo +nightly fuzz run transit_ciphertext -- -jobs=1 -max_total_time=600`
#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;

#[path = "../../src/backend/transit/ciphertext.rs"]
#[allow(dead_code)]
mod ciphertext;

use ciphertext::*;

fuzz_target!(|data: &[u8]| {
    // Any bytes survive an encode/decode round trip.
    assert_eq!(go_b64_decode(&b64_encode(data)).as_deref(), Ok(data));

    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };

    // Base64: errors point inside the input; what decodes re-encodes to the same bytes;
    // anything the strict RFC 4648 decoder accepts, the Go-compatible one accepts identically.
    match go_b64_decode(s) {
        Ok(bytes) => {
            assert_eq!(go_b64_decode(&b64_encode(&bytes)), Ok(bytes.clone()));
            if let Ok(strict) = base64::engine::general_purpose::STANDARD.decode(s) {
                assert_eq!(strict, bytes);
            }
        }
        Err(B64Error(pos)) => {
            assert!(
                pos <= s.len(),
                "error offset {pos} beyond input {}",
                s.len()
            );
            assert!(base64::engine::general_purpose::STANDARD.decode(s).is_err());
        }
    }

    // The buffer-reusing decoder (batch hot path) agrees with the plain one, empties its
    // buffer on error and, given `decoded_capacity`, never reallocates.
    let mut buf = Vec::with_capacity(decoded_capacity(s.len()));
    buf.extend_from_slice(b"stale");
    let ptr = buf.as_ptr();
    match (go_b64_decode_into(s, &mut buf), go_b64_decode(s)) {
        (Ok(()), Ok(v)) => assert_eq!(buf, v),
        (Err(a), Err(b)) => assert_eq!((a, buf.len()), (b, 0)),
        (a, b) => panic!("decode_into {a:?} vs decode {b:?}"),
    }
    assert_eq!(buf.as_ptr(), ptr, "reallocated");
    let mut enc = String::from("p");
    b64_encode_into(&mut enc, data);
    assert_eq!(enc[1..], b64_encode(data));

    // Versioned values: parse, and if the payload decodes, re-format and parse again.
    if let Ok(v) = parse_versioned(s) {
        assert!(s.starts_with(PREFIX));
        if let Ok(payload) = v.payload() {
            let again = format_versioned(v.version, &payload);
            let w = parse_versioned(&again).expect("formatted value parses");
            assert_eq!(w.version, v.version);
            assert_eq!(w.payload().as_deref(), Ok(&payload[..]));
            match split_nonce(&payload, 12) {
                Ok((n, rest)) => assert_eq!(n.len() + rest.len(), payload.len()),
                Err(e) => {
                    assert!(payload.len() < 12);
                    assert_eq!(e, "invalid ciphertext length");
                }
            }
        }
    }
});
