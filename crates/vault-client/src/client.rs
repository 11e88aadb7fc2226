//! The HTTP core: one agent, JSON in and out, status → [`Error`] mapping.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use serde_json::Value;
use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};
use zeroize::Zeroizing;

use crate::config::ClientConfig;
use crate::error::{Error, Result};
use crate::failover::{self, Outcome};
use crate::secret::SecretString;
use crate::types::Secret;

/// Characters escaped in a path segment (everything but `/` and the unreserved set is fine
/// for Vault's router, but these would change the meaning of the URL).
const PATH: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');
/// Characters escaped in a query component.
const QUERY: &AsciiSet = &PATH.add(b'&').add(b'=').add(b'+');

/// Largest response body accepted.
const MAX_BODY: u64 = 32 * 1024 * 1024;

/// HTTP methods the API uses. `LIST` is sent as `GET ?list=true` (what the CLI does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Put,
    Post,
    Delete,
    Patch,
    Head,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Head => "HEAD",
        }
    }
}

/// A blocking Vault/OpenBao API client. Cheap to clone (the connection pool is shared).
///
/// With several addresses (the nodes of a cluster) it sends to the node that answered last
/// and moves on to the next one when a node is down, sealed or has no active node (see
/// [`crate::failover`]); clones share which node that is.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    addresses: Arc<[String]>,
    current: Arc<AtomicUsize>,
    token: Option<SecretString>,
    namespace: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("addresses", &self.addresses)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("namespace", &self.namespace)
            .finish()
    }
}

fn read_file(what: &str, p: &std::path::Path) -> Result<Zeroizing<Vec<u8>>> {
    std::fs::read(p)
        .map(Zeroizing::new)
        .map_err(|e| Error::Config(format!("reading {what} {}: {e}", p.display())))
}

fn pem_certs(what: &str, pem: &[u8]) -> Result<Vec<Certificate<'static>>> {
    let mut out = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        if let PemItem::Certificate(c) = item.map_err(|e| Error::Config(format!("{what}: {e}")))? {
            out.push(c);
        }
    }
    Ok(out)
}

fn tls_config(c: &ClientConfig) -> Result<TlsConfig> {
    let mut b = TlsConfig::builder().disable_verification(c.skip_verify);
    let mut roots = Vec::new();
    if let Some(p) = &c.ca_cert {
        roots.extend(pem_certs(
            &p.display().to_string(),
            &read_file("CA certificate", p)?,
        )?);
    }
    if let Some(dir) = &c.ca_path {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| Error::Config(format!("reading CA directory {}: {e}", dir.display())))?;
        for e in entries.flatten() {
            if e.path().is_file() {
                roots.extend(pem_certs(
                    &e.path().display().to_string(),
                    &read_file("CA certificate", &e.path())?,
                )?);
            }
        }
    }
    if let Some(pem) = &c.ca_pem {
        roots.extend(pem_certs("inline CA", pem)?);
    }
    if c.ca_cert.is_some() || c.ca_path.is_some() || c.ca_pem.is_some() {
        if roots.is_empty() {
            return Err(Error::Config(
                "no CA certificate found in the configured CA file(s)".into(),
            ));
        }
        b = b.root_certs(RootCerts::new_with_certs(&roots));
    }
    match (&c.client_cert, &c.client_key) {
        (Some(cp), Some(kp)) => {
            let certs = pem_certs(
                &cp.display().to_string(),
                &read_file("client certificate", cp)?,
            )?;
            if certs.is_empty() {
                return Err(Error::Config(format!("no certificate in {}", cp.display())));
            }
            let key = PrivateKey::from_pem(&read_file("client key", kp)?)
                .map_err(|e| Error::Config(format!("client key {}: {e}", kp.display())))?;
            b = b.client_cert(Some(ClientCert::new_with_certs(&certs, key)));
        }
        (None, None) => {}
        _ => {
            return Err(Error::Config(
                "client certificate and client key must be given together".into(),
            ))
        }
    }
    Ok(b.build())
}

impl Client {
    /// Builds a client. Fails only on unusable configuration (bad address, unreadable or
    /// invalid CA/client certificate files); nothing is sent to the server.
    pub fn new(config: ClientConfig) -> Result<Client> {
        let addresses = config
            .addresses
            .iter()
            .map(|a| valid_address(a))
            .collect::<Result<Vec<String>>>()?;
        if addresses.is_empty() {
            return Err(Error::Config("no server address given".into()));
        }
        let cfg = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(config.timeout))
            .timeout_connect(Some(config.connect_timeout))
            .max_redirects(0)
            .user_agent("strongroom-vault-client")
            .tls_config(tls_config(&config)?)
            .build();
        Ok(Client {
            agent: ureq::Agent::new_with_config(cfg),
            addresses: addresses.into(),
            current: Arc::default(),
            token: config.token.filter(|t| !t.is_empty()),
            namespace: config.namespace,
        })
    }

    /// [`ClientConfig::from_env`] + [`Client::new`].
    pub fn from_env() -> Result<Client> {
        Client::new(ClientConfig::from_env()?)
    }

    /// The base address (`http://host:port`) requests go to now: with several addresses,
    /// the one that answered last.
    pub fn address(&self) -> &str {
        &self.addresses[self.current()]
    }

    /// Every configured address, in the configured order.
    pub fn addresses(&self) -> &[String] {
        &self.addresses
    }

    fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed) % self.addresses.len()
    }

    pub fn token(&self) -> Option<&SecretString> {
        self.token.as_ref()
    }

    pub fn set_token(&mut self, token: Option<SecretString>) {
        self.token = token.filter(|t| !t.is_empty());
    }

    /// A client sharing this one's connection pool but using another token (e.g. a tenant's).
    pub fn with_token(&self, token: impl Into<SecretString>) -> Client {
        let mut c = self.clone();
        c.set_token(Some(token.into()));
        c
    }

    /// The full URL of an API path (`sys/health` → `<address>/v1/sys/health`).
    pub fn url(&self, path: &str) -> String {
        self.url_at(self.current(), path)
    }

    fn url_at(&self, i: usize, path: &str) -> String {
        let p = path.trim_start_matches('/');
        format!("{}/v1/{}", self.addresses[i], utf8_percent_encode(p, PATH))
    }

    fn transport_error(&self, i: usize, e: ureq::Error) -> Error {
        let address = self.addresses[i].clone();
        match e {
            ureq::Error::Io(io) => {
                let reason = io.to_string();
                if is_tls_failure(&io) {
                    Error::Tls { address, reason }
                } else {
                    Error::Unreachable { address, reason }
                }
            }
            ureq::Error::Timeout(t) => Error::Unreachable {
                address,
                reason: format!("timeout ({t})"),
            },
            ureq::Error::HostNotFound => Error::Unreachable {
                address,
                reason: "host not found".into(),
            },
            ureq::Error::ConnectionFailed => Error::Unreachable {
                address,
                reason: "connection failed".into(),
            },
            ureq::Error::Tls(s) => Error::Tls {
                address,
                reason: s.to_owned(),
            },
            ureq::Error::Pem(p) => Error::Tls {
                address,
                reason: p.to_string(),
            },
            ureq::Error::Rustls(r) => Error::Tls {
                address,
                reason: r.to_string(),
            },
            ureq::Error::BadUri(u) => Error::Config(format!("bad URL: {u}")),
            ureq::Error::Http(h) => Error::Config(format!("bad request: {h}")),
            other => Error::InvalidResponse {
                url: address,
                reason: other.to_string(),
            },
        }
    }

    /// Sends one request and returns the status and the body parsed as JSON (`None` when
    /// empty). No status is treated as an error here; transport failures are. With several
    /// addresses, a node that is down, sealed or without an active node is skipped for the
    /// next (at most one round), as [`crate::failover`] describes.
    pub fn raw_request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&[u8]>,
        content_type: Option<&str>,
    ) -> Result<(u16, Option<Value>)> {
        let start = self.current();
        let n = self.addresses.len();
        let mut skipped = Vec::new();
        for k in 0..n {
            let i = (start + k) % n;
            let outcome = self.send_to(i, method, path, query, body, content_type);
            match failover::judge(method, outcome) {
                failover::Next::Done(r) => {
                    self.current.store(i, Ordering::Relaxed);
                    return r;
                }
                failover::Next::GiveUp(e) => {
                    // the outcome is unknown: not repeated here, but the next call moves on
                    self.current.store((i + 1) % n, Ordering::Relaxed);
                    return Err(e);
                }
                failover::Next::Skip(o) => {
                    if n > 1 {
                        tracing::debug!(address = %self.addresses[i], "trying the next address");
                    }
                    skipped.push((self.addresses[i].clone(), o));
                }
            }
        }
        failover::none_answered(skipped)
    }

    /// One attempt against address `i`.
    fn send_to(
        &self,
        i: usize,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&[u8]>,
        content_type: Option<&str>,
    ) -> Outcome {
        let rb = self.request_builder(i, method, path, query);
        tracing::debug!(method = method.as_str(), path, address = %self.addresses[i], "vault request");
        let bad = |e: ureq::http::Error| Error::Config(format!("bad request for {path}: {e}"));
        let sent = match body {
            Some(b) => rb
                .header("Content-Type", content_type.unwrap_or("application/json"))
                .body(b)
                .map(|req| self.agent.run(req)),
            None => rb.body(()).map(|req| self.agent.run(req)),
        };
        let mut resp = match sent {
            Err(e) => return Outcome::Local(bad(e)),
            Ok(Err(e)) => {
                let not_sent = failover::not_sent(&e);
                return Outcome::Transport(self.transport_error(i, e), not_sent);
            }
            Ok(Ok(r)) => r,
        };
        let status = resp.status().as_u16();
        let read = resp.body_mut().with_config().limit(MAX_BODY).read_to_vec();
        let bytes = match read {
            Ok(b) => Zeroizing::new(b),
            Err(e) => return Outcome::Transport(self.transport_error(i, e), false),
        };
        match self.parse_body(i, path, status, &bytes) {
            Ok(r) => Outcome::Answer(r),
            Err(e) => Outcome::Local(e),
        }
    }

    /// The request line and headers: URL with the escaped query, the token, the namespace.
    fn request_builder(
        &self,
        i: usize,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
    ) -> ureq::http::request::Builder {
        let mut url = self.url_at(i, path);
        for (i, (k, v)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.extend(utf8_percent_encode(k, QUERY));
            url.push('=');
            url.extend(utf8_percent_encode(v, QUERY));
        }
        let mut rb = ureq::http::Request::builder()
            .method(method.as_str())
            .uri(&url)
            .header("X-Vault-Request", "true");
        if let Some(t) = &self.token {
            rb = rb.header("X-Vault-Token", t.expose());
        }
        if let Some(ns) = &self.namespace {
            rb = rb.header("X-Vault-Namespace", ns.as_str());
        }
        rb
    }

    /// A response body as JSON (`None` when empty). A success must be JSON; an error page
    /// that is not (e.g. `404 page not found`) keeps its text as the one error message.
    fn parse_body(
        &self,
        i: usize,
        path: &str,
        status: u16,
        bytes: &[u8],
    ) -> Result<(u16, Option<Value>)> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok((status, None));
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(v) => Ok((status, Some(v))),
            Err(e) if status < 400 => Err(Error::InvalidResponse {
                url: self.url_at(i, path),
                reason: format!("body is not JSON: {e}"),
            }),
            Err(_) => {
                let text: String = String::from_utf8_lossy(bytes)
                    .trim()
                    .chars()
                    .take(200)
                    .collect();
                Ok((status, Some(serde_json::json!({ "errors": [text] }))))
            }
        }
    }

    /// Sends a request with an optional JSON body; error statuses become [`Error`]s.
    /// Returns the parsed body (`None` for 204 / empty).
    pub fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Option<Value>> {
        let content_type = (method == Method::Patch).then_some("application/merge-patch+json");
        let bytes = match body {
            Some(v) => {
                Some(Zeroizing::new(serde_json::to_vec(v).map_err(|e| {
                    Error::Config(format!("encoding request: {e}"))
                })?))
            }
            None => None,
        };
        let (status, parsed) = self.raw_request(
            method,
            path,
            query,
            bytes.as_deref().map(Vec::as_slice),
            content_type,
        )?;
        if status >= 400 {
            return Err(Error::from_status(
                method.as_str(),
                &self.url(path),
                status,
                parsed,
            ));
        }
        Ok(parsed)
    }

    /// Like [`Client::request`], parsing the body as a [`Secret`] envelope.
    pub fn request_secret(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Option<Secret>> {
        match self.request(method, path, query, body)? {
            None => Ok(None),
            Some(v) => Secret::from_value(v)
                .map(Some)
                .ok_or_else(|| Error::InvalidResponse {
                    url: self.url(path),
                    reason: "expected a JSON object".into(),
                }),
        }
    }

    /// `GET path`. A 404 is `Ok(None)` unless the body carries data or warnings (then that
    /// envelope is returned), as the Vault CLI does.
    pub fn read(&self, path: &str) -> Result<Option<Secret>> {
        self.read_with_query(path, &[])
    }

    pub fn read_with_query(&self, path: &str, query: &[(&str, &str)]) -> Result<Option<Secret>> {
        match self.request_secret(Method::Get, path, query, None) {
            Err(Error::NotFound(a)) => Ok(a.response.map(|b| *b)),
            other => other,
        }
    }

    /// `LIST path` (sent as `GET path?list=true`). 404 → `Ok(None)`.
    pub fn list(&self, path: &str) -> Result<Option<Secret>> {
        let p = path.trim_end_matches('/');
        self.read_with_query(p, &[("list", "true")])
    }

    /// The `keys` of a list; a missing path is an empty list.
    pub fn list_keys(&self, path: &str) -> Result<Vec<String>> {
        Ok(self.list(path)?.map(|s| s.keys()).unwrap_or_default())
    }

    /// `PUT path` with a JSON body (`None` sends the literal `null`, like `vault write -f`).
    /// Returns the envelope, or `None` for 204.
    pub fn write(&self, path: &str, body: Option<&Value>) -> Result<Option<Secret>> {
        self.request_secret(Method::Put, path, &[], Some(body.unwrap_or(&Value::Null)))
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> Result<Option<Secret>> {
        self.request_secret(Method::Delete, path, &[], None)
    }

    /// `PATCH path` with a JSON merge-patch body.
    pub fn patch(&self, path: &str, body: &Value) -> Result<Option<Secret>> {
        self.request_secret(Method::Patch, path, &[], Some(body))
    }
}

/// Runs `f` up to `attempts` times while it fails with a retryable error
/// ([`Error::is_retryable`]: unreachable, sealed, 5xx), sleeping `backoff`, then twice that,
/// and so on (capped at 30 s) between tries. Other errors return at once.
///
/// Against a cluster (several addresses) the documented choice is 6 attempts from 200 ms
/// (6.2 s in all): it covers an election after the active node dies and a node's restart.
pub fn retry<T>(
    attempts: u32,
    backoff: std::time::Duration,
    mut f: impl FnMut() -> Result<T>,
) -> Result<T> {
    let mut delay = backoff;
    let mut n = 1;
    loop {
        match f() {
            Err(e) if e.is_retryable() && n < attempts => {
                tracing::debug!(attempt = n, error = %e, "retrying vault request");
                std::thread::sleep(delay);
                delay = (delay * 2).min(std::time::Duration::from_secs(30));
                n += 1;
            }
            other => return other,
        }
    }
}

/// An address as the client uses it: trimmed, without a trailing `/`, http(s) only.
fn valid_address(a: &str) -> Result<String> {
    let address = a.trim().trim_end_matches('/').to_owned();
    if address.starts_with("http://") || address.starts_with("https://") {
        Ok(address)
    } else {
        Err(Error::Config(format!(
            "address must start with http:// or https://: {address:?}"
        )))
    }
}

/// Checks that a response carried `data`, for helpers that need it.
pub(crate) fn need_secret(s: Option<Secret>, url: String) -> Result<Secret> {
    s.ok_or(Error::InvalidResponse {
        url,
        reason: "empty response".into(),
    })
}

/// Deserializes a raw (non-envelope) JSON body into `T`.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(v: Option<Value>, url: String) -> Result<T> {
    let v = v.ok_or_else(|| Error::InvalidResponse {
        url: url.clone(),
        reason: "empty response".into(),
    })?;
    serde_json::from_value(v).map_err(|e| Error::InvalidResponse {
        url,
        reason: e.to_string(),
    })
}

/// Whether an I/O error is a failed TLS handshake or certificate check: rustls reports
/// those as an `io::Error` whose inner error is a `rustls::Error` (classified by type,
/// never by the message text).
fn is_tls_failure(io: &std::io::Error) -> bool {
    io.get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_escaped() {
        let c = Client::new(ClientConfig::new("http://127.0.0.1:8200/")).unwrap();
        assert_eq!(c.url("/sys/health"), "http://127.0.0.1:8200/v1/sys/health");
        assert_eq!(c.url("kv/a b?c"), "http://127.0.0.1:8200/v1/kv/a%20b%3Fc");
    }

    #[test]
    fn bad_address_is_config_error() {
        assert!(matches!(
            Client::new(ClientConfig::new("127.0.0.1:8200")),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn connection_refused_is_unreachable() {
        // Bind then drop a listener to get a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = Client::new(ClientConfig::new(format!("http://127.0.0.1:{port}"))).unwrap();
        let e = c.read("sys/health").unwrap_err();
        assert!(matches!(e, Error::Unreachable { .. }), "{e:?}");
        assert!(e.is_retryable());
    }

    #[test]
    fn retry_only_retryable_errors() {
        use std::time::Duration;
        let mut calls = 0;
        let r: Result<()> = retry(3, Duration::from_millis(1), || {
            calls += 1;
            Err(Error::Unreachable {
                address: "x".into(),
                reason: "refused".into(),
            })
        });
        assert!(r.is_err() && calls == 3);
        let mut calls = 0;
        let r: Result<()> = retry(3, Duration::from_millis(1), || {
            calls += 1;
            Err(Error::Config("bad".into()))
        });
        assert!(r.is_err() && calls == 1);
        let mut calls = 0;
        let r = retry(5, Duration::from_millis(1), || {
            calls += 1;
            if calls < 3 {
                Err(Error::Unreachable {
                    address: "x".into(),
                    reason: "refused".into(),
                })
            } else {
                Ok(calls)
            }
        });
        assert_eq!(r.unwrap(), 3);
    }

    #[test]
    fn missing_ca_file_is_config_error() {
        let mut cfg = ClientConfig::new("https://127.0.0.1:8200");
        cfg.ca_cert = Some("/nonexistent/ca.pem".into());
        assert!(matches!(Client::new(cfg), Err(Error::Config(_))));
    }
}
