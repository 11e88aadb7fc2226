//! Batch tokens, response wrapping and the identity mount as real clients see them: the same
//! hvac + `bao` CLI script (tests/clients/hvac_features.py) against the real OpenBao and
//! against `strongroom server`, outputs normalized (random ids and times by their shape) and
//! required to be equal.

mod common;

use common::{Server, ServerKind};
use std::path::Path;
use std::process::Command;

fn features(server: &Server) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/hvac_features.py");
    let out = Command::new("python3")
        .arg(&script)
        .args([server.addr(), "root"])
        .env("STRONGROOM_BAO_BIN", common::bao_bin())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "hvac_features against {:?} failed:\n{}\n{}\n--- server log\n{}",
        server.kind,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.logs()
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn hvac_and_the_bao_cli_see_no_difference() {
    let bao = Server::start_dev(ServerKind::OpenBao, "root");
    let ours = Server::start_dev(ServerKind::Strongroom, "root");
    let (theirs, mine) = (features(&bao), features(&ours));
    let a: serde_json::Value = serde_json::from_str(&theirs).unwrap();
    let b: serde_json::Value = serde_json::from_str(&mine).unwrap();
    let keys = a.as_object().unwrap().keys();
    let differing: Vec<String> = keys
        .filter(|k| a[k.as_str()] != b[k.as_str()])
        .map(|k| {
            format!(
                "{k}:\n  openbao:    {}\n  strongroom: {}",
                a[k.as_str()],
                b[k.as_str()]
            )
        })
        .collect();
    assert!(differing.is_empty(), "{}", differing.join("\n"));
    assert_eq!(a.as_object().unwrap().len(), b.as_object().unwrap().len());
    assert!(
        a.as_object().unwrap().len() >= 30,
        "the script ran every step"
    );
}

/// vaultrs (Rust) on the same features: a wrapped KV read unwrapped through `WrappedResponse`,
/// a wrapping lookup, entities created and read by name and id, a login's entity. Returns
/// what it saw, normalized, for comparison between the servers.
async fn vaultrs_features(server: &Server) -> Vec<String> {
    use std::collections::HashMap;
    use vaultrs::api::identity::entity::requests::CreateEntityByNameRequest;
    use vaultrs::api::kv1::requests::GetSecretRequest;
    use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
    let mut b = VaultClientSettingsBuilder::default();
    b.address(server.addr()).token("root");
    let c = VaultClient::new(b.build().unwrap()).unwrap();
    let mut seen = vec![];
    vaultrs::sys::mount::enable(&c, "vrs", "kv", None)
        .await
        .unwrap();
    let data: HashMap<&str, &str> = [("v", "vaultrs-wrapped")].into();
    vaultrs::kv1::set(&c, "vrs", "a", &data).await.unwrap();
    let ep = GetSecretRequest::builder()
        .mount("vrs")
        .path("a")
        .build()
        .unwrap();
    let wrapped = vaultrs::api::wrap(&c, ep).await.unwrap();
    let info = wrapped.lookup(&c).await.unwrap();
    seen.push(format!(
        "lookup {} ttl {}",
        info.creation_path, info.creation_ttl
    ));
    // vaultrs' typed unwrap expects kv1's `{data}` nesting; read the raw answer instead
    let token = wrapped.info.token.clone();
    let back: serde_json::Value = vaultrs::sys::wrapping::unwrap(&c, Some(&token))
        .await
        .unwrap();
    seen.push(format!("unwrapped {}", back["v"]));
    let again = vaultrs::sys::wrapping::unwrap::<serde_json::Value>(&c, Some(&token)).await;
    seen.push(format!("second unwrap {}", again.is_err()));
    let mut req = CreateEntityByNameRequest::builder();
    req.policies(vec!["fp".to_string()]);
    vaultrs::identity::entity::create_or_update_by_name(&c, "vrs-alice", Some(&mut req))
        .await
        .unwrap();
    let e = vaultrs::identity::entity::read_by_name(&c, "vrs-alice")
        .await
        .unwrap();
    seen.push(format!(
        "entity {} {:?} aliases {}",
        e.name,
        e.policies,
        e.aliases.len()
    ));
    let by_id = vaultrs::identity::entity::read_by_id(&c, &e.id)
        .await
        .unwrap();
    seen.push(format!("by id same name {}", by_id.name == e.name));
    let missing = vaultrs::identity::entity::read_by_name(&c, "nobody").await;
    seen.push(format!("missing is error {}", missing.is_err()));
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vaultrs_sees_no_difference() {
    let bao = Server::start_dev(ServerKind::OpenBao, "root");
    let ours = Server::start_dev(ServerKind::Strongroom, "root");
    let theirs = vaultrs_features(&bao).await;
    let mine = vaultrs_features(&ours).await;
    assert_eq!(theirs, mine);
    assert!(
        theirs.iter().any(|l| l.contains("vaultrs-wrapped")),
        "{theirs:?}"
    );
}
