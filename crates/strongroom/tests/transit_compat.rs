//! Transit secrets engine: the same scenario against real OpenBao and `strongroom server`,
//! through raw HTTP, the real `bao` CLI and hvac (Python). Each run yields a transcript of
//! (step, status / exit code, normalized body); the transcripts must be identical.
//!
//! Normalization removes only what is legitimately random: request ids, key creation
//! timestamps, and ciphertext/HMAC/random bytes (kept as `vault:v<N>:<len=L>` — version and
//! decoded length must still match, which pins nonce ‖ ciphertext ‖ tag layout).
//!
//! Known, intentional differences are checked separately (`strongroom_refuses_exportable`).

mod common;

use common::{Cli, CliKind, Server, ServerKind};
use serde_json::{json, Value};
use std::process::Command;

const TOKEN: &str = "root";
const HELLO: &str = "aGVsbG8gb3BlbmJhbw=="; // "hello openbao"

fn b64_len(s: &str) -> Option<usize> {
    let t = s.trim_end_matches('=');
    if t.is_empty() && !s.is_empty() {
        return None;
    }
    if !t
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
    {
        return None;
    }
    Some(t.len() * 3 / 4)
}

/// Replace random material by its shape (see the module doc).
fn normalize(v: &Value, parent_key: &str) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| k.as_str() != "request_id")
                .map(|(k, v)| {
                    let nv = if parent_key == "keys" && v.is_number() {
                        json!("<time>")
                    } else if k == "random_bytes" {
                        json!(format!("<len={}>", v.as_str().map(str::len).unwrap_or(0)))
                    } else {
                        normalize(v, k)
                    };
                    (k.clone(), nv)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|x| normalize(x, parent_key)).collect()),
        Value::String(s) => {
            if let Some(rest) = s.strip_prefix("vault:v") {
                if let Some((ver, body)) = rest.split_once(':') {
                    if let Some(n) = b64_len(body).filter(|n| *n > 0) {
                        return json!(format!("vault:v{ver}:<len={n}>"));
                    }
                }
            }
            v.clone()
        }
        _ => v.clone(),
    }
}

struct Run<'a> {
    server: &'a Server,
    log: Vec<(String, u16, Value)>,
}

impl Run<'_> {
    /// Send a request, record (step, status, normalized body), return the raw body.
    fn req(&mut self, step: &str, method: &str, path: &str, body: Option<Value>) -> Value {
        let body_s = body.map(|b| b.to_string());
        let (code, text) = self
            .server
            .http(method, path, Some(TOKEN), body_s.as_deref())
            .unwrap_or_else(|| panic!("{step}: no HTTP answer from {:?}", self.server.kind));
        let v: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{step}: body is not JSON ({e}): {text}"))
        };
        let mut n = normalize(&v, "");
        if step.starts_with("datakey plaintext") {
            if let Some(pt) = n.pointer_mut("/data/plaintext") {
                let l = b64_len(pt.as_str().unwrap_or("")).unwrap_or(0);
                *pt = json!(format!("<len={l}>"));
            }
        }
        self.log.push((step.to_string(), code, n));
        v
    }
    fn put(&mut self, step: &str, path: &str, body: Value) -> Value {
        self.req(step, "PUT", path, Some(body))
    }
}

fn data_str(v: &Value, ptr: &str) -> String {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no {ptr} in {v}"))
        .to_string()
}

/// The raw-HTTP scenario (requests as the bao CLI sends them: no Content-Type).
fn http_scenario(kind: ServerKind) -> Vec<(String, u16, Value)> {
    let server = Server::start_dev(kind, TOKEN);
    let mut r = Run {
        server: &server,
        log: vec![],
    };
    r.req(
        "mount",
        "POST",
        "sys/mounts/transit",
        Some(json!({"type": "transit"})),
    );
    r.req("list empty", "LIST", "transit/keys", None);
    r.req("read missing", "GET", "transit/keys/k1", None);
    r.put(
        "create k1",
        "transit/keys/k1",
        json!({"type": "aes256-gcm96"}),
    );
    r.put(
        "create k1 again",
        "transit/keys/k1",
        json!({"type": "aes128-gcm96"}),
    );
    r.req(
        "create k2 null body",
        "PUT",
        "transit/keys/k2",
        Some(Value::Null),
    );
    r.put(
        "create chacha",
        "transit/keys/c1",
        json!({"type": "chacha20-poly1305"}),
    );
    r.put(
        "create aes128",
        "transit/keys/a128",
        json!({"type": "aes128-gcm96"}),
    );
    r.put(
        "create derived",
        "transit/keys/d1",
        json!({"derived": "true"}),
    );
    for (step, body) in [
        ("create unknown type", json!({"type": "foo"})),
        ("create short rotate", json!({"auto_rotate_period": "10m"})),
        ("create convergent", json!({"convergent_encryption": true})),
        ("create key_size", json!({"key_size": 32})),
        ("create bad bool", json!({"derived": "maybe"})),
    ] {
        r.put(step, "transit/keys/x9", body);
    }
    r.req("read k1", "GET", "transit/keys/k1", None);
    r.req("list LIST", "LIST", "transit/keys", None);
    r.req("list ?list", "GET", "transit/keys?list=true", None);
    r.req("list slash", "GET", "transit/keys/?list=true", None);

    // encrypt / decrypt
    let ct1 = data_str(
        &r.put(
            "encrypt k1",
            "transit/encrypt/k1",
            json!({"plaintext": HELLO}),
        ),
        "/data/ciphertext",
    );
    r.put(
        "decrypt k1",
        "transit/decrypt/k1",
        json!({"ciphertext": ct1}),
    );
    for (ty, key) in [("chacha", "c1"), ("aes128", "a128")] {
        let c = data_str(
            &r.put(
                &format!("encrypt {ty}"),
                &format!("transit/encrypt/{key}"),
                json!({"plaintext": HELLO}),
            ),
            "/data/ciphertext",
        );
        r.put(
            &format!("decrypt {ty}"),
            &format!("transit/decrypt/{key}"),
            json!({"ciphertext": c}),
        );
        r.put(
            &format!("decrypt {ty} forged"),
            &format!("transit/decrypt/{key}"),
            json!({"ciphertext": "vault:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}),
        );
    }
    r.put(
        "encrypt batch partial",
        "transit/encrypt/k1",
        json!({"batch_input": [{"plaintext": HELLO, "reference": "r1"}, {"plaintext": "bad!"}, {"plaintext": "aGk=", "key_version": 5}]}),
    );
    r.put(
        "encrypt batch all bad",
        "transit/encrypt/k1",
        json!({"batch_input": [{"plaintext": "bad!"}, {"plaintext": "x"}]}),
    );
    r.put(
        "encrypt batch 207",
        "transit/encrypt/k1",
        json!({"batch_input": [{"plaintext": "aGk="}, {"plaintext": "bad!"}], "partial_failure_response_code": 207}),
    );
    r.put(
        "encrypt batch ok",
        "transit/encrypt/k1",
        json!({"batch_input": [{"plaintext": HELLO}, {"plaintext": "dHdv", "reference": "two"}]}),
    );
    r.put(
        "encrypt batch missing plaintext",
        "transit/encrypt/k1",
        json!({"batch_input": [{"context": "Y3R4"}]}),
    );
    r.put(
        "encrypt batch empty",
        "transit/encrypt/k1",
        json!({"batch_input": []}),
    );
    r.put(
        "encrypt batch mixed context",
        "transit/encrypt/k1",
        json!({"batch_input": [{"plaintext": "aGk=", "context": "Y3R4"}, {"plaintext": "aGk="}]}),
    );
    r.put(
        "decrypt batch partial",
        "transit/decrypt/k1",
        json!({"batch_input": [{"ciphertext": ct1, "reference": "a"}, {"ciphertext": "vault:v1:AAAA"}, {"ciphertext": ""}]}),
    );
    r.put(
        "encrypt aad",
        "transit/encrypt/k1",
        json!({"plaintext": HELLO, "associated_data": "YWQ="}),
    );
    r.put(
        "encrypt bad aad",
        "transit/encrypt/k1",
        json!({"plaintext": HELLO, "associated_data": "!!"}),
    );
    for (step, body) in [
        ("encrypt missing", json!({})),
        ("encrypt not b64", json!({"plaintext": "not base64!!"})),
        ("encrypt unpadded", json!({"plaintext": "aGk"})),
        ("encrypt number", json!({"plaintext": 5})),
        (
            "encrypt too new",
            json!({"plaintext": "aGk=", "key_version": 2}),
        ),
        (
            "encrypt negative",
            json!({"plaintext": "aGk=", "key_version": -1}),
        ),
        (
            "encrypt version string",
            json!({"plaintext": "aGk=", "key_version": "1"}),
        ),
        ("encrypt empty", json!({"plaintext": ""})),
    ] {
        r.put(step, "transit/encrypt/k1", body);
    }
    for (step, ct) in [
        ("decrypt empty", ""),
        ("decrypt garbage", "garbage"),
        ("decrypt no version", "vault:v1"),
        ("decrypt bad version", "vault:vx:AAAA"),
        ("decrypt v-1", "vault:v-1:AAAA"),
        ("decrypt v0", "vault:v0:AAAA"),
        ("decrypt v999", "vault:v999:AAAA"),
        ("decrypt huge version", "vault:v99999999999999999999:AAAA"),
        ("decrypt bad b64", "vault:v1:!!!!"),
        ("decrypt short", "vault:v1:AAAA"),
        ("decrypt nonce only", "vault:v1:AAAAAAAAAAAAAAAA"),
        (
            "decrypt forged",
            "vault:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ),
    ] {
        r.put(step, "transit/decrypt/k1", json!({"ciphertext": ct}));
    }
    r.put(
        "decrypt other key",
        "transit/decrypt/k2",
        json!({"ciphertext": ct1}),
    );
    r.put(
        "decrypt missing key",
        "transit/decrypt/nokey",
        json!({"ciphertext": ct1}),
    );
    r.put(
        "encrypt upsert",
        "transit/encrypt/autocreated",
        json!({"plaintext": HELLO}),
    );
    r.req("read upserted", "GET", "transit/keys/autocreated", None);
    r.put(
        "encrypt upsert bad type",
        "transit/encrypt/newt",
        json!({"plaintext": HELLO, "type": "bogus"}),
    );

    // rotation, rewrap, versions
    r.req("rotate", "PUT", "transit/keys/k1/rotate", Some(Value::Null));
    r.req("rotate missing", "PUT", "transit/keys/nokey/rotate", None);
    let rw = r.put("rewrap", "transit/rewrap/k1", json!({"ciphertext": ct1}));
    let ct2 = data_str(&rw, "/data/ciphertext");
    r.put(
        "decrypt v2",
        "transit/decrypt/k1",
        json!({"ciphertext": ct2}),
    );
    r.put(
        "rewrap batch",
        "transit/rewrap/k1",
        json!({"batch_input": [{"ciphertext": ct1, "reference": "q"}, {"ciphertext": "vault:v1:AAAA"}, {}]}),
    );
    r.req(
        "datakey plaintext",
        "PUT",
        "transit/datakey/plaintext/k1",
        Some(Value::Null),
    );
    r.put(
        "datakey plaintext 128",
        "transit/datakey/plaintext/k1",
        json!({"bits": 128}),
    );
    r.put(
        "datakey wrapped 512",
        "transit/datakey/wrapped/k1",
        json!({"bits": "512"}),
    );
    r.put(
        "datakey bits 3",
        "transit/datakey/wrapped/k1",
        json!({"bits": 3}),
    );
    r.put("datakey bad kind", "transit/datakey/foo/k1", json!({}));
    r.put(
        "config min_dec 2",
        "transit/keys/k1/config",
        json!({"min_decryption_version": "2"}),
    );
    r.put(
        "decrypt too old",
        "transit/decrypt/k1",
        json!({"ciphertext": ct1}),
    );
    for (step, body) in [
        ("config min_dec 0", json!({"min_decryption_version": 0})),
        ("config min_dec 5", json!({"min_decryption_version": 5})),
        ("config min_enc 5", json!({"min_encryption_version": 5})),
        (
            "config enc<dec",
            json!({"min_encryption_version": 1, "min_decryption_version": 2}),
        ),
        ("config rotate 30m", json!({"auto_rotate_period": "30m"})),
        ("config rotate 2h", json!({"auto_rotate_period": "2h"})),
        (
            "config rotate bogus",
            json!({"auto_rotate_period": "bogus"}),
        ),
        ("config int bogus", json!({"min_decryption_version": "x"})),
        ("config exportable false", json!({"exportable": false})),
        ("config empty", json!({})),
    ] {
        r.put(step, "transit/keys/k1/config", body);
    }
    r.put(
        "config missing key",
        "transit/keys/nokey/config",
        json!({"deletion_allowed": true}),
    );
    r.put("trim missing param", "transit/keys/k1/trim", json!({}));
    r.put(
        "trim without min_enc",
        "transit/keys/k1/trim",
        json!({"min_available_version": 1}),
    );
    r.put(
        "config min_enc 2",
        "transit/keys/k1/config",
        json!({"min_encryption_version": 2}),
    );
    r.put(
        "trim too far",
        "transit/keys/k1/trim",
        json!({"min_available_version": 3}),
    );
    r.put(
        "trim 2",
        "transit/keys/k1/trim",
        json!({"min_available_version": 2}),
    );
    r.put(
        "config below trim",
        "transit/keys/k1/config",
        json!({"min_decryption_version": 1}),
    );
    r.put(
        "encrypt below min_enc",
        "transit/encrypt/k1",
        json!({"plaintext": HELLO, "key_version": 1}),
    );

    // derived keys
    r.put(
        "derived no context",
        "transit/encrypt/d1",
        json!({"plaintext": HELLO}),
    );
    let dct = data_str(
        &r.put(
            "derived encrypt",
            "transit/encrypt/d1",
            json!({"plaintext": HELLO, "context": "Y3R4"}),
        ),
        "/data/ciphertext",
    );
    r.put(
        "derived decrypt",
        "transit/decrypt/d1",
        json!({"ciphertext": dct, "context": "Y3R4"}),
    );
    r.put(
        "derived wrong context",
        "transit/decrypt/d1",
        json!({"ciphertext": dct, "context": "b3RoZXI="}),
    );
    r.put(
        "derived decrypt no context",
        "transit/decrypt/d1",
        json!({"ciphertext": dct}),
    );
    r.put(
        "derived datakey bad context",
        "transit/datakey/wrapped/d1",
        json!({"context": "!!"}),
    );

    // convergent encryption: deterministic per (context, plaintext)
    r.put(
        "create convergent",
        "transit/keys/cv",
        json!({"derived": true, "convergent_encryption": true}),
    );
    let c1 = data_str(
        &r.put(
            "convergent encrypt",
            "transit/encrypt/cv",
            json!({"plaintext": HELLO, "context": "Y3R4"}),
        ),
        "/data/ciphertext",
    );
    let c2 = data_str(
        &r.put(
            "convergent encrypt again",
            "transit/encrypt/cv",
            json!({"plaintext": HELLO, "context": "Y3R4"}),
        ),
        "/data/ciphertext",
    );
    let c3 = data_str(
        &r.put(
            "convergent other context",
            "transit/encrypt/cv",
            json!({"plaintext": HELLO, "context": "eHl6"}),
        ),
        "/data/ciphertext",
    );
    r.log.push((
        "convergent determinism".into(),
        0,
        json!([c1 == c2, c1 == c3]),
    ));
    r.put(
        "convergent upsert without context",
        "transit/encrypt/cv2",
        json!({"plaintext": HELLO, "convergent_encryption": true}),
    );
    r.put(
        "convergent upsert",
        "transit/encrypt/cv3",
        json!({"plaintext": HELLO, "context": "Y3R4", "convergent_encryption": true}),
    );
    r.req("read convergent upserted", "GET", "transit/keys/cv3", None);

    // hmac / verify / random
    let h = data_str(
        &r.put("hmac", "transit/hmac/k2", json!({"input": HELLO})),
        "/data/hmac",
    );
    r.put(
        "hmac sha2-512",
        "transit/hmac/k2/sha2-512",
        json!({"input": HELLO}),
    );
    r.put(
        "hmac md5",
        "transit/hmac/k2",
        json!({"input": HELLO, "algorithm": "md5"}),
    );
    r.put("hmac missing input", "transit/hmac/k2", json!({}));
    r.put(
        "hmac batch",
        "transit/hmac/k2",
        json!({"batch_input": [{"input": HELLO, "reference": "x"}, {"input": "!!"}, {}]}),
    );
    r.put(
        "verify ok",
        "transit/verify/k2",
        json!({"input": HELLO, "hmac": h}),
    );
    r.put(
        "verify bad",
        "transit/verify/k2",
        json!({"input": "aGk=", "hmac": h}),
    );
    r.put("verify none", "transit/verify/k2", json!({"input": HELLO}));
    r.put(
        "verify too new",
        "transit/verify/k2",
        json!({"input": HELLO, "hmac": "vault:v9:AAAA"}),
    );
    r.put(
        "verify batch",
        "transit/verify/k2",
        json!({"batch_input": [{"input": HELLO, "hmac": h}, {"input": "aGk=", "hmac": h, "reference": "r"}, {"input": HELLO, "hmac": "junk"}]}),
    );
    // sha3 HMACs: shapes here (keys differ), values checked against the key in unit tests;
    // each server must verify its own HMAC under the same algorithm only
    for alg in ["sha3-224", "sha3-256", "sha3-384", "sha3-512", "sha2-224"] {
        let hm = data_str(
            &r.put(
                &format!("hmac {alg}"),
                &format!("transit/hmac/k2/{alg}"),
                json!({"input": HELLO}),
            ),
            "/data/hmac",
        );
        r.put(
            &format!("verify {alg}"),
            &format!("transit/verify/k2/{alg}"),
            json!({"input": HELLO, "hmac": hm}),
        );
        r.put(
            &format!("verify {alg} as hash_algorithm"),
            "transit/verify/k2",
            json!({"input": HELLO, "hmac": hm, "hash_algorithm": alg}),
        );
        r.put(
            &format!("verify {alg} under sha2-256"),
            "transit/verify/k2",
            json!({"input": HELLO, "hmac": hm}),
        );
    }
    let h224 = data_str(
        &r.put(
            "hmac body sha3-224",
            "transit/hmac/k2",
            json!({"input": HELLO, "algorithm": "sha3-224"}),
        ),
        "/data/hmac",
    );
    r.put(
        "hmac batch sha3-224",
        "transit/hmac/k2/sha3-224",
        json!({"batch_input": [{"input": HELLO, "reference": "a"}, {"input": "!!"}, {"input": ""}]}),
    );
    r.put(
        "verify batch sha3-224",
        "transit/verify/k2/sha3-224",
        json!({"batch_input": [{"input": HELLO, "hmac": h224}, {"input": "aGk=", "hmac": h224, "reference": "b"}]}),
    );
    r.put(
        "hmac sha3-225",
        "transit/hmac/k2/sha3-225",
        json!({"input": HELLO}),
    );
    r.put(
        "verify sha3-225",
        "transit/verify/k2/sha3-225",
        json!({"input": HELLO, "hmac": h224}),
    );

    // hash: no key, so the sums themselves must match
    r.put("hash", "transit/hash", json!({"input": HELLO}));
    for alg in [
        "sha2-224", "sha2-256", "sha2-384", "sha2-512", "sha3-224", "sha3-256", "sha3-384",
        "sha3-512",
    ] {
        r.put(
            &format!("hash {alg}"),
            &format!("transit/hash/{alg}"),
            json!({"input": HELLO}),
        );
        r.put(
            &format!("hash {alg} base64 in body"),
            "transit/hash",
            json!({"input": "aGk=", "algorithm": alg, "format": "base64"}),
        );
    }
    for (step, path, body) in [
        ("hash sha1", "transit/hash/sha1", json!({"input": HELLO})),
        (
            "hash md5",
            "transit/hash",
            json!({"input": HELLO, "algorithm": "md5"}),
        ),
        ("hash none", "transit/hash/none", json!({"input": HELLO})),
        (
            "hash nested path",
            "transit/hash/sha2-256/x",
            json!({"input": HELLO}),
        ),
        (
            "hash bad format",
            "transit/hash",
            json!({"input": HELLO, "format": "bin"}),
        ),
        (
            "hash empty format",
            "transit/hash",
            json!({"input": HELLO, "format": ""}),
        ),
        ("hash missing input", "transit/hash", json!({})),
        ("hash null input", "transit/hash", json!({"input": null})),
        (
            "hash empty input",
            "transit/hash/sha3-224",
            json!({"input": ""}),
        ),
        ("hash bad base64", "transit/hash", json!({"input": "!!"})),
        (
            "hash bad base64 and format",
            "transit/hash/md5",
            json!({"input": "!!", "format": "x"}),
        ),
        ("hash number input", "transit/hash", json!({"input": 5})),
        (
            "hash object input",
            "transit/hash",
            json!({"input": {"a": 1}}),
        ),
        (
            "hash trailing slash",
            "transit/hash/",
            json!({"input": HELLO}),
        ),
        (
            "hash url algorithm in body",
            "transit/hash",
            json!({"input": HELLO, "urlalgorithm": "sha2-512"}),
        ),
        (
            "hash unknown field",
            "transit/hash/sha3-256",
            json!({"input": HELLO, "bogus": 1}),
        ),
    ] {
        r.put(step, path, body);
    }
    r.req("hash GET", "GET", "transit/hash", None);
    r.req("hash LIST", "LIST", "transit/hash", None);
    r.req("hash no body", "PUT", "transit/hash/sha3-224", None);

    r.req("random", "PUT", "transit/random/32", Some(Value::Null));
    r.put("random hex", "transit/random/8", json!({"format": "hex"}));
    r.put("random seal", "transit/random/seal/8", json!({}));
    r.put("random zero", "transit/random/0", json!({}));
    r.put("random bogus", "transit/random/bogus", json!({}));

    // paths and operations
    r.req(
        "unsupported path",
        "PUT",
        "transit/keys/k1/bogus",
        Some(json!({})),
    );
    r.req("unsupported op", "GET", "transit/encrypt/k1", None);
    r.req("rotate GET", "GET", "transit/keys/k1/rotate", None);

    // odd inputs found by differential probing
    for (step, path, body) in [
        (
            "batch key_version string",
            "transit/encrypt/k2",
            json!({"batch_input": [{"plaintext": "aGk=", "key_version": "1"}]}),
        ),
        (
            "batch key_version float",
            "transit/encrypt/k2",
            json!({"batch_input": [{"plaintext": "aGk=", "key_version": 1.5}]}),
        ),
        (
            "batch plaintext null",
            "transit/encrypt/k2",
            json!({"batch_input": [{"plaintext": null}]}),
        ),
        (
            "batch context number",
            "transit/encrypt/k2",
            json!({"batch_input": [{"plaintext": "aGk=", "context": 5}]}),
        ),
        (
            "batch not a list",
            "transit/encrypt/k2",
            json!({"batch_input": {"a": 1}}),
        ),
        (
            "batch bad override",
            "transit/encrypt/k2",
            json!({"batch_input": [{"plaintext": "aGk="}, {"plaintext": "!"}], "partial_failure_response_code": 900}),
        ),
        (
            "decrypt batch bad context",
            "transit/decrypt/k2",
            json!({"batch_input": [{"ciphertext": "vault:v1:AAAA", "context": "!!"}]}),
        ),
        (
            "rewrap batch version string",
            "transit/rewrap/k2",
            json!({"batch_input": [{"ciphertext": "vault:v1:AAAA", "key_version": "1"}]}),
        ),
        (
            "rewrap batch not a list",
            "transit/rewrap/k2",
            json!({"batch_input": "x"}),
        ),
        (
            "hmac batch bool",
            "transit/hmac/k2",
            json!({"batch_input": [{"input": true}]}),
        ),
        (
            "hmac url algorithm in body",
            "transit/hmac/k2",
            json!({"input": "aGk=", "urlalgorithm": "sha2-224"}),
        ),
        (
            "hmac sha1",
            "transit/hmac/k2/sha1",
            json!({"input": "aGk="}),
        ),
        (
            "hmac trailing slash",
            "transit/hmac/k2/",
            json!({"input": "aGk="}),
        ),
        (
            "verify mixed batch",
            "transit/verify/k2",
            json!({"batch_input": [{"input": "aGk=", "hmac": "x"}, {"input": "aGk=", "signature": "x"}]}),
        ),
        (
            "verify signature",
            "transit/verify/k2",
            json!({"input": "aGk=", "signature": "vault:v1:AAAA"}),
        ),
        ("random trailing slash", "transit/random/", json!({})),
        (
            "random body source",
            "transit/random",
            json!({"bytes": 4, "source": "seal"}),
        ),
        (
            "random out of range",
            "transit/random/99999999999999999999",
            json!({}),
        ),
        (
            "config negative duration",
            "transit/keys/k2/config",
            json!({"auto_rotate_period": "-1h"}),
        ),
        (
            "config fractional duration",
            "transit/keys/k2/config",
            json!({"auto_rotate_period": 3600.5}),
        ),
        (
            "config bool as int",
            "transit/keys/k2/config",
            json!({"min_decryption_version": true}),
        ),
        (
            "config int as bool",
            "transit/keys/k2/config",
            json!({"deletion_allowed": 0}),
        ),
        (
            "rotate external ref",
            "transit/keys/k2/rotate",
            json!({"external_key_ref": "a:b"}),
        ),
        (
            "create external ref",
            "transit/keys/x1",
            json!({"external_key_ref": "a:b"}),
        ),
        (
            "soft-delete wrong op",
            "transit/keys/k2/soft-delete",
            json!({}),
        ),
    ] {
        r.put(step, path, body);
    }
    r.req("export bad type", "GET", "transit/export/bogus/k2", None);
    r.req(
        "export public key",
        "GET",
        "transit/export/public-key/k2",
        None,
    );
    r.req(
        "export cert chain",
        "GET",
        "transit/export/certificate-chain/k2",
        None,
    );
    r.req("soft-delete", "DELETE", "transit/keys/k2/soft-delete", None);
    r.req(
        "soft-delete again",
        "DELETE",
        "transit/keys/k2/soft-delete",
        None,
    );
    r.put(
        "soft-deleted encrypt",
        "transit/encrypt/k2",
        json!({"plaintext": HELLO}),
    );
    r.put(
        "soft-deleted hmac",
        "transit/hmac/k2",
        json!({"input": HELLO}),
    );
    r.req("soft-deleted rotate", "PUT", "transit/keys/k2/rotate", None);
    r.req("soft-deleted read", "GET", "transit/keys/k2", None);
    r.put("restore", "transit/keys/k2/soft-delete-restore", json!({}));
    r.put(
        "restore again",
        "transit/keys/k2/soft-delete-restore",
        json!({}),
    );
    r.req(
        "soft-delete missing",
        "DELETE",
        "transit/keys/nokey/soft-delete",
        None,
    );

    // deletion
    r.req(
        "export not exportable",
        "GET",
        "transit/export/encryption-key/k1",
        None,
    );
    r.req("delete refused", "DELETE", "transit/keys/k1", None);
    r.req("delete missing", "DELETE", "transit/keys/nokey", None);
    r.put(
        "allow deletion",
        "transit/keys/k1/config",
        json!({"deletion_allowed": "true"}),
    );
    r.req("delete", "DELETE", "transit/keys/k1", None);
    r.req("read deleted", "GET", "transit/keys/k1", None);
    r.log
}

fn diff(a: &[(String, u16, Value)], b: &[(String, u16, Value)]) -> Vec<String> {
    let mut out = vec![];
    for (x, y) in a.iter().zip(b) {
        if x != y {
            out.push(format!(
                "step {:?}\n  openbao:    {} {}\n  strongroom: {} {}",
                x.0, x.1, x.2, y.1, y.2
            ));
        }
    }
    if a.len() != b.len() {
        out.push(format!("length {} vs {}", a.len(), b.len()));
    }
    out
}

#[test]
fn transit_http_matches_openbao() {
    let reference = http_scenario(ServerKind::OpenBao);
    // sanity: the reference run really exercised transit
    let find = |step: &str| reference.iter().find(|s| s.0 == step).unwrap().clone();
    assert_eq!(find("mount").1, 204);
    assert_eq!(find("create k1").1, 200);
    assert_eq!(find("encrypt batch partial").1, 400);
    assert_eq!(
        find("decrypt short"),
        (
            "decrypt short".to_string(),
            400,
            json!({"errors": ["invalid ciphertext length"]})
        )
    );
    // ... including sha3-224 HMACs and plain hashes (python3: hashlib.sha3_224(b"hello openbao"))
    assert_eq!(
        find("hmac sha3-224").2["data"]["hmac"],
        json!("vault:v1:<len=28>")
    );
    assert_eq!(find("verify sha3-224").2["data"]["valid"], json!(true));
    assert_eq!(
        find("verify sha3-224 under sha2-256").2["data"]["valid"],
        json!(false)
    );
    assert_eq!(
        find("hash sha3-224").2["data"]["sum"],
        json!("f86574bc024aa2b3cf6047ec97d4d7fc6fcfb6e22a5f2d95582d530b")
    );
    assert_eq!(find("hash sha1").1, 400);
    let ours = http_scenario(ServerKind::Strongroom);
    let d = diff(&reference, &ours);
    assert!(d.is_empty(), "{} differences:\n{}", d.len(), d.join("\n"));
}

/// The bao CLI: exit codes, JSON output and error lines.
fn cli_scenario(kind: ServerKind) -> Vec<(String, i32, Value)> {
    let server = Server::start_dev(kind, TOKEN);
    let cli = Cli::new(CliKind::Bao, server.addr()).with_token(TOKEN);
    let mut log = vec![];
    let mut run = |args: &[&str]| -> Value {
        let out = cli.run(args);
        let v = serde_json::from_str::<Value>(&out.stdout).unwrap_or(Value::Null);
        let errors: Vec<String> = out
            .stderr
            .lines()
            .filter_map(|l| l.strip_prefix("* "))
            .map(str::to_string)
            .collect();
        let shape = if v.is_null() {
            json!({ "stdout": out.stdout.lines().next().unwrap_or(""), "errors": errors })
        } else {
            normalize(&v, "")
        };
        // step names carry server-specific ciphertexts: normalize them too
        let name: Vec<String> = args
            .iter()
            .map(|a| match a.split_once('=') {
                Some((k, v)) => format!("{k}={}", normalize(&json!(v), "").as_str().unwrap_or(v)),
                None => a.to_string(),
            })
            .collect();
        log.push((name.join(" "), out.code, shape));
        v
    };
    run(&["secrets", "enable", "transit"]);
    run(&[
        "write",
        "-format=json",
        "-f",
        "transit/keys/k1",
        "type=aes256-gcm96",
    ]);
    run(&[
        "write",
        "-format=json",
        "-f",
        "transit/keys/d1",
        "derived=true",
    ]);
    run(&["write", "-f", "transit/keys/bad", "type=foo"]);
    run(&["read", "-format=json", "transit/keys/k1"]);
    run(&["list", "-format=json", "transit/keys"]);
    let ct = run(&[
        "write",
        "-format=json",
        "transit/encrypt/k1",
        &format!("plaintext={HELLO}"),
    ]);
    let ct1 = data_str(&ct, "/data/ciphertext");
    run(&[
        "write",
        "-format=json",
        "transit/decrypt/k1",
        &format!("ciphertext={ct1}"),
    ]);
    run(&["write", "transit/decrypt/k1", "ciphertext=vault:v1:AAAA"]);
    run(&["write", "transit/encrypt/k1", "plaintext=not-base64!"]);
    run(&["write", "transit/encrypt/d1", &format!("plaintext={HELLO}")]);
    run(&["write", "-format=json", "-f", "transit/keys/k1/rotate"]);
    let rw = run(&[
        "write",
        "-format=json",
        "transit/rewrap/k1",
        &format!("ciphertext={ct1}"),
    ]);
    let ct2 = data_str(&rw, "/data/ciphertext");
    run(&[
        "write",
        "-format=json",
        "transit/decrypt/k1",
        &format!("ciphertext={ct2}"),
    ]);
    run(&[
        "write",
        "-format=json",
        "-f",
        "transit/datakey/wrapped/k1",
        "bits=512",
    ]);
    run(&["write", "-f", "transit/datakey/wrapped/k1", "bits=3"]);
    run(&[
        "write",
        "-format=json",
        "transit/keys/k1/config",
        "min_decryption_version=2",
    ]);
    run(&["write", "transit/decrypt/k1", &format!("ciphertext={ct1}")]);
    run(&["write", "-format=json", "-f", "transit/random/16"]);
    run(&[
        "write",
        "-format=json",
        "transit/hmac/k1",
        &format!("input={HELLO}"),
    ]);
    run(&[
        "write",
        "-format=json",
        "transit/hmac/k1/sha3-224",
        &format!("input={HELLO}"),
    ]);
    run(&[
        "write",
        "-format=json",
        "transit/hash/sha3-224",
        &format!("input={HELLO}"),
    ]);
    run(&[
        "write",
        "-format=json",
        "transit/hash",
        &format!("input={HELLO}"),
        "algorithm=sha3-384",
        "format=base64",
    ]);
    run(&["write", "transit/hash/sha1", &format!("input={HELLO}")]);
    run(&["delete", "transit/keys/k1"]);
    run(&[
        "write",
        "-format=json",
        "transit/keys/k1/config",
        "deletion_allowed=true",
    ]);
    run(&["delete", "transit/keys/k1"]);
    run(&["read", "transit/keys/k1"]);
    log
}

#[test]
fn transit_bao_cli_matches_openbao() {
    let strip = |v: Vec<(String, i32, Value)>| -> Vec<(String, u16, Value)> {
        v.into_iter()
            .map(|(s, c, mut j)| {
                // `bao write -format=json` prints the envelope; request ids differ anyway
                if let Some(o) = j.as_object_mut() {
                    o.remove("request_id");
                }
                (s, c as u16, j)
            })
            .collect()
    };
    let reference = strip(cli_scenario(ServerKind::OpenBao));
    let ours = strip(cli_scenario(ServerKind::Strongroom));
    let d = diff(&reference, &ours);
    assert!(d.is_empty(), "{} differences:\n{}", d.len(), d.join("\n"));
}

/// hvac (the Python client most Vault users script with): the transit API methods.
const HVAC_SCRIPT: &str = r#"
import json, os, sys, base64
import hvac
c = hvac.Client(url=os.environ["ADDR"], token=os.environ["TOKEN"])
t = c.secrets.transit
out = []
def norm(x):
    if isinstance(x, dict):
        return {k: ("<time>" if k.isdigit() and isinstance(v, int) else norm(v)) for k, v in x.items() if k != "request_id"}
    if isinstance(x, list):
        return [norm(v) for v in x]
    if isinstance(x, str) and x.startswith("vault:v") and x.count(":") >= 2:
        ver, body = x[len("vault:v"):].split(":", 1)
        try:
            return "vault:v%s:<len=%d>" % (ver, len(base64.b64decode(body)))
        except Exception:
            return x
    return x
def step(name, f):
    try:
        r = f()
        if hasattr(r, "status_code"):
            r = {"status": r.status_code}
        out.append([name, "ok", norm(r)])
        return r
    except hvac.exceptions.VaultError as e:
        out.append([name, type(e).__name__, e.errors])
        return None
c.sys.enable_secrets_engine("transit")
step("create", lambda: t.create_key("k1"))
step("create chacha", lambda: t.create_key("c1", key_type="chacha20-poly1305"))
step("create derived", lambda: t.create_key("d1", derived=True))
step("create bad type", lambda: t.create_key("x", key_type="foo"))
step("read", lambda: t.read_key("k1"))
step("list", lambda: t.list_keys())
pt = base64.b64encode(b"hello hvac").decode()
r = step("encrypt", lambda: t.encrypt_data("k1", plaintext=pt))
ct = r["data"]["ciphertext"]
step("decrypt", lambda: t.decrypt_data("k1", ciphertext=ct))
step("decrypt short", lambda: t.decrypt_data("k1", ciphertext="vault:v1:AAAA"))
step("decrypt v999", lambda: t.decrypt_data("k1", ciphertext="vault:v999:AAAA"))
step("encrypt bad b64", lambda: t.encrypt_data("k1", plaintext="not base64!!"))
step("encrypt batch", lambda: t.encrypt_data("k1", plaintext="", batch_input=[{"plaintext": pt}, {"plaintext": "bad!"}]))
step("encrypt derived no ctx", lambda: t.encrypt_data("d1", plaintext=pt))
r = step("encrypt derived", lambda: t.encrypt_data("d1", plaintext=pt, context="Y3R4"))
step("decrypt derived wrong ctx", lambda: t.decrypt_data("d1", ciphertext=r["data"]["ciphertext"], context="eHl6"))
step("rotate", lambda: t.rotate_key("k1"))
r = step("rewrap", lambda: t.rewrap_data("k1", ciphertext=ct))
step("decrypt rewrapped", lambda: t.decrypt_data("k1", ciphertext=r["data"]["ciphertext"]))
step("datakey plaintext", lambda: {"len": len(base64.b64decode(t.generate_data_key("k1", key_type="plaintext", bits=512)["data"]["plaintext"]))})
step("datakey bad bits", lambda: t.generate_data_key("k1", key_type="wrapped", bits=3))
step("config", lambda: t.update_key_configuration("k1", min_decryption_version=2))
step("decrypt too old", lambda: t.decrypt_data("k1", ciphertext=ct))
step("random", lambda: {"len": len(base64.b64decode(t.generate_random_bytes(n_bytes=24)["data"]["random_bytes"]))})
r = step("hmac", lambda: t.generate_hmac("c1", hash_input=pt))
step("verify", lambda: t.verify_signed_data("c1", hash_input=pt, hmac=r["data"]["hmac"]))
step("verify bad", lambda: t.verify_signed_data("c1", hash_input=base64.b64encode(b"x").decode(), hmac=r["data"]["hmac"]))
r = step("hmac sha2-512", lambda: t.generate_hmac("c1", hash_input=pt, algorithm="sha2-512"))
step("verify sha2-512", lambda: t.verify_signed_data("c1", hash_input=pt, hmac=r["data"]["hmac"], hash_algorithm="sha2-512"))
step("hash", lambda: t.hash_data(hash_input=pt))
step("hash sha2-384 base64", lambda: t.hash_data(hash_input=pt, algorithm="sha2-384", output_format="base64"))
# hvac's helpers accept sha2 names only: sha3 through its adapter (same session, same auth)
r = step("hmac sha3-224", lambda: c.adapter.post("/v1/transit/hmac/c1/sha3-224", json={"input": pt}))
step("verify sha3-224", lambda: t.verify_signed_data("c1", hash_input=pt, hmac=r["data"]["hmac"], hash_algorithm="sha3-224"))
step("hash sha3-224", lambda: c.adapter.post("/v1/transit/hash/sha3-224", json={"input": pt}))
step("hash sha3-512 base64", lambda: c.adapter.post("/v1/transit/hash", json={"input": pt, "algorithm": "sha3-512", "format": "base64"}))
step("hash sha1", lambda: c.adapter.post("/v1/transit/hash/sha1", json={"input": pt}))
step("delete refused", lambda: t.delete_key("k1"))
step("allow delete", lambda: t.update_key_configuration("k1", deletion_allowed=True))
step("delete", lambda: t.delete_key("k1"))
step("read deleted", lambda: t.read_key("k1"))
print(json.dumps(out))
"#;

fn hvac_scenario(kind: ServerKind) -> Value {
    let server = Server::start_dev(kind, TOKEN);
    let out = Command::new("python3")
        .args(["-c", HVAC_SCRIPT])
        .env("ADDR", server.addr())
        .env("TOKEN", TOKEN)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "hvac scenario failed on {kind:?} (is hvac installed? scripts/test.sh installs it):\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.logs()
    );
    serde_json::from_slice(&out.stdout).expect("hvac scenario prints JSON")
}

#[test]
fn transit_hvac_matches_openbao() {
    let reference = hvac_scenario(ServerKind::OpenBao);
    let ours = hvac_scenario(ServerKind::Strongroom);
    let (a, b) = (reference.as_array().unwrap(), ours.as_array().unwrap());
    let d: Vec<String> = a
        .iter()
        .zip(b)
        .filter(|(x, y)| x != y)
        .map(|(x, y)| format!("  openbao:    {x}\n  strongroom: {y}"))
        .collect();
    assert_eq!(a.len(), b.len());
    assert!(d.is_empty(), "{} differences:\n{}", d.len(), d.join("\n"));
}

/// Deliberate difference: Strongroom keeps transit key material inside the server.
#[test]
fn strongroom_refuses_exportable() {
    let server = Server::start_dev(ServerKind::Strongroom, TOKEN);
    let put = |path: &str, body: &str| server.http("PUT", path, Some(TOKEN), Some(body)).unwrap();
    assert_eq!(put("sys/mounts/transit", r#"{"type":"transit"}"#).0, 204);
    let (code, body) = put("transit/keys/e", r#"{"exportable":true}"#);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("exportable"), "{body}");
    assert_eq!(put("transit/keys/k", "{}").0, 200);
    let (code, body) = put("transit/keys/k/config", r#"{"exportable":"true"}"#);
    assert_eq!(code, 400, "{body}");
    let (code, body) = server
        .http("GET", "transit/export/encryption-key/k", Some(TOKEN), None)
        .unwrap();
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("private key material is not exportable"),
        "{body}"
    );
}

/// vaultrs (the Rust client): its transit API against both servers. Outcomes are rendered as
/// text (`ok ...` / `err <code> <errors>`), with random material normalized.
mod vaultrs_transit {
    use super::{common::Server, common::ServerKind, normalize, HELLO, TOKEN};
    use serde_json::json;
    use vaultrs::api::transit::requests::{
        CreateKeyRequest, DataKeyType, DecryptDataRequest, EncryptDataRequest,
        GenerateDataKeyRequest, GenerateHmacRequest, RandomBytesSource,
        UpdateKeyConfigurationRequest, VerifySignedDataRequest,
    };
    use vaultrs::api::transit::{HashAlgorithm, KeyType, OutputFormat};
    use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
    use vaultrs::error::ClientError;
    use vaultrs::transit::{data, generate, key};

    fn show<T: std::fmt::Debug>(r: Result<T, ClientError>) -> String {
        match r {
            Ok(v) => {
                let s = format!("{v:?}");
                // normalize ciphertexts/hmacs inside the Debug text
                let words: Vec<String> = s
                    .split('"')
                    .map(|w| normalize(&json!(w), "").as_str().unwrap_or(w).to_string())
                    .collect();
                format!("ok {}", words.join("\""))
            }
            Err(ClientError::APIError { code, errors }) => format!("err {code} {errors:?}"),
            Err(e) => format!("client error {e}"),
        }
    }

    pub async fn run(kind: ServerKind) -> Vec<String> {
        let server = Server::start_dev(kind, TOKEN);
        let mut b = VaultClientSettingsBuilder::default();
        b.address(server.addr()).token(TOKEN);
        let c = VaultClient::new(b.build().unwrap()).unwrap();
        let mut log = vec![];
        vaultrs::sys::mount::enable(&c, "transit", "transit", None)
            .await
            .unwrap();
        log.push(show(key::create(&c, "transit", "k1", None).await));
        log.push(show(
            key::create(
                &c,
                "transit",
                "c1",
                Some(CreateKeyRequest::builder().key_type(KeyType::Chacha20Poly1305)),
            )
            .await,
        ));
        log.push(show(
            key::create(
                &c,
                "transit",
                "d1",
                Some(CreateKeyRequest::builder().derived(true)),
            )
            .await,
        ));
        let read = key::read(&c, "transit", "k1").await.unwrap();
        log.push(format!(
            "read {:?} {} {} {}",
            read.key_type, read.derived, read.min_decryption_version, read.supports_encryption
        ));
        log.push(show(key::list(&c, "transit").await));
        let ct = data::encrypt(&c, "transit", "k1", HELLO, None)
            .await
            .unwrap();
        log.push(show(Ok::<_, ClientError>(ct.ciphertext.clone())));
        log.push(show(
            data::decrypt(&c, "transit", "k1", &ct.ciphertext, None).await,
        ));
        log.push(show(
            data::decrypt(&c, "transit", "k1", "vault:v1:AAAA", None).await,
        ));
        log.push(show(
            data::decrypt(&c, "transit", "c1", &ct.ciphertext, None).await,
        ));
        log.push(show(data::encrypt(&c, "transit", "d1", HELLO, None).await));
        let dct = data::encrypt(
            &c,
            "transit",
            "d1",
            HELLO,
            Some(EncryptDataRequest::builder().context("Y3R4")),
        )
        .await
        .unwrap();
        log.push(show(
            data::decrypt(
                &c,
                "transit",
                "d1",
                &dct.ciphertext,
                Some(DecryptDataRequest::builder().context("Y3R4")),
            )
            .await,
        ));
        log.push(show(
            data::decrypt(
                &c,
                "transit",
                "d1",
                &dct.ciphertext,
                Some(DecryptDataRequest::builder().context("eHl6")),
            )
            .await,
        ));
        log.push(show(key::rotate(&c, "transit", "k1").await));
        let rw = data::rewrap(&c, "transit", "k1", &ct.ciphertext, None).await;
        log.push(show(rw.as_ref().map(|r| r.ciphertext.clone()).map_err(
            |e| ClientError::APIError {
                code: 0,
                errors: vec![e.to_string()],
            },
        )));
        let dk = generate::data_key(
            &c,
            "transit",
            "k1",
            DataKeyType::Plaintext,
            Some(GenerateDataKeyRequest::builder().bits(512u16)),
        )
        .await
        .unwrap();
        log.push(format!(
            "datakey {} {}",
            dk.plaintext.map(|p| p.len()).unwrap_or(0),
            normalize(&json!(dk.ciphertext), "")
        ));
        log.push(show(
            generate::data_key(
                &c,
                "transit",
                "k1",
                DataKeyType::Wrapped,
                Some(GenerateDataKeyRequest::builder().bits(3u16)),
            )
            .await,
        ));
        log.push(show(
            key::update(
                &c,
                "transit",
                "k1",
                Some(UpdateKeyConfigurationRequest::builder().min_decryption_version(2u64)),
            )
            .await,
        ));
        log.push(show(
            data::decrypt(&c, "transit", "k1", &ct.ciphertext, None).await,
        ));
        let rnd = generate::random_bytes(
            &c,
            "transit",
            OutputFormat::Hex,
            RandomBytesSource::Platform,
            None,
        )
        .await
        .unwrap();
        log.push(format!("random hex len {}", rnd.random_bytes.len()));
        let h = generate::hmac(
            &c,
            "transit",
            "c1",
            HELLO,
            Some(GenerateHmacRequest::builder().algorithm(HashAlgorithm::Sha2_512)),
        )
        .await
        .unwrap();
        log.push(show(Ok::<_, ClientError>(h.hmac.clone())));
        log.push(show(
            data::verify(
                &c,
                "transit",
                "c1",
                HELLO,
                Some(
                    VerifySignedDataRequest::builder()
                        .hmac(h.hmac.clone())
                        .hash_algorithm(HashAlgorithm::Sha2_512),
                ),
            )
            .await,
        ));
        log.push(show(key::delete(&c, "transit", "k1").await));
        log.push(show(
            key::update(
                &c,
                "transit",
                "k1",
                Some(UpdateKeyConfigurationRequest::builder().deletion_allowed(true)),
            )
            .await,
        ));
        log.push(show(key::delete(&c, "transit", "k1").await));
        log.push(show(key::read(&c, "transit", "k1").await));
        log
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transit_vaultrs_matches_openbao() {
    let reference = vaultrs_transit::run(ServerKind::OpenBao).await;
    let ours = vaultrs_transit::run(ServerKind::Strongroom).await;
    assert!(
        reference
            .iter()
            .any(|l| l.contains("invalid ciphertext length")),
        "{reference:#?}"
    );
    let d: Vec<String> = reference
        .iter()
        .zip(&ours)
        .filter(|(a, b)| a != b)
        .map(|(a, b)| format!("  openbao:    {a}\n  strongroom: {b}"))
        .collect();
    assert_eq!(reference.len(), ours.len());
    assert!(d.is_empty(), "{} differences:\n{}", d.len(), d.join("\n"));
}
