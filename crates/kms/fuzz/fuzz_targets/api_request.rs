//! Fuzz request decoding and the whole request pipeline: body decoding (JSON, form), then
//! routing, ACL, and every backend, on a dev core with the root token. Nothing may panic;
//! every failure is an HTTP-style error with a 4xx/5xx status.
//!
//! Input: byte 0 picks the operation and content type, then the path up to the first
//! newline, then the body. Paths under `sys/audit` (which open files) and `sys/seal` (which
//! would stop everything) are skipped.
//!
//! Run: `cd crates/kms/fuzz && cargo +nightly fuzz run api_request -- -jobs=1 -max_total_time=600`
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use strongroom_kms::core::{Core, CoreOptions, Incoming};
use strongroom_kms::request::Operation;
use strongroom_kms::storage::InmemStorage;

fn core() -> &'static (Arc<Core>, String) {
    static CORE: OnceLock<(Arc<Core>, String)> = OnceLock::new();
    CORE.get_or_init(|| {
        let core = Core::new(
            Arc::new(InmemStorage::new()),
            CoreOptions { max_request_size: 1 << 20, ..Default::default() },
        );
        let (root, _) = core.init_dev(Some("root")).expect("dev init");
        for (path, body) in [
            ("sys/mounts/kv", r#"{"type":"kv"}"#),
            ("sys/mounts/transit", r#"{"type":"transit"}"#),
            ("sys/auth/userpass", r#"{"type":"userpass"}"#),
        ] {
            let data = serde_json::from_str(body).unwrap();
            core.handle(Incoming {
                op: Operation::Update,
                path: path.into(),
                data,
                token: Some(zeroize::Zeroizing::new(root.clone())),
                content_type: None,
                remote_addr: String::new(),
                wrap_ttl: None,
            })
            .expect("setup");
        }
        (core, root)
    })
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let sel = data[0];
    let rest = &data[1..];
    let nl = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
    let Ok(path) = std::str::from_utf8(&rest[..nl]) else {
        return;
    };
    let body = rest.get(nl + 1..).unwrap_or_default();
    let p = path.trim_start_matches('/');
    if p.starts_with("sys/audit") || p.starts_with("sys/seal") || p.starts_with("sys/raw") {
        return;
    }
    let op = match sel % 6 {
        0 => Operation::Read,
        1 => Operation::Update,
        2 => Operation::Delete,
        3 => Operation::List,
        4 => Operation::Patch,
        _ => Operation::Create,
    };
    let ctype = match (sel / 6) % 3 {
        0 => None,
        1 => Some("application/x-www-form-urlencoded".to_string()),
        _ => Some("application/merge-patch+json".to_string()),
    };
    let decoded = strongroom_kms::http::body::decode(body, ctype.as_deref());
    let Ok(data) = decoded else {
        assert_eq!(decoded.unwrap_err().status, 400);
        return;
    };
    let (core, root) = core();
    let token = if sel & 0x80 != 0 { "bogus".to_string() } else { root.clone() };
    match core.handle(Incoming {
        op,
        path: path.to_string(),
        data,
        token: Some(zeroize::Zeroizing::new(token)),
        content_type: ctype,
        remote_addr: String::new(),
        wrap_ttl: None,
    }) {
        Ok(r) => assert!((200..300).contains(&r.status) || r.status == 404),
        Err(e) => assert!((400..600).contains(&e.status), "{e:?}"),
    }
});
