//! Transit against the `Backend` trait, over a real barrier on in-memory storage. Expected
//! texts and codes are the ones observed on OpenBao 2.7.2.

use super::*;
use crate::barrier::Barrier;
use crate::storage::{InmemStorage, Storage};
use std::sync::Arc;

fn transit_on() -> (Transit, Arc<dyn Storage>) {
    let st: Arc<dyn Storage> = Arc::new(InmemStorage::new());
    let b = Arc::new(Barrier::new(st.clone()));
    let key = crate::crypto::random_bytes::<32>();
    b.initialize(&key[..], vec![]).unwrap();
    b.unseal(&key[..]).unwrap();
    (Transit::new(View::new(b, "logical/test/")), st)
}

fn transit() -> Transit {
    transit_on().0
}

fn req(op: Operation, rel: &str, body: Value) -> Request {
    Request {
        id: String::new(),
        op,
        path: format!("transit/{rel}"),
        mount: "transit/".into(),
        rel: rel.into(),
        data: match body {
            Value::Object(m) => m,
            _ => Map::new(),
        },
        token: None,
        content_type: None,
        client_token: None,
        remote_addr: None,
        wrap_ttl: None,
    }
}

fn call(t: &Transit, op: Operation, rel: &str, body: Value) -> Result<Response, ApiError> {
    t.handle(&req(op, rel, body))
}

/// The response's `data`, however the handler built it (value or JSON text).
fn data(r: &Response) -> Value {
    r.data_value().expect("data (valid JSON)").into_owned()
}

fn ok(t: &Transit, op: Operation, rel: &str, body: Value) -> Value {
    let r = call(t, op, rel, body).unwrap_or_else(|e| panic!("{rel}: {e:?}"));
    assert_eq!(r.status, 200, "{rel}");
    data(&r)
}

fn write(t: &Transit, rel: &str, body: Value) -> Value {
    ok(t, Operation::Update, rel, body)
}

fn err(t: &Transit, op: Operation, rel: &str, body: Value) -> (u16, String) {
    let e = call(t, op, rel, body).expect_err(rel);
    (e.status, e.errors.first().cloned().unwrap_or_default())
}

fn werr(t: &Transit, rel: &str, body: Value) -> (u16, String) {
    err(t, Operation::Update, rel, body)
}

fn enc(t: &Transit, key: &str, pt: &str) -> String {
    write(t, &format!("encrypt/{key}"), json!({ "plaintext": pt }))["ciphertext"]
        .as_str()
        .unwrap()
        .to_string()
}

fn dec(t: &Transit, key: &str, ct: &str) -> String {
    write(t, &format!("decrypt/{key}"), json!({ "ciphertext": ct }))["plaintext"]
        .as_str()
        .unwrap()
        .to_string()
}

const HELLO: &str = "aGVsbG8gb3BlbmJhbw==";

#[test]
fn create_read_list_delete() {
    let t = transit();
    assert_eq!(
        err(&t, Operation::List, "keys", json!({})),
        (404, String::new())
    );
    assert_eq!(err(&t, Operation::Read, "keys/k1", json!({})).0, 404);
    let info = write(&t, "keys/k1", json!({ "type": "aes256-gcm96" }));
    assert_eq!(info["name"], "k1");
    assert_eq!(info["type"], "aes256-gcm96");
    assert_eq!(info["latest_version"], 1);
    assert_eq!(info["min_decryption_version"], 1);
    assert_eq!(info["min_encryption_version"], 0);
    assert_eq!(info["min_available_version"], 0);
    assert_eq!(info["deletion_allowed"], false);
    assert_eq!(info["exportable"], false);
    assert_eq!(info["supports_encryption"], true);
    assert_eq!(info["supports_signing"], false);
    assert_eq!(info["auto_rotate_period"], 0);
    assert!(info["keys"]["1"].as_i64().unwrap() > 1_700_000_000);
    assert!(info.get("kdf").is_none());
    // the CLI's -f body `null` and string-typed values
    let k2 = write(&t, "keys/k2", json!(null));
    assert_eq!(k2["type"], "aes256-gcm96");
    write(&t, "keys/c1", json!({ "type": "chacha20-poly1305" }));
    write(
        &t,
        "keys/a1",
        json!({ "type": "aes128-gcm96", "derived": "true" }),
    );
    // re-create keeps the existing key
    let again = write(&t, "keys/k1", json!({ "type": "aes128-gcm96" }));
    assert_eq!(again["type"], "aes256-gcm96");
    assert_eq!(ok(&t, Operation::Read, "keys/k1", json!({})), info);
    let list = ok(&t, Operation::List, "keys/", json!({}));
    assert_eq!(list["keys"], json!(["a1", "c1", "k1", "k2"]));
    let a1 = ok(&t, Operation::Read, "keys/a1", json!({}));
    assert_eq!(a1["derived"], true);
    assert_eq!(a1["kdf"], "hkdf_sha256");
    assert_eq!(a1["convergent_encryption"], false);

    assert_eq!(
        err(&t, Operation::Delete, "keys/k1", json!({})),
        (
            400,
            "error deleting policy k1: deletion is not allowed for this key".into()
        )
    );
    assert_eq!(
        err(&t, Operation::Delete, "keys/nokey", json!({})),
        (
            400,
            "error deleting policy nokey: could not delete key; not found".into()
        )
    );
    let cfg = write(&t, "keys/k1/config", json!({ "deletion_allowed": "true" }));
    assert_eq!(cfg["deletion_allowed"], true);
    let r = call(&t, Operation::Delete, "keys/k1", json!({})).unwrap();
    assert_eq!(r.status, 204);
    assert_eq!(err(&t, Operation::Read, "keys/k1", json!({})).0, 404);
}

#[test]
fn bad_key_parameters() {
    let t = transit();
    assert_eq!(
        werr(&t, "keys/x", json!({ "type": "foo" })),
        (400, "unknown key type foo".into())
    );
    assert_eq!(
        werr(&t, "keys/x", json!({ "type": 5 })),
        (400, "unknown key type 5".into())
    );
    assert_eq!(werr(&t, "keys/x", json!({ "type": "rsa-2048" })).0, 400);
    assert_eq!(
        werr(&t, "keys/x", json!({ "auto_rotate_period": "10m" })),
        (
            400,
            "auto rotate period must be 0 to disable or at least an hour".into()
        )
    );
    assert_eq!(
        werr(&t, "keys/x", json!({ "convergent_encryption": true })),
        (
            400,
            "convergent encryption requires derivation to be enabled".into()
        )
    );
    assert_eq!(
        werr(&t, "keys/x", json!({ "key_size": 32 })),
        (
            400,
            "key_size is not valid for algorithm aes256-gcm96".into()
        )
    );
    assert_eq!(
        werr(&t, "keys/x", json!({ "derived": "maybe" })),
        (400, "Field validation failed: error converting input for field \"derived\": '' cannot parse value as 'bool': strconv.ParseBool: invalid syntax".into())
    );
    let (code, msg) = werr(&t, "keys/x", json!({ "exportable": "true" }));
    assert_eq!(code, 400);
    assert!(msg.contains("exportable"), "{msg}");
    assert_eq!(
        err(&t, Operation::List, "keys", json!({})).0,
        404,
        "nothing created"
    );
    let k = write(&t, "keys/r", json!({ "auto_rotate_period": "2h" }));
    assert_eq!(k["auto_rotate_period"], 7200);
}

#[test]
fn paths_and_operations() {
    let t = transit();
    write(&t, "keys/k1", json!({}));
    let unsupported_path = (404, multierror("unsupported path"));
    let unsupported_op = (405, multierror("unsupported operation"));
    assert_eq!(
        err(&t, Operation::Read, "bogus", json!({})),
        unsupported_path
    );
    assert_eq!(werr(&t, "keys/k1/bogus", json!({})), unsupported_path);
    assert_eq!(werr(&t, "keys/-ab", json!({})), unsupported_path);
    assert_eq!(werr(&t, "encrypt", json!({})), unsupported_path);
    assert_eq!(
        err(&t, Operation::List, "keys/k1", json!({})),
        unsupported_op
    );
    assert_eq!(
        err(&t, Operation::Read, "encrypt/k1", json!({})),
        unsupported_op
    );
    assert_eq!(
        err(&t, Operation::Read, "keys/k1/rotate", json!({})),
        unsupported_op
    );
    assert_eq!(
        err(&t, Operation::Read, "random/8", json!({})),
        unsupported_op
    );
    assert_eq!(werr(&t, "keys", json!({})), unsupported_op);
    write(&t, "keys/a.b-c_d", json!({}));
    // export is refused, key material never leaves the server
    assert_eq!(
        err(&t, Operation::Read, "export/encryption-key/k1", json!({})),
        (400, "private key material is not exportable".into())
    );
    assert_eq!(
        err(
            &t,
            Operation::Read,
            "export/encryption-key/nokey",
            json!({})
        )
        .0,
        404
    );
    // existence check for the router (create vs update ACL)
    assert_eq!(
        t.exists(&req(Operation::Update, "encrypt/k1", json!({})))
            .unwrap(),
        Some(true)
    );
    assert_eq!(
        t.exists(&req(Operation::Update, "encrypt/zz", json!({})))
            .unwrap(),
        Some(false)
    );
    assert_eq!(
        t.exists(&req(Operation::Update, "keys/k1", json!({})))
            .unwrap(),
        None
    );
    // unknown parameters are ignored with OpenBao's warning
    let r = call(&t, Operation::Update, "keys/k1/rotate", json!({ "foo": 1 })).unwrap();
    assert_eq!(
        r.warnings,
        vec!["Endpoint ignored these unrecognized parameters: [foo]".to_string()]
    );
}

#[test]
fn encrypt_decrypt_roundtrip_all_types_and_upsert() {
    let t = transit();
    for ty in ["aes256-gcm96", "aes128-gcm96", "chacha20-poly1305"] {
        let name = format!("k-{ty}");
        write(&t, &format!("keys/{name}"), json!({ "type": ty }));
        let r = write(
            &t,
            &format!("encrypt/{name}"),
            json!({ "plaintext": HELLO }),
        );
        assert_eq!(r["key_version"], 1);
        let ct = r["ciphertext"].as_str().unwrap();
        assert!(ct.starts_with("vault:v1:"));
        // nonce(12) + 13 bytes + tag(16) = 41 bytes -> 56 base64 chars
        assert_eq!(ct.len(), "vault:v1:".len() + 56);
        assert_eq!(dec(&t, &name, ct), HELLO);
    }
    // empty plaintext is fine
    let ct = enc(&t, "k-aes256-gcm96", "");
    assert_eq!(dec(&t, "k-aes256-gcm96", &ct), "");
    // encrypting to a missing key creates it (upsert); the Create op is the router's view
    let r = call(
        &t,
        Operation::Create,
        "encrypt/autocreated",
        json!({ "plaintext": HELLO, "type": "chacha20-poly1305" }),
    )
    .unwrap();
    assert!(r.warnings.is_empty());
    let info = ok(&t, Operation::Read, "keys/autocreated", json!({}));
    assert_eq!(info["type"], "chacha20-poly1305");
    assert_eq!(info["derived"], false);
    // a Create that finds the key already there warns like OpenBao
    let r = call(
        &t,
        Operation::Create,
        "encrypt/autocreated",
        json!({ "plaintext": HELLO }),
    )
    .unwrap();
    assert_eq!(r.warnings.len(), 1);
    // upsert with a context creates a derived key; bad type refuses to create
    write(
        &t,
        "encrypt/newd",
        json!({ "plaintext": HELLO, "context": "Y3R4" }),
    );
    assert_eq!(
        ok(&t, Operation::Read, "keys/newd", json!({}))["derived"],
        true
    );
    assert_eq!(
        werr(
            &t,
            "encrypt/newt",
            json!({ "plaintext": HELLO, "type": "bogus" })
        ),
        (400, "unknown key type bogus".into())
    );
    assert_eq!(
        werr(
            &t,
            "encrypt/newt",
            json!({ "plaintext": HELLO, "type": "ecdsa-p256" })
        ),
        (
            400,
            "key type ecdsa-p256 not supported for this operation".into()
        )
    );
    assert_eq!(err(&t, Operation::Read, "keys/newt", json!({})).0, 404);
    // type is ignored for an existing key
    write(
        &t,
        "encrypt/k-aes256-gcm96",
        json!({ "plaintext": HELLO, "type": "bogus" }),
    );
}

#[test]
fn bad_inputs_match_openbao() {
    let t = transit();
    write(&t, "keys/k1", json!({}));
    write(&t, "keys/c1", json!({ "type": "chacha20-poly1305" }));
    let cases: &[(&str, Value, &str)] = &[
        ("encrypt/k1", json!({}), "missing plaintext to encrypt"),
        ("encrypt/k1", json!({ "plaintext": "not base64!!" }), "illegal base64 data at input byte 3"),
        ("encrypt/k1", json!({ "plaintext": "aGk" }), "illegal base64 data at input byte 0"),
        ("encrypt/k1", json!({ "plaintext": 5 }), "illegal base64 data at input byte 0"),
        ("encrypt/k1", json!({ "plaintext": "aGk=", "key_version": 2 }), "requested version for encryption is higher than the latest key version"),
        ("encrypt/k1", json!({ "plaintext": "aGk=", "key_version": -1 }), "requested version for encryption is negative"),
        ("encrypt/k1", json!({ "plaintext": { "a": 1 } }), "error converting input for field \"plaintext\": '' expected type 'string', got unconvertible type 'map[string]interface {}'"),
        ("decrypt/k1", json!({}), "missing ciphertext to decrypt"),
        ("decrypt/k1", json!({ "ciphertext": "" }), "missing ciphertext to decrypt"),
        ("decrypt/k1", json!({ "ciphertext": "garbage" }), "invalid ciphertext: no prefix"),
        ("decrypt/k1", json!({ "ciphertext": "vault:" }), "invalid ciphertext: no prefix"),
        ("decrypt/k1", json!({ "ciphertext": "vault:v1" }), "invalid ciphertext: wrong number of fields"),
        ("decrypt/k1", json!({ "ciphertext": "vault:vx:AAAA" }), "invalid ciphertext: version number could not be decoded"),
        ("decrypt/k1", json!({ "ciphertext": "vault:v99999999999999999999:AAAA" }), "invalid ciphertext: version number could not be decoded"),
        ("decrypt/k1", json!({ "ciphertext": "vault:v-1:AAAA" }), "ciphertext or signature version is disallowed by policy (too old)"),
        ("decrypt/k1", json!({ "ciphertext": "vault:v0:AAAA" }), "invalid ciphertext length"),
        ("decrypt/k1", json!({ "ciphertext": "vault:v+1:AAAA" }), "invalid ciphertext length"),
        ("decrypt/k1", json!({ "ciphertext": "vault:v999:AAAA" }), "invalid ciphertext: version is too new"),
        ("decrypt/k1", json!({ "ciphertext": "vault:v1:!!!!" }), "invalid ciphertext: could not decode base64"),
        ("decrypt/k1", json!({ "ciphertext": "vault:v1:AAAA" }), "invalid ciphertext length"),
        ("decrypt/k1", json!({ "ciphertext": "vault:v1:" }), "invalid ciphertext length"),
        ("decrypt/k1", json!({ "ciphertext": "vault:v1:AAAAAAAAAAAAAAAA" }), "cipher: message authentication failed"),
        ("decrypt/k1", json!({ "ciphertext": "vault:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" }), "cipher: message authentication failed"),
        ("decrypt/c1", json!({ "ciphertext": "vault:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" }), "chacha20poly1305: message authentication failed"),
        ("decrypt/nokey", json!({ "ciphertext": "vault:v1:AAAA" }), "encryption key not found"),
        ("rewrap/nokey", json!({ "ciphertext": "vault:v1:AAAA" }), "encryption key not found"),
        ("rewrap/k1", json!({}), "missing ciphertext to decrypt"),
        ("datakey/plaintext/k1", json!({ "bits": 3 }), "invalid bit length"),
        ("datakey/plaintext/k1", json!({ "bits": "abc" }), "Field validation failed: error converting input for field \"bits\": '' cannot parse value as 'int': strconv.ParseInt: invalid syntax"),
        ("datakey/foo/k1", json!({}), "Invalid path, must be 'plaintext' or 'wrapped'"),
        ("datakey/plaintext/nokey", json!({}), "encryption key not found"),
        ("keys/nokey/config", json!({ "deletion_allowed": true }), "no existing key named nokey could be found"),
        ("keys/nokey/rotate", json!({}), "key not found"),
        ("keys/nokey/trim", json!({ "min_available_version": 1 }), "invalid key name"),
        ("encrypt/k1", json!({ "batch_input": [] }), "missing batch input to process"),
        ("encrypt/k1", json!({ "batch_input": [{ "plaintext": "aGk=", "context": "Y3R4" }, { "plaintext": "aGk=" }] }), "context should be set either in all the request blocks or in none"),
    ];
    for (rel, body, want) in cases {
        assert_eq!(
            werr(&t, rel, body.clone()),
            (400, want.to_string()),
            "{rel} {body}"
        );
    }
    // a valid-length, tampered ciphertext
    let ct = enc(&t, "k1", HELLO);
    let v = parse_versioned(&ct).unwrap();
    let mut raw = v.payload().unwrap();
    let last = raw.len() - 1;
    raw[last] ^= 1;
    let tampered = format_versioned(1, &raw);
    assert_eq!(
        werr(&t, "decrypt/k1", json!({ "ciphertext": tampered })),
        (400, "cipher: message authentication failed".into())
    );
    // bad associated_data base64 is an internal error in OpenBao (500, multierror text)
    let (code, msg) = werr(
        &t,
        "encrypt/k1",
        json!({ "plaintext": "aGk=", "associated_data": "!!" }),
    );
    assert_eq!(code, 500);
    assert_eq!(
        msg,
        multierror("unable to get associated_data/additional_data from factory[0]: illegal base64 data at input byte 0")
    );
    // malformed batch_input: 500 like OpenBao
    assert_eq!(
        werr(
            &t,
            "encrypt/k1",
            json!({ "batch_input": [{ "context": "Y3R4" }] })
        ),
        (
            500,
            multierror("failed to parse batch input: '[0].plaintext' missing plaintext to encrypt")
        )
    );
    assert_eq!(
        werr(&t, "encrypt/k1", json!({ "batch_input": "abc" })),
        (
            500,
            multierror(
                "failed to parse batch input: source data must be an array or slice, got string"
            )
        )
    );
    assert_eq!(
        werr(&t, "encrypt/k1", json!({ "batch_input": [1] })),
        (
            500,
            multierror("failed to parse batch input: [0] expected a map, got 'json.Number'")
        )
    );
    assert_eq!(
        werr(
            &t,
            "decrypt/k1",
            json!({ "batch_input": [{ "ciphertext": "x" }, {}] })
        ),
        (
            500,
            multierror(
                "failed to parse batch input: '[1].ciphertext' missing ciphertext to decrypt"
            )
        )
    );
}

#[test]
fn batch_partial_failures() {
    let t = transit();
    write(&t, "keys/k1", json!({}));
    // encrypt: any failed item -> 400 with the full data; order and references preserved
    let r = call(
        &t,
        Operation::Update,
        "encrypt/k1",
        json!({ "batch_input": [
            { "plaintext": "aGk=", "reference": "r1" },
            { "plaintext": "bad!", "reference": "r2" },
            { "plaintext": "aGk=", "key_version": 5 }
        ]}),
    )
    .unwrap();
    assert_eq!(r.status, 400);
    let res = &data(&r)["batch_results"];
    assert!(res[0]["ciphertext"]
        .as_str()
        .unwrap()
        .starts_with("vault:v1:"));
    assert_eq!(res[0]["key_version"], 1);
    assert_eq!(res[0]["reference"], "r1");
    assert!(res[0].get("error").is_none());
    assert_eq!(
        res[1],
        json!({ "error": "illegal base64 data at input byte 3", "reference": "r2" })
    );
    assert_eq!(
        res[2],
        json!({ "error": "requested version for encryption is higher than the latest key version", "reference": "" })
    );
    let good = res[0]["ciphertext"].as_str().unwrap().to_string();

    // partial_failure_response_code applies only when something succeeded
    let r = call(
        &t,
        Operation::Update,
        "encrypt/k1",
        json!({ "batch_input": [{ "plaintext": "aGk=" }, { "plaintext": "x" }], "partial_failure_response_code": 207 }),
    )
    .unwrap();
    assert_eq!(r.status, 207);
    let r = call(
        &t,
        Operation::Update,
        "encrypt/k1",
        json!({ "batch_input": [{ "plaintext": "!" }, { "plaintext": "x" }], "partial_failure_response_code": 207 }),
    )
    .unwrap();
    assert_eq!(r.status, 400);
    // all good -> 200
    let r = call(
        &t,
        Operation::Update,
        "encrypt/k1",
        json!({ "batch_input": [{ "plaintext": HELLO }, { "plaintext": "dHdv" }] }),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let res = data(&r)["batch_results"].clone();
    assert_eq!(res[1]["reference"], "");
    let two = res[1]["ciphertext"].as_str().unwrap().to_string();

    // decrypt batch
    let r = call(
        &t,
        Operation::Update,
        "decrypt/k1",
        json!({ "batch_input": [
            { "ciphertext": good, "reference": "a" },
            { "ciphertext": "vault:v1:AAAA" },
            { "ciphertext": "" },
            { "ciphertext": two }
        ]}),
    )
    .unwrap();
    assert_eq!(r.status, 400);
    let res = data(&r)["batch_results"].clone();
    assert_eq!(res[0], json!({ "plaintext": "aGk=", "reference": "a" }));
    assert_eq!(
        res[1],
        json!({ "plaintext": "", "error": "invalid ciphertext length", "reference": "" })
    );
    assert_eq!(res[2]["error"], "missing ciphertext to decrypt");
    assert_eq!(res[3]["plaintext"], "dHdv");

    // rewrap batch: errors per item but 200
    let r = call(
        &t,
        Operation::Update,
        "rewrap/k1",
        json!({ "batch_input": [{ "ciphertext": good, "reference": "q" }, { "ciphertext": "vault:v1:AAAA" }, {}] }),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let res = data(&r)["batch_results"].clone();
    assert_eq!(res[0]["reference"], "q");
    assert_eq!(
        res[1],
        json!({ "error": "invalid ciphertext length", "reference": "" })
    );
    assert_eq!(
        res[2],
        json!({ "error": "missing ciphertext to decrypt", "reference": "" })
    );
    // internal (AAD) failure mixed with success -> 500 with data
    let r = call(
        &t,
        Operation::Update,
        "encrypt/k1",
        json!({ "batch_input": [{ "plaintext": "aGk=", "associated_data": "!!" }, { "plaintext": "aGk=" }] }),
    )
    .unwrap();
    assert_eq!(r.status, 500);
}

#[test]
fn versions_rotate_config_trim() {
    let t = transit();
    write(&t, "keys/k1", json!({}));
    let v1 = enc(&t, "k1", HELLO);
    let info = write(&t, "keys/k1/rotate", json!(null));
    assert_eq!(info["latest_version"], 2);
    assert_eq!(info["keys"].as_object().unwrap().len(), 2);
    let v2 = enc(&t, "k1", HELLO);
    assert!(v2.starts_with("vault:v2:"));
    // old versions still decrypt after rotation
    assert_eq!(dec(&t, "k1", &v1), HELLO);
    assert_eq!(dec(&t, "k1", &v2), HELLO);
    // encrypt with an explicit older version
    let r = write(
        &t,
        "encrypt/k1",
        json!({ "plaintext": HELLO, "key_version": "1" }),
    );
    assert_eq!(r["key_version"], 1);
    assert!(r["ciphertext"].as_str().unwrap().starts_with("vault:v1:"));
    // rewrap moves to the latest version, and to a chosen one
    let rw = write(&t, "rewrap/k1", json!({ "ciphertext": v1 }));
    assert_eq!(rw["key_version"], 2);
    let rw_ct = rw["ciphertext"].as_str().unwrap();
    assert!(rw_ct.starts_with("vault:v2:"));
    assert_eq!(dec(&t, "k1", rw_ct), HELLO);
    let rw1 = write(
        &t,
        "rewrap/k1",
        json!({ "ciphertext": v2, "key_version": 1 }),
    );
    assert_eq!(rw1["key_version"], 1);

    // min_decryption_version=2 hides v1 and refuses v1 ciphertexts
    let cfg = write(
        &t,
        "keys/k1/config",
        json!({ "min_decryption_version": "2" }),
    );
    assert_eq!(cfg["min_decryption_version"], 2);
    assert_eq!(
        cfg["keys"].as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["2"]
    );
    assert_eq!(
        werr(&t, "decrypt/k1", json!({ "ciphertext": v1 })),
        (
            400,
            "ciphertext or signature version is disallowed by policy (too old)".into()
        )
    );
    assert_eq!(dec(&t, "k1", &v2), HELLO);
    // lowering it again restores v1
    write(&t, "keys/k1/config", json!({ "min_decryption_version": 1 }));
    assert_eq!(dec(&t, "k1", &v1), HELLO);

    // config validation, OpenBao's texts
    let r = call(
        &t,
        Operation::Update,
        "keys/k1/config",
        json!({ "min_decryption_version": 0 }),
    )
    .unwrap();
    assert_eq!(r.warnings.len(), 1);
    let cases: &[(Value, &str)] = &[
        (json!({ "min_decryption_version": 5 }), "cannot set min decryption version of 5, latest key version is 2"),
        (json!({ "min_decryption_version": -1 }), "min decryption version cannot be negative"),
        (json!({ "min_encryption_version": 5 }), "cannot set min encryption version of 5, latest key version is 2"),
        (json!({ "min_encryption_version": -1 }), "min encryption version cannot be negative"),
        (json!({ "min_encryption_version": 1, "min_decryption_version": 2 }), "cannot set min encryption/decryption values; min encryption version of 1 must be greater than or equal to min decryption version of 2"),
        (json!({ "auto_rotate_period": "30m" }), "auto rotate period must be 0 to disable or at least an hour"),
        (json!({ "auto_rotate_period": "bogus" }), "Field validation failed: error converting input for field \"auto_rotate_period\": time: invalid duration \"bogus\""),
        (json!({ "min_decryption_version": "x" }), "Field validation failed: error converting input for field \"min_decryption_version\": '' cannot parse value as 'int': strconv.ParseInt: invalid syntax"),
    ];
    for (body, want) in cases {
        assert_eq!(
            werr(&t, "keys/k1/config", body.clone()),
            (400, want.to_string()),
            "{body}"
        );
    }
    let (code, msg) = werr(&t, "keys/k1/config", json!({ "exportable": true }));
    assert_eq!(code, 400);
    assert!(msg.contains("exportable"));
    assert_eq!(
        write(&t, "keys/k1/config", json!({ "exportable": false }))["exportable"],
        false
    );
    assert_eq!(
        write(
            &t,
            "keys/k1/config",
            json!({ "auto_rotate_period": "1h30m" })
        )["auto_rotate_period"],
        5400
    );

    // min_encryption_version refuses older versions for encrypt and hmac
    write(&t, "keys/k1/rotate", json!({}));
    write(&t, "keys/k1/config", json!({ "min_encryption_version": 2 }));
    assert_eq!(
        werr(
            &t,
            "encrypt/k1",
            json!({ "plaintext": HELLO, "key_version": 1 })
        ),
        (
            400,
            "requested version for encryption is less than the minimum encryption key version"
                .into()
        )
    );
    assert_eq!(
        werr(&t, "datakey/plaintext/k1", json!({ "key_version": 1 })),
        (
            400,
            "requested version for encryption is less than the minimum encryption key version"
                .into()
        )
    );

    // trim
    assert_eq!(
        werr(&t, "keys/k1/trim", json!({})),
        (400, "missing min_available_version".into())
    );
    assert_eq!(
        werr(&t, "keys/k1/trim", json!({ "min_available_version": 2 })),
        (
            400,
            "minimum available version cannot be greater than minimum decryption version".into()
        )
    );
    write(&t, "keys/k1/config", json!({ "min_decryption_version": 2 }));
    assert_eq!(
        werr(&t, "keys/k1/trim", json!({ "min_available_version": 3 })),
        (
            400,
            "minimum available version cannot be greater than minmum encryption version".into()
        )
    );
    let tr = write(&t, "keys/k1/trim", json!({ "min_available_version": 2 }));
    assert_eq!(tr["min_available_version"], 2);
    assert_eq!(
        werr(&t, "keys/k1/trim", json!({ "min_available_version": 1 })),
        (
            400,
            "minimum available version cannot be decremented".into()
        )
    );
    assert_eq!(
        werr(&t, "keys/k1/config", json!({ "min_decryption_version": 1 })),
        (
            400,
            "min decryption version should not be less then min available version".into()
        )
    );
    assert_eq!(
        werr(&t, "keys/k1/config", json!({ "min_encryption_version": 0 })),
        (
            400,
            "min encryption version should not be less than min available version".into()
        )
    );
    // v1 is gone for good
    assert_eq!(
        werr(&t, "decrypt/k1", json!({ "ciphertext": v1 })),
        (
            400,
            "ciphertext or signature version is disallowed by policy (too old)".into()
        )
    );
    assert_eq!(dec(&t, "k1", &v2), HELLO);
    let trim_fresh = transit();
    write(&trim_fresh, "keys/x", json!({}));
    assert_eq!(
        werr(
            &trim_fresh,
            "keys/x/trim",
            json!({ "min_available_version": 1 })
        ),
        (
            400,
            "minimum available version cannot be set when minimum encryption version is not set"
                .into()
        )
    );
}

#[test]
fn derived_keys_need_context_and_bind_to_it() {
    let t = transit();
    write(&t, "keys/d1", json!({ "derived": true }));
    let missing = "missing 'context' for key derivation; the key was created using a derived key, which means additional, per-request information must be included in order to perform operations with the key";
    assert_eq!(
        werr(&t, "encrypt/d1", json!({ "plaintext": HELLO })),
        (400, missing.into())
    );
    assert_eq!(
        werr(
            &t,
            "encrypt/d1",
            json!({ "plaintext": HELLO, "context": "!!" })
        ),
        (400, "illegal base64 data at input byte 0".into())
    );
    assert_eq!(
        werr(&t, "datakey/wrapped/d1", json!({})),
        (400, missing.into())
    );
    assert_eq!(
        werr(&t, "datakey/wrapped/d1", json!({ "context": "!!" })),
        (400, "failed to base64-decode context".into())
    );
    let ct = write(
        &t,
        "encrypt/d1",
        json!({ "plaintext": HELLO, "context": "Y3R4" }),
    )["ciphertext"]
        .as_str()
        .unwrap()
        .to_string();
    let pt = write(
        &t,
        "decrypt/d1",
        json!({ "ciphertext": ct, "context": "Y3R4" }),
    );
    assert_eq!(pt["plaintext"], HELLO);
    assert_eq!(
        werr(&t, "decrypt/d1", json!({ "ciphertext": ct })),
        (400, missing.into())
    );
    assert_eq!(
        werr(
            &t,
            "decrypt/d1",
            json!({ "ciphertext": ct, "context": "b3RoZXI=" })
        ),
        (400, "cipher: message authentication failed".into())
    );
    // rewrap keeps the context binding
    write(&t, "keys/d1/rotate", json!({}));
    let rw = write(
        &t,
        "rewrap/d1",
        json!({ "ciphertext": ct, "context": "Y3R4" }),
    );
    let rw_ct = rw["ciphertext"].as_str().unwrap();
    assert!(rw_ct.starts_with("vault:v2:"));
    assert_eq!(
        write(
            &t,
            "decrypt/d1",
            json!({ "ciphertext": rw_ct, "context": "Y3R4" })
        )["plaintext"],
        HELLO
    );
    // datakey with context decrypts with the same context only
    let dk = write(
        &t,
        "datakey/plaintext/d1",
        json!({ "context": "Y3R4", "bits": 128 }),
    );
    let dk_pt = dk["plaintext"].as_str().unwrap();
    assert_eq!(go_b64_decode(dk_pt).unwrap().len(), 16);
    let back = write(
        &t,
        "decrypt/d1",
        json!({ "ciphertext": dk["ciphertext"], "context": "Y3R4" }),
    );
    assert_eq!(back["plaintext"], dk_pt);
    // non-derived keys ignore a context
    write(&t, "keys/k1", json!({}));
    let c = write(
        &t,
        "encrypt/k1",
        json!({ "plaintext": HELLO, "context": "Y3R4" }),
    )["ciphertext"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(dec(&t, "k1", &c), HELLO);
}

#[test]
fn derivation_is_hkdf_sha256_of_context() {
    // Documented construction: key_ctx = HKDF-SHA256(ikm = version key, salt = "", info = context).
    let t = transit();
    write(&t, "keys/d", json!({ "derived": true }));
    let ct = write(
        &t,
        "encrypt/d",
        json!({ "plaintext": HELLO, "context": "Y3R4" }),
    )["ciphertext"]
        .as_str()
        .unwrap()
        .to_string();
    let p = t.load("d").unwrap().unwrap();
    let k = keys::hkdf_sha256(&p.keys[&1].key.0, b"ctx", 32);
    let payload = parse_versioned(&ct).unwrap().payload().unwrap();
    let pt = keys::open(KeyType::Aes256Gcm96, &k, b"", &payload).unwrap();
    assert_eq!(&pt[..], b"hello openbao");
}

#[test]
fn keys_are_isolated_and_aad_is_bound() {
    let t = transit();
    write(&t, "keys/a", json!({}));
    write(&t, "keys/b", json!({}));
    let ct = enc(&t, "a", HELLO);
    assert_eq!(
        werr(&t, "decrypt/b", json!({ "ciphertext": ct })),
        (400, "cipher: message authentication failed".into())
    );
    let ad = write(
        &t,
        "encrypt/a",
        json!({ "plaintext": HELLO, "associated_data": "YWQ=" }),
    )["ciphertext"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        werr(&t, "decrypt/a", json!({ "ciphertext": ad })),
        (400, "cipher: message authentication failed".into())
    );
    assert_eq!(
        write(
            &t,
            "decrypt/a",
            json!({ "ciphertext": ad, "associated_data": "YWQ=" })
        )["plaintext"],
        HELLO
    );
    assert_eq!(
        werr(
            &t,
            "decrypt/a",
            json!({ "ciphertext": ad, "associated_data": "YWI=" })
        ),
        (400, "cipher: message authentication failed".into())
    );
}

#[test]
fn key_material_only_encrypted_at_rest() {
    let (t, st) = transit_on();
    write(&t, "keys/a", json!({}));
    let p = t.load("a").unwrap().unwrap();
    let key = p.keys[&1].key.0.to_vec();
    let key_b64 = ciphertext::b64_encode(&key);
    let raw = st
        .get("logical/test/policy/a")
        .unwrap()
        .expect("stored under the view");
    assert!(!raw.windows(key.len()).any(|w| w == &key[..]));
    assert!(!String::from_utf8_lossy(&raw).contains(&key_b64));
    assert!(!String::from_utf8_lossy(&raw).contains("aes256-gcm96"));
    // and the error texts never carry key bytes
    let e = werr(
        &t,
        "decrypt/a",
        json!({ "ciphertext": "vault:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" }),
    );
    assert!(!e.1.contains(&key_b64));
}

#[test]
fn datakey_sizes() {
    let t = transit();
    write(&t, "keys/k1", json!({}));
    for (bits, len) in [(128, 16), (256, 32), (512, 64)] {
        let r = write(
            &t,
            "datakey/plaintext/k1",
            json!({ "bits": bits.to_string() }),
        );
        let pt = go_b64_decode(r["plaintext"].as_str().unwrap()).unwrap();
        assert_eq!(pt.len(), len);
        assert_eq!(r["key_version"], 1);
        assert_eq!(
            dec(&t, "k1", r["ciphertext"].as_str().unwrap()),
            r["plaintext"]
        );
    }
    let w = write(&t, "datakey/wrapped/k1", json!(null));
    assert!(w.get("plaintext").is_none());
    assert_eq!(
        go_b64_decode(&dec(&t, "k1", w["ciphertext"].as_str().unwrap()))
            .unwrap()
            .len(),
        32
    );
}

#[test]
fn random_bytes_endpoint() {
    let t = transit();
    let r = write(&t, "random", json!({}));
    assert_eq!(
        go_b64_decode(r["random_bytes"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
    let r = write(&t, "random/8", json!({ "format": "hex" }));
    assert_eq!(r["random_bytes"].as_str().unwrap().len(), 16);
    let r = call(&t, Operation::Update, "random/seal/8", json!({})).unwrap();
    assert_eq!(
        r.warnings,
        vec!["no seal/entropy augmentation available, using platform entropy source".to_string()]
    );
    write(&t, "random/all/8", json!({}));
    let r = write(&t, "random/platform", json!({ "bytes": 4 }));
    assert_eq!(
        go_b64_decode(r["random_bytes"].as_str().unwrap())
            .unwrap()
            .len(),
        4
    );
    let r = write(&t, "random/-1", json!({}));
    assert_eq!(
        go_b64_decode(r["random_bytes"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
    let cases: &[(&str, Value, &str)] = &[
        ("random/bogus/8", json!({}), "unsupported entropy source \"bogus\"; must be \"platform\" or \"seal\", or \"all\""),
        ("random/bogus", json!({}), "error parsing url-set byte count: strconv.Atoi: parsing \"bogus\": invalid syntax"),
        ("random/0", json!({}), "'bytes' cannot be less than 1"),
        ("random/200000", json!({}), "'bytes' should be less than 131072"),
        ("random/8", json!({ "format": "b32" }), "unsupported encoding format \"b32\"; must be \"hex\" or \"base64\""),
        ("random", json!({ "bytes": "abc" }), "Field validation failed: error converting input for field \"bytes\": '' cannot parse value as 'int': strconv.ParseInt: invalid syntax"),
        ("random/8/9", json!({}), "unsupported entropy source \"8\"; must be \"platform\" or \"seal\", or \"all\""),
    ];
    for (rel, body, want) in cases {
        assert_eq!(
            werr(&t, rel, body.clone()),
            (400, want.to_string()),
            "{rel}"
        );
    }
}

#[test]
fn hmac_and_verify() {
    let t = transit();
    write(&t, "keys/k1", json!({}));
    let h = write(&t, "hmac/k1", json!({ "input": "aGk=" }))["hmac"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(h.starts_with("vault:v1:"));
    assert_eq!(go_b64_decode(&h["vault:v1:".len()..]).unwrap().len(), 32);
    // separate HMAC key, HMAC-SHA256 of the input
    let p = t.load("k1").unwrap().unwrap();
    assert_eq!(
        h,
        format_versioned(
            1,
            &crate::crypto::hmac_sha256(&p.keys[&1].hmac_key.0, b"hi")
        )
    );
    assert_ne!(&p.keys[&1].hmac_key.0[..], &p.keys[&1].key.0[..]);
    let h512 = write(&t, "hmac/k1/sha2-512", json!({ "input": "aGk=" }))["hmac"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(go_b64_decode(&h512["vault:v1:".len()..]).unwrap().len(), 64);
    for alg in [
        "sha1", "sha2-224", "sha2-384", "sha3-224", "sha3-256", "sha3-384", "sha3-512",
    ] {
        let r = write(&t, "hmac/k1", json!({ "input": "aGk=", "algorithm": alg }));
        let hm = r["hmac"].as_str().unwrap();
        let v = write(
            &t,
            &format!("verify/k1/{alg}"),
            json!({ "input": "aGk=", "hmac": hm }),
        );
        assert_eq!(v["valid"], true, "{alg}");
    }
    assert_eq!(
        write(&t, "verify/k1", json!({ "input": "aGk=", "hmac": h }))["valid"],
        true
    );
    assert_eq!(
        write(&t, "verify/k1", json!({ "input": "aGU=", "hmac": h }))["valid"],
        false
    );
    assert_eq!(
        write(
            &t,
            "verify/k1/sha2-512",
            json!({ "input": "aGk=", "hmac": h })
        )["valid"],
        false
    );
    assert_eq!(write(&t, "verify/k1", json!({ "hmac": h }))["valid"], false);
    // errors
    let cases: &[(&str, Value, &str)] = &[
        ("hmac/k1", json!({}), "missing input for HMAC"),
        (
            "hmac/k1",
            json!({ "input": "aGk=", "algorithm": "md5" }),
            "unsupported algorithm '\\x00'",
        ),
        (
            "hmac/k1/md5",
            json!({ "input": "aGk=" }),
            "unsupported algorithm '\\x00'",
        ),
        (
            "hmac/k1",
            json!({ "input": "aGk" }),
            "unable to decode input as base64: illegal base64 data at input byte 0",
        ),
        (
            "hmac/k1",
            json!({ "input": "aGk=", "key_version": 9 }),
            "key version does not exist; latest key version is 1",
        ),
        (
            "hmac/k1",
            json!({ "input": "aGk=", "key_version": -1 }),
            "key version does not exist (cannot be negative)",
        ),
        (
            "hmac/nokey",
            json!({ "input": "aGk=" }),
            "encryption key not found",
        ),
        (
            "verify/k1",
            json!({ "input": "aGk=" }),
            "neither a 'signature' nor an 'hmac' were given to verify",
        ),
        (
            "verify/k1",
            json!({ "input": "aGk=", "hmac": "junk" }),
            "invalid HMAC to verify: no prefix",
        ),
        (
            "verify/k1",
            json!({ "input": "aGk=", "hmac": "vault:v9:AAAA" }),
            "invalid HMAC: version is too new",
        ),
        (
            "verify/k1",
            json!({ "input": "aGk=", "hmac": "vault:vx:AAAA" }),
            "invalid HMAC: version number could not be decoded",
        ),
        (
            "verify/k1",
            json!({ "input": "aGk=", "hmac": "vault:v1" }),
            "invalid HMAC: wrong number of fields",
        ),
        (
            "verify/k1",
            json!({ "input": "aGk=", "hmac": "vault:v1:!!" }),
            "unable to decode verification HMAC as base64: illegal base64 data at input byte 0",
        ),
        (
            "verify/k1",
            json!({ "input": "aGk=", "hmac": "vault:v0:AAAA" }),
            "cannot verify HMAC: version is too old (disallowed by policy)",
        ),
        (
            "verify/k1",
            json!({ "input": "aGk=", "hmac": "vault:v1:AAAA", "algorithm": "md5" }),
            "invalid hash algorithm \"md5\"",
        ),
        (
            "verify/k1",
            json!({ "input": "aGk=", "signature": "vault:v1:AAAA" }),
            "key type aes256-gcm96 does not support verification",
        ),
        (
            "verify/nokey",
            json!({ "input": "aGk=", "hmac": "vault:v1:AAAA" }),
            "encryption key not found",
        ),
        (
            "verify/k1",
            json!({ "batch_input": [{ "input": "aGk=", "hmac": "vault:v1:AAAA" }, { "input": "aGk=" }] }),
            "some elements of batch_input are missing 'hmac'",
        ),
    ];
    for (rel, body, want) in cases {
        assert_eq!(
            werr(&t, rel, body.clone()),
            (400, want.to_string()),
            "{rel} {body}"
        );
    }
    // batches: 200 with per-item errors; `valid:false` omitted like OpenBao's omitempty
    let r = call(
        &t,
        Operation::Update,
        "hmac/k1",
        json!({ "batch_input": [{ "input": "aGk=", "reference": "x" }, { "input": "!!" }, {}] }),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let res = data(&r)["batch_results"].clone();
    assert_eq!(res[0], json!({ "hmac": h, "reference": "x" }));
    assert_eq!(
        res[1],
        json!({ "error": "unable to decode input as base64: illegal base64 data at input byte 0", "reference": "" })
    );
    assert_eq!(
        res[2],
        json!({ "error": "missing input for HMAC", "reference": "" })
    );
    let r = call(
        &t,
        Operation::Update,
        "verify/k1",
        json!({ "batch_input": [
            { "input": "aGk=", "hmac": h },
            { "input": "aGU=", "hmac": h, "reference": "r" },
            { "input": "aGk=", "hmac": "junk" }
        ]}),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let res = data(&r)["batch_results"].clone();
    assert_eq!(res[0], json!({ "valid": true, "reference": "" }));
    assert_eq!(res[1], json!({ "reference": "r" }));
    assert_eq!(
        res[2],
        json!({ "error": "invalid HMAC to verify: no prefix", "reference": "" })
    );
    // versions: after rotate + min_encryption_version, old HMAC versions are refused
    write(&t, "keys/k1/rotate", json!({}));
    write(&t, "keys/k1/config", json!({ "min_encryption_version": 2 }));
    assert_eq!(
        werr(&t, "hmac/k1", json!({ "input": "aGk=", "key_version": 1 })),
        (
            400,
            "cannot generate HMAC: version is too old (disallowed by policy)".into()
        )
    );
    let h2 = write(&t, "hmac/k1", json!({ "input": "aGk=" }))["hmac"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(h2.starts_with("vault:v2:"));
    assert_eq!(
        write(&t, "verify/k1", json!({ "input": "aGk=", "hmac": h }))["valid"],
        true
    );
    write(&t, "keys/k1/config", json!({ "min_decryption_version": 2 }));
    assert_eq!(
        werr(&t, "verify/k1", json!({ "input": "aGk=", "hmac": h })),
        (
            400,
            "cannot verify HMAC: version is too old (disallowed by policy)".into()
        )
    );
}

#[test]
fn auto_rotation_is_due_after_period() {
    let t = transit();
    write(&t, "keys/r", json!({ "auto_rotate_period": "1h" }));
    write(&t, "keys/n", json!({}));
    assert_eq!(t.rotate_due_keys().unwrap(), 0);
    // age the latest version
    let _g = t.write_lock.lock();
    let mut p = t.load_owned("r").unwrap().unwrap();
    p.keys.get_mut(&1).unwrap().creation_time -= 3601;
    t.store(&p).unwrap();
    drop(_g);
    assert_eq!(t.rotate_due_keys().unwrap(), 1);
    assert_eq!(
        ok(&t, Operation::Read, "keys/r", json!({}))["latest_version"],
        2
    );
    assert_eq!(
        ok(&t, Operation::Read, "keys/n", json!({}))["latest_version"],
        1
    );
    assert_eq!(t.rotate_due_keys().unwrap(), 0);
    // lazily on use as well, without the periodic call
    let mut p = t.load_owned("r").unwrap().unwrap();
    p.keys.get_mut(&2).unwrap().creation_time -= 3601;
    t.store(&p).unwrap();
    let ct = write(&t, "encrypt/r", json!({ "plaintext": HELLO }));
    assert_eq!(ct["key_version"], 3);
    assert_eq!(
        ok(&t, Operation::Read, "keys/r", json!({}))["latest_version"],
        3
    );
}

#[test]
fn replaced_and_ignored_param_warnings() {
    let t = transit();
    write(&t, "keys/k1", json!({}));
    let r = call(
        &t,
        Operation::Update,
        "hmac/k1",
        json!({ "name": "k1", "input": "aGk=", "zzz": 1, "aaa": 2 }),
    )
    .unwrap();
    assert_eq!(
        r.warnings,
        vec![
            "Endpoint ignored these unrecognized parameters: [aaa zzz]".to_string(),
            "Endpoint replaced the value of these parameters with the values captured from the endpoint's path: [name]".to_string(),
        ]
    );
    let r = call(
        &t,
        Operation::Update,
        "random/seal/4",
        json!({ "source": "all" }),
    )
    .unwrap();
    assert_eq!(r.warnings.len(), 2, "{:?}", r.warnings);
    assert!(r.warnings[0].starts_with("no seal/entropy"));
    // error responses carry no warnings; batch failures (status 400 with data) do
    let r = call(
        &t,
        Operation::Update,
        "encrypt/k1",
        json!({ "batch_input": [{ "plaintext": "!" }], "x": 1 }),
    )
    .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(
        r.warnings,
        vec!["Endpoint ignored these unrecognized parameters: [x]".to_string()]
    );
}

#[test]
fn no_panics_on_odd_inputs() {
    let t = transit();
    write(&t, "keys/k1", json!({}));
    let odd = [
        "",
        ":",
        "vault:v",
        "vault:v:",
        "vault:v1:=",
        "vault:v1:====",
        "vault:v1:\n",
        "vault:v1:A",
        "vault:v1:AA==AA==",
        "vault:v-9223372036854775808:AAAA",
        "vault:v9223372036854775807:AAAA",
        "vault:v1:\u{00e9}\u{00e9}",
        "vault:v\u{0661}:AAAA",
    ];
    for o in odd {
        let e = werr(&t, "decrypt/k1", json!({ "ciphertext": o }));
        assert!(e.0 == 400, "{o:?} -> {e:?}");
        let _ = call(
            &t,
            Operation::Update,
            "rewrap/k1",
            json!({ "ciphertext": o }),
        );
        let _ = call(
            &t,
            Operation::Update,
            "verify/k1",
            json!({ "input": "", "hmac": o }),
        );
    }
    for body in [
        json!({ "batch_input": {} }),
        json!({ "batch_input": [null] }),
        json!({ "batch_input": [{ "plaintext": null }] }),
        json!({ "batch_input": [{ "plaintext": "aGk=", "key_version": 1.5 }] }),
        json!({ "batch_input": [{ "plaintext": "aGk=", "key_version": "1" }] }),
        json!({ "plaintext": "aGk=", "key_version": 9_223_372_036_854_775_807_i64 }),
    ] {
        let r = call(&t, Operation::Update, "encrypt/k1", body.clone());
        assert!(r.is_err(), "{body}");
        let _ = call(&t, Operation::Update, "decrypt/k1", body.clone());
        let _ = call(&t, Operation::Update, "rewrap/k1", body.clone());
        let _ = call(&t, Operation::Update, "hmac/k1", body.clone());
        let _ = call(&t, Operation::Update, "verify/k1", body);
    }
    for rel in [
        "random//",
        "random/",
        "hmac/k1/",
        "verify/k1//",
        "datakey//k1",
        "keys//config",
        "export/x/k1/1/2",
    ] {
        let _ = call(&t, Operation::Update, rel, json!({}));
        let _ = call(&t, Operation::Read, rel, json!({}));
    }
}

#[test]
fn soft_delete_blocks_use_until_restored() {
    let t = transit();
    write(&t, "keys/sd", json!({}));
    let ct = enc(&t, "sd", HELLO);
    let h = write(&t, "hmac/sd", json!({ "input": "aGk=" }))["hmac"].clone();
    // missing keys: 204 both ways
    assert_eq!(
        call(&t, Operation::Delete, "keys/nokey/soft-delete", json!({}))
            .unwrap()
            .status,
        204
    );
    assert_eq!(
        call(
            &t,
            Operation::Update,
            "keys/nokey/soft-delete-restore",
            json!({})
        )
        .unwrap()
        .status,
        204
    );
    assert_eq!(
        werr(&t, "keys/sd/soft-delete", json!({})),
        (405, multierror("unsupported operation"))
    );
    let r = call(&t, Operation::Delete, "keys/sd/soft-delete", json!({})).unwrap();
    assert_eq!(data(&r)["soft_deleted"], true);
    assert!(r.warnings.is_empty());
    let r = call(&t, Operation::Delete, "keys/sd/soft-delete", json!({})).unwrap();
    assert_eq!(
        r.warnings,
        vec!["key was already marked as soft deleted".to_string()]
    );
    let sd = "refusing to use soft-deleted key".to_string();
    assert_eq!(
        werr(&t, "encrypt/sd", json!({ "plaintext": HELLO })),
        (400, sd.clone())
    );
    assert_eq!(
        werr(&t, "decrypt/sd", json!({ "ciphertext": ct })),
        (400, sd.clone())
    );
    assert_eq!(
        werr(&t, "rewrap/sd", json!({ "ciphertext": ct })),
        (400, sd.clone())
    );
    assert_eq!(
        werr(&t, "datakey/plaintext/sd", json!({})),
        (400, sd.clone())
    );
    assert_eq!(
        werr(&t, "hmac/sd", json!({ "input": "aGk=" })),
        (400, sd.clone())
    );
    assert_eq!(
        werr(&t, "verify/sd", json!({ "input": "aGk=", "hmac": h })),
        (400, sd.clone())
    );
    assert_eq!(
        werr(&t, "keys/sd/rotate", json!({})),
        (500, multierror(&sd))
    );
    assert_eq!(
        ok(&t, Operation::Read, "keys/sd", json!({}))["soft_deleted"],
        true
    );
    let r = write(&t, "keys/sd/soft-delete-restore", json!({}));
    assert_eq!(r["soft_deleted"], false);
    assert_eq!(dec(&t, "sd", &ct), HELLO);
    let r = call(
        &t,
        Operation::Update,
        "keys/sd/soft-delete-restore",
        json!({}),
    )
    .unwrap();
    assert_eq!(r.warnings, vec!["key was already restored".to_string()]);
}

#[test]
fn convergent_encryption_is_deterministic_per_context() {
    let t = transit();
    let info = write(
        &t,
        "keys/cv",
        json!({ "derived": true, "convergent_encryption": true }),
    );
    assert_eq!(info["convergent_encryption"], true);
    assert_eq!(info["convergent_encryption_version"], -1);
    let e = |ctx: &str, pt: &str| {
        write(&t, "encrypt/cv", json!({ "plaintext": pt, "context": ctx }))["ciphertext"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let a = e("Y3R4", HELLO);
    assert_eq!(a, e("Y3R4", HELLO));
    assert_ne!(a, e("b3RoZXI=", HELLO));
    assert_ne!(a, e("Y3R4", "dHdv"));
    assert_eq!(
        write(
            &t,
            "decrypt/cv",
            json!({ "ciphertext": a, "context": "Y3R4" })
        )["plaintext"],
        HELLO
    );
    // construction: HKDF(key, ctx) = enc ‖ nonce-key; nonce = HMAC-SHA256(nonce-key, pt)[..12]
    let p = t.load("cv").unwrap().unwrap();
    let both = keys::hkdf_sha256(&p.keys[&1].key.0, b"ctx", 64);
    let mac = crate::crypto::hmac_sha256(&both[32..], b"hello openbao");
    let payload = parse_versioned(&a).unwrap().payload().unwrap();
    assert_eq!(&payload[..12], &mac[..12]);
    // upsert with convergent needs a context
    assert_eq!(
        werr(
            &t,
            "encrypt/cv2",
            json!({ "plaintext": HELLO, "convergent_encryption": true })
        ),
        (
            400,
            "convergent encryption requires derivation to be enabled, so context is required"
                .into()
        )
    );
    write(
        &t,
        "encrypt/cv2",
        json!({ "plaintext": HELLO, "context": "Y3R4", "convergent_encryption": true }),
    );
    assert_eq!(
        ok(&t, Operation::Read, "keys/cv2", json!({}))["convergent_encryption"],
        true
    );
    // non-convergent derived keys stay randomized
    write(&t, "keys/dr", json!({ "derived": true }));
    let r1 = write(
        &t,
        "encrypt/dr",
        json!({ "plaintext": HELLO, "context": "Y3R4" }),
    )["ciphertext"]
        .clone();
    let r2 = write(
        &t,
        "encrypt/dr",
        json!({ "plaintext": HELLO, "context": "Y3R4" }),
    )["ciphertext"]
        .clone();
    assert_ne!(r1, r2);
}

#[test]
fn weak_typing_like_the_framework() {
    let t = transit();
    // explicit null is the zero value, not the default
    assert_eq!(
        werr(&t, "keys/n", json!({ "type": null })),
        (400, "unknown key type ".into())
    );
    assert_eq!(
        werr(&t, "keys/n", json!({ "type": "" })),
        (400, "unknown key type ".into())
    );
    // "" is false / 0
    assert_eq!(
        write(&t, "keys/e", json!({ "derived": "" }))["derived"],
        false
    );
    assert_eq!(
        write(
            &t,
            "encrypt/e",
            json!({ "plaintext": HELLO, "key_version": "" })
        )["key_version"],
        1
    );
    assert_eq!(
        werr(&t, "datakey/wrapped/e", json!({ "bits": null })),
        (400, "invalid bit length".into())
    );
    assert_eq!(
        werr(&t, "random", json!({ "bytes": null })),
        (400, "'bytes' cannot be less than 1".into())
    );
}

#[test]
fn sha3_hmacs_and_hash_endpoint() {
    let t = transit();
    write(&t, "keys/k1", json!({}));
    let p = t.load("k1").unwrap().unwrap();
    let hk = &p.keys[&1].hmac_key.0;
    for (alg, h) in [
        ("sha3-224", HashAlg::Sha3_224),
        ("sha3-256", HashAlg::Sha3_256),
        ("sha3-384", HashAlg::Sha3_384),
        ("sha3-512", HashAlg::Sha3_512),
        ("sha2-224", HashAlg::Sha224),
    ] {
        let mac = write(&t, &format!("hmac/k1/{alg}"), json!({ "input": "aGk=" }))["hmac"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(mac, format_versioned(1, &keys::hmac(h, hk, b"hi")), "{alg}");
        let body = json!({ "input": "aGk=", "hmac": mac, "hash_algorithm": alg });
        assert_eq!(write(&t, "verify/k1", body)["valid"], true, "{alg}");
        let body = json!({ "input": "aGk=", "hmac": mac });
        assert_eq!(write(&t, "verify/k1", body)["valid"], false, "{alg}");
    }

    // hash: python3 hashlib over b"hello openbao"
    let sum = |path: &str, body: Value| write(&t, path, body)["sum"].clone();
    assert_eq!(
        sum("hash/sha3-224", json!({ "input": "aGVsbG8gb3BlbmJhbw==" })),
        "f86574bc024aa2b3cf6047ec97d4d7fc6fcfb6e22a5f2d95582d530b"
    );
    assert_eq!(
        sum(
            "hash",
            json!({ "input": "aGVsbG8gb3BlbmJhbw==", "algorithm": "sha2-224" })
        ),
        "cb3cc93daf60c3a90e557ce677337a2d9258185e264164a0d06316c1"
    );
    assert_eq!(
        sum(
            "hash/sha3-224",
            json!({ "input": "aGVsbG8gb3BlbmJhbw==", "format": "base64" })
        ),
        ciphertext::b64_encode(&keys::digest(HashAlg::Sha3_224, b"hello openbao"))
    );
    // default sha2-256, hex; the URL algorithm wins over the body's
    assert_eq!(
        sum("hash", json!({ "input": "" })),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        sum(
            "hash/sha2-256",
            json!({ "input": "", "algorithm": "sha3-224" })
        ),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    for (path, body, msg) in [
        ("hash", json!({}), "input missing"),
        (
            "hash/sha1",
            json!({ "input": "aGk=" }),
            "unsupported algorithm sha1",
        ),
        (
            "hash",
            json!({ "input": "aGk=", "format": "bin" }),
            "unsupported encoding format bin; must be \"hex\" or \"base64\"",
        ),
        (
            "hash",
            json!({ "input": "!!" }),
            "unable to decode input as base64: illegal base64 data at input byte 0",
        ),
    ] {
        assert_eq!(werr(&t, path, body), (400, msg.to_string()), "{path}");
    }
    assert_eq!(
        err(&t, Operation::Read, "hash", json!({})).0,
        405,
        "hash is write-only"
    );
}

/// Encrypt and decrypt write their answers as JSON text: it must be exactly what
/// serializing the equivalent value gives (field order included), for odd references too.
#[test]
fn json_answers_are_the_serialized_values() {
    let t = transit();
    write(&t, "keys/k1", json!({}));
    let odd = "q\"uote\\ \n\t\u{1} é 😀";
    let ct = enc(&t, "k1", "aGk=");
    for (rel, body) in [
        ("encrypt/k1", json!({ "plaintext": "aGk=" })),
        (
            "encrypt/k1",
            json!({ "batch_input": [
                { "plaintext": "aGk=", "reference": odd },
                { "plaintext": "bad!", "reference": "r2" },
                { "plaintext": "" },
                { "plaintext": "aGk=", "key_version": 7 }
            ]}),
        ),
        ("decrypt/k1", json!({ "ciphertext": ct })),
        (
            "decrypt/k1",
            json!({ "batch_input": [
                { "ciphertext": ct, "reference": odd },
                { "ciphertext": "vault:v1:AAAA" },
                { "ciphertext": "" },
                { "ciphertext": "junk", "reference": "z" }
            ]}),
        ),
    ] {
        let r = call(&t, Operation::Update, rel, body).unwrap();
        let text = r.data_json.clone().expect("written as JSON text");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(text, serde_json::to_string(&v).unwrap(), "{rel}");
        assert!(v.is_object());
    }
    let r = call(
        &t,
        Operation::Update,
        "encrypt/k1",
        json!({ "batch_input": [{ "plaintext": "aGk=", "reference": odd }, { "plaintext": "bad!" }] }),
    )
    .unwrap();
    let v: Value = serde_json::from_str(r.data_json.as_deref().unwrap()).unwrap();
    let items = v["batch_results"].as_array().unwrap();
    let keys = |i: usize| {
        items[i]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(0), ["ciphertext", "key_version", "reference"]);
    assert_eq!(items[0]["reference"], odd);
    assert_eq!(keys(1), ["error", "reference"]);
    let r = call(
        &t,
        Operation::Update,
        "decrypt/k1",
        json!({ "batch_input": [{ "ciphertext": ct }, { "ciphertext": "vault:v1:AAAA" }] }),
    )
    .unwrap();
    let v: Value = serde_json::from_str(r.data_json.as_deref().unwrap()).unwrap();
    let items = v["batch_results"].as_array().unwrap();
    let keys = |i: usize| {
        items[i]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(0), ["plaintext", "reference"]);
    assert_eq!(items[0]["plaintext"], "aGk=");
    assert_eq!(keys(1), ["plaintext", "error", "reference"]);
}

/// Two instances over one store (the key manager's state before and after a node became
/// the active one): a rotation through the instance whose cache is older than the stored
/// key builds on the stored key, so no version another instance made is overwritten.
#[test]
fn a_rotation_builds_on_the_stored_key_not_an_older_cached_copy() {
    let st: Arc<dyn Storage> = Arc::new(InmemStorage::new());
    let b = Arc::new(Barrier::new(st));
    let key = crate::crypto::random_bytes::<32>();
    b.initialize(&key[..], vec![]).unwrap();
    b.unseal(&key[..]).unwrap();
    let a = Transit::new(View::new(b.clone(), "logical/test/"));
    write(&a, "keys/k1", json!({}));
    let info = ok(&a, Operation::Read, "keys/k1", json!(null));
    assert_eq!(info["latest_version"], 1, "instance a caches version 1");
    let b = Transit::new(View::new(b, "logical/test/"));
    assert_eq!(write(&b, "keys/k1/rotate", json!({}))["latest_version"], 2);
    let after = write(&a, "keys/k1/rotate", json!({}));
    assert_eq!(after["latest_version"], 3, "version 2 from b is kept");
    let keys = after["keys"].as_object().unwrap();
    assert_eq!(keys.len(), 3, "{keys:?}");
    let read = ok(&a, Operation::Read, "keys/k1", json!(null));
    assert_eq!(
        read["latest_version"], 3,
        "the cache follows the stored key"
    );
}
