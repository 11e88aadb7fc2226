//! The HTTP surface against recorded OpenBao behaviour: envelopes, headers, status codes,
//! list verbs, body decoding, size limits and error texts. A real server on a loopback port.

use serde_json::{json, Value};
use std::sync::Arc;
use strongroom_kms::config::ListenerConfig;
use strongroom_kms::core::{Core, CoreOptions};
use strongroom_kms::storage::InmemStorage;

struct Srv {
    addr: std::net::SocketAddr,
    root: String,
    _rt: tokio::runtime::Runtime,
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn start(max_request_size: usize) -> Srv {
    let core = Core::new(
        Arc::new(InmemStorage::new()),
        CoreOptions {
            max_request_size,
            ..Default::default()
        },
    );
    let (root, _key) = core.init_dev(Some("root-test")).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let l = ListenerConfig {
        address: "127.0.0.1:0".into(),
        tls_disable: true,
        ..Default::default()
    };
    rt.spawn(strongroom_kms::server::serve(core, vec![l], Some(tx)));
    let addr = rt.block_on(rx).unwrap()[0];
    Srv {
        addr,
        root,
        _rt: rt,
    }
}

impl Srv {
    /// A minimal HTTP/1.1 exchange over a fresh connection: any method (LIST too), raw
    /// bytes, exact status and headers — what a Vault client sends, nothing more.
    fn raw(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Resp {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(self.addr).unwrap();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        let body = body.unwrap_or_default();
        if !body.is_empty() || matches!(method, "PUT" | "POST" | "PATCH") {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        c.write_all(head.as_bytes()).unwrap();
        c.write_all(body).unwrap();
        let mut out = Vec::new();
        c.read_to_end(&mut out).unwrap();
        let split = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("header end");
        let head = String::from_utf8_lossy(&out[..split]).to_string();
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let mut body = out[split + 4..].to_vec();
        if headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v == "chunked")
        {
            body = dechunk(&body);
        }
        Resp {
            status,
            headers,
            body: String::from_utf8_lossy(&body).to_string(),
        }
    }

    fn req(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
        ctype: Option<&str>,
    ) -> Resp {
        let mut h = vec![];
        if let Some(t) = token {
            h.push(("X-Vault-Token", t));
        }
        if let Some(c) = ctype {
            h.push(("Content-Type", c));
        }
        self.raw(method, path, &h, body)
    }

    fn root(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        let b = body.map(|v| serde_json::to_vec(&v).unwrap());
        self.req(method, path, Some(&self.root.clone()), b.as_deref(), None)
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = vec![];
    loop {
        let Some(nl) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..nl]).trim(), 16).unwrap_or(0);
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + n]);
        b = &b[nl + 4 + n..];
    }
}

#[test]
fn envelopes_headers_and_status_codes() {
    let s = start(1 << 20);
    // 204 with the JSON headers
    let r = s.root(
        "PUT",
        "/v1/secret/data/app",
        Some(json!({"data": {"k": "v"}})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s.root("POST", "/v1/sys/mounts/kv1", Some(json!({"type": "kv"})));
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=31536000; includeSubDomains")
    );
    // POST == PUT, kv v1 read envelope in OpenBao's key order
    assert_eq!(
        s.root("POST", "/v1/kv1/a", Some(json!({"x": 1, "y": "z"})))
            .status,
        204
    );
    let r = s.root("GET", "/v1/kv1/a", None);
    assert_eq!(r.status, 200);
    let keys: Vec<String> = r.json().as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        [
            "request_id",
            "lease_id",
            "renewable",
            "lease_duration",
            "data",
            "wrap_info",
            "warnings",
            "auth"
        ]
    );
    assert_eq!(r.json()["data"], json!({"x": 1, "y": "z"}));
    assert_eq!(r.json()["lease_duration"], 2764800);
    // LIST verb, ?list=true, trailing slash
    s.root("PUT", "/v1/kv1/dir/b", Some(json!({"v": "1"})));
    for (m, p) in [
        ("LIST", "/v1/kv1"),
        ("GET", "/v1/kv1?list=true"),
        ("GET", "/v1/kv1/?list=true"),
    ] {
        let r = s.root(m, p, None);
        assert_eq!(r.status, 200, "{m} {p}: {}", r.body);
        assert_eq!(r.json()["data"]["keys"], json!(["a", "dir/"]));
    }
    // missing secret: 404 with empty errors
    let r = s.root("GET", "/v1/kv1/nope", None);
    assert_eq!((r.status, r.json()), (404, json!({"errors": []})));
    // legacy duplication on sys/mounts
    let r = s.root("GET", "/v1/sys/mounts", None);
    assert!(r.json()["kv1/"].is_object() && r.json()["data"]["kv1/"].is_object());
    // tokens: missing, bogus, Bearer
    let r = s.req("GET", "/v1/kv1/a", None, None, None);
    assert_eq!(
        (r.status, r.json()),
        (403, json!({"errors": ["permission denied"]}))
    );
    let r = s.req("GET", "/v1/kv1/a", Some("bogus"), None, None);
    assert_eq!(
        (r.status, r.json()),
        (403, json!({"errors": ["permission denied"]}))
    );
    let r = s.raw(
        "GET",
        "/v1/kv1/a",
        &[("Authorization", "Bearer root-test")],
        None,
    );
    assert_eq!(r.status, 200);
    // unknown paths and verbs
    let r = s.root("GET", "/v1/nosuchmount/foo", None);
    assert_eq!(
        r.json(),
        json!({"errors": ["no handler for route \"nosuchmount/foo\". route entry not found."]})
    );
    let r = s.root("GET", "/v1/sys/bogus", None);
    assert_eq!(
        (r.status, r.json()),
        (
            404,
            json!({"errors": ["1 error occurred:\n\t* unsupported path\n\n"]})
        )
    );
    let r = s.root("DELETE", "/v1/sys/health", None);
    assert_eq!((r.status, r.json()), (405, json!({"errors": []})));
    let r = s.root("OPTIONS", "/v1/kv1/a", None);
    assert_eq!(r.status, 405);
    let r = s.req("GET", "/", None, None, None);
    assert_eq!((r.status, r.body.as_str()), (404, "404 page not found\n"));
    let r = s.req("GET", "/v2/x", None, None, None);
    assert_eq!((r.status, r.json()), (404, json!({"errors": []})));
    // health codes and query parameters
    let r = s.req("GET", "/v1/sys/health", None, None, None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["sealed"], false);
    assert_eq!(
        s.req("GET", "/v1/sys/health?activecode=299", None, None, None)
            .status,
        299
    );
    assert_eq!(
        s.req("HEAD", "/v1/sys/health", None, None, None).status,
        200
    );
    assert_eq!(
        s.req("GET", "/v1/sys/health/", None, None, None).status,
        403
    );
    // unknown namespace
    let r = s.raw(
        "GET",
        "/v1/kv1/a",
        &[
            ("X-Vault-Token", "root-test"),
            ("X-Vault-Namespace", "ns1/"),
        ],
        None,
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.header("x-vault-namespace"), Some("ns1/"));
    assert_eq!(r.json()["errors"][0], "namespace not found");
    // seal → 503 everywhere but the status endpoints
    assert_eq!(s.root("PUT", "/v1/sys/seal", None).status, 204);
    let r = s.root("GET", "/v1/kv1/a", None);
    assert_eq!(
        (r.status, r.json()),
        (503, json!({"errors": ["Vault is sealed"]}))
    );
    assert_eq!(s.req("GET", "/v1/sys/health", None, None, None).status, 503);
    assert_eq!(
        s.req("GET", "/v1/sys/health?sealedcode=200", None, None, None)
            .status,
        200
    );
    assert_eq!(s.req("GET", "/v1/sys/leader", None, None, None).status, 503);
}

#[test]
fn bad_input_is_a_clear_4xx() {
    let s = start(4096);
    let t = Some("root-test");
    let r = s.req("PUT", "/v1/secret/data/x", t, Some(b"bogus"), None);
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["errors"][0],
        "failed to decode JSON input: invalid character 'b' looking for beginning of value"
    );
    let r = s.req("PUT", "/v1/secret/data/x", t, Some(b"[1,2]"), None);
    assert_eq!(r.json()["errors"][0], "failed to decode JSON input: json: cannot unmarshal array into Go value of type map[string]interface {}");
    let r = s.req(
        "PUT",
        "/v1/secret/data/x",
        t,
        Some(b"{\"data\": {\"a\":"),
        None,
    );
    assert_eq!(r.status, 400);
    // oversized body
    let big = format!("{{\"data\":{{\"v\":\"{}\"}}}}", "x".repeat(10_000));
    let r = s.req("PUT", "/v1/secret/data/x", t, Some(big.as_bytes()), None);
    assert_eq!(r.status, 413);
    // empty kv v1 write
    s.root("POST", "/v1/sys/mounts/kv1", Some(json!({"type": "kv"})));
    let r = s.req("PUT", "/v1/kv1/a", t, None, None);
    assert_eq!(
        (r.status, r.json()),
        (400, json!({"errors": ["missing data fields"]}))
    );
    // form body accepted
    let r = s.req(
        "PUT",
        "/v1/kv1/form",
        t,
        Some(b"a=b&c=d"),
        Some("application/x-www-form-urlencoded"),
    );
    assert_eq!(r.status, 204);
    assert_eq!(
        s.root("GET", "/v1/kv1/form", None).json()["data"],
        json!({"a": "b", "c": "d"})
    );
    // PATCH without merge-patch
    let r = s.req(
        "PATCH",
        "/v1/secret/data/x",
        t,
        Some(b"{\"data\":{}}"),
        Some("application/json"),
    );
    assert_eq!(r.status, 415);
    assert_eq!(
        r.json()["errors"][0],
        "PATCH requires Content-Type of application/merge-patch+json, provided application/json"
    );
    // bad policy
    let r = s.root(
        "PUT",
        "/v1/sys/policies/acl/p",
        Some(json!({"policy": "path \"a\" { capabilities = [\"fly\"] }"})),
    );
    assert_eq!(r.status, 400);
    let r = s.root(
        "PUT",
        "/v1/sys/policies/acl/p",
        Some(json!({"policy": "}}}"})),
    );
    assert_eq!(r.status, 400);
    // invalid TTLs
    let r = s.root(
        "POST",
        "/v1/auth/token/create",
        Some(json!({"ttl": "soon"})),
    );
    assert_eq!(r.status, 400);
    let r = s.root(
        "POST",
        "/v1/sys/mounts/kv9",
        Some(json!({"type": "kv", "config": {"max_lease_ttl": "x"}})),
    );
    assert_eq!(r.status, 400);
    // unseal with bad keys
    let r = s.req(
        "PUT",
        "/v1/sys/unseal",
        None,
        Some(b"{\"key\":\"!!!\"}"),
        None,
    );
    assert_eq!(
        r.json()["errors"][0],
        "'key' must be a valid hex or base64 string"
    );
    // strings where numbers are expected, odd unicode in paths
    let r = s.root(
        "POST",
        "/v1/auth/token/create",
        Some(json!({"num_uses": "many"})),
    );
    assert_eq!(r.status, 400);
    let r = s.req("GET", "/v1/kv1/%E2%82%AC%ZZ%", t, None, None);
    assert_eq!(r.status, 404);
    // mount errors
    let r = s.root("POST", "/v1/sys/mounts/kv1", Some(json!({"type": "kv"})));
    assert_eq!(r.json()["errors"][0], "path is already in use at kv1/");
    let r = s.root(
        "POST",
        "/v1/sys/mounts/zz",
        Some(json!({"type": "nonsense"})),
    );
    assert_eq!(r.status, 400);
}

#[test]
fn kv2_versions_cas_patch_delete_destroy() {
    let s = start(1 << 20);
    let w = |body: Value| s.root("PUT", "/v1/secret/data/app", Some(body));
    assert_eq!(w(json!({"data": {"a": "1"}})).json()["data"]["version"], 1);
    assert_eq!(
        w(json!({"data": {"a": "2"}, "options": {"cas": 1}})).json()["data"]["version"],
        2
    );
    let r = w(json!({"data": {"a": "3"}, "options": {"cas": 1}}));
    assert_eq!(
        (r.status, r.json()["errors"][0].clone()),
        (
            400,
            json!("check-and-set parameter did not match the current version")
        )
    );
    let r = s.root("GET", "/v1/secret/data/app?version=1", None);
    assert_eq!(r.json()["data"]["data"], json!({"a": "1"}));
    let r = s.req(
        "PATCH",
        "/v1/secret/data/app",
        Some("root-test"),
        Some(br#"{"data":{"b":"x"}}"#),
        Some("application/merge-patch+json"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        s.root("GET", "/v1/secret/data/app", None).json()["data"]["data"],
        json!({"a": "2", "b": "x"})
    );
    // soft delete latest → 404 with the full envelope, undelete brings it back
    assert_eq!(s.root("DELETE", "/v1/secret/data/app", None).status, 204);
    let r = s.root("GET", "/v1/secret/data/app", None);
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["data"]["data"], Value::Null);
    assert_ne!(r.json()["data"]["metadata"]["deletion_time"], "");
    assert_eq!(
        s.root(
            "PUT",
            "/v1/secret/undelete/app",
            Some(json!({"versions": ["3"]}))
        )
        .status,
        204
    );
    assert_eq!(s.root("GET", "/v1/secret/data/app", None).status, 200);
    assert_eq!(
        s.root(
            "PUT",
            "/v1/secret/destroy/app",
            Some(json!({"versions": [1]}))
        )
        .status,
        204
    );
    let r = s.root("GET", "/v1/secret/data/app?version=1", None);
    assert_eq!(
        (r.status, r.json()["data"]["metadata"]["destroyed"].clone()),
        (404, json!(true))
    );
    let m = s.root("GET", "/v1/secret/metadata/app", None).json();
    assert_eq!(m["data"]["current_version"], 3);
    assert_eq!(m["data"]["versions"]["1"]["destroyed"], true);
    // max_versions prunes
    assert_eq!(
        s.root(
            "POST",
            "/v1/secret/metadata/app",
            Some(json!({"max_versions": 2}))
        )
        .status,
        204
    );
    w(json!({"data": {"a": "4"}}));
    let m = s.root("GET", "/v1/secret/metadata/app", None).json();
    assert_eq!(m["data"]["oldest_version"], 3);
    let r = s.root("LIST", "/v1/secret/metadata", None);
    assert_eq!(r.json()["data"]["keys"], json!(["app"]));
    assert_eq!(
        s.root("DELETE", "/v1/secret/metadata/app", None).status,
        204
    );
    assert_eq!(s.root("GET", "/v1/secret/data/app", None).status, 404);
    // UI mounts preflight
    let r = s.root("GET", "/v1/sys/internal/ui/mounts/secret/x", None);
    assert_eq!(r.json()["data"]["options"]["version"], "2");
    assert_eq!(r.json()["data"]["path"], "secret/");
}

#[test]
fn metrics_count_requests_transit_ops_and_seal_state() {
    let s = start(1 << 20);
    s.root("POST", "/v1/sys/mounts/kv1", Some(json!({"type": "kv"})));
    s.root("PUT", "/v1/kv1/a", Some(json!({"v": "1"})));
    for _ in 0..3 {
        assert_eq!(s.root("GET", "/v1/kv1/a", None).status, 200);
    }
    assert_eq!(s.root("GET", "/v1/kv1/missing", None).status, 404);
    s.root(
        "POST",
        "/v1/sys/mounts/transit",
        Some(json!({"type": "transit"})),
    );
    let r = s.root(
        "POST",
        "/v1/transit/encrypt/vol-key",
        Some(json!({"plaintext": "aGVsbG8="})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let ct = r.json()["data"]["ciphertext"].as_str().unwrap().to_string();
    assert_eq!(
        s.root(
            "POST",
            "/v1/transit/decrypt/vol-key",
            Some(json!({"ciphertext": ct}))
        )
        .status,
        200
    );

    let r = s.root("GET", "/v1/sys/metrics?format=prometheus", None);
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let p = r.body;
    assert!(
        p.contains(
            "strongroom_requests_total{mount_type=\"kv\",operation=\"read\",status=\"2xx\"} 3"
        ),
        "{p}"
    );
    assert!(
        p.contains(
            "strongroom_requests_total{mount_type=\"kv\",operation=\"read\",status=\"4xx\"} 1"
        ),
        "{p}"
    );
    assert!(
        p.contains(
            "strongroom_request_duration_seconds_count{mount_type=\"kv\",operation=\"read\"} 4"
        ),
        "{p}"
    );
    assert!(
        p.contains("strongroom_transit_operations_total{key=\"vol-key\",operation=\"encrypt\"} 1"),
        "{p}"
    );
    assert!(
        p.contains("strongroom_transit_operations_total{key=\"vol-key\",operation=\"decrypt\"} 1"),
        "{p}"
    );
    assert!(p.contains("strongroom_sealed 0"));
    assert!(p.contains("strongroom_audit_failures_total 0"));
    assert!(p.contains("strongroom_tokens "));
    let j = s.root("GET", "/v1/sys/metrics", None).json();
    assert!(j["Counters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["Name"] == "strongroom.requests" && c["Labels"]["mount_type"] == "kv"));
    // a token without a grant on sys/metrics cannot read it
    let t = s
        .root(
            "POST",
            "/v1/auth/token/create",
            Some(json!({"policies": ["default"]})),
        )
        .json();
    let t = t["auth"]["client_token"].as_str().unwrap().to_string();
    assert_eq!(
        s.req("GET", "/v1/sys/metrics", Some(&t), None, None).status,
        403
    );
    assert_eq!(
        s.root("GET", "/v1/sys/metrics?format=xml", None).status,
        400
    );
}
