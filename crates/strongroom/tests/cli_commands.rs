//! Our CLI beyond the seed flow, against real OpenBao (and the same checks against
//! `strongroom server`): KV v2, transit through
//! `write`/`read`, stdin and `@file` data, tokens, unseal from stdin, disable/delete
//! commands, exit codes; and byte-for-byte the same table output as the real `bao` CLI for
//! read-only commands.

mod common;

use common::{Cli, CliKind, Pki, Server, ServerKind, Storage};
use serde_json::json;
use std::time::Duration;

const ROOT: &str = "root-for-cli-tests";

#[test]
fn kv_v2_transit_tokens_and_exit_codes() {
    kv_v2_transit_tokens(ServerKind::OpenBao);
}

fn kv_v2_transit_tokens(kind: ServerKind) {
    let server = Server::start_dev(kind, ROOT);
    let cli = Cli::new(CliKind::Strongroom, server.addr()).with_token(ROOT);

    // KV v2 at secret/ (dev mode)
    let o = cli.run(&["kv", "put", "secret/app", "foo=bar"]);
    o.expect_code(0, "kv put v2")
        .expect_stdout("Secret Path =\nsecret/data/app\n", "secret path header");
    o.expect_stdout("======= Metadata =======", "metadata header");
    cli.run(&["kv", "put", "-cas=1", "secret/app", "foo=baz", "n=2"])
        .expect_code(0, "kv put -cas=1");
    cli.run(&["kv", "put", "-cas=1", "secret/app", "foo=stale"])
        .expect_code(2, "stale cas")
        .expect_stderr(
            "check-and-set parameter did not match the current version",
            "cas error",
        );
    let o = cli.run(&["kv", "get", "-format=json", "secret/app"]);
    o.expect_code(0, "kv get v2 json");
    assert_eq!(o.json()["data"]["data"], json!({"foo": "baz", "n": "2"}));
    assert_eq!(o.json()["data"]["metadata"]["version"], json!(2));
    let o = cli.run(&["kv", "get", "-version=1", "-field=foo", "secret/app"]);
    o.expect_code(0, "kv get -version -field");
    assert_eq!(o.stdout, "bar", "-field prints the raw value, no newline");
    let o = cli.run(&["token", "create", "-policy=default", "-field=token"]);
    o.expect_code(0, "token create -field=token");
    assert!(
        o.stdout.starts_with("s.") && !o.stdout.contains('\n'),
        "raw token: {:?}",
        o.stdout
    );
    cli.run(&["kv", "get", "-mount=secret", "app"])
        .expect_code(0, "kv get -mount")
        .expect_stdout("=== Data ===", "data header");
    cli.run(&["kv", "patch", "secret/app", "extra=1"])
        .expect_code(0, "kv patch");
    let o = cli.run(&["kv", "get", "-format=json", "secret/app"]);
    assert_eq!(
        o.json()["data"]["data"],
        json!({"foo": "baz", "n": "2", "extra": "1"})
    );
    cli.run(&["kv", "metadata", "get", "secret/app"])
        .expect_code(0, "kv metadata get")
        .expect_stdout("====== Version 3 ======", "versions listed");
    let o = cli.run(&["kv", "list", "-format=json", "secret"]);
    assert_eq!(o.json(), json!(["app"]));
    let o = cli
        .with_env("VAULT_FORMAT", "json")
        .run(&["kv", "list", "secret"]);
    assert_eq!(o.json(), json!(["app"]), "VAULT_FORMAT=json");
    cli.run(&["kv", "delete", "secret/app"])
        .expect_code(0, "kv delete v2")
        .expect_stdout("secret/data/app", "delete path");
    // a soft-deleted latest version: metadata only, exit 0 (like bao)
    cli.run(&["kv", "get", "secret/app"])
        .expect_code(0, "kv get soft-deleted")
        .expect_stdout("deletion_time", "metadata shown");
    cli.run(&["kv", "get", "secret/nonexistent"])
        .expect_code(2, "kv get missing")
        .expect_stderr("No value found at secret/data/nonexistent", "not found");
    cli.run(&["kv", "patch", "secret/nonexistent", "a=b"])
        .expect_code(2, "kv patch missing");

    // data from stdin and files
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("v.txt");
    std::fs::write(&f, "file-value").unwrap();
    cli.run(&["secrets", "enable", "-path=kv1", "kv"])
        .expect_code(0, "enable kv1");
    cli.run_stdin(&["write", "kv1/json", "-"], Some(r#"{"a": 1, "b": "two"}"#))
        .expect_code(0, "write - (JSON on stdin)");
    let o = cli.run(&["read", "-format=json", "kv1/json"]);
    assert_eq!(o.json()["data"], json!({"a": 1, "b": "two"}));
    cli.run_stdin(
        &["write", "kv1/files", &format!("f=@{}", f.display()), "s=-"],
        Some("stdin-value\n"),
    )
    .expect_code(0, "k=@file and k=-");
    let o = cli.run(&["read", "-format=json", "kv1/files"]);
    assert_eq!(
        o.json()["data"],
        json!({"f": "file-value", "s": "stdin-value"})
    );
    cli.run(&["read", "-field=f", "kv1/files"])
        .expect_code(0, "read -field")
        .expect_stdout("file-value", "raw field");
    cli.run(&["write", "kv1/nothing"])
        .expect_code(1, "write without data")
        .expect_stderr("Must supply data or use -force", "usage message");
    cli.run(&["write", "kv1/bad", "novalue"])
        .expect_code(1, "bad k=v")
        .expect_stderr("Failed to parse K=V data", "parse message");
    cli.run(&["kv", "metadata", "get", "kv1/json"])
        .expect_code(1, "metadata on v1");
    cli.run(&["secrets", "disable", "kv1"])
        .expect_code(0, "secrets disable")
        .expect_stdout(
            "Success! Disabled the secrets engine (if it existed) at: kv1/",
            "disable message",
        );

    // transit through generic write/read
    cli.run(&["secrets", "enable", "transit"])
        .expect_code(0, "enable transit")
        .expect_stdout(
            "Enabled the transit secrets engine at: transit/",
            "enable message",
        );
    cli.run(&["write", "-f", "transit/keys/k1"])
        .expect_code(0, "write -f key");
    let o = cli.run(&[
        "write",
        "-format=json",
        "transit/encrypt/k1",
        "plaintext=aGVsbG8gb3BlbmJhbw==",
    ]);
    o.expect_code(0, "encrypt");
    let ct = o.json()["data"]["ciphertext"].as_str().unwrap().to_owned();
    assert!(ct.starts_with("vault:v1:"));
    cli.run(&["write", "-f", "transit/keys/k1/rotate"])
        .expect_code(0, "rotate");
    let o = cli.run(&[
        "write",
        "-format=json",
        "transit/rewrap/k1",
        &format!("ciphertext={ct}"),
    ]);
    let ct2 = o.json()["data"]["ciphertext"].as_str().unwrap().to_owned();
    assert!(ct2.starts_with("vault:v2:"), "{ct2}");
    let o = cli.run(&[
        "write",
        "-format=json",
        "transit/decrypt/k1",
        &format!("ciphertext={ct2}"),
    ]);
    assert_eq!(o.json()["data"]["plaintext"], json!("aGVsbG8gb3BlbmJhbw=="));
    cli.run(&["write", "transit/decrypt/k1", "ciphertext=garbage"])
        .expect_code(2, "bad ciphertext")
        .expect_stderr("Code: 400", "400 shown");
    cli.run(&["read", "-format=json", "transit/keys/k1"])
        .expect_code(0, "read key");
    cli.run(&["list", "transit/keys"])
        .expect_code(0, "list keys")
        .expect_stdout("Keys\n----\nk1\n", "keys table");

    // tokens
    cli.run(&["policy", "write", "p1", "-"])
        .expect_code(2, "empty policy from stdin")
        .expect_stderr("'policy' parameter not supplied", "server message");
    let o = cli.run(&[
        "token",
        "create",
        "-policy=default",
        "-ttl=1h",
        "-metadata=owner=ocs",
        "-format=json",
    ]);
    o.expect_code(0, "token create");
    let a = o.json()["auth"].clone();
    let (tok, acc) = (
        a["client_token"].as_str().unwrap().to_owned(),
        a["accessor"].as_str().unwrap().to_owned(),
    );
    assert_eq!(
        (a["lease_duration"].clone(), a["metadata"]["owner"].clone()),
        (json!(3600), json!("ocs"))
    );
    let o = cli.run(&["token", "lookup", "-format=json", "-accessor", &acc]);
    assert_eq!(
        (
            o.json()["data"]["id"].clone(),
            o.json()["data"]["accessor"].clone()
        ),
        (json!(""), json!(acc.clone()))
    );
    let o = cli.run(&["token", "lookup", "-format=json", &tok]);
    assert_eq!(o.json()["data"]["id"], json!(tok.clone()));
    let t = cli.with_token(&tok);
    let o = t.run(&["token", "renew", "-increment=30m", "-format=json"]);
    o.expect_code(0, "renew-self");
    assert_eq!(o.json()["auth"]["lease_duration"], json!(1800));
    cli.run(&["token", "renew", &tok])
        .expect_code(0, "renew other")
        .expect_stdout("token_renewable", "auth table");
    let o = cli.run(&[
        "token",
        "create",
        "-orphan",
        "-no-default-policy",
        "-policy=p",
        "-format=json",
    ]);
    assert_eq!(
        (
            o.json()["auth"]["orphan"].clone(),
            o.json()["auth"]["policies"].clone()
        ),
        (json!(true), json!(["p"]))
    );
    let o = cli.run(&["token", "create", "-renewable=false", "-format=json"]);
    assert_eq!(o.json()["auth"]["renewable"], json!(false));
    t.run(&["token", "revoke", "-self"])
        .expect_code(0, "revoke -self")
        .expect_stdout("Success! Revoked token (if it existed)", "revoke message");
    t.run(&["token", "lookup"])
        .expect_code(2, "lookup after revoke")
        .expect_stderr("permission denied", "revoked");
    cli.run(&["token", "renew"])
        .expect_code(2, "root renew-self")
        .expect_stderr("Code: 400", "root cannot renew");

    // auth/policy lifecycle
    cli.run(&["auth", "enable", "-path=up2", "userpass"])
        .expect_code(0, "auth enable -path");
    cli.run(&["auth", "disable", "up2"])
        .expect_code(0, "auth disable")
        .expect_stdout(
            "Success! Disabled the auth method (if it existed) at: up2/",
            "message",
        );
    cli.run_stdin(
        &["policy", "write", "tmp", "-"],
        Some("path \"tmp/*\" { capabilities = [\"read\"] }\n"),
    )
    .expect_code(0, "policy write stdin");
    cli.run(&["policy", "delete", "tmp"])
        .expect_code(0, "policy delete")
        .expect_stdout("Success! Deleted policy: tmp", "message");
    cli.run(&["policy", "read", "tmp"])
        .expect_code(2, "policy read deleted")
        .expect_stderr("No policy named: tmp", "message");
    cli.run(&["policy", "delete", "root"])
        .expect_code(2, "delete root policy")
        .expect_stderr("cannot delete \"root\" policy", "message");

    // unreachable server: exit 2 for requests, 1 for status
    let dead = Cli::new(
        CliKind::Strongroom,
        &format!("http://127.0.0.1:{}", common::free_port()),
    );
    dead.run(&["read", "secret/x"])
        .expect_code(2, "read, nothing listening")
        .expect_stderr("Error reading secret/x", "context");
    dead.run(&["status"])
        .expect_code(1, "status, nothing listening")
        .expect_stderr("Error checking seal status", "context");
}

#[test]
fn unseal_from_stdin_on_raft_storage() {
    unseal_from_stdin(ServerKind::OpenBao);
}

fn unseal_from_stdin(kind: ServerKind) {
    let server = Server::start(kind, Storage::Raft);
    let cli = Cli::new(CliKind::Strongroom, server.addr());
    let o = cli.run(&[
        "operator",
        "init",
        "-key-shares=3",
        "-key-threshold=2",
        "-format=json",
    ]);
    o.expect_code(0, "init json");
    let j = o.json();
    assert_eq!(
        (j["unseal_shares"].clone(), j["unseal_threshold"].clone()),
        (json!(3), json!(2))
    );
    let keys: Vec<String> = j["unseal_keys_b64"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    let hex: Vec<String> = j["unseal_keys_hex"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    assert_eq!((keys.len(), hex.len()), (3, 3));
    let root = j["root_token"].as_str().unwrap().to_owned();

    let o = cli.run_stdin(&["operator", "unseal"], Some(&format!("{}\n", keys[0])));
    o.expect_code(0, "unseal from stdin")
        .expect_stdout("Unseal Progress    1/2", "progress row");
    cli.run(&["operator", "unseal", "-reset"])
        .expect_code(0, "unseal -reset")
        .expect_stdout("Unseal Progress    0/2", "reset");
    cli.run(&["operator", "unseal", "AAAA"])
        .expect_code(2, "garbage key")
        .expect_stderr("Error unsealing", "context");
    cli.run(&["operator", "unseal", "-reset"])
        .expect_code(0, "unseal -reset");
    cli.run_stdin(&["operator", "unseal", "-"], Some(&hex[1]))
        .expect_code(0, "hex key from stdin with -");
    let o = cli.run(&["operator", "unseal", "-format=json", &keys[2]]);
    assert_eq!(o.json()["sealed"], json!(false));
    assert!(
        server.wait_health(&[200], Duration::from_secs(60)),
        "raft node active\n{}",
        server.logs()
    );
    let r = cli.with_token(&root);
    let o = r.run(&["status", "-format=json"]);
    o.expect_code(0, "status");
    assert_eq!(
        (
            o.json()["storage_type"].clone(),
            o.json()["ha_enabled"].clone()
        ),
        (json!("raft"), json!(true))
    );
    r.run(&["status"])
        .expect_code(0, "status table")
        .expect_stdout("HA Mode                 active", "HA rows");
    r.run(&["operator", "seal"]).expect_code(0, "seal");
    r.run(&["read", "sys/mounts"])
        .expect_code(2, "sealed read")
        .expect_stderr("Vault is sealed", "sealed message");
}

/// Read-only commands print exactly what `bao` prints for the same data.
#[test]
fn table_output_matches_bao() {
    output_matches_bao(ServerKind::OpenBao);
}

fn output_matches_bao(kind: ServerKind) {
    let server = Server::start_dev(kind, ROOT);
    let ours = Cli::new(CliKind::Strongroom, server.addr()).with_token(ROOT);
    let bao = Cli::new(CliKind::Bao, server.addr()).with_token(ROOT);
    for setup in [
        &["kv", "put", "secret/app", "foo=bar", "list=a"][..],
        &["kv", "put", "secret/app", "foo=baz"],
        &["secrets", "enable", "-path=ocs", "kv"],
        &["write", "ocs/rawkey", "value=secret2", "other=x"],
        &["secrets", "enable", "transit"],
        &["write", "-f", "transit/keys/k1"],
        &["auth", "enable", "userpass"],
        &[
            "write",
            "auth/userpass/users/vaultuser",
            "password=pass321",
            "policies=admins",
        ],
    ] {
        ours.run(setup).expect_code(0, "setup");
    }
    let mut diffs = Vec::new();
    for cmd in [
        &["status"][..],
        &["kv", "get", "secret/app"],
        &["kv", "get", "-version=1", "secret/app"],
        &["kv", "metadata", "get", "secret/app"],
        &["kv", "list", "secret"],
        &["kv", "get", "ocs/rawkey"],
        &["read", "ocs/rawkey"],
        &["read", "secret/data/app"],
        &["list", "ocs"],
        &["read", "transit/keys/k1"],
        &["list", "transit/keys"],
        &["secrets", "list"],
        &["auth", "list"],
        &["policy", "list"],
        &["policy", "read", "default"],
        &["token", "lookup"],
        &["read", "auth/userpass/users/vaultuser"],
        &["read", "ocs/missing"],
        &["kv", "get", "secret/missing"],
        &["operator", "init", "-status"],
    ] {
        let (a, b) = (ours.run(cmd), bao.run(cmd));
        if (a.code, &a.stdout) != (b.code, &b.stdout) {
            diffs.push(format!("`{}`: our output differs from bao's\n--- ours (exit {})\n{}{}\n--- bao (exit {})\n{}{}", cmd.join(" "), a.code, a.stdout, a.stderr, b.code, b.stdout, b.stderr));
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n\n"));
}

#[test]
fn kv_v2_transit_tokens_and_exit_codes_strongroom_server() {
    kv_v2_transit_tokens(ServerKind::Strongroom);
}

#[test]
fn unseal_from_stdin_on_raft_storage_strongroom_server() {
    unseal_from_stdin(ServerKind::Strongroom);
}

#[test]
fn table_output_matches_bao_strongroom_server() {
    output_matches_bao(ServerKind::Strongroom);
}

/// TLS settings come from the Vault environment variables: VAULT_CACERT, VAULT_CLIENT_CERT,
/// VAULT_CLIENT_KEY, VAULT_SKIP_VERIFY.
fn over_mutual_tls(kind: ServerKind) {
    let pki = Pki::new();
    let server = Server::start_tls(kind, Storage::Inmem, &pki, true);
    let path = |f: &str| pki.path(f).to_string_lossy().into_owned();
    let bare = Cli::new(CliKind::Strongroom, server.addr());
    let cli = bare
        .with_env("VAULT_CACERT", &path("ca.pem"))
        .with_env("VAULT_CLIENT_CERT", &path("client.pem"))
        .with_env("VAULT_CLIENT_KEY", &path("client-key.pem"));
    let o = cli.run(&[
        "operator",
        "init",
        "-key-shares=1",
        "-key-threshold=1",
        "-format=json",
    ]);
    o.expect_code(0, "init over mTLS");
    let key = o.json()["unseal_keys_b64"][0].as_str().unwrap().to_owned();
    let root = o.json()["root_token"].as_str().unwrap().to_owned();
    cli.run(&["operator", "unseal", &key])
        .expect_code(0, "unseal over mTLS");
    assert!(
        server.wait_health(&[200], Duration::from_secs(60)),
        "active"
    );
    let r = cli.with_token(&root);
    r.run(&["secrets", "enable", "-path=ocs", "kv"])
        .expect_code(0, "enable kv");
    r.run(&["kv", "put", "ocs/k", "v=1"])
        .expect_code(0, "kv put over mTLS");
    r.run(&["kv", "get", "-field=v", "ocs/k"])
        .expect_code(0, "kv get over mTLS")
        .expect_stdout("1", "value");
    // unknown CA: refused, exit 2 with the TLS error
    bare.run(&["status"])
        .expect_code(1, "status without the CA")
        .expect_stderr("TLS", "TLS error shown");
    bare.with_token(&root)
        .run(&["read", "ocs/k"])
        .expect_code(2, "read without the CA");
    // trusted server but no client certificate: the server refuses
    bare.with_env("VAULT_CACERT", &path("ca.pem"))
        .with_token(&root)
        .run(&["read", "ocs/k"])
        .expect_code(2, "no client cert");
    // a certificate from another CA: refused
    bare.with_env("VAULT_SKIP_VERIFY", "true")
        .with_env("VAULT_CLIENT_CERT", &path("rogue.pem"))
        .with_env("VAULT_CLIENT_KEY", &path("rogue-key.pem"))
        .with_token(&root)
        .run(&["read", "ocs/k"])
        .expect_code(2, "rogue client cert");
    // skip-verify with a good client certificate works (testing only)
    bare.with_env("VAULT_SKIP_VERIFY", "true")
        .with_env("VAULT_CLIENT_CERT", &path("client.pem"))
        .with_env("VAULT_CLIENT_KEY", &path("client-key.pem"))
        .with_token(&root)
        .run(&["read", "ocs/k"])
        .expect_code(0, "skip-verify + client cert");
    // a CA file that does not exist is a local error
    bare.with_env("VAULT_CACERT", "/nonexistent/ca.pem")
        .run(&["status"])
        .expect_code(1, "missing CA file")
        .expect_stderr("ca.pem", "names the file");
}

#[test]
fn over_mutual_tls_openbao() {
    over_mutual_tls(ServerKind::OpenBao);
}

#[test]
fn over_mutual_tls_strongroom_server() {
    over_mutual_tls(ServerKind::Strongroom);
}

/// Ceph's client libraries are loaded at run time, only for RBD volumes: the binary itself
/// does not need them (a node or a laptop without Ceph runs every other command).
#[test]
fn the_binary_does_not_link_ceph_libraries() {
    let out = std::process::Command::new("ldd")
        .arg(common::strongroom_bin())
        .output()
        .expect("ldd runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("libc.so"), "{text}");
    assert!(
        !text.contains("librbd") && !text.contains("librados"),
        "the binary links Ceph:\n{text}"
    );
}
