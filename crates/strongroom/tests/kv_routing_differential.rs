//! KV v1 and v2 routing against the real OpenBao: the same requests (every method on
//! every kind of path: exact, directory, trailing `/`, missing, unknown head, empty) sent in
//! the same order to `bao server -dev` and to `strongroom server -dev` must get the same
//! status codes. This is what keeps the KV path tables honest: a route that answers 405
//! where OpenBao answers 404, or serves a path OpenBao refuses, fails here.
//!
//! One difference is on purpose: a read or delete of `x/` acts on `x` here (the canonical
//! path of `crates/kms/src/paths.rs`, so the ACL checks exactly the path the handler acts
//! on), where OpenBao's backends see a different, usually empty, key. Those requests are
//! counted and printed, not failed.

mod common;

use common::{Server, ServerKind};
use std::io::{Read, Write};
use std::time::Duration;

/// One raw request with an optional content type; returns (status, body).
fn raw(addr: &str, method: &str, path: &str, body: &str, ctype: Option<&str>) -> (u16, String) {
    let hostport = addr.strip_prefix("http://").unwrap();
    let mut s = std::net::TcpStream::connect(hostport).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let ct = ctype
        .map(|c| format!("Content-Type: {c}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} /v1/{path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\nX-Vault-Token: root\r\n{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (code, body.to_owned())
}

fn setup(addr: &str) {
    for (m, p, b) in [
        (
            "POST",
            "sys/mounts/kv1",
            r#"{"type":"kv","options":{"version":"1"}}"#,
        ),
        (
            "POST",
            "sys/mounts/kv2",
            r#"{"type":"kv","options":{"version":"2"}}"#,
        ),
        ("PUT", "kv1/a", r#"{"x":"1"}"#),
        ("PUT", "kv1/dir/b", r#"{"x":"1"}"#),
        ("PUT", "kv2/data/a", r#"{"data":{"x":"1"}}"#),
        ("PUT", "kv2/data/a", r#"{"data":{"x":"2"}}"#),
        ("PUT", "kv2/data/dir/b", r#"{"data":{"x":"1"}}"#),
    ] {
        let (code, body) = raw(addr, m, p, b, None);
        assert!(code < 300, "{m} {p}: {code} {body}");
    }
}

const V1_PATHS: &[&str] = &[
    "", "a", "a/", "dir", "dir/", "dir/b", "dir/b/", "missing", "missing/",
];

const V2_PATHS: &[&str] = &[
    "",
    "config",
    "config/",
    "config/x",
    "data",
    "data/",
    "data/a",
    "data/a/",
    "data/dir",
    "data/dir/",
    "data/dir/b",
    "data/missing",
    "metadata",
    "metadata/",
    "metadata/a",
    "metadata/a/",
    "metadata/dir",
    "metadata/dir/",
    "metadata/missing",
    "metadata/missing/",
    "delete",
    "delete/",
    "delete/a",
    "delete/missing",
    "undelete/a",
    "undelete/",
    "destroy/dir/b",
    "destroy",
    "subkeys",
    "subkeys/",
    "subkeys/a",
    "subkeys/missing",
    "other",
    "other/x",
];

/// The body a write to `path` carries (a valid one, so routing is what differs).
fn write_body(v2: bool, path: &str) -> &'static str {
    let head = path.split('/').next().unwrap_or("");
    match (v2, head) {
        (false, _) => r#"{"y":"2"}"#,
        (true, "data") => r#"{"data":{"y":"2"}}"#,
        (true, "delete" | "undelete" | "destroy") => r#"{"versions":[1]}"#,
        (true, _) => r#"{"max_versions":5}"#,
    }
}

/// Each request of the sequence: (method, path, body, content type).
fn requests() -> Vec<(&'static str, String, &'static str, Option<&'static str>)> {
    let mut out = vec![];
    for (mount, v2, paths) in [("kv1", false, V1_PATHS), ("kv2", true, V2_PATHS)] {
        // reads and lists first, then writes, patches, and deletes last
        for method in ["GET", "LIST", "PUT", "PATCH", "DELETE"] {
            for p in paths {
                let path = format!("{mount}/{p}");
                let (body, ct) = match method {
                    "PUT" => (write_body(v2, p), None),
                    "PATCH" => (
                        r#"{"data":{"z":"3"}}"#,
                        Some("application/merge-patch+json"),
                    ),
                    _ => ("", None),
                };
                out.push((method, path, body, ct));
            }
        }
    }
    out
}

#[test]
fn kv_routes_answer_as_openbao() {
    let bao = Server::start_dev(ServerKind::OpenBao, "root");
    let ours = Server::start_dev(ServerKind::Strongroom, "root");
    setup(bao.addr());
    setup(ours.addr());
    let (mut diffs, mut canonical) = (vec![], vec![]);
    let reqs = requests();
    for (method, path, body, ct) in &reqs {
        let (cb, bb) = raw(bao.addr(), method, path, body, *ct);
        let (co, bo) = raw(ours.addr(), method, path, body, *ct);
        if cb == co {
            continue;
        }
        let line = format!(
            "{method} {path}: openbao {cb} {}\n    strongroom {co} {}",
            bb.trim(),
            bo.trim()
        );
        match (*method, path.ends_with('/')) {
            ("GET" | "DELETE", true) => canonical.push(line),
            _ => diffs.push(line),
        }
    }
    eprintln!(
        "kv routing: {} requests, {} differ, {} more on purpose (read/delete of `x/` is `x`):\n{}",
        reqs.len(),
        diffs.len(),
        canonical.len(),
        canonical.join("\n")
    );
    assert!(
        canonical.len() < 20,
        "the trailing-slash class grew: {}",
        canonical.len()
    );
    assert!(
        diffs.is_empty(),
        "status codes differ:\n{}",
        diffs.join("\n")
    );
}
