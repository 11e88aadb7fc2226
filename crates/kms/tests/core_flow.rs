//! The key manager's core driven through its request pipeline (no HTTP): seal/unseal across
//! restarts on the on-disk store, secrets never on disk in the clear, token lifecycle, ACL
//! decisions and the audit trail.

use serde_json::{json, Map, Value};
use std::sync::Arc;
use strongroom_kms::core::{Core, CoreOptions, Incoming};
use strongroom_kms::request::{ApiError, Operation, Response};
use strongroom_kms::storage::{RedbStorage, Storage};

fn open(dir: &std::path::Path) -> Arc<Core> {
    let st: Arc<dyn Storage> = Arc::new(RedbStorage::open(dir, "raft").unwrap());
    Core::new(
        st,
        CoreOptions {
            max_request_size: 1 << 20,
            // these tests enable devices through the API (sudo checks, HMACs)
            allow_api_audit_creation: true,
            ..Default::default()
        },
    )
}

fn call(
    core: &Core,
    op: Operation,
    path: &str,
    token: &str,
    data: Value,
) -> Result<Response, ApiError> {
    let data: Map<String, Value> = match data {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    core.handle(Incoming {
        op,
        path: path.into(),
        data,
        token: Some(zeroize::Zeroizing::new(token.to_string())),
        content_type: None,
        remote_addr: "127.0.0.1".into(),
        wrap_ttl: None,
    })
}

fn ok(r: Result<Response, ApiError>) -> Response {
    r.unwrap_or_else(|e| panic!("request failed: {e:?}"))
}

struct Init {
    keys: Vec<String>,
    root: String,
}

fn init(core: &Core) -> Init {
    let out = core
        .init(
            json!({"secret_shares": 5, "secret_threshold": 3})
                .as_object()
                .unwrap(),
        )
        .unwrap();
    let keys = out["keys_base64"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    Init {
        keys,
        root: out["root_token"].as_str().unwrap().to_string(),
    }
}

fn unseal(core: &Core, keys: &[&String]) {
    for k in keys {
        core.unseal(json!({"key": k}).as_object().unwrap()).unwrap();
    }
}

fn all_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            out.extend(std::fs::read(&p).unwrap());
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn restart_keeps_data_starts_sealed_and_storage_holds_no_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let secret_value = "kv-secret-7d1f0c8e93a24b55";
    let user_password = "pw-91c3a7e0f2b84d66";
    let (init_out, child_token) = {
        let core = open(dir.path());
        let i = init(&core);
        assert_eq!(core.seal_status().unwrap()["sealed"], true);
        unseal(&core, &[&i.keys[0], &i.keys[3], &i.keys[4]]);
        ok(call(
            &core,
            Operation::Update,
            "sys/mounts/kv",
            &i.root,
            json!({"type": "kv"}),
        ));
        ok(call(
            &core,
            Operation::Update,
            "sys/mounts/kv2",
            &i.root,
            json!({"type": "kv-v2"}),
        ));
        ok(call(
            &core,
            Operation::Update,
            "kv/app",
            &i.root,
            json!({"password": secret_value}),
        ));
        ok(call(
            &core,
            Operation::Update,
            "kv2/data/app",
            &i.root,
            json!({"data": {"password": secret_value}}),
        ));
        ok(call(
            &core,
            Operation::Update,
            "sys/auth/userpass",
            &i.root,
            json!({"type": "userpass"}),
        ));
        ok(call(
            &core,
            Operation::Update,
            "auth/userpass/users/alice",
            &i.root,
            json!({"password": user_password, "policies": "p1"}),
        ));
        let t = ok(call(
            &core,
            Operation::Update,
            "auth/token/create",
            &i.root,
            json!({"policies": ["default"]}),
        ));
        let child = t.auth.unwrap()["client_token"]
            .as_str()
            .unwrap()
            .to_string();
        (i, child)
    };
    // the process is gone: a new core over the same directory starts sealed
    let core = open(dir.path());
    let st = core.seal_status().unwrap();
    assert_eq!(st["sealed"], true);
    assert_eq!(st["initialized"], true);
    assert_eq!(
        call(&core, Operation::Read, "kv/app", &init_out.root, json!({}))
            .unwrap_err()
            .status,
        503
    );
    unseal(
        &core,
        &[&init_out.keys[1], &init_out.keys[2], &init_out.keys[0]],
    );
    let r = ok(call(
        &core,
        Operation::Read,
        "kv/app",
        &init_out.root,
        json!({}),
    ));
    assert_eq!(r.data.unwrap()["password"], secret_value);
    let r = ok(call(
        &core,
        Operation::Read,
        "kv2/data/app",
        &init_out.root,
        json!({}),
    ));
    assert_eq!(r.data.unwrap()["data"]["password"], secret_value);
    ok(call(
        &core,
        Operation::Read,
        "auth/token/lookup-self",
        &child_token,
        json!({}),
    ));
    drop(core);

    let bytes = all_bytes(dir.path());
    assert!(!bytes.is_empty());
    for needle in [
        secret_value.as_bytes(),
        user_password.as_bytes(),
        init_out.root.as_bytes(),
        child_token.as_bytes(),
        &init_out.root.as_bytes()[2..],
    ] {
        assert!(
            !contains(&bytes, needle),
            "found {:?} in the storage directory",
            String::from_utf8_lossy(needle)
        );
    }
    use base64::Engine;
    for k in &init_out.keys {
        let raw = base64::engine::general_purpose::STANDARD.decode(k).unwrap();
        assert!(!contains(&bytes, &raw[..32]), "an unseal share is on disk");
        assert!(!contains(&bytes, k.as_bytes()));
    }
}

#[test]
fn tokens_children_revocation_expiry_and_use_limits() {
    let dir = tempfile::tempdir().unwrap();
    let core = open(dir.path());
    let i = init(&core);
    unseal(&core, &[&i.keys[0], &i.keys[1], &i.keys[2]]);
    let create = |tok: &str, body: Value| {
        let r = ok(call(
            &core,
            Operation::Update,
            "auth/token/create",
            tok,
            body,
        ));
        r.auth.unwrap()
    };
    // the default policy does not let a token mint children; this one does
    ok(call(
        &core,
        Operation::Update,
        "sys/policies/acl/minter",
        &i.root,
        json!({"policy": "path \"auth/token/create\" { capabilities = [\"update\"] }"}),
    ));
    let parent = create(&i.root, json!({"policies": ["minter"], "ttl": "1h"}));
    let p = parent["client_token"].as_str().unwrap().to_string();
    assert_eq!(parent["lease_duration"], 3600);
    let child = create(&p, json!({}));
    let c = child["client_token"].as_str().unwrap().to_string();
    // a non-root parent cannot grant policies it does not have
    let e = call(
        &core,
        Operation::Update,
        "auth/token/create",
        &p,
        json!({"policies": ["admin"]}),
    )
    .unwrap_err();
    assert_eq!(e.status, 400);
    // revoking the parent revokes the child
    ok(call(
        &core,
        Operation::Update,
        "auth/token/revoke",
        &i.root,
        json!({"token": p}),
    ));
    assert_eq!(
        call(
            &core,
            Operation::Read,
            "auth/token/lookup-self",
            &c,
            json!({})
        )
        .unwrap_err(),
        ApiError::permission_denied()
    );
    // orphan revocation keeps children
    let a = create(&i.root, json!({"policies": ["minter"]}));
    let at = a["client_token"].as_str().unwrap().to_string();
    let b = create(&at, json!({}));
    let bt = b["client_token"].as_str().unwrap().to_string();
    ok(call(
        &core,
        Operation::Update,
        "auth/token/revoke-orphan",
        &i.root,
        json!({"token": at}),
    ));
    let r = ok(call(
        &core,
        Operation::Read,
        "auth/token/lookup-self",
        &bt,
        json!({}),
    ));
    assert_eq!(r.data.unwrap()["orphan"], true);
    // expiry
    let short = create(&i.root, json!({"ttl": "1s"}));
    let st = short["client_token"].as_str().unwrap().to_string();
    ok(call(
        &core,
        Operation::Read,
        "auth/token/lookup-self",
        &st,
        json!({}),
    ));
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(
        call(
            &core,
            Operation::Read,
            "auth/token/lookup-self",
            &st,
            json!({})
        )
        .unwrap_err(),
        ApiError::permission_denied()
    );
    // use limits: two uses then gone
    let lim = create(&i.root, json!({"num_uses": 2}));
    let lt = lim["client_token"].as_str().unwrap().to_string();
    ok(call(
        &core,
        Operation::Read,
        "auth/token/lookup-self",
        &lt,
        json!({}),
    ));
    ok(call(
        &core,
        Operation::Read,
        "auth/token/lookup-self",
        &lt,
        json!({}),
    ));
    assert_eq!(
        call(
            &core,
            Operation::Read,
            "auth/token/lookup-self",
            &lt,
            json!({})
        )
        .unwrap_err()
        .status,
        403
    );
    // accessor lookup and revoke
    let acc = create(&i.root, json!({}));
    let accessor = acc["accessor"].as_str().unwrap();
    let r = ok(call(
        &core,
        Operation::Update,
        "auth/token/lookup-accessor",
        &i.root,
        json!({"accessor": accessor}),
    ));
    assert_eq!(r.data.unwrap()["id"], "");
    ok(call(
        &core,
        Operation::Update,
        "auth/token/revoke-accessor",
        &i.root,
        json!({"accessor": accessor}),
    ));
    let t = acc["client_token"].as_str().unwrap();
    assert_eq!(
        call(
            &core,
            Operation::Read,
            "auth/token/lookup-self",
            t,
            json!({})
        )
        .unwrap_err()
        .status,
        403
    );
    // invalid TTL is a 400, not a panic
    let e = call(
        &core,
        Operation::Update,
        "auth/token/create",
        &i.root,
        json!({"ttl": "forever"}),
    )
    .unwrap_err();
    assert_eq!(e.status, 400);
    // root renew: invalid lease ID
    let e = call(
        &core,
        Operation::Update,
        "auth/token/renew-self",
        &i.root,
        json!({}),
    )
    .unwrap_err();
    assert_eq!(e.errors, vec!["invalid lease ID"]);
}

#[test]
fn policies_deny_by_default_and_follow_precedence() {
    let dir = tempfile::tempdir().unwrap();
    let core = open(dir.path());
    let i = init(&core);
    unseal(&core, &[&i.keys[0], &i.keys[1], &i.keys[2]]);
    ok(call(
        &core,
        Operation::Update,
        "sys/mounts/kv",
        &i.root,
        json!({"type": "kv"}),
    ));
    let policy = r#"
path "kv/team/*" { capabilities = ["create", "read", "update", "list"] }
path "kv/team/admin" { capabilities = ["deny"] }
path "kv/+/shared" { capabilities = ["read"] }
"#;
    ok(call(
        &core,
        Operation::Update,
        "sys/policies/acl/team",
        &i.root,
        json!({"policy": policy}),
    ));
    let e = call(
        &core,
        Operation::Update,
        "sys/policies/acl/bad",
        &i.root,
        json!({"policy": "path \"x\" { capabilities = [\"bogus\"] }"}),
    )
    .unwrap_err();
    assert_eq!(
        e.errors,
        vec!["failed to parse policy: path \"x\": path \"x\": invalid capability \"bogus\""]
    );
    let e = call(
        &core,
        Operation::Update,
        "sys/policies/acl/bad",
        &i.root,
        json!({"policy": "path \"x\" {"}),
    )
    .unwrap_err();
    assert_eq!(e.status, 400);
    let e = call(
        &core,
        Operation::Delete,
        "sys/policies/acl/root",
        &i.root,
        json!({}),
    )
    .unwrap_err();
    assert_eq!(e.errors, vec!["cannot delete \"root\" policy"]);
    let t = ok(call(
        &core,
        Operation::Update,
        "auth/token/create",
        &i.root,
        json!({"policies": "team"}),
    ));
    let t = t.auth.unwrap()["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    ok(call(
        &core,
        Operation::Update,
        "kv/team/a",
        &t,
        json!({"v": "1"}),
    ));
    ok(call(&core, Operation::Read, "kv/team/a", &t, json!({})));
    ok(call(&core, Operation::List, "kv/team", &t, json!({})));
    assert_eq!(
        call(&core, Operation::Delete, "kv/team/a", &t, json!({})).unwrap_err(),
        ApiError::acl_denied()
    );
    assert_eq!(
        call(
            &core,
            Operation::Update,
            "kv/team/admin",
            &t,
            json!({"v": "1"})
        )
        .unwrap_err(),
        ApiError::acl_denied()
    );
    assert_eq!(
        call(&core, Operation::Read, "kv/other", &t, json!({})).unwrap_err(),
        ApiError::acl_denied()
    );
    // `+` grants read on kv/x/shared but not below it
    ok(call(
        &core,
        Operation::Update,
        "kv/x/shared",
        &i.root,
        json!({"v": "2"}),
    ));
    ok(call(&core, Operation::Read, "kv/x/shared", &t, json!({})));
    assert_eq!(
        call(&core, Operation::Read, "kv/x/shared/deeper", &t, json!({})).unwrap_err(),
        ApiError::acl_denied()
    );
    // unmounted path: limited token gets the ACL 403, root gets the 404
    assert_eq!(
        call(&core, Operation::Read, "nosuch/x", &t, json!({})).unwrap_err(),
        ApiError::acl_denied()
    );
    let e = call(&core, Operation::Read, "nosuch/x", &i.root, json!({})).unwrap_err();
    assert_eq!(
        e.errors,
        vec!["no handler for route \"nosuch/x\". route entry not found."]
    );
    // capabilities endpoint
    let r = ok(call(
        &core,
        Operation::Update,
        "sys/capabilities-self",
        &t,
        json!({"path": "kv/team/b"}),
    ));
    assert_eq!(
        r.data.unwrap()["capabilities"],
        json!(["create", "list", "read", "update"])
    );
    let r = ok(call(
        &core,
        Operation::Update,
        "sys/capabilities",
        &i.root,
        json!({"path": "kv/team/admin", "token": t}),
    ));
    assert_eq!(r.data.unwrap()["kv/team/admin"], json!(["deny"]));
    // root-protected paths need sudo on top of the operation's capability
    let dir2 = tempfile::tempdir().unwrap();
    let log = dir2.path().join("a.log");
    let audit_body = json!({"type": "file", "options": {"file_path": log.to_str().unwrap()}});
    for (name, caps) in [
        ("nosudo", r#"["update"]"#),
        ("withsudo", r#"["update", "sudo"]"#),
    ] {
        let text = format!("path \"sys/audit/*\" {{ capabilities = {caps} }}");
        ok(call(
            &core,
            Operation::Update,
            &format!("sys/policies/acl/{name}"),
            &i.root,
            json!({"policy": text}),
        ));
    }
    let mk = |p: &str| {
        let r = ok(call(
            &core,
            Operation::Update,
            "auth/token/create",
            &i.root,
            json!({"policies": p}),
        ));
        r.auth.unwrap()["client_token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (nosudo, withsudo) = (mk("nosudo"), mk("withsudo"));
    assert_eq!(
        call(
            &core,
            Operation::Update,
            "sys/audit/f",
            &nosudo,
            audit_body.clone()
        )
        .unwrap_err(),
        ApiError::acl_denied()
    );
    ok(call(
        &core,
        Operation::Update,
        "sys/audit/f",
        &withsudo,
        audit_body,
    ));
    // unknown sys path / op
    assert_eq!(
        call(&core, Operation::Read, "sys/bogus", &i.root, json!({})).unwrap_err(),
        ApiError::unsupported_path()
    );
    assert_eq!(
        call(&core, Operation::Delete, "sys/mounts", &i.root, json!({})).unwrap_err(),
        ApiError::unsupported_operation()
    );
}

#[test]
fn audit_log_hmacs_secrets_and_requests_fail_when_it_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let core = open(dir.path());
    let i = init(&core);
    unseal(&core, &[&i.keys[0], &i.keys[1], &i.keys[2]]);
    let log = dir.path().join("audit.log");
    ok(call(
        &core,
        Operation::Update,
        "sys/audit/file",
        &i.root,
        json!({"type": "file", "options": {"file_path": log.to_str().unwrap()}}),
    ));
    ok(call(
        &core,
        Operation::Update,
        "sys/mounts/kv",
        &i.root,
        json!({"type": "kv"}),
    ));
    ok(call(
        &core,
        Operation::Update,
        "kv/x",
        &i.root,
        json!({"secret": "audit-canary-5521"}),
    ));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines().count() >= 4,
        "request and response lines: {text}"
    );
    assert!(
        !text.contains("audit-canary-5521"),
        "secret value in audit log"
    );
    assert!(!text.contains(&i.root), "token in audit log");
    let r = ok(call(
        &core,
        Operation::Update,
        "sys/audit-hash/file",
        &i.root,
        json!({"input": "audit-canary-5521"}),
    ));
    let h = r.data.unwrap()["hash"].as_str().unwrap().to_string();
    assert!(h.starts_with("hmac-sha256:"));
    assert!(text.contains(&h), "audit-hash matches the logged HMAC");
    let read = ok(call(&core, Operation::Read, "kv/x", &i.root, json!({})));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !read.request_id.is_empty() && text.contains(&read.request_id),
        "the envelope's request_id is the audit id"
    );
    let listed = ok(call(
        &core,
        Operation::Read,
        "sys/audit",
        &i.root,
        json!({}),
    ));
    assert!(listed.data.unwrap().get("file/").is_some());

    // transit answers are written as JSON text (no value tree): audited all the same, with
    // their strings HMAC'd
    ok(call(
        &core,
        Operation::Update,
        "sys/mounts/transit",
        &i.root,
        json!({"type": "transit"}),
    ));
    let pt = "dHJhbnNpdC1jYW5hcnktNzczMQ=="; // "transit-canary-7731"
    let enc = ok(call(
        &core,
        Operation::Update,
        "transit/encrypt/k",
        &i.root,
        json!({"batch_input": [{"plaintext": pt, "reference": "r1"}]}),
    ));
    let enc = enc.data_value().unwrap().into_owned();
    let ct = enc["batch_results"][0]["ciphertext"].as_str().unwrap();
    ok(call(
        &core,
        Operation::Update,
        "transit/decrypt/k",
        &i.root,
        json!({"ciphertext": ct}),
    ));
    let hashed = |s: &str| {
        let r = ok(call(
            &core,
            Operation::Update,
            "sys/audit-hash/file",
            &i.root,
            json!({ "input": s }),
        ));
        r.data.unwrap()["hash"].as_str().unwrap().to_string()
    };
    let (h_pt, h_ct, h_ref) = (hashed(pt), hashed(ct), hashed("r1"));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(pt), "plaintext in audit log");
    let response = |path: &str| -> Value {
        text.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|v| v["type"] == "response" && v["request"]["path"] == path)
            .unwrap_or_else(|| panic!("no response line for {path}"))
    };
    assert_eq!(
        response("transit/encrypt/k")["response"]["data"],
        json!({"batch_results": [{"ciphertext": h_ct, "key_version": 1, "reference": h_ref}]})
    );
    assert_eq!(
        response("transit/decrypt/k")["response"]["data"],
        json!({ "plaintext": h_pt })
    );

    // a device that cannot write: requests fail rather than go unaudited
    if !nix_root() {
        eprintln!("skip: the full-disk audit check needs root to mount a tmpfs");
        return;
    }
    let mnt = dir.path().join("tiny");
    std::fs::create_dir(&mnt).unwrap();
    let st = std::process::Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=64k",
            "tmpfs",
            mnt.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(st.success(), "mount tmpfs");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ok(call(
            &core,
            Operation::Delete,
            "sys/audit/file",
            &i.root,
            json!({}),
        ));
        let full_log = mnt.join("audit.log");
        ok(call(
            &core,
            Operation::Update,
            "sys/audit/full",
            &i.root,
            json!({"type": "file", "options": {"file_path": full_log.to_str().unwrap()}}),
        ));
        // fill the filesystem
        let _ = std::fs::write(mnt.join("filler"), vec![0u8; 256 * 1024]);
        // the log's last page may still have room: the first refusal comes within a few lines
        let refused = (0..200).any(|_| {
            call(&core, Operation::Read, "kv/x", &i.root, json!({})).is_err_and(|e| e.status == 500)
        });
        assert!(refused, "a full audit device must make requests fail");
        let e = call(
            &core,
            Operation::Update,
            "kv/never",
            &i.root,
            json!({"v": "1"}),
        )
        .unwrap_err();
        assert_eq!(e.status, 500, "{e:?}");
        let _ = std::fs::remove_file(mnt.join("filler"));
        ok(call(&core, Operation::Read, "kv/x", &i.root, json!({})));
        // the refused write was never executed
        assert_eq!(
            call(&core, Operation::Read, "kv/never", &i.root, json!({}))
                .unwrap_err()
                .status,
            404
        );
    }));
    let _ = std::process::Command::new("umount").arg(&mnt).status();
    result.unwrap();
}

fn nix_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
