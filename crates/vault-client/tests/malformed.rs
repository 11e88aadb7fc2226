//! Malformed answers (not a Vault at all, broken HTTP, wrong JSON shapes) must come back as
//! errors, never as panics. The "server" here is a raw TCP socket that replies with fixed
//! bytes: this is about robustness against garbage, not about Vault semantics.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;

use strongroom_vault_client::{Client, ClientConfig, DataKeyKind, Error, SecretString};

/// Serves `replies` in order, one per connection, then stops.
fn serve(replies: Vec<Vec<u8>>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", l.local_addr().unwrap());
    thread::spawn(move || {
        for r in replies {
            let Ok((mut s, _)) = l.accept() else { return };
            let mut buf = [0u8; 8192];
            let _ = s.read(&mut buf);
            let _ = s.write_all(&r);
        }
    });
    addr
}

fn http(status: &str, body: &str) -> Vec<u8> {
    format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).into_bytes()
}

fn client(addr: &str) -> Client {
    Client::new(ClientConfig::new(addr).with_token("t")).unwrap()
}

#[test]
fn garbage_answers_are_errors() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not JSON", http("200 OK", "<html>hello</html>")),
        ("JSON array", http("200 OK", "[1,2,3]")),
        ("wrong types", http("200 OK", r#"{"initialized":"yes","sealed":7,"t":"x"}"#)),
        ("data not an object", http("200 OK", r#"{"request_id":"r","data":"str"}"#)),
        ("truncated body", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{\"a\":".to_vec()),
        ("not HTTP", b"SSH-2.0-OpenSSH_9.0\r\n".to_vec()),
        ("closed at once", Vec::new()),
        ("HTML 500", http("500 Internal Server Error", "<h1>oops</h1>")),
        ("errors not a list", http("400 Bad Request", r#"{"errors":"nope"}"#)),
        ("redirect", b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:1/\r\nContent-Length: 0\r\n\r\n".to_vec()),
        ("huge status", b"HTTP/1.1 999 Whatever\r\nContent-Length: 2\r\n\r\n{}".to_vec()),
    ];
    for (what, reply) in cases {
        // one typed call per shape that would be hurt by it
        let addr = serve(vec![reply.clone(); 8]);
        let c = client(&addr);
        let r1 = c.seal_status();
        let r2 = c.kv2_read("secret", "x", None);
        let r3 = c.transit_decrypt("transit", "k", "vault:v1:AAAA", Some(b"ctx"));
        let r4 = c.token_create(&Default::default(), None);
        let r5 = c.health();
        let r6 = c.transit_datakey("transit", "k", DataKeyKind::Plaintext, None, None);
        let r7 = c.userpass_login("userpass", "u", &SecretString::from("p"));
        let r8 = c.list_keys("ocs");
        // Every call returns (no panic); the typed ones cannot have succeeded on garbage.
        assert!(
            r1.is_err() && r3.is_err() && r4.is_err() && r5.is_err() && r6.is_err() && r7.is_err(),
            "{what}: {r1:?} {r3:?} {r4:?} {r5:?} {r6:?} {r7:?}"
        );
        let _ = (r2, r8);
    }
}

#[test]
fn error_bodies_keep_server_text_without_secrets() {
    let addr = serve(vec![http(
        "403 Forbidden",
        r#"{"errors":["1 error occurred:\n\t* permission denied\n\n"]}"#,
    )]);
    let e = client(&addr)
        .kv1_write(
            "ocs",
            "k",
            &serde_json::json!({"v": "topsecret"})
                .as_object()
                .unwrap()
                .clone(),
        )
        .unwrap_err();
    assert!(e.is_permission_denied());
    let text = format!("{e} {e:?}");
    assert!(
        text.contains("permission denied")
            && !text.contains("topsecret")
            && !text.contains("X-Vault-Token"),
        "{text}"
    );

    let addr = serve(vec![b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 18\r\n\r\n404 page not found".to_vec()]);
    let e = client(&addr).write("nope", None).unwrap_err();
    assert!(
        matches!(&e, Error::NotFound(a) if a.errors == ["404 page not found"]),
        "{e:?}"
    );
}
