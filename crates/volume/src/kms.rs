//! Talking to the key manager as a tenant or as the admin, with errors classified.
//!
//! Vault/OpenBao answer 403 both for "this token may not do that" and for an unknown or
//! expired token. To tell them apart a 403 is followed by a `token/lookup-self` (which the
//! `default` policy allows): if that also fails, the token itself is bad → UNAUTHENTICATED.

use crate::error::Error;
use strongroom_vault_client::{Client, ClientConfig, Error as VErr, SecretString};
use zeroize::Zeroizing;

/// Where the key manager is and how to reach it (no token here).
#[derive(Clone, Debug)]
pub struct KmsConfig {
    pub address: String,
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
        KmsConfig {
            address: address.into(),
            ca_cert: None,
            client_cert: None,
            skip_verify: false,
            timeout: std::time::Duration::from_secs(10),
        }
    }

    /// A client authenticated with `token`.
    pub fn client(&self, token: &Token) -> Result<Client, Error> {
        let mut c = ClientConfig::new(self.address.clone());
        c.ca_cert = self.ca_cert.clone();
        if let Some((cert, key)) = &self.client_cert {
            c.client_cert = Some(cert.clone());
            c.client_key = Some(key.clone());
        }
        c.skip_verify = self.skip_verify;
        c.timeout = self.timeout;
        c.token = Some(SecretString::new(token.expose()));
        Client::new(c).map_err(|e| Error::InvalidArgument(format!("key manager client: {e}")))
    }
}

/// A KMS token: zeroized on drop, redacted in `Debug`.
#[derive(Clone)]
pub struct Token(Zeroizing<String>);

impl Token {
    pub fn new(s: impl Into<String>) -> Self {
        Token(Zeroizing::new(s.into().trim().to_owned()))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// A stable, non-reversible handle for cache keys (SHA-256 of the token).
    pub fn fingerprint(&self) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(self.0.as_bytes()).into()
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Who is asking: the tenant owning the volume, or the platform admin (deletion only).
#[derive(Clone, Debug)]
pub enum Credential {
    Tenant(Token),
    Admin(Token),
}

impl Credential {
    pub fn token(&self) -> &Token {
        match self {
            Credential::Tenant(t) | Credential::Admin(t) => t,
        }
    }
}

fn first_message(e: &VErr) -> String {
    let m = e.messages().join("; ");
    let m = m.replace("1 error occurred:\n\t* ", "").replace("\n\n", "");
    if m.is_empty() {
        format!("HTTP {}", e.status().unwrap_or(0))
    } else {
        m
    }
}

/// Classify a client error for `what` (e.g. "unwrap the keyslot secret of volume v1").
pub fn classify(client: &Client, what: &str, e: VErr) -> Error {
    match &e {
        VErr::Unreachable { .. } => Error::Unavailable(format!("{what}: {e}")),
        VErr::Sealed(_) => Error::Unavailable(format!("{what}: the key manager is sealed")),
        VErr::Server(a) if a.status >= 500 => {
            Error::Unavailable(format!("{what}: {}", first_message(&e)))
        }
        VErr::Tls { .. } | VErr::Config(_) => Error::InvalidArgument(format!("{what}: {e}")),
        VErr::PermissionDenied(_) => match client.token_lookup_self() {
            Ok(_) => Error::PermissionDenied(format!(
                "{what}: the token has no access to this key (another tenant's volume?)"
            )),
            Err(VErr::Unreachable { .. }) => {
                Error::Unavailable(format!("{what}: key manager went away"))
            }
            Err(_) => {
                Error::Unauthenticated(format!("{what}: the token is invalid, expired or revoked"))
            }
        },
        VErr::NotFound(_) => Error::NotFound(format!("{what}: {}", first_message(&e))),
        VErr::BadRequest(_) => {
            let m = first_message(&e);
            // Transit answers 400 when a ciphertext does not decrypt under this key/context.
            if m.contains("cipher: message authentication failed") || m.contains("decrypt") {
                Error::PermissionDenied(format!("{what}: the key manager refused to unwrap: {m}"))
            } else {
                Error::InvalidArgument(format!("{what}: {m}"))
            }
        }
        _ => Error::Internal(format!("{what}: {}", first_message(&e))),
    }
}
