//! What flows through the router: a logical [`Request`], a [`Response`] and an [`ApiError`].
//! The HTTP layer turns these into Vault's exact wire shapes.

use crate::token::TokenEntry;
use serde_json::{Map, Value};

/// A request's or response's fields (the JSON body, query parameters).
pub type Data = Map<String, Value>;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    Read,
    /// A write to a path that does not exist yet (decided by the backend's existence check).
    Create,
    Update,
    Delete,
    List,
    Patch,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Create => "create",
            Operation::Update => "update",
            Operation::Delete => "delete",
            Operation::List => "list",
            Operation::Patch => "patch",
        }
    }
}

#[derive(Clone)]
pub struct Request {
    /// `request_id` of the envelope and the audit log.
    pub id: String,
    pub op: Operation,
    /// Full logical path without `/v1/`, e.g. `secret/data/app`.
    pub path: String,
    /// Mount point the router matched, e.g. `secret/` or `auth/userpass/`.
    pub mount: String,
    /// Path inside the mount, e.g. `data/app`.
    pub rel: String,
    pub data: Data,
    /// The authenticated caller; `None` only on unauthenticated paths.
    pub token: Option<Arc<TokenEntry>>,
    pub content_type: Option<String>,
    /// Set for requests the router forwards from the HTTP layer: the raw token, so
    /// `auth/token/lookup-self` style paths can name it. Never logged.
    pub client_token: Option<Arc<zeroize::Zeroizing<String>>>,
    /// The client's address, for CIDR-bound logins and tokens (`None`: not an IP client).
    pub remote_addr: Option<std::net::IpAddr>,
    /// `X-Vault-Wrap-TTL`: the response is to be wrapped for this many seconds.
    pub wrap_ttl: Option<u64>,
}

/// A login asks the core to mint a token with these properties.
#[derive(Clone, Debug, Default)]
pub struct AuthSpec {
    pub policies: Vec<String>,
    pub metadata: serde_json::Map<String, Value>,
    pub display_name: String,
    pub ttl: u64,
    pub max_ttl: u64,
    pub period: u64,
    pub num_uses: i64,
    pub renewable: bool,
    pub no_default_policy: bool,
    /// The token may be used only from these networks (`token_bound_cidrs`).
    pub bound_cidrs: Vec<crate::cidr::Cidr>,
    pub kind: crate::token::TokenKind,
    /// The name the login is known by on its mount (the identity alias), e.g. the username.
    pub alias_name: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `{"request_id", "lease_id", ..., "data", "auth", ...}`.
    Envelope,
    /// The envelope with `data` also copied to the top level (sys/mounts, sys/policy, ...).
    EnvelopeLegacy,
    /// 204, empty body.
    NoContent,
    /// The body is exactly `data` (sys/health, sys/seal-status, sys/init, ...).
    Raw,
    /// `data` is a string sent as `text/plain` (Prometheus metrics).
    Text,
}

#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub shape: Shape,
    pub data: Option<Value>,
    /// `data` already rendered as a JSON object, for hot paths that write their answer
    /// directly instead of building a [`Value`] tree (see [`Response::json`]); `data` is then
    /// `None`. Readers that need the value use [`Response::data_value`].
    pub data_json: Option<String>,
    /// A rendered `auth` block (token create, login).
    pub auth: Option<Value>,
    /// A login's request for a token; the core turns it into `auth`.
    pub login: Option<AuthSpec>,
    pub warnings: Vec<String>,
    /// Set when the response was wrapped: the envelope's `wrap_info`.
    pub wrap_info: Option<Value>,
    pub lease_duration: u64,
    pub renewable: bool,
    /// Set by the core to the request's id, so the envelope and the audit log agree.
    pub request_id: String,
}

impl Response {
    pub fn data(v: Value) -> Self {
        Self {
            status: 200,
            shape: Shape::Envelope,
            data: Some(v),
            data_json: None,
            auth: None,
            login: None,
            warnings: vec![],
            wrap_info: None,
            lease_duration: 0,
            renewable: false,
            request_id: String::new(),
        }
    }
    /// An envelope whose `data` is this JSON object text (it must be one: the HTTP layer
    /// splices it into the envelope as is).
    pub fn json(data: String) -> Self {
        Self {
            data: None,
            data_json: Some(data),
            ..Self::data(Value::Null)
        }
    }
    /// `data` as a value, whichever way the handler built it.
    pub fn data_value(&self) -> Option<std::borrow::Cow<'_, Value>> {
        match (&self.data, &self.data_json) {
            (Some(v), _) => Some(std::borrow::Cow::Borrowed(v)),
            (None, Some(j)) => serde_json::from_str(j).ok().map(std::borrow::Cow::Owned),
            (None, None) => None,
        }
    }
    pub fn legacy(v: Value) -> Self {
        Self {
            shape: Shape::EnvelopeLegacy,
            ..Self::data(v)
        }
    }
    pub fn raw(status: u16, v: Value) -> Self {
        Self {
            status,
            shape: Shape::Raw,
            ..Self::data(v)
        }
    }
    pub fn no_content() -> Self {
        Self {
            status: 204,
            shape: Shape::NoContent,
            data: None,
            ..Self::data(Value::Null)
        }
    }
    pub fn login(spec: AuthSpec) -> Self {
        Self {
            data: None,
            login: Some(spec),
            ..Self::data(Value::Null)
        }
    }
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }
    pub fn with_warning(mut self, w: impl Into<String>) -> Self {
        self.warnings.push(w.into());
        self
    }
}

/// An error as Vault reports it: a status and the `errors` array.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {errors:?}")]
pub struct ApiError {
    pub status: u16,
    pub errors: Vec<String>,
}

/// Vault wraps many logical errors with hashicorp/go-multierror's text.
pub fn multierror(msg: &str) -> String {
    format!("1 error occurred:\n\t* {msg}\n\n")
}

impl ApiError {
    pub fn new(status: u16, msg: impl Into<String>) -> Self {
        Self {
            status,
            errors: vec![msg.into()],
        }
    }
    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::new(400, msg)
    }
    /// Missing, invalid or revoked token.
    pub fn permission_denied() -> Self {
        Self::new(403, "permission denied")
    }
    /// Valid token, policy says no.
    pub fn acl_denied() -> Self {
        Self::new(403, multierror("permission denied"))
    }
    pub fn not_found() -> Self {
        Self {
            status: 404,
            errors: vec![],
        }
    }
    pub fn unsupported_path() -> Self {
        Self::new(404, multierror("unsupported path"))
    }
    pub fn unsupported_operation() -> Self {
        Self::new(405, multierror("unsupported operation"))
    }
    pub fn sealed() -> Self {
        Self::new(503, "Vault is sealed")
    }
    pub fn internal(msg: impl Into<String>) -> Self {
        Self::new(500, msg)
    }
}

impl From<crate::barrier::BarrierError> for ApiError {
    fn from(e: crate::barrier::BarrierError) -> Self {
        match e {
            crate::barrier::BarrierError::Sealed => ApiError::sealed(),
            other => ApiError::internal(multierror(&other.to_string())),
        }
    }
}
