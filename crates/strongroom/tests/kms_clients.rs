//! The key manager driven by independent clients — hvac (Python) and vaultrs (Rust) — with
//! the same scenario against real OpenBao and against `strongroom server`: init, unseal,
//! KV v1/v2, policies and denial, token lifecycle, userpass, seal, restart.

mod common;

use common::{Server, ServerKind, Storage};
use std::path::Path;
use std::process::Command;

fn hvac(server: &Server, state: &Path, phase: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/hvac_kms.py");
    let out = Command::new("python3")
        .arg(&script)
        .args([server.addr(), state.to_str().unwrap(), phase])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "hvac {phase} against {:?} failed:\n{}\n{}\n--- server log\n{}",
        server.kind,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.logs()
    );
    eprint!("{}", String::from_utf8_lossy(&out.stdout));
}

fn hvac_scenario(kind: ServerKind) {
    let mut server = Server::start(kind, Storage::Raft);
    let state = tempfile::NamedTempFile::new().unwrap();
    hvac(&server, state.path(), "before-restart");
    server.restart();
    hvac(&server, state.path(), "after-restart");
}

#[test]
fn hvac_against_openbao() {
    hvac_scenario(ServerKind::OpenBao);
}

#[test]
fn hvac_against_strongroom() {
    hvac_scenario(ServerKind::Strongroom);
}

mod vaultrs_scenario {
    use super::common::{Server, ServerKind, Storage};
    use std::collections::HashMap;
    use vaultrs::api::auth::userpass::requests::CreateUserRequest;
    use vaultrs::api::sys::requests::EnableEngineRequest;
    use vaultrs::api::token::requests::CreateTokenRequest;
    use vaultrs::client::{Client, VaultClient, VaultClientSettingsBuilder};
    use vaultrs::error::ClientError;

    fn client(addr: &str, token: Option<&str>) -> VaultClient {
        let mut b = VaultClientSettingsBuilder::default();
        b.address(addr);
        if let Some(t) = token {
            b.token(t);
        }
        VaultClient::new(b.build().unwrap()).unwrap()
    }

    fn code(e: ClientError) -> u16 {
        match e {
            ClientError::APIError { code, .. } => code,
            other => panic!("expected an API error, got {other:?}"),
        }
    }

    async fn wait_active(server: &Server) {
        for _ in 0..100 {
            if server.health_code() == Some(200) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        panic!("not active\n{}", server.logs());
    }

    async fn unseal(c: &VaultClient, keys: &[String]) {
        for (i, k) in keys.iter().enumerate() {
            let st = vaultrs::sys::unseal(c, Some(k.clone()), None, None)
                .await
                .unwrap();
            assert_eq!(st.sealed, i + 1 < keys.len());
        }
    }

    pub async fn run(kind: ServerKind) {
        let mut server = Server::start(kind, Storage::Raft);
        let addr = server.addr().to_string();
        let anon = client(&addr, None);
        let init = vaultrs::sys::start_initialization(&anon, 5, 3, None)
            .await
            .unwrap();
        assert_eq!(init.keys.len(), 5);
        unseal(&anon, &init.keys[1..4]).await;
        wait_active(&server).await;
        let mut root = client(&addr, None);
        root.set_token(&init.root_token);

        // KV v1 and v2
        vaultrs::sys::mount::enable(&root, "kv1", "kv", None)
            .await
            .unwrap();
        let mut opts = EnableEngineRequest::builder();
        opts.options(HashMap::from([("version".to_string(), "2".to_string())]));
        vaultrs::sys::mount::enable(&root, "kv2", "kv", Some(&mut opts))
            .await
            .unwrap();
        let v1 = HashMap::from([("pw", "vaultrs-v1")]);
        vaultrs::kv1::set(&root, "kv1", "app/cfg", &v1)
            .await
            .unwrap();
        let got: HashMap<String, String> =
            vaultrs::kv1::get(&root, "kv1", "app/cfg").await.unwrap();
        assert_eq!(got["pw"], "vaultrs-v1");
        assert_eq!(
            vaultrs::kv1::list(&root, "kv1", "app")
                .await
                .unwrap()
                .data
                .keys,
            vec!["cfg"]
        );
        vaultrs::kv1::delete(&root, "kv1", "app/cfg").await.unwrap();
        assert_eq!(
            code(
                vaultrs::kv1::get::<HashMap<String, String>>(&root, "kv1", "app/cfg")
                    .await
                    .unwrap_err()
            ),
            404
        );

        // OpenBao finishes a kv-v2 mount's upgrade asynchronously: retry the first write
        let mut first = Err(ClientError::ResponseEmptyError);
        for _ in 0..50 {
            first = vaultrs::kv2::set(&root, "kv2", "svc", &HashMap::from([("k", "a")])).await;
            if first.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        first.unwrap();
        vaultrs::kv2::set(&root, "kv2", "svc", &HashMap::from([("k", "b")]))
            .await
            .unwrap();
        let latest: HashMap<String, String> =
            vaultrs::kv2::read(&root, "kv2", "svc").await.unwrap();
        assert_eq!(latest["k"], "b");
        let old: HashMap<String, String> = vaultrs::kv2::read_version(&root, "kv2", "svc", 1)
            .await
            .unwrap();
        assert_eq!(old["k"], "a");
        vaultrs::kv2::delete_latest(&root, "kv2", "svc")
            .await
            .unwrap();
        assert!(
            vaultrs::kv2::read::<HashMap<String, String>>(&root, "kv2", "svc")
                .await
                .is_err()
        );
        vaultrs::kv2::undelete_versions(&root, "kv2", "svc", vec![2])
            .await
            .unwrap();
        vaultrs::kv2::destroy_versions(&root, "kv2", "svc", vec![1])
            .await
            .unwrap();
        let meta = vaultrs::kv2::read_metadata(&root, "kv2", "svc")
            .await
            .unwrap();
        assert_eq!(meta.current_version, 2);
        assert!(meta.versions["1"].destroyed);
        assert_eq!(
            vaultrs::kv2::list(&root, "kv2", "").await.unwrap(),
            vec!["svc"]
        );

        // policies, tokens and denial
        vaultrs::sys::policy::set(
            &root,
            "reader",
            "path \"kv1/pub/*\" {\n  capabilities = [\"read\", \"list\"]\n}\n",
        )
        .await
        .unwrap();
        assert!(vaultrs::sys::policy::list(&root)
            .await
            .unwrap()
            .policies
            .contains(&"reader".to_string()));
        vaultrs::kv1::set(&root, "kv1", "pub/x", &HashMap::from([("v", "1")]))
            .await
            .unwrap();
        vaultrs::kv1::set(&root, "kv1", "priv/x", &HashMap::from([("v", "2")]))
            .await
            .unwrap();
        let mut req = CreateTokenRequest::builder();
        req.policies(vec!["reader".to_string()]).ttl("1h");
        let tok = vaultrs::token::new(&root, Some(&mut req)).await.unwrap();
        assert_eq!(tok.policies, vec!["default", "reader"]);
        let reader = client(&addr, Some(&tok.client_token));
        let r: HashMap<String, String> = vaultrs::kv1::get(&reader, "kv1", "pub/x").await.unwrap();
        assert_eq!(r["v"], "1");
        assert_eq!(
            code(
                vaultrs::kv1::get::<HashMap<String, String>>(&reader, "kv1", "priv/x")
                    .await
                    .unwrap_err()
            ),
            403
        );
        assert_eq!(
            code(
                vaultrs::kv1::set(&reader, "kv1", "pub/y", &HashMap::from([("v", "3")]))
                    .await
                    .unwrap_err()
            ),
            403
        );
        let me = vaultrs::token::lookup_self(&reader).await.unwrap();
        assert_eq!(me.policies, vec!["default", "reader"]);
        assert!(me.ttl <= 3600 && me.ttl > 3000);
        let renewed = vaultrs::token::renew_self(&reader, Some("10m"))
            .await
            .unwrap();
        assert!(renewed.lease_duration <= 600);
        let by_acc = vaultrs::token::lookup_accessor(&root, &tok.accessor)
            .await
            .unwrap();
        assert_eq!(by_acc.policies, vec!["default", "reader"]);
        vaultrs::token::revoke_accessor(&root, &tok.accessor)
            .await
            .unwrap();
        assert_eq!(
            code(vaultrs::token::lookup_self(&reader).await.unwrap_err()),
            403
        );

        // userpass
        vaultrs::sys::auth::enable(&root, "userpass", "userpass", None)
            .await
            .unwrap();
        let mut u = CreateUserRequest::builder();
        u.token_policies(vec!["reader".to_string()]);
        vaultrs::auth::userpass::user::set(
            &root,
            "userpass",
            "bob",
            "bob-pw-vaultrs",
            Some(&mut u),
        )
        .await
        .unwrap();
        let login = vaultrs::auth::userpass::login(&anon, "userpass", "bob", "bob-pw-vaultrs")
            .await
            .unwrap();
        assert_eq!(login.policies, vec!["default", "reader"]);
        assert_eq!(
            code(
                vaultrs::auth::userpass::login(&anon, "userpass", "bob", "nope")
                    .await
                    .unwrap_err()
            ),
            400
        );

        // seal, restart, unseal
        vaultrs::sys::seal(&root).await.unwrap();
        assert_eq!(
            code(
                vaultrs::kv1::get::<HashMap<String, String>>(&root, "kv1", "pub/x")
                    .await
                    .unwrap_err()
            ),
            503
        );
        server.restart();
        let anon = client(&addr, None);
        unseal(
            &anon,
            &[
                init.keys[0].clone(),
                init.keys[4].clone(),
                init.keys[2].clone(),
            ],
        )
        .await;
        wait_active(&server).await;
        let r: HashMap<String, String> = vaultrs::kv1::get(&root, "kv1", "pub/x").await.unwrap();
        assert_eq!(r["v"], "1");
        let login = vaultrs::auth::userpass::login(&anon, "userpass", "bob", "bob-pw-vaultrs")
            .await
            .unwrap();
        assert_eq!(login.metadata.unwrap()["username"], "bob");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vaultrs_against_openbao() {
    vaultrs_scenario::run(ServerKind::OpenBao).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vaultrs_against_strongroom() {
    vaultrs_scenario::run(ServerKind::Strongroom).await;
}
