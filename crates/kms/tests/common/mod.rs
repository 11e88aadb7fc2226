//! A key manager core for tests, initialized and unsealed in memory, driven through its
//! request pipeline (no HTTP), with the root token at hand.
#![allow(dead_code)]

use serde_json::{json, Map, Value};
use std::sync::Arc;
use strongroom_kms::core::{Core, CoreOptions, Incoming};
use strongroom_kms::request::{ApiError, Operation, Response};
use strongroom_kms::storage::InmemStorage;

pub struct Kms {
    pub core: Arc<Core>,
    pub root: String,
}

pub fn kms_with(options: CoreOptions) -> Kms {
    let core = Core::new(Arc::new(InmemStorage::new()), options);
    let shares = json!({"secret_shares": 1, "secret_threshold": 1});
    let out = core.init(shares.as_object().unwrap()).unwrap();
    let key = out["keys_base64"][0].as_str().unwrap().to_string();
    core.unseal(json!({ "key": key }).as_object().unwrap())
        .unwrap();
    let root = out["root_token"].as_str().unwrap().to_string();
    Kms { core, root }
}

pub fn kms() -> Kms {
    kms_with(CoreOptions {
        max_request_size: 1 << 20,
        ..Default::default()
    })
}

/// One request as the HTTP layer would hand it to the core.
pub struct Call<'a> {
    pub remote: &'a str,
    pub wrap_ttl: Option<u64>,
}

impl Kms {
    pub fn send(
        &self,
        how: Call,
        op: Operation,
        path: &str,
        token: &str,
        data: Value,
    ) -> Result<Response, ApiError> {
        let data: Map<String, Value> = match data {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        self.core.handle(Incoming {
            op,
            path: path.into(),
            data,
            token: Some(zeroize::Zeroizing::new(token.to_string())),
            content_type: None,
            remote_addr: how.remote.into(),
            wrap_ttl: how.wrap_ttl,
        })
    }
    pub fn call_from(
        &self,
        remote: &str,
        op: Operation,
        path: &str,
        token: &str,
        data: Value,
    ) -> Result<Response, ApiError> {
        let how = Call {
            remote,
            wrap_ttl: None,
        };
        self.send(how, op, path, token, data)
    }
    pub fn call_wrapped(
        &self,
        op: Operation,
        path: &str,
        token: &str,
        data: Value,
        wrap_ttl: Option<u64>,
    ) -> Result<Response, ApiError> {
        let how = Call {
            remote: "127.0.0.1",
            wrap_ttl,
        };
        self.send(how, op, path, token, data)
    }
    pub fn call(
        &self,
        op: Operation,
        path: &str,
        token: &str,
        data: Value,
    ) -> Result<Response, ApiError> {
        self.call_from("127.0.0.1", op, path, token, data)
    }
    pub fn root(&self, op: Operation, path: &str, data: Value) -> Response {
        self.call(op, path, &self.root, data)
            .unwrap_or_else(|e| panic!("{path}: {e:?}"))
    }
    /// Enable an auth method at `auth/<path>` (as root).
    pub fn enable_auth(&self, path: &str, kind: &str) {
        let p = format!("sys/auth/{path}");
        self.root(Operation::Update, &p, json!({ "type": kind }));
    }
    /// Mount a secrets engine at `<path>` (as root).
    pub fn mount(&self, path: &str, kind: &str) {
        let p = format!("sys/mounts/{path}");
        self.root(Operation::Update, &p, json!({ "type": kind }));
    }
    pub fn policy(&self, name: &str, text: &str) {
        let path = format!("sys/policies/acl/{name}");
        self.root(Operation::Update, &path, json!({ "policy": text }));
    }
    pub fn token(&self, body: Value) -> String {
        self.token_by(&self.root.clone(), body).unwrap()
    }
    pub fn token_by(&self, parent: &str, body: Value) -> Result<String, ApiError> {
        let r = self.call(Operation::Update, "auth/token/create", parent, body)?;
        Ok(client_token(&r))
    }
}

pub fn client_token(r: &Response) -> String {
    r.auth.as_ref().unwrap()["client_token"]
        .as_str()
        .unwrap()
        .to_string()
}
