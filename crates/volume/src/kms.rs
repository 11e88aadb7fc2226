//! Talking to the key manager as a tenant or as the admin, with errors classified by kind.
//!
//! Vault/OpenBao answer 403 both for "this token may not do that" and for an unknown or
//! expired token. To tell them apart a 403 is followed by a `token/lookup-self` (which the
//! `default` policy allows): if that also fails, the token itself is bad → UNAUTHENTICATED.
//! Every other class follows from the client's error variant (status class) and from what was
//! asked ([`Call`]), never from the text of a message.

use crate::error::Error;
use strongroom_vault_client::{Client, ClientConfig, Error as VErr, SecretString};

/// Where the key manager is and how to reach it (no token here).
#[derive(Clone, Debug)]
pub struct KmsConfig {
    /// One server, or the nodes of a cluster: a request goes to a node that answers
    /// (down, sealed or without an active node → the next; see the vault client).
    pub addresses: Vec<String>,
    /// PEM CA bundle to trust instead of the system roots.
    pub ca_cert: Option<std::path::PathBuf>,
    /// Client certificate and key (PEM files) for mutual TLS.
    pub client_cert: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Do not verify the server certificate (testing only).
    pub skip_verify: bool,
    pub timeout: std::time::Duration,
}

impl KmsConfig {
    pub fn new(address: impl Into<String>) -> Self {
        Self::with_addresses(vec![address.into()])
    }

    /// The nodes of a key-manager cluster.
    pub fn with_addresses(addresses: Vec<String>) -> Self {
        KmsConfig {
            addresses,
            ca_cert: None,
            client_cert: None,
            skip_verify: false,
            timeout: std::time::Duration::from_secs(10),
        }
    }

    /// A client authenticated with `token` (the same zeroizing, redacting value all the way to
    /// the `X-Vault-Token` header).
    pub fn client(&self, token: &SecretString) -> Result<Client, Error> {
        self.build(Some(token.clone()))
    }

    /// A client without a token (health checks).
    pub fn anonymous_client(&self) -> Result<Client, Error> {
        self.build(None)
    }

    fn build(&self, token: Option<SecretString>) -> Result<Client, Error> {
        let mut c = ClientConfig::with_addresses(self.addresses.clone());
        c.ca_cert = self.ca_cert.clone();
        if let Some((cert, key)) = &self.client_cert {
            c.client_cert = Some(cert.clone());
            c.client_key = Some(key.clone());
        }
        c.skip_verify = self.skip_verify;
        c.timeout = self.timeout;
        c.token = token;
        Client::new(c).map_err(|e| Error::InvalidArgument(format!("key manager client: {e}")))
    }
}

/// Who is asking: the tenant owning the volume, or the platform admin (deletion only).
#[derive(Clone, Debug)]
pub enum Credential {
    Tenant(SecretString),
    Admin(SecretString),
}

impl Credential {
    pub fn token(&self) -> &SecretString {
        match self {
            Credential::Tenant(t) | Credential::Admin(t) => t,
        }
    }

    /// Who acted, for the audit log.
    pub(crate) fn actor(&self) -> &'static str {
        match self {
            Credential::Tenant(_) => "tenant",
            Credential::Admin(_) => "admin",
        }
    }
}

/// What was asked of the key manager: the class of a 400 answer depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Call {
    /// Transit decrypt or rewrap of a wrapped secret: a 400 means the blob does not open
    /// under this key and context (another volume's or tenant's blob) → PERMISSION_DENIED.
    Unwrap,
    /// Anything else: a 400 is a bad parameter → INVALID_ARGUMENT.
    Other,
}

fn summary(e: &VErr) -> String {
    e.api()
        .map(|a| a.summary())
        .unwrap_or_else(|| e.to_string())
}

/// Classify a client error of `call` for `what` (e.g. "unwrap the keyslot secret").
pub(crate) fn classify(client: &Client, call: Call, what: &str, e: VErr) -> Error {
    match &e {
        VErr::Unreachable { .. } => Error::Unavailable(format!("{what}: {e}")),
        VErr::Sealed(_) => Error::Unavailable(format!("{what}: the key manager is sealed")),
        VErr::Server(a) if a.status >= 500 => {
            Error::Unavailable(format!("{what}: {}", a.summary()))
        }
        VErr::Tls { .. } | VErr::Config(_) => Error::InvalidArgument(format!("{what}: {e}")),
        VErr::PermissionDenied(_) => denied(client, what),
        VErr::NotFound(_) => Error::NotFound(format!("{what}: {}", summary(&e))),
        VErr::BadRequest(a) if call == Call::Unwrap => Error::PermissionDenied(format!(
            "{what}: the key manager refused to unwrap: {}",
            a.summary()
        )),
        VErr::BadRequest(a) => Error::InvalidArgument(format!("{what}: {}", a.summary())),
        _ => Error::Internal(format!("{what}: {}", summary(&e))),
    }
}

/// A 403: the token lacks access to this key, or the token itself is bad.
fn denied(client: &Client, what: &str) -> Error {
    match client.token_lookup_self() {
        Ok(_) => Error::PermissionDenied(format!(
            "{what}: the token has no access to this key (another tenant's volume?)"
        )),
        Err(VErr::Unreachable { .. }) => {
            Error::Unavailable(format!("{what}: key manager went away"))
        }
        Err(_) => {
            Error::Unauthenticated(format!("{what}: the token is invalid, expired or revoked"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, errors: &[&str]) -> strongroom_vault_client::ApiError {
        strongroom_vault_client::ApiError {
            method: "PUT".into(),
            url: "http://127.0.0.1:1/v1/transit/decrypt/k".into(),
            status,
            errors: errors.iter().map(|s| s.to_string()).collect(),
            response: None,
        }
    }

    /// A 400 is classified by what was asked, whatever its text says.
    #[test]
    fn bad_request_class_follows_the_call_not_the_text() {
        let c = KmsConfig::new("http://127.0.0.1:1")
            .anonymous_client()
            .unwrap();
        for text in ["cipher: message authentication failed", "anything else"] {
            let e = || VErr::BadRequest(api(400, &[text]));
            assert!(matches!(
                classify(&c, Call::Unwrap, "unwrap", e()),
                Error::PermissionDenied(_)
            ));
            assert!(matches!(
                classify(&c, Call::Other, "encrypt", e()),
                Error::InvalidArgument(_)
            ));
        }
        let e = classify(&c, Call::Other, "x", VErr::Server(api(503, &["standby"])));
        assert!(matches!(e, Error::Unavailable(_)));
        let e = classify(&c, Call::Other, "x", VErr::NotFound(api(404, &[])));
        assert!(matches!(e, Error::NotFound(ref m) if m.contains("HTTP 404")));
    }
}
