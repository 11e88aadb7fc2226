//! The seed operator flow (the article's Vault setup, as in `conformance_cli.sh`): init 5/3,
//! unseal, login, userpass, a kv mount `ocs`, the `ocs` policy, a token limited to it, and
//! what that token may and may not do. Driven by a real CLI against a real server.
//!
//! Combinations: our CLI against OpenBao (our CLI's conformance), the `bao` CLI against
//! OpenBao (the reference: proves the flow and its expectations are right). Server-side
//! combinations (`ServerKind::Strongroom`) are added when `strongroom server` lands.

mod common;

use common::{Cli, CliKind, Server, ServerKind, Storage};
use serde_json::json;
use std::time::Duration;

const OCS_POLICY: &str = r#"path "ocs/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}
path "sys/mounts" {
  capabilities = ["read"]
}
"#;

fn seed_flow(server_kind: ServerKind, cli_kind: CliKind) {
    let server = Server::start(server_kind, Storage::Inmem);
    let addr = server.addr().to_owned();
    let cli = Cli::new(cli_kind, &addr);

    // ------------------------------------------------------------ uninitialized
    assert_eq!(server.health_code(), Some(501), "sys/health uninitialized");
    cli.run(&["status"])
        .expect_code(2, "status on an uninitialized server");
    cli.run(&["operator", "init", "-status"])
        .expect_code(2, "init -status before init")
        .expect_stdout("not initialized", "init -status text");

    // ------------------------------------------------------------ init
    let init = cli.run(&["operator", "init", "-key-shares=5", "-key-threshold=3"]);
    init.expect_code(0, "operator init 5/3");
    let keys: Vec<String> = init
        .stdout
        .lines()
        .filter(|l| l.starts_with("Unseal Key "))
        .filter_map(|l| l.split_once(": ").map(|(_, k)| k.trim().to_owned()))
        .collect();
    assert_eq!(keys.len(), 5, "five unseal keys printed:\n{}", init.stdout);
    let root = init
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Initial Root Token: "))
        .map(|t| t.trim().to_owned())
        .unwrap_or_else(|| panic!("no root token in:\n{}", init.stdout));
    assert!(!root.is_empty());
    init.expect_stdout("key threshold of 3", "init text mentions the threshold");
    cli.run(&["operator", "init"])
        .expect_code(2, "second init")
        .expect_stderr("already initialized", "second init error");

    // ------------------------------------------------------------ sealed
    assert_eq!(server.health_code(), Some(503), "sys/health sealed");
    let st = cli.run(&["status", "-format=json"]);
    st.expect_code(2, "status while sealed");
    let j = st.json();
    assert_eq!(
        (
            j["sealed"].clone(),
            j["t"].clone(),
            j["n"].clone(),
            j["progress"].clone()
        ),
        (json!(true), json!(3), json!(5), json!(0)),
        "{j}"
    );
    let (code, body) = server
        .http("GET", "sys/mounts", Some(&root), None)
        .expect("raw request");
    assert_eq!(code, 503, "request while sealed: {body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["errors"],
        json!(["Vault is sealed"])
    );

    // ------------------------------------------------------------ unseal
    for (i, key) in keys.iter().take(3).enumerate() {
        let o = cli.run(&["operator", "unseal", "-format=json", key]);
        o.expect_code(0, &format!("unseal {}/3", i + 1));
        let j = o.json();
        if i < 2 {
            assert_eq!(
                (j["sealed"].clone(), j["progress"].clone(), j["t"].clone()),
                (json!(true), json!(i + 1), json!(3)),
                "progress after key {}: {j}",
                i + 1
            );
        } else {
            assert_eq!(
                (j["sealed"].clone(), j["progress"].clone()),
                (json!(false), json!(0)),
                "unsealed after 3 keys: {j}"
            );
        }
    }
    assert!(
        server.wait_health(&[200], Duration::from_secs(60)),
        "server active after unseal"
    );
    let st = cli.run(&["status", "-format=json"]);
    st.expect_code(0, "status unsealed");
    assert_eq!(
        (
            st.json()["sealed"].clone(),
            st.json()["initialized"].clone()
        ),
        (json!(false), json!(true))
    );
    cli.run(&["status"])
        .expect_code(0, "status table")
        .expect_stdout("Sealed", "status table has Sealed row");
    let (code, body) = server.http("GET", "sys/mounts", None, None).unwrap();
    assert_eq!(
        (
            code,
            serde_json::from_str::<serde_json::Value>(&body).unwrap()["errors"].clone()
        ),
        (403, json!(["permission denied"]))
    );

    // ------------------------------------------------------------ login + setup as root
    cli.run(&["login", &root]).expect_code(0, "login <root>");
    let stored = std::fs::read_to_string(cli.home().join(".vault-token"))
        .expect("~/.vault-token after login");
    assert_eq!(
        stored.trim(),
        root,
        "token helper file holds the root token"
    );
    let o = cli.run(&["token", "lookup", "-format=json"]);
    o.expect_code(0, "token lookup via the token helper");
    assert_eq!(
        (
            o.json()["data"]["policies"].clone(),
            o.json()["data"]["ttl"].clone()
        ),
        (json!(["root"]), json!(0))
    );

    cli.run(&["auth", "enable", "userpass"])
        .expect_code(0, "auth enable userpass");
    let o = cli.run(&["auth", "list", "-format=json"]);
    o.expect_code(0, "auth list");
    assert_eq!(
        (
            o.json()["userpass/"]["type"].clone(),
            o.json()["token/"]["type"].clone()
        ),
        (json!("userpass"), json!("token"))
    );
    cli.run(&[
        "write",
        "auth/userpass/users/vaultuser",
        "password=pass321",
        "policies=admins",
    ])
    .expect_code(0, "write userpass user");
    let o = cli.run(&["read", "-format=json", "auth/userpass/users/vaultuser"]);
    o.expect_code(0, "read userpass user");
    assert_eq!(o.json()["data"]["token_policies"], json!(["admins"]));

    cli.run(&["secrets", "enable", "-path=ocs", "kv"])
        .expect_code(0, "secrets enable -path=ocs kv");
    let o = cli.run(&["secrets", "list", "-format=json"]);
    o.expect_code(0, "secrets list");
    let ocs = &o.json()["ocs/"];
    assert_eq!(ocs["type"], json!("kv"));
    assert!(
        ocs["options"].is_null() || ocs["options"]["version"] == json!("1"),
        "ocs/ is kv v1: {ocs}"
    );

    let policy_file = cli.home().join("ocs.hcl");
    std::fs::write(&policy_file, OCS_POLICY).unwrap();
    cli.run(&["policy", "write", "ocs", policy_file.to_str().unwrap()])
        .expect_code(0, "policy write ocs FILE");
    cli.run_stdin(&["policy", "write", "ocs", "-"], Some(OCS_POLICY))
        .expect_code(0, "policy write ocs - (stdin)");
    let o = cli.run(&["policy", "read", "ocs"]);
    o.expect_code(0, "policy read ocs");
    assert_eq!(
        o.stdout.trim_end(),
        OCS_POLICY.trim_end(),
        "policy text round-trips verbatim"
    );
    let o = cli.run(&["policy", "list", "-format=json"]);
    o.expect_code(0, "policy list");
    for p in ["ocs", "default", "root"] {
        assert!(
            o.json().as_array().unwrap().contains(&json!(p)),
            "policy list has {p}: {}",
            o.stdout
        );
    }
    let o = cli.run(&["token", "create", "-policy=ocs", "-format", "json"]);
    o.expect_code(0, "token create -policy=ocs");
    let auth = o.json()["auth"].clone();
    assert_eq!(
        (auth["policies"].clone(), auth["renewable"].clone()),
        (json!(["default", "ocs"]), json!(true)),
        "{auth}"
    );
    let ocs_token = auth["client_token"].as_str().unwrap().to_owned();
    assert!(!ocs_token.is_empty());

    // ------------------------------------------------------------ as the ocs token
    let t = cli.with_token(&ocs_token);
    t.run(&["kv", "put", "ocs/mykey", "value=secret1"])
        .expect_code(0, "[ocs] kv put");
    let o = t.run(&["kv", "get", "-format=json", "ocs/mykey"]);
    o.expect_code(0, "[ocs] kv get");
    assert_eq!(o.json()["data"]["value"], json!("secret1"));
    t.run(&["kv", "get", "ocs/mykey"])
        .expect_code(0, "[ocs] kv get (table)")
        .expect_stdout("secret1", "kv get table shows the value");
    t.run(&["write", "ocs/rawkey", "value=secret2", "other=x"])
        .expect_code(0, "[ocs] write")
        .expect_stdout("Success! Data written to: ocs/rawkey", "write message");
    let o = t.run(&["read", "-format=json", "ocs/rawkey"]);
    o.expect_code(0, "[ocs] read");
    assert_eq!(
        (o.json()["data"].clone(), o.json()["lease_duration"].clone()),
        (json!({"value": "secret2", "other": "x"}), json!(2764800))
    );
    t.run(&["read", "ocs/rawkey"])
        .expect_code(0, "[ocs] read (table)")
        .expect_stdout("refresh_interval", "kv v1 read shows refresh_interval");
    t.run(&["write", "ocs/dir/nested", "value=3"])
        .expect_code(0, "[ocs] write nested");
    let o = t.run(&["kv", "list", "-format=json", "ocs/"]);
    o.expect_code(0, "[ocs] kv list");
    assert_eq!(o.json(), json!(["dir/", "mykey", "rawkey"]));
    let o = t.run(&["list", "-format=json", "ocs"]);
    o.expect_code(0, "[ocs] list");
    assert_eq!(o.json(), json!(["dir/", "mykey", "rawkey"]));
    t.run(&["list", "ocs/nothing-here"])
        .expect_code(2, "[ocs] list of an empty folder")
        .expect_stderr("No value found at ocs/nothing-here", "empty list message");
    let o = t.run(&["secrets", "list", "-format=json"]);
    o.expect_code(0, "[ocs] secrets list (sys/mounts read allowed)");
    assert!(o.json().get("ocs/").is_some());
    t.run(&["kv", "delete", "ocs/mykey"])
        .expect_code(0, "[ocs] kv delete");
    t.run(&["delete", "ocs/rawkey"])
        .expect_code(0, "[ocs] delete")
        .expect_stdout(
            "Success! Data deleted (if it existed) at: ocs/rawkey",
            "delete message",
        );
    let o = t.run(&["read", "ocs/rawkey"]);
    o.expect_code(2, "[ocs] read deleted");
    assert!(
        format!("{}{}", o.stderr, o.stdout).contains("No value found at ocs/rawkey"),
        "No value found message: {o:?}"
    );
    t.run(&["kv", "get", "ocs/mykey"])
        .expect_code(2, "[ocs] kv get deleted");

    // denials
    t.run(&["read", "sys/auth"])
        .expect_code(2, "[ocs] read sys/auth")
        .expect_stderr("permission denied", "denied text")
        .expect_stderr("Code: 403", "403 shown");
    t.run(&["write", "secretx/foo", "a=b"])
        .expect_code(2, "[ocs] write outside ocs/")
        .expect_stderr("permission denied", "denied text");
    t.run(&["read", "auth/userpass/users/vaultuser"])
        .expect_code(2, "[ocs] read userpass user");
    t.run(&["write", "sys/mounts/evil", "type=kv"])
        .expect_code(2, "[ocs] mount creation");
    t.run(&["policy", "read", "ocs"])
        .expect_code(2, "[ocs] policy read");
    let (code, body) = server
        .http("GET", "sys/auth", Some(&ocs_token), None)
        .unwrap();
    assert_eq!(
        (
            code,
            serde_json::from_str::<serde_json::Value>(&body).unwrap()["errors"].clone()
        ),
        (403, json!(["1 error occurred:\n\t* permission denied\n\n"]))
    );
    let (code, body) = server.http("GET", "ocs/foo", Some("bogus"), None).unwrap();
    assert_eq!(
        (
            code,
            serde_json::from_str::<serde_json::Value>(&body).unwrap()["errors"].clone()
        ),
        (403, json!(["permission denied"]))
    );

    // ------------------------------------------------------------ userpass login
    let o = cli.run(&[
        "login",
        "-no-store",
        "-format=json",
        "-method=userpass",
        "username=vaultuser",
        "password=pass321",
    ]);
    o.expect_code(0, "userpass login");
    let a = o.json()["auth"].clone();
    assert_eq!(
        (a["policies"].clone(), a["metadata"]["username"].clone()),
        (json!(["admins", "default"]), json!("vaultuser")),
        "{a}"
    );
    let stored_after = std::fs::read_to_string(cli.home().join(".vault-token")).unwrap();
    assert_eq!(
        stored_after.trim(),
        root,
        "-no-store leaves the token helper alone"
    );
    cli.run(&[
        "login",
        "-no-store",
        "-method=userpass",
        "username=vaultuser",
        "password=wrong",
    ])
    .expect_code(2, "userpass login, wrong password")
    .expect_stderr("invalid username or password", "wrong password message");

    // ------------------------------------------------------------ seal again
    cli.run(&["operator", "seal"])
        .expect_code(0, "operator seal")
        .expect_stdout("Vault is sealed", "seal message");
    cli.run(&["status"]).expect_code(2, "status after seal");
}

#[test]
fn seed_flow_strongroom_cli_against_openbao() {
    seed_flow(ServerKind::OpenBao, CliKind::Strongroom);
}

#[test]
fn seed_flow_bao_cli_against_openbao() {
    seed_flow(ServerKind::OpenBao, CliKind::Bao);
}

#[test]
fn seed_flow_strongroom_cli_against_strongroom() {
    seed_flow(ServerKind::Strongroom, CliKind::Strongroom);
}

#[test]
fn seed_flow_bao_cli_against_strongroom() {
    seed_flow(ServerKind::Strongroom, CliKind::Bao);
}
