//! Differential test of authorization against the real OpenBao: generated policies (globs,
//! `+`, deny) on the paths a delegated administrator is trusted with, and thousands of
//! spellings of the denied paths (trailing `/`, `//`, `.`/`..`, letter case, the Kelvin sign,
//! percent-encoding), sent raw to both servers. Zero cases may exist where Strongroom
//! answers 2xx and OpenBao refuses with 403.
//!
//! `STRONGROOM_ACL_SEED` replays a run; `STRONGROOM_ACL_CASES` sets the number of policies.

mod common;

use common::{Server, ServerKind};
use std::io::{Read, Write};
use std::time::Duration;

/// xorshift64*: reproducible without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

/// A family of protected paths: where names live, what grants cover them, how to write one.
struct Target {
    base: &'static str,
    grants: &'static [&'static str],
    write_body: &'static str,
}

const TARGETS: &[Target] = &[
    Target {
        base: "sys/policies/acl/",
        grants: &[
            "sys/policies/acl/*",
            "sys/policies/+/*",
            "sys/*",
            "sys/+/acl/*",
        ],
        write_body: r#"{"policy":"path \"x\" { capabilities = [\"read\"] }"}"#,
    },
    Target {
        base: "sys/policy/",
        grants: &["sys/policy/*", "sys/*", "sys/+/*"],
        write_body: r#"{"policy":"path \"x\" { capabilities = [\"read\"] }"}"#,
    },
    Target {
        base: "auth/userpass/users/",
        grants: &[
            "auth/userpass/users/*",
            "auth/+/users/*",
            "auth/userpass/*",
            "auth/*",
        ],
        write_body: r#"{"password":"pw-differential"}"#,
    },
    Target {
        base: "sys/mounts/",
        grants: &["sys/mounts/*", "sys/+/*", "sys/*"],
        write_body: r#"{"type":"kv"}"#,
    },
    Target {
        base: "auth/token/",
        grants: &["auth/token/*", "auth/+/*", "auth/*"],
        write_body: "{}",
    },
    Target {
        base: "ocs/",
        grants: &["ocs/*", "+/*"],
        write_body: r#"{"v":"1"}"#,
    },
];

const ALL_CAPS: &str = r#"["create", "read", "update", "delete", "list", "sudo"]"#;

/// A raw request: the path bytes go out exactly as given.
fn raw(addr: &str, method: &str, path: &str, token: &str, body: &str) -> u16 {
    let hostport = addr.strip_prefix("http://").unwrap();
    let mut s = std::net::TcpStream::connect(hostport).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\nX-Vault-Token: {token}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn setup(s: &Server) {
    for (m, p, b) in [
        ("POST", "sys/auth/userpass", r#"{"type":"userpass"}"#),
        ("POST", "sys/mounts/ocs", r#"{"type":"kv"}"#),
    ] {
        let (code, body) = s.http(m, p, Some("root"), Some(b)).unwrap();
        assert!(code < 300, "{p}: {code} {body}");
    }
}

fn token_with(s: &Server, name: &str, policy: &str) -> String {
    let body = serde_json::json!({ "policy": policy }).to_string();
    let path = format!("sys/policies/acl/{name}");
    let (code, text) = s.http("PUT", &path, Some("root"), Some(&body)).unwrap();
    assert!(code < 300, "policy {name}: {code} {text}\n{policy}");
    let body = serde_json::json!({ "policies": [name] }).to_string();
    let (code, text) = s
        .http("POST", "auth/token/create", Some("root"), Some(&body))
        .unwrap();
    assert!(code < 300, "token: {code} {text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["auth"]["client_token"].as_str().unwrap().to_string()
}

/// Percent-encode one byte.
fn pct(b: u8) -> String {
    format!("%{b:02X}")
}

/// One spelling of `base + name + tail` (the tail is a sub-path such as `/password`).
fn variant(rng: &mut Rng, base: &str, name: &str, tail: &str) -> String {
    let kelvin = "%E2%84%AA";
    let flip = |s: &str, rng: &mut Rng| -> String {
        s.chars()
            .map(|c| {
                if rng.below(2) == 0 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect()
    };
    let (b, n, t) = (base.to_string(), name.to_string(), tail.to_string());
    let one = |k: usize, b: &str, n: &str, t: &str, rng: &mut Rng| -> (String, String, String) {
        let (b, n, t) = (b.to_string(), n.to_string(), t.to_string());
        match k {
            0 => (b, n, t),
            1 => (b, n, format!("{t}/")),
            2 => (b.replacen('/', "//", 1), n, t),
            3 => (format!("/{b}"), n, t),
            4 => (b, n.to_uppercase(), t),
            5 => (b, flip(&n, rng), t),
            6 => (b, n.replacen('k', kelvin, 1), t),
            7 => (format!("{b}./"), n, t),
            8 => (format!("{b}zz/../"), n, t),
            9 => {
                let i = rng.below(n.len());
                let enc = format!("{}{}{}", &n[..i], pct(n.as_bytes()[i]), &n[i + 1..]);
                (b, enc, t)
            }
            10 => (b.replacen('/', "%2F", 1), n, t),
            11 => (flip(&b, rng), n, t),
            12 => (b, n, format!("{t}%2F")),
            13 => (b, format!("{n}%00"), t),
            _ => (b, format!("%20{n}"), t),
        }
    };
    let (b, n, t) = one(rng.below(15), &b, &n, &t, rng);
    let (b, n, t) = if rng.below(3) == 0 {
        one(rng.below(15), &b, &n, &t, rng)
    } else {
        (b, n, t)
    };
    format!("/v1/{b}{n}{t}")
}

#[test]
fn strongroom_never_allows_what_openbao_refuses() {
    let bao = Server::start_dev(ServerKind::OpenBao, "root");
    let ours = Server::start_dev(ServerKind::Strongroom, "root");
    setup(&bao);
    setup(&ours);
    let seed: u64 = std::env::var("STRONGROOM_ACL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::process::id() as u64 * 0x9E37_79B9 + 1);
    let cases: usize = std::env::var("STRONGROOM_ACL_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    eprintln!(
        "acl differential: seed {seed} (STRONGROOM_ACL_SEED={seed} replays), {cases} policies"
    );
    let mut rng = Rng(seed | 1);
    let (mut total, mut both_refused, mut stricter) = (0, 0, 0);
    let mut violations = vec![];
    for case in 0..cases {
        let t = rng.pick(TARGETS);
        let name = format!("k{case}x{}", rng.below(1000));
        let denied = if t.base == "auth/token/" {
            "create-orphan".to_string()
        } else {
            name.clone()
        };
        let grant = rng.pick(t.grants);
        let deny = match rng.below(3) {
            0 => format!("{}{denied}", t.base),
            1 => format!("{}{denied}*", t.base),
            _ => format!("{}{}*", t.base, &denied[..2]),
        };
        let policy = format!(
            "path \"{grant}\" {{ capabilities = {ALL_CAPS} }}\npath \"{deny}\" {{ capabilities = [\"deny\"] }}\n"
        );
        let pname = format!("p{case}");
        let (tb, to) = (
            token_with(&bao, &pname, &policy),
            token_with(&ours, &pname, &policy),
        );
        let tails: &[&str] = match t.base {
            "auth/userpass/users/" => &["", "/password", "/policies"],
            "sys/mounts/" => &["", "/tune"],
            _ => &[""],
        };
        for _ in 0..25 {
            let tail = *rng.pick(tails);
            let path = variant(&mut rng, t.base, &denied, tail);
            let (method, body) = match rng.below(4) {
                0 | 1 => ("PUT", t.write_body),
                2 => ("DELETE", ""),
                _ => ("GET", ""),
            };
            let cb = raw(bao.addr(), method, &path, &tb, body);
            let co = raw(ours.addr(), method, &path, &to, body);
            total += 1;
            if cb == 403 && (200..300).contains(&co) {
                violations.push(format!(
                    "{method} {path}: openbao {cb}, strongroom {co}\n{policy}"
                ));
            } else if cb == 403 && co == 403 {
                both_refused += 1;
            } else if (200..300).contains(&cb) && co == 403 {
                stricter += 1;
            }
        }
    }
    eprintln!(
        "acl differential: {total} requests, {both_refused} refused by both, {stricter} refused only by strongroom, {} allowed only by strongroom",
        violations.len()
    );
    assert!(
        violations.is_empty(),
        "seed {seed}: strongroom allowed what openbao refused:\n{}",
        violations.join("\n")
    );
    assert!(
        both_refused > total / 10,
        "the generator must hit the deny rules"
    );
}
