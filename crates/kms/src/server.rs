//! Running the key manager: storage from config, the core, and one HTTP(S) listener per
//! `listener "tcp"` stanza (rustls; client certificates verified when asked).

use crate::config::{ListenerConfig, ServerConfig, StorageConfig};
use crate::core::{Core, CoreOptions};
use crate::http::conn;
use crate::storage::raft::RaftStorage;
use crate::storage::{InmemStorage, RedbStorage, Storage};
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Storage(#[from] crate::storage::StorageError),
    #[error("listener {addr}: {msg}")]
    Listener { addr: String, msg: String },
    #[error("tls: {0}")]
    Tls(String),
    #[error("dev mode: {0}")]
    Dev(String),
}

/// Vault's default maximum request size: 32 MiB.
pub const DEFAULT_MAX_REQUEST_SIZE: usize = 32 << 20;

pub struct DevOptions {
    pub root_token_id: Option<String>,
}

/// The storage of a config; `storage "raft"` also starts its raft node (so this runs inside
/// the async runtime) and returns it.
pub async fn open_storage(
    cfg: &ServerConfig,
) -> Result<(Arc<dyn Storage>, Option<Arc<RaftStorage>>), ServerError> {
    Ok(match &cfg.storage {
        StorageConfig::Inmem => (Arc::new(InmemStorage::new()), None),
        StorageConfig::Raft { .. } => {
            let r = crate::ha::start(cfg).await?;
            (r.clone(), Some(r))
        }
        StorageConfig::File { path } => (Arc::new(RedbStorage::open(path, "file")?), None),
    })
}

fn tls_config(l: &ListenerConfig) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| ServerError::Tls(format!("reading {}: {e}", p.display())))
    };
    let cert_path = l
        .tls_cert_file
        .as_deref()
        .ok_or_else(|| ServerError::Tls("tls_cert_file missing".into()))?;
    let key_path = l
        .tls_key_file
        .as_deref()
        .ok_or_else(|| ServerError::Tls("tls_key_file missing".into()))?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &read(cert_path)?[..])
        .collect::<Result<_, _>>()
        .map_err(|e| ServerError::Tls(format!("parsing {}: {e}", cert_path.display())))?;
    if certs.is_empty() {
        return Err(ServerError::Tls(format!(
            "no certificate in {}",
            cert_path.display()
        )));
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &read(key_path)?[..])
        .map_err(|e| ServerError::Tls(format!("parsing {}: {e}", key_path.display())))?
        .ok_or_else(|| ServerError::Tls(format!("no private key in {}", key_path.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    let builder = match &l.tls_client_ca_file {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_pemfile::certs(&mut &read(ca)?[..]) {
                let c =
                    c.map_err(|e| ServerError::Tls(format!("parsing {}: {e}", ca.display())))?;
                roots.add(c).map_err(|e| ServerError::Tls(e.to_string()))?;
            }
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let v = if l.tls_require_and_verify_client_cert {
                v.build()
            } else {
                v.allow_unauthenticated().build()
            }
            .map_err(|e| ServerError::Tls(e.to_string()))?;
            builder.with_client_cert_verifier(v)
        }
        None if l.tls_require_and_verify_client_cert => {
            return Err(ServerError::Tls(
                "tls_require_and_verify_client_cert needs tls_client_ca_file".into(),
            ))
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Build the core for a config (sealed, or initialized+unsealed in dev mode).
pub async fn build_core(cfg: &ServerConfig, dev: bool) -> Result<Arc<Core>, ServerError> {
    let (storage, raft) = open_storage(cfg).await?;
    let max = cfg
        .listeners
        .iter()
        .filter_map(|l| l.max_request_size)
        .max()
        .unwrap_or(DEFAULT_MAX_REQUEST_SIZE);
    let core = Core::new(
        storage,
        CoreOptions {
            api_addr: cfg.api_addr.clone(),
            cluster_addr: cfg.cluster_addr.clone(),
            dev,
            max_request_size: max,
            audit_devices: cfg.audit.clone(),
            allow_api_audit_creation: cfg.unsafe_allow_api_audit_creation,
            raft,
        },
    );
    if let Some(r) = &core.options.raft {
        r.set_forward_handler(crate::ha::forward::handler(core.clone()));
        let (targets, non_voter) = crate::ha::retry_join::from_config(cfg);
        crate::ha::retry_join::spawn(core.ha.clone(), r, targets, non_voter);
    }
    Ok(core)
}

/// The listen backlog. std's is 128: in a burst of connections beyond the backlog (a flood
/// with a legitimate client in it) the kernel drops SYNs, and their clients retry only a
/// second later. The kernel caps it at `net.core.somaxconn` (4096 by default).
const BACKLOG: u32 = 4096;

/// A listening socket on `address` (the first of its addresses that binds), with [`BACKLOG`].
fn bind(address: &str) -> std::io::Result<std::net::TcpListener> {
    use std::net::ToSocketAddrs;
    let mut last = None;
    for addr in address.to_socket_addrs()? {
        let sock = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        let listening = sock
            .set_reuseaddr(true)
            .and_then(|()| sock.bind(addr))
            .and_then(|()| sock.listen(BACKLOG));
        match listening {
            Ok(l) => return l.into_std(),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to bind")
    }))
}

/// hyper's connection settings: HTTP/1.1 only (OpenBao's listeners offer nothing else
/// without TLS, and our TLS offers only `http/1.1`), headers of at most
/// [`conn::MAX_HEADER_BUFFER`].
fn http_builder() -> hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor> {
    let mut b = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
        .http1_only();
    b.http1().max_buf_size(conn::MAX_HEADER_BUFFER);
    b
}

/// Serve until SIGINT/SIGTERM. `ready` receives the bound addresses (port 0 resolved).
/// All listeners share one connection cap ([`conn::connection_cap`]).
pub async fn serve(
    core: Arc<Core>,
    listeners: Vec<ListenerConfig>,
    ready: Option<tokio::sync::oneshot::Sender<Vec<SocketAddr>>>,
) -> Result<(), ServerError> {
    serve_with_ui(core, listeners, false, ready).await
}

/// [`serve`], with the web UI at `/ui/` on every listener when `ui` (config `ui = true`, or
/// dev mode).
pub async fn serve_with_ui(
    core: Arc<Core>,
    listeners: Vec<ListenerConfig>,
    ui: bool,
    ready: Option<tokio::sync::oneshot::Sender<Vec<SocketAddr>>>,
) -> Result<(), ServerError> {
    let handle = axum_server::Handle::new();
    let tracker = conn::Tracker::start(conn::connection_cap());
    tracing::info!(max_connections = tracker.cap(), "connection cap");
    let mut tasks = vec![];
    let mut bound = vec![];
    for l in listeners {
        let std_listener = bind(&l.address).map_err(|e| ServerError::Listener {
            addr: l.address.clone(),
            msg: e.to_string(),
        })?;
        std_listener
            .set_nonblocking(true)
            .map_err(|e| ServerError::Listener {
                addr: l.address.clone(),
                msg: e.to_string(),
            })?;
        let addr = std_listener
            .local_addr()
            .map_err(|e| ServerError::Listener {
                addr: l.address.clone(),
                msg: e.to_string(),
            })?;
        bound.push(addr);
        let app = crate::http::router(core.clone(), ui)
            .into_make_service_with_connect_info::<SocketAddr>();
        let h = handle.clone();
        let tracking = conn::TrackingAcceptor::new(tracker.clone(), l.timeouts);
        if l.tls_disable {
            let mut srv = axum_server::from_tcp(std_listener)
                .acceptor(tracking)
                .handle(h);
            *srv.http_builder() = http_builder();
            tasks.push(tokio::spawn(async move { srv.serve(app).await }));
        } else {
            let tls = axum_server::tls_rustls::RustlsConfig::from_config(tls_config(&l)?);
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(tls).acceptor(tracking);
            let mut srv = axum_server::from_tcp(std_listener)
                .acceptor(acceptor)
                .handle(h);
            *srv.http_builder() = http_builder();
            tasks.push(tokio::spawn(async move { srv.serve(app).await }));
        }
        tracing::info!(address = %addr, tls = !l.tls_disable, "listening");
    }
    if let Some(r) = ready {
        let _ = r.send(bound);
    }
    let shutdown = handle.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        shutdown.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
    });
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(ServerError::Listener {
                    addr: String::new(),
                    msg: e.to_string(),
                })
            }
            Err(e) => {
                return Err(ServerError::Listener {
                    addr: String::new(),
                    msg: e.to_string(),
                })
            }
        }
    }
    core.seal_now();
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}
