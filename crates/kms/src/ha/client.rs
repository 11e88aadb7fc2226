//! A minimal HTTP/1.1 JSON client for node-to-node API calls (a joining node asking the
//! leader for its challenge and answering it). HTTPS needs the leader's CA
//! (`leader_ca_cert`); there is no system trust store in the key manager. A client
//! certificate (`leader_client_cert`/`leader_client_key`) is presented when given.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);

/// How to reach a leader over HTTPS (PEM text).
#[derive(Clone, Default)]
pub struct LeaderTls {
    pub ca_cert: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<zeroize::Zeroizing<String>>,
    /// The name the leader's certificate must carry (default: the URL's host).
    pub server_name: Option<String>,
}

impl From<&crate::config::RetryJoin> for LeaderTls {
    fn from(j: &crate::config::RetryJoin) -> Self {
        Self {
            ca_cert: j.leader_ca_cert.clone(),
            client_cert: j.leader_client_cert.clone(),
            client_key: j.leader_client_key.clone(),
            server_name: j.leader_tls_servername.clone(),
        }
    }
}

/// `PUT url` with a JSON body; the JSON answer and status.
pub async fn put_json(url: &str, tls: &LeaderTls, body: &Value) -> Result<(u16, Value), String> {
    tokio::time::timeout(TIMEOUT, request(url, tls, body))
        .await
        .map_err(|_| format!("{url}: timed out"))?
}

async fn request(url: &str, tls_cfg: &LeaderTls, body: &Value) -> Result<(u16, Value), String> {
    let (tls, rest) = match url.split_once("://") {
        Some(("http", r)) => (false, r),
        Some(("https", r)) => (true, r),
        _ => return Err(format!("{url}: not an http(s) URL")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let tcp = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| format!("connecting to {authority}: {e}"))?;
    let req = hyper::Request::put(path)
        .header("host", authority)
        .header("content-type", "application/json")
        .header("x-vault-request", "true")
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| e.to_string())?;
    let resp = if tls {
        let stream = tls_connect(tcp, authority, tls_cfg).await?;
        send(hyper_util::rt::TokioIo::new(stream), req).await?
    } else {
        send(hyper_util::rt::TokioIo::new(tcp), req).await?
    };
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).map_err(|e| format!("{url}: not JSON: {e}"))?
    };
    Ok((status, v))
}

async fn send<IO>(
    io: IO,
    req: hyper::Request<Full<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut tx, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    tx.send_request(req).await.map_err(|e| e.to_string())
}

fn client_config(t: &LeaderTls) -> Result<rustls::ClientConfig, String> {
    let ca = t
        .ca_cert
        .as_deref()
        .ok_or("an https leader address needs leader_ca_cert")?;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca.as_bytes()) {
        roots
            .add(c.map_err(|e| format!("leader_ca_cert: {e}"))?)
            .map_err(|e| format!("leader_ca_cert: {e}"))?;
    }
    if roots.is_empty() {
        return Err("leader_ca_cert holds no PEM certificate".into());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let (Some(cert), Some(key)) = (&t.client_cert, &t.client_key) else {
        return Ok(b.with_no_client_auth());
    };
    let certs = rustls_pemfile::certs(&mut cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("leader_client_cert: {e}"))?;
    let key = rustls_pemfile::private_key(&mut key.as_bytes())
        .map_err(|_| "leader_client_key: not a PEM private key".to_string())?
        .ok_or("leader_client_key: no private key")?;
    b.with_client_auth_cert(certs, key)
        .map_err(|e| format!("leader_client_cert/key: {e}"))
}

async fn tls_connect(
    tcp: tokio::net::TcpStream,
    authority: &str,
    t: &LeaderTls,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let cfg = client_config(t)?;
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    let host = t
        .server_name
        .as_deref()
        .unwrap_or(host.trim_start_matches('[').trim_end_matches(']'));
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host}: {e}"))?;
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS to {authority}: {e}"))
}
