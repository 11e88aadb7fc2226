//! Regression tests for the holes an attacker found (issue 15), through the core's request
//! pipeline: the path the ACL checks is the path the handler acts on; no auth method mints a
//! root token; token limits hold under concurrency and across descendants; policy changes
//! are seen at once; audit devices cannot be used to write files.

mod common;

use common::*;
use serde_json::{json, Value};
use std::sync::Arc;
use strongroom_kms::barrier::View;
use strongroom_kms::core::CoreOptions;
use strongroom_kms::request::{ApiError, Operation, Response};

fn denied(r: Result<Response, ApiError>) -> bool {
    matches!(r, Err(e) if e.status == 403)
}

const DELEGATED_ADMIN: &str = r#"
path "sys/policies/acl/*" { capabilities = ["create", "read", "update", "delete", "list"] }
path "sys/policies/acl/kadmin" { capabilities = ["deny"] }
path "sys/policy/*" { capabilities = ["create", "read", "update", "delete", "list"] }
path "sys/policy/kadmin" { capabilities = ["deny"] }
path "auth/userpass/users/*" { capabilities = ["create", "read", "update", "delete", "list"] }
path "auth/userpass/users/kbob" { capabilities = ["deny"] }
path "sys/mounts/*" { capabilities = ["create", "read", "update", "delete", "list", "sudo"] }
path "sys/mounts/secret" { capabilities = ["deny"] }
path "auth/token/*" { capabilities = ["create", "read", "update", "sudo"] }
path "auth/token/create-orphan" { capabilities = ["deny"] }
"#;

#[test]
fn deny_rules_cannot_be_walked_around_by_path_spelling() {
    let k = kms();
    k.enable_auth("userpass", "userpass");
    k.mount("secret", "kv");
    k.policy("dadmin", DELEGATED_ADMIN);
    let t = k.token(json!({"policies": ["dadmin"]}));
    let pol = json!({"policy": "path \"*\" { capabilities = [\"sudo\", \"update\"] }"});
    let user = json!({"password": "pw"});
    let kelvin = "\u{212A}";
    let attempts: Vec<(Operation, String, Value)> = vec![
        (
            Operation::Update,
            "sys/policies/acl/kadmin".into(),
            pol.clone(),
        ),
        (
            Operation::Update,
            "sys/policies/acl/kadmin/".into(),
            pol.clone(),
        ),
        (
            Operation::Update,
            "sys/policies/acl/KADMIN".into(),
            pol.clone(),
        ),
        (
            Operation::Update,
            format!("sys/policies/acl/{kelvin}admin"),
            pol.clone(),
        ),
        (
            Operation::Update,
            "sys/policies/acl//kadmin".into(),
            pol.clone(),
        ),
        (
            Operation::Update,
            "/sys/policies/acl/kadmin".into(),
            pol.clone(),
        ),
        (Operation::Update, "sys/policy/KAdmin".into(), pol.clone()),
        (
            Operation::Delete,
            "sys/policies/acl/kadmin/".into(),
            json!({}),
        ),
        (
            Operation::Update,
            "auth/userpass/users/KBOB".into(),
            user.clone(),
        ),
        (
            Operation::Update,
            format!("auth/userpass/users/{kelvin}bob"),
            user.clone(),
        ),
        (
            Operation::Update,
            "auth/userpass/users/kbob/".into(),
            user.clone(),
        ),
        (
            Operation::Update,
            "auth/userpass/users/kBob/password".into(),
            user.clone(),
        ),
        (
            Operation::Update,
            "sys/mounts/secret/".into(),
            json!({"type": "kv"}),
        ),
        (Operation::Delete, "sys/mounts/secret/".into(), json!({})),
        (Operation::Delete, "sys/mounts//secret".into(), json!({})),
        (
            Operation::Update,
            "auth/token/create-orphan/".into(),
            json!({}),
        ),
        (
            Operation::Update,
            "auth/token//create-orphan".into(),
            json!({}),
        ),
    ];
    for (op, path, body) in attempts {
        let r = k.call(op, &path, &t, body);
        assert!(
            matches!(&r, Err(e) if e.status == 403 || e.status == 400),
            "{op:?} {path:?} was not refused: {r:?}"
        );
    }
    // nothing the denials protect was touched
    let names = k.root(Operation::List, "sys/policies/acl", json!({}));
    let keys = names.data.unwrap()["keys"].clone();
    assert!(
        !keys.as_array().unwrap().iter().any(|n| n == "kadmin"),
        "{keys}"
    );
    assert!(k
        .call(
            Operation::Read,
            "auth/userpass/users/kbob",
            &k.root,
            json!({})
        )
        .is_err());
    k.root(Operation::Read, "sys/mounts/secret", json!({}));
    // the grants themselves still work, in any spelling the handler treats as the same name
    k.call(Operation::Update, "sys/policies/acl/Other", &t, pol)
        .unwrap();
    let r = k.root(Operation::Read, "sys/policies/acl/other", json!({}));
    assert_eq!(r.data.unwrap()["name"], "other");
}

#[test]
fn no_auth_method_mints_a_root_token() {
    let k = kms();
    k.enable_auth("userpass", "userpass");
    for (user, pols) in [
        ("r1", json!(["root"])),
        ("r2", json!(["Root", "x"])),
        ("r3", json!([" ROOT "])),
    ] {
        k.root(
            Operation::Update,
            &format!("auth/userpass/users/{user}"),
            json!({"password": "pw", "token_policies": pols}),
        );
        let e = k
            .call(
                Operation::Update,
                &format!("auth/userpass/login/{user}"),
                "",
                json!({"password": "pw"}),
            )
            .unwrap_err();
        assert_eq!(
            e.errors,
            vec!["auth methods cannot create root tokens"],
            "{user}"
        );
    }
}

#[test]
fn use_limits_are_exact_under_concurrent_requests() {
    let k = Arc::new(kms());
    k.mount("secret", "kv");
    k.policy("r", r#"path "secret/*" { capabilities = ["read"] }"#);
    let t = Arc::new(k.token(json!({"policies": ["r"], "num_uses": 2})));
    let served: usize = (0..12)
        .map(|_| {
            let (k, t) = (k.clone(), t.clone());
            std::thread::spawn(move || {
                let r = k.call(Operation::Read, "secret/x", &t, json!({}));
                !denied(r) as usize
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .sum();
    assert_eq!(served, 2, "num_uses=2 serves exactly two requests");
}

#[test]
fn children_cannot_escape_their_parents_limits() {
    let k = kms();
    k.policy(
        "p",
        r#"path "auth/token/create" { capabilities = ["update"] }"#,
    );
    let limited = k.token(json!({"policies": ["p"], "num_uses": 3}));
    for body in [
        json!({"policies": ["p"]}),
        json!({"policies": ["p"], "num_uses": 10}),
    ] {
        let e = k.token_by(&limited, body).unwrap_err();
        assert_eq!(
            e.errors,
            vec!["restricted use token cannot generate child tokens"]
        );
    }
    let nodefault = k.token(json!({"policies": ["p"], "no_default_policy": true}));
    let e = k
        .token_by(&nodefault, json!({"policies": ["p", "default"]}))
        .unwrap_err();
    assert_eq!(e.errors, vec!["child policies must be subset of parent"]);
    let child = k.token_by(&nodefault, json!({})).unwrap();
    let r = k.call(Operation::Read, "auth/token/lookup-self", &child, json!({}));
    // the child has no `default` either, so it cannot even look itself up
    assert!(denied(r));
    let r = k.root(
        Operation::Update,
        "auth/token/lookup",
        json!({"token": child}),
    );
    assert_eq!(r.data.unwrap()["policies"], json!(["p"]));
}

#[test]
fn revocation_reaches_every_descendant_and_their_cubbyholes() {
    let k = kms();
    k.policy(
        "tc",
        r#"path "auth/token/create" { capabilities = ["update"] }"#,
    );
    let top = k.token(json!({"policies": ["tc"]}));
    let mut tokens = vec![top.clone()];
    for _ in 0..80 {
        let parent = tokens.last().unwrap().clone();
        tokens.push(k.token_by(&parent, json!({})).unwrap());
    }
    let leaf = tokens.last().unwrap().clone();
    k.call(
        Operation::Update,
        "cubbyhole/note",
        &leaf,
        json!({"v": "cubby-canary"}),
    )
    .unwrap();
    let u = k.core.unsealed().unwrap();
    let mounts = k.root(Operation::Read, "sys/mounts", json!({}));
    let uuid = mounts.data.unwrap()["cubbyhole/"]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let cubby = View::new(
        k.core.barrier.clone(),
        format!("logical/{uuid}/{}/", u.tokens.hash(&leaf)),
    );
    assert_eq!(cubby.list("").unwrap(), vec!["note"]);
    k.call(Operation::Update, "auth/token/revoke-self", &top, json!({}))
        .unwrap();
    assert!(denied(k.call(
        Operation::Read,
        "auth/token/lookup-self",
        &leaf,
        json!({})
    )));
    assert!(
        cubby.list("").unwrap().is_empty(),
        "cubbyhole outlived its token"
    );
}

#[test]
fn bound_cidrs_hold_at_login_and_at_every_use() {
    let k = kms();
    k.enable_auth("userpass", "userpass");
    k.root(
        Operation::Update,
        "auth/userpass/users/alice",
        json!({"password": "pw", "token_bound_cidrs": ["127.0.0.1/32", "10.1.0.0/16"]}),
    );
    let login = |from: &str| {
        k.call_from(
            from,
            Operation::Update,
            "auth/userpass/login/alice",
            "",
            json!({"password": "pw"}),
        )
    };
    assert!(denied(login("192.168.1.5")));
    let r = login("10.1.2.3").unwrap();
    let t = r.auth.unwrap()["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    let use_from = |from: &str| {
        k.call_from(
            from,
            Operation::Read,
            "auth/token/lookup-self",
            &t,
            json!({}),
        )
    };
    let r = use_from("127.0.0.1").unwrap();
    assert_eq!(
        r.data.unwrap()["bound_cidrs"],
        json!(["127.0.0.1", "10.1.0.0/16"])
    );
    assert!(denied(use_from("192.168.1.5")));
    let e = k
        .call(
            Operation::Update,
            "auth/userpass/users/bob",
            &k.root,
            json!({"password": "pw", "token_bound_cidrs": ["10.0.0.0/99"]}),
        )
        .unwrap_err();
    assert_eq!(e.status, 400);
}

#[test]
fn a_policy_change_is_seen_by_every_token_once_the_write_returns() {
    let k = Arc::new(kms());
    k.mount("secret", "kv");
    k.root(Operation::Update, "secret/x", json!({"v": "1"}));
    let grant = r#"path "secret/*" { capabilities = ["read"] }"#;
    let revoke = r#"path "other/*" { capabilities = ["read"] }"#;
    k.policy("flip", grant);
    let tokens: Vec<String> = (0..4)
        .map(|_| k.token(json!({"policies": ["flip"]})))
        .collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = tokens
        .iter()
        .map(|t| {
            let (k, t, stop) = (k.clone(), t.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = k.call(Operation::Read, "secret/x", &t, json!({}));
                }
            })
        })
        .collect();
    for round in 0..200 {
        let granted = round % 2 == 1;
        k.policy("flip", if granted { grant } else { revoke });
        for t in &tokens {
            let r = k.call(Operation::Read, "secret/x", t, json!({}));
            assert_eq!(
                !denied(r),
                granted,
                "round {round}: a token saw the old policy"
            );
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    readers.into_iter().for_each(|h| h.join().unwrap());
}

#[test]
fn policy_syntax_openbao_rejects_is_rejected() {
    let k = kms();
    let e = k
        .call(
            Operation::Update,
            "sys/policies/acl/w",
            &k.root,
            json!({"policy": "path \"a/+*\" { capabilities = [\"read\"] }"}),
        )
        .unwrap_err();
    assert_eq!(e.status, 400);
    assert!(e.errors[0].contains("'+*' is forbidden"), "{e:?}");
}

#[test]
fn ui_mount_preflight_needs_access_under_the_mount() {
    let k = kms();
    k.mount("secret", "kv");
    k.policy(
        "sysread",
        r#"path "sys/*" { capabilities = ["read", "list"] }"#,
    );
    k.policy("secr", r#"path "secret/foo" { capabilities = ["read"] }"#);
    let sysread = k.token(json!({"policies": ["sysread"]}));
    let secr = k.token(json!({"policies": ["secr"]}));
    let get = |t: &str, p: &str| k.call(Operation::Read, p, t, json!({}));
    let e = get(&sysread, "sys/internal/ui/mounts/secret").unwrap_err();
    assert!(
        e.errors[0].starts_with("preflight capability check returned 403"),
        "{e:?}"
    );
    get(&secr, "sys/internal/ui/mounts/secret/foo").unwrap();
    get(&secr, "sys/internal/ui/mounts/cubbyhole").unwrap();
    let list = get(&sysread, "sys/internal/ui/mounts")
        .unwrap()
        .data
        .unwrap();
    assert!(list["secret"].get("secret/").is_none(), "{list}");
    assert!(list["secret"].get("cubbyhole/").is_some(), "{list}");
    let list = get(&secr, "sys/internal/ui/mounts").unwrap().data.unwrap();
    assert!(list["secret"].get("secret/").is_some(), "{list}");
}

#[cfg(unix)]
#[test]
fn audit_devices_cannot_be_used_to_write_files() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let k = kms();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let e = k
        .call(
            Operation::Update,
            "sys/audit/f",
            &k.root,
            json!({"type": "file", "options": {"file_path": victim.to_str().unwrap()}}),
        )
        .unwrap_err();
    assert_eq!(
        e.errors,
        vec!["cannot enable audit device via API; use declarative, config-based audit device management instead"]
    );
    // with API creation allowed, a file of another mode, or a symlink, is still refused
    let k = kms_with(CoreOptions {
        max_request_size: 1 << 20,
        allow_api_audit_creation: true,
        ..Default::default()
    });
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    for target in [&victim, &link] {
        let e = k
            .call(
                Operation::Update,
                "sys/audit/f",
                &k.root,
                json!({"type": "file", "options": {"file_path": target.to_str().unwrap()}}),
            )
            .unwrap_err();
        assert_eq!(e.status, 400, "{target:?}: {e:?}");
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    // a declared device logs, and cannot be removed through the API
    let log = dir.path().join("audit.log");
    let declared = strongroom_kms::audit::DeviceConfig {
        path: "main/".into(),
        kind: "file".into(),
        description: String::new(),
        options: json!({"file_path": log.to_str().unwrap()})
            .as_object()
            .unwrap()
            .clone(),
        local: false,
    };
    let k = kms_with(CoreOptions {
        max_request_size: 1 << 20,
        audit_devices: vec![declared],
        ..Default::default()
    });
    k.root(Operation::Read, "sys/mounts", json!({}));
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("sys/mounts"));
    let e = k
        .call(Operation::Delete, "sys/audit/main", &k.root, json!({}))
        .unwrap_err();
    assert_eq!(e.status, 400);
    let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn five_failed_logins_lock_the_user_until_an_operator_unlocks() {
    let k = kms();
    k.enable_auth("userpass", "userpass");
    for u in ["lock", "other"] {
        k.root(
            Operation::Update,
            &format!("auth/userpass/users/{u}"),
            json!({"password": "right"}),
        );
    }
    let login = |u: &str, pw: &str| {
        k.call(
            Operation::Update,
            &format!("auth/userpass/login/{u}"),
            "",
            json!({ "password": pw }),
        )
    };
    for _ in 0..5 {
        assert_eq!(
            login("lock", "wrong").unwrap_err().errors,
            vec!["invalid username or password"]
        );
    }
    // locked: even the right password is refused, and the refusal costs no password hash
    assert_eq!(login("lock", "right").unwrap_err().status, 403);
    assert_eq!(
        login("LOCK", "right").unwrap_err().status,
        403,
        "names fold first"
    );
    login("other", "right").unwrap();
    let locked = k
        .root(Operation::Read, "sys/locked-users", json!({}))
        .data
        .unwrap();
    assert_eq!(locked["total"], 1);
    assert_eq!(
        locked["by_namespace"][0]["mount_accessors"][0]["alias_identifiers"],
        json!(["lock"])
    );
    let mounts = k.root(Operation::Read, "sys/auth", json!({})).data.unwrap();
    let acc = mounts["userpass/"]["accessor"]
        .as_str()
        .unwrap()
        .to_string();
    k.root(
        Operation::Update,
        &format!("sys/locked-users/{acc}/unlock/lock"),
        json!({}),
    );
    login("lock", "right").unwrap();
    // failures of names that do not exist lock nothing and are not remembered
    for _ in 0..6 {
        login("ghost", "x").unwrap_err();
    }
    assert_eq!(
        k.root(Operation::Read, "sys/locked-users", json!({}))
            .data
            .unwrap()["total"],
        0
    );
}
