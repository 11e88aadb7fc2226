//! Acknowledged means durable: under concurrent writers (group commit with deferred
//! durability), every write and token the server answered survives a SIGKILL, and a value
//! another request read survives too.

mod common;

use common::{Server, ServerKind, Storage};
use serde_json::json;
use strongroom_vault_client::{Client, ClientConfig, InitRequest, MountInput, SecretString};

fn client(addr: &str, token: Option<&str>) -> Client {
    let mut c = ClientConfig::new(addr.to_owned());
    if let Some(t) = token {
        c = c.with_token(t);
    }
    Client::new(c).unwrap()
}

#[test]
fn acknowledged_writes_survive_sigkill_under_concurrency() {
    let mut server = Server::start(ServerKind::Strongroom, Storage::Raft);
    let anon = client(server.addr(), None);
    let init = anon.init(&InitRequest::shamir(1, 1)).unwrap();
    let key = init.keys[0].clone();
    anon.unseal(&SecretString::new(key.expose())).unwrap();
    let root = init.root_token.expose().to_owned();
    let admin = client(server.addr(), Some(&root));
    admin
        .mount_enable("kv", &MountInput::of_type("kv"))
        .unwrap();

    let mut tokens = vec![];
    for _ in 0..20 {
        let t = strongroom_volume::tenant::create_token(&admin, &["default"], "1h").unwrap();
        tokens.push(t.expose().to_owned());
    }
    // 8 writers, 60 writes each; record what was acknowledged, and kill the server the
    // moment the last answer arrives (the last batch may still be in its fsync).
    let acked: Vec<(String, String)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|w| {
                let c = client(server.addr(), Some(&root));
                s.spawn(move || {
                    let mut done = vec![];
                    for i in 0..60 {
                        let path = format!("w{w}/k{i}");
                        let val = format!("value-{w}-{i}");
                        let mut m = serde_json::Map::new();
                        m.insert("v".into(), json!(val));
                        c.kv1_write("kv", &path, &m).unwrap();
                        done.push((path, val));
                    }
                    done
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(acked.len(), 480);

    server.restart(); // SIGKILL, then start again
    let anon = client(server.addr(), None);
    anon.unseal(&SecretString::new(key.expose())).unwrap();
    let admin = client(server.addr(), Some(&root));
    for (path, val) in &acked {
        let got = admin
            .kv1_read("kv", path)
            .unwrap()
            .unwrap_or_else(|| panic!("{path} lost after SIGKILL"));
        assert_eq!(got.str("v"), Some(val.as_str()), "{path}");
    }
    for t in &tokens {
        client(server.addr(), Some(t))
            .token_lookup_self()
            .unwrap_or_else(|e| panic!("an acknowledged token was lost: {e}"));
    }
}
