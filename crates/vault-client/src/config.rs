//! Client configuration, from code or from the Vault/OpenBao environment variables.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::secret::SecretString;

/// The address the Vault and OpenBao CLIs use when none is configured.
pub const DEFAULT_ADDRESS: &str = "https://127.0.0.1:8200";

/// How to reach the server.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Base addresses, e.g. `http://127.0.0.1:8200` (no `/v1`): one server, or the nodes
    /// of a cluster (requests go to one that answers, see [`crate::Client`]).
    pub addresses: Vec<String>,
    /// Token sent as `X-Vault-Token`.
    pub token: Option<SecretString>,
    /// PEM file with the CA certificate(s) to trust instead of the built-in roots.
    pub ca_cert: Option<PathBuf>,
    /// Directory of PEM CA certificates.
    pub ca_path: Option<PathBuf>,
    /// PEM CA certificate(s) given inline.
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate and key (PEM files) for mTLS.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Do not verify the server certificate (testing only).
    pub skip_verify: bool,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// `X-Vault-Namespace`.
    pub namespace: Option<String>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            addresses: vec![DEFAULT_ADDRESS.to_owned()],
            token: None,
            ca_cert: None,
            ca_path: None,
            ca_pem: None,
            client_cert: None,
            client_key: None,
            skip_verify: false,
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            namespace: None,
        }
    }
}

fn env_of(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok())
        .filter(|v| !v.is_empty())
}

/// Parses Go-style durations used by `VAULT_CLIENT_TIMEOUT` (`30`, `30s`, `2m`, `1h`).
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Some(Duration::from_secs(n));
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit() && c != '.')?);
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// `a,b , c` → `["a", "b", "c"]` (empty items dropped).
pub fn split_addresses(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect()
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "yes" => Some(true),
        "0" | "f" | "false" | "no" | "" => Some(false),
        _ => None,
    }
}

impl ClientConfig {
    /// A configuration for `address` with everything else defaulted.
    pub fn new(address: impl Into<String>) -> Self {
        ClientConfig {
            addresses: vec![address.into()],
            ..Default::default()
        }
    }

    /// A configuration for several addresses (the nodes of a cluster).
    pub fn with_addresses<S: Into<String>>(addresses: impl IntoIterator<Item = S>) -> Self {
        ClientConfig {
            addresses: addresses.into_iter().map(Into::into).collect(),
            ..Default::default()
        }
    }

    pub fn with_token(mut self, token: impl Into<SecretString>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Reads `VAULT_ADDR`, `VAULT_TOKEN`, `VAULT_CACERT`, `VAULT_CAPATH`, `VAULT_CLIENT_CERT`,
    /// `VAULT_CLIENT_KEY`, `VAULT_SKIP_VERIFY`, `VAULT_CLIENT_TIMEOUT`, `VAULT_NAMESPACE`
    /// (each falling back to its `BAO_*` twin). Missing address → [`DEFAULT_ADDRESS`];
    /// `VAULT_ADDR` may list several addresses separated by commas (a cluster's nodes).
    pub fn from_env() -> Result<Self> {
        let mut c = ClientConfig::default();
        if let Some(a) = env_of(&["VAULT_ADDR", "BAO_ADDR"]) {
            c.addresses = split_addresses(&a);
        }
        c.token = env_of(&["VAULT_TOKEN", "BAO_TOKEN"]).map(|t| SecretString::new(t.trim()));
        c.ca_cert = env_of(&["VAULT_CACERT", "BAO_CACERT"]).map(PathBuf::from);
        c.ca_path = env_of(&["VAULT_CAPATH", "BAO_CAPATH"]).map(PathBuf::from);
        c.client_cert = env_of(&["VAULT_CLIENT_CERT", "BAO_CLIENT_CERT"]).map(PathBuf::from);
        c.client_key = env_of(&["VAULT_CLIENT_KEY", "BAO_CLIENT_KEY"]).map(PathBuf::from);
        if let Some(v) = env_of(&["VAULT_SKIP_VERIFY", "BAO_SKIP_VERIFY"]) {
            c.skip_verify = parse_bool(&v)
                .ok_or_else(|| Error::Config(format!("VAULT_SKIP_VERIFY: not a boolean: {v:?}")))?;
        }
        if let Some(v) = env_of(&["VAULT_CLIENT_TIMEOUT", "BAO_CLIENT_TIMEOUT"]) {
            c.timeout = parse_duration(&v).ok_or_else(|| {
                Error::Config(format!("VAULT_CLIENT_TIMEOUT: not a duration: {v:?}"))
            })?;
        }
        c.namespace = env_of(&["VAULT_NAMESPACE", "BAO_NAMESPACE"]);
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(parse_duration("5d"), None);
    }

    #[test]
    fn address_lists() {
        assert_eq!(
            split_addresses("http://a:1, http://b:2,,"),
            ["http://a:1", "http://b:2"]
        );
        assert_eq!(split_addresses("http://a"), ["http://a"]);
        assert!(split_addresses(" , ").is_empty());
    }

    #[test]
    fn bools() {
        assert_eq!(parse_bool("true"), Some(true));
        assert_eq!(parse_bool("0"), Some(false));
        assert_eq!(parse_bool("maybe"), None);
    }

    #[test]
    fn debug_hides_token() {
        let c = ClientConfig::new("http://x").with_token("s.secret");
        assert!(!format!("{c:?}").contains("s.secret"));
    }
}
