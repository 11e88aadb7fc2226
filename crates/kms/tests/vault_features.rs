//! Vault features real clients use: batch tokens and response wrapping, through the core's
//! request pipeline. (The same flows run against the real OpenBao through hvac and the `bao`
//! CLI in crates/strongroom/tests/kms_wrapping.rs.)

mod common;

use common::*;
use serde_json::json;
use strongroom_kms::request::{ApiError, Operation, Response};

fn err(r: Result<Response, ApiError>) -> String {
    r.unwrap_err().errors.join("")
}

#[test]
fn batch_tokens_work_and_refuse_what_openbao_refuses() {
    let k = kms();
    k.mount("kv", "kv");
    k.root(Operation::Update, "kv/a", json!({"v": "1"}));
    k.root(Operation::Update, "sys/policies/acl/r", json!({"policy": "path \"kv/*\" { capabilities = [\"read\"] }\npath \"auth/token/create\" { capabilities = [\"update\"] }"}));
    let r = k.root(
        Operation::Update,
        "auth/token/create",
        json!({"type": "batch", "policies": ["r"], "ttl": "1h"}),
    );
    let auth = r.auth.clone().unwrap();
    assert_eq!(auth["token_type"], "batch");
    assert_eq!(auth["accessor"], "");
    assert_eq!(auth["renewable"], false);
    let b = client_token(&r);
    assert!(b.starts_with("b."), "{b}");
    let tokens_before = k.core.unsealed().unwrap().tokens.count().unwrap();
    // no storage for a batch token: minting another adds nothing
    k.root(
        Operation::Update,
        "auth/token/create",
        json!({"type": "batch", "policies": ["r"]}),
    );
    assert_eq!(
        k.core.unsealed().unwrap().tokens.count().unwrap(),
        tokens_before
    );
    let r = k.call(Operation::Read, "kv/a", &b, json!({})).unwrap();
    assert_eq!(r.data.unwrap()["v"], "1");
    let me = k
        .call(Operation::Read, "auth/token/lookup-self", &b, json!({}))
        .unwrap();
    assert_eq!(me.data.unwrap()["type"], "batch");
    assert_eq!(
        err(k.call(Operation::Update, "auth/token/create", &b, json!({}))),
        "batch tokens cannot create more tokens"
    );
    assert_eq!(
        err(k.call(Operation::Update, "auth/token/renew-self", &b, json!({}))),
        "batch tokens cannot be renewed"
    );
    assert_eq!(
        err(k.call(Operation::Update, "auth/token/revoke-self", &b, json!({}))),
        "batch tokens cannot be revoked"
    );
    assert_eq!(
        err(k.call(
            Operation::Update,
            "auth/token/revoke",
            &k.root,
            json!({"token": b})
        )),
        "batch tokens cannot be revoked"
    );
    assert_eq!(
        err(k.call(Operation::Update, "cubbyhole/x", &b, json!({"a": "b"}))),
        "cubbyhole operations are only supported by 'service' type tokens"
    );
    for (body, want) in [
        (
            json!({"type": "batch"}),
            "batch tokens cannot be root tokens",
        ),
        (
            json!({"type": "batch", "policies": ["r"], "period": "1h"}),
            "batch tokens cannot have \"period\" set",
        ),
        (
            json!({"type": "batch", "policies": ["r"], "num_uses": 3}),
            "batch tokens cannot have \"num_uses\" set",
        ),
        (json!({"type": "bogus"}), "invalid 'token_type' value"),
    ] {
        assert_eq!(
            err(k.call(Operation::Update, "auth/token/create", &k.root, body)),
            want
        );
    }
    // a tampered batch token is no token
    let mut tampered = b.clone().into_bytes();
    let i = tampered.len() - 5;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert_eq!(
        k.call(Operation::Read, "kv/a", &tampered, json!({}))
            .unwrap_err()
            .status,
        403
    );
    // a non-orphan batch token dies with its parent
    let parent = client_token(&k.root(
        Operation::Update,
        "auth/token/create",
        json!({"policies": ["r"]}),
    ));
    let child = client_token(
        &k.call(
            Operation::Update,
            "auth/token/create",
            &parent,
            json!({"type": "batch"}),
        )
        .unwrap(),
    );
    k.call(Operation::Read, "kv/a", &child, json!({})).unwrap();
    k.root(
        Operation::Update,
        "auth/token/revoke",
        json!({"token": parent}),
    );
    assert_eq!(
        k.call(Operation::Read, "kv/a", &child, json!({}))
            .unwrap_err()
            .status,
        403
    );
}

#[test]
fn userpass_can_issue_batch_tokens() {
    let k = kms();
    k.enable_auth("userpass", "userpass");
    k.root(
        Operation::Update,
        "auth/userpass/users/bu",
        json!({"password": "pw", "token_type": "batch", "token_policies": ["p1"]}),
    );
    let u = k.root(Operation::Read, "auth/userpass/users/bu", json!({}));
    assert_eq!(u.data.unwrap()["token_type"], "batch");
    let r = k
        .call(
            Operation::Update,
            "auth/userpass/login/bu",
            "",
            json!({"password": "pw"}),
        )
        .unwrap();
    assert_eq!(r.auth.as_ref().unwrap()["token_type"], "batch");
    assert!(client_token(&r).starts_with("b."));
}

fn wrap_token(r: &Response) -> String {
    r.wrap_info.as_ref().expect("wrapped")["token"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn any_response_can_be_wrapped_and_unwrapped_once() {
    let k = kms();
    k.mount("kv", "kv");
    k.root(Operation::Update, "kv/a", json!({"v": "wrapped-canary"}));
    let r = k
        .call_wrapped(Operation::Read, "kv/a", &k.root, json!({}), Some(60))
        .unwrap();
    assert!(
        r.data.is_none() && r.data_json.is_none(),
        "the data is not in a wrapped answer"
    );
    let info = r.wrap_info.clone().unwrap();
    assert_eq!(info["ttl"], 60);
    assert_eq!(info["creation_path"], "kv/a");
    let w = wrap_token(&r);
    // the wrapping token opens nothing but its own response
    let l = k
        .call(
            Operation::Update,
            "sys/wrapping/lookup",
            "",
            json!({"token": w}),
        )
        .unwrap();
    assert_eq!(l.data.unwrap()["creation_path"], "kv/a");
    let u = k
        .call(Operation::Update, "sys/wrapping/unwrap", &w, json!({}))
        .unwrap();
    assert_eq!(u.data.unwrap()["v"], "wrapped-canary");
    assert_eq!(
        err(k.call(Operation::Update, "sys/wrapping/unwrap", &w, json!({}))),
        "wrapping token is not valid or does not exist"
    );
    // a wrapped token creation: the token comes out of unwrap, with the accessor announced
    let r = k
        .call_wrapped(
            Operation::Update,
            "auth/token/create",
            &k.root,
            json!({"policies": ["x"]}),
            Some(300),
        )
        .unwrap();
    let acc = r.wrap_info.as_ref().unwrap()["wrapped_accessor"].clone();
    let w = wrap_token(&r);
    let r2 = k
        .call_wrapped(
            Operation::Update,
            "sys/wrapping/rewrap",
            &k.root,
            json!({"token": w}),
            None,
        )
        .unwrap();
    let w2 = wrap_token(&r2);
    assert_eq!(r2.wrap_info.as_ref().unwrap()["ttl"], 300);
    assert_eq!(
        err(k.call(
            Operation::Update,
            "sys/wrapping/unwrap",
            "",
            json!({"token": w})
        )),
        "wrapping token is not valid or does not exist"
    );
    let u = k
        .call(
            Operation::Update,
            "sys/wrapping/unwrap",
            "",
            json!({"token": w2}),
        )
        .unwrap();
    let auth = u.auth.unwrap();
    assert_eq!(auth["accessor"], acc);
    let t = auth["client_token"].as_str().unwrap();
    k.call(Operation::Read, "auth/token/lookup-self", t, json!({}))
        .unwrap();
    // sys/wrapping/wrap wraps the request's own data, and insists on a TTL
    let r = k
        .call_wrapped(
            Operation::Update,
            "sys/wrapping/wrap",
            &k.root,
            json!({"foo": "bar"}),
            Some(60),
        )
        .unwrap();
    let u = k
        .call(
            Operation::Update,
            "sys/wrapping/unwrap",
            &k.root,
            json!({"token": wrap_token(&r)}),
        )
        .unwrap();
    assert_eq!(u.data.unwrap(), json!({"foo": "bar"}));
    assert_eq!(
        err(k.call(
            Operation::Update,
            "sys/wrapping/wrap",
            &k.root,
            json!({"foo": "bar"})
        )),
        "endpoint requires response wrapping to be used"
    );
    // errors and empty answers are not wrapped
    let e = k
        .call_wrapped(Operation::Read, "kv/none", &k.root, json!({}), Some(60))
        .unwrap_err();
    assert_eq!(e.status, 404);
    let r = k
        .call_wrapped(
            Operation::Update,
            "kv/b",
            &k.root,
            json!({"v": 1}),
            Some(60),
        )
        .unwrap();
    assert_eq!(r.status, 204);
    // a wrapping token used for anything else is spent and refused
    let r = k
        .call_wrapped(Operation::Read, "kv/a", &k.root, json!({}), Some(60))
        .unwrap();
    let w = wrap_token(&r);
    assert_eq!(
        k.call(Operation::Read, "kv/a", &w, json!({}))
            .unwrap_err()
            .status,
        403
    );
    assert_eq!(
        err(k.call(
            Operation::Update,
            "sys/wrapping/unwrap",
            "",
            json!({"token": w})
        )),
        "wrapping token is not valid or does not exist"
    );
    let e = k
        .call(Operation::Update, "sys/wrapping/unwrap", "", json!({}))
        .unwrap_err();
    assert_eq!(
        (e.status, e.errors[0].as_str()),
        (403, "error validating wrapping token: token is empty")
    );
}

#[test]
fn logins_get_an_entity_that_identity_looks_up_by_id_name_and_alias() {
    let k = kms();
    let mounts = k
        .root(Operation::Read, "sys/mounts", json!({}))
        .data
        .unwrap();
    assert_eq!(
        mounts["identity/"]["type"], "identity",
        "identity/ is always mounted"
    );
    k.enable_auth("userpass", "userpass");
    k.root(
        Operation::Update,
        "auth/userpass/users/idu",
        json!({"password": "pw"}),
    );
    let login = || {
        k.call(
            Operation::Update,
            "auth/userpass/login/idu",
            "",
            json!({"password": "pw"}),
        )
        .unwrap()
        .auth
        .unwrap()
    };
    let (a1, a2) = (login(), login());
    let eid = a1["entity_id"].as_str().unwrap().to_string();
    assert!(!eid.is_empty());
    assert_eq!(
        a2["entity_id"],
        eid.as_str(),
        "the same user is the same entity"
    );
    let t = a1["client_token"].as_str().unwrap();
    let me = k
        .call(Operation::Read, "auth/token/lookup-self", t, json!({}))
        .unwrap();
    assert_eq!(me.data.unwrap()["entity_id"], eid.as_str());
    let e = k
        .root(
            Operation::Read,
            &format!("identity/entity/id/{eid}"),
            json!({}),
        )
        .data
        .unwrap();
    assert_eq!(e["aliases"][0]["name"], "idu");
    assert_eq!(e["aliases"][0]["mount_type"], "userpass");
    let name = e["name"].as_str().unwrap().to_string();
    let by_name = k.root(
        Operation::Read,
        &format!("identity/entity/name/{name}"),
        json!({}),
    );
    assert_eq!(by_name.data.unwrap()["id"], eid.as_str());
    let acc = e["aliases"][0]["mount_accessor"].clone();
    let l = k.root(
        Operation::Update,
        "identity/lookup/entity",
        json!({"alias_name": "idu", "alias_mount_accessor": acc}),
    );
    assert_eq!(l.data.unwrap()["id"], eid.as_str());
    let ids = k
        .root(Operation::List, "identity/entity/id", json!({}))
        .data
        .unwrap();
    assert_eq!(ids["keys"], json!([eid]));
    // entities made through the API
    let c = k.root(
        Operation::Update,
        "identity/entity",
        json!({"name": "alice", "policies": ["p1"], "metadata": {"team": "a"}}),
    );
    let alice = c.data.unwrap();
    assert_eq!(alice["name"], "alice");
    let r = k
        .root(Operation::Read, "identity/entity/name/alice", json!({}))
        .data
        .unwrap();
    assert_eq!(
        (r["policies"].clone(), r["metadata"]["team"].clone()),
        (json!(["p1"]), json!("a"))
    );
    assert_eq!(
        k.call(
            Operation::Read,
            "identity/entity/id/nope",
            &k.root,
            json!({})
        )
        .unwrap_err()
        .status,
        404
    );
    k.root(Operation::Delete, "identity/entity/name/alice", json!({}));
    assert_eq!(
        k.call(
            Operation::Read,
            "identity/entity/name/alice",
            &k.root,
            json!({})
        )
        .unwrap_err()
        .status,
        404
    );
    assert_eq!(
        k.call(Operation::Delete, "sys/mounts/identity", &k.root, json!({}))
            .unwrap_err()
            .status,
        400
    );
}
