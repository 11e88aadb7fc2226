//! `transit/volumes/<key>`: the volumes a key wraps, recorded from the volume manager's wrap
//! contexts, with their state under the key's versions, behind the same ACL as every path.

mod common;

use base64::Engine;
use serde_json::{json, Value};
use strongroom_kms::request::Operation::{Delete, Read, Update};

fn ctx(tenant: &str, volume: &str) -> String {
    let c = format!("strongroom/v1\ncluster=c1\ntenant={tenant}\nvolume={volume}");
    base64::engine::general_purpose::STANDARD.encode(c)
}

fn data(r: &strongroom_kms::request::Response) -> Value {
    r.data_value().expect("data").into_owned()
}

fn volumes(k: &common::Kms, key: &str) -> Value {
    data(&k.root(Read, &format!("transit/volumes/{key}"), json!({})))
}

fn wrap(k: &common::Kms, key: &str, volume: &str) -> Value {
    let body = json!({"plaintext": "AAAA", "context": ctx("alice", volume)});
    data(&k.root(Update, &format!("transit/encrypt/{key}"), body))
}

#[test]
fn wraps_are_recorded_and_their_state_follows_the_key() {
    let k = common::kms();
    k.mount("transit", "transit");
    k.root(
        Update,
        "transit/keys/tenant-alice",
        json!({"derived": true}),
    );
    let ct = wrap(&k, "tenant-alice", "db")["ciphertext"].clone();
    wrap(&k, "tenant-alice", "logs");
    // other contexts (and plain encryption) are not volumes
    let other = base64::engine::general_purpose::STANDARD.encode("app context");
    k.root(
        Update,
        "transit/encrypt/tenant-alice",
        json!({"plaintext": "AAAA", "context": other}),
    );

    let v = volumes(&k, "tenant-alice");
    let list = v["volumes"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{v}");
    assert_eq!(list[0]["volume"], "db");
    assert_eq!(list[0]["tenant"], "alice");
    assert_eq!(list[0]["cluster"], "c1");
    assert_eq!(list[0]["key_version"], 1);
    assert_eq!(list[0]["state"], "current");
    assert_eq!(list[0]["wraps"], 1);
    assert!(
        !v.to_string().contains("AAAA"),
        "no plaintext in the records: {v}"
    );

    k.root(Update, "transit/keys/tenant-alice/rotate", json!({}));
    let v = volumes(&k, "tenant-alice");
    assert_eq!(v["latest_version"], 2);
    assert_eq!(v["volumes"][0]["state"], "stale", "{v}");

    // a rewrap brings db to the latest version; logs stays behind
    let body = json!({"ciphertext": ct, "context": ctx("alice", "db")});
    k.root(Update, "transit/rewrap/tenant-alice", body);
    let v = volumes(&k, "tenant-alice");
    assert_eq!(v["volumes"][0]["key_version"], 2, "{v}");
    assert_eq!(v["volumes"][0]["state"], "current");
    assert_eq!(v["volumes"][0]["wraps"], 2);
    assert_eq!(v["volumes"][1]["state"], "stale");

    let cfg = json!({"min_decryption_version": 2});
    k.root(Update, "transit/keys/tenant-alice/config", cfg);
    assert_eq!(
        volumes(&k, "tenant-alice")["volumes"][1]["state"],
        "undecryptable"
    );

    // deleting the key forgets its volumes
    let cfg = json!({"deletion_allowed": true});
    k.root(Update, "transit/keys/tenant-alice/config", cfg);
    k.root(Delete, "transit/keys/tenant-alice", json!({}));
    k.root(
        Update,
        "transit/keys/tenant-alice",
        json!({"derived": true}),
    );
    assert_eq!(volumes(&k, "tenant-alice")["volumes"], json!([]));
}

#[test]
fn the_records_answer_only_to_tokens_the_acl_lets_read_them() {
    let k = common::kms();
    k.mount("transit", "transit");
    k.root(
        Update,
        "transit/keys/tenant-alice",
        json!({"derived": true}),
    );
    k.root(Update, "transit/keys/tenant-bob", json!({"derived": true}));
    wrap(&k, "tenant-alice", "db");
    k.policy(
        "alice",
        "path \"transit/encrypt/tenant-alice\" { capabilities = [\"update\"] }\n\
         path \"transit/volumes/tenant-alice\" { capabilities = [\"read\"] }\n",
    );
    let alice = k.token(json!({"policies": ["alice"]}));
    let r = k.call(Read, "transit/volumes/tenant-alice", &alice, json!({}));
    assert_eq!(data(&r.unwrap())["volumes"][0]["volume"], "db");
    let e = k
        .call(Read, "transit/volumes/tenant-bob", &alice, json!({}))
        .unwrap_err();
    assert_eq!(e.status, 403, "{e:?}");
    let e = k
        .call(Read, "transit/volumes/missing", &k.root.clone(), json!({}))
        .unwrap_err();
    assert_eq!(e.status, 404, "{e:?}");
}

#[test]
fn a_token_reads_its_own_resultant_acl_to_find_its_keys() {
    let k = common::kms();
    k.policy(
        "alice",
        "path \"transit/volumes/tenant-alice\" { capabilities = [\"read\"] }\n\
         path \"secret/metadata/strongroom/alice/*\" { capabilities = [\"read\", \"list\"] }\n",
    );
    let alice = k.token(json!({"policies": ["alice"], "no_default_policy": true}));
    let r = k.call(Read, "sys/internal/ui/resultant-acl", &alice, json!({}));
    let v = data(&r.unwrap());
    assert_eq!(v["root"], false);
    let exact = &v["exact_paths"]["transit/volumes/tenant-alice"];
    assert_eq!(exact["capabilities"], json!(["read"]), "{v}");
    let glob = &v["glob_paths"]["secret/metadata/strongroom/alice/"];
    assert_eq!(glob["capabilities"], json!(["list", "read"]), "{v}");
    assert!(v["exact_paths"].get("sys/policies/acl").is_none());
    let root = data(&k.root(Read, "sys/internal/ui/resultant-acl", json!({})));
    assert_eq!(root["root"], true);
    // no token, no answer
    let e = k
        .call(Read, "sys/internal/ui/resultant-acl", "bogus", json!({}))
        .unwrap_err();
    assert_eq!(e.status, 403, "{e:?}");
}
