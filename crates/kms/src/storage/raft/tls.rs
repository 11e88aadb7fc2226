//! Mutual TLS between cluster members.
//!
//! As OpenBao's raft TLS keyring, the cluster has one certificate authority and one member
//! certificate, made at init ([`ClusterCerts::generate`]) and kept in the barrier, so only
//! a node that was unsealed with the cluster's keys (or handed them by the leader when it
//! joined) holds them. Both sides of every cluster connection present the member
//! certificate and accept only a peer whose certificate the cluster's authority signed:
//! anything that is not a member is refused in the handshake. Operators may instead give
//! their own authority and certificate in the config.

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::net::TcpStream;
use zeroize::Zeroizing;

/// The name member certificates carry and peers check.
pub const CLUSTER_SERVER_NAME: &str = "strongroom-cluster";

/// The cluster's authority and member certificate, PEM (the key is zeroized on drop).
#[derive(Clone, Serialize, Deserialize)]
pub struct ClusterCerts {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: Zeroizing<String>,
}

impl std::fmt::Debug for ClusterCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCerts").finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cluster TLS: {0}")]
pub struct TlsError(String);

fn tls_err(e: impl std::fmt::Display) -> TlsError {
    TlsError(e.to_string())
}

impl ClusterCerts {
    /// A new authority (ECDSA P-256) and a member certificate it signed, (rcgen's default validity: no expiry to manage).
    pub fn generate() -> Result<Self, TlsError> {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        let ca_key = KeyPair::generate().map_err(tls_err)?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(tls_err)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.distinguished_name
            .push(DnType::CommonName, "strongroom cluster CA");
        let issuer = CertifiedIssuer::self_signed(ca.clone(), ca_key).map_err(tls_err)?;
        let key = KeyPair::generate().map_err(tls_err)?;
        let mut leaf =
            CertificateParams::new(vec![CLUSTER_SERVER_NAME.to_string()]).map_err(tls_err)?;
        leaf.distinguished_name
            .push(DnType::CommonName, CLUSTER_SERVER_NAME);
        leaf.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = leaf.signed_by(&key, &issuer).map_err(tls_err)?;
        Ok(Self {
            ca_pem: issuer.pem(),
            cert_pem: cert.pem(),
            key_pem: Zeroizing::new(key.serialize_pem()),
        })
    }
}

/// Ready-made rustls configurations for both directions.
pub struct ClusterTls {
    server: tokio_rustls::TlsAcceptor,
    client: tokio_rustls::TlsConnector,
}

impl ClusterTls {
    pub fn new(certs: &ClusterCerts) -> Result<Self, TlsError> {
        let ca: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut certs.ca_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(tls_err)?;
        let chain: Vec<CertificateDer<'static>> =
            rustls_pemfile::certs(&mut certs.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(tls_err)?;
        let key = || -> Result<PrivateKeyDer<'static>, TlsError> {
            rustls_pemfile::private_key(&mut certs.key_pem.as_bytes())
                .map_err(tls_err)?
                .ok_or_else(|| TlsError("no private key in the cluster keyring".into()))
        };
        if ca.is_empty() || chain.is_empty() {
            return Err(TlsError("the cluster keyring has no certificate".into()));
        }
        let mut roots = rustls::RootCertStore::empty();
        for c in ca {
            roots.add(c).map_err(tls_err)?;
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .map_err(tls_err)?;
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_err)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key()?)
            .map_err(tls_err)?;
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_err)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key()?)
            .map_err(tls_err)?;
        Ok(Self {
            server: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            client: tokio_rustls::TlsConnector::from(Arc::new(client)),
        })
    }

    pub async fn connect(
        &self,
        tcp: TcpStream,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let name = ServerName::try_from(CLUSTER_SERVER_NAME).map_err(std::io::Error::other)?;
        self.client.connect(name, tcp).await
    }

    pub async fn accept(
        &self,
        tcp: TcpStream,
    ) -> std::io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
        self.server.accept(tcp).await
    }
}
